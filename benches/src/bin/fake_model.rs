//! A fake Ollama in a process of its own, for the benches that drive
//! `cardrun serve` as a user would (`rest`). Every `/api/generate` is
//! answered after the latency given, with the prompt echoed; a warm-up
//! (empty prompt) at once. One thread, so the model's stand-in takes as
//! little of the machine's two cores as it can.
//!
//! `./target/release/fake_model LATENCY_MS` prints its URL on the first
//! line of stdout, then serves until killed.

use std::io::Write;
use std::time::Duration;

use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Generate {
    #[serde(default)]
    prompt: String,
}

#[derive(Serialize)]
struct Generated {
    response: String,
    done: bool,
    prompt_eval_count: u32,
    eval_count: u32,
}

fn main() {
    let latency_ms: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let latency = Duration::from_millis(latency_ms);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut stdout = std::io::stdout();
        writeln!(stdout, "http://{addr}").and_then(|()| stdout.flush()).expect("stdout");
        let generate = move |Json(body): Json<Generate>| async move {
            if !body.prompt.is_empty() {
                tokio::time::sleep(latency).await;
            }
            Json(Generated { response: body.prompt, done: true, prompt_eval_count: 2, eval_count: 2 })
        };
        let app = axum::Router::new().route("/api/generate", axum::routing::post(generate));
        axum::serve(listener, app).await.expect("serve");
    });
}
