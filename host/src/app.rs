//! Wiring: settings from the environment, and the assembled application.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::api::{self, AppState};
use crate::engine::{
    Engine, EngineConfig, HostLimits, ResponseCache, SharedCache, SharedPlugins, Worker, WorkerConfig,
};
use crate::progress::ProgressService;
use crate::progress::hub::{DEFAULT_MAX_BEHIND, Hub};
use crate::progress::relay::{Relay, RelayTransport};
use crate::progress::socketio::SocketServer;
use crate::queue::redis::{RedisConfig, RedisQueue};
use crate::queue::{MemoryQueue, Queue, QueueError, QueueSettings};
use crate::resources::{Figures, ResourceManager, ResourceSettings, SystemFigures};
use crate::sandbox::endpoints::SharedEndpoints;
use crate::sandbox::{Sandbox, SandboxConfig, SandboxError};
use crate::store::{self, Database, StoreError};
use crate::tenants::Auth;

/// Everything configurable, with the defaults of DESIGN.md section 8.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PORT` (3001).
    pub port: u16,
    /// `DATABASE_URL` (postgres:// for a database several hosts share),
    /// else `DATABASE_PATH` (`./data/cardrun.db`), or in memory.
    pub database: Database,
    /// `MAX_CONCURRENT_TESTS` (64).
    pub max_concurrent_tests: usize,
    /// `DEFAULT_ADAPTER` (`ollama`).
    pub default_adapter: String,
    /// `DEFAULT_GRADER` (none), or `--grader`: the model that grades
    /// assertions which ask one (`llm-rubric`, `similar`...) when neither
    /// the assertion nor its test names one.
    pub grader: Option<crate::domain::GraderModels>,
    /// `CARDRUN_PRICES` (a YAML or JSON file): model prices
    /// over the built-in table, for each result's `cost`.
    pub prices: Arc<crate::domain::PriceTable>,
    /// `MAX_CPU_PERCENT`, `MAX_MEMORY_MB`, their emergency thresholds,
    /// `RESOURCE_SAMPLE_MS`, `RESOURCE_ADMISSION`.
    pub resources: ResourceSettings,
    pub sandbox: SandboxConfig,
    /// Assertion plugins (`.wasm` components) loaded at start, before
    /// unfinished executions are re-queued: every `*.wasm` in `PLUGIN_DIR`,
    /// plus any the CLI adds.
    pub assertion_plugins: Vec<PathBuf>,
    /// Model adapters loaded at start, shared by every tenant: manifests
    /// naming their component (`sandbox::adapter_file`), from the CLI.
    pub adapter_plugins: Vec<PathBuf>,
    /// `SHUTDOWN_GRACE_MS` (30000): how long a stopping server lets running
    /// tests finish before it exits (the rest re-run at the next start).
    pub shutdown_grace: std::time::Duration,
    /// `REDIS_URL` or `REDIS_HOST`/`REDIS_PORT`; `None`: the in-memory queue.
    pub redis: Option<RedisConfig>,
    /// `LEASE_MS` (15000): a test whose worker sends no heartbeat for this
    /// long goes back to the queue; `PRIORITY_AGING_MS` (60000; 0: off):
    /// waiting work counts one priority higher per this much waiting.
    pub queue: QueueSettings,
    /// Whether this host runs tests too (`serve --no-worker` clears it).
    pub run_worker: bool,
    /// `CACHE_TTL_MS` (3600000): how long the shared (Redis) response cache
    /// keeps an answer.
    pub cache_ttl: std::time::Duration,
    /// `MAX_TIMEOUT_PER_TEST_MS`, `MAX_RETRIES`, `PLUGIN_MEMORY_BUDGET_MB`
    /// (default: `MAX_MEMORY_MB`, else half the machine's memory).
    pub limits: HostLimits,
    /// `PLUGIN_MAX_MEMORY_MB` (256): the cap on one plugin instance.
    pub plugin_max_memory_mb: u64,
    /// `MAX_EXECUTION_SHARE` (50): the percentage of this process's slots
    /// one execution may hold while another waits; 100 or more: no cap.
    pub execution_share_percent: Option<u32>,
    /// `SOCKET_MAX_BEHIND` (10000): how many events a Socket.IO client may
    /// fall behind before it is disconnected.
    pub socket_max_behind: usize,
    /// `CORS_ORIGIN` (`http://localhost:3000`, as in the original system):
    /// the origins a browser may call the API and Socket.IO from; a
    /// comma-separated list, or `*` for any.
    pub cors_origin: String,
    /// `CARDRUN_AUTH=required`: API keys are needed even before any tenant
    /// exists (they always are once one does).
    pub auth_required: bool,
    /// `METRICS_TOKEN`: when set, `/metrics` needs `Bearer <it>`; else it is
    /// open, as `/health` is.
    pub metrics_token: Option<String>,
    /// Each tenant's allowances (`TENANT_REQUESTS_PER_SECOND`,
    /// `TENANT_EXECUTIONS_PER_MINUTE`, `TENANT_MAX_QUEUED_TESTS`,
    /// `TENANT_MAX_PLUGINS`, `TENANT_MAX_PLUGIN_BYTES`).
    pub quotas: crate::tenants::QuotaSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{name} must be {what}, got `{value}`")]
    Invalid { name: &'static str, what: &'static str, value: String },
    #[error("PLUGIN_DIR `{}` cannot be read: {error}", .dir.display())]
    PluginDir { dir: PathBuf, error: std::io::Error },
    #[error("prices file (CARDRUN_PRICES) {0}")]
    Prices(String),
}

