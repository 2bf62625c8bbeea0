//! Model-graded assertions: `llm-rubric` evaluations per second with the
//! grader's answer in the response cache, and uncached (each one a round
//! trip over loopback HTTP to a fake model, the adapter's instance
//! included), beside the built-in `contains`, a `javascript` expression and
//! `contains` behind a JavaScript `transform` from the same run.
//!
//! `cargo run --release -p cardrun-benches --bin grader [ITERATIONS]`
//!
//! Each evaluation builds the attempt's grader as the engine does (one
//! `TestGrader` per test) and runs in a fresh instance. Sequential: one
//! evaluation at a time, median and p99; concurrent: 16 tasks on 2 threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cardrun::domain::{GraderModels, PriceTable};
use cardrun::engine::{ResponseCache, TestGrader};
use cardrun::sandbox::{AssertionSpec, Grading, Limits, Sandbox, Subject};
use cardrun_benches::{machine, percentiles};
use cardrun_tests::fake_llm::FakeLlm;
use serde_json::json;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    Graded { cached: bool },
}

struct Case {
    label: &'static str,
    spec: AssertionSpec,
    kind: Kind,
}

fn main() {
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!("machine: {}", machine());
    println!("iterations per measurement: {iterations}");
    runtime.block_on(async move {
        let fake = FakeLlm::start().await;
        let sandbox = Arc::new(Sandbox::new(cardrun_tests::sandbox_config(&fake.base_url())).await.expect("sandbox"));
        let cache = Arc::new(ResponseCache::default());
        let subject = Subject {
            output: "Thank you for asking. [[grade:pass]]".into(),
            prompt: "Say thanks".into(),
            ..Default::default()
        };
        let cases = [
            Case { label: "builtin contains", spec: AssertionSpec::new("contains", json!("Thank")), kind: Kind::Plain },
            Case {
                label: "javascript `output.includes('Thank')`",
                spec: AssertionSpec::new("javascript", json!("output.includes('Thank')")),
                kind: Kind::Plain,
            },
            Case {
                label: "contains after an assertion `transform` (`output.toLowerCase()`)",
                spec: AssertionSpec {
                    transform: Some("output.toLowerCase()".into()),
                    ..AssertionSpec::new("contains", json!("thank"))
                },
                kind: Kind::Plain,
            },
            Case {
                label: "llm-rubric, grader answer cached",
                spec: AssertionSpec::new("llm-rubric", json!("is polite")),
                kind: Kind::Graded { cached: true },
            },
            Case {
                label: "llm-rubric, grader over HTTP (no cache)",
                spec: AssertionSpec::new("llm-rubric", json!("is polite")),
                kind: Kind::Graded { cached: false },
            },
        ];
        println!("| assertion | median | p99 | evals/s sequential | evals/s 16 tasks | grader requests |");
        println!("|---|---|---|---|---|---|");
        for case in cases {
            let case = Arc::new(case);
            let before = fake.request_count();
            let (shared_sandbox, shared_cache, shared_subject) = (sandbox.clone(), cache.clone(), subject.clone());
            let run = move |case: Arc<Case>| {
                let (sandbox, cache) = (shared_sandbox.clone(), shared_cache.clone());
                let subject = shared_subject.clone();
                async move { evaluate(&sandbox, &cache, &case, &subject).await }
            };
            run(case.clone()).await; // warm: compile, first cache fill
            let mut samples = Vec::with_capacity(iterations);
            let started = Instant::now();
            for _ in 0..iterations {
                let t = Instant::now();
                run(case.clone()).await;
                samples.push(t.elapsed());
            }
            let sequential = iterations as f64 / started.elapsed().as_secs_f64();
            let (median, p99) = percentiles(&mut samples);
            let started = Instant::now();
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let (case, run) = (case.clone(), run.clone());
                    tokio::spawn(async move {
                        for _ in 0..iterations / 16 {
                            run(case.clone()).await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
            let concurrent = (iterations / 16 * 16) as f64 / started.elapsed().as_secs_f64();
            println!(
                "| {} | {} | {} | {:.0} | {:.0} | {} |",
                case.label,
                us(median),
                us(p99),
                sequential,
                concurrent,
                fake.request_count() - before
            );
        }
    });
}

async fn evaluate(sandbox: &Arc<Sandbox>, cache: &Arc<ResponseCache>, case: &Case, subject: &Subject) {
    let limits = Limits::default();
    let outcome = match case.kind {
        Kind::Plain => sandbox.evaluate(&case.spec, subject, &limits).await,
        Kind::Graded { cached } => {
            let grader = Arc::new(TestGrader::new(
                sandbox.clone(),
                cache.clone(),
                Arc::new(PriceTable::default()),
                None,
                limits.clone(),
                cached,
            ));
            let grading = Grading { grader, default: Some(GraderModels::single("ollama:judge")) };
            sandbox.evaluate_graded(&case.spec, subject, &limits, &grading).await
        }
    };
    assert!(outcome.passed, "{}: {}", case.label, outcome.reason);
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}
