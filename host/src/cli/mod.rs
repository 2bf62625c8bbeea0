//! Command-line interface: `cardrun serve` and `cardrun run SUITE.yaml`.

mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use cardrun::app::{App, Settings, WorkerApp};
use cardrun::domain::TestResult;
use cardrun::engine::ExecutionRequest;
use cardrun::progress::{ExecutionComplete, ProgressEvent};
use cardrun::suite::Suite;

/// Run LLM prompt-card test suites in parallel, with every assertion and
/// model adapter sandboxed in WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "cardrun", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the REST API (cards, test cases, parallel execution).
    ///
    /// Configuration comes from the environment: PORT (3001), DATABASE_PATH
    /// (data/cardrun.db), MAX_CONCURRENT_TESTS (64), DEFAULT_ADAPTER
    /// (ollama), OLLAMA_BASE_URL, OPENAI_BASE_URL, OPENAI_API_KEY,
    /// MAX_CPU_PERCENT, MAX_MEMORY_MB, PLUGIN_DIR (every *.wasm in it is
    /// loaded as an assertion plugin), SHUTDOWN_GRACE_MS (30000: on SIGTERM
    /// or Ctrl-C, running tests get this long to finish), CARDRUN_CACHE_DIR,
    /// CARDRUN_LOG.
    Serve {
        /// Port to listen on (overrides PORT).
        #[arg(long, env = "PORT", default_value_t = 3001)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "0.0.0.0")]
        host: String,
        /// SQLite database file (overrides DATABASE_PATH).
        #[arg(long, env = "DATABASE_PATH")]
        database: Option<PathBuf>,
        /// An assertion plugin (.wasm component) to load; repeatable.
        #[arg(long = "plugin", value_name = "FILE")]
        plugins: Vec<PathBuf>,
        /// Serve the API only; `cardrun worker` processes run the tests
        /// (needs REDIS_URL).
        #[arg(long)]
        no_worker: bool,
    },
    /// Run tests from a shared Redis queue (REDIS_URL, or REDIS_HOST and
    /// REDIS_PORT); results go back through Redis to the API hosts.
    ///
    /// Needs no database. MAX_CONCURRENT_TESTS (64) bounds its running
    /// tests; LEASE_MS (15000) is how long its tests survive without a
    /// heartbeat if it dies; on SIGTERM or Ctrl-C it claims nothing more,
    /// lets running tests finish for SHUTDOWN_GRACE_MS and hands the rest
    /// back to the queue.
    Worker {
        /// An assertion plugin (.wasm component) to load; repeatable.
        #[arg(long = "plugin", value_name = "FILE")]
        plugins: Vec<PathBuf>,
    },
    /// Compile a plugin (used by `serve` and `worker`, which run it as a
    /// child process with a time budget).
    #[command(hide = true)]
    CompilePlugin {
        input: PathBuf,
        output: PathBuf,
        /// The parent's pooling allocator size (absent: on-demand).
        #[arg(long)]
        pooling: Option<u32>,
    },
    /// Run a YAML suite locally, without a server, and report the results.
    ///
    /// Exits 0 when every test passed, 1 when any failed or errored, 2 on a
    /// usage or configuration error.
    Run {
        /// The suite file (promptfoo-like: prompts, providers, tests).
        suite: PathBuf,
        /// Model as `adapter:model` (default: the suite's first provider).
        #[arg(long)]
        model: Option<String>,
        /// Adapter for bare model names (overrides DEFAULT_ADAPTER).
        #[arg(long)]
        adapter: Option<String>,
        /// Tests run at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
        concurrency: u32,
        /// Per-test timeout in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout: u64,
        /// Retries of a failing test (0 disables retries).
        #[arg(long, default_value_t = 0)]
        retries: u32,
        /// Write every result as JSON to this file.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Write a JUnit XML report to this file (for CI).
        #[arg(long)]
        junit: Option<PathBuf>,
        /// No progress bar (it is also hidden when stderr is not a terminal).
        #[arg(long)]
        quiet: bool,
        /// An assertion plugin (.wasm component) whose types the suite
        /// uses; repeatable. PLUGIN_DIR adds every *.wasm in a folder.
        #[arg(long = "plugin", value_name = "FILE")]
        plugins: Vec<PathBuf>,
    },
}

