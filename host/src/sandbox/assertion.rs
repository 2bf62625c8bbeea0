//! Running assertion plugins: one fresh instance per evaluation.

use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings::assertion::{Assertion, AssertionPre, cardrun::plugin::types as wit};
use super::bindings::checked::CheckedAssertionPre;
use super::bindings::scripted::ScriptedAssertionPre;
use super::error::SandboxError;
use super::grader::GraderAccess;
use super::limits::Limits;
use super::state::{self, PluginState};
use super::types::Subject;

/// What an assertion plugin says about itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AssertionInfo {
    pub name: String,
    pub version: String,
    pub assertion_types: Vec<String>,
    pub description: String,
    /// SHA-256 of the component's bytes.
    pub hash: String,
    /// The component exports `check` (the `checked-assertion` world): its
    /// parameters are checked when a test case is written.
    pub checks_parameters: bool,
    /// The component's size in bytes (what counts against a tenant's
    /// plugin allowance).
    pub size_bytes: usize,
    /// The component imports the `grader` capability (the
    /// `graded-assertion` world): it asks a model, so a test using it
    /// needs a grader model.
    pub asks_grader: bool,
    /// The component imports `model-call` (finish reason, cost).
    #[serde(skip)]
    pub reads_model_call: bool,
}

/// Most assertion types one plugin may declare.
pub const MAX_TYPES: usize = 64;
/// Longest assertion type name.
pub const MAX_TYPE_LEN: usize = 64;
/// Longest plugin name and version.
pub const MAX_NAME_LEN: usize = 64;
/// Longest plugin description.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// Checks what a plugin's `describe()` returned. Names are lowercase ASCII
/// (`[a-z0-9-]`, so no look-alike of another type can be declared), and
/// every field is bounded, so nothing unbounded is kept, logged or listed.
pub fn checked_info(described: wit::AssertionInfo, hash: String) -> Result<AssertionInfo, SandboxError> {
    let bad = |m: String| Err(SandboxError::BadDescription(m));
    let well_formed = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
    };
    if described.assertion_types.len() > MAX_TYPES {
        return bad(format!("{} assertion types declared; at most {MAX_TYPES}", described.assertion_types.len()));
    }
    if described.description.len() > MAX_DESCRIPTION_BYTES {
        return bad(format!("description is {} bytes; at most {MAX_DESCRIPTION_BYTES}", described.description.len()));
    }
    if !well_formed(&described.name, MAX_NAME_LEN) {
        return bad(format!(
            "plugin name must be 1-{MAX_NAME_LEN} characters of a-z, 0-9 and -, got {:?}",
            truncated(&described.name)
        ));
    }
    if described.version.len() > MAX_NAME_LEN || described.version.chars().any(char::is_control) {
        return bad(format!("version must be at most {MAX_NAME_LEN} printable characters"));
    }
    let mut types = described.assertion_types;
    if let Some(t) = types.iter().find(|t| !well_formed(t, MAX_TYPE_LEN) || t.starts_with("not-")) {
        return bad(format!(
            "assertion type names must be 1-{MAX_TYPE_LEN} characters of a-z, 0-9 and -, not starting with `not-`; got {:?}",
            truncated(t)
        ));
    }
    types.sort();
    types.dedup();
    if types.is_empty() {
        return bad("plugin declares no assertion types".into());
    }
    Ok(AssertionInfo {
        name: described.name,
        version: described.version,
        assertion_types: types,
        description: described.description,
        hash,
        checks_parameters: false,
        size_bytes: 0,
        asks_grader: false,
        reads_model_call: false,
    })
}

/// At most 80 characters of `s`, for messages about bad input.
fn truncated(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A verdict as returned by the plugin, plus what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub pass: bool,
    pub score: f64,
    pub reason: String,
    pub fuel_used: u64,
    /// The most linear memory the instance held, in bytes.
    pub memory_bytes: usize,
}

/// A compiled, pre-linked assertion component.
pub struct AssertionPlugin {
    engine: Engine,
    pre: AssertionPre<PluginState>,
    /// The same component seen as `checked-assertion`, when it exports
    /// `check`; older components do not, and load all the same.
    checker: Option<CheckedAssertionPre<PluginState>>,
    /// The same component seen as `scripted-assertion`, when it exports
    /// `call` (the built-in JavaScript engine).
    scripter: Option<ScriptedAssertionPre<PluginState>>,
    info: AssertionInfo,
}

