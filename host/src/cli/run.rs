//! `cardrun run SUITE.yaml`: one process, no server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::report;
use cardrun::app::{App, Settings};
use cardrun::domain::{ModelRef, TestConfigurationPatch, TestResult, TestStatus};
use cardrun::evaluation::{self, EvaluationOptions};
use cardrun::progress::{ExecutionComplete, ProgressEvent};
use cardrun::sandbox::{Limits, SandboxError};
use cardrun::suite::{Suite, SuiteProvider};

pub struct RunArgs {
    pub suite: PathBuf,
    pub model: Option<String>,
    pub adapter: Option<String>,
    /// `--grader`: the default grading model.
    pub grader: Option<String>,
    pub concurrency: u32,
    pub timeout: u64,
    pub retries: u32,
    /// How long the model may take to answer the warm-up.
    pub warmup: std::time::Duration,
    pub report: report::ReportArgs,
    pub plugins: super::PluginFiles,
}

/// One (prompt, provider) pair of the matrix and its results, for the
/// failure details, the JSON and JUnit reports.
pub struct PairRun {
    /// `prompt · provider`, or just one of them when the other is alone.
    pub label: String,
    pub card_title: String,
    pub results: Vec<TestResult>,
}

pub async fn run_suite(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut suite = Suite::load(&args.suite).with_context(|| args.suite.display().to_string())?;
    for warning in &suite.warnings {
        eprintln!("warning: {}: {warning}", args.suite.display());
    }
    // Before the run, not after it: the results would be lost.
    for path in [&args.report.output, &args.report.junit].into_iter().flatten() {
        report::check_writable(path)?;
    }
    if let Some(model) = &args.model {
        // `--model` replaces the suite's providers.
        suite.providers = vec![SuiteProvider {
            id: model.clone(),
            label: model.clone(),
            options: Default::default(),
            price: None,
            prompts: None,
        }];
    }
    if suite.providers.is_empty() {
        bail!("no model: pass --model or list one under `providers` in the suite");
    }
    let mut settings = Settings::from_env()?;
    // One process: the in-memory queue whatever the environment says.
    settings.redis = None;
    settings.database = cardrun::store::Database::Memory;
    settings.max_concurrent_tests = args.concurrency as usize;
    args.plugins.clone().apply(&mut settings);
    if let Some(adapter) = &args.adapter {
        settings.default_adapter = adapter.clone();
    }
    if let Some(grader) = &args.grader {
        settings.grader = Some(cardrun::domain::GraderModels::single(grader));
    }
    // Loading compiles each plugin the first time it is seen: seconds for
    // a Python or JavaScript runtime, so the wait is shown.
    let plugins = settings.assertion_plugins.len() + settings.adapter_plugins.len();
    let loading = (plugins > 0 && !args.report.quiet).then(|| {
        super::plugin::spinner(format!("loading {plugins} plugin(s): each is compiled once per version, then cached"))
    });
    let app = App::start(&settings).await.context("starting the engine");
    if let Some(bar) = loading {
        bar.finish_and_clear();
    }
    let app = app?;
    let engine = &app.engine;
    let sandbox = engine.sandbox().clone();
    let plan = suite
        .plan(|kind| sandbox.assertion_plugin(kind).map(|_| ()))
        .with_context(|| args.suite.display().to_string())?;
    suite.check_parameters(&sandbox, None).await.with_context(|| args.suite.display().to_string())?;
    let mut targets = Vec::new();
    for provider in &plan.providers {
        let target = ModelRef::parse(&provider.id, &settings.default_adapter, &sandbox.adapter_names())
            .map_err(|e| anyhow::anyhow!("provider `{}`: {e}", provider.label))?;
        targets.push(target);
    }

    // The bar shows from the start; the warm-up comes first, so that a
    // model server that is down or never answers stops the run in seconds
    // instead of every test waiting out its timeout.
    let total = plan.total_tests();
    let bar = report::progress_bar(total as u64, args.report.quiet);
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    let limits = Limits::default().with_deadline(args.warmup);
    let mut warmed = std::collections::HashSet::new();
    for target in &targets {
        if !warmed.insert((target.adapter.clone(), target.model.clone())) {
            continue;
        }
        bar.set_message(format!("warming up {target}"));
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
    }
    bar.set_message("");

    let mut events = engine.progress_service().subscribe();
    let options = EvaluationOptions {
        configuration: Some(TestConfigurationPatch {
            max_concurrent_tests: Some(args.concurrency),
            timeout_per_test: Some(args.timeout),
            retry_failed_tests: Some(args.retries > 0),
            max_retries: Some(args.retries),
            ..Default::default()
        }),
        priority: None,
    };
    let evaluation =
        evaluation::submit(engine, &suite.description, &plan, &options).await.map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut remaining: std::collections::HashSet<_> = evaluation.pairs.iter().map(|p| p.execution_id).collect();
    let (mut passed, mut failed) = (0, 0);
    while !remaining.is_empty() {
        match events.recv().await {
            Ok(ProgressEvent::TestComplete(result)) if remaining.contains(&result.execution_id) => {
                if result.status == TestStatus::Passed {
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
                let mut still = std::collections::HashSet::new();
                for id in remaining.drain() {
                    let stored = engine.store().execution(id).await.ok().flatten();
                    if stored.is_some_and(|e| !e.status.is_finished()) {
                        still.insert(id);
                    }
                }
                remaining = still;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => bail!("the engine stopped"),
        }
    }
    bar.finish_and_clear();

    let mut executions = Vec::with_capacity(evaluation.pairs.len());
    let mut stored = Vec::with_capacity(evaluation.pairs.len());
    for pair in &evaluation.pairs {
        let (execution, mut results, _) = engine.results(pair.execution_id).await?;
        // Test case ids follow the suite's order.
        results.sort_by_key(|r| r.test_case_id);
        executions.push(execution);
        stored.push(results);
    }
    // `select-best` compares the pairs' outputs now that all have run.
    evaluation::decide(engine, &executions, &mut stored).await?;
    let mut per_pair = Vec::with_capacity(evaluation.pairs.len());
    let mut pairs = Vec::with_capacity(evaluation.pairs.len());
    for ((pair, execution), results) in evaluation.pairs.iter().zip(&executions).zip(stored) {
        let card_title = engine.store().card(pair.prompt_card_id).await?.map_or_else(String::new, |c| c.title);
        pairs.push(PairRun { label: pair.label.clone(), card_title, results: results.clone() });
        per_pair.push((execution.status, results));
    }
    let summary = evaluation::results(&evaluation, &per_pair);
    if let [only] = evaluation.pairs.as_slice() {
        // The one prompt and model, as the matrix's columns would name them.
        let prompt: String = only.prompt.lines().next().unwrap_or("").chars().take(80).collect();
        println!("prompt: {prompt}\nmodel:  {}\n", only.model);
        let all: Vec<(String, TestResult)> =
            pairs.iter().flat_map(|p| p.results.iter().map(|r| (p.card_title.clone(), r.clone()))).collect();
        print!("{}", report::table(&all));
    } else {
        print!("{}", report::matrix(&summary, &pairs));
    }
    if let Some(path) = &args.report.output {
        std::fs::write(path, report::json(&suite.description, &summary, &pairs)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.report.junit {
        std::fs::write(path, report::junit(&suite.description, &pairs))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let ok = pairs.iter().flat_map(|p| &p.results).all(|r| r.status == TestStatus::Passed);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
