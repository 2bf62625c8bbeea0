//! The resource manager's own cost, the fuel calibration, and what
//! admission costs a CPU-bound run.
//!
//! `resources [TESTS]` (default 2000):
//! 1. One sysinfo reading (`SystemFigures::sample`, what the manager does
//!    once a second) against reading `/proc/stat` alone (the floor of any
//!    CPU reading), and one admission decision against an uncontended
//!    mutex lock.
//! 2. The fuel calibration of three fresh sandboxes, on an idle machine and
//!    with three threads spinning, beside the constant assumed before
//!    (20 M units per ms).
//! 3. TESTS tests through the echo adapter (CPU only, no model wait) at
//!    concurrency 32, with admission off and on at the default thresholds:
//!    wall time and the lowest concurrency limit seen.

use std::time::{Duration, Instant};

use cardrun::resources::{Figures, ResourceManager, ResourceSettings, SystemFigures};
use cardrun::sandbox::{FUEL_PER_CPU_MS, Sandbox, SandboxConfig};
use cardrun_tests::TestHost;
use serde_json::json;

fn mean_per_call(n: u32, mut f: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed() / n
}

#[tokio::main]
async fn main() {
    let tests = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000usize);
    println!("machine: {}", cardrun_benches::machine());

    println!("\n| per call | mean |");
    println!("|---|---|");
    let mut figures = SystemFigures::new();
    let sample = mean_per_call(200, || {
        std::hint::black_box(figures.sample());
    });
    let proc_stat = mean_per_call(200, || {
        std::hint::black_box(std::fs::read_to_string("/proc/stat").ok());
    });
    println!("| `SystemFigures::sample` (CPU, memory, own RSS, load) | {:.1} us |", sample.as_secs_f64() * 1e6);
    println!("| floor: read `/proc/stat` | {:.1} us |", proc_stat.as_secs_f64() * 1e6);
    println!("| share of one core at one reading per second | {:.4} % |", sample.as_secs_f64() * 100.0);
    let manager = ResourceManager::start(&ResourceSettings::default(), 32, Box::new(SystemFigures::new()));
    let admission = mean_per_call(100_000, || {
        std::hint::black_box(manager.admission(4, 32));
    });
    let lock = std::sync::Mutex::new(0u64);
    let bare = mean_per_call(100_000, || {
        *lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
    });
    println!("| `ResourceManager::admission` (once per claim) | {:.0} ns |", admission.as_secs_f64() * 1e9);
    println!("| floor: lock and bump a mutex | {:.0} ns |", bare.as_secs_f64() * 1e9);

    // Idle, then with three threads spinning on two cores: the calibration
    // is preempted, as on a loaded host. The rate kept (from the fastest
    // runs, on the thread's CPU clock) is shown beside the median of the
    // pairs' own rates on the same clock (the estimator used before the
    // eighteenth session took that median on wall time).
    println!("\n| machine | sandbox | fuel per ms (kept) | median of pairs | pairs | took |");
    println!("|---|---|---|---|---|---|");
    for loaded in [false, true] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..if loaded { 3 } else { 0 })
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        for i in 1..=3 {
            let sandbox = Sandbox::new(SandboxConfig::from_env()).await.expect("sandbox");
            let c = sandbox.fuel_calibration();
            let mut pairs = c.runs_fuel_per_ms.clone();
            pairs.sort_unstable();
            let median = pairs.get(pairs.len() / 2).copied().unwrap_or(0);
            let shown: Vec<String> = c.runs_fuel_per_ms.iter().map(|r| format!("{:.1}", *r as f64 / 1e6)).collect();
            println!(
                "| {} | {i} | {:.1} M | {:.1} M | {} M | {:.1} ms |",
                if loaded { "3 spinning threads" } else { "idle" },
                c.fuel_per_ms as f64 / 1e6,
                median as f64 / 1e6,
                shown.join(", "),
                c.took_ms
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for spinner in spinners {
            spinner.join().expect("spinner");
        }
    }
    println!("| assumed before calibration (constant) | | {:.1} M | | | |", FUEL_PER_CPU_MS as f64 / 1e6);

    println!("\n{tests} tests, echo adapter, concurrency 32:");
    println!("\n| admission | wall | lowest concurrency limit seen |");
    println!("|---|---|---|");
    for admission in [false, true] {
        let dir = tempfile::tempdir().expect("dir");
        let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), "http://127.0.0.1:9", 32);
        settings.resources = ResourceSettings { admission, ..ResourceSettings::default() };
        let host = TestHost::start_with_settings(settings).await;
        let (card, _) = host.card_with_cases("item {{n}}", Vec::new()).await;
        host.numbered_cases(card, tests, "item").await;
        let started = Instant::now();
        let body = json!({"prompt_card_id": card, "model": "echo:echo",
            "configuration": {"max_concurrent_tests": 32, "cache_enabled": false}});
        let (status, reply) = host.post("/api/parallel-test-execution/queue", body).await;
        assert_eq!(status, 202, "{reply}");
        let id = reply["data"]["execution_id"].as_str().expect("id").to_string();
        let mut lowest = u64::MAX;
        loop {
            let (_, p) = host.get(&format!("/api/parallel-test-execution/{id}/progress")).await;
            let (_, r) = host.get("/api/parallel-test-execution/system/resources").await;
            lowest = lowest.min(r["data"]["optimal_concurrency"].as_u64().unwrap_or(u64::MAX));
            if matches!(p["data"]["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                assert_eq!(p["data"]["passed_tests"], tests, "{p}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("| {} | {:.2} s | {lowest} |", if admission { "on" } else { "off" }, started.elapsed().as_secs_f64());
        host.stop().await;
    }

    // What a `cpu_percent` reservation would claim of an I/O-bound run,
    // against the CPU the run used.
    let fake = cardrun_tests::fake_llm::FakeLlm::start().await;
    fake.set_latency(50);
    let dir = tempfile::tempdir().expect("dir");
    let host =
        TestHost::start_with_settings(cardrun_tests::host_settings(&dir.path().join("db"), &fake.base_url(), 32)).await;
    let (card, _) = host.card_with_cases("item {{n}}", Vec::new()).await;
    let n = 1_000;
    host.numbered_cases(card, n, "item").await;
    let cpu_before = cardrun_benches::process_cpu_time().unwrap_or_default();
    let started = Instant::now();
    let body = json!({"prompt_card_id": card, "model": "ollama:m",
        "configuration": {"max_concurrent_tests": 32, "cache_enabled": false}});
    let (_, reply) = host.post("/api/parallel-test-execution/queue", body).await;
    let id = reply["data"]["execution_id"].as_str().expect("id").to_string();
    host.wait_finished(&id).await;
    let wall = started.elapsed();
    // The fake model runs in this process too: an upper bound.
    let cpu = cardrun_benches::process_cpu_time().unwrap_or_default().saturating_sub(cpu_before);
    println!("\n{n} tests against a model answering in 50 ms, concurrency 32, cpu_percent 20 (the default):");
    println!("\n| | cores |");
    println!("|---|---|");
    println!(
        "| used by the whole process (host and fake model): {:.2} s CPU in {:.2} s | {:.2} |",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        cpu.as_secs_f64() / wall.as_secs_f64()
    );
    println!("| a reservation of 32 x 20 % would claim | 6.40 |");
    host.stop().await;
}
