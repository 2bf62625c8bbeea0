//! The plugin sandbox: wasmtime engine, compiled-plugin registry, limits and
//! host capabilities.
//!
//! Invariants:
//! - every plugin use runs in a fresh instance (`InstancePre` + new
//!   `Store`), so nothing leaks between tests or tenants;
//! - a plugin sees no filesystem, no environment and no sockets; adapters
//!   reach the network only through [`http::HttpCapability`] and their own
//!   allow-list;
//! - every failure is a [`SandboxError`]; nothing a plugin does panics the host.

mod adapter;
pub mod adapter_file;
mod adapters;
mod assertion;
mod bindings;
pub mod builtin;
mod cache;
pub mod calibrate;
pub mod compiler;
pub mod endpoints;
mod engine;
mod error;
pub mod grader;
pub mod http;
pub mod imports;
pub mod inspect;
mod limits;
pub mod params;
mod pipe;
mod registry;
pub mod scripts;
mod state;
mod types;
pub mod upload;
mod verdict;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use adapter::{AdapterPlugin, AdapterSettings};
pub use adapters::{AdapterInfo, AdapterManifest, SecretHeaderSpec};
pub use assertion::{AssertionInfo, AssertionPlugin, Judgement};
pub use cache::content_hash;
pub use engine::{Allocator, EPOCH_TICK};
pub use error::SandboxError;
pub use grader::{Grader, GraderFailure, GraderFuture, Grading};
pub use http::{AllowedHost, AllowedHostError, HttpGrant, HttpSettings, SecretHeader};
pub use limits::{FUEL_PER_CPU_MS, Limits};
pub use params::ParameterChecks;
pub use registry::{KEPT_VERSIONS, Owner, PluginQuota};
pub use types::{
    AssertionOutcome, AssertionSpec, ChatMessage, Completion, CompletionRequest, GenerationOptions, PluginPin, Prompt,
    Subject, TokenUsage,
};

use bindings::{adapter::ModelAdapter, assertion::Assertion};
use cache::ComponentCache;
use state::PluginState;

/// Where the built-in adapters point, from the environment by default.
#[derive(Debug, Clone)]
pub struct AdapterEndpoints {
    /// `OLLAMA_BASE_URL`, default `http://localhost:11434`.
    pub ollama_base_url: String,
    /// `OPENAI_BASE_URL`, default `https://api.openai.com`.
    pub openai_base_url: String,
    /// `OPENAI_API_KEY`; added by the host as `Authorization: Bearer ...`.
    pub openai_api_key: Option<String>,
    /// `ANTHROPIC_BASE_URL`, default `https://api.anthropic.com`.
    pub anthropic_base_url: String,
    /// `ANTHROPIC_API_KEY`; added by the host as `x-api-key`.
    pub anthropic_api_key: Option<String>,
}

impl AdapterEndpoints {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self {
            ollama_base_url: var("OLLAMA_BASE_URL").unwrap_or_else(|| "http://localhost:11434".into()),
            openai_base_url: var("OPENAI_BASE_URL").unwrap_or_else(|| "https://api.openai.com".into()),
            openai_api_key: var("OPENAI_API_KEY"),
            anthropic_base_url: var("ANTHROPIC_BASE_URL").unwrap_or_else(|| "https://api.anthropic.com".into()),
            anthropic_api_key: var("ANTHROPIC_API_KEY"),
        }
    }
}

/// How to build a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub allocator: Allocator,
    /// Directory of precompiled plugin artifacts; `None` = memory only.
    pub cache_dir: Option<PathBuf>,
    pub http: HttpSettings,
    pub endpoints: AdapterEndpoints,
    /// `PLUGIN_MAX_COUNT` (100): plugins loaded besides the built-ins.
    pub max_plugins: usize,
    /// Compile plugins in a child process with a time budget; `None`:
    /// in this process (the built-ins always are).
    pub compiler: Option<compiler::ExternalCompiler>,
}

