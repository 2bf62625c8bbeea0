//! `cardrun run SUITE.yaml`: one process, no server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;

use super::report;
use cardrun::app::{App, Settings};
use cardrun::domain::{ModelRef, TestResult};
use cardrun::engine::ExecutionRequest;
use cardrun::progress::{ExecutionComplete, ProgressEvent};
use cardrun::sandbox::{Limits, SandboxError};
use cardrun::suite::Suite;

pub struct RunArgs {
    pub suite: PathBuf,
    pub model: Option<String>,
    pub adapter: Option<String>,
    pub concurrency: u32,
    pub timeout: u64,
    pub retries: u32,
    /// How long the model may take to answer the warm-up.
    pub warmup: std::time::Duration,
    pub report: report::ReportArgs,
    pub plugins: Vec<PathBuf>,
}

pub async fn run_suite(args: RunArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.suite).with_context(|| format!("reading {}", args.suite.display()))?;
    let suite = Suite::from_yaml(&text).with_context(|| args.suite.display().to_string())?;
    // Before the run, not after it: the results would be lost.
    for path in [&args.report.output, &args.report.junit].into_iter().flatten() {
        report::check_writable(path)?;
    }
    let model = match args.model.clone().or_else(|| suite.providers.first().cloned()) {
        Some(m) => m,
        None => bail!("no model: pass --model or list one under `providers` in the suite"),
    };
    let mut settings = Settings::from_env()?;
    // One process: the in-memory queue whatever the environment says.
    settings.redis = None;
    settings.database_path = None;
    settings.max_concurrent_tests = args.concurrency as usize;
    settings.assertion_plugins.extend(args.plugins.iter().cloned());
    if let Some(adapter) = &args.adapter {
        settings.default_adapter = adapter.clone();
    }
    let app = App::start(&settings).await.context("starting the engine")?;
    let engine = &app.engine;
    let sandbox = engine.sandbox().clone();
    let plan = suite
        .plan(|kind| sandbox.assertion_plugin(kind).map(|_| ()).map_err(|e| e.to_string()))
        .with_context(|| args.suite.display().to_string())?;
    let target = ModelRef::parse(&model, &settings.default_adapter, &sandbox.adapter_names())
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    // The bar shows from the start; the warm-up comes first, so that a
    // model server that is down or never answers stops the run in seconds
    // instead of every test waiting out its timeout.
    let total: usize = plan.cards.iter().map(|(_, cases)| cases.len()).sum();
    let bar = report::progress_bar(total as u64, args.report.quiet);
    bar.set_message(format!("warming up {target}"));
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    let limits = Limits::default().with_deadline(args.warmup);
    if let Err(e) = sandbox.warm(&target.adapter, &target.model, &limits).await {
        bar.finish_and_clear();
        let what = match e {
            SandboxError::Deadline { .. } => {
                format!("did not answer its warm-up within {} ms", args.warmup.as_millis())
            }
            e => format!("failed its warm-up: {e}"),
        };
        bail!(
            "the model {target} {what}\n\
             (is the model server running and reachable? A large model loading cold may need --warmup-timeout 60000)"
        );
    }
    bar.set_message("");

    let mut events = engine.progress_service().subscribe();
    let mut executions = Vec::new();
    for (card, cases) in plan.cards {
        let card = engine.store().create_card(&card)?;
        for tc in &cases {
            engine.store().create_test_case(card.id, tc)?;
        }
        let request: ExecutionRequest = serde_json::from_value(json!({
            "prompt_card_id": card.id,
            "model": model,
            "configuration": {
                "max_concurrent_tests": args.concurrency,
                "timeout_per_test": args.timeout,
                "retry_failed_tests": args.retries > 0,
                "max_retries": args.retries,
            },
        }))?;
        let execution = engine.submit(request).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        executions.push((card, execution));
    }

    let mut remaining: std::collections::HashSet<_> = executions.iter().map(|(_, e)| e.execution_id).collect();
    let (mut passed, mut failed) = (0, 0);
    while !remaining.is_empty() {
        match events.recv().await {
            Ok(ProgressEvent::TestComplete(result)) if remaining.contains(&result.execution_id) => {
                if result.status == cardrun::domain::TestStatus::Passed {
                    passed += 1;
                } else {
                    failed += 1;
                }
                bar.set_message(format!("{passed} passed, {failed} not"));
                bar.inc(1);
            }
            Ok(ProgressEvent::ExecutionComplete(ExecutionComplete { execution_id, .. })) => {
                remaining.remove(&execution_id);
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Missed events: fall back to the store for what finished.
                remaining
                    .retain(|id| engine.store().execution(*id).ok().flatten().is_some_and(|e| !e.status.is_finished()));
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => bail!("the engine stopped"),
        }
    }
    bar.finish_and_clear();

    let mut all: Vec<(String, TestResult)> = Vec::new();
    for (card, execution) in &executions {
        let (_, results, _) = engine.results(execution.execution_id)?;
        all.extend(results.into_iter().map(|r| (card.title.clone(), r)));
    }
    print!("{}", report::table(&all));
    if let Some(path) = &args.report.output {
        std::fs::write(path, report::json(&model, &all)?).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.report.junit {
        std::fs::write(path, report::junit(&suite.description, &all))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let ok = all.iter().all(|(_, r)| r.status == cardrun::domain::TestStatus::Passed);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
