//! The product as a user runs it (issue 16's acceptance): `cardrun serve`
//! on its embedded defaults (memory queue, SQLite file), a fake Ollama in a
//! process of its own (`fake_model`), every run submitted with `POST
//! /queue` and watched with `GET /{id}/progress` until it completes.
//!
//! `cargo build --release -p cardrun -p cardrun-benches && ./target/release/rest [RUNS]`
//!
//! In the same run:
//! - the floor (raw wasmtime: store + instantiate of the trivial component,
//!   CPU per operation in this process; the lowest of three rounds);
//! - the sequential baseline: 100 tests at concurrency 1, 50 ms each;
//! - 1,000 tests at 50 ms, concurrency 100 and 256: wall, speedup against
//!   the baseline, and the `serve` process's CPU per test (from /proc);
//! - echo: 10,000 tests at concurrency 256 (no model server): tests/s and
//!   CPU per test, the host's whole cost of a test.
//!
//! `TOKIO_WORKER_THREADS=1` before the command runs `serve` on one worker
//! thread. A second argument, `model` or `echo`, runs only that part (for
//! `perf record -p` on the `serve` process).
//!
//! A third argument, `timeline`, also prints where each model run's wall
//! goes, read from `serve`'s own log (its debug lines for every test's
//! start and finish): submission, the first wave's start, the last test,
//! the execution marked finished. Those log lines cost `serve` some CPU,
//! so the CPU figures of a timeline run are not comparable with the rest.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cardrun_benches::floor::{State, engine, pre};
use cardrun_benches::{
    Kill, cpu_time_of, import_card, machine, process_cpu_time, queue_card, sibling_binary, wait_for,
};
use serde_json::Value;
use wasmtime::Store as WasmStore;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;

/// CPU time (user + system) of process `pid` so far.
fn cpu_of(pid: u32) -> Duration {
    cpu_time_of(&pid.to_string()).expect("the process's stat")
}

/// CPU per store + instantiate of the trivial component, raw wasmtime, in
/// this process (microseconds).
fn floor_us(n: usize) -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let wasm = engine(2 << 20);
    let dir = std::path::Path::new(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR);
    let trivial = pre(&wasm, &dir.join("cardrun_test_trivial_assertion.wasm"));
    runtime.block_on(async {
        let once = || async {
            let state = State { wasi: WasiCtx::builder().build(), table: ResourceTable::new() };
            let mut store = WasmStore::new(&wasm, state);
            store.set_fuel(u64::MAX).expect("fuel");
            store.set_epoch_deadline(u64::MAX / 2);
            trivial.instantiate_async(&mut store).await.expect("instantiate");
        };
        for _ in 0..n / 10 {
            once().await;
        }
        let before = process_cpu_time().unwrap_or_default();
        for _ in 0..n {
            once().await;
        }
        process_cpu_time().unwrap_or_default().saturating_sub(before).as_secs_f64() * 1e6 / n as f64
    })
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(3);
    let only = std::env::args().nth(2).filter(|part| part != "all");
    let timeline = std::env::args().nth(3).as_deref() == Some("timeline");
    println!("machine: {}", machine());
    let threads = std::env::var("TOKIO_WORKER_THREADS").unwrap_or_else(|_| "default (one per core)".into());
    println!("serve's tokio worker threads: {threads}");
    // The floor read from /proc in 10 ms ticks moves between rounds (the
    // pool's first use, the VM's neighbours): the lowest of three rounds.
    let rounds: Vec<f64> = (0..3).map(|_| floor_us(20_000)).collect();
    let floor = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "floor: {floor:.1} us CPU per store + instantiate (raw wasmtime, trivial component; lowest of {})",
        rounds.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>().join(", ")
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async_main(runs, floor, only.as_deref(), timeline));
}

