//! The JavaScript engine for `type: javascript` (issue 17, point 5): the
//! candidates side by side, in one run, under the sandbox's limits.
//!
//! `bash benches/js-engines/build.sh && cargo run --release -p cardrun-benches --bin js_engines [ITERATIONS]`
//!
//! Each candidate is a `checked-assertion` component whose `javascript`
//! type runs the assertion's `value` as promptfoo does (an expression, or
//! a function body given `output` and `context`): StarlingMonkey through
//! componentize-js and QuickJS through componentize-qjs (both built from
//! `script-evaluator.js`), and Boa: cardrun's built-in `javascript`
//! plugin (`plugins/assertions-js`), also built with `Intl`. For each: size, first-load compile time, instantiate +
//! evaluate per call (a fresh instance per call, as in a run), peak
//! memory, ES coverage over `expressions.yaml`, and how hostile scripts
//! are stopped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cardrun::sandbox::{AssertionPlugin, Limits, Sandbox, SandboxConfig, Subject};
use cardrun_benches::machine;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    source: String,
    #[serde(default)]
    output: String,
    #[serde(default)]
    vars: std::collections::BTreeMap<String, String>,
    expect: Expect,
    #[serde(default)]
    hostile: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Pass,
    Fail,
    Error,
}

const ENGINES: [(&str, &str); 4] = [
    ("StarlingMonkey (componentize-js 0.23.0)", "starlingmonkey"),
    ("QuickJS (componentize-qjs 0.4.5)", "quickjs"),
    ("Boa 0.21 (the built-in `javascript` plugin)", "boa"),
    ("Boa 0.21 with `Intl` (the same, intl_bundled)", "boa-intl"),
];

fn main() {
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js-engines");
    let cases: Vec<Case> =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("expressions.yaml")).expect("expressions.yaml"))
            .expect("expressions.yaml parses");
    println!("machine: {}", machine());
    println!("{iterations} calls per timing, a fresh instance per call; {} cases", cases.len());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let sandbox = Sandbox::new(SandboxConfig { cache_dir: None, ..SandboxConfig::from_env() }).await.expect("sandbox");
        // A test's defaults with a 2 s timeout: 64 MiB, 400 ms of CPU as fuel.
        let limits = Limits::from_resource_limits(20.0, 512, 2_000, 8).with_fuel_rate(sandbox.fuel_calibration().fuel_per_ms);
        let mut coverage_rows = Vec::new();
        let mut hostile_rows = Vec::new();
        println!();
        println!("| engine | size | first-load compile | `output.includes(...)` per call (median) | p99 | mean over the {} cases | peak memory | coverage |", cases.iter().filter(|c| !c.hostile).count());
        println!("|---|---|---|---|---|---|---|---|");
        for (label, file) in ENGINES {
            let path = dir.join("out").join(format!("{file}.wasm"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run benches/js-engines/build.sh)", path.display()));
            let compile = sandbox.time_compile(&bytes).await.expect("compiles");
            let plugin = sandbox.trial_assertion_plugin(&bytes).await.expect("loads");

            let simple = &cases[0];
            let (median, p99, memory) = timed(&plugin, simple, &limits, iterations).await;
            let mut wrong = Vec::new();
            let mut total = Duration::ZERO;
            let mut correct = 0;
            let plain: Vec<&Case> = cases.iter().filter(|c| !c.hostile).collect();
            for case in &plain {
                let started = Instant::now();
                let got = verdict(&plugin, case, &limits).await;
                total += started.elapsed();
                if got.0 == case.expect {
                    correct += 1;
                } else {
                    wrong.push(format!("{} ({:?}: {})", case.name, got.0, got.1));
                }
            }
            println!(
                "| {label} | {:.1} MB | {:.2} s | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} MB | {correct}/{} |",
                bytes.len() as f64 / 1e6,
                compile.as_secs_f64(),
                median.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3 / plain.len() as f64,
                memory as f64 / 1e6,
                plain.len()
            );
            coverage_rows.push(format!("- {label}: {}", if wrong.is_empty() { "all correct".to_string() } else { wrong.join("; ") }));
            for case in cases.iter().filter(|c| c.hostile) {
                let started = Instant::now();
                let got = verdict(&plugin, case, &limits).await;
                hostile_rows.push(format!(
                    "| {label} | {} | {} | {:.0} ms |",
                    case.name,
                    match got.0 {
                        Expect::Error => got.1.clone(),
                        // The engine's own limit, thrown into the script:
                        // contained, and the test fails.
                        Expect::Fail => format!("a failed test: {}", got.1),
                        Expect::Pass => format!("NOT STOPPED: passed, {}", got.1),
                    },
                    started.elapsed().as_secs_f64() * 1e3
                ));
            }
        }
        // The baseline in the same run: the built-in `contains` (Rust, no
        // JavaScript engine) on the same output.
        let builtin = sandbox.builtin_assertion_plugin("contains").expect("built-in contains");
        let value = serde_json::json!("Paris");
        let subject = subject(&cases[0]);
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let started = Instant::now();
            builtin.evaluate("contains", &value, None, None, &subject, &limits, None).await.expect("contains runs");
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "| baseline: built-in `contains` (Rust) | {:.1} MB | built in | {:.3} ms | {:.3} ms | | | |",
            builtin.info().size_bytes as f64 / 1e6,
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[((times.len() as f64 - 1.0) * 0.99).round() as usize].as_secs_f64() * 1e3
        );
        println!("\nWrong answers:");
        for row in coverage_rows {
            println!("{row}");
        }
        println!("\n| engine | hostile script | stopped as | after |");
        println!("|---|---|---|---|");
        for row in hostile_rows {
            println!("{row}");
        }
    });
}

fn subject(case: &Case) -> Subject {
    Subject { output: case.output.clone(), variables: case.vars.clone().into_iter().collect(), ..Default::default() }
}

/// What the engine made of `case`: the verdict, with the error code or
/// reason.
async fn verdict(plugin: &AssertionPlugin, case: &Case, limits: &Limits) -> (Expect, String) {
    let value = serde_json::Value::String(case.source.clone());
    match plugin.evaluate("javascript", &value, None, None, &subject(case), limits, None).await {
        Ok(j) if j.pass => (Expect::Pass, j.reason),
        Ok(j) => (Expect::Fail, j.reason),
        Err(e) => (Expect::Error, format!("`{}`: {}", e.code(), e.to_string().chars().take(90).collect::<String>())),
    }
}

async fn timed(
    plugin: &AssertionPlugin,
    case: &Case,
    limits: &Limits,
    iterations: usize,
) -> (Duration, Duration, usize) {
    let value = serde_json::Value::String(case.source.clone());
    let subject = subject(case);
    let first =
        plugin.evaluate("javascript", &value, None, None, &subject, limits, None).await.expect("the simple case runs");
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        plugin.evaluate("javascript", &value, None, None, &subject, limits, None).await.expect("the simple case runs");
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), first.memory_bytes)
}
