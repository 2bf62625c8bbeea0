//! The `openai` model adapter: any OpenAI-compatible server.
//!
//! Sends `POST {base_url}/v1/chat/completions` (a `base_url` that already
//! ends in `/v1` is not doubled). A text prompt becomes one user message.
//! The API key never reaches this plugin: the host adds the
//! `Authorization` header to requests bound for the configured server.

use cardrun_plugin_sdk::adapter::cardrun::plugin::types::{CompletionRequest, CompletionResponse, Prompt, TokenUsage};
use cardrun_plugin_sdk::adapter::{Guest, export_model_adapter};
use cardrun_plugin_sdk::http::{join_url, post_json};
use cardrun_plugin_sdk::serde_json::{self, Value, json};

struct OpenAi;

impl Guest for OpenAi {
    fn complete(request: CompletionRequest) -> Result<CompletionResponse, String> {
        let base_url = base_url(&request.config)?;
        let messages: Vec<Value> = match &request.prompt {
            Prompt::Text(text) => vec![json!({"role": "user", "content": text})],
            Prompt::Chat(messages) => messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect(),
        };
        let mut body = json!({"model": request.model, "messages": messages});
        let o = &request.options;
        if let Some(t) = o.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(p) = o.top_p {
            body["top_p"] = json!(p);
        }
        if let Some(n) = o.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if let Some(s) = o.seed {
            body["seed"] = json!(s);
        }
        if !o.stop.is_empty() {
            body["stop"] = json!(o.stop);
        }
        let answer = post_json(&completions_url(&base_url), &body)?.body;
        let choice = answer.pointer("/choices/0").ok_or_else(|| format!("answer has no choices: {}", clip(&answer)))?;
        let text = choice.pointer("/message/content").and_then(Value::as_str).unwrap_or_default().to_string();
        let finish_reason = choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop").to_string();
        let usage = |key: &str| {
            answer
                .pointer(&format!("/usage/{key}"))
                .and_then(Value::as_u64)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        let tokens = match (usage("prompt_tokens"), usage("completion_tokens")) {
            (None, None) => None,
            (p, c) => Some(TokenUsage { prompt: p.unwrap_or(0), completion: c.unwrap_or(0) }),
        };
        Ok(CompletionResponse { text, tokens, finish_reason })
    }

    /// OpenAI-compatible servers load models on their own; nothing to do
    /// beyond checking the configuration.
    fn warm(_model: String, config: String) -> Result<(), String> {
        base_url(&config).map(|_| ())
    }
}

fn base_url(config: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(config).map_err(|e| format!("invalid adapter config: {e}"))?;
    value
        .get("base_url")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "openai adapter config has no base_url".to_string())
}

fn completions_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") { join_url(base, "chat/completions") } else { join_url(base, "v1/chat/completions") }
}

fn clip(v: &Value) -> String {
    v.to_string().chars().take(200).collect()
}

export_model_adapter!(OpenAi);
