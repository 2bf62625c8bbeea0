//! What one plugin instance's store holds, and the store's set-up and
//! failure classification shared by every plugin kind.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{adapter, assertion, graded};
use super::error::SandboxError;
use super::grader::{GraderAccess, GraderFailure, MAX_EMBED_TEXTS, MAX_EMBEDDING_DIMENSIONS};
use super::http::{HttpCapability, HttpFailure, HttpGrant, PluginRequest};
use super::limits::Limits;
use super::pipe::CapturePipe;

/// Caps linear memory and remembers whether the cap was hit, so a guest's
/// allocation failure (an abort, seen as a trap) is reported as what it is.
pub struct MemoryLimiter {
    cap: usize,
    hit: bool,
    /// The largest linear memory granted, the initial size included
    /// (wasmtime asks for it too): what a plugin use needed.
    peak: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Network access for an adapter instance.
pub struct HttpAccess {
    pub capability: HttpCapability,
    pub grant: Arc<HttpGrant>,
}

/// The data of one plugin instance's store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    http: Option<HttpAccess>,
    deadline: Instant,
    /// The host the plugin was refused, if any (turns its error into
    /// [`SandboxError::HostDenied`]).
    pub denied_host: Option<String>,
    /// Whether a host call ran out of the deadline (turns the plugin's
    /// error into [`SandboxError::Deadline`]).
    pub http_timed_out: bool,
    /// The grader an assertion may ask (`None` for adapters).
    pub grader: Option<GraderAccess>,
    /// Why a grader call failed, if one did: the assertion is then an
    /// error ([`SandboxError::Grader`]) whatever the plugin returns.
    pub grader_failure: Option<String>,
    /// The test's model call, for assertions that import `model-call`.
    pub model_call: Option<ModelCallDetails>,
}

/// What `model-call` answers.
#[derive(Debug, Clone, Default)]
pub struct ModelCallDetails {
    pub finish_reason: Arc<str>,
    pub cost: Option<f64>,
    pub logprobs: Option<Arc<[f64]>>,
}

impl graded::cardrun::plugin::model_call::Host for PluginState {
    async fn finish_reason(&mut self) -> String {
        self.model_call.as_ref().map(|c| c.finish_reason.to_string()).unwrap_or_default()
    }

    async fn cost(&mut self) -> Option<f64> {
        self.model_call.as_ref().and_then(|c| c.cost)
    }

