//! The Boa candidate of the JavaScript-engine comparison (issue 17, point
//! 5): the same `javascript` assertion as `../script-evaluator.js`, with
//! the engine compiled into the component instead of a JS runtime.

use boa_engine::{Context, JsValue, Source, js_string, property::Attribute};
use cardrun_plugin_sdk::serde_json::{self, Value};
use cardrun_plugin_sdk::{Evaluator, Input, Verdict, export_evaluator};

pub struct BoaJavascript;

impl Evaluator for BoaJavascript {
    const NAME: &'static str = "js-boa";
    const TYPES: &'static [&'static str] = &["javascript"];
    const DESCRIPTION: &'static str = "a JavaScript expression or function body, run by Boa";

    fn evaluate(input: &Input) -> Result<Verdict, String> {
        let source = input.value().as_str().ok_or("`value` must be JavaScript source text")?;
        let mut context = Context::default();
        let vars: serde_json::Map<String, Value> =
            input.variables().iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let test_context = serde_json::json!({ "vars": vars, "prompt": input.prompt() });
        let output = JsValue::from(js_string!(input.output()));
        let ctx = JsValue::from_json(&test_context, &mut context).map_err(|e| e.to_string())?;
        context.register_global_property(js_string!("output"), output, Attribute::all()).map_err(|e| e.to_string())?;
        context.register_global_property(js_string!("context"), ctx, Attribute::all()).map_err(|e| e.to_string())?;
        // promptfoo's rule: several lines, or a `return`, make a function body.
        let body = if source.contains('\n') || source.contains("return") {
            source.to_string()
        } else {
            format!("return ({source});")
        };
        let wrapped = format!("(function (output, context) {{\n{body}\n}})(output, context)");
        let result = context.eval(Source::from_bytes(&wrapped)).map_err(|e| e.to_string())?;
        let json = result.to_json(&mut context).map_err(|e| e.to_string())?;
        to_verdict(json.unwrap_or(Value::Null), input.threshold())
    }
}

/// promptfoo's reading of a script's result: a boolean, a score, or
/// `{pass, score, reason}`.
fn to_verdict(result: Value, threshold: Option<f64>) -> Result<Verdict, String> {
    let min = threshold.unwrap_or(0.5);
    match result {
        Value::Bool(pass) => Ok(Verdict::check(pass, "script returned true", "script returned false")),
        Value::Number(n) => {
            let score = n.as_f64().unwrap_or(0.0).clamp(0.0, 1.0);
            Ok(Verdict::scored(score, min, format!("script scored {score}")))
        }
        Value::Object(o) => {
            let pass = o.get("pass").and_then(Value::as_bool).ok_or("the result object has no boolean `pass`")?;
            let score = o.get("score").and_then(Value::as_f64).unwrap_or(if pass { 1.0 } else { 0.0 });
            let reason = o.get("reason").and_then(Value::as_str).unwrap_or("").to_string();
            Ok(Verdict { pass, score: score.clamp(0.0, 1.0), reason })
        }
        other => Err(format!("a script must return a boolean, a number or {{pass, score, reason}}, not {other}")),
    }
}

export_evaluator!(BoaJavascript);
