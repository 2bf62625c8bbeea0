//! Running one script: the source as promptfoo reads it, the globals it
//! sees, and its result as a verdict.

use boa_engine::builtins::promise::PromiseState;
use boa_engine::object::builtins::JsPromise;
use boa_engine::{Context, JsValue, Source, js_string, property::Attribute};
use cardrun_plugin_sdk::serde_json::{self, Map, Value};
use cardrun_plugin_sdk::{Input, Verdict};

/// The longest source accepted (a file's worth of assertion, not a bundle).
const MAX_SOURCE_BYTES: usize = 256 << 10;

/// The script of an assertion: `value` as text.
fn source(input: &Input) -> Result<&str, String> {
    let source = input.value().as_str().ok_or("`value` must be JavaScript source text (a string)")?;
    if source.trim().is_empty() {
        return Err("`value` is empty: give an expression such as `output.includes('x')`".into());
    }
    if source.len() > MAX_SOURCE_BYTES {
        return Err(format!("the script is {} bytes; at most {MAX_SOURCE_BYTES}", source.len()));
    }
    Ok(source)
}

/// promptfoo's rule: several lines, or a `return`, make a function body;
/// anything else is an expression whose value is returned.
fn function_source(source: &str) -> String {
    let body = if source.contains('\n') || source.contains("return") {
        source.to_string()
    } else {
        format!("return (\n{source}\n);")
    };
    // Closing brackets on lines of their own, so that a `//` comment
    // ending the source does not swallow them.
    format!("(function (output, context) {{\n{body}\n}})")
}

/// Compiles the script without running it: a syntax error is refused when
/// the test case is written.
pub fn check(input: &Input) -> Result<(), String> {
    let source = source(input)?;
    let mut context = Context::default();
    context
        .eval(Source::from_bytes(function_source(source).as_bytes()))
        .map(|_| ())
        .map_err(|e| format!("the script does not compile: {e}"))
}

/// What a script sees as `context`: promptfoo's fields that cardrun has.
fn context(input: &Input) -> Value {
    let vars: Map<String, Value> =
        input.variables().iter().map(|(name, value)| (name.clone(), Value::String(value.clone()))).collect();
    let mut test = Map::new();
    test.insert("vars".into(), Value::Object(vars.clone()));
    if let Some(expected) = input.expected() {
        test.insert("expected".into(), Value::String(expected.to_string()));
    }
    let mut context = Map::new();
    context.insert("vars".into(), Value::Object(vars));
    context.insert("prompt".into(), Value::String(input.prompt().to_string()));
    context.insert("test".into(), Value::Object(test));
    context.insert("config".into(), input.config().clone());
    context.insert("latencyMs".into(), Value::from(input.latency_ms()));
    if let Some((prompt, completion)) = input.tokens() {
        let usage =
            serde_json::json!({"prompt": prompt, "completion": completion, "total": prompt.saturating_add(completion)});
        context.insert("tokenUsage".into(), usage);
    }
    Value::Object(context)
}

/// Runs the script on the input's output.
pub fn evaluate(input: &Input) -> Result<Verdict, String> {
    let source = source(input)?;
    let threshold = input.threshold();
    let mut engine = Context::default();
    let function = engine
        .eval(Source::from_bytes(function_source(source).as_bytes()))
        .map_err(|e| format!("the script does not compile: {e}"))?;
    let function = function.as_callable().ok_or("the script did not compile to a function")?.clone();
    let output = JsValue::from(js_string!(input.output()));
    let context = JsValue::from_json(&context(input), &mut engine).map_err(|e| e.to_string())?;
    // Also as globals, for scripts written against promptfoo's older form.
    for (name, value) in [("output", output.clone()), ("context", context.clone())] {
        let _ = engine.register_global_property(js_string!(name), value, Attribute::all());
    }
    let result = match function.call(&JsValue::undefined(), &[output, context], &mut engine) {
        Ok(result) => result,
        // The engine's own limits (recursion, loop iterations) stop the
        // script, not the test's logic: an error, like running out of fuel.
        Err(e) if e.as_native().is_some_and(|native| native.is_runtime_limit()) => {
            return Err(format!("the script hit the engine's limit: {e}"));
        }
        // promptfoo: a script that throws fails the assertion, its error the reason.
        Err(e) => return Ok(Verdict::fail(format!("the script threw: {e}"))),
    };
    if let Some(text) = result.as_string() {
        return Err(format!(
            "a script must return a boolean, a number or {{pass, score, reason}}, not the string {:?}",
            text.to_std_string_escaped().chars().take(80).collect::<String>()
        ));
    }
    let json = result.to_json(&mut engine).map_err(|e| format!("the script's result cannot be read: {e}"))?;
    verdict(json.unwrap_or(Value::Null), threshold)
}

