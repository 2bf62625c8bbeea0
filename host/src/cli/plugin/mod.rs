//! `cardrun plugin`: tools for plugin authors. `new` scaffolds a plugin
//! (new.rs), `check` validates a built component and tries it (check.rs),
//! `bench` measures it against the built-ins (bench.rs).

mod bench;
mod check;
mod new;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};

use cardrun::sandbox::{Sandbox, SandboxConfig};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Scaffold a working assertion plugin: source, the WIT, a build
    /// script and a README.
    New {
        /// The plugin's name, which is also its assertion type (a-z, 0-9, -).
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Validate a built component: its world and imports, then describe()
    /// and one sample evaluation under the sandbox limits. A model adapter
    /// gets the world and import checks only (a sample call needs a model
    /// server: try it with `run --adapter-plugin`).
    ///
    /// Exits 0 when the component would load and its sample ran, 1 when it
    /// would be refused (every reason is printed), 2 on a usage error.
    Check {
        /// The component (.wasm).
        file: PathBuf,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Per-call cost of assertion plugins (a fresh instance each call, as
    /// in a run) beside built-in plugins, in the same run.
    Bench {
        /// The components (.wasm): one or more, measured in one run.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Calls per plugin measured.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        #[command(flatten)]
        sample: SampleArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// The sample evaluation `check` and `bench` run.
#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// Assertion type to evaluate (default: the plugin's first).
    #[arg(long = "type")]
    assertion_type: Option<String>,
    /// The assertion's `value`, as JSON (default: null).
    #[arg(long, default_value = "null")]
    value: String,
    /// The model output to judge.
    #[arg(long, default_value = "The quick brown fox jumps over the lazy dog.")]
    output: String,
    /// Instance memory limit in MiB, 16-1024 (a run's is
    /// resource_limits.memory_mb / max_concurrent_tests: 512 / 8 by default).
    #[arg(long, default_value_t = 64)]
    memory_mb: u64,
    /// Deadline of one call in milliseconds (timeout_per_test).
    #[arg(long, default_value_t = 30_000)]
    timeout: u64,
}

impl SampleArgs {
    fn value(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.value).map_err(|e| anyhow::anyhow!("--value is not JSON: {e}"))
    }

    fn limits(&self, sandbox: &Sandbox) -> cardrun::sandbox::Limits {
        // One test at a time: the whole memory_mb for this instance.
        cardrun::sandbox::Limits::from_resource_limits(20.0, self.memory_mb, self.timeout, 1)
            .with_fuel_rate(sandbox.fuel_calibration().fuel_per_ms)
    }
}

pub async fn plugin(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New { name, lang, dir } => new::scaffold(&name, lang, dir),
        PluginCommand::Check { file, sample } => check::check(&file, &sample).await,
        PluginCommand::Bench { files, iterations, sample } => bench::bench(&files, iterations.max(1), &sample).await,
    }
}

/// The sandbox `check` and `bench` try plugins in: the host's, with its
/// compiled-artifact cache.
async fn sandbox() -> anyhow::Result<Sandbox> {
    let config = SandboxConfig {
        allocator: cardrun::sandbox::Allocator::Pooling { max_instances: 16 },
        ..SandboxConfig::from_env()
    };
    Ok(Sandbox::new(config).await?)
}

/// A spinner on stderr while `what` runs (compiling a 12-18 MB runtime
/// takes seconds), cleared when it ends.
pub fn spinner(what: String) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// `bytes` as MB with one decimal.
fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Reads a component file with its path in the error.
fn read(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))
}
