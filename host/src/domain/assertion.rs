//! Assertions as written in test cases, and the token counts results carry.
//! Shared by the store, the queue's job payloads and the sandbox.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Token counts of a model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenUsage {
    pub prompt: u32,
    pub completion: u32,
}

/// One assertion as written in a test case: `{type, value, threshold?,
/// weight?, metric?, config?}`. A `not-` prefix on `type` negates it;
/// `metric` names a group that reports total per-metric pass rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

impl AssertionSpec {
    pub fn new(kind: &str, value: Value) -> Self {
        Self { kind: kind.to_string(), value, threshold: None, weight: None, metric: None, config: None }
    }

    /// `(negated, base type)`: `not-contains` is `(true, "contains")`.
    pub fn base_type(&self) -> (bool, &str) {
        match self.kind.strip_prefix("not-") {
            Some(base) => (true, base),
            None => (false, self.kind.as_str()),
        }
    }
}
