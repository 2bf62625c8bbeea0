//! The suite file as written: promptfoo's configuration format (its
//! configuration reference is the specification), plus `expected` on a
//! test. Polymorphic parts stay JSON values here; `prompts.rs`,
//! `providers.rs` and `test_cases.rs` interpret them with messages that name the
//! place of each problem.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

/// The top level of a suite.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSuite {
    #[serde(default)]
    pub description: Option<String>,
    /// Keys the card instead of the description when importing again.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub prompts: Option<Value>,
    #[serde(default)]
    pub providers: Option<Value>,
    #[serde(default)]
    pub tests: Option<Value>,
    #[serde(default)]
    pub default_test: Option<Value>,
    #[serde(default)]
    pub assertion_templates: Option<Map<String, Value>>,
    // Descriptive only: read and left alone.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and left alone")]
    pub tags: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and left alone")]
    pub metadata: Option<IgnoredAny>,
    /// Where promptfoo writes results; `cardrun run --output` does that.
    #[serde(default)]
    pub output_path: Option<Value>,
    #[serde(default)]
    pub evaluate_options: Option<Value>,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and left alone")]
    pub sharing: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and left alone")]
    pub write_latest_results: Option<IgnoredAny>,
    /// Custom template filters: name -> JavaScript file.
    #[serde(default)]
    pub nunjucks_filters: Option<Value>,
    // Known to promptfoo, not built here yet: each is a clear error.
    #[serde(default)]
    pub scenarios: Option<Value>,
    #[serde(default)]
    pub extensions: Option<Value>,
    #[serde(default)]
    pub env: Option<Value>,
    #[serde(default)]
    pub derived_metrics: Option<Value>,
    #[serde(default)]
    pub redteam: Option<Value>,
}

impl RawSuite {
    /// Top-level keys promptfoo knows that cardrun does not run yet, with
    /// the reason.
    pub fn unsupported(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        let js = "it needs JavaScript, which arrives with the JavaScript evaluators";
        for (present, key, why) in [
            (self.scenarios.is_some(), "scenarios", "not supported yet; write the combinations as tests"),
            (self.extensions.is_some(), "extensions", js),
            (self.env.is_some(), "env", "set environment variables for the cardrun process instead"),
            (self.derived_metrics.is_some(), "derivedMetrics", "not supported yet"),
            (self.redteam.is_some(), "redteam", "red-teaming is not part of cardrun"),
        ] {
            if present {
                out.push((key, why));
            }
        }
        out
    }
}

/// serde's "unknown field `asert`, expected one of `a`, `b`" with "; did
/// you mean `assert`?" when one of them is close.
pub fn suggest_field(message: &str) -> String {
    let parse = || {
        let (_, rest) = message.split_once("unknown field `")?;
        let (field, rest) = rest.split_once('`')?;
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let best = crate::domain::closest(field, &expected)?;
        let (head, tail) = message.split_at(message.find(" at line ").unwrap_or(message.len()));
        Some(format!("{head}; did you mean `{best}`?{tail}"))
    };
    parse().unwrap_or_else(|| message.to_string())
}

/// An object's keys outside `known`, each as a problem with a did-you-mean.
pub fn unknown_keys(object: &Map<String, Value>, known: &[&str], place: &str) -> Vec<String> {
    object
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| {
            let hint = crate::domain::closest(k, known).map_or_else(String::new, |b| format!("; did you mean `{b}`?"));
            format!("{place}: unknown field `{k}`, expected one of {}{hint}", quoted(known))
        })
        .collect()
}

pub fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// What a JSON value is, in words ("a list", "a number").
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The path of a `file://` reference, if `text` is one.
pub fn file_ref(text: &str) -> Option<&str> {
    text.strip_prefix("file://").map(str::trim)
}
