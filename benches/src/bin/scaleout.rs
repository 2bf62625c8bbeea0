//! Scale-out: tests/s with one and with two `cardrun worker` processes
//! when the model is the bottleneck (DESIGN.md section 10: two workers
//! >= 1.8x one).
//!
//! `cargo build --release -p cardrun -p cardrun-benches && ./target/release/scaleout [RUNS]`
//!
//! Everything is a separate process, as deployed: a private `redis-server`,
//! `cardrun serve --no-worker` (API host, SQLite file), and the workers
//! (`MAX_CONCURRENT_TESTS=32` each). The fake Ollama (50 ms per answer)
//! runs on its own thread in this process. Each run queues 1,000 tests at
//! `max_concurrent_tests` 64 through the REST API and polls progress until
//! it completes; the wall time is from the queue request to completion.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cardrun_benches::{Kill, fake_ollama, import_card, machine, queue_card, redis_server, sibling_binary, wait_for};
use serde_json::Value;

const TESTS: usize = 1_000;
const PER_WORKER: usize = 32;

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Kill {
    let mut cmd = Command::new(sibling_binary("cardrun"));
    cmd.args(args).env("CARDRUN_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Kill(cmd.spawn().expect("cardrun binary (build it with -p cardrun)"))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async_main());
}

async fn async_main() {
    let runs: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(2);
    println!("machine: {}", machine());
    let redis = redis_server();
    let ollama = fake_ollama(Duration::from_millis(50));
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port().to_string();
    let db = dir.path().join("cardrun.db").to_string_lossy().into_owned();
    // A short lease, so a stopped worker leaves the worker count quickly.
    let env = [("REDIS_URL", redis.url.as_str()), ("OLLAMA_BASE_URL", ollama.as_str()), ("LEASE_MS", "2000")];
    let _host = spawn(&["serve", "--no-worker", "--host", "127.0.0.1", "--port", &port, "--database", &db], &env);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_for(&client, &format!("{base}/health")).await;
    let card = import_card(&client, &base, "scale-out", TESTS, "ollama:m", "contains").await;

    println!("\n| workers | tests | model latency | concurrency | wall | tests/s |");
    println!("|---|---|---|---|---|---|");
    let per_worker = PER_WORKER.to_string();
    let worker_env = [
        ("REDIS_URL", redis.url.as_str()),
        ("OLLAMA_BASE_URL", ollama.as_str()),
        ("MAX_CONCURRENT_TESTS", per_worker.as_str()),
        ("LEASE_MS", "2000"),
    ];
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for workers in [1usize, 2] {
            let procs: Vec<Kill> = (0..workers).map(|_| spawn(&["worker"], &worker_env)).collect();
            wait_for_workers(&client, &base, workers).await;
            // One warm-up execution, so connections and the model warm-up
            // are not part of the figure.
            run(&client, &base, card, 64).await;
            let wall = run(&client, &base, card, 64).await;
            let rate = TESTS as f64 / wall.as_secs_f64();
            rates[workers - 1].push(rate);
            println!("| {workers} | {TESTS} | 50 ms | 64 | {:.3} s | {rate:.0} |", wall.as_secs_f64());
            drop(procs);
            wait_for_workers(&client, &base, 0).await;
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!("\ntwo workers / one worker: {:.2}x", mean(&rates[1]) / mean(&rates[0]));
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.expect("request").json().await.expect("json")
}

/// Waits until exactly `n` workers are registered (a killed worker's entry
/// lasts one lease).
async fn wait_for_workers(client: &reqwest::Client, base: &str, n: usize) {
    for _ in 0..800 {
        let stats = get(client, &format!("{base}/api/parallel-test-execution/queue/stats")).await;
        if stats["data"]["workers"].as_u64() == Some(n as u64) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} workers did not register");
}

/// Queues every test of `card`; returns the time until it completed.
async fn run(client: &reqwest::Client, base: &str, card: i64, concurrency: u32) -> Duration {
    let started = Instant::now();
    let id = queue_card(client, base, card, "ollama:m", concurrency).await;
    loop {
        let progress = get(client, &format!("{base}/api/parallel-test-execution/{id}/progress")).await;
        match progress["data"]["status"].as_str() {
            Some("completed") => {
                assert_eq!(progress["data"]["passed_tests"], TESTS, "{progress}");
                return started.elapsed();
            }
            Some("failed" | "cancelled") => panic!("{progress}"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
