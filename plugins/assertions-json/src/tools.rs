//! `is-valid-openai-tools-call`: the output is a tool call (or a list of
//! them) in OpenAI's format, naming a declared tool with arguments its
//! `parameters` schema accepts.

use cardrun_plugin_sdk::{Input, Verdict};
use serde_json::Value;

use crate::json::{compile_schema, extract_json, first_error};

/// A declared tool: its name and the schema of its arguments.
struct Tool {
    name: String,
    parameters: Option<jsonschema::Validator>,
}

/// The tools of `value`: OpenAI's `[{type: "function", function: {name,
/// parameters}}]`, or `null` (any name, arguments only parsed).
fn tools(input: &Input) -> Result<Option<Vec<Tool>>, String> {
    let items = match input.value() {
        Value::Null => return Ok(None),
        Value::Array(items) if !items.is_empty() => items,
        _ => return Err("`is-valid-openai-tools-call` takes the tools as OpenAI declares them: [{type: function, function: {name, parameters}}]".into()),
    };
    let mut tools = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let function = item.get("function").unwrap_or(item);
        let name = function.get("name").and_then(Value::as_str).ok_or(format!("tools[{i}] has no `function.name`"))?;
        let parameters = match function.get("parameters") {
            Some(schema) => Some(compile_schema(schema).map_err(|e| format!("tools[{i}] ({name}) parameters: {e}"))?),
            None => None,
        };
        tools.push(Tool { name: name.to_string(), parameters });
    }
    Ok(Some(tools))
}

/// The tool calls in a document: `{tool_calls: [...]}`, a list of calls,
/// or one call. A call is `{type: function, function: {name, arguments}}`
/// or `{name, arguments}`.
fn calls(doc: &Value) -> Vec<&Value> {
    match doc {
        Value::Object(o) if o.contains_key("tool_calls") => {
            o.get("tool_calls").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
        }
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// Why `call` is not a valid call of one of `tools`, or `None`.
fn problem(call: &Value, tools: Option<&[Tool]>) -> Option<String> {
    let function = call.get("function").unwrap_or(call);
    let Some(name) = function.get("name").and_then(Value::as_str) else {
        return Some("a call has no function name".into());
    };
    let arguments = match function.get("arguments") {
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(args) => args,
            Err(e) => return Some(format!("`{name}`: its arguments are not JSON: {e}")),
        },
        Some(args @ Value::Object(_)) => args.clone(),
        Some(_) => return Some(format!("`{name}`: arguments must be a JSON object")),
        None => return Some(format!("`{name}` has no arguments")),
    };
    if !arguments.is_object() {
        return Some(format!("`{name}`: arguments must be a JSON object"));
    }
    let tools = tools?;
    let Some(tool) = tools.iter().find(|t| t.name == name) else {
        let known: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        return Some(format!("`{name}` is not a declared tool (declared: {})", known.join(", ")));
    };
    let validator = tool.parameters.as_ref()?;
    first_error(validator, &arguments).map(|e| format!("`{name}` arguments: {e}"))
}

pub fn is_valid_openai_tools_call(input: &Input) -> Result<Verdict, String> {
    let tools = tools(input)?;
    let output = input.output().trim();
    let doc = match serde_json::from_str::<Value>(output) {
        Ok(doc) => doc,
        Err(_) => match extract_json(output).into_iter().next() {
            Some(doc) => doc,
            None => return Ok(Verdict::fail("the output holds no JSON tool call")),
        },
    };
    let calls = calls(&doc);
    if calls.is_empty() {
        return Ok(Verdict::fail("the output holds no tool call"));
    }
    Ok(match calls.iter().find_map(|call| problem(call, tools.as_deref())) {
        None => Verdict::pass(format!("{} valid tool call(s)", calls.len())),
        Some(why) => Verdict::fail(why),
    })
}

/// The parameters alone: the declared tools and their schemas.
pub fn check(input: &Input) -> Result<(), String> {
    tools(input).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
    }

    fn valid(output: &str, tools: Value) -> Verdict {
        is_valid_openai_tools_call(&Input::new("is-valid-openai-tools-call", output, tools)).unwrap()
    }

    #[test]
    fn calls_are_checked_against_the_declared_tools() {
        let call =
            r#"[{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]"#;
        assert!(valid(call, weather()).pass);
        assert!(
            valid(
                r#"{"tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}"#,
                weather()
            )
            .pass
        );
        let wrong_args = valid(r#"{"name": "get_weather", "arguments": "{\"town\": 1}"}"#, weather());
        assert!(!wrong_args.pass && wrong_args.reason.contains("city"), "{wrong_args:?}");
        assert!(!valid(r#"{"name": "launch", "arguments": "{}"}"#, weather()).pass);
        assert!(!valid(r#"{"name": "get_weather", "arguments": "{oops"}"#, weather()).pass);
        assert!(!valid("Sure, the weather is nice.", weather()).pass);
        assert!(valid(r#"{"name": "anything", "arguments": "{}"}"#, Value::Null).pass);
    }

    #[test]
    fn bad_declarations_are_refused() {
        assert!(check(&Input::for_check("is-valid-openai-tools-call", json!("tools"))).is_err());
        assert!(check(&Input::for_check("is-valid-openai-tools-call", json!([{"function": {}}]))).is_err());
        let bad_schema = json!([{"function": {"name": "f", "parameters": {"type": 12}}}]);
        assert!(check(&Input::for_check("is-valid-openai-tools-call", bad_schema)).is_err());
    }
}
