//! A run against a rate-limited model, with and without per-endpoint AIMD.
//!
//! `ratelimit [TESTS] [CONCURRENCY] [CAPACITY]` (default 500, 64, 8): a
//! fake Ollama answering after 50 ms that serves at most CAPACITY requests
//! at once and answers 429 (`Retry-After: 1`) beyond that. One execution of
//! TESTS tests at CONCURRENCY runs on a fresh host with
//! `MODEL_ENDPOINT_AIMD` on, then off. Printed per mode: wall time, 429s
//! the server sent, tests passed and errored (retries exhausted), and the
//! endpoint's final limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cardrun_tests::TestHost;
use serde_json::{Value, json};

struct Server {
    url: String,
    refused: Arc<AtomicUsize>,
}

fn limited_ollama(capacity: usize) -> Server {
    use axum::Json;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let (f, r) = (in_flight.clone(), refused.clone());
    let generate = move |Json(body): Json<Value>| {
        let (f, r) = (f.clone(), r.clone());
        async move {
            let prompt = body["prompt"].as_str().unwrap_or_default().to_string();
            if prompt.is_empty() {
                return Json(json!({"response": "", "done": true})).into_response();
            }
            if f.fetch_add(1, Ordering::SeqCst) >= capacity {
                f.fetch_sub(1, Ordering::SeqCst);
                r.fetch_add(1, Ordering::SeqCst);
                return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            f.fetch_sub(1, Ordering::SeqCst);
            Json(json!({"response": prompt, "done": true, "prompt_eval_count": 1, "eval_count": 1})).into_response()
        }
    };
    let url = cardrun_benches::serve_on_own_thread(
        axum::Router::new().route("/api/generate", axum::routing::post(generate)),
        "limited-ollama",
    );
    Server { url, refused }
}

#[tokio::main]
async fn main() {
    let arg = |i: usize, default: usize| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (tests, concurrency, capacity) = (arg(1, 500), arg(2, 64), arg(3, 8));
    println!("machine: {}", cardrun_benches::machine());
    println!("{tests} tests at concurrency {concurrency}; the model serves {capacity} at once (50 ms), 429 beyond");
    println!("\n| per-endpoint AIMD | wall | 429s sent | passed | errors | final limit |");
    println!("|---|---|---|---|---|---|");
    for adaptive in [true, false] {
        let server = limited_ollama(capacity);
        let dir = tempfile::tempdir().expect("dir");
        let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), &server.url, concurrency);
        settings.sandbox.http.endpoints.adaptive = adaptive;
        // The host's own retry policy, as `serve` has it.
        settings.sandbox.http.base_backoff = Duration::from_millis(100);
        let host = TestHost::start_with_settings(settings).await;
        let (card, _) = host.card_with_cases("item {{n}}", Vec::new()).await;
        host.numbered_cases(card, tests, "item").await;
        let started = Instant::now();
        let body = json!({"prompt_card_id": card, "model": "ollama:m",
            "configuration": {"max_concurrent_tests": concurrency, "cache_enabled": false,
                              "retry_failed_tests": false, "timeout_per_test": 120000}});
        let (status, reply) = host.post("/api/parallel-test-execution/queue", body).await;
        assert_eq!(status, 202, "{reply}");
        let id = reply["data"]["execution_id"].as_str().expect("id").to_string();
        let done = loop {
            let (_, p) = host.get(&format!("/api/parallel-test-execution/{id}/progress")).await;
            if matches!(p["data"]["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                break p["data"].clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let wall = started.elapsed();
        let (_, resources) = host.get("/api/parallel-test-execution/system/resources").await;
        let limit = resources["data"]["model_endpoints"][0]["limit"].clone();
        let passed = done["passed_tests"].as_u64().unwrap_or(0);
        println!(
            "| {} | {:.2} s | {} | {passed} | {} | {limit} |",
            if adaptive { "on" } else { "off" },
            wall.as_secs_f64(),
            server.refused.load(Ordering::SeqCst),
            tests as u64 - passed,
        );
        host.stop().await;
    }
}
