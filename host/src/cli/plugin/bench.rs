//! `cardrun plugin bench FILE.wasm`: what one use of an assertion plugin
//! costs (a fresh instance per call, as in a run), beside built-in plugins
//! measured in the same run, so the figures survive a machine's mood.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardrun::sandbox::{AssertionPlugin, Subject};

use super::{SampleArgs, megabytes, read, sandbox, spinner};

/// One plugin's figures.
struct Figures {
    median: Duration,
    p99: Duration,
    fuel: u64,
    memory_bytes: usize,
}

async fn measure(
    plugin: &AssertionPlugin,
    kind: &str,
    value: &serde_json::Value,
    subject: &Subject,
    limits: &cardrun::sandbox::Limits,
    iterations: usize,
) -> anyhow::Result<Figures> {
    // One call first: a broken sample fails here, not as 200 errors.
    let first = plugin.evaluate(kind, value, None, None, subject, limits, None).await?;
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        plugin.evaluate(kind, value, None, None, subject, limits, None).await?;
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    Ok(Figures { median: at(0.5), p99: at(0.99), fuel: first.fuel_used, memory_bytes: first.memory_bytes })
}

pub async fn bench(files: &[PathBuf], iterations: usize, sample: &SampleArgs) -> anyhow::Result<ExitCode> {
    let value = sample.value()?;
    let sandbox = sandbox().await?;
    let limits = sample.limits(&sandbox);
    let subject = Subject { output: sample.output.clone(), ..Default::default() };
    println!("{iterations} calls each, a fresh instance per call; output {:?}", sample.output);
    println!("| plugin | size | first-load compile | per call (median) | p99 | fuel per call | peak memory |");
    println!("|---|---|---|---|---|---|---|");
    // Several files are measured in one run (the same evaluator in several
    // languages, say), against the same baselines.
    for file in files {
        let bytes = read(file)?;
        let bar = spinner(format!("compiling {} without the cache (a first load)", megabytes(bytes.len())));
        let compile = sandbox.time_compile(&bytes).await;
        bar.finish_and_clear();
        let compile = compile.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let plugin =
            sandbox.trial_assertion_plugin(&bytes).await.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let kind = sample
            .assertion_type
            .clone()
            .or_else(|| plugin.info().assertion_types.first().cloned())
            .unwrap_or_default();
        let bar = spinner(format!("measuring {}", plugin.info().name));
        let figures = measure(&plugin, &kind, &value, &subject, &limits, iterations).await;
        bar.finish_and_clear();
        let figures = figures.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        row(&format!("{} (`{kind}`)", plugin.info().name), bytes.len(), Some(compile), &figures);
    }

    // Baselines: the built-in text and JSON components.
    let baselines: [(&str, serde_json::Value); 2] =
        [("contains", serde_json::json!("fox")), ("is-json", serde_json::Value::Null)];
    for (kind, value) in baselines {
        let builtin: Arc<AssertionPlugin> = sandbox.builtin_assertion_plugin(kind)?;
        let figures = measure(&builtin, kind, &value, &subject, &limits, iterations).await?;
        row(&format!("built-in `{kind}` ({})", builtin.info().name), builtin.info().size_bytes, None, &figures);
    }
    Ok(ExitCode::SUCCESS)
}

fn row(label: &str, size: usize, compile: Option<Duration>, f: &Figures) {
    let compile = compile.map_or("built in".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!(
        "| {label} | {} | {compile} | {:.3} ms | {:.3} ms | {} | {} |",
        megabytes(size),
        f.median.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.fuel,
        megabytes(f.memory_bytes)
    );
}