    async fn logprobs(&mut self) -> Option<Vec<f64>> {
        self.model_call.as_ref().and_then(|c| c.logprobs.as_deref()).map(<[f64]>::to_vec)
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl assertion::cardrun::plugin::types::Host for PluginState {}
impl adapter::cardrun::plugin::types::Host for PluginState {}

impl adapter::cardrun::plugin::http::Host for PluginState {
    async fn send(
        &mut self,
        req: adapter::cardrun::plugin::http::Request,
    ) -> Result<adapter::cardrun::plugin::http::Response, adapter::cardrun::plugin::http::HttpError> {
        use adapter::cardrun::plugin::http::{HttpError, Response};
        let Some(access) = &self.http else {
            return Err(HttpError::Denied("this plugin has no network access".into()));
        };
        let request = PluginRequest { method: req.method, url: req.url, headers: req.headers, body: req.body };
        match access.capability.send(&access.grant, request, self.deadline).await {
            Ok(r) => Ok(Response { status: r.status, headers: r.headers, body: r.body }),
            Err(failure) => Err(match failure {
                HttpFailure::Denied(host) => {
                    tracing::warn!(host = %host, "plugin request to a host off its allow-list refused");
                    self.denied_host = Some(host.clone());
                    HttpError::Denied(host)
                }
                HttpFailure::InvalidUrl(m) => HttpError::InvalidUrl(m),
                HttpFailure::Timeout => {
                    self.http_timed_out = true;
                    HttpError::Timeout
                }
                HttpFailure::TooLarge(n) => HttpError::TooLarge(n),
                HttpFailure::Transport(m) => HttpError::Transport(m),
            }),
        }
    }
}

impl graded::cardrun::plugin::grader::Host for PluginState {
    async fn complete(
        &mut self,
        prompt: assertion::cardrun::plugin::types::Prompt,
    ) -> Result<assertion::cardrun::plugin::types::CompletionResponse, graded::cardrun::plugin::grader::GraderError>
    {
        use assertion::cardrun::plugin::types as wit;
        let prompt = match prompt {
            wit::Prompt::Text(text) => super::types::Prompt::Text(text),
            wit::Prompt::Chat(messages) => super::types::Prompt::Chat(
                messages.into_iter().map(|m| super::types::ChatMessage { role: m.role, content: m.content }).collect(),
            ),
        };
        let (access, models) = self.grader_models()?;
        let answer = tokio::time::timeout_at(self.deadline.into(), access.grader.complete(&models, prompt)).await;
        let completion = self.grader_outcome(answer)?;
        Ok(wit::CompletionResponse {
            text: completion.text,
            tokens: completion.tokens.map(|t| wit::TokenUsage { prompt: t.prompt, completion: t.completion }),
            finish_reason: completion.finish_reason,
        })
    }

    async fn embed(
        &mut self,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, graded::cardrun::plugin::grader::GraderError> {
        if texts.len() > MAX_EMBED_TEXTS {
            return Err(self.grader_failed(GraderFailure::Failed(format!(
                "{} texts in one embed call; at most {MAX_EMBED_TEXTS}",
                texts.len()
            ))));
        }
        let (access, models) = self.grader_models()?;
        let answer = tokio::time::timeout_at(self.deadline.into(), access.grader.embed(&models, texts)).await;
        let vectors = self.grader_outcome(answer)?;
        if let Some(long) = vectors.iter().find(|v| v.len() > MAX_EMBEDDING_DIMENSIONS) {
            return Err(self.grader_failed(GraderFailure::Failed(format!(
                "the embedding model returned {} dimensions; at most {MAX_EMBEDDING_DIMENSIONS}",
                long.len()
            ))));
        }
        Ok(vectors)
    }
}

impl PluginState {
    /// The grader and the models resolved for this assertion, or the
    /// failure a call without them is.
    fn grader_models(
        &mut self,
    ) -> Result<(GraderAccess, crate::domain::GraderModels), graded::cardrun::plugin::grader::GraderError> {
        match &self.grader {
            Some(access) => match &access.models {
                Some(models) => Ok((access.clone(), models.clone())),
                None => Err(self.grader_failed(GraderFailure::NotConfigured)),
            },
            None => Err(self.grader_failed(GraderFailure::NotConfigured)),
        }
    }

    /// A grader call's answer, or its failure recorded and mapped.
    fn grader_outcome<T>(
        &mut self,
        answer: Result<Result<T, GraderFailure>, tokio::time::error::Elapsed>,
    ) -> Result<T, graded::cardrun::plugin::grader::GraderError> {
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(failure)) => Err(self.grader_failed(failure)),
            Err(_elapsed) => {
                self.http_timed_out = true;
                Err(self.grader_failed(GraderFailure::Failed("the grader did not answer before the deadline".into())))
            }
        }
    }

    /// Records `failure` (the assertion becomes an error) and maps it.
    fn grader_failed(&mut self, failure: GraderFailure) -> graded::cardrun::plugin::grader::GraderError {
        use graded::cardrun::plugin::grader::GraderError;
        let message = failure.to_string();
        tracing::debug!(error = %message, "grader call failed");
        self.grader_failure.get_or_insert_with(|| message.clone());
        match failure {
            GraderFailure::NotConfigured => GraderError::NotConfigured(message),
            GraderFailure::Unsupported(_) => GraderError::Unsupported(message),
            GraderFailure::Failed(_) => GraderError::Failed(message),
        }
    }
}

/// A fresh store with every limit applied, and the handle to its logs.
pub fn new_store(
    engine: &Engine,
    limits: &Limits,
    http: Option<HttpAccess>,
) -> Result<(Store<PluginState>, CapturePipe), SandboxError> {
    let logs = CapturePipe::new(limits.max_log_bytes);
    // No preopens, no environment, no arguments; sockets are denied by the
    // default address check. stdout and stderr share one capped tail.
    let wasi = WasiCtx::builder().stdout(logs.clone()).stderr(logs.clone()).build();
    let deadline = Instant::now() + limits.deadline;
    let state = PluginState {
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter { cap: limits.memory_bytes, hit: false, peak: 0 },
        http,
        deadline,
        denied_host: None,
        http_timed_out: false,
        grader: None,
        grader_failure: None,
        model_call: None,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let internal = |e: wasmtime::Error| SandboxError::Internal(e.to_string());
    store.set_fuel(limits.fuel.unwrap_or(u64::MAX)).map_err(internal)?;
    // Check the clock every epoch tick; until the deadline, yield to tokio so
    // a runaway plugin does not starve other tasks on its worker thread.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        }
    });
    Ok((store, logs))
}