/// Reads a prices file (`CARDRUN_PRICES`).
pub fn prices_file(path: &std::path::Path) -> Result<crate::domain::PriceTable, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Prices(format!("{}: {e}", path.display())))?;
    crate::domain::PriceTable::parse(&text).map_err(|e| SettingsError::Prices(format!("{}: {}", path.display(), e.0)))
}

/// Every `*.wasm` file directly in `dir`, sorted by name.
pub fn plugins_in_dir(dir: &std::path::Path) -> Result<Vec<PathBuf>, SettingsError> {
    let failed = |error| SettingsError::PluginDir { dir: dir.to_path_buf(), error };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let path = entry.map_err(failed)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "wasm") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn env_parse<T: std::str::FromStr>(name: &'static str, what: &'static str, default: T) -> Result<T, SettingsError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| SettingsError::Invalid { name, what, value: v }),
        _ => Ok(default),
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        let max = env_parse("MAX_CONCURRENT_TESTS", "a number from 1 to 4096", 64usize)?;
        if !(1..=4096).contains(&max) {
            return Err(SettingsError::Invalid {
                name: "MAX_CONCURRENT_TESTS",
                what: "a number from 1 to 4096",
                value: max.to_string(),
            });
        }
        Ok(Self {
            port: env_parse("PORT", "a port number", 3001u16)?,
            database: Database::from_env().map_err(|e| SettingsError::Invalid {
                name: "DATABASE_URL",
                what: "postgres://USER@HOST:PORT/DATABASE or sqlite://PATH",
                value: e.to_string(),
            })?,
            max_concurrent_tests: max,
            default_adapter: std::env::var("DEFAULT_ADAPTER")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "ollama".into()),
            grader: std::env::var("DEFAULT_GRADER")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|id| crate::domain::GraderModels::single(id.trim())),
            prices: match std::env::var_os("CARDRUN_PRICES").filter(|p| !p.is_empty()) {
                Some(path) => Arc::new(prices_file(std::path::Path::new(&path))?),
                None => Arc::default(),
            },
            resources: resource_settings_from_env()?,
            sandbox: SandboxConfig::from_env(),
            adapter_plugins: Vec::new(),
            assertion_plugins: match std::env::var_os("PLUGIN_DIR").filter(|d| !d.is_empty()) {
                Some(dir) => plugins_in_dir(std::path::Path::new(&dir))?,
                None => Vec::new(),
            },
            shutdown_grace: std::time::Duration::from_millis(env_parse(
                "SHUTDOWN_GRACE_MS",
                "a number of milliseconds",
                30_000u64,
            )?),
            redis: RedisConfig::from_env(),
            queue: QueueSettings {
                lease: std::time::Duration::from_millis(
                    env_parse("LEASE_MS", "a number of milliseconds from 100", 15_000u64)?.max(100),
                ),
                priority_aging: Some(env_parse("PRIORITY_AGING_MS", "a number of milliseconds (0: off)", 60_000u64)?)
                    .filter(|ms| *ms > 0)
                    .map(std::time::Duration::from_millis),
                ..QueueSettings::default()
            },
            run_worker: true,
            cache_ttl: std::time::Duration::from_millis(env_parse(
                "CACHE_TTL_MS",
                "a number of milliseconds",
                3_600_000u64,
            )?),
            limits: HostLimits {
                max_timeout_per_test_ms: env_parse("MAX_TIMEOUT_PER_TEST_MS", "a number of milliseconds", 300_000u64)?,
                max_retries: env_parse("MAX_RETRIES", "a number", 5u32)?,
                plugin_memory_budget_mb: env_parse("PLUGIN_MEMORY_BUDGET_MB", "a number of MiB", {
                    let mut s = sysinfo::System::new();
                    s.refresh_memory();
                    std::env::var("MAX_MEMORY_MB")
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or((s.total_memory() >> 20) / 2)
                        .max(16)
                })?,
            },
            plugin_max_memory_mb: env_parse("PLUGIN_MAX_MEMORY_MB", "a number of MiB", 256u64)?.max(16),
            execution_share_percent: Some(env_parse("MAX_EXECUTION_SHARE", "a percentage", 50u32)?)
                .filter(|p| *p < 100)
                .map(|p| p.max(1)),
            socket_max_behind: env_parse("SOCKET_MAX_BEHIND", "a number of events", DEFAULT_MAX_BEHIND)?.max(16),
            cors_origin: std::env::var("CORS_ORIGIN")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "http://localhost:3000".into()),
            auth_required: match std::env::var("CARDRUN_AUTH").unwrap_or_default().trim() {
                "" | "auto" => false,
                "required" => true,
                other => {
                    return Err(SettingsError::Invalid {
                        name: "CARDRUN_AUTH",
                        what: "`required` or `auto`",
                        value: other.to_string(),
                    });
                }
            },
            metrics_token: std::env::var("METRICS_TOKEN").ok().filter(|t| !t.trim().is_empty()),
            quotas: {
                let d = crate::tenants::QuotaSettings::default();
                crate::tenants::QuotaSettings {
                    requests_per_second: env_parse("TENANT_REQUESTS_PER_SECOND", "a number", d.requests_per_second)?
                        .max(1),
                    executions_per_minute: env_parse(
                        "TENANT_EXECUTIONS_PER_MINUTE",
                        "a number",
                        d.executions_per_minute,
                    )?
                    .max(1),
                    max_queued_tests: env_parse("TENANT_MAX_QUEUED_TESTS", "a number", d.max_queued_tests)?.max(1),
                    max_running_tests: env_parse("TENANT_MAX_RUNNING_TESTS", "a number", d.max_running_tests)?,
                    plugins: crate::sandbox::PluginQuota {
                        max_plugins: env_parse("TENANT_MAX_PLUGINS", "a number", d.plugins.max_plugins)?,
                        max_bytes: env_parse("TENANT_MAX_PLUGIN_BYTES", "a number of bytes", d.plugins.max_bytes)?,
                    },
                }
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("recovering unfinished executions: {0}")]
    Recover(String),
    // The cause is part of the message (not a `source`), so that `{:#}`
    // does not print it twice.
    #[error("reading plugin {}: {error}", .path.display())]
    PluginFile { path: PathBuf, error: std::io::Error },
    #[error("loading plugin {}: {error}", .path.display())]
    Plugin { path: PathBuf, error: SandboxError },
    #[error(transparent)]
    AdapterFile(#[from] crate::sandbox::adapter_file::AdapterFileError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Grader(String),
}

