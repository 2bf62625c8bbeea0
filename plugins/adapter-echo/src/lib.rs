//! The `echo` model adapter: deterministic and offline.
//!
//! The model name picks a transformation of the rendered prompt:
//! `echo` / `identity` (unchanged), `upper`, `lower`, `reverse`. A chat
//! prompt echoes its last user message. `config.response` returns a fixed
//! text instead. Token counts are white-space word counts, so the `tokens`
//! assertion can be exercised offline. For demos, dry runs and tests.

use cardrun_plugin_sdk::adapter::cardrun::plugin::types::{CompletionRequest, CompletionResponse, Prompt, TokenUsage};
use cardrun_plugin_sdk::adapter::{Guest, export_model_adapter};
use cardrun_plugin_sdk::serde_json::{self, Value};

struct Echo;

impl Guest for Echo {
    fn complete(request: CompletionRequest) -> Result<CompletionResponse, String> {
        let config: Value = serde_json::from_str(&request.config).unwrap_or(Value::Null);
        let prompt = match &request.prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => {
                messages.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone()).unwrap_or_default()
            }
        };
        let text = match config.get("response").and_then(Value::as_str) {
            Some(fixed) => fixed.to_string(),
            None => transform(&request.model, &prompt)?,
        };
        let count = |s: &str| u32::try_from(s.split_whitespace().count()).unwrap_or(u32::MAX);
        Ok(CompletionResponse {
            tokens: Some(TokenUsage { prompt: count(&prompt), completion: count(&text) }),
            text,
            finish_reason: "stop".to_string(),
        })
    }

    fn warm(model: String, _config: String) -> Result<(), String> {
        transform(&model, "").map(|_| ())
    }
}

fn transform(model: &str, prompt: &str) -> Result<String, String> {
    Ok(match model {
        "" | "echo" | "identity" => prompt.to_string(),
        "upper" => prompt.to_uppercase(),
        "lower" => prompt.to_lowercase(),
        "reverse" => prompt.chars().rev().collect(),
        other => {
            return Err(format!("echo adapter has no model `{other}` (known: identity, upper, lower, reverse)"));
        }
    })
}

export_model_adapter!(Echo);
