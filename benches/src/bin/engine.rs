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
//! `engine large [N] [RUNS]` runs RUNS executions (default 1) of N echo
//! tests (default 100,000) on a SQLite file and prints the process's RSS.
//! `engine large N RUNS postgres [redis]` does the same on a fresh
//! PostgreSQL database (and a private Redis's queue, as several API hosts
//! run). `engine stores` runs the echo throughput on a SQLite file and
//! on PostgreSQL side by side, with the time from settle to durable.
//! `engine queues` runs the echo throughput with the store on a SQLite file
//! on the in-memory queue and on a private Redis, side by side.
//! `engine timeline` runs 1,000 tests at concurrency 256 once and prints
//! when the fake server saw each wave of requests arrive: where the time
//! between the ideal 4 x 50 ms and the measured wall goes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use cardrun::engine::{Engine, EngineConfig, ExecutionRequest, Worker, WorkerConfig};
use cardrun::progress::ProgressService;
use cardrun::queue::redis::{RedisConfig, RedisQueue};
use cardrun::queue::{MemoryQueue, Queue, QueueSettings};
use cardrun::sandbox::{AdapterEndpoints, Sandbox, SandboxConfig};
use cardrun::store::{CardInput, Database, Store, TestCaseInput, open};
use cardrun_benches::{machine, process_cpu_time, thread_cpu_times};
use cardrun_tests::postgres::PgDatabase;
use serde_json::{Value, json};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async_main());
}

async fn async_main() {
    println!("machine: {}", machine());
    let llm = start_fake_ollama();
    let mut config = SandboxConfig::from_env();
    config.endpoints = AdapterEndpoints {
        ollama_base_url: llm.clone(),
        openai_base_url: llm.clone(),
        openai_api_key: None,
        anthropic_base_url: llm.clone(),
        anthropic_api_key: None,
    };
    let sandbox = Arc::new(Sandbox::new(config).await.expect("sandbox"));

    // An optional part filter (`throughput`, `speedup` or `timeline`).
    let only = std::env::args().nth(1);
    if only.as_deref() == Some("timeline") {
        return timeline(&sandbox).await;
    }
    if only.as_deref() == Some("queues") {
        return queues(&sandbox).await;
    }
    if only.as_deref() == Some("large") {
        let arg = |i: usize, default: usize| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
        let postgres = std::env::args().nth(4).is_some_and(|a| a == "postgres");
        let redis = std::env::args().skip(4).any(|a| a == "redis");
        return large(&sandbox, arg(2, 100_000), arg(3, 1), postgres, redis).await;
    }
    if only.as_deref() == Some("stores") {
        return stores(&sandbox).await;
    }
    let wanted = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if wanted("throughput") {
        println!("\n| tests | adapter | concurrency | wall | tests/s | CPU per test (process) |");
        println!("|---|---|---|---|---|---|");
        for n in [1_000, 10_000] {
            let cpu_before = process_cpu_time();
            let Outcome { wall, rate, .. } = run(&sandbox, n, "echo:echo", 256).await;
            let (_, cpu_per_test) = cpu_since(cpu_before, n as u32);
            println!("| {n} | echo | 256 | {:.3} s | {rate:.0} | {cpu_per_test} |", wall.as_secs_f64());
        }
    }
    if !wanted("speedup") {
        return;
    }
    println!(
        "\n| tests | model latency | concurrency | wall | speedup vs sequential | speedup / concurrency | CPU (process) | CPU per test |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let cpu_before = process_cpu_time();
    let seq_wall = run(&sandbox, 100, "ollama:m", 1).await.wall;
    let (cpu, cpu_per_test) = cpu_since(cpu_before, 100);
    let sequential_per_test = seq_wall.as_secs_f64() / 100.0;
    println!(
        "| 100 | 50 ms | 1 | {:.3} s | 1.00 (baseline: {:.1} ms/test) | 1.00 | {cpu} | {cpu_per_test} |",
        seq_wall.as_secs_f64(),
        sequential_per_test * 1e3
    );
    for c in [10u32, 50, 100, 256] {
        let cpu_before = process_cpu_time();
        let wall = run(&sandbox, 1_000, "ollama:m", c).await.wall;
        let (cpu, cpu_per_test) = cpu_since(cpu_before, 1_000);
        let speedup = sequential_per_test * 1_000.0 / wall.as_secs_f64();
        println!(
            "| 1000 | 50 ms | {c} | {:.3} s | {speedup:.1} | {:.2} | {cpu} | {cpu_per_test} |",
            wall.as_secs_f64(),
            speedup / f64::from(c)
        );
    }
}

/// `runs` executions of `n` echo tests each (default 100,000, once) on a
/// SQLite file, as `cardrun serve` keeps it (or on a fresh PostgreSQL
/// database with `postgres`), one after another in this
/// process; prints each one's wall time and the process's RSS: its peak
/// from submission to completion (the cases are set up before), and after
/// each one (DESIGN section 10: completes, RSS <= 300 MB).
async fn large(sandbox: &Arc<Sandbox>, n: usize, runs: usize, postgres: bool, redis: bool) {
    let redis_server = redis.then(cardrun_benches::redis_server);
    let dir = tempfile::tempdir().expect("temp dir");
    let pg = postgres.then(PgDatabase::create);
    let store = match &pg {
        Some(db) => open(&Database::Postgres(db.url())).await.expect("postgres"),
        None => sqlite_file(&dir.path().join("cardrun.db")).await,
    };
    println!("store: {}, queue: {}", store.backend(), if redis { "redis" } else { "memory" });
    let mb = |kb: Option<u64>| kb.map_or("n/a".to_string(), |kb| format!("{:.0} MB", kb as f64 / 1024.0));
    // Start the peak afresh: compiling the built-ins at start-up is not the run.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    println!(
        "RSS before: {}{}",
        mb(memory_status().0),
        if reset { "" } else { " (peak not reset: figures include start-up)" }
    );
    println!("| run | tests | submit | wall | tests/s | RSS at submit | peak RSS of the run | RSS after |");
    println!("|---|---|---|---|---|---|---|---|");
    for i in 1..=runs {
        let Outcome { wall, rate, submit, rss_at_submit, .. } =
            run_on(store.clone(), queue(redis_server.as_ref(), i).await, sandbox, n, "echo:echo", 256).await;
        let (rss_after, peak) = memory_status();
        println!(
            "| {i} | {n} | {:.0} ms | {:.2} s | {rate:.0} | {} | {} | {} |",
            submit.as_secs_f64() * 1e3,
            wall.as_secs_f64(),
            mb(rss_at_submit),
            mb(peak),
            mb(rss_after)
        );
    }
}