fn resource_settings_from_env() -> Result<ResourceSettings, SettingsError> {
    let percent = |name: &'static str, default: f64| -> Result<f64, SettingsError> {
        let value = env_parse(name, "a percentage from 1 to 100", default)?;
        if !(1.0..=100.0).contains(&value) {
            return Err(SettingsError::Invalid { name, what: "a percentage from 1 to 100", value: value.to_string() });
        }
        Ok(value)
    };
    let optional_mb = |name: &'static str| -> Result<Option<u64>, SettingsError> {
        std::env::var(name).ok().map(|_| env_parse(name, "a number of MiB", 0u64)).transpose()
    };
    let defaults = ResourceSettings::default();
    let admission = match std::env::var("RESOURCE_ADMISSION").ok().as_deref().map(str::trim) {
        None | Some("" | "on" | "true" | "1") => true,
        Some("off" | "false" | "0") => false,
        Some(other) => {
            return Err(SettingsError::Invalid { name: "RESOURCE_ADMISSION", what: "on or off", value: other.into() });
        }
    };
    Ok(ResourceSettings {
        max_cpu_percent: percent("MAX_CPU_PERCENT", defaults.max_cpu_percent)?,
        max_memory_mb: optional_mb("MAX_MEMORY_MB")?,
        emergency_cpu_percent: percent("EMERGENCY_CPU_PERCENT", defaults.emergency_cpu_percent)?,
        emergency_memory_mb: optional_mb("EMERGENCY_MEMORY_MB")?,
        sample_interval: std::time::Duration::from_millis(
            env_parse("RESOURCE_SAMPLE_MS", "a number of milliseconds from 50", 1_000u64)?.max(50),
        ),
        admission,
    })
}

