//! Helpers over the host's `http` capability, for model adapters.
//!
//! The host checks every URL against the adapter's allow-list, retries
//! transient failures and caps the response; these helpers only shape
//! requests and decode JSON answers.

use serde_json::Value;

use crate::adapter::cardrun::plugin::http::{self, HttpError, Request};

/// A decoded HTTP answer.
#[derive(Debug)]
pub struct JsonResponse {
    pub status: u16,
    pub body: Value,
}

/// POSTs `body` as JSON to `url` and decodes the JSON answer. A non-2xx
/// status is an error carrying the server's message.
pub fn post_json(url: &str, body: &Value) -> Result<JsonResponse, String> {
    let bytes = serde_json::to_vec(body).map_err(|e| format!("encoding request: {e}"))?;
    let response = http::send(&Request {
        method: "POST".to_string(),
        url: url.to_string(),
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: bytes,
    })
    .map_err(|e| describe_error(url, &e))?;
    let status = response.status;
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(&response.body);
        let snippet: String = text.chars().take(300).collect();
        return Err(format!("{url} answered HTTP {status}: {snippet}"));
    }
    let body = serde_json::from_slice(&response.body).map_err(|e| format!("{url} answered with invalid JSON: {e}"))?;
    Ok(JsonResponse { status, body })
}

/// A readable message for a capability error.
pub fn describe_error(url: &str, error: &HttpError) -> String {
    match error {
        HttpError::Denied(host) => format!("host `{host}` is not on this adapter's allow-list"),
        HttpError::InvalidUrl(msg) => format!("invalid URL {url}: {msg}"),
        HttpError::Timeout => format!("{url} did not answer in time"),
        HttpError::TooLarge(cap) => format!("{url} answered with more than {cap} bytes"),
        HttpError::Transport(msg) => format!("{url}: {msg}"),
    }
}

/// Joins a base URL and a path without doubling or dropping slashes.
pub fn join_url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// The `base_url` of an adapter's config (JSON, filled by the host).
pub fn config_base_url(config: &str, adapter: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(config).map_err(|e| format!("invalid adapter config: {e}"))?;
    value
        .get("base_url")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("{adapter} adapter config has no base_url"))
}

/// `{base}/v1/{path}`, or `{base}/{path}` when the base already ends in
/// `/v1` (as OpenAI-style base URLs are often written).
pub fn v1_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") { join_url(base, path) } else { join_url(base, &format!("v1/{path}")) }
}

/// Token counts at `prompt` and `completion` (JSON pointers) of an answer,
/// when the server reported either.
pub fn token_usage(
    answer: &Value,
    prompt: &str,
    completion: &str,
) -> Option<crate::adapter::cardrun::plugin::types::TokenUsage> {
    let count =
        |pointer: &str| answer.pointer(pointer).and_then(Value::as_u64).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    match (count(prompt), count(completion)) {
        (None, None) => None,
        (p, c) => Some(crate::adapter::cardrun::plugin::types::TokenUsage {
            prompt: p.unwrap_or(0),
            completion: c.unwrap_or(0),
        }),
    }
}

/// Embedding vectors from JSON arrays of numbers; anything else is an
/// error naming what was found.
pub fn vectors<'a>(items: impl Iterator<Item = &'a Value>) -> Result<Vec<Vec<f32>>, String> {
    items
        .enumerate()
        .map(|(i, item)| {
            let numbers = item.as_array().ok_or_else(|| format!("embedding {i} is not a list of numbers"))?;
            numbers
                .iter()
                .map(|n| n.as_f64().map(|f| f as f32).ok_or_else(|| format!("embedding {i} holds {n}, not a number")))
                .collect()
        })
        .collect()
}

/// The `logprob` of each token entry (`{token, logprob, ...}`), as both
/// OpenAI (`choices[0].logprobs.content`) and Ollama (`logprobs`) list them.
/// A log-probability is at most 0; anything else is refused.
pub fn logprobs(entries: &[Value]) -> Result<Vec<f64>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| match entry.get("logprob").and_then(Value::as_f64) {
            Some(p) if p <= 0.0 => Ok(p),
            _ => Err(format!("token {i} has no log-probability (a number at most 0): {entry}")),
        })
        .collect()
}