/// Echo tests/s end to end with the store on a SQLite file, as `serve`
/// runs it, on the in-memory queue and on a private Redis, side by side
/// (DESIGN section 10: >= 10,000 and >= 5,000 tests/s). The worker and the
/// collector run in this process; with Redis every claim, settle and event
/// goes through the server.
async fn queues(sandbox: &Arc<Sandbox>) {
    let redis = cardrun_benches::redis_server();
    println!("\n| queue | tests | concurrency | submit | wall | tests/s |");
    println!("|---|---|---|---|---|---|");
    for n in [1_000, 10_000] {
        for backend in ["memory", "redis"] {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = sqlite_file(&dir.path().join("cardrun.db")).await;
            let queue = match backend {
                "memory" => memory_queue(),
                _ => {
                    let config = RedisConfig::single(&redis.url, &format!("bench-{n}"));
                    Arc::new(RedisQueue::connect(&config, QueueSettings::default()).await.expect("redis"))
                }
            };
            let Outcome { wall, rate, submit, .. } = run_on(store, queue, sandbox, n, "echo:echo", 256).await;
            println!(
                "| {backend} | {n} | 256 | {:.1} ms | {:.3} s | {rate:.0} |",
                submit.as_secs_f64() * 1e3,
                wall.as_secs_f64()
            );
        }
    }
}

