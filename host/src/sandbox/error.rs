//! Every way a plugin use can fail, as one typed error.

use std::time::Duration;

/// Why a plugin use did not produce a result.
///
/// Each variant names a distinct cause so that callers (the engine, reports)
/// can tell a slow plugin from a greedy one from a broken one.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum SandboxError {
    #[error(
        "plugin ran out of fuel: its budget of {budget} units is {} ms of CPU at {fuel_per_ms} units/ms (resource_limits.cpu_percent {cpu_percent} % of timeout_per_test)",
        .budget / (*.fuel_per_ms).max(1)
    )]
    OutOfFuel { budget: u64, cpu_percent: f64, fuel_per_ms: u64 },
    #[error("plugin exceeded its deadline of {} ms", .deadline.as_millis())]
    Deadline { deadline: Duration },
    #[error("plugin exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    #[error("plugin overflowed its stack")]
    StackOverflow,
    #[error("plugin trapped: {message}{}", stderr_suffix(.stderr_tail))]
    Trap { message: String, stderr_tail: String },
    #[error("plugin output is {len} bytes, over the cap of {cap}")]
    OutputTooLarge { len: usize, cap: usize },
    #[error("plugin input is {len} bytes, over the cap of {cap}")]
    InputTooLarge { len: usize, cap: usize },
    #[error("plugin tried to reach host `{host}`, which is not on its allow-list")]
    HostDenied { host: String },
    #[error("plugin reported an error: {0}")]
    Plugin(String),
    #[error("grader: {0}")]
    Grader(String),
    /// A transform or template filter failed on its own terms: it does not
    /// compile, is not a function, threw, or returned what JSON cannot hold.
    #[error("the script failed: {0}")]
    Script(String),
    #[error("model adapter `{adapter}` cannot embed text (it does not export `embed`)")]
    EmbeddingsUnsupported { adapter: String },
    #[error("not a valid WebAssembly component: {0}")]
    InvalidComponent(String),
    #[error(
        "the component imports {}, which cardrun does not provide to `{world}` plugins{}",
        .imports.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "),
        if .hints.is_empty() { String::new() } else { format!(": {}", .hints) }
    )]
    MissingImports { world: &'static str, imports: Vec<String>, hints: String },
    #[error("component does not implement the `{world}` world: {detail}")]
    WrongWorld { world: &'static str, detail: String },
    #[error("assertion type `{name}` is built in and cannot be replaced by a plugin")]
    BuiltinType { name: String },
    #[error(
        "assertion type `{name}` is provided by plugin `{owner}`; only that plugin can be replaced (PUT /api/plugins/{owner})"
    )]
    TypeTaken { name: String, owner: String },
    #[error("a plugin named `{name}` is loaded already; replace it with PUT /api/plugins/{name}")]
    PluginExists { name: String },
    #[error("compiling the plugin took longer than this host allows ({budget_ms} ms, COMPILE_BUDGET_MS)")]
    CompileBudget { budget_ms: u64 },
    #[error("this host holds its maximum of {max} plugins (PLUGIN_MAX_COUNT); delete one first")]
    TooManyPlugins { max: usize },
    #[error("no uploaded plugin named `{name}`")]
    UnknownPlugin { name: String },
    #[error("this tenant holds its allowance of {what} ({variable}); delete one first")]
    PluginQuota { what: String, variable: &'static str },
    #[error("plugin describes itself wrongly: {0}")]
    BadDescription(String),
    #[error("plugin returned an invalid verdict: {0}")]
    BadVerdict(String),
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    #[error(
        "the version of the plugin providing `{assertion_type}` this test was queued with ({}) is no longer kept: the plugin was deleted, or replaced more than {} times since; queue the test again",
        .hash.get(..12).unwrap_or(.hash), super::registry::KEPT_VERSIONS - 1
    )]
    VersionGone { assertion_type: String, hash: String },
    #[error("unknown assertion type `{name}`{}; known types: {known}", did_you_mean(.name, .known))]
    UnknownAssertion { name: String, known: String },
    #[error("unknown model adapter `{name}`; known adapters: {known}")]
    UnknownAdapter { name: String, known: String },
    #[error("sandbox fault: {0}")]
    Internal(String),
}

