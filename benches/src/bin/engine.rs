//! End-to-end engine throughput and parallel speedup.
//!
//! `cargo run --release -p cardrun-benches --bin engine`
//!
//! 1. Tests/s with the echo adapter, in-memory queue, in-memory SQLite, one
//!    `contains` assertion per test (cache off so every test calls the
//!    adapter), for 1,000 and 10,000 tests. Target: >= 10,000 tests/s.
//! 2. 1,000 tests against a local fake Ollama server answering after 50 ms,
//!    at concurrency 1 (sequential baseline, on 100 tests, scaled) and
//!    10/50/100/256: speedup vs sequential. Target: >= 0.9 x concurrency.
//!    The fake server runs on its own thread and runtime, as a model server
//!    runs in its own process; the process CPU time per run is printed too.
//!
//! `engine throughput` or `engine speedup` runs one part (for profiling).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use cardrun::engine::{Engine, EngineConfig, ExecutionRequest};
use cardrun::progress::ProgressService;
use cardrun::queue::MemoryQueue;
use cardrun::sandbox::{AdapterEndpoints, Sandbox, SandboxConfig};
use cardrun::store::{CardInput, Store, TestCaseInput};
use cardrun_benches::{machine, process_cpu_time};
use serde_json::{Value, json};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async_main());
}

async fn async_main() {
    println!("machine: {}", machine());
    let llm = start_fake_ollama();
    let mut config = SandboxConfig::from_env();
    config.endpoints =
        AdapterEndpoints { ollama_base_url: llm.clone(), openai_base_url: llm.clone(), openai_api_key: None };
    let sandbox = Arc::new(Sandbox::new(config).await.expect("sandbox"));

    // An optional part filter (`throughput` or `speedup`), for profiling.
    let only = std::env::args().nth(1);
    let wanted = |part: &str| only.as_deref().is_none_or(|o| o == part);
    println!("\n| tests | adapter | concurrency | wall | tests/s |");
    println!("|---|---|---|---|---|");
    for n in [1_000, 10_000].into_iter().filter(|_| wanted("throughput")) {
        let (wall, rate) = run(&sandbox, n, "echo:echo", 256).await;
        println!("| {n} | echo | 256 | {:.3} s | {rate:.0} |", wall.as_secs_f64());
    }

    println!(
        "\n| tests | model latency | concurrency | wall | speedup vs sequential | speedup / concurrency | CPU (process) | CPU per test |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    if !wanted("speedup") {
        return;
    }
    let cpu_before = process_cpu_time();
    let (seq_wall, _) = run(&sandbox, 100, "ollama:m", 1).await;
    let (cpu, cpu_per_test) = cpu_since(cpu_before, 100);
    let sequential_per_test = seq_wall.as_secs_f64() / 100.0;
    println!(
        "| 100 | 50 ms | 1 | {:.3} s | 1.00 (baseline: {:.1} ms/test) | 1.00 | {cpu} | {cpu_per_test} |",
        seq_wall.as_secs_f64(),
        sequential_per_test * 1e3
    );
    for c in [10u32, 50, 100, 256] {
        let cpu_before = process_cpu_time();
        let (wall, _) = run(&sandbox, 1_000, "ollama:m", c).await;
        let (cpu, cpu_per_test) = cpu_since(cpu_before, 1_000);
        let speedup = sequential_per_test * 1_000.0 / wall.as_secs_f64();
        println!(
            "| 1000 | 50 ms | {c} | {:.3} s | {speedup:.1} | {:.2} | {cpu} | {cpu_per_test} |",
            wall.as_secs_f64(),
            speedup / f64::from(c)
        );
    }
}

/// CPU seconds used since `before`, in total and per test, formatted.
fn cpu_since(before: Option<Duration>, tests: u32) -> (String, String) {
    match (before, process_cpu_time()) {
        (Some(before), Some(now)) => {
            let used = now.saturating_sub(before);
            (format!("{:.2} s", used.as_secs_f64()), format!("{:.0} us", used.as_secs_f64() * 1e6 / f64::from(tests)))
        }
        _ => ("n/a".into(), "n/a".into()),
    }
}

/// Runs one execution of `n` tests (distinct prompts) and waits for it.
async fn run(sandbox: &Arc<Sandbox>, n: usize, model: &str, concurrency: u32) -> (Duration, f64) {
    let store = Store::in_memory().expect("store");
    let progress = Arc::new(ProgressService::new());
    let engine = Engine::new(
        store.clone(),
        Arc::new(MemoryQueue::new()),
        sandbox.clone(),
        progress.clone(),
        EngineConfig { max_concurrent_tests: concurrency as usize, default_adapter: "echo".into() },
    );
    let dispatcher = engine.start();
    let card = store
        .create_card(&CardInput {
            title: "bench".into(),
            description: String::new(),
            prompt_template: "item {{n}}".into(),
            variables: vec!["n".into()],
        })
        .expect("card");
    for i in 0..n {
        let mut vars = serde_json::Map::new();
        vars.insert("n".into(), json!(i));
        store
            .create_test_case(
                card.id,
                &TestCaseInput {
                    name: format!("t{i}"),
                    input_variables: vars,
                    expected_output: None,
                    assertions: vec![cardrun::sandbox::AssertionSpec::new("contains", json!("item"))],
                },
            )
            .expect("case");
    }
    let mut events = progress.subscribe();
    let request: ExecutionRequest = serde_json::from_value(json!({
        "prompt_card_id": card.id, "model": model,
        "configuration": {"max_concurrent_tests": concurrency, "cache_enabled": false, "progress_updates": false, "retry_failed_tests": false}
    }))
    .expect("request");
    let started = Instant::now();
    let execution = engine.submit(request).await.expect("queued");
    loop {
        match events.recv().await {
            Ok(cardrun::progress::ProgressEvent::ExecutionComplete { execution_id, summary, .. })
                if execution_id == execution.execution_id =>
            {
                assert_eq!(summary.passed_tests, n, "every test passes");
                break;
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let wall = started.elapsed();
    dispatcher.abort();
    (wall, n as f64 / wall.as_secs_f64())
}

/// Latency of every fake model answer (warm-ups excepted).
const MODEL_LATENCY: Duration = Duration::from_millis(50);

fn start_fake_ollama() -> String {
    async fn generate(Json(body): Json<Value>) -> Json<Value> {
        // An empty prompt is a warm-up: like Ollama with the model loaded,
        // it generates nothing, so it does not pay the generation latency.
        if body["prompt"].as_str().is_some_and(|p| !p.is_empty()) {
            tokio::time::sleep(MODEL_LATENCY).await;
        }
        Json(json!({"response": body["prompt"], "done": true, "prompt_eval_count": 2, "eval_count": 2}))
    }
    let app = Router::new().route("/api/generate", post(generate));
    // Its own thread and runtime, like a model server in its own process:
    // its work is scheduled by the OS, not queued behind the engine's tasks.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    format!("http://{addr}")
}
