//! The `openai` model adapter: any OpenAI-compatible server.
//!
//! Sends `POST {base_url}/v1/chat/completions` (a `base_url` that already
//! ends in `/v1` is not doubled). A text prompt becomes one user message.
//! The API key never reaches this plugin: the host adds the
//! `Authorization` header to requests bound for the configured server.

use cardrun_plugin_sdk::adapter::Guest;
use cardrun_plugin_sdk::adapter::cardrun::plugin::types::{CompletionRequest, CompletionResponse, Prompt};
use cardrun_plugin_sdk::http::{config_base_url, post_json, token_usage, v1_url};
use cardrun_plugin_sdk::serde_json::{Value, json};

struct OpenAi;

impl Guest for OpenAi {
    fn complete(request: CompletionRequest) -> Result<CompletionResponse, String> {
        chat(request, false).map(|(response, _)| response)
    }

    /// OpenAI-compatible servers load models on their own; nothing to do
    /// beyond checking the configuration.
    fn warm(_model: String, config: String) -> Result<(), String> {
        config_base_url(&config, "openai").map(|_| ())
    }
}

/// One chat completion; with `logprobs`, the server is asked for each
/// token's log-probability (`choices[0].logprobs.content[].logprob`).
fn chat(request: CompletionRequest, logprobs: bool) -> Result<(CompletionResponse, Vec<f64>), String> {
    let base_url = config_base_url(&request.config, "openai")?;
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
    if logprobs {
        body["logprobs"] = json!(true);
    }
    let answer = post_json(&v1_url(&base_url, "chat/completions"), &body)?.body;
    let choice = answer.pointer("/choices/0").ok_or_else(|| format!("answer has no choices: {}", clip(&answer)))?;
    let text = choice.pointer("/message/content").and_then(Value::as_str).unwrap_or_default().to_string();
    let finish_reason = choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop").to_string();
    let tokens = token_usage(&answer, "/usage/prompt_tokens", "/usage/completion_tokens");
    let logprobs = if logprobs {
        let content = choice.pointer("/logprobs/content").and_then(Value::as_array).ok_or_else(|| {
            format!("the server returned no log-probabilities (`choices[0].logprobs.content`): {}", clip(&answer))
        })?;
        cardrun_plugin_sdk::http::logprobs(content)?
    } else {
        Vec::new()
    };
    Ok((CompletionResponse { text, tokens, finish_reason }, logprobs))
}

fn clip(v: &Value) -> String {
    v.to_string().chars().take(200).collect()
}

impl cardrun_plugin_sdk::logprob_adapter::Guest for OpenAi {
    fn complete_with_logprobs(request: CompletionRequest) -> Result<(CompletionResponse, Vec<f64>), String> {
        chat(request, true)
    }

    fn complete(request: CompletionRequest) -> Result<CompletionResponse, String> {
        <Self as Guest>::complete(request)
    }

    fn warm(model: String, config: String) -> Result<(), String> {
        <Self as Guest>::warm(model, config)
    }

    /// `POST {base_url}/v1/embeddings`; the vectors come back in `data`,
    /// each with its `index`.
    fn embed(model: String, texts: Vec<String>, config: String) -> Result<Vec<Vec<f32>>, String> {
        let base_url = config_base_url(&config, "openai")?;
        let body = serde_json::json!({"model": model, "input": texts});
        let answer = post_json(&v1_url(&base_url, "embeddings"), &body)?.body;
        let mut data: Vec<&Value> = answer
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("OpenAI embeddings answer has no `data`: {}", clip(&answer)))?
            .iter()
            .collect();
        data.sort_by_key(|d| d.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX));
        cardrun_plugin_sdk::http::vectors(data.iter().map(|d| d.get("embedding").unwrap_or(&Value::Null)))
    }
}

cardrun_plugin_sdk::logprob_adapter::export_logprob_adapter!(OpenAi);
