//! Command-line interface, one file per subcommand: `serve` and `worker`
//! (serve.rs), `run` (run.rs), `watch` (watch.rs), `compare`
//! (compare.rs); reports in report.rs.

mod compare;
mod plugin;
mod report;
mod run;
mod serve;
mod tenant;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Configuration comes from the environment: PORT (3001), DATABASE_URL
    /// (postgres://... for a database several hosts share), DATABASE_PATH
    /// (data/cardrun.db, when DATABASE_URL is unset), MAX_CONCURRENT_TESTS (64), DEFAULT_ADAPTER
    /// (ollama), OLLAMA_BASE_URL, OPENAI_BASE_URL, OPENAI_API_KEY,
    /// ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY,
    /// MAX_CPU_PERCENT, MAX_MEMORY_MB, PLUGIN_DIR (every *.wasm in it is
    /// loaded as an assertion plugin), SHUTDOWN_GRACE_MS (30000: on SIGTERM
    /// or Ctrl-C, running tests get this long to finish), CARDRUN_CACHE_DIR,
    /// CARDRUN_LOG.
    Serve {
        /// Port to listen on (overrides PORT).
        #[arg(long, env = "PORT", default_value_t = 3001)]
        port: u16,
        /// Address to bind. Loopback by default: the embedded default needs
        /// no API keys, so other interfaces are opt-in (`--host 0.0.0.0`),
        /// with a warning while no tenant exists.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// SQLite database file (overrides DATABASE_URL and DATABASE_PATH).
        #[arg(long)]
        database: Option<PathBuf>,
        /// The model that grades assertions which ask one (`llm-rubric`,
        /// `similar`...) when neither the assertion nor its test names one,
        /// as `adapter:model` (overrides DEFAULT_GRADER).
        #[arg(long, value_name = "MODEL")]
        grader: Option<String>,
        #[command(flatten)]
        plugins: PluginFiles,
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
        #[command(flatten)]
        plugins: PluginFiles,
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
    /// Run a suite (promptfoo's format) locally, without a server: every
    /// (prompt, provider) pair, compared in a table.
    ///
    /// Exits 0 when every test passed, 1 when any failed or errored, 2 on a
    /// usage or configuration error.
    Run {
        /// The suite file (prompts, providers, tests; `file://` paths are
        /// read below its folder).
        suite: PathBuf,
        /// Model as `adapter:model`, replacing the suite's providers.
        #[arg(long)]
        model: Option<String>,
        /// Adapter for bare model names (overrides DEFAULT_ADAPTER).
        #[arg(long)]
        adapter: Option<String>,
        /// The model that grades assertions which ask one (`llm-rubric`,
        /// `similar`...) when neither the assertion nor its test names one,
        /// as `adapter:model` (overrides DEFAULT_GRADER).
        #[arg(long, value_name = "MODEL")]
        grader: Option<String>,
        /// Tests run at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
        concurrency: u32,
        /// Per-test timeout in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout: u64,
        /// Retries of a failing test (0 disables retries).
        #[arg(long, default_value_t = 0)]
        retries: u32,
        /// How long the model may take to answer the warm-up request before
        /// the run stops with an error, in milliseconds (a large model
        /// loading cold may need a minute).
        #[arg(long, default_value_t = 5_000)]
        warmup_timeout: u64,
        #[command(flatten)]
        report: report::ReportArgs,
        #[command(flatten)]
        plugins: PluginFiles,
    },
    /// Follow an execution on a server live (Socket.IO), with a progress
    /// bar, then print the same results table as `run`.
    ///
    /// Exits 0 when every test passed, 1 when any failed or errored (or
    /// the execution was cancelled), 2 on a usage error, an unknown
    /// execution or a server that cannot be reached.
    Watch {
        /// The execution id (a UUID, as `POST .../queue` returned it).
        execution_id: String,
        /// The server's base URL.
        #[arg(long, env = "CARDRUN_SERVER", default_value = "http://localhost:3001")]
        server: String,
        /// An API key, for a server with tenants (`cardrun key create`).
        #[arg(long, env = "CARDRUN_API_KEY", hide_env_values = true)]
        key: Option<String>,
        #[command(flatten)]
        report: report::ReportArgs,
    },
    /// Compare two `run --output` reports: which tests changed verdict,
    /// matched by pair and test name.
    ///
    /// Exits 1 when a test that passed in BASE does not pass in OTHER (a
    /// regression), 0 otherwise, 2 when a report cannot be read.
    Compare {
        /// The earlier report (JSON from `cardrun run --output`).
        base: PathBuf,
        /// The later report.
        other: PathBuf,
    },
    /// Tools for plugin authors: scaffold, check and benchmark a plugin.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Tenants: teams with their own API keys. Once one exists, every API
    /// and Socket.IO request needs a key.
    Tenant {
        #[command(subcommand)]
        command: tenant::TenantCommand,
        /// SQLite database file (overrides DATABASE_URL and DATABASE_PATH).
        #[arg(long, global = true)]
        database: Option<PathBuf>,
    },
    /// API keys of tenants.
    Key {
        #[command(subcommand)]
        command: tenant::KeyCommand,
        /// SQLite database file (overrides DATABASE_URL and DATABASE_PATH).
        #[arg(long, global = true)]
        database: Option<PathBuf>,
    },
}