/// A name for this process in the queue (worker heartbeats, the event
/// consumer group): unique across restarts.
fn process_name(role: &str) -> String {
    let host = sysinfo::System::host_name().unwrap_or_else(|| "host".into());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{role}-{host}-{}-{}", std::process::id(), &nonce[..8])
}

/// The sandbox with every configured plugin file loaded.
async fn sandbox_with_plugins(settings: &Settings) -> Result<Arc<Sandbox>, AppError> {
    let sandbox = Arc::new(Sandbox::new(settings.sandbox.clone()).await?);
    for path in &settings.assertion_plugins {
        let bytes = std::fs::read(path).map_err(|error| AppError::PluginFile { path: path.clone(), error })?;
        let info = sandbox
            .add_assertion_plugin(&bytes)
            .await
            .map_err(|error| AppError::Plugin { path: path.clone(), error })?;
        tracing::info!(path = %path.display(), plugin = %info.name, types = ?info.assertion_types, "plugin loaded");
    }
    for path in &settings.adapter_plugins {
        let file = crate::sandbox::adapter_file::read(path)?;
        let refused = |error| AppError::Plugin { path: path.clone(), error };
        let adapter = file.manifest.settings().map_err(refused)?;
        let info = sandbox
            .add_adapter_plugin_for(None, &file.manifest.name, &file.component, adapter)
            .await
            .map_err(refused)?;
        tracing::info!(path = %path.display(), adapter = %info.name, hosts = ?info.allowed_hosts, "adapter loaded");
    }
    // A grader naming an unknown adapter would fail every graded test.
    if let Some(grader) = &settings.grader {
        grader
            .resolved(&settings.default_adapter, &sandbox.adapter_names())
            .map_err(|e| AppError::Grader(e.0.replace("grading provider", "--grader (DEFAULT_GRADER)")))?;
    }
    Ok(sandbox)
}

