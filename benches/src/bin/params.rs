//! The cost of checking assertion parameters when a test case is written.
//!
//! `cargo run --release -p cardrun-benches --bin params [ITERATIONS]`
//!
//! One `check` in a fresh instance for the built-in `regex` (text
//! component) and `json-schema` (JSON component), beside one evaluation of
//! the same assertion in the same run (the baseline: what the check adds to
//! a write is about what one test's assertion costs at run time). Then an
//! import-sized request: 10,000 test cases sharing 10 distinct assertions,
//! checked once per distinct set.

use std::time::{Duration, Instant};

use cardrun::sandbox::{AssertionSpec, Limits, ParameterChecks, Sandbox, SandboxConfig, Subject};
use cardrun_benches::{machine, percentiles};
use serde_json::json;

fn main() {
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    println!("machine: {}", machine());
    println!("iterations per measurement: {iterations}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let sandbox = Sandbox::new(SandboxConfig::from_env()).await.expect("sandbox");
        println!("| assertion | check median | check p99 | evaluate median (baseline) | evaluate p99 |");
        println!("|---|---|---|---|---|");
        let cases = [
            ("regex `^h(i|ello)$`", AssertionSpec::new("regex", json!("^h(i|ello)$"))),
            (
                "json-schema (object, 2 properties)",
                AssertionSpec::new(
                    "json-schema",
                    json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}}),
                ),
            ),
        ];
        for (label, spec) in cases {
            let check = timed(iterations, || async {
                sandbox.check_parameters(None, &spec, None).await.expect("valid parameters");
            })
            .await;
            let subject = Subject { output: r#"{"a": "hi", "b": 1}"#.into(), ..Default::default() };
            let limits = Limits::default();
            let evaluate = timed(iterations, || async {
                let outcome = sandbox.evaluate(&spec, &subject, &limits).await;
                assert!(outcome.error.is_none(), "{}", outcome.reason);
            })
            .await;
            println!(
                "| {label} | {:.1} us | {:.1} us | {:.1} us | {:.1} us |",
                check.0, check.1, evaluate.0, evaluate.1
            );
        }

        let specs: Vec<AssertionSpec> =
            (0..10).map(|i| AssertionSpec::new("regex", json!(format!("^answer {i}$")))).collect();
        let started = Instant::now();
        let mut checks = ParameterChecks::new(&sandbox, None);
        for n in 0..10_000 {
            checks.check(&specs[n % specs.len()], None).await.expect("valid parameters");
        }
        println!(
            "10,000 test cases, 10 distinct regex assertions: {:.1} ms ({} checks run)",
            started.elapsed().as_secs_f64() * 1e3,
            checks.distinct()
        );
    });
}

/// (median, p99) in microseconds of `n` sequential runs of `f`, after a
/// warm-up of a tenth as many.
async fn timed<F, Fut>(n: usize, f: F) -> (f64, f64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..n / 10 {
        f().await;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        samples.push(t.elapsed());
    }
    let (median, p99) = percentiles(&mut samples);
    (median.as_secs_f64() * 1e6, p99.as_secs_f64() * 1e6)
}