/// Runs a script for the host (a transform, a template filter): evaluates
/// `function`, whose value must be a function, and calls it with the JSON
/// array `arguments`. An `async` function's promise is settled before its
/// value is read. The result is JSON text, `null` for `undefined`.
pub fn call(function: &str, arguments: &str) -> Result<String, String> {
    if function.len() > MAX_SOURCE_BYTES {
        return Err(format!("the script is {} bytes; at most {MAX_SOURCE_BYTES}", function.len()));
    }
    let arguments: Vec<Value> =
        serde_json::from_str(arguments).map_err(|e| format!("the arguments are not a JSON array: {e}"))?;
    let mut engine = Context::default();
    let value = engine
        .eval(Source::from_bytes(function.as_bytes()))
        .map_err(|e| format!("the script does not compile: {e}"))?;
    let callable = value.as_callable().ok_or("the script's value is not a function")?.clone();
    let arguments = arguments
        .iter()
        .map(|a| JsValue::from_json(a, &mut engine))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the arguments cannot be given to the script: {e}"))?;
    let thrown = |e: boa_engine::JsError| {
        if e.as_native().is_some_and(|native| native.is_runtime_limit()) {
            format!("the script hit the engine's limit: {e}")
        } else {
            format!("the script threw: {e}")
        }
    };
    let mut result = callable.call(&JsValue::undefined(), &arguments, &mut engine).map_err(thrown)?;
    if let Some(promise) = result.as_object().and_then(|o| JsPromise::from_object(o.clone()).ok()) {
        engine.run_jobs().map_err(thrown)?;
        result = match promise.state() {
            PromiseState::Fulfilled(value) => value,
            PromiseState::Rejected(reason) => {
                return Err(format!("the script threw: {}", reason.display()));
            }
            PromiseState::Pending => return Err("the script's promise never settled".into()),
        };
    }
    if result.is_undefined() {
        return Ok("null".into());
    }
    let json = result.to_json(&mut engine).map_err(|e| format!("the script's result cannot be read: {e}"))?;
    Ok(json.unwrap_or(Value::Null).to_string())
}

/// promptfoo's reading of a script's result, kept to the host's rule that
/// a score is in 0..=1 and agrees with the verdict.
pub fn verdict(result: Value, threshold: Option<f64>) -> Result<Verdict, String> {
    match result {
        Value::Bool(pass) => Ok(Verdict::check(pass, "the script returned true", "the script returned false")),
        Value::Number(n) => {
            let raw = n.as_f64().ok_or("the script returned a number out of range")?;
            if !raw.is_finite() {
                return Err(format!("the script returned {raw}, not a score"));
            }
            Ok(scored(raw, threshold))
        }
        Value::Object(fields) => {
            let pass = fields.get("pass").and_then(Value::as_bool);
            let score = fields.get("score").and_then(Value::as_f64);
            let reason = fields.get("reason").and_then(Value::as_str).map(str::to_string);
            let (pass, score) = match (pass, score) {
                (Some(pass), Some(score)) => (pass, score.clamp(0.0, 1.0)),
                (Some(pass), None) => (pass, if pass { 1.0 } else { 0.0 }),
                (None, Some(score)) => {
                    let judged = scored(score, threshold);
                    (judged.pass, judged.score)
                }
                (None, None) => {
                    return Err("the result object has neither a boolean `pass` nor a numeric `score`".into());
                }
            };
            let reason = reason.unwrap_or_else(|| format!("the script returned pass: {pass}, score: {score}"));
            Ok(Verdict { pass, score, reason })
        }
        other => Err(format!(
            "a script must return a boolean, a number or {{pass, score, reason}}, not {}",
            other.to_string().chars().take(80).collect::<String>()
        )),
    }
}