async fn async_main(runs: usize, floor: f64, only: Option<&str>, timeline: bool) {
    let mut model = Command::new(sibling_binary("fake_model"))
        .arg("50")
        .stdout(Stdio::piped())
        .spawn()
        .expect("fake_model (build it with -p cardrun-benches)");
    let mut line = String::new();
    BufReader::new(model.stdout.take().expect("stdout")).read_line(&mut line).expect("fake model's URL");
    let model = Kill(model);
    let ollama = line.trim().to_string();

    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port().to_string();
    let db = dir.path().join("cardrun.db").to_string_lossy().into_owned();
    let log_path = dir.path().join("serve.log");
    let (log_filter, log_to) = match timeline {
        true => (
            "warn,cardrun::engine=info,cardrun::engine::dispatch=debug",
            Stdio::from(std::fs::File::create(&log_path).expect("serve's log file")),
        ),
        false => ("warn", Stdio::null()),
    };
    let mut command = Command::new(sibling_binary("cardrun"));
    command
        .args(["serve", "--host", "127.0.0.1", "--port", &port, "--database", &db])
        .env("CARDRUN_LOG", log_filter)
        .env("NO_COLOR", "1")
        .env("OLLAMA_BASE_URL", &ollama)
        .env("MAX_CONCURRENT_TESTS", "256")
        .stdout(Stdio::null())
        .stderr(log_to);
    let host = Kill(command.spawn().expect("cardrun binary (build it with -p cardrun)"));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_for(&client, &format!("{base}/health")).await;
    let host_pid = host.0.id();
    println!("serve's pid: {host_pid}");
    let model_pid = model.0.id();

    let model_card = import_card(&client, &base, "model", 1_000, "ollama:m", "icontains").await;
    let sequential_card = import_card(&client, &base, "sequential", 100, "ollama:m", "icontains").await;
    let echo_card = import_card(&client, &base, "echo", 10_000, "echo:upper", "icontains").await;

    // Warm-up: connections, the model's warm-up call, the store's pages.
    run(&client, &base, sequential_card, "ollama:m", 100, 100).await;
    let sequential = run(&client, &base, sequential_card, "ollama:m", 1, 100).await.wall;
    let per_test = sequential.as_secs_f64() / 100.0;
    println!(
        "sequential baseline: 100 tests at concurrency 1 in {:.3} s, {:.1} ms per test",
        sequential.as_secs_f64(),
        per_test * 1e3
    );

    if only != Some("echo") {
        let log = timeline.then_some(log_path.as_path());
        model_runs(&client, &base, runs, floor, (host_pid, model_pid), (model_card, per_test), log).await;
    }
    if only != Some("model") {
        echo_runs(&client, &base, runs, floor, host_pid, echo_card).await;
    }
    drop(host);
    drop(model);
}