impl SandboxError {
    /// A short stable code for reports and APIs (`timeout`, `out_of_fuel`...).
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::OutOfFuel { .. } => "out_of_fuel",
            SandboxError::Deadline { .. } => "timeout",
            SandboxError::MemoryLimit { .. } => "memory_limit",
            SandboxError::StackOverflow => "stack_overflow",
            SandboxError::Trap { .. } => "trap",
            SandboxError::OutputTooLarge { .. } => "output_too_large",
            SandboxError::InputTooLarge { .. } => "input_too_large",
            SandboxError::HostDenied { .. } => "host_denied",
            SandboxError::Plugin(_) => "plugin_error",
            SandboxError::Grader(_) => "grader_error",
            SandboxError::Script(_) => "script_error",
            SandboxError::EmbeddingsUnsupported { .. } => "embeddings_unsupported",
            SandboxError::InvalidComponent(_) => "invalid_component",
            SandboxError::MissingImports { .. } => "missing_imports",
            SandboxError::WrongWorld { .. } => "wrong_world",
            SandboxError::BuiltinType { .. } => "builtin_type",
            SandboxError::TypeTaken { .. } => "type_taken",
            SandboxError::PluginExists { .. } => "plugin_exists",
            SandboxError::UnknownPlugin { .. } => "unknown_plugin",
            SandboxError::PluginQuota { .. } => "plugin_quota",
            SandboxError::TooManyPlugins { .. } => "too_many_plugins",
            SandboxError::CompileBudget { .. } => "compile_budget",
            SandboxError::BadDescription(_) => "bad_description",
            SandboxError::BadVerdict(_) => "bad_verdict",
            SandboxError::InvalidParameters(_) => "invalid_parameters",
            SandboxError::VersionGone { .. } => "version_gone",
            SandboxError::UnknownAssertion { .. } => "unknown_assertion",
            SandboxError::UnknownAdapter { .. } => "unknown_adapter",
            SandboxError::Internal(_) => "internal",
        }
    }
}

impl SandboxError {
    /// Whether the same plugin on the same input fails the same way again,
    /// so that a retry cannot help (unless the model's output changes).
    pub fn is_deterministic(&self) -> bool {
        matches!(
            self,
            SandboxError::OutOfFuel { .. }
                | SandboxError::MemoryLimit { .. }
                | SandboxError::StackOverflow
                | SandboxError::Trap { .. }
                | SandboxError::OutputTooLarge { .. }
                | SandboxError::InputTooLarge { .. }
                | SandboxError::BadVerdict(_)
                | SandboxError::VersionGone { .. }
                | SandboxError::EmbeddingsUnsupported { .. }
        )
    }
}

/// "; did you mean `x`?" when one of the comma-separated `known` names is
/// close to `name` (a typo, or a prefix such as `similar`).
fn did_you_mean(name: &str, known: &str) -> String {
    let base = name.strip_prefix("not-").unwrap_or(name);
    if base == "python" {
        return "; no Python engine runs inside the sandbox: write the check as a `javascript` assertion, or as a plugin in Python (componentize-py; docs/plugins.md)".into();
    }
    let candidates: Vec<&str> = known.split(", ").collect();
    match crate::domain::closest(base, &candidates) {
        Some(best) if best != base => {
            let prefix = if base.len() < name.len() { "not-" } else { "" };
            format!("; did you mean `{prefix}{best}`?")
        }
        _ => String::new(),
    }
}

fn stderr_suffix(tail: &str) -> String {
    if tail.trim().is_empty() { String::new() } else { format!("; stderr: {}", tail.trim_end()) }
}
