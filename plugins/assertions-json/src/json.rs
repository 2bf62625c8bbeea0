//! JSON checks: is-json, contains-json, json-schema.

use cardrun_plugin_sdk::{Input, Verdict};
use serde_json::Value;

/// `is-json`: the whole output is JSON; with a `value`, it also matches that
/// JSON Schema.
pub fn is_json(input: &Input) -> Result<Verdict, String> {
    match serde_json::from_str::<Value>(input.output().trim()) {
        Ok(doc) => check_optional_schema(input, &doc, "output is valid JSON"),
        Err(e) => Ok(Verdict::fail(format!("output is not valid JSON: {e}"))),
    }
}

/// `contains-json`: some JSON object or array appears in the output, in
/// prose or in a ``` code fence; with a `value`, one of them matches that
/// JSON Schema.
pub fn contains_json(input: &Input) -> Result<Verdict, String> {
    let found = extract_json(input.output());
    if found.is_empty() {
        return Ok(Verdict::fail("output contains no JSON object or array"));
    }
    if input.value().is_null() {
        return Ok(Verdict::pass(format!("output contains {} JSON value(s)", found.len())));
    }
    let validator = compile_schema(input.value())?;
    let mut last_error = String::new();
    for doc in &found {
        match first_error(&validator, doc) {
            None => return Ok(Verdict::pass("output contains JSON matching the schema")),
            Some(e) => last_error = e,
        }
    }
    Ok(Verdict::fail(format!("no JSON in the output matches the schema: {last_error}")))
}

/// `json-schema`: the output is JSON that validates against `value`, a JSON
/// Schema (draft 2020-12 unless the schema's `$schema` names another draft).
/// `config.extract: true` looks for the JSON inside prose first.
pub fn json_schema(input: &Input) -> Result<Verdict, String> {
    if input.value().is_null() {
        return Err("`json-schema` needs a JSON Schema as its value".to_string());
    }
    let validator = compile_schema(input.value())?;
    let doc = if input.flag("extract") {
        match extract_json(input.output()).into_iter().next() {
            Some(doc) => doc,
            None => return Ok(Verdict::fail("output contains no JSON")),
        }
    } else {
        match serde_json::from_str::<Value>(input.output().trim()) {
            Ok(doc) => doc,
            Err(e) => return Ok(Verdict::fail(format!("output is not valid JSON: {e}"))),
        }
    };
    Ok(match first_error(&validator, &doc) {
        None => Verdict::pass("output matches the schema"),
        Some(e) => Verdict::fail(format!("schema violation: {e}")),
    })
}

/// The parameters alone: the schema, where one is given (required by
/// `json-schema`), compiles. Evaluating an empty output would not tell,
/// because a non-JSON output fails before the schema is read.
pub fn check(input: &Input) -> Result<(), String> {
    match input.assertion_type() {
        "json-schema" if input.value().is_null() => Err("`json-schema` needs a JSON Schema as its value".to_string()),
        "is-json" | "contains-json" | "json-schema" if input.value().is_null() => Ok(()),
        "is-json" | "contains-json" | "json-schema" => compile_schema(input.value()).map(|_| ()),
        other => Err(format!("unknown assertion type `{other}`")),
    }
}

fn check_optional_schema(input: &Input, doc: &Value, ok: &str) -> Result<Verdict, String> {
    if input.value().is_null() {
        return Ok(Verdict::pass(ok));
    }
    let validator = compile_schema(input.value())?;
    Ok(match first_error(&validator, doc) {
        None => Verdict::pass(format!("{ok} and matches the schema")),
        Some(e) => Verdict::fail(format!("schema violation: {e}")),
    })
}

pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    let mut options = jsonschema::options();
    if schema.get("$schema").is_none() {
        options = options.with_draft(jsonschema::Draft::Draft202012);
    }
    options.build(schema).map_err(|e| format!("invalid JSON Schema: {e}"))
}

pub fn first_error(validator: &jsonschema::Validator, doc: &Value) -> Option<String> {
    validator.iter_errors(doc).next().map(|e| {
        let path = e.instance_path().to_string();
        if path.is_empty() { e.to_string() } else { format!("{e} at {path}") }
    })
}