async fn model_runs(
    client: &reqwest::Client,
    base: &str,
    runs: usize,
    floor: f64,
    (host_pid, model_pid): (u32, u32),
    (model_card, per_test): (i64, f64),
    log: Option<&std::path::Path>,
) {
    println!(
        "\n| run | tests | model latency | concurrency | wall | of which submit | speedup | speedup / concurrency | serve CPU per test | x floor | model server CPU per test |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut timed = Vec::new();
    for concurrency in [100u32, 256] {
        run(client, base, model_card, "ollama:m", concurrency, 1_000).await;
        for r in 1..=runs {
            let (host_before, model_before) = (cpu_of(host_pid), cpu_of(model_pid));
            let Run { wall, submitted, id, at } = run(client, base, model_card, "ollama:m", concurrency, 1_000).await;
            timed.push((r, concurrency, id, at, wall));
            let host_cpu = cpu_of(host_pid).saturating_sub(host_before).as_secs_f64() * 1e6 / 1_000.0;
            let model_cpu = cpu_of(model_pid).saturating_sub(model_before).as_secs_f64() * 1e6 / 1_000.0;
            let speedup = per_test * 1_000.0 / wall.as_secs_f64();
            println!(
                "| {r} | 1000 | 50 ms | {concurrency} | {:.3} s | {:.0} ms | {speedup:.1} | {:.2} | {host_cpu:.0} us | {:.1} | {model_cpu:.0} us |",
                wall.as_secs_f64(),
                submitted.as_secs_f64() * 1e3,
                speedup / f64::from(concurrency),
                host_cpu / floor
            );
        }
    }
    if let Some(log) = log {
        // Give the log's last lines time to reach the file.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = std::fs::read_to_string(log).expect("serve's log");
        print_timeline(&text, &timed);
    }
}

/// Milliseconds from `at` to the log line's timestamp.
fn ms_after(line: &str, at: chrono::DateTime<chrono::Utc>) -> Option<f64> {
    let stamp = chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok()?;
    Some((stamp.with_timezone(&chrono::Utc) - at).num_microseconds()? as f64 / 1e3)
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// Where each timed run's wall went, from `serve`'s log.
fn print_timeline(log: &str, runs: &[(usize, u32, String, chrono::DateTime<chrono::Utc>, Duration)]) {
    println!(
        "\ntimeline, ms after `POST /queue` was sent (from serve's log):\n\n| run | concurrency | planned | stored | first test started | test no. <concurrency> started | last test finished | execution finished | completion seen | mean test |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (r, concurrency, id, at, wall) in runs {
        let lines: Vec<&str> = log.lines().filter(|l| field(l, "execution_id") == Some(id.as_str())).collect();
        let mut starts: Vec<f64> =
            lines.iter().filter(|l| l.contains("test attempt started")).filter_map(|l| ms_after(l, *at)).collect();
        starts.sort_by(f64::total_cmp);
        let finished: Vec<&&str> = lines.iter().filter(|l| l.contains("test attempt finished")).collect();
        let last = finished.iter().filter_map(|l| ms_after(l, *at)).fold(f64::NAN, f64::max);
        let elapsed: Vec<f64> = finished.iter().filter_map(|l| field(l, "elapsed_ms")?.parse().ok()).collect();
        let queued = lines.iter().find(|l| l.contains("execution queued"));
        let us =
            |key| queued.and_then(|l| field(l, key)).and_then(|v| v.parse::<f64>().ok()).map_or(f64::NAN, |v| v / 1e3);
        let done = lines.iter().find(|l| l.contains("execution finished")).and_then(|l| ms_after(l, *at));
        let nth = starts.get(*concurrency as usize - 1).copied().unwrap_or(f64::NAN);
        println!(
            "| {r} | {concurrency} | {:.1} | {:.1} | {:.1} | {nth:.1} | {last:.1} | {:.1} | {:.1} | {:.1} ms |",
            us("planned_us"),
            us("stored_us"),
            starts.first().copied().unwrap_or(f64::NAN),
            done.unwrap_or(f64::NAN),
            wall.as_secs_f64() * 1e3,
            elapsed.iter().sum::<f64>() / elapsed.len().max(1) as f64,
        );
    }
}

async fn echo_runs(client: &reqwest::Client, base: &str, runs: usize, floor: f64, host_pid: u32, echo_card: i64) {
    println!(
        "\n| run | tests | adapter | concurrency | wall | of which submit | tests/s | serve CPU per test | x floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    run(client, base, echo_card, "echo:upper", 256, 10_000).await;
    for r in 1..=runs {
        let before = cpu_of(host_pid);
        let Run { wall, submitted, .. } = run(client, base, echo_card, "echo:upper", 256, 10_000).await;
        let cpu = cpu_of(host_pid).saturating_sub(before).as_secs_f64() * 1e6 / 10_000.0;
        println!(
            "| {r} | 10000 | echo | 256 | {:.3} s | {:.0} ms | {:.0} | {cpu:.1} us | {:.1} |",
            wall.as_secs_f64(),
            submitted.as_secs_f64() * 1e3,
            10_000.0 / wall.as_secs_f64(),
            cpu / floor
        );
    }
}

/// The times of one run.
struct Run {
    /// From the queue request until the execution completed.
    wall: Duration,
    /// Until `POST /queue` answered (planning, storing, queuing).
    submitted: Duration,
    /// The execution's id.
    id: String,
    /// When `POST /queue` was sent, by the clock `serve` logs with.
    at: chrono::DateTime<chrono::Utc>,
}

/// Queues every test of `card` and watches its progress every 5 ms.
async fn run(client: &reqwest::Client, base: &str, card: i64, model: &str, concurrency: u32, tests: usize) -> Run {
    let (started, at) = (Instant::now(), chrono::Utc::now());
    let id = queue_card(client, base, card, model, concurrency).await;
    let submitted = started.elapsed();
    loop {
        let progress: Value = client
            .get(format!("{base}/api/parallel-test-execution/{id}/progress"))
            .send()
            .await
            .expect("progress")
            .json()
            .await
            .expect("json");
        match progress["data"]["status"].as_str() {
            Some("completed") => {
                assert_eq!(progress["data"]["passed_tests"], tests, "{progress}");
                return Run { wall: started.elapsed(), submitted, id, at };
            }
            Some("failed" | "cancelled") => panic!("{progress}"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
