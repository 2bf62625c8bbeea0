//! Assertion parameters checked when a test case is written: each plugin
//! that exports `check` (the `checked-assertion` world) validates its own
//! parameters, so a bad one is a 400 at creation, update or import rather
//! than an error in every run.

use std::collections::HashMap;
use std::time::Duration;

use super::assertion::ParamsToCheck;
use super::{AssertionSpec, Limits, Owner, Sandbox, SandboxError, content_hash};

/// Longest objection kept from a plugin's `check`; a longer one is refused
/// as `output_too_large`, never shown.
pub const MAX_OBJECTION_BYTES: usize = 4096;

impl Sandbox {
    /// The limits of one `check`: a second of CPU at this machine's fuel
    /// rate within a 2 s deadline, and 64 MiB of memory. A check parses
    /// parameters; it has no output to look at.
    pub fn check_limits(&self) -> Limits {
        let mut limits = Limits::from_resource_limits(50.0, 64, 2_000, 1).with_fuel_rate(self.fuel.fuel_per_ms);
        limits.max_output_bytes = MAX_OBJECTION_BYTES;
        limits.deadline = Duration::from_secs(2);
        limits
    }

    /// Checks `spec`'s parameters, in a test case whose expected output is
    /// `expected`, with the plugin providing its type to `owner`. `Ok` when
    /// the plugin does not check parameters; an unknown type is
    /// `unknown_assertion`.
    pub async fn check_parameters(
        &self,
        owner: Owner,
        spec: &AssertionSpec,
        expected: Option<&str>,
    ) -> Result<(), SandboxError> {
        let plugin = self.assertion_plugin_for(owner, &spec.kind)?;
        let (_, base) = spec.base_type();
        let params =
            ParamsToCheck { value: &spec.value, threshold: spec.threshold, config: spec.config.as_ref(), expected };
        plugin.check(base, &params, &self.check_limits()).await
    }
}

/// The checks of one request: identical parameters (the same assertion on
/// many test cases of an import) are checked once.
pub struct ParameterChecks<'a> {
    sandbox: &'a Sandbox,
    owner: Owner,
    /// SHA-256 of the parameters -> the check's outcome.
    done: HashMap<String, Result<(), SandboxError>>,
}

impl<'a> ParameterChecks<'a> {
    /// The checks of a request by `owner`, with the plugins it sees.
    pub fn new(sandbox: &'a Sandbox, owner: Owner) -> Self {
        Self { sandbox, owner, done: HashMap::new() }
    }

    /// [`Sandbox::check_parameters`], and that the assertion's
    /// `transform` compiles, remembered for this request.
    pub async fn check(&mut self, spec: &AssertionSpec, expected: Option<&str>) -> Result<(), SandboxError> {
        let key = key_of(spec, expected);
        if let Some(done) = self.done.get(&key) {
            return done.clone();
        }
        let mut outcome = self.sandbox.check_parameters(self.owner, spec, expected).await;
        if let (Ok(()), Some(script)) = (&outcome, &spec.transform) {
            outcome = self.check_transform(script).await;
        }
        self.done.insert(key, outcome.clone());
        outcome
    }

    /// Checks that a `transform` compiles (a test's, or an assertion's),
    /// remembered for this request; a script that does not is
    /// [`SandboxError::InvalidParameters`].
    pub async fn check_transform(&mut self, script: &str) -> Result<(), SandboxError> {
        let key = content_hash(format!("transform\u{0}{script}").as_bytes());
        if let Some(done) = self.done.get(&key) {
            return done.clone();
        }
        let outcome = match self.sandbox.check_script(&super::scripts::transform_function(script)).await {
            Err(SandboxError::Script(message)) => Err(SandboxError::InvalidParameters(format!("transform: {message}"))),
            other => other,
        };
        self.done.insert(key, outcome.clone());
        outcome
    }

    /// How many distinct parameter sets were checked.
    pub fn distinct(&self) -> usize {
        self.done.len()
    }
}

/// Everything a check sees, hashed: type (negation included: `not-` does not
/// change the parameters, but costs nothing to keep apart), value, threshold,
/// config and expected output.
fn key_of(spec: &AssertionSpec, expected: Option<&str>) -> String {
    let (_, base) = spec.base_type();
    let mut bytes = Vec::new();
    for part in [
        base.as_bytes(),
        spec.value.to_string().as_bytes(),
        &spec.threshold.map_or([0xff; 8], f64::to_le_bytes),
        spec.config.as_ref().map_or_else(String::new, ToString::to_string).as_bytes(),
        spec.transform.as_deref().unwrap_or("\u{0}none").as_bytes(),
        expected.unwrap_or("\u{0}none").as_bytes(),
    ] {
        bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
        bytes.extend_from_slice(part);
    }
    content_hash(&bytes)
}
