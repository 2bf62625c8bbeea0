//! Fresh sandbox + trivial assertion: latency and throughput.
//!
//! `cargo run --release -p cardrun-benches --bin sandbox [ITERATIONS] [pooling|on-demand]`
//!
//! For each allocator (tuned pooling, on-demand) and each plugin, it
//! measures the latency of one evaluation in a fresh instance on one thread,
//! then evaluations per second on one and on two threads. Plugins: the
//! trivial assertion built without std (5 KB, no WASI imports: the
//! sandbox's own cost), the same built with std (52 KB, raw bindings, no
//! JSON: plus the WASI interfaces std imports), an SDK plugin (the hostile
//! plugin's `ok`: SDK + serde_json + fs/env/net imports), and the built-in
//! `equals` (the 1.4 MB text built-ins component, what users run).
//! Target (DESIGN.md section 10): median <= 10 us and >= 150,000
//! evaluations/s on 2 cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cardrun::sandbox::{Allocator, AssertionSpec, Limits, Sandbox, SandboxConfig, Subject};
use cardrun_benches::{machine, percentiles};
use serde_json::json;

fn main() {
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    // An optional allocator filter, for profiling one path at a time.
    let only = std::env::args().nth(2);
    println!("machine: {}", machine());
    println!("iterations per measurement: {iterations}");
    println!("| allocator | plugin | median | p99 | evals/s 1 thread | evals/s 2 threads |");
    println!("|---|---|---|---|---|---|");
    let allocators = [
        ("pooling", "pooling (tuned)", Allocator::Pooling { max_instances: 1000 }),
        ("on-demand", "on-demand", Allocator::OnDemand),
    ];
    for (key, label, allocator) in allocators {
        if only.as_deref().is_some_and(|o| o != key) {
            continue;
        }
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let sandbox = runtime.block_on(async {
            let mut config = SandboxConfig::from_env();
            config.allocator = allocator;
            let sandbox = Sandbox::new(config).await.expect("sandbox");
            for plugin in
                ["cardrun_test_hostile_assertion", "cardrun_test_trivial_assertion", "cardrun_test_bare_assertion"]
            {
                let path =
                    std::path::Path::new(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR).join(format!("{plugin}.wasm"));
                let bytes = std::fs::read(path).expect("test plugin built");
                sandbox.add_assertion_plugin(&bytes).await.expect("loads");
            }
            Arc::new(sandbox)
        });
        for (plugin, spec) in [
            (
                "trivial, no std (5 KB, no WASI imports)",
                AssertionSpec::new("bare-same-as-expected", serde_json::Value::Null),
            ),
            ("trivial, std (52 KB, 13 WASI imports)", AssertionSpec::new("same-as-expected", serde_json::Value::Null)),
            ("SDK plugin (hostile ok, 238 KB)", AssertionSpec::new("hostile", json!("ok"))),
            ("builtin equals (1.4 MB)", AssertionSpec::new("equals", json!("hello"))),
        ] {
            let row = runtime.block_on(measure(sandbox.clone(), spec, iterations));
            println!("| {label} | {plugin} | {:.1} us | {:.1} us | {:.0} | {:.0} |", row.0, row.1, row.2, row.3);
        }
    }
}

async fn measure(sandbox: Arc<Sandbox>, spec: AssertionSpec, n: usize) -> (f64, f64, f64, f64) {
    let limits = Limits::default();
    let subject = Subject { output: "hello".into(), expected: Some("hello".into()), ..Default::default() };
    for _ in 0..2_000 {
        assert!(sandbox.evaluate(&spec, &subject, &limits).await.passed);
    }
    // Latency, one at a time.
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let out = sandbox.evaluate(&spec, &subject, &limits).await;
        samples.push(t.elapsed());
        assert!(out.passed);
    }
    let (median, p99) = percentiles(&mut samples);
    let one_thread = n as f64 / samples.iter().sum::<Duration>().as_secs_f64();
    // Throughput on both worker threads.
    let started = Instant::now();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (sandbox, spec, subject, limits) = (sandbox.clone(), spec.clone(), subject.clone(), limits.clone());
            tokio::spawn(async move {
                for _ in 0..n / 2 {
                    assert!(sandbox.evaluate(&spec, &subject, &limits).await.passed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let two_threads = (n / 2 * 2) as f64 / started.elapsed().as_secs_f64();
    (median.as_secs_f64() * 1e6, p99.as_secs_f64() * 1e6, one_thread, two_threads)
}