impl SandboxConfig {
    /// Defaults plus `OLLAMA_*`/`OPENAI_*` from the environment and the
    /// artifact cache in `CARDRUN_CACHE_DIR` (default `$XDG_CACHE_HOME` or
    /// `~/.cache`, then `cardrun/components`).
    pub fn from_env() -> Self {
        let cache_dir = std::env::var_os("CARDRUN_CACHE_DIR").map(PathBuf::from).or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("cardrun").join("components"))
        });
        Self {
            allocator: Allocator::default(),
            cache_dir,
            http: HttpSettings {
                endpoints: endpoints::EndpointSettings {
                    adaptive: std::env::var("MODEL_ENDPOINT_AIMD")
                        .map_or(true, |v| v.trim() != "false" && v.trim() != "0"),
                    max: std::env::var("MODEL_ENDPOINT_MAX_CONCURRENCY")
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(256),
                },
                proxy: http::Proxy::from_env(),
                ..HttpSettings::default()
            },
            endpoints: AdapterEndpoints::from_env(),
            max_plugins: std::env::var("PLUGIN_MAX_COUNT").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(100),
            compiler: None,
        }
    }
}

/// The sandbox: compiles, registers and runs plugins.
pub struct Sandbox {
    engine: Engine,
    cache: Arc<ComponentCache>,
    assertion_linker: Linker<PluginState>,
    adapter_linker: Linker<PluginState>,
    http: http::HttpCapability,
    /// Which plugin provides which assertion type, for whom.
    assertions: registry::Registry,
    /// (owner, adapter name) -> plugin; see `adapters.rs`.
    adapters: RwLock<BTreeMap<(Owner, String), Arc<AdapterPlugin>>>,
    /// One upload compiles at a time: compiling takes every core it can
    /// get, and a second upload waits rather than doubling that.
    compile_slot: tokio::sync::Semaphore,
    compiler: Option<compiler::ExternalCompiler>,
    allocator: Allocator,
    /// Fuel per CPU millisecond, measured on this machine at start.
    fuel: calibrate::FuelCalibration,
}