impl AssertionPlugin {
    /// Links `component` as the `assertion` world (failing with
    /// [`SandboxError::WrongWorld`] if it is not one) and asks it to describe
    /// itself.
    pub async fn load(
        engine: &Engine,
        linker: &Linker<PluginState>,
        component: &Component,
        hash: String,
        size_bytes: usize,
    ) -> Result<Self, SandboxError> {
        let wrong_world =
            |e: wasmtime::Error| SandboxError::WrongWorld { world: "assertion", detail: format!("{e:#}") };
        super::imports::check(engine, component, super::imports::WorldKind::Assertion)?;
        let instance_pre = linker.instantiate_pre(component).map_err(wrong_world)?;
        // Looked up by the export's presence and type; a component without
        // it (or with a `check` of another type) is a plain assertion.
        let checker = CheckedAssertionPre::new(instance_pre.clone()).ok();
        let scripter = ScriptedAssertionPre::new(instance_pre.clone()).ok();
        let pre = AssertionPre::new(instance_pre).map_err(wrong_world)?;
        let limits = Limits::default();
        let (mut store, logs) = state::new_store(engine, &limits, None)?;
        let instance: Assertion =
            pre.instantiate_async(&mut store).await.map_err(|e| state::classify(&e, &store, &limits, &logs))?;
        let described =
            instance.call_describe(&mut store).await.map_err(|e| state::classify(&e, &store, &limits, &logs))?;
        let imports =
            |prefix: &str| component.component_type().imports(engine).any(|(name, _)| name.starts_with(prefix));
        let info = AssertionInfo {
            checks_parameters: checker.is_some(),
            size_bytes,
            asks_grader: imports("cardrun:plugin/grader@"),
            reads_model_call: imports("cardrun:plugin/model-call@"),
            ..checked_info(described, hash)?
        };
        Ok(Self { engine: engine.clone(), pre, checker, scripter, info })
    }

    pub fn info(&self) -> &AssertionInfo {
        &self.info
    }

    /// Evaluates `assertion_type` (no `not-`) on `subject` in a fresh
    /// instance under `limits`; `grader` answers the plugin's grader calls
    /// (without one, each is `not-configured`).
    #[allow(clippy::too_many_arguments)]
    pub async fn evaluate(
        &self,
        assertion_type: &str,
        value: &serde_json::Value,
        threshold: Option<f64>,
        config: Option<&serde_json::Value>,
        subject: &Subject,
        limits: &Limits,
        grader: Option<GraderAccess>,
    ) -> Result<Judgement, SandboxError> {
        let input = wit::AssertionInput {
            assertion_type: assertion_type.to_string(),
            output: subject.output.clone(),
            expected: subject.expected.clone(),
            value: value.to_string(),
            threshold,
            config: config.map_or_else(|| "{}".to_string(), |c| c.to_string()),
            context: wit::TestContext {
                test_case_id: subject.test_case_id.clone(),
                variables: subject.variables.clone(),
                prompt: subject.prompt.clone(),
                latency_ms: subject.latency_ms,
                tokens: subject.tokens.map(|t| wit::TokenUsage { prompt: t.prompt, completion: t.completion }),
            },
        };
        let len = input.output.len()
            + input.value.len()
            + input.config.len()
            + input.expected.as_ref().map_or(0, String::len)
            + input.context.prompt.len();
        if len > limits.max_input_bytes {
            return Err(SandboxError::InputTooLarge { len, cap: limits.max_input_bytes });
        }

        let started = Instant::now();
        let (mut store, logs) = state::new_store(&self.engine, limits, None)?;
        store.data_mut().grader = grader;
        if self.info.reads_model_call {
            store.data_mut().model_call = Some(state::ModelCallDetails {
                finish_reason: subject.finish_reason.clone(),
                cost: subject.cost,
                logprobs: subject.logprobs.clone(),
            });
        }
        let call = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            instance.call_evaluate(&mut store, &input).await
        };
        let outcome = state::with_outer_deadline(limits, call).await;
        let fuel_used = state::fuel_used(&store, limits);
        let memory_bytes = state::peak_memory(&store);
        let verdict = state::conclude(outcome, &store, limits, &logs)?;
        // A failed grader call is an error even if the plugin went on to a
        // verdict: a grader failure is never a pass.
        if let Some(failure) = &store.data().grader_failure {
            return Err(SandboxError::Grader(failure.clone()));
        }
        if verdict.reason.len() > limits.max_output_bytes {
            return Err(SandboxError::OutputTooLarge { len: verdict.reason.len(), cap: limits.max_output_bytes });
        }
        tracing::trace!(
            assertion_type,
            fuel_used,
            elapsed_us = started.elapsed().as_micros() as u64,
            "assertion evaluated"
        );
        super::verdict::check(verdict.pass, verdict.score, threshold)?;
        Ok(Judgement { pass: verdict.pass, score: verdict.score, reason: verdict.reason, fuel_used, memory_bytes })
    }
}

