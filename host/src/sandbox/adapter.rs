//! Running model-adapter plugins: one fresh instance per call, with the
//! adapter's HTTP grant.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings::adapter::{ModelAdapterPre, cardrun::plugin::types as wit};
use super::bindings::embedding::EmbeddingAdapterPre;
use super::bindings::logprob::LogprobAdapterPre;
use super::error::SandboxError;
use super::http::{HttpCapability, HttpGrant};
use super::limits::Limits;
use super::state::{self, HttpAccess, PluginState};
use super::types::{Completion, CompletionRequest, Prompt, TokenUsage};

/// How an adapter is configured on this host.
#[derive(Debug, Clone, Default)]
pub struct AdapterSettings {
    /// JSON object handed to the plugin (e.g. `base_url`); never secrets.
    pub config: Value,
    /// Where it may connect, and the secret headers added on the way.
    pub grant: HttpGrant,
}

/// A compiled, pre-linked model-adapter component.
pub struct AdapterPlugin {
    name: String,
    hash: String,
    size_bytes: usize,
    engine: Engine,
    pre: ModelAdapterPre<PluginState>,
    /// The same component seen as `embedding-adapter`, when it exports
    /// `embed`.
    embedder: Option<EmbeddingAdapterPre<PluginState>>,
    /// The same component seen as `logprob-adapter`, when it exports
    /// `complete-with-logprobs`.
    scorer: Option<LogprobAdapterPre<PluginState>>,
    settings: AdapterSettings,
    grant: Arc<HttpGrant>,
    config_text: String,
    http: HttpCapability,
}

