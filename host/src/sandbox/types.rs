//! The sandbox's public request and result types (independent of the
//! generated bindings, so callers never touch wasmtime types).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::SandboxError;

/// Token counts of a model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt: u32,
    pub completion: u32,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A prompt: plain text or chat messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

/// Generation options; `None` keeps the server's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// A request to a model adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Prompt,
    pub options: GenerationOptions,
}

/// A model adapter's answer plus what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tokens: Option<TokenUsage>,
    pub finish_reason: String,
    pub fuel_used: u64,
    pub duration: Duration,
}

/// One assertion as written in a test case: `{type, value, threshold?,
/// weight?, config?}`. A `not-` prefix on `type` negates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionSpec {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

impl AssertionSpec {
    pub fn new(kind: &str, value: Value) -> Self {
        Self { kind: kind.to_string(), value, threshold: None, weight: None, config: None }
    }

    /// `(negated, base type)`: `not-contains` is `(true, "contains")`.
    pub fn base_type(&self) -> (bool, &str) {
        match self.kind.strip_prefix("not-") {
            Some(base) => (true, base),
            None => (false, self.kind.as_str()),
        }
    }
}

/// What an assertion judges: the output and the test around it.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub output: String,
    pub expected: Option<String>,
    pub test_case_id: String,
    pub variables: Vec<(String, String)>,
    pub prompt: String,
    pub latency_ms: u64,
    pub tokens: Option<TokenUsage>,
}

/// The result of one assertion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssertionOutcome {
    /// The type as written, including any `not-`.
    #[serde(rename = "type")]
    pub assertion_type: String,
    pub passed: bool,
    pub score: f64,
    pub reason: String,
    pub fuel_used: u64,
    pub duration_us: u64,
    /// Set when the assertion could not be evaluated; `passed` is then false.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "error_text")]
    pub error: Option<SandboxError>,
}

fn error_text<S: serde::Serializer>(e: &Option<SandboxError>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_str(e.code()),
        None => s.serialize_none(),
    }
}