impl AssertionPlugin {
    /// Checks one assertion's parameters without an output, in a fresh
    /// instance under `limits`; `Ok` when the plugin has no `check`. The
    /// plugin's objection is [`SandboxError::InvalidParameters`].
    pub async fn check(
        &self,
        assertion_type: &str,
        params: &ParamsToCheck<'_>,
        limits: &Limits,
    ) -> Result<(), SandboxError> {
        let Some(checker) = &self.checker else {
            return Ok(());
        };
        let input = wit::AssertionParams {
            assertion_type: assertion_type.to_string(),
            expected: params.expected.map(str::to_string),
            value: params.value.to_string(),
            threshold: params.threshold,
            config: params.config.map_or_else(|| "{}".to_string(), |c| c.to_string()),
        };
        let len = input.value.len() + input.config.len() + input.expected.as_ref().map_or(0, String::len);
        if len > limits.max_input_bytes {
            return Err(SandboxError::InputTooLarge { len, cap: limits.max_input_bytes });
        }
        let (mut store, logs) = state::new_store(&self.engine, limits, None)?;
        let call = async {
            let instance = checker.instantiate_async(&mut store).await?;
            instance.call_check(&mut store, &input).await
        };
        let outcome = state::with_outer_deadline(limits, call).await;
        match state::conclude(outcome, &store, limits, &logs) {
            Err(SandboxError::Plugin(message)) => Err(SandboxError::InvalidParameters(message)),
            other => other,
        }
    }
}

impl AssertionPlugin {
    /// Whether the component runs scripts (exports `call`).
    pub fn runs_scripts(&self) -> bool {
        self.scripter.is_some()
    }

    /// Calls the script `function` with `arguments` in a fresh instance
    /// under `limits`: its JSON result. The script's own failure (it does
    /// not compile, throws) is [`SandboxError::Script`]; a component
    /// without `call` is [`SandboxError::Internal`], since the host only
    /// asks the one that has it.
    pub async fn call_script(
        &self,
        function: &str,
        arguments: &[serde_json::Value],
        limits: &Limits,
    ) -> Result<serde_json::Value, SandboxError> {
        let Some(scripter) = &self.scripter else {
            return Err(SandboxError::Internal(format!("plugin `{}` does not run scripts", self.info.name)));
        };
        let arguments = serde_json::Value::from(arguments.to_vec()).to_string();
        let len = function.len() + arguments.len();
        if len > limits.max_input_bytes {
            return Err(SandboxError::InputTooLarge { len, cap: limits.max_input_bytes });
        }
        let (mut store, logs) = state::new_store(&self.engine, limits, None)?;
        let call = async {
            let instance = scripter.instantiate_async(&mut store).await?;
            instance.call_call(&mut store, function, &arguments).await
        };
        let outcome = state::with_outer_deadline(limits, call).await;
        let result = match state::conclude(outcome, &store, limits, &logs) {
            Err(SandboxError::Plugin(message)) => return Err(SandboxError::Script(message)),
            other => other?,
        };
        if result.len() > limits.max_output_bytes {
            return Err(SandboxError::OutputTooLarge { len: result.len(), cap: limits.max_output_bytes });
        }
        serde_json::from_str(&result).map_err(|e| SandboxError::Script(format!("its result is not JSON: {e}")))
    }
}

/// The parameters of one assertion as a test case states them.
#[derive(Debug, Clone, Copy)]
pub struct ParamsToCheck<'a> {
    pub value: &'a serde_json::Value,
    pub threshold: Option<f64>,
    pub config: Option<&'a serde_json::Value>,
    /// The test case's expected output.
    pub expected: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(name: &str, types: &[&str], description: &str) -> wit::AssertionInfo {
        wit::AssertionInfo {
            name: name.into(),
            version: "1.0.0".into(),
            assertion_types: types.iter().map(|t| t.to_string()).collect(),
            description: description.into(),
        }
    }

    #[test]
    fn well_formed_descriptions_pass_and_types_are_deduplicated() {
        let info = checked_info(described("tox", &["toxicity", "tox-2", "toxicity"], "ok"), "h".into()).unwrap();
        assert_eq!(info.assertion_types, ["tox-2", "toxicity"]);
    }

    #[test]
    fn unbounded_or_look_alike_descriptions_are_refused() {
        let too_many: Vec<String> = (0..=MAX_TYPES).map(|i| format!("t{i}")).collect();
        let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
        let cases = [
            described("p", &refs, ""),
            described("p", &["ok"], &"x".repeat(MAX_DESCRIPTION_BYTES + 1)),
            described("p", &["contains\u{200b}"], ""),
            described("p", &["\u{3f2}ontains"], ""),
            described("p", &["Contains"], ""),
            described("p", &[&"a".repeat(MAX_TYPE_LEN + 1)], ""),
            described("p", &["not-x"], ""),
            described("p", &[], ""),
            described("P Q", &["ok"], ""),
            described("", &["ok"], ""),
        ];
        for case in cases {
            let err = checked_info(case.clone(), "h".into()).unwrap_err();
            assert_eq!(err.code(), "bad_description", "{case:?}");
            assert!(err.to_string().len() < 400, "the message stays short: {err}");
        }
    }
}
