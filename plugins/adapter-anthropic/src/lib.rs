//! The `anthropic` model adapter: Anthropic's Messages API.
//!
//! Sends `POST {base_url}/v1/messages`. System messages of a chat prompt go
//! to the request's `system` field (joined by blank lines), the others to
//! `messages`; a text prompt becomes one user message. `max_tokens`, which
//! the API requires, defaults to 1024. Anthropic has no `seed`, so a seed
//! is not sent. The API key (`x-api-key`) and `anthropic-version` never
//! come from this plugin: the host adds them to requests bound for the
//! configured server.

use cardrun_plugin_sdk::adapter::cardrun::plugin::types::{CompletionRequest, CompletionResponse, Prompt};
use cardrun_plugin_sdk::adapter::{Guest, export_model_adapter};
use cardrun_plugin_sdk::http::{config_base_url, post_json, token_usage, v1_url};
use cardrun_plugin_sdk::serde_json::{Value, json};

/// The answer length when the request gives none (the API requires one).
const DEFAULT_MAX_TOKENS: u32 = 1024;

struct Anthropic;

impl Guest for Anthropic {
    fn complete(request: CompletionRequest) -> Result<CompletionResponse, String> {
        let base_url = config_base_url(&request.config, "anthropic")?;
        let (system, messages): (Vec<String>, Vec<Value>) = match &request.prompt {
            Prompt::Text(text) => (vec![], vec![json!({"role": "user", "content": text})]),
            Prompt::Chat(messages) => {
                let system = messages.iter().filter(|m| m.role == "system").map(|m| m.content.clone()).collect();
                let rest = messages
                    .iter()
                    .filter(|m| m.role != "system")
                    .map(|m| json!({"role": m.role, "content": m.content}))
                    .collect();
                (system, rest)
            }
        };
        if messages.is_empty() {
            return Err("the Messages API needs at least one user or assistant message".to_string());
        }
        let o = &request.options;
        let mut body = json!({
            "model": request.model,
            "max_tokens": o.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "messages": messages,
        });
        if !system.is_empty() {
            body["system"] = json!(system.join("\n\n"));
        }
        if let Some(t) = o.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(p) = o.top_p {
            body["top_p"] = json!(p);
        }
        if !o.stop.is_empty() {
            body["stop_sequences"] = json!(o.stop);
        }
        let answer = post_json(&v1_url(&base_url, "messages"), &body)?.body;
        let content = answer.get("content").and_then(Value::as_array).ok_or_else(|| {
            format!("answer has no content: {}", answer.to_string().chars().take(200).collect::<String>())
        })?;
        let text: String = content
            .iter()
            .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .collect();
        let finish_reason = answer.get("stop_reason").and_then(Value::as_str).unwrap_or("end_turn").to_string();
        let tokens = token_usage(&answer, "/usage/input_tokens", "/usage/output_tokens");
        Ok(CompletionResponse { text, tokens, finish_reason })
    }

    /// The API loads models on its own; nothing to do beyond checking the
    /// configuration.
    fn warm(_model: String, config: String) -> Result<(), String> {
        config_base_url(&config, "anthropic").map(|_| ())
    }
}

export_model_adapter!(Anthropic);
