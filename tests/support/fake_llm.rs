//! A fake Ollama / OpenAI-compatible / Anthropic model server for tests.
//!
//! It speaks the real wire formats (`/api/generate`, `/api/chat`,
//! `/v1/chat/completions`, `/v1/messages`), so cardrun's adapters take the same code path
//! as against a real server. Behaviour is scripted per server: latency, a
//! number of leading failures (status and `Retry-After`), and the answer
//! (echo of the prompt, a fixed text, or a per-prompt table).
//!
//! Grader mode: a grading prompt holding a marker `[[grade:VERDICT]]` (put
//! in a rubric, or in the output being graded) is answered with a verdict in
//! prose around JSON, for every model-graded type at once: `pass`, `fail`,
//! `score=0.4`, `category=D`, `questions=TEXT`, or `malformed` (prose with
//! no JSON). Embeddings (`/api/embed`, `/v1/embeddings`) are bags of words
//! hashed into 32 dimensions, so texts sharing words are similar.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
    /// Every header, lower-cased names.
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Script {
    latency_ms: AtomicU64,
    fail_first: AtomicUsize,
    fail_status: Mutex<(u16, Option<String>)>,
    fixed: Mutex<Option<String>>,
    answers: Mutex<HashMap<String, String>>,
    once: Mutex<HashMap<String, Vec<String>>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A running fake server; dropped with the test's runtime.
#[derive(Clone)]
pub struct FakeLlm {
    pub addr: SocketAddr,
    script: Arc<Script>,
}

impl FakeLlm {
    /// Starts a server on a free loopback port.
    pub async fn start() -> Self {
        let script = Arc::new(Script::default());
        *script.fail_status.lock().unwrap() = (503, None);
        let app = Router::new()
            .route("/api/generate", post(generate))
            .route("/api/chat", post(chat))
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/api/embed", post(ollama_embed))
            .route("/v1/embeddings", post(openai_embeddings))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, script }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every answer waits this long.
    pub fn set_latency(&self, ms: u64) {
        self.script.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// The next `n` requests fail with `status` (and `Retry-After`).
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<&str>) {
        *self.script.fail_status.lock().unwrap() = (status, retry_after.map(str::to_string));
        self.script.fail_first.store(n, Ordering::SeqCst);
    }

    /// Answer every prompt with `text` (`None`: echo the prompt).
    pub fn set_fixed(&self, text: Option<&str>) {
        *self.script.fixed.lock().unwrap() = text.map(str::to_string);
    }

    /// Answer `prompt` with `text`.
    pub fn answer(&self, prompt: &str, text: &str) {
        self.script.answers.lock().unwrap().insert(prompt.to_string(), text.to_string());
    }

    /// Answer `prompt` with `text` once (before any other rule); several
    /// calls queue several one-shot answers.
    pub fn answer_once(&self, prompt: &str, text: &str) {
        self.script.once.lock().unwrap().entry(prompt.to_string()).or_default().push(text.to_string());
    }

    /// Prompts of the completion requests seen, in arrival order (warm-ups,
    /// which have an empty prompt, left out).
    pub fn prompts(&self) -> Vec<String> {
        self.seen()
            .iter()
            .filter_map(|s| match s.path.as_str() {
                "/api/generate" => s.body["prompt"].as_str().map(str::to_string),
                "/api/embed" | "/v1/embeddings" => None,
                _ => Some(last_user(&s.body["messages"])),
            })
            .filter(|p| !p.is_empty())
            .collect()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.script.seen.lock().unwrap().len()
    }

    /// The most requests that were being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.script.max_in_flight.load(Ordering::SeqCst)
    }

    /// Starts [`FakeLlm::max_in_flight`] again from what is in flight now.
    pub fn reset_max_in_flight(&self) {
        let now = self.script.in_flight.load(Ordering::SeqCst);
        self.script.max_in_flight.store(now, Ordering::SeqCst);
    }
}

async fn begin(script: &Script, path: &str, headers: &HeaderMap, body: &Value) -> Option<Response> {
    script.seen.lock().unwrap().push(Seen {
        path: path.to_string(),
        body: body.clone(),
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
    });
    let now = script.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    script.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let latency = script.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    script.in_flight.fetch_sub(1, Ordering::SeqCst);
    let failing = script.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if failing {
        let (status, retry_after) = script.fail_status.lock().unwrap().clone();
        let mut response = (StatusCode::from_u16(status).unwrap(), "scripted failure").into_response();
        if let Some(ra) = retry_after {
            response.headers_mut().insert("retry-after", ra.parse().unwrap());
        }
        return Some(response);
    }
    None
}

fn reply(script: &Script, prompt: &str) -> String {
    if let Some(verdict) = scripted_verdict(prompt) {
        return verdict;
    }
    if let Some(queue) = script.once.lock().unwrap().get_mut(prompt)
        && !queue.is_empty()
    {
        return queue.remove(0);
    }
    if let Some(text) = script.answers.lock().unwrap().get(prompt) {
        return text.clone();
    }
    script.fixed.lock().unwrap().clone().unwrap_or_else(|| prompt.to_string())
}

/// Token log-probabilities as both APIs list them, one per word of `text`
/// (`{token, logprob}`): each is the `[[logprob=x]]` of the text or prompt,
/// else -0.1.
fn token_logprobs(prompt: &str, text: &str) -> Value {
    let marked = |s: &str| {
        let rest = s.split_once("[[logprob=")?.1;
        rest.split_once("]]")?.0.trim().parse::<f64>().ok()
    };
    let logprob = marked(text).or_else(|| marked(prompt)).unwrap_or(-0.1);
    text.split_whitespace()
        .map(|token| json!({"token": token, "logprob": logprob, "bytes": [], "top_logprobs": []}))
        .collect()
}