impl AdapterPlugin {
    /// Links `component` as the `model-adapter` world.
    pub fn load(
        name: &str,
        engine: &Engine,
        linker: &Linker<PluginState>,
        component: &Component,
        hash: String,
        settings: AdapterSettings,
        http: HttpCapability,
    ) -> Result<Self, SandboxError> {
        let wrong_world =
            |e: wasmtime::Error| SandboxError::WrongWorld { world: "model-adapter", detail: format!("{e:#}") };
        super::imports::check(engine, component, super::imports::WorldKind::ModelAdapter)?;
        let instance_pre = linker.instantiate_pre(component).map_err(wrong_world)?;
        let embedder = EmbeddingAdapterPre::new(instance_pre.clone()).ok();
        let scorer = LogprobAdapterPre::new(instance_pre.clone()).ok();
        let pre = ModelAdapterPre::new(instance_pre).map_err(wrong_world)?;
        let config_text = settings.config.to_string();
        Ok(Self {
            name: name.to_string(),
            hash,
            size_bytes: 0,
            engine: engine.clone(),
            pre,
            embedder,
            scorer,
            grant: Arc::new(settings.grant.clone()),
            settings,
            config_text,
            http,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same adapter, knowing its component's size.
    pub fn with_size(mut self, size_bytes: usize) -> Self {
        self.size_bytes = size_bytes;
        self
    }

    /// The component's size in bytes.
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn settings(&self) -> &AdapterSettings {
        &self.settings
    }

    fn access(&self) -> HttpAccess {
        HttpAccess { capability: self.http.clone(), grant: self.grant.clone() }
    }

    /// One completion in a fresh instance under `limits`.
    pub async fn complete(&self, request: &CompletionRequest, limits: &Limits) -> Result<Completion, SandboxError> {
        let prompt = match &request.prompt {
            Prompt::Text(t) => wit::Prompt::Text(t.clone()),
            Prompt::Chat(messages) => wit::Prompt::Chat(
                messages
                    .iter()
                    .map(|m| wit::ChatMessage { role: m.role.clone(), content: m.content.clone() })
                    .collect(),
            ),
        };
        let o = &request.options;
        let wit_request = wit::CompletionRequest {
            model: request.model.clone(),
            prompt,
            options: wit::GenerationOptions {
                temperature: o.temperature,
                top_p: o.top_p,
                max_tokens: o.max_tokens,
                seed: o.seed,
                stop: o.stop.clone(),
            },
            config: self.config_text.clone(),
        };
        let input_len = match &wit_request.prompt {
            wit::Prompt::Text(t) => t.len(),
            wit::Prompt::Chat(m) => m.iter().map(|m| m.content.len() + m.role.len()).sum(),
        };
        if input_len > limits.max_input_bytes {
            return Err(SandboxError::InputTooLarge { len: input_len, cap: limits.max_input_bytes });
        }

        let started = Instant::now();
        let (mut store, logs) = state::new_store(&self.engine, limits, Some(self.access()))?;
        let call = async {
            if !request.logprobs {
                let instance = self.pre.instantiate_async(&mut store).await?;
                return Ok(instance.call_complete(&mut store, &wit_request).await?.map(|r| (r, None)));
            }
            // Checked by the caller: a request for log-probabilities reaches
            // only an adapter that has the export.
            let Some(scorer) = &self.scorer else {
                return Ok(Err(format!("adapter `{}` does not return log-probabilities", self.name)));
            };
            let instance = scorer.instantiate_async(&mut store).await?;
            let scored = instance.call_complete_with_logprobs(&mut store, &wit_request).await?;
            wasmtime::Result::Ok(scored.map(|(r, logprobs)| (r, Some(logprobs))))
        };
        let outcome = state::with_outer_deadline(limits, call).await;
        let fuel_used = state::fuel_used(&store, limits);
        let (response, logprobs) = state::conclude(outcome, &store, limits, &logs)?;
        // Eight bytes a token: bounded as the text is.
        let logprob_bytes = logprobs.as_ref().map_or(0, |l| l.len().saturating_mul(8));
        if logprob_bytes > limits.max_output_bytes {
            return Err(SandboxError::OutputTooLarge { len: logprob_bytes, cap: limits.max_output_bytes });
        }
        if logprobs.as_ref().is_some_and(|l| l.iter().any(|p| !(p.is_finite() && *p <= 0.0))) {
            return Err(SandboxError::Plugin("a log-probability that is not a number at most 0".into()));
        }
        if response.text.len() > limits.max_output_bytes {
            return Err(SandboxError::OutputTooLarge { len: response.text.len(), cap: limits.max_output_bytes });
        }
        Ok(Completion {
            text: response.text,
            tokens: response.tokens.map(|t| TokenUsage { prompt: t.prompt, completion: t.completion }),
            finish_reason: response.finish_reason,
            logprobs,
            fuel_used,
            duration: started.elapsed(),
        })
    }

    /// Whether the adapter can return log-probabilities.
    pub fn scores_tokens(&self) -> bool {
        self.scorer.is_some()
    }

    /// Whether the adapter can embed text.
    pub fn embeds(&self) -> bool {
        self.embedder.is_some()
    }

    /// One embedding per text from `model`, in a fresh instance under
    /// `limits`.
    pub async fn embed(&self, model: &str, texts: &[String], limits: &Limits) -> Result<Vec<Vec<f32>>, SandboxError> {
        let Some(embedder) = &self.embedder else {
            return Err(SandboxError::EmbeddingsUnsupported { adapter: self.name.clone() });
        };
        let input_len: usize = texts.iter().map(String::len).sum();
        if input_len > limits.max_input_bytes {
            return Err(SandboxError::InputTooLarge { len: input_len, cap: limits.max_input_bytes });
        }
        let (mut store, logs) = state::new_store(&self.engine, limits, Some(self.access()))?;
        let call = async {
            let instance = embedder.instantiate_async(&mut store).await?;
            instance.call_embed(&mut store, model, texts, &self.config_text).await
        };
        let outcome = state::with_outer_deadline(limits, call).await;
        let vectors = state::conclude(outcome, &store, limits, &logs)?;
        if vectors.len() != texts.len() {
            return Err(SandboxError::Plugin(format!(
                "asked for {} embeddings, the adapter returned {}",
                texts.len(),
                vectors.len()
            )));
        }
        Ok(vectors)
    }

    /// Pre-loads `model` through the adapter's `warm`.
    pub async fn warm(&self, model: &str, limits: &Limits) -> Result<(), SandboxError> {
        let (mut store, logs) = state::new_store(&self.engine, limits, Some(self.access()))?;
        let call = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            instance.call_warm(&mut store, model, &self.config_text).await
        };
        let outcome = state::with_outer_deadline(limits, call).await;
        state::conclude(outcome, &store, limits, &logs)
    }
}