async fn worker_for(
    settings: &Settings,
    queue: &OpenQueue,
    sandbox: Arc<Sandbox>,
    resources: ResourceManager,
) -> Worker {
    let cache = match &queue.shared_cache {
        Some(shared) => ResponseCache::with_shared(shared.clone()),
        None => ResponseCache::default(),
    };
    let config = WorkerConfig {
        id: process_name("worker"),
        max_concurrent_tests: settings.max_concurrent_tests,
        heartbeat_interval: settings.queue.heartbeat_interval(),
        plugin_max_memory_mb: settings.plugin_max_memory_mb,
        plugin_memory_budget_mb: settings.limits.plugin_memory_budget_mb,
        execution_share: settings.execution_share_percent.map(|p| {
            let slots = (settings.max_concurrent_tests as u64 * u64::from(p)).div_ceil(100);
            u32::try_from(slots.max(1)).unwrap_or(u32::MAX)
        }),
        tenant_running_cap: Some(settings.quotas.max_running_tests).filter(|n| *n > 0),
        prices: settings.prices.clone(),
    };
    let worker = Worker::new(config, queue.queue.clone(), sandbox, cache).with_resources(resources);
    match &queue.shared_plugins {
        Some(shared) => worker.with_shared_plugins(shared.clone()).await,
        None => worker,
    }
}

/// The queue, and what else the deployment shares through its backend.
struct OpenQueue {
    queue: Arc<dyn Queue>,
    shared_cache: Option<Arc<dyn SharedCache>>,
    shared_plugins: Option<Arc<dyn SharedPlugins>>,
    /// How events reach the other API hosts.
    relay: Option<Arc<dyn RelayTransport>>,
    /// The deployment's model endpoint limits (with per-endpoint AIMD on).
    shared_endpoints: Option<Arc<dyn SharedEndpoints>>,
    /// Why the queue is not the configured one, if it is not.
    note: Option<String>,
}

impl OpenQueue {
    fn memory(settings: &Settings, note: Option<String>) -> Self {
        Self {
            queue: Arc::new(MemoryQueue::new(settings.queue)),
            shared_cache: None,
            shared_plugins: None,
            relay: None,
            shared_endpoints: None,
            note,
        }
    }

    fn redis(queue: RedisQueue, config: &RedisConfig, settings: &Settings) -> Self {
        let cache = Arc::new(queue.response_cache(settings.cache_ttl));
        let plugins = Arc::new(queue.plugins());
        let relay = queue.relay(config).map(|r| Arc::new(r) as Arc<dyn RelayTransport>);
        let endpoints = settings.sandbox.http.endpoints;
        let shared_endpoints =
            endpoints.adaptive.then(|| Arc::new(queue.endpoints(endpoints.max)) as Arc<dyn SharedEndpoints>);
        Self {
            queue: Arc::new(queue),
            shared_cache: Some(cache),
            shared_plugins: Some(plugins),
            relay,
            shared_endpoints,
            note: None,
        }
    }

    /// Starts sharing `sandbox`'s endpoint limits, when the backend can.
    fn share_endpoints(&self, sandbox: &Sandbox) {
        if let Some(shared) = &self.shared_endpoints {
            sandbox.share_endpoint_limits(shared.clone());
        }
    }
}

/// The queue named by the settings. Redis unreachable at start-up means the
/// in-memory queue, with the reason (for `/health` and `/queue/stats`).
async fn open_queue(settings: &Settings) -> OpenQueue {
    let Some(redis) = &settings.redis else { return OpenQueue::memory(settings, None) };
    match RedisQueue::connect(redis, settings.queue).await {
        Ok(queue) => OpenQueue::redis(queue, redis, settings),
        Err(e) => {
            let note = format!(
                "Redis at {} was unreachable at start-up ({e}); running on the in-memory queue",
                redis.urls.join(",")
            );
            tracing::warn!("{note}");
            OpenQueue::memory(settings, Some(note))
        }
    }
}

/// The assembled product: store, queue, sandbox, engine, API.
pub struct App {
    pub engine: Engine,
    /// This process's resource manager (its worker's, when it runs one).
    pub resources: ResourceManager,
    /// Why the queue is not the configured one, if it is not.
    pub queue_note: Option<String>,
    /// Where uploads go for workers in other processes (Redis).
    pub shared_plugins: Option<Arc<dyn SharedPlugins>>,
    /// Socket.IO followers of executions.
    pub hub: Arc<Hub>,
    /// Events to and from other API hosts (with Redis).
    pub relay: Option<Arc<Relay>>,
    state: Arc<AppState>,
    socket: SocketServer,
    cors_origin: String,
}