/// Echo tests/s end to end on the in-memory queue with the store on a
/// SQLite file (as `serve` runs it) and on a fresh PostgreSQL database on
/// this machine, side by side, with the time from settle to durable
/// (DESIGN section 10: >= 10,000 tests/s; issue 13).
async fn stores(sandbox: &Arc<Sandbox>) {
    println!("\n| store | tests | concurrency | submit | wall | tests/s | settle to durable p50 | p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    let ms = |v: Option<u64>| v.map_or("n/a".to_string(), |v| format!("{v} ms"));
    for n in [1_000, 10_000] {
        for backend in ["sqlite file", "postgres"] {
            let dir = tempfile::tempdir().expect("temp dir");
            let pg = (backend == "postgres").then(PgDatabase::create);
            let store = match &pg {
                Some(db) => open(&Database::Postgres(db.url())).await.expect("postgres"),
                None => sqlite_file(&dir.path().join("cardrun.db")).await,
            };
            let Outcome { wall, rate, submit, lag_p50, lag_p99, .. } =
                run_on(store, memory_queue(), sandbox, n, "echo:echo", 256).await;
            println!(
                "| {backend} | {n} | 256 | {:.1} ms | {:.3} s | {rate:.0} | {} | {} |",
                submit.as_secs_f64() * 1e3,
                wall.as_secs_f64(),
                ms(lag_p50),
                ms(lag_p99)
            );
        }
    }
}

/// VmRSS and VmHWM (peak) of this process, in kB.
fn memory_status() -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One run of 1,000 tests at concurrency 256; prints, per wave of 256
/// requests (in arrival order at the fake server), the first and last
/// arrival and the last answer, in ms since the execution was submitted.
async fn timeline(sandbox: &Arc<Sandbox>) {
    let _ = run(sandbox, 300, "ollama:m", 256).await; // warm the connection pool
    arrivals().clear();
    answers().clear();
    let before = thread_cpu_times();
    let Outcome { wall, started, .. } = run(sandbox, 1_000, "ollama:m", 256).await;
    // CPU per thread name over the run (the two tokio workers together).
    let mut per_name = std::collections::BTreeMap::<String, Duration>::new();
    for (tid, (name, now)) in thread_cpu_times() {
        let used = now.saturating_sub(before.get(&tid).map_or(Duration::ZERO, |b| b.1));
        *per_name.entry(name).or_default() += used;
    }
    let mut seen = arrivals().clone();
    seen.sort();
    let mut answered = answers().clone();
    answered.sort();
    let ms = |t: Instant| t.saturating_duration_since(started).as_secs_f64() * 1e3;
    println!("wall {:.1} ms (ideal 200 ms)", wall.as_secs_f64() * 1e3);
    for (name, used) in per_name.iter().filter(|(_, used)| !used.is_zero()) {
        println!("CPU of `{name}` threads during the run: {} ms", used.as_millis());
    }
    println!("| wave | requests | first arrival | last arrival | spread | last answer sent |");
    println!("|---|---|---|---|---|---|");
    for (i, (wave, sent)) in seen.chunks(256).zip(answered.chunks(256)).enumerate() {
        let (first, last) = (ms(wave[0]), ms(wave[wave.len() - 1]));
        let sent = ms(sent[sent.len() - 1]);
        println!(
            "| {} | {} | {first:.1} ms | {last:.1} ms | {:.1} ms | {sent:.1} ms |",
            i + 1,
            wave.len(),
            last - first
        );
    }
}

/// When the fake server received each generation request.
fn arrivals() -> std::sync::MutexGuard<'static, Vec<Instant>> {
    static ARRIVALS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
    ARRIVALS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// When the fake server finished each generation (before writing it).
fn answers() -> std::sync::MutexGuard<'static, Vec<Instant>> {
    static ANSWERS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
    ANSWERS.lock().unwrap_or_else(PoisonError::into_inner)
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

/// What one execution took.
struct Outcome {
    /// From submission to the completion event.
    wall: Duration,
    /// Tests per second over `wall`.
    rate: f64,
    /// When it was submitted.
    started: Instant,
    /// How long `submit` took (validating, storing and queueing the jobs).
    submit: Duration,
    /// Median and 99th percentile (ms) of a result's time from settle to
    /// durable.
    lag_p50: Option<u64>,
    lag_p99: Option<u64>,
    /// The process's RSS (kB) when the execution was submitted.
    rss_at_submit: Option<u64>,
}

/// Runs one execution of `n` tests (distinct prompts) and waits for it.
async fn run(sandbox: &Arc<Sandbox>, n: usize, model: &str, concurrency: u32) -> Outcome {
    run_on(open(&Database::Memory).await.expect("store"), memory_queue(), sandbox, n, model, concurrency).await
}

async fn sqlite_file(path: &std::path::Path) -> Arc<dyn Store> {
    open(&Database::Sqlite(path.to_path_buf())).await.expect("store")
}

/// A private Redis's queue (a fresh prefix per run), or the memory queue.
async fn queue(redis: Option<&cardrun_benches::RedisServer>, run: usize) -> Arc<dyn Queue> {
    match redis {
        Some(server) => {
            let config = RedisConfig::single(&server.url, &format!("large-{run}"));
            Arc::new(RedisQueue::connect(&config, QueueSettings::default()).await.expect("redis"))
        }
        None => memory_queue(),
    }
}

fn memory_queue() -> Arc<dyn Queue> {
    Arc::new(MemoryQueue::default())
}

/// [`run`] on a given store and queue.
async fn run_on(
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    sandbox: &Arc<Sandbox>,
    n: usize,
    model: &str,
    concurrency: u32,
) -> Outcome {
    let progress = Arc::new(ProgressService::new());
    let worker = Worker::new(
        WorkerConfig {
            id: "bench".into(),
            max_concurrent_tests: concurrency as usize,
            heartbeat_interval: Duration::from_secs(5),
            plugin_max_memory_mb: 256,
            plugin_memory_budget_mb: 1 << 20,
            execution_share: None,
            tenant_running_cap: None,
            prices: Default::default(),
        },
        queue.clone(),
        sandbox.clone(),
        cardrun::engine::ResponseCache::default(),
    );
    let engine = Engine::new(
        store.clone(),
        queue,
        sandbox.clone(),
        progress.clone(),
        EngineConfig {
            max_concurrent_tests: concurrency as usize,
            default_adapter: "echo".into(),
            grader: None,
            prices: Default::default(),
            limits: cardrun::engine::HostLimits::default(),
        },
        Some(worker),
    );
    let tasks = engine.start("bench".into());
    let card = store
        .create_card(&CardInput {
            tenant_id: None,
            title: format!("bench {n}"),
            description: String::new(),
            prompt_template: "item {{n}}".into(),
            variables: vec!["n".into()],
            filters: Default::default(),
        })
        .await
        .expect("card");
    // A thousand at a time, concurrently: on PostgreSQL they overlap on the
    // pool's connections, and the heap never holds all 100,000 at once.
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let creates = chunk.iter().map(|&i| {
            let mut vars = serde_json::Map::new();
            vars.insert("n".into(), json!(i));
            let case = TestCaseInput {
                name: format!("t{i}"),
                input_variables: vars,
                expected_output: None,
                assertions: vec![cardrun::sandbox::AssertionSpec::new("contains", json!("item"))],
                threshold: None,
                transform: None,
            };
            let store = store.clone();
            async move { store.create_test_case(card.id, &case).await.expect("case").expect("the card exists") }
        });
        futures_util::future::join_all(creates).await;
    }
    // The run's peak RSS starts here: setting up the cases is not the run.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_at_submit = memory_status().0;
    let mut events = progress.subscribe();
    let request: ExecutionRequest = serde_json::from_value(json!({
        "prompt_card_id": card.id, "model": model,
        "configuration": {"max_concurrent_tests": concurrency, "cache_enabled": false, "progress_updates": false, "retry_failed_tests": false}
    }))
    .expect("request");
    let started = Instant::now();
    let execution = engine.submit(request).await.expect("queued");
    let submit = started.elapsed();
    loop {
        match events.recv().await {
            Ok(cardrun::progress::ProgressEvent::ExecutionComplete(cardrun::progress::ExecutionComplete {
                execution_id,
                summary,
                ..
            })) if execution_id == execution.execution_id => {
                assert_eq!(summary.passed_tests, n, "every test passes");
                break;
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let wall = started.elapsed();
    for task in tasks {
        task.abort();
    }
    let lag = engine.durable_lag();
    Outcome {
        wall,
        rate: n as f64 / wall.as_secs_f64(),
        started,
        submit,
        lag_p50: lag.quantile(0.5),
        lag_p99: lag.quantile(0.99),
        rss_at_submit,
    }
}

/// Latency of every fake model answer (warm-ups excepted).
const MODEL_LATENCY: Duration = Duration::from_millis(50);

fn start_fake_ollama() -> String {
    async fn generate(Json(body): Json<Value>) -> Json<Value> {
        // An empty prompt is a warm-up: like Ollama with the model loaded,
        // it generates nothing, so it does not pay the generation latency.
        if body["prompt"].as_str().is_some_and(|p| !p.is_empty()) {
            arrivals().push(Instant::now());
            tokio::time::sleep(MODEL_LATENCY).await;
            answers().push(Instant::now());
        }
        Json(json!({"response": body["prompt"], "done": true, "prompt_eval_count": 2, "eval_count": 2}))
    }
    let app = Router::new().route("/api/generate", post(generate));
    // Its own thread and runtime, like a model server in its own process:
    // its work is scheduled by the OS, not queued behind the engine's tasks.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    let spawned = std::thread::Builder::new().name("fake-ollama".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    spawned.expect("fake server thread");
    format!("http://{addr}")
}
