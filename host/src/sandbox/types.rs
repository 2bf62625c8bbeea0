//! The sandbox's public request and result types (independent of the
//! generated bindings, so callers never touch wasmtime types).

use std::time::Duration;

use serde::Serialize;

use super::error::SandboxError;
use crate::domain::AssertionResult;
pub use crate::domain::{AssertionSpec, ChatMessage, GenerationOptions, Prompt, TokenUsage};

/// A request to a model adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Prompt,
    pub options: GenerationOptions,
    /// Ask the adapter for each token's log-probability too (its
    /// `complete-with-logprobs`); only for tests with a type that reads
    /// them.
    pub logprobs: bool,
}

/// A model adapter's answer plus what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tokens: Option<TokenUsage>,
    pub finish_reason: String,
    /// Each generated token's log-probability, when they were asked for.
    pub logprobs: Option<Vec<f64>>,
    pub fuel_used: u64,
    pub duration: Duration,
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
    /// Why the model stopped (`stop`, `length`...), as its server said;
    /// shared, not copied, with each assertion that reads it.
    pub finish_reason: std::sync::Arc<str>,
    /// What the model call cost in US dollars, when its price is known.
    pub cost: Option<f64>,
    /// Each generated token's log-probability, when the test asked for
    /// them; shared, not copied, with each assertion that reads them.
    pub logprobs: Option<std::sync::Arc<[f64]>>,
}

impl Subject {
    /// What a transform sees as `context`, as promptfoo gives it: the
    /// test's vars, the prompt, and the test (its vars and expected output).
    pub fn script_context(&self) -> serde_json::Value {
        let vars: serde_json::Map<String, serde_json::Value> = self
            .variables
            .iter()
            .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
            .collect();
        let mut test = serde_json::Map::new();
        test.insert("vars".into(), serde_json::Value::Object(vars.clone()));
        if let Some(expected) = &self.expected {
            test.insert("expected".into(), serde_json::Value::String(expected.clone()));
        }
        let mut context = serde_json::Map::new();
        context.insert("vars".into(), serde_json::Value::Object(vars));
        context.insert("prompt".into(), serde_json::Value::String(self.prompt.clone()));
        context.insert("test".into(), serde_json::Value::Object(test));
        serde_json::Value::Object(context)
    }
}

/// The version of an uploaded plugin a test was planned with, for one
/// assertion type: replacing the plugin later does not change what judges
/// a test already queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PluginPin {
    /// The type, without `not-`.
    pub assertion_type: String,
    /// SHA-256 of the component that provided it.
    pub hash: String,
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

impl From<AssertionOutcome> for AssertionResult {
    fn from(o: AssertionOutcome) -> Self {
        Self {
            assertion_type: o.assertion_type,
            passed: o.passed,
            score: o.score,
            reason: o.reason,
            fuel_used: o.fuel_used,
            duration_us: o.duration_us,
            error: o.error.map(|e| e.code().to_string()),
            metric: None,
            pending: false,
        }
    }
}
