//! `cardrun serve` and `cardrun worker`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use cardrun::app::{App, Settings, WorkerApp};

/// `cardrun serve`'s flags.
pub struct ServeArgs {
    pub port: u16,
    pub host: String,
    pub database: Option<PathBuf>,
    pub grader: Option<String>,
    pub plugins: super::PluginFiles,
    pub no_worker: bool,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs { port, host, database, grader, plugins, no_worker } = args;
    let host = host.as_str();
    let mut settings = Settings::from_env()?;
    if let Some(grader) = grader {
        settings.grader = Some(cardrun::domain::GraderModels::single(&grader));
    }
    if no_worker && settings.redis.is_none() {
        bail!("--no-worker needs a shared queue for workers to claim from: set REDIS_URL");
    }
    settings.run_worker = !no_worker;
    settings.port = port;
    compile_in_a_child(&mut settings)?;
    plugins.apply(&mut settings);
    if let Some(path) = database {
        settings.database = cardrun::store::Database::Sqlite(path);
    }
    let app = App::start(&settings).await.context("starting cardrun")?;
    let listener =
        tokio::net::TcpListener::bind((host, port)).await.with_context(|| format!("binding {host}:{port}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    if !bound.ip().is_loopback() && !app.auth_enabled().await? {
        tracing::warn!(
            address = %bound,
            "listening beyond this machine without authentication: anyone who can reach this port can read, \
             run and delete everything; create a tenant (`cardrun tenant create`) for API keys, or bind 127.0.0.1"
        );
    }
    app.serve(listener, shutdown_signal()).await?;
    app.drain(settings.shutdown_grace).await;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(plugins: super::PluginFiles) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::from_env()?;
    plugins.apply(&mut settings);
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
pub fn compile_in_a_child(settings: &mut Settings) -> anyhow::Result<()> {
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

pub async fn shutdown_signal() {
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