impl Sandbox {
    /// Builds the engine and registers every built-in plugin.
    pub async fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let engine = engine::build_engine(config.allocator)?;
        let internal = |e: wasmtime::Error| SandboxError::Internal(format!("{e:#}"));
        let mut assertion_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut assertion_linker).map_err(internal)?;
        Assertion::add_to_linker::<_, HasSelf<_>>(&mut assertion_linker, |s| s).map_err(internal)?;
        bindings::graded::cardrun::plugin::grader::add_to_linker::<_, HasSelf<_>>(&mut assertion_linker, |s| s)
            .map_err(internal)?;
        bindings::graded::cardrun::plugin::model_call::add_to_linker::<_, HasSelf<_>>(&mut assertion_linker, |s| s)
            .map_err(internal)?;
        let mut adapter_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut adapter_linker).map_err(internal)?;
        ModelAdapter::add_to_linker::<_, HasSelf<_>>(&mut adapter_linker, |s| s).map_err(internal)?;
        let http = http::HttpCapability::new(config.http.clone())
            .map_err(|e| SandboxError::Internal(format!("the HTTP capability: {e}")))?;
        let mut sandbox = Self {
            cache: Arc::new(ComponentCache::new(engine.clone(), config.cache_dir.clone())),
            engine,
            assertion_linker,
            adapter_linker,
            http,
            assertions: registry::Registry::new(usize::MAX),
            adapters: RwLock::default(),
            compile_slot: tokio::sync::Semaphore::new(1),
            compiler: config.compiler.clone(),
            allocator: config.allocator,
            fuel: calibrate::FuelCalibration::assumed(FUEL_PER_CPU_MS),
        };
        for bytes in builtin::ASSERTION_PLUGINS {
            let info = sandbox.add_assertion_plugin(bytes).await?;
            sandbox.assertions.builtin_types.extend(info.assertion_types);
        }
        sandbox.assertions.builtin_types.sort();
        sandbox.assertions.max_plugins = config.max_plugins;
        for (name, bytes) in builtin::ADAPTERS {
            let settings = builtin_adapter_settings(name, &config.endpoints)?;
            sandbox.add_adapter_plugin(name, bytes, settings)?;
        }
        match calibrate::calibrate(&sandbox).await {
            Ok(fuel) => {
                tracing::info!(fuel_per_ms = fuel.fuel_per_ms, runs = ?fuel.runs_fuel_per_ms, took_ms = fuel.took_ms, "fuel calibrated");
                sandbox.fuel = fuel;
            }
            Err(e) => {
                tracing::warn!(error = %e, assumed_fuel_per_ms = FUEL_PER_CPU_MS, "fuel calibration failed; assuming a rate")
            }
        }
        Ok(sandbox)
    }

    /// The fuel rate measured at start.
    pub fn fuel_calibration(&self) -> &calibrate::FuelCalibration {
        &self.fuel
    }

    /// The limits of one plugin use under `configuration`, with fuel at
    /// this machine's measured rate.
    pub fn limits_for(&self, configuration: &crate::domain::TestConfiguration) -> Limits {
        Limits::for_configuration(configuration).with_fuel_rate(self.fuel.fuel_per_ms)
    }

    /// Compiles (or fetches from cache), validates and registers a shared
    /// assertion plugin (a plugin file, or an upload without a tenant). Its
    /// types must be free: a built-in type, or one another plugin provides,
    /// is refused, and so is a second plugin of the same name
    /// ([`Sandbox::replace_assertion_plugin`] replaces one). Loading the
    /// same bytes again changes nothing.
    pub async fn add_assertion_plugin(&self, bytes: &[u8]) -> Result<AssertionInfo, SandboxError> {
        self.register(None, bytes, None, None).await
    }

    /// [`Sandbox::add_assertion_plugin`] for `owner` (a tenant's own types,
    /// within `quota`; see `registry.rs`).
    pub async fn add_assertion_plugin_for(
        &self,
        owner: Owner,
        bytes: &[u8],
        quota: Option<PluginQuota>,
    ) -> Result<AssertionInfo, SandboxError> {
        self.register(owner, bytes, None, quota).await
    }

    /// Replaces the shared plugin named `name` (which the new component
    /// must also be named) with `bytes`; its types may change.
    pub async fn replace_assertion_plugin(&self, name: &str, bytes: &[u8]) -> Result<AssertionInfo, SandboxError> {
        self.register(None, bytes, Some(name), None).await
    }

    /// [`Sandbox::replace_assertion_plugin`] for `owner`.
    pub async fn replace_assertion_plugin_for(
        &self,
        owner: Owner,
        name: &str,
        bytes: &[u8],
        quota: Option<PluginQuota>,
    ) -> Result<AssertionInfo, SandboxError> {
        self.register(owner, bytes, Some(name), quota).await
    }

    async fn register(
        &self,
        owner: Owner,
        bytes: &[u8],
        replacing: Option<&str>,
        quota: Option<PluginQuota>,
    ) -> Result<AssertionInfo, SandboxError> {
        // Refused before compiling if it would cost the compiler too much.
        let stats = upload::check(bytes, &upload::UploadLimits::default())?;
        tracing::debug!(?stats, "plugin structure checked");
        let (hash, component) = self.compile(bytes).await?;
        let registered = async {
            let plugin =
                AssertionPlugin::load(&self.engine, &self.assertion_linker, &component, hash.clone(), bytes.len())
                    .await?;
            self.assertions.insert(owner, Arc::new(plugin), replacing, quota)
        }
        .await;
        match &registered {
            Ok(info) => {
                tracing::info!(plugin = %info.name, owner = ?owner, types = ?info.assertion_types, hash = %info.hash, "assertion plugin registered")
            }
            // A refused plugin leaves nothing behind: neither its compiled
            // form in memory nor its artifact on disk.
            Err(_) if !self.assertions.has_hash(&hash) => self.cache.forget(&hash),
            Err(_) => {}
        }
        registered
    }

    /// The compiled component of `bytes`: from the cache, else compiled
    /// (one at a time) in the compiler process when there is one, or here.
    async fn compile(&self, bytes: &[u8]) -> Result<(String, wasmtime::component::Component), SandboxError> {
        let hash = content_hash(bytes);
        if let Some(component) = self.cache.cached(&hash) {
            return Ok((hash, component));
        }
        let _slot =
            self.compile_slot.acquire().await.map_err(|e| SandboxError::Internal(format!("compile slot: {e}")))?;
        // A Python or JavaScript runtime is 12-18 MB and compiles for
        // seconds (once: the artifact is cached on disk), so say so.
        let started = Instant::now();
        tracing::info!(hash = %&hash[..12], size_bytes = bytes.len(), "compiling plugin (once per version; a large component takes seconds)");
        let compiled = if let Some(compiler) = &self.compiler {
            compiler::compile(compiler, self.allocator, &self.engine, bytes).await.map(|component| {
                self.cache.adopt(&hash, &component);
                (hash.clone(), component)
            })
        } else {
            // Compiling a big component takes up to seconds of CPU: off the
            // async workers, so an upload does not stall running tests.
            let (cache, owned) = (self.cache.clone(), bytes.to_vec());
            tokio::task::spawn_blocking(move || cache.get(&owned))
                .await
                .map_err(|e| SandboxError::Internal(format!("compiling the plugin: {e}")))?
        };
        if compiled.is_ok() {
            tracing::info!(hash = %&hash[..12], took_ms = started.elapsed().as_millis() as u64, "plugin compiled");
        }
        compiled
    }

    /// Whether the compiled form of `bytes` is cached (in memory or on
    /// disk), so that loading them compiles nothing.
    pub fn is_compiled(&self, bytes: &[u8]) -> bool {
        self.cache.cached(&content_hash(bytes)).is_some()
    }

    /// Unloads the shared plugin named `name`; built-ins stay.
    pub fn remove_assertion_plugin(&self, name: &str) -> Result<AssertionInfo, SandboxError> {
        self.remove_assertion_plugin_for(None, name)
    }

    /// Unloads `owner`'s plugin named `name` (another tenant's, or a shared
    /// one asked for by a tenant, is `unknown_plugin`).
    pub fn remove_assertion_plugin_for(&self, owner: Owner, name: &str) -> Result<AssertionInfo, SandboxError> {
        let info = self.assertions.remove(owner, name)?;
        // Its compiled form is collected (memory and disk), unless another
        // tenant's registration uses the same bytes.
        if !self.assertions.has_hash(&info.hash) {
            self.cache.forget(&info.hash);
        }
        tracing::info!(plugin = %name, owner = ?owner, "assertion plugin removed");
        Ok(info)
    }

    /// Unloads `owner`'s plugin whose bytes hash to `hash`, if it is loaded:
    /// the whole plugin when that is its current version, else that
    /// replaced version only.
    pub fn remove_assertion_plugin_by_hash(&self, owner: Owner, hash: &str) {
        if let Some(name) = self.assertions.named_by_hash(owner, hash) {
            let _ = self.remove_assertion_plugin_for(owner, &name);
        } else if self.assertions.drop_version(owner, hash) && !self.assertions.has_hash(hash) {
            self.cache.forget(hash);
        }
    }

    /// Registers `owner`'s plugin, replacing its plugin of the same name if
    /// it has one (its earlier version is kept for queued tests): how a
    /// host reloads stored uploads, oldest first, and a worker mirrors them.
    pub async fn install_assertion_plugin_for(
        &self,
        owner: Owner,
        bytes: &[u8],
    ) -> Result<AssertionInfo, SandboxError> {
        match self.add_assertion_plugin_for(owner, bytes, None).await {
            Err(SandboxError::PluginExists { name }) if !self.assertions.version_hashes(owner, &name).is_empty() => {
                self.replace_assertion_plugin_for(owner, &name, bytes, None).await
            }
            other => other,
        }
    }

    /// The hashes of `owner`'s kept versions of plugin `name`, oldest first.
    pub fn assertion_plugin_versions(&self, owner: Owner, name: &str) -> Vec<String> {
        self.assertions.version_hashes(owner, name)
    }

    /// The plugin judging `kind` for `owner`: the version pinned in `pins`
    /// for its type, else the current one.
    pub fn assertion_plugin_pinned(
        &self,
        owner: Owner,
        pins: &[PluginPin],
        kind: &str,
    ) -> Result<Arc<AssertionPlugin>, SandboxError> {
        let base = kind.strip_prefix("not-").unwrap_or(kind);
        match pins.iter().find(|pin| pin.assertion_type == base) {
            None => self.assertion_plugin_for(owner, kind),
            Some(pin) => self
                .assertions
                .version(owner, &pin.hash)
                .ok_or_else(|| SandboxError::VersionGone { assertion_type: base.to_string(), hash: pin.hash.clone() }),
        }
    }

    /// What a test planned now pins: for each of `specs`' types that an
    /// uploaded plugin provides to `owner`, that plugin's current version.
    /// Built-in types are not pinned (they change only with the binary).
    pub fn pins_for(&self, owner: Owner, specs: &[AssertionSpec]) -> Vec<PluginPin> {
        let mut pins: Vec<PluginPin> = Vec::new();
        for spec in specs {
            let (_, base) = spec.base_type();
            let Ok(plugin) = self.assertion_plugin_for(owner, base) else { continue };
            if self.is_builtin(plugin.info()) || pins.iter().any(|p| p.assertion_type == base) {
                continue;
            }
            pins.push(PluginPin { assertion_type: base.to_string(), hash: plugin.info().hash.clone() });
        }
        pins
    }

    /// Every shared assertion type, sorted.
    pub fn assertion_types(&self) -> Vec<String> {
        self.assertions.types(None)
    }

    /// Every assertion type `owner` sees (shared and its own), sorted.
    pub fn assertion_types_for(&self, owner: Owner) -> Vec<String> {
        self.assertions.types(owner)
    }

    /// Every shared assertion plugin.
    pub fn assertion_plugins(&self) -> Vec<AssertionInfo> {
        self.assertions.plugins(None).into_iter().map(|(_, info)| info).collect()
    }

    /// Every assertion plugin `owner` sees, with whose it is.
    pub fn assertion_plugins_for(&self, owner: Owner) -> Vec<(Owner, AssertionInfo)> {
        self.assertions.plugins(owner)
    }

    /// Plugins loaded in every namespace (each registration once).
    pub fn assertion_plugin_count(&self) -> usize {
        self.assertions.count_all()
    }

    /// Whether `plugin` is one of the built-in assertion plugins. (No other
    /// plugin may claim a built-in type, so its first type tells.)
    pub fn is_builtin(&self, plugin: &AssertionInfo) -> bool {
        plugin.assertion_types.first().is_some_and(|kind| self.assertions.builtin_types.contains(kind))
    }

    /// Each model endpoint's concurrency limit (AIMD on push-back).
    pub fn endpoint_status(&self) -> Vec<endpoints::EndpointStatus> {
        self.http.endpoint_status()
    }

    /// Keeps the model endpoint limits in step with the deployment's
    /// (Redis): see `endpoints.rs`.
    pub fn share_endpoint_limits(&self, shared: Arc<dyn endpoints::SharedEndpoints>) {
        self.http.share_endpoint_limits(shared);
    }

    /// The shared plugin providing `kind` (with or without `not-`).
    pub fn assertion_plugin(&self, kind: &str) -> Result<Arc<AssertionPlugin>, SandboxError> {
        self.assertion_plugin_for(None, kind)
    }

    /// The plugin providing `kind` (with or without `not-`) as `owner`
    /// sees it: a shared one, else the tenant's own.
    pub fn assertion_plugin_for(&self, owner: Owner, kind: &str) -> Result<Arc<AssertionPlugin>, SandboxError> {
        let base = kind.strip_prefix("not-").unwrap_or(kind);
        self.assertions.get(owner, base).ok_or_else(|| SandboxError::UnknownAssertion {
            name: kind.to_string(),
            known: self.assertion_types_for(owner).join(", "),
        })
    }

    /// Evaluates one assertion with the shared plugins; errors become a
    /// failed outcome with `error`.
    pub async fn evaluate(&self, spec: &AssertionSpec, subject: &Subject, limits: &Limits) -> AssertionOutcome {
        self.evaluate_for(None, spec, subject, limits).await
    }

    /// [`Sandbox::evaluate`] with the plugins `owner` sees.
    pub async fn evaluate_for(
        &self,
        owner: Owner,
        spec: &AssertionSpec,
        subject: &Subject,
        limits: &Limits,
    ) -> AssertionOutcome {
        self.evaluate_pinned(owner, &[], spec, subject, limits, None).await
    }

    /// [`Sandbox::evaluate`] with `grading` answering the plugin's grader
    /// calls.
    pub async fn evaluate_graded(
        &self,
        spec: &AssertionSpec,
        subject: &Subject,
        limits: &Limits,
        grading: &Grading,
    ) -> AssertionOutcome {
        self.evaluate_pinned(None, &[], spec, subject, limits, Some(grading)).await
    }

    /// [`Sandbox::evaluate_for`] with the plugin versions in `pins` where
    /// they name the assertion's type (a test planned before a replacement).
    pub async fn evaluate_pinned(
        &self,
        owner: Owner,
        pins: &[PluginPin],
        spec: &AssertionSpec,
        subject: &Subject,
        limits: &Limits,
        grading: Option<&Grading>,
    ) -> AssertionOutcome {
        let started = Instant::now();
        let (negated, base) = spec.base_type();
        let judged = async {
            let plugin = self.assertion_plugin_pinned(owner, pins, &spec.kind)?;
            // promptfoo's `assert.transform`: this assertion alone judges
            // the transformed output.
            let transformed;
            let subject = match &spec.transform {
                Some(script) => {
                    let output = self.transform(script, &subject.output, subject.script_context(), limits).await?;
                    transformed = Subject { output, ..subject.clone() };
                    &transformed
                }
                None => subject,
            };
            let grader = grading.map(|g| g.access_for(spec));
            plugin.evaluate(base, &spec.value, spec.threshold, spec.config.as_ref(), subject, limits, grader).await
        }
        .await;
        let duration_us = started.elapsed().as_micros() as u64;
        match judged {
            Ok(j) => AssertionOutcome {
                assertion_type: spec.kind.clone(),
                passed: j.pass != negated,
                score: if negated { 1.0 - j.score } else { j.score },
                reason: if negated { format!("negated: {}", j.reason) } else { j.reason },
                fuel_used: j.fuel_used,
                duration_us,
                error: None,
            },
            Err(e) => AssertionOutcome {
                assertion_type: spec.kind.clone(),
                passed: false,
                score: 0.0,
                reason: e.to_string(),
                fuel_used: 0,
                duration_us,
                error: Some(e),
            },
        }
    }

    /// Evaluates every assertion on the same subject, in order.
    pub async fn evaluate_all(
        &self,
        owner: Owner,
        pins: &[PluginPin],
        specs: &[AssertionSpec],
        subject: &Subject,
        limits: &Limits,
        grading: Option<&Grading>,
    ) -> Vec<AssertionOutcome> {
        let mut outcomes = Vec::with_capacity(specs.len());
        for spec in specs {
            outcomes.push(self.evaluate_pinned(owner, pins, spec, subject, limits, grading).await);
        }
        outcomes
    }
}