fn last_user(messages: &Value) -> String {
    messages
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn generate(State(s): State<Arc<Script>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(failure) = begin(&s, "/api/generate", &headers, &body).await {
        return failure;
    }
    let prompt = body["prompt"].as_str().unwrap_or_default();
    let text = if prompt.is_empty() { String::new() } else { reply(&s, prompt) };
    let mut answer = json!({
        "model": body["model"], "response": text, "done": true, "done_reason": "stop",
        "prompt_eval_count": prompt.split_whitespace().count(), "eval_count": text.split_whitespace().count()
    });
    if body["logprobs"] == true {
        answer["logprobs"] = token_logprobs(prompt, &text);
    }
    Json(answer).into_response()
}

async fn chat(State(s): State<Arc<Script>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(failure) = begin(&s, "/api/chat", &headers, &body).await {
        return failure;
    }
    let prompt = last_user(&body["messages"]);
    let text = reply(&s, &prompt);
    let mut answer = json!({
        "model": body["model"], "message": {"role": "assistant", "content": text}, "done": true,
        "prompt_eval_count": 7, "eval_count": text.split_whitespace().count()
    });
    if body["logprobs"] == true {
        answer["logprobs"] = token_logprobs(&prompt, &text);
    }
    Json(answer).into_response()
}

async fn openai(State(s): State<Arc<Script>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(failure) = begin(&s, "/v1/chat/completions", &headers, &body).await {
        return failure;
    }
    let prompt = last_user(&body["messages"]);
    let text = reply(&s, &prompt);
    let mut choice = json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"});
    if body["logprobs"] == true {
        choice["logprobs"] = json!({"content": token_logprobs(&prompt, &text), "refusal": null});
    }
    Json(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "model": body["model"],
        "choices": [choice],
        "usage": {"prompt_tokens": 11, "completion_tokens": text.split_whitespace().count(), "total_tokens": 0}
    }))
    .into_response()
}

async fn anthropic(State(s): State<Arc<Script>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(failure) = begin(&s, "/v1/messages", &headers, &body).await {
        return failure;
    }
    let text = reply(&s, &last_user(&body["messages"]));
    Json(json!({
        "id": "msg_test", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 13, "output_tokens": text.split_whitespace().count()}
    }))
    .into_response()
}

/// The grader-mode answer to `prompt`, if it holds a `[[grade:...]]` marker.
fn scripted_verdict(prompt: &str) -> Option<String> {
    // Only grading prompts (cardrun's name their type on the first line);
    // a test's own prompt carrying a marker is answered as usual.
    if !prompt.lines().next().is_some_and(|l| l.contains("(cardrun ")) {
        return None;
    }
    let start = prompt.find("[[grade:")? + "[[grade:".len();
    let marker = &prompt[start..start + prompt[start..].find("]]")?];
    let mut best = 0;
    let (pass, score, category, questions) = match marker.split_once('=') {
        None if marker == "pass" => (true, 1.0, "C", None),
        None if marker == "fail" => (false, 0.0, "D", None),
        None if marker == "malformed" => return Some("Honestly, I would rather not commit to a verdict.".into()),
        Some(("score", s)) => {
            let s: f64 = s.parse().ok()?;
            (s >= 0.5, s, "C", None)
        }
        Some(("category", c)) => (c != "D", if c == "D" { 0.0 } else { 1.0 }, c, None),
        Some(("questions", q)) => (true, 1.0, "C", Some(q.to_string())),
        Some(("best", b)) => {
            best = b.parse().ok()?;
            (true, 1.0, "C", None)
        }
        _ => return None,
    };
    let questions = questions.map_or_else(|| vec!["What is this about?".to_string()], |q| vec![q.clone(), q]);
    let verdict = json!({
        "reason": format!("scripted {marker}"), "pass": pass, "score": score, "category": category,
        "rating": (score * 10.0).round(), "steps": ["Read the output.", "Compare it with the criteria."],
        "questions": questions, "best": best,
    });
    Some(format!("Let me think about this.\n```json\n{verdict}\n```\nThat is my verdict."))
}

/// A bag-of-words embedding: each lower-cased word hashed into one of 32
/// dimensions.
pub fn embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; 32];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let hash = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        v[(hash % 32) as usize] += 1.0;
    }
    v
}

fn inputs(body: &Value) -> Vec<String> {
    match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(|i| i.as_str().unwrap_or_default().to_string()).collect(),
        _ => vec![],
    }
}

async fn ollama_embed(State(s): State<Arc<Script>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(failure) = begin(&s, "/api/embed", &headers, &body).await {
        return failure;
    }
    let embeddings: Vec<Vec<f32>> = inputs(&body).iter().map(|t| embedding(t)).collect();
    Json(json!({"model": body["model"], "embeddings": embeddings})).into_response()
}

async fn openai_embeddings(State(s): State<Arc<Script>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(failure) = begin(&s, "/v1/embeddings", &headers, &body).await {
        return failure;
    }
    // Listed in reverse, as the API does not promise order: the adapter
    // must sort by `index`.
    let data: Vec<Value> = inputs(&body)
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embedding(t)}))
        .collect();
    Json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 3, "total_tokens": 3}}))
        .into_response()
}