impl App {
    /// Builds everything, re-queues unfinished executions and starts the
    /// dispatcher.
    pub async fn start(settings: &Settings) -> Result<Self, AppError> {
        Self::start_with_figures(settings, Box::new(SystemFigures::new())).await
    }

    /// [`App::start`], with the resource manager reading `figures` instead
    /// of the machine (tests set the load they need).
    pub async fn start_with_figures(settings: &Settings, figures: Box<dyn Figures>) -> Result<Self, AppError> {
        let resources = ResourceManager::start(&settings.resources, settings.max_concurrent_tests, figures);
        let store = store::open(&settings.database).await?;
        tracing::info!(database = %settings.database.describe(), "store ready");
        let opened = open_queue(settings).await;
        tracing::info!(backend = opened.queue.backend(), worker = settings.run_worker, "queue ready");
        let sandbox = sandbox_with_plugins(settings).await?;
        // Uploaded plugins, in upload order. One that no longer loads (say,
        // after an upgrade changed the WIT package) must not stop the host.
        let uploads = store.plugins().await?;
        for plugin in &uploads {
            // Loaded as they were accepted: the allowance held at upload.
            match sandbox.install_assertion_plugin_for(plugin.owner, &plugin.bytes).await {
                Ok(info) => {
                    tracing::info!(plugin = %info.name, owner = ?plugin.owner, types = ?info.assertion_types, "uploaded plugin loaded")
                }
                Err(e) => {
                    tracing::error!(plugin = %plugin.name, error = %e, "an uploaded plugin no longer loads; skipped")
                }
            }
        }
        // Tenants' model adapters, with the settings they were uploaded with.
        let adapters = store.adapters().await?;
        for (owner, adapter) in &adapters {
            let owner = *owner;
            let loaded = match serde_json::from_str::<crate::sandbox::AdapterManifest>(&adapter.manifest) {
                Ok(manifest) => match manifest.settings() {
                    Ok(settings) => {
                        sandbox.add_adapter_plugin_for(owner, &adapter.name, &adapter.bytes, settings).await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(crate::sandbox::SandboxError::BadDescription(format!("stored manifest: {e}"))),
            };
            if let Err(e) = loaded {
                tracing::error!(adapter = %adapter.name, owner = ?owner, error = %e, "an uploaded adapter no longer loads; skipped");
            }
        }
        // Workers elsewhere load uploads from the queue's backend; a backend
        // that lost its data gets them again.
        if let Some(shared) = &opened.shared_plugins {
            for plugin in &uploads {
                shared.publish(&crate::engine::shared_id(plugin.owner, &plugin.hash), &plugin.bytes).await?;
            }
            for (owner, adapter) in &adapters {
                let id = crate::engine::adapter_shared_id(*owner, &adapter.name, &adapter.hash);
                shared.publish(&id, &crate::engine::encode_adapter(&adapter.manifest, &adapter.bytes)).await?;
            }
        }
        opened.share_endpoints(&sandbox);
        let worker = match settings.run_worker {
            true => Some(worker_for(settings, &opened, sandbox.clone(), resources.clone()).await),
            false => None,
        };
        // An API host that runs no tests still plans and validates them: it
        // follows the uploads other API hosts take.
        if worker.is_none()
            && let Some(shared) = &opened.shared_plugins
        {
            crate::engine::follow_uploads(shared.clone(), &sandbox);
        }
        let shared_plugins = opened.shared_plugins.clone();
        let (queue, queue_note) = (opened.queue, opened.note);
        let progress = Arc::new(ProgressService::new());
        let hub = Hub::new(settings.socket_max_behind);
        progress.add_listener(hub.clone());
        let relay = opened.relay.map(|transport| Relay::start(&progress, transport, process_name("api")));
        let engine = Engine::new(
            store,
            queue.clone(),
            sandbox,
            progress,
            EngineConfig {
                max_concurrent_tests: settings.max_concurrent_tests,
                default_adapter: settings.default_adapter.clone(),
                grader: settings.grader.clone(),
                prices: settings.prices.clone(),
                limits: settings.limits,
            },
            worker,
        );
        let recovered = engine.recover().await.map_err(|e| AppError::Recover(e.to_string()))?;
        if recovered > 0 {
            tracing::info!(recovered, "re-queued unfinished executions");
        }
        queue.mark_epoch().await?;
        // The tasks run until the runtime stops.
        drop(engine.start(process_name("host")));
        let auth = Arc::new(Auth::new(engine.store().clone(), settings.auth_required));
        let state = Arc::new(AppState {
            engine: engine.clone(),
            resources: resources.clone(),
            queue_note: queue_note.clone(),
            shared_plugins: shared_plugins.clone(),
            auth,
            metrics_token: settings.metrics_token.clone(),
            quotas: Arc::new(crate::tenants::Quotas::new(settings.quotas)),
        });
        let socket = SocketServer::start(state.clone(), hub.clone());
        Ok(Self {
            engine,
            resources,
            queue_note,
            shared_plugins,
            hub,
            relay,
            state,
            socket,
            cors_origin: settings.cors_origin.clone(),
        })
    }

    /// Whether requests need API keys now (a tenant exists, or
    /// `CARDRUN_AUTH=required`).
    pub async fn auth_enabled(&self) -> Result<bool, StoreError> {
        self.state.auth.enabled().await
    }

    /// The REST API, the dashboard and Socket.IO on one router.
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone()).layer(self.socket.layer.clone()).layer(api::cors(&self.cors_origin))
    }

