//! promptfoo's `rubricPrompt`: a grading prompt of the suite's own in place
//! of cardrun's, given as `config.rubricPrompt` (a suite's `rubricPrompt`
//! on an assertion, or `options.rubricPrompt` on a test, lands there). It is
//! text, or a list of `{role, content}` messages (also as JSON text), with
//! `{{ name }}` placeholders filled from the type's fields and the test's
//! variables. A name that is neither is an error when the assertion is
//! evaluated (a check, which has no variables, looks at the shape only), so
//! a typo cannot send the grader an empty rubric. The grader must answer as cardrun's own prompt
//! for the type asks (README, "Assertions").

use cardrun_plugin_sdk::Input;
use cardrun_plugin_sdk::serde_json::{self, Value};

/// A custom grading prompt, filled in.
#[derive(Debug, Clone, PartialEq)]
pub enum Custom {
    Text(String),
    Chat(Vec<(String, String)>),
}

/// The key in `config`.
pub const KEY: &str = "rubricPrompt";

/// The assertion's custom prompt with `fields` (and the test's vars)
/// filled in; `None` without one.
pub fn prompt(input: &Input, fields: &[(&str, &str)]) -> Result<Option<Custom>, String> {
    read(input, fields, true)
}

/// Checks the shape of the assertion's custom prompt, without variables to
/// fill it with.
pub fn check(input: &Input) -> Result<(), String> {
    read(input, &[], false).map(|_| ())
}

fn read(input: &Input, fields: &[(&str, &str)], strict: bool) -> Result<Option<Custom>, String> {
    let Some(raw) = input.config().get(KEY) else { return Ok(None) };
    let fill = |text: &str| fill(text, fields, input.variables(), strict);
    let messages = match raw {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(list @ Value::Array(_)) => list,
            _ => return fill(text).map(|t| Some(Custom::Text(t))),
        },
        list @ Value::Array(_) => list.clone(),
        other => return Err(format!("`{KEY}` is text or a list of {{role, content}} messages, not {other}")),
    };
    let Value::Array(items) = messages else { return Ok(None) };
    if items.is_empty() {
        return Err(format!("`{KEY}` is an empty list of messages"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let role = item.get("role").and_then(Value::as_str);
        let content = item.get("content").and_then(Value::as_str);
        match (role, content) {
            (Some(role @ ("system" | "user" | "assistant")), Some(content)) => {
                out.push((role.to_string(), fill(content)?));
            }
            _ => return Err(format!("`{KEY}` message {i} must be {{role: system|user|assistant, content: text}}")),
        }
    }
    Ok(Some(Custom::Chat(out)))
}

/// `text` with each `{{ name }}` replaced.
fn fill(text: &str, fields: &[(&str, &str)], vars: &[(String, String)], strict: bool) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| format!("`{KEY}` has a `{{{{` without its `}}}}`"))?;
        let name = after[..end].trim();
        let value = fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .or_else(|| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()))
            .or(if strict { None } else { Some("") })
            .ok_or_else(|| {
                let known: Vec<&str> =
                    fields.iter().map(|(n, _)| *n).chain(vars.iter().map(|(n, _)| n.as_str())).collect();
                format!("`{KEY}` names `{{{{ {name} }}}}`, which is not one of {}", known.join(", "))
            })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardrun_plugin_sdk::serde_json::json;

    fn with(config: Value) -> Input {
        Input::new("llm-rubric", "out", json!("be kind")).with_config(config).with_variables(&[("topic", "cats")])
    }

    #[test]
    fn text_and_messages_are_filled_from_fields_and_vars() {
        let fields = [("output", "OUT"), ("rubric", "RUB")];
        let text = prompt(&with(json!({"rubricPrompt": "Grade {{output}} by {{ rubric }} on {{topic}}."})), &fields);
        assert_eq!(text.unwrap(), Some(Custom::Text("Grade OUT by RUB on cats.".into())));
        let chat = json!({"rubricPrompt": [{"role": "system", "content": "Judge {{rubric}}"}, {"role": "user", "content": "{{output}}"}]});
        assert_eq!(
            prompt(&with(chat), &fields).unwrap(),
            Some(Custom::Chat(vec![("system".into(), "Judge RUB".into()), ("user".into(), "OUT".into())]))
        );
        let as_json = json!({"rubricPrompt": r#"[{"role": "user", "content": "{{output}}"}]"#});
        assert_eq!(prompt(&with(as_json), &fields).unwrap(), Some(Custom::Chat(vec![("user".into(), "OUT".into())])));
        assert_eq!(prompt(&with(json!({})), &fields).unwrap(), None);
    }

    #[test]
    fn unknown_names_and_bad_shapes_are_errors() {
        let fields = [("output", "OUT")];
        let typo = prompt(&with(json!({"rubricPrompt": "{{ outptu }}"})), &fields).unwrap_err();
        assert!(typo.contains("outptu") && typo.contains("output, topic"), "{typo}");
        assert!(prompt(&with(json!({"rubricPrompt": "{{ output "})), &fields).is_err());
        assert!(check(&with(json!({"rubricPrompt": "{{ any_var }}"}))).is_ok(), "a check has no vars");
        assert!(check(&with(json!({"rubricPrompt": "{{ any_var "}))).is_err());
        assert!(prompt(&with(json!({"rubricPrompt": [{"role": "robot", "content": "x"}]})), &fields).is_err());
        assert!(prompt(&with(json!({"rubricPrompt": 3})), &fields).is_err());
    }
}
