//! Running assertion plugins: one fresh instance per evaluation.

use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings::assertion::{Assertion, AssertionPre, cardrun::plugin::types as wit};
use super::error::SandboxError;
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
}

/// A verdict as returned by the plugin, plus what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub pass: bool,
    pub score: f64,
    pub reason: String,
    pub fuel_used: u64,
}

/// A compiled, pre-linked assertion component.
pub struct AssertionPlugin {
    engine: Engine,
    pre: AssertionPre<PluginState>,
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
    ) -> Result<Self, SandboxError> {
        let wrong_world =
            |e: wasmtime::Error| SandboxError::WrongWorld { world: "assertion", detail: format!("{e:#}") };
        let instance_pre = linker.instantiate_pre(component).map_err(wrong_world)?;
        let pre = AssertionPre::new(instance_pre).map_err(wrong_world)?;
        let limits = Limits::default();
        let (mut store, logs) = state::new_store(engine, &limits, None)?;
        let instance: Assertion =
            pre.instantiate_async(&mut store).await.map_err(|e| state::classify(&e, &store, &limits, &logs))?;
        let described =
            instance.call_describe(&mut store).await.map_err(|e| state::classify(&e, &store, &limits, &logs))?;
        let mut types: Vec<String> = described.assertion_types.iter().map(|t| t.to_ascii_lowercase()).collect();
        types.sort();
        types.dedup();
        if types.is_empty() {
            return Err(SandboxError::Plugin("plugin declares no assertion types".into()));
        }
        if let Some(bad) =
            types.iter().find(|t| t.starts_with("not-") || t.is_empty() || t.contains(char::is_whitespace))
        {
            return Err(SandboxError::Plugin(format!("invalid assertion type name `{bad}`")));
        }
        let info = AssertionInfo {
            name: described.name,
            version: described.version,
            assertion_types: types,
            description: described.description,
            hash,
        };
        Ok(Self { engine: engine.clone(), pre, info })
    }

    pub fn info(&self) -> &AssertionInfo {
        &self.info
    }

    /// Evaluates `assertion_type` (no `not-`) on `subject` in a fresh
    /// instance under `limits`.
    pub async fn evaluate(
        &self,
        assertion_type: &str,
        value: &serde_json::Value,
        threshold: Option<f64>,
        config: Option<&serde_json::Value>,
        subject: &Subject,
        limits: &Limits,
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
        let call = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            instance.call_evaluate(&mut store, &input).await
        };
        let outcome = state::with_outer_deadline(limits, call).await;
        let fuel_used = state::fuel_used(&store, limits);
        let verdict = state::conclude(outcome, &store, limits, &logs)?;
        if verdict.reason.len() > limits.max_output_bytes {
            return Err(SandboxError::OutputTooLarge { len: verdict.reason.len(), cap: limits.max_output_bytes });
        }
        tracing::trace!(
            assertion_type,
            fuel_used,
            elapsed_us = started.elapsed().as_micros() as u64,
            "assertion evaluated"
        );
        let score = if verdict.score.is_finite() { verdict.score.clamp(0.0, 1.0) } else { 0.0 };
        Ok(Judgement { pass: verdict.pass, score, reason: verdict.reason, fuel_used })
    }
}