    /// Serves the API on `addr` until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr: Option<SocketAddr> = listener.local_addr().ok();
        tracing::info!(addr = ?addr, "cardrun listening");
        serve_router(listener, self.router(), shutdown).await
    }

    /// Lets running tests finish (up to `grace`) after the server stopped
    /// taking requests; see [`Engine::drain`].
    pub async fn drain(&self, grace: std::time::Duration) {
        let running = self.engine.active_tests();
        tracing::info!(running, grace_ms = grace.as_millis() as u64, "draining running tests");
        let handed_back = self.engine.drain(grace).await;
        if handed_back == 0 {
            tracing::info!("drained: every running test finished and is stored");
        } else {
            tracing::warn!(handed_back, "grace period over; the unfinished tests were handed back to the queue");
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, with
/// `TCP_NODELAY` on every connection: Socket.IO sends many small frames,
/// and Nagle's algorithm against the client's delayed ACK held some of them
/// back 40 ms (measured: p99 45 ms from publish to client, 3 ms without).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

/// `cardrun worker`: runs tests from a shared Redis queue; no store, no API.
pub struct WorkerApp {
    pub worker: Worker,
}

impl WorkerApp {
    /// Loads the plugins, connects to Redis (retrying with backoff until it
    /// answers or `stop` resolves) and starts claiming. `None` if stopped
    /// before Redis answered.
    pub async fn start(
        settings: &Settings,
        redis: &RedisConfig,
        stop: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Result<Option<Self>, AppError> {
        let sandbox = sandbox_with_plugins(settings).await?;
        let mut backoff = std::time::Duration::from_millis(200);
        let queue = loop {
            match RedisQueue::connect(redis, settings.queue).await {
                Ok(queue) => break OpenQueue::redis(queue, redis, settings),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "waiting for Redis");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = &mut *stop => return Ok(None),
                    }
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
            }
        };
        let resources =
            ResourceManager::start(&settings.resources, settings.max_concurrent_tests, Box::new(SystemFigures::new()));
        queue.share_endpoints(&sandbox);
        let worker = worker_for(settings, &queue, sandbox, resources).await;
        // The tasks run until the process exits.
        drop(worker.start());
        tracing::info!(
            worker = worker.id(),
            max_concurrent_tests = worker.max_concurrent_tests(),
            "worker claiming from Redis"
        );
        Ok(Some(Self { worker }))
    }
}