/// A numeric result: with a threshold in (0, 1] it passes at or above it,
/// with a larger one (a bound on the script's own scale) likewise, and
/// without one above 0.
fn scored(raw: f64, threshold: Option<f64>) -> Verdict {
    let reason = |pass: bool| {
        format!(
            "the script returned {raw}{}",
            threshold.map_or(String::new(), |t| format!(" ({} {t})", if pass { ">=" } else { "<" }))
        )
    };
    match threshold {
        Some(t) if t > 1.0 => {
            let pass = raw >= t;
            Verdict { pass, score: if pass { 1.0 } else { 0.0 }, reason: reason(pass) }
        }
        Some(t) => {
            let pass = raw >= t;
            Verdict { pass, score: raw.clamp(0.0, 1.0), reason: reason(pass) }
        }
        None => {
            let pass = raw > 0.0;
            Verdict { pass, score: raw.clamp(0.0, 1.0), reason: reason(pass) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(source: &str, output: &str) -> Result<Verdict, String> {
        evaluate(&Input::new("javascript", output, json!(source)))
    }

    #[test]
    fn expressions_bodies_and_results() {
        assert!(run("output.includes('Paris')", "It is Paris.").unwrap().pass);
        assert!(!run("output.includes('Paris')", "It is Rome.").unwrap().pass);
        let body = "const n = output.split(' ').length;\nreturn {pass: n > 2, score: n / 10, reason: `${n} words`};";
        let v = run(body, "a b c d").unwrap();
        assert_eq!((v.pass, v.score, v.reason.as_str()), (true, 0.4, "4 words"));
        let v = run("output.length / 10", "abc").unwrap();
        assert!(v.pass && (v.score - 0.3).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn context_carries_vars_and_prompt() {
        let input = Input::new(
            "javascript",
            "I love Lisbon",
            json!("output.includes(context.vars.city) && context.prompt === 'p'"),
        )
        .with_variables(&[("city", "Lisbon")])
        .with_prompt("p");
        assert!(evaluate(&input).unwrap().pass);
    }

    #[test]
    fn calls_return_json_and_settle_promises() {
        let upper = "(function (output, context) { return output.toUpperCase() + context.vars.n; })";
        assert_eq!(call(upper, r#"["ab", {"vars": {"n": 1}}]"#).unwrap(), r#""AB1""#);
        assert_eq!(call("(s => ({words: s.split(' ')}))", r#"["a b"]"#).unwrap(), r#"{"words":["a","b"]}"#);
        assert_eq!(call("(async s => s.length)", r#"["abc"]"#).unwrap(), "3");
        assert_eq!(call("(() => undefined)", "[]").unwrap(), "null");
        assert!(call("(async () => { throw new Error('late'); })", "[]").unwrap_err().contains("late"));
        assert!(call("(() => { throw new Error('no'); })", "[]").unwrap_err().contains("threw"));
        assert!(call("42", "[]").unwrap_err().contains("not a function"));
        assert!(call("(s =>", "[]").unwrap_err().contains("does not compile"));
        assert!(call("(s => s)", "{}").unwrap_err().contains("JSON array"));
    }

    #[test]
    fn thresholds_on_numbers() {
        assert!(!verdict(json!(0.4), Some(0.5)).unwrap().pass);
        assert!(verdict(json!(7.0), Some(5.0)).unwrap().pass);
        let v = verdict(json!(12.0), None).unwrap();
        assert_eq!((v.pass, v.score), (true, 1.0));
        assert!(!verdict(json!(0), None).unwrap().pass);
    }

    #[test]
    fn throwing_fails_and_bad_scripts_are_errors() {
        let v = run("if (output) {\n  throw new Error('nope');\n}\nreturn true;", "x").unwrap();
        assert!(!v.pass && v.reason.contains("nope"), "{v:?}");
        assert!(run("'yes'", "x").unwrap_err().contains("not the string"));
        assert!(run("output.includes(", "x").unwrap_err().contains("does not compile"));
        assert!(check(&Input::for_check("javascript", json!("output.includes("))).is_err());
        assert!(check(&Input::for_check("javascript", json!("output.length > 1 // a comment"))).is_ok());
        assert!(check(&Input::for_check("javascript", json!(42))).is_err());
    }
}