/// Plugins loaded from files at start (`serve`, `worker`, `run`).
#[derive(Debug, Clone, clap::Args)]
pub struct PluginFiles {
    /// An assertion plugin (.wasm component) to load; repeatable.
    /// PLUGIN_DIR adds every *.wasm in a folder.
    #[arg(long = "plugin", value_name = "FILE")]
    pub assertions: Vec<PathBuf>,
    /// A model adapter: a manifest (YAML or JSON) with `name`, `component`
    /// (the .wasm, relative to the manifest), `allowed_hosts`, `config`
    /// and `secret_headers`, as an upload sends them; repeatable.
    #[arg(long = "adapter-plugin", value_name = "MANIFEST")]
    pub adapters: Vec<PathBuf>,
}

impl PluginFiles {
    /// Adds these files to what `settings` loads.
    pub fn apply(self, settings: &mut cardrun::app::Settings) {
        settings.assertion_plugins.extend(self.assertions);
        settings.adapter_plugins.extend(self.adapters);
    }
}

impl Cli {
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve { .. } | Command::Worker { .. } => "info",
            Command::CompilePlugin { .. } => "error",
            Command::Run { .. }
            | Command::Watch { .. }
            | Command::Compare { .. }
            | Command::Plugin { .. }
            | Command::Tenant { .. }
            | Command::Key { .. } => "warn",
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { port, host, database, grader, plugins, no_worker } => {
            serve::serve(serve::ServeArgs { port, host, database, grader, plugins, no_worker }).await
        }
        Command::Worker { plugins } => serve::worker(plugins).await,
        Command::Watch { execution_id, server, key, report } => {
            watch::watch(watch::WatchArgs { execution_id, server, key, report }).await
        }
        Command::Compare { base, other } => compare::compare_reports(&base, &other),
        Command::Plugin { command } => plugin::plugin(command).await,
        Command::Tenant { command, database } => tenant::tenant(command, database).await,
        Command::Key { command, database } => tenant::key(command, database).await,
        Command::CompilePlugin { input, output, pooling } => {
            cardrun::sandbox::compiler::compile_file(&input, &output, pooling)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            suite,
            model,
            adapter,
            grader,
            concurrency,
            timeout,
            retries,
            warmup_timeout,
            report,
            plugins,
        } => {
            let args = run::RunArgs {
                suite,
                model,
                adapter,
                grader,
                concurrency,
                timeout,
                retries,
                warmup: std::time::Duration::from_millis(warmup_timeout),
                report,
                plugins,
            };
            run::run_suite(args).await
        }
    }
}