/// The config and network grant of a built-in adapter.
fn builtin_adapter_settings(name: &str, endpoints: &AdapterEndpoints) -> Result<AdapterSettings, SandboxError> {
    let grant_for =
        |base: &str| AllowedHost::parse(base).map_err(|e| SandboxError::Internal(format!("{name} base URL: {e}")));
    Ok(match name {
        "ollama" => AdapterSettings {
            config: serde_json::json!({"base_url": endpoints.ollama_base_url}),
            grant: HttpGrant { allowed: vec![grant_for(&endpoints.ollama_base_url)?], secret_headers: vec![] },
        },
        "openai" => {
            let host = grant_for(&endpoints.openai_base_url)?;
            let secret_headers = match &endpoints.openai_api_key {
                Some(key) => {
                    let mut value = ::http::header::HeaderValue::from_str(&format!("Bearer {key}"))
                        .map_err(|_| SandboxError::Internal("OPENAI_API_KEY is not a valid header value".into()))?;
                    value.set_sensitive(true);
                    vec![SecretHeader { host: host.clone(), name: ::http::header::AUTHORIZATION, value }]
                }
                None => vec![],
            };
            AdapterSettings {
                config: serde_json::json!({"base_url": endpoints.openai_base_url}),
                grant: HttpGrant { allowed: vec![host], secret_headers },
            }
        }
        "anthropic" => {
            let host = grant_for(&endpoints.anthropic_base_url)?;
            let header = |name: &'static str, value: &str, sensitive: bool| {
                let mut value = ::http::header::HeaderValue::from_str(value)
                    .map_err(|_| SandboxError::Internal(format!("{name} is not a valid header value")))?;
                value.set_sensitive(sensitive);
                Ok::<_, SandboxError>(SecretHeader {
                    host: host.clone(),
                    name: ::http::header::HeaderName::from_static(name),
                    value,
                })
            };
            // The API version this adapter speaks; the host sets it, like the key.
            let mut secret_headers = vec![header("anthropic-version", "2023-06-01", false)?];
            if let Some(key) = &endpoints.anthropic_api_key {
                secret_headers.push(header("x-api-key", key, true)?);
            }
            AdapterSettings {
                config: serde_json::json!({"base_url": endpoints.anthropic_base_url}),
                grant: HttpGrant { allowed: vec![host], secret_headers },
            }
        }
        _ => AdapterSettings { config: serde_json::json!({}), grant: HttpGrant::default() },
    })
}
