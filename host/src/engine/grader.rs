//! The grader of one test attempt: answers its assertions' grader calls
//! through the same adapters, response cache, retries and endpoint limits
//! as the test's own model call, and counts what they cost for its result.

use std::sync::{Arc, Mutex, PoisonError};

use super::cache::ResponseCache;
use crate::domain::{GraderModels, GradingUsage, ModelRef, PriceTable, TokenUsage};
use crate::sandbox::{
    Completion, CompletionRequest, GenerationOptions, Grader, GraderFailure, GraderFuture, Limits, Prompt, Sandbox,
};

/// One attempt's grader.
pub struct TestGrader {
    sandbox: Arc<Sandbox>,
    cache: Arc<ResponseCache>,
    prices: Arc<PriceTable>,
    tenant: Option<i64>,
    limits: Limits,
    /// A retry asks the grader again, as it asks the model again: the
    /// cached verdict may be what failed.
    use_cache: bool,
    usage: Mutex<GradingUsage>,
}

impl TestGrader {
    pub fn new(
        sandbox: Arc<Sandbox>,
        cache: Arc<ResponseCache>,
        prices: Arc<PriceTable>,
        tenant: Option<i64>,
        limits: Limits,
        use_cache: bool,
    ) -> Self {
        // No call yet: nothing unknown, nothing spent.
        let usage = GradingUsage { cost: Some(0.0), ..GradingUsage::default() };
        Self { sandbox, cache, prices, tenant, limits, use_cache, usage: Mutex::new(usage) }
    }

    /// What the grader calls of this attempt cost so far; `None` if it
    /// made none.
    pub fn usage(&self) -> Option<GradingUsage> {
        let usage = *self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        (usage.calls > 0).then_some(usage)
    }

    /// The adapter and model of `id` (written in full by the planner).
    fn model(&self, id: &str) -> Result<ModelRef, GraderFailure> {
        ModelRef::parse_grader(id, "ollama", &self.sandbox.adapter_names_for(self.tenant))
            .map_err(|e| GraderFailure::Failed(format!("grading provider: {}", e.0)))
    }

    /// Counts one call; its cost is known when the model has a price and
    /// the server counted tokens (embeddings report none).
    fn bill(&self, model: &ModelRef, tokens: Option<TokenUsage>, cache_hit: bool) {
        let cost = self.prices.price(&model.adapter, &model.model).zip(tokens).map(|(p, t)| p.cost(t));
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        usage.cost = usage.cost.zip(cost).map(|(a, b)| a + b);
        usage.calls = usage.calls.saturating_add(1);
        if cache_hit {
            usage.cache_hits = usage.cache_hits.saturating_add(1);
        }
        if let Some(t) = tokens {
            usage.tokens.prompt = usage.tokens.prompt.saturating_add(t.prompt);
            usage.tokens.completion = usage.tokens.completion.saturating_add(t.completion);
        }
    }
}

impl Grader for TestGrader {
    fn complete<'a>(&'a self, models: &'a GraderModels, prompt: Prompt) -> GraderFuture<'a, Completion> {
        Box::pin(async move {
            let id = models.text_model().ok_or(GraderFailure::NotConfigured)?;
            let model = self.model(id)?;
            let prompt = if model.chat { prompt.into_chat() } else { prompt };
            let request = CompletionRequest {
                model: model.model.clone(),
                prompt,
                options: GenerationOptions::default(),
                logprobs: false,
            };
            let call = || self.sandbox.complete_for(self.tenant, &model.adapter, &request, &self.limits);
            let (answer, cache_hit) = if self.use_cache {
                self.cache.get_or_call(ResponseCache::key(self.tenant, &model.adapter, &request), call).await
            } else {
                (call().await, false)
            };
            let completion = answer.map_err(|e| GraderFailure::Failed(format!("{id}: {}: {e}", e.code())))?;
            self.bill(&model, completion.tokens, cache_hit);
            Ok(completion)
        })
    }

    fn embed<'a>(&'a self, models: &'a GraderModels, texts: Vec<String>) -> GraderFuture<'a, Vec<Vec<f32>>> {
        Box::pin(async move {
            let id = models.embedding_model().ok_or(GraderFailure::NotConfigured)?;
            let model = self.model(id)?;
            let vectors =
                self.sandbox.embed_for(self.tenant, &model.adapter, &model.model, &texts, &self.limits).await.map_err(
                    |e| match e {
                        crate::sandbox::SandboxError::EmbeddingsUnsupported { .. } => {
                            GraderFailure::Unsupported(format!("{id}: {e}"))
                        }
                        e => GraderFailure::Failed(format!("{id}: {}: {e}", e.code())),
                    },
                )?;
            self.bill(&model, None, false);
            Ok(vectors)
        })
    }
}
