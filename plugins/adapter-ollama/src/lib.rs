//! The `ollama` model adapter.
//!
//! Text prompts go to `POST {base_url}/api/generate`, chat prompts to
//! `POST {base_url}/api/chat`, both with `stream: false`. `warm` sends an
//! empty generate with `keep_alive`, which makes Ollama load the model.
//! `embed` (for the grader's `similar`) sends `POST {base_url}/api/embed`.
//! `base_url` comes from the adapter config (the host fills it from
//! `OLLAMA_BASE_URL`, default `http://localhost:11434`).

use cardrun_plugin_sdk::adapter::Guest;
use cardrun_plugin_sdk::adapter::cardrun::plugin::types::{
    CompletionRequest, CompletionResponse, GenerationOptions, Prompt, TokenUsage,
};
use cardrun_plugin_sdk::http::{join_url, post_json};
use cardrun_plugin_sdk::serde_json::{self, Map, Value, json};

struct Ollama;

impl Guest for Ollama {
    fn complete(request: CompletionRequest) -> Result<CompletionResponse, String> {
        generate(request, false).map(|(response, _)| response)
    }

    fn warm(model: String, config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        let body = json!({"model": model, "prompt": "", "stream": false, "keep_alive": config.keep_alive});
        post_json(&join_url(&config.base_url, "api/generate"), &body).map(|_| ())
    }
}

/// One generation (text) or chat; with `logprobs`, Ollama (0.12.11 and
/// later) is asked for each token's log-probability (`logprobs[].logprob`).
fn generate(request: CompletionRequest, logprobs: bool) -> Result<(CompletionResponse, Vec<f64>), String> {
    let config = Config::parse(&request.config)?;
    let options = options_json(&request.options);
    let (path, body) = match &request.prompt {
        Prompt::Text(prompt) => (
            "api/generate",
            json!({"model": request.model, "prompt": prompt, "stream": false, "options": options, "keep_alive": config.keep_alive}),
        ),
        Prompt::Chat(messages) => {
            let messages: Vec<Value> = messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
            (
                "api/chat",
                json!({"model": request.model, "messages": messages, "stream": false, "options": options, "keep_alive": config.keep_alive}),
            )
        }
    };
    let mut body = body;
    if logprobs {
        body["logprobs"] = json!(true);
    }
    let answer = post_json(&join_url(&config.base_url, path), &body)?.body;
    let text = match &request.prompt {
        Prompt::Text(_) => answer.get("response").and_then(Value::as_str),
        Prompt::Chat(_) => answer.pointer("/message/content").and_then(Value::as_str),
    }
    .ok_or_else(|| format!("Ollama answer has no generated text: {}", clip(&answer)))?
    .to_string();
    let count = |key: &str| answer.get(key).and_then(Value::as_u64).map(saturate);
    let tokens = match (count("prompt_eval_count"), count("eval_count")) {
        (None, None) => None,
        (p, c) => Some(TokenUsage { prompt: p.unwrap_or(0), completion: c.unwrap_or(0) }),
    };
    let finish_reason = answer.get("done_reason").and_then(Value::as_str).unwrap_or("stop").to_string();
    let logprobs = if logprobs {
        let entries = answer.get("logprobs").and_then(Value::as_array).ok_or_else(|| {
            format!(
                "Ollama returned no log-probabilities (`logprobs`; it needs Ollama 0.12.11 or later): {}",
                clip(&answer)
            )
        })?;
        cardrun_plugin_sdk::http::logprobs(entries)?
    } else {
        Vec::new()
    };
    Ok((CompletionResponse { text, tokens, finish_reason }, logprobs))
}

struct Config {
    base_url: String,
    keep_alive: Value,
}

impl Config {
    fn parse(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid adapter config: {e}"))?;
        let base_url =
            value.get("base_url").and_then(Value::as_str).ok_or("ollama adapter config has no base_url")?.to_string();
        let keep_alive = value.get("keep_alive").cloned().unwrap_or_else(|| json!("5m"));
        Ok(Self { base_url, keep_alive })
    }
}

fn options_json(o: &GenerationOptions) -> Value {
    let mut map = Map::new();
    if let Some(t) = o.temperature {
        map.insert("temperature".into(), json!(t));
    }
    if let Some(p) = o.top_p {
        map.insert("top_p".into(), json!(p));
    }
    if let Some(n) = o.max_tokens {
        map.insert("num_predict".into(), json!(n));
    }
    if let Some(s) = o.seed {
        map.insert("seed".into(), json!(s));
    }
    if !o.stop.is_empty() {
        map.insert("stop".into(), json!(o.stop));
    }
    Value::Object(map)
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn clip(v: &Value) -> String {
    v.to_string().chars().take(200).collect()
}

impl cardrun_plugin_sdk::logprob_adapter::Guest for Ollama {
    fn complete_with_logprobs(request: CompletionRequest) -> Result<(CompletionResponse, Vec<f64>), String> {
        generate(request, true)
    }

    fn complete(request: CompletionRequest) -> Result<CompletionResponse, String> {
        <Self as Guest>::complete(request)
    }

    fn warm(model: String, config: String) -> Result<(), String> {
        <Self as Guest>::warm(model, config)
    }

    fn embed(model: String, texts: Vec<String>, config: String) -> Result<Vec<Vec<f32>>, String> {
        let config = Config::parse(&config)?;
        let body = json!({"model": model, "input": texts, "keep_alive": config.keep_alive});
        let answer = post_json(&join_url(&config.base_url, "api/embed"), &body)?.body;
        let vectors = answer
            .get("embeddings")
            .ok_or_else(|| format!("Ollama embed answer has no `embeddings`: {}", clip(&answer)))?;
        cardrun_plugin_sdk::http::vectors(vectors.as_array().map(Vec::as_slice).unwrap_or_default().iter())
    }
}

cardrun_plugin_sdk::logprob_adapter::export_logprob_adapter!(Ollama);