/// Finds JSON objects and arrays in free text: fenced blocks first, then
/// every balanced `{...}` / `[...]` span that parses.
pub fn extract_json(text: &str) -> Vec<Value> {
    let mut found = Vec::new();
    for block in fenced_blocks(text) {
        if let Ok(v) = serde_json::from_str::<Value>(block.trim())
            && (v.is_object() || v.is_array())
        {
            found.push(v);
        }
    }
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if (bytes[start] == b'{' || bytes[start] == b'[')
            && let Some(end) = balanced_end(bytes, start)
            && let Ok(v) = serde_json::from_str::<Value>(&text[start..=end])
        {
            found.push(v);
            start = end + 1;
            continue;
        }
        start += 1;
    }
    found
}

fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        // Skip an info string such as `json` up to the end of the line.
        let body_start = after.find('\n').map_or(after.len(), |n| n + 1);
        let body = &after[body_start..];
        match body.find("```") {
            Some(close) => {
                blocks.push(&body[..close]);
                rest = &body[close + 3..];
            }
            None => break,
        }
    }
    blocks
}

/// The index of the bracket closing the one at `start`, skipping strings.
fn balanced_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: &str, output: &str, value: Value) -> Result<Verdict, String> {
        crate::evaluate(&Input::new(t, output, value))
    }

    #[test]
    fn check_compiles_the_schema_without_an_output() {
        let check = |t: &str, value: Value| check(&Input::new(t, "", value));
        assert!(check("is-json", Value::Null).is_ok());
        assert!(check("contains-json", json!({"type": "object"})).is_ok());
        assert!(check("json-schema", Value::Null).unwrap_err().contains("needs a JSON Schema"));
        for t in ["is-json", "contains-json", "json-schema"] {
            let err = check(t, json!({"type": "no-such-type"})).unwrap_err();
            assert!(err.contains("invalid JSON Schema"), "{t}: {err}");
        }
    }

    #[test]
    fn is_json_plain_and_with_schema() {
        assert!(run("is-json", "{\"a\":1}", Value::Null).unwrap().pass);
        assert!(!run("is-json", "{a:1}", Value::Null).unwrap().pass);
        let schema = json!({"type": "object", "required": ["b"]});
        assert!(!run("is-json", "{\"a\":1}", schema).unwrap().pass);
    }

    #[test]
    fn contains_json_in_prose_and_fences() {
        let prose = "Sure! Here you go: {\"name\": \"Ada\", \"tags\": [\"x\"]} Hope it helps.";
        assert!(run("contains-json", prose, Value::Null).unwrap().pass);
        let fenced = "Result:\n```json\n[1, 2, 3]\n```\n";
        assert!(run("contains-json", fenced, Value::Null).unwrap().pass);
        assert!(!run("contains-json", "no json { here", Value::Null).unwrap().pass);
        let schema = json!({"type": "object", "required": ["name"]});
        assert!(run("contains-json", prose, schema.clone()).unwrap().pass);
        assert!(!run("contains-json", fenced, schema).unwrap().pass);
    }

    #[test]
    fn json_schema_2020_12() {
        let schema = json!({
            "type": "object",
            "properties": {"age": {"type": "integer", "minimum": 0}},
            "required": ["age"],
            // prefixItems is 2020-12 only: proves the draft in use.
            "$defs": {"pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false}}
        });
        assert!(run("json-schema", "{\"age\": 3}", schema.clone()).unwrap().pass);
        let bad = run("json-schema", "{\"age\": -1}", schema.clone()).unwrap();
        assert!(!bad.pass);
        assert!(bad.reason.contains("age"), "{}", bad.reason);
        let pair = json!({"$ref": "#/$defs/pair", "$defs": schema["$defs"].clone()});
        assert!(run("json-schema", "[\"a\", 1]", pair.clone()).unwrap().pass);
        assert!(!run("json-schema", "[\"a\", 1, 2]", pair).unwrap().pass);
        assert!(run("json-schema", "{}", json!({"type": 12})).is_err());
        assert!(run("json-schema", "{}", Value::Null).is_err());
    }

    #[test]
    fn unknown_type_lists_known_ones() {
        let err = run("vibes", "x", Value::Null).unwrap_err();
        assert!(err.contains("is-json") && err.contains("json-schema"), "{err}");
    }
}
