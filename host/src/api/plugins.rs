//! `/api/plugins`: list the loaded plugins; upload, replace and delete an
//! assertion plugin. A plugin owns its types: a type another plugin (or a
//! built-in) provides cannot be claimed (409); only `PUT` replaces a plugin,
//! by name. With a key, uploads are the tenant's own: its type names are
//! its own (another tenant may upload a plugin with the same types), it
//! sees shared plugins and its own, and another tenant's plugin names
//! answer 404. Uploads count against the tenant's plugin allowance.
//! With Redis, an upload is also published there by owner and content hash,
//! for workers in other processes.
//!
//! An upload is validated by registering it in the sandbox (it must be a
//! component of the `assertion` world that describes itself and claims no
//! built-in type), then kept in the store so a restarted host loads it
//! again before it re-queues unfinished executions.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::plugin_upload::PluginUpload;
use super::{ApiBytes, ApiError, AppState, Envelope, ErrorBody, Reply, Scope, ok};
use crate::engine::{adapter_shared_id, encode_adapter, shared_id};
use crate::sandbox::{AdapterInfo, AdapterManifest, AssertionInfo, Owner, PluginQuota, Sandbox, SandboxError};
use crate::store::StoredAdapter;

/// Largest accepted plugin upload (413 beyond). The built-in JSON
/// assertions, the biggest plugin we ship, are 3.6 MB.
pub const MAX_PLUGIN_BYTES: usize = 32 << 20;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, upload))
        .routes(routes!(replace, remove))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_PLUGIN_BYTES))
}

/// An assertion plugin as it describes itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub assertion_types: Vec<String>,
    /// SHA-256 of the component.
    pub hash: String,
    /// Shipped with cardrun (cannot be replaced or deleted).
    pub builtin: bool,
    /// Shared with every tenant (built-ins, plugin files, uploads made
    /// without a key); `false`: the requesting tenant's own.
    pub shared: bool,
    /// The plugin exports `check`: its assertions' parameters are checked
    /// when a test case is written (else only at run time).
    pub checks_parameters: bool,
}

fn describe(sandbox: &Sandbox, owner: Owner, info: &AssertionInfo) -> PluginInfo {
    PluginInfo {
        name: info.name.clone(),
        version: info.version.clone(),
        description: info.description.clone(),
        assertion_types: info.assertion_types.clone(),
        hash: info.hash.clone(),
        builtin: sandbox.is_builtin(info),
        shared: owner.is_none(),
        checks_parameters: info.checks_parameters,
    }
}

/// The plugins this host has loaded.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    pub assertions: Vec<PluginInfo>,
    /// Model adapter names the caller may use, for
    /// `"model": "<adapter>:<model>"`: the built-in ones and its own.
    pub adapters: Vec<String>,
    /// The adapters the caller uploaded (secret headers by name only).
    pub uploaded_adapters: Vec<AdapterInfo>,
}

/// What an upload registered: an assertion plugin or a model adapter.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Uploaded {
    Assertion(PluginInfo),
    Adapter(AdapterInfo),
}

/// What a delete removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginDeleted {
    pub deleted: String,
    pub assertion_types: Vec<String>,
}

/// The loaded plugins: assertion plugins with their types (built-in ones
/// marked), and adapter names.
#[utoipa::path(get, path = "/", tag = "plugins", responses((status = 200, body = Envelope<PluginList>)))]
async fn list(State(state): State<Arc<AppState>>, scope: Scope) -> axum::Json<Envelope<PluginList>> {
    let sandbox = state.engine.sandbox();
    let assertions =
        sandbox.assertion_plugins_for(scope.0).iter().map(|(owner, info)| describe(sandbox, *owner, info)).collect();
    ok(PluginList {
        assertions,
        adapters: sandbox.adapter_names_for(scope.0),
        uploaded_adapters: sandbox.uploaded_adapters(scope.0),
    })
}

/// An assertion component as the body (`application/wasm`), or a model
/// adapter as multipart (`manifest` + `component`, see `plugin_upload.rs`).
/// 201 with the plugin's description; its types (or its adapter name) are
/// usable at once.
#[utoipa::path(post, path = "/", tag = "plugins",
    request_body(description = "An assertion component, or an adapter with its manifest", content(
        (Vec<u8> = "application/wasm"),
        (super::plugin_upload::AdapterForm = "multipart/form-data"))),
    responses(
        (status = 201, body = Envelope<Uploaded>),
        (status = 409, description = "A type or name it claims belongs to another plugin", body = ErrorBody),
        (status = 429, description = "Over the tenant's plugin allowance", body = ErrorBody),
        (status = "4XX", body = ErrorBody), (status = "5XX", body = ErrorBody)))]