impl Cli {
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve { .. } | Command::Worker { .. } => "info",
            Command::CompilePlugin { .. } => "error",
            Command::Run { .. } => "warn",
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { port, host, database, plugins, no_worker } => {
            serve(port, &host, database, plugins, no_worker).await
        }
        Command::Worker { plugins } => worker(plugins).await,
        Command::CompilePlugin { input, output, pooling } => {
            cardrun::sandbox::compiler::compile_file(&input, &output, pooling)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { suite, model, adapter, concurrency, timeout, retries, output, junit, quiet, plugins } => {
            run_suite(RunArgs { suite, model, adapter, concurrency, timeout, retries, output, junit, quiet, plugins })
                .await
        }
    }
}

async fn serve(
    port: u16,
    host: &str,
    database: Option<PathBuf>,
    plugins: Vec<PathBuf>,
    no_worker: bool,
) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::from_env()?;
    if no_worker && settings.redis.is_none() {
        bail!("--no-worker needs a shared queue for workers to claim from: set REDIS_URL");
    }
    settings.run_worker = !no_worker;
    settings.port = port;
    compile_in_a_child(&mut settings)?;
    settings.assertion_plugins.extend(plugins);
    if database.is_some() {
        settings.database_path = database;
    }
    let app = App::start(&settings).await.context("starting cardrun")?;
    let listener =
        tokio::net::TcpListener::bind((host, port)).await.with_context(|| format!("binding {host}:{port}"))?;
    app.serve(listener, shutdown_signal()).await?;
    app.drain(settings.shutdown_grace).await;
    Ok(ExitCode::SUCCESS)
}

async fn worker(plugins: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::from_env()?;
    settings.assertion_plugins.extend(plugins);
    compile_in_a_child(&mut settings)?;
    let Some(redis) = settings.redis.clone() else {
        bail!("a worker claims tests from Redis: set REDIS_URL (or REDIS_HOST and REDIS_PORT)");
    };
    let mut stop = Box::pin(shutdown_signal());
    let Some(app) = WorkerApp::start(&settings, &redis, &mut stop).await.context("starting the worker")? else {
        return Ok(ExitCode::SUCCESS);
    };
    stop.await;
    let running = app.worker.active_tests();
    tracing::info!(running, grace_ms = settings.shutdown_grace.as_millis() as u64, "draining running tests");
    let handed_back = app.worker.drain(settings.shutdown_grace).await;
    if handed_back == 0 {
        tracing::info!("drained: every running test finished");
    } else {
        tracing::warn!(handed_back, "grace period over; unfinished tests handed back to the queue");
    }
    Ok(ExitCode::SUCCESS)
}

/// Plugins are compiled by this binary in a child process, killed after
/// `COMPILE_BUDGET_MS` (30000).
fn compile_in_a_child(settings: &mut Settings) -> anyhow::Result<()> {
    let budget = match std::env::var("COMPILE_BUDGET_MS") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .with_context(|| format!("COMPILE_BUDGET_MS must be a number of milliseconds, got `{v}`"))?,
        _ => 30_000,
    };
    settings.sandbox.compiler = Some(cardrun::sandbox::compiler::ExternalCompiler {
        program: std::env::current_exe().context("finding this program, to compile plugins with it")?,
        budget: std::time::Duration::from_millis(budget.max(100)),
    });
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

struct RunArgs {
    suite: PathBuf,
    model: Option<String>,
    adapter: Option<String>,
    concurrency: u32,
    timeout: u64,
    retries: u32,
    output: Option<PathBuf>,
    junit: Option<PathBuf>,
    quiet: bool,
    plugins: Vec<PathBuf>,
}

async fn run_suite(args: RunArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.suite).with_context(|| format!("reading {}", args.suite.display()))?;
    let suite = Suite::from_yaml(&text)?;
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
    let plan = suite.plan(|kind| sandbox.assertion_plugin(kind).map(|_| ()).map_err(|e| e.to_string()))?;

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

    let total: usize = executions.iter().map(|(_, e)| e.test_case_ids.len()).sum();
    let bar = if args.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
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
    if let Some(path) = &args.output {
        std::fs::write(path, report::json(&model, &all)?).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, report::junit(&suite.description, &all))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let ok = all.iter().all(|(_, r)| r.status == cardrun::domain::TestStatus::Passed);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
