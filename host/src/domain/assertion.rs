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

/// What grading one test's assertions cost: the grader calls of its
/// model-graded and embedding assertions, billed to the test.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GradingUsage {
    /// Completions and embedding requests made.
    pub calls: u32,
    /// Of those, answered from the response cache.
    pub cache_hits: u32,
    /// Tokens of the completions, as the grader model counted them.
    pub tokens: TokenUsage,
    /// Their cost in US dollars, when every grader model has a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// One assertion as written in a test case: `{type, value, threshold?,
/// weight?, metric?, config?, provider?}`. A `not-` prefix on `type` negates it;
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
    /// The model that grades it, for types that ask one (`llm-rubric`,
    /// `similar`...): before the test's, `--grader`'s and `DEFAULT_GRADER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<GraderModels>,
    /// promptfoo's `assert.transform`: JavaScript (an expression, or a
    /// function body that returns) of `output` and `context` whose result
    /// this assertion judges instead of the test's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
}

impl AssertionSpec {
    pub fn new(kind: &str, value: Value) -> Self {
        Self {
            kind: kind.to_string(),
            value,
            threshold: None,
            weight: None,
            metric: None,
            config: None,
            provider: None,
            transform: None,
        }
    }

    /// Whether the assertion is judged across an evaluation's pairs after
    /// they have all run (`select-best`), not with its own test.
    pub fn is_deferred(&self) -> bool {
        self.base_type().1 == SELECT_BEST
    }

    /// Whether the type reads the model call's token log-probabilities, so
    /// that its test must ask the adapter for them.
    pub fn reads_logprobs(&self) -> bool {
        LOGPROB_TYPES.contains(&self.base_type().1)
    }

    /// `(negated, base type)`: `not-contains` is `(true, "contains")`.
    pub fn base_type(&self) -> (bool, &str) {
        match self.kind.strip_prefix("not-") {
            Some(base) => (true, base),
            None => (false, self.kind.as_str()),
        }
    }
}

/// The type that compares one test's outputs across an evaluation's pairs.
pub const SELECT_BEST: &str = "select-best";

/// The built-in types that read the model call's token log-probabilities
/// (through `model-call`'s `logprobs`). Asking an adapter for them costs a
/// larger answer, so only a test with one of these asks.
pub const LOGPROB_TYPES: [&str; 2] = ["perplexity", "perplexity-score"];

/// The models that grade an assertion, as promptfoo writes a grading
/// `provider`: `"openai:gpt-4o-mini"` (both jobs), `{id: "..."}`, or
/// `{text: "...", embedding: "..."}` (a chat model for verdicts and an
/// embedding model for `similar`). Stored in its normal form,
/// `{text?, embedding?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "RawProvider")]
pub struct GraderModels {
    /// `adapter:model` of the model asked for completions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `adapter:model` of the model asked for embeddings; the text model
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<String>,
}

impl GraderModels {
    /// One model for both jobs.
    pub fn single(id: &str) -> Self {
        Self { text: Some(id.to_string()), embedding: None }
    }

    /// The model for completions.
    pub fn text_model(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The model for embeddings: the embedding model, else the text one.
    pub fn embedding_model(&self) -> Option<&str> {
        self.embedding.as_deref().or(self.text.as_deref())
    }

    /// `self`, with what it leaves unset taken from `fallback`.
    pub fn or(&self, fallback: Option<&GraderModels>) -> GraderModels {
        let Some(fallback) = fallback else { return self.clone() };
        GraderModels {
            text: self.text.clone().or_else(|| fallback.text.clone()),
            embedding: self
                .embedding
                .clone()
                .or_else(|| if self.text.is_some() { None } else { fallback.embedding.clone() }),
        }
    }
}

/// A grading provider in any of the ways promptfoo writes one.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawProvider {
    Id(String),
    Object(RawProviderObject),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProviderObject {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    text: Option<RawModelRef>,
    #[serde(default)]
    embedding: Option<RawModelRef>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawModelRef {
    Id(String),
    Object {
        id: String,
        #[serde(default, rename = "label")]
        _label: Option<String>,
    },
}

impl RawModelRef {
    fn id(self) -> String {
        match self {
            RawModelRef::Id(id) | RawModelRef::Object { id, .. } => id,
        }
    }
}

/// Why a grading provider names no usable model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GradingProviderError {
    #[error("a grading provider has either `id` or `text`/`embedding`, not both")]
    IdAndRoles,
    #[error("a grading provider names a model as `adapter:model`, e.g. `openai:gpt-4o-mini`")]
    NoModel,
}

impl TryFrom<RawProvider> for GraderModels {
    type Error = GradingProviderError;

    fn try_from(raw: RawProvider) -> Result<Self, GradingProviderError> {
        let models = match raw {
            RawProvider::Id(id) => GraderModels::single(&id),
            RawProvider::Object(o) => {
                let _ = o.label;
                if o.id.is_some() && (o.text.is_some() || o.embedding.is_some()) {
                    return Err(GradingProviderError::IdAndRoles);
                }
                GraderModels { text: o.id.or(o.text.map(RawModelRef::id)), embedding: o.embedding.map(RawModelRef::id) }
            }
        };
        let blank = |m: &Option<String>| m.as_ref().is_some_and(|m| m.trim().is_empty());
        if blank(&models.text) || blank(&models.embedding) || (models.text.is_none() && models.embedding.is_none()) {
            return Err(GradingProviderError::NoModel);
        }
        Ok(models)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grading_providers_parse_in_every_spelling_and_round_trip() {
        let parse = |v: Value| serde_json::from_value::<GraderModels>(v);
        let one = parse(serde_json::json!("ollama:llama3")).unwrap();
        assert_eq!((one.text_model(), one.embedding_model()), (Some("ollama:llama3"), Some("ollama:llama3")));
        let object = parse(serde_json::json!({"id": "openai:gpt-4o-mini", "label": "judge"})).unwrap();
        assert_eq!(object.text_model(), Some("openai:gpt-4o-mini"));
        let split = parse(serde_json::json!({"text": {"id": "ollama:llama3"}, "embedding": "ollama:nomic-embed-text"}))
            .unwrap();
        assert_eq!(
            (split.text_model(), split.embedding_model()),
            (Some("ollama:llama3"), Some("ollama:nomic-embed-text"))
        );
        assert_eq!(parse(serde_json::to_value(&split).unwrap()).unwrap(), split);
        let only_embedding = parse(serde_json::json!({"embedding": "ollama:e"})).unwrap();
        assert_eq!((only_embedding.text_model(), only_embedding.embedding_model()), (None, Some("ollama:e")));
        for bad in [
            serde_json::json!(""),
            serde_json::json!({}),
            serde_json::json!({"id": "a:b", "text": "c:d"}),
            serde_json::json!(3),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_assertions_grader_falls_back_part_by_part() {
        let default = GraderModels { text: Some("ollama:judge".into()), embedding: Some("ollama:embed".into()) };
        let own_text = GraderModels::single("openai:gpt-4o");
        // A model named for both jobs is not split by the fallback.
        assert_eq!(own_text.or(Some(&default)).embedding_model(), Some("openai:gpt-4o"));
        let own_embedding = GraderModels { text: None, embedding: Some("openai:e".into()) };
        let merged = own_embedding.or(Some(&default));
        assert_eq!((merged.text_model(), merged.embedding_model()), (Some("ollama:judge"), Some("openai:e")));
    }
}