/// Fuel burnt so far by the store's instance.
pub fn fuel_used(store: &Store<PluginState>, limits: &Limits) -> u64 {
    let start = limits.fuel.unwrap_or(u64::MAX);
    start.saturating_sub(store.get_fuel().unwrap_or(start))
}

/// The most linear memory the store's instance held, in bytes.
pub fn peak_memory(store: &Store<PluginState>) -> usize {
    store.data().limiter.peak
}

/// Maps a wasmtime error from a plugin call to the typed cause.
pub fn classify(
    err: &wasmtime::Error,
    store: &Store<PluginState>,
    limits: &Limits,
    logs: &CapturePipe,
) -> SandboxError {
    if store.data().limiter.hit {
        return SandboxError::MemoryLimit { limit_bytes: limits.memory_bytes };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => SandboxError::OutOfFuel {
            budget: limits.fuel.unwrap_or(u64::MAX),
            cpu_percent: limits.cpu_percent,
            fuel_per_ms: limits.fuel_per_ms,
        },
        Some(Trap::Interrupt) => SandboxError::Deadline { deadline: limits.deadline },
        Some(Trap::StackOverflow) => SandboxError::StackOverflow,
        Some(trap) => SandboxError::Trap { message: trap.to_string(), stderr_tail: logs.tail_text() },
        None => SandboxError::Trap { message: format!("{err:#}"), stderr_tail: logs.tail_text() },
    }
}

/// Maps a plugin's own `Err(message)`.
pub fn plugin_error(message: String, store: &Store<PluginState>, limits: &Limits) -> SandboxError {
    let state = store.data();
    if let Some(failure) = &state.grader_failure {
        SandboxError::Grader(failure.clone())
    } else if let Some(host) = &state.denied_host {
        SandboxError::HostDenied { host: host.clone() }
    } else if state.http_timed_out {
        SandboxError::Deadline { deadline: limits.deadline }
    } else {
        SandboxError::Plugin(message)
    }
}

/// Runs a plugin call under the outer deadline: the deadline plus a few
/// epoch ticks. The epoch callback enforces the deadline inside wasm; this
/// bound covers time spent outside it (host calls such as HTTP or a guest
/// sleeping in `poll`).
///
/// Most calls finish in their first poll (the whole guest runs on its
/// fiber without suspending), so the call is polled once before a timer is
/// armed: registering a timer per call costs more than a trivial plugin.
pub async fn with_outer_deadline<F: std::future::Future>(
    limits: &Limits,
    call: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let started = Instant::now();
    let mut call = std::pin::pin!(call);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(output) = first {
        return Ok(output);
    }
    let outer = limits.deadline + super::engine::EPOCH_TICK * 5;
    tokio::time::timeout_at((started + outer).into(), call).await
}

/// Maps the outcome of a guarded plugin call to its typed result.
pub fn conclude<T>(
    outcome: Result<wasmtime::Result<Result<T, String>>, tokio::time::error::Elapsed>,
    store: &Store<PluginState>,
    limits: &Limits,
    logs: &CapturePipe,
) -> Result<T, SandboxError> {
    match outcome {
        Err(_elapsed) => Err(SandboxError::Deadline { deadline: limits.deadline }),
        Ok(Err(e)) => Err(classify(&e, store, limits, logs)),
        // A plugin's own error text is capped like everything else it
        // returns: over the cap it is neither kept, logged nor returned.
        Ok(Ok(Err(message))) if message.len() > limits.max_output_bytes => {
            Err(SandboxError::OutputTooLarge { len: message.len(), cap: limits.max_output_bytes })
        }
        Ok(Ok(result)) => result.map_err(|message| plugin_error(message, store, limits)),
    }
}