async fn upload(State(state): State<Arc<AppState>>, scope: Scope, upload: PluginUpload) -> Reply<Uploaded> {
    let (owner, sandbox) = (scope.0, state.engine.sandbox());
    let bytes = match upload {
        PluginUpload::Assertion(bytes) => bytes,
        PluginUpload::Adapter { manifest, component } => {
            let info = upload_adapter(&state, owner, manifest, &component).await?;
            return Ok((StatusCode::CREATED, ok(Uploaded::Adapter(info))));
        }
    };
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body must be the plugin's .wasm component"));
    }
    let quota = allowance(&state, owner);
    let info = sandbox.add_assertion_plugin_for(owner, &bytes, quota).await.map_err(rejected)?;
    state.engine.store().put_plugin(owner, &info.hash, &info.name, &bytes).await?;
    if let Some(shared) = &state.shared_plugins {
        shared.publish(&shared_id(owner, &info.hash), &bytes).await.map_err(unavailable)?;
    }
    tracing::info!(plugin = %info.name, owner = ?owner, types = ?info.assertion_types, hash = %info.hash, "plugin uploaded");
    Ok((StatusCode::CREATED, ok(Uploaded::Assertion(describe(sandbox, owner, &info)))))
}

/// A tenant's plugin allowance, less what its uploaded adapters use (they
/// count as plugins too); `None` without a tenant.
fn allowance(state: &AppState, owner: Owner) -> Option<PluginQuota> {
    let quota = state.quotas.settings().plugins;
    owner.map(|_| {
        let adapters = state.engine.sandbox().uploaded_adapters(owner);
        let bytes: usize = adapters.iter().map(|a| a.size_bytes).sum();
        PluginQuota {
            max_plugins: quota.max_plugins.saturating_sub(adapters.len()),
            max_bytes: quota.max_bytes.saturating_sub(bytes),
        }
    })
}

/// Registers `owner`'s model adapter, within its plugin allowance, and
/// keeps it (with its secrets) in the store. Its name may not be one of the
/// owner's assertion plugins' names, so `DELETE /api/plugins/{name}` names
/// one thing.
async fn upload_adapter(
    state: &AppState,
    owner: Owner,
    manifest: AdapterManifest,
    component: &[u8],
) -> Result<AdapterInfo, ApiError> {
    let sandbox = state.engine.sandbox();
    let settings = manifest.settings().map_err(rejected)?;
    if sandbox.assertion_plugins_for(owner).iter().any(|(_, p)| p.name == manifest.name) {
        return Err(rejected(SandboxError::PluginExists { name: manifest.name }));
    }
    if let Some(quota) = allowance(state, owner) {
        let own = sandbox.assertion_plugins_for(owner).into_iter().filter(|(o, _)| o.is_some());
        let (count, bytes) = own.fold((0usize, 0usize), |(n, b), (_, p)| (n + 1, b.saturating_add(p.size_bytes)));
        if count >= quota.max_plugins || bytes.saturating_add(component.len()) > quota.max_bytes {
            return Err(rejected(SandboxError::PluginQuota {
                what: format!("{} plugins or their bytes", state.quotas.settings().plugins.max_plugins),
                variable: "TENANT_MAX_PLUGINS / TENANT_MAX_PLUGIN_BYTES",
            }));
        }
    }
    let info = sandbox.add_adapter_plugin_for(owner, &manifest.name, component, settings).await.map_err(rejected)?;
    let stored = StoredAdapter {
        name: info.name.clone(),
        hash: info.hash.clone(),
        bytes: component.to_vec(),
        manifest: serde_json::to_string(&manifest)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("manifest: {e}")))?,
    };
    if !state.engine.store().put_adapter(owner, &stored).await? {
        let _ = sandbox.remove_adapter_plugin_for(owner, &info.name);
        return Err(rejected(SandboxError::PluginExists { name: info.name }));
    }
    if let Some(shared) = &state.shared_plugins {
        let id = adapter_shared_id(owner, &info.name, &info.hash);
        shared.publish(&id, &encode_adapter(&stored.manifest, component)).await.map_err(unavailable)?;
    }
    tracing::info!(adapter = %info.name, owner = ?owner, hash = %info.hash, hosts = ?info.allowed_hosts, "adapter uploaded");
    Ok(info)
}

/// `PUT /api/plugins/{name}`: replaces the uploaded plugin `name` (the
/// component must be named so too). 200 with the new description.
#[utoipa::path(put, path = "/{name}", tag = "plugins", params(("name" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 200, body = Envelope<PluginInfo>), (status = "4XX", body = ErrorBody),
        (status = "5XX", body = ErrorBody)))]
async fn replace(
    State(state): State<Arc<AppState>>,
    scope: Scope,
    super::extract::IdPath(name): super::extract::IdPath<String>,
    ApiBytes(bytes): ApiBytes,
) -> Reply<PluginInfo> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body must be the plugin's .wasm component"));
    }
    let sandbox = state.engine.sandbox();
    let owner = scope.0;
    let quota = allowance(&state, owner);
    let info = sandbox.replace_assertion_plugin_for(owner, &name, &bytes, quota).await.map_err(rejected)?;
    // Earlier versions stay (in the store, Redis and the sandbox) for tests
    // queued before this; only those beyond what is kept are dropped.
    let keep = crate::sandbox::KEPT_VERSIONS;
    let dropped = state.engine.store().replace_plugin(owner, &info.hash, &info.name, &bytes, keep).await?;
    if let Some(shared) = &state.shared_plugins {
        shared.publish(&shared_id(owner, &info.hash), &bytes).await.map_err(unavailable)?;
        for hash in dropped {
            shared.retract(&shared_id(owner, &hash)).await.map_err(unavailable)?;
        }
    }
    tracing::info!(plugin = %info.name, owner = ?owner, types = ?info.assertion_types, hash = %info.hash, "plugin replaced");
    Ok((StatusCode::OK, ok(describe(sandbox, owner, &info))))
}

/// `DELETE /api/plugins/{name}`: unloads an uploaded plugin and forgets it.
/// Queued tests that use its types fail with `unknown_assertion`.
#[utoipa::path(delete, path = "/{name}", tag = "plugins", params(("name" = String, Path)), responses(
    (status = 200, body = Envelope<PluginDeleted>), (status = "4XX", body = ErrorBody)))]
async fn remove(
    State(state): State<Arc<AppState>>,
    scope: Scope,
    super::extract::IdPath(name): super::extract::IdPath<String>,
) -> Reply<PluginDeleted> {
    let owner = scope.0;
    let sandbox = state.engine.sandbox();
    if sandbox.uploaded_adapters(owner).iter().any(|a| a.name == name) {
        let info = sandbox.remove_adapter_plugin_for(owner, &name).map_err(rejected)?;
        state.engine.store().delete_adapter(owner, &name).await?;
        if let Some(shared) = &state.shared_plugins {
            shared.retract(&adapter_shared_id(owner, &name, &info.hash)).await.map_err(unavailable)?;
        }
        tracing::info!(adapter = %name, owner = ?owner, "adapter deleted");
        return Ok((StatusCode::OK, ok(PluginDeleted { deleted: info.name, assertion_types: vec![] })));
    }
    let info = sandbox.remove_assertion_plugin_for(owner, &name).map_err(rejected)?;
    let hashes = state.engine.store().delete_plugin(owner, &name).await?;
    if let Some(shared) = &state.shared_plugins {
        for hash in hashes {
            shared.retract(&shared_id(owner, &hash)).await.map_err(unavailable)?;
        }
    }
    tracing::info!(plugin = %name, "plugin deleted");
    Ok((StatusCode::OK, ok(PluginDeleted { deleted: info.name, assertion_types: info.assertion_types })))
}

fn unavailable(e: crate::queue::QueueError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn rejected(e: SandboxError) -> ApiError {
    match e {
        SandboxError::BuiltinType { .. }
        | SandboxError::TypeTaken { .. }
        | SandboxError::PluginExists { .. }
        | SandboxError::TooManyPlugins { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        // Room comes back only when the tenant deletes a plugin; Retry-After
        // says when to look again, as every other allowance's 429 does.
        SandboxError::PluginQuota { .. } => {
            ApiError { retry_after: Some(60), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()) }
        }
        SandboxError::UnknownPlugin { .. } => ApiError::not_found(e.to_string()),
        SandboxError::Internal(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        SandboxError::BadDescription(_) => ApiError::bad_request(e.to_string()),
        other => ApiError::bad_request(format!("plugin rejected: {other}")),
    }
}
