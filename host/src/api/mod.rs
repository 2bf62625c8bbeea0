//! The REST API (DESIGN.md section 4): the envelope, errors, and routes.
//!
//! Every response is `{"success": true, "data": ...}` or
//! `{"success": false, "error": "..."}`; client mistakes are 4xx with a
//! message, never a panic or a 500.

mod auth;
mod cards;
mod dashboard;
mod error;
mod evaluations;
mod executions;
mod extract;
mod metrics;
mod openapi;
mod plugin_upload;
mod plugins;
mod scope;
mod suite_upload;
pub mod system;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Json, Router};
use utoipa::ToSchema;

pub use error::{ApiError, ErrorBody};
pub use executions::ExecutionResults;
pub use extract::{ApiBytes, ApiJson};
pub use scope::Scope;

use crate::engine::Engine;
use crate::resources::ResourceManager;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub resources: ResourceManager,
    /// Why the queue is not the configured one (Redis unreachable at
    /// start-up), for `/health` and `/queue/stats`.
    pub queue_note: Option<String>,
    /// Where uploads are published for workers in other processes.
    pub shared_plugins: Option<Arc<dyn crate::engine::SharedPlugins>>,
    /// API keys (on once a tenant exists, or `CARDRUN_AUTH=required`).
    pub auth: Arc<crate::tenants::Auth>,
    /// `METRICS_TOKEN`, when `/metrics` needs one.
    pub metrics_token: Option<String>,
    /// Per-tenant allowances.
    pub quotas: Arc<crate::tenants::Quotas>,
}

/// `{"success": true, "data": ...}`: the body of every successful reply.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Envelope<T> {
    pub success: bool,
    pub data: T,
}

/// Wraps `data` in the envelope.
pub fn ok<T: serde::Serialize>(data: T) -> Json<Envelope<T>> {
    Json(Envelope { success: true, data })
}

/// What a JSON handler answers: a status and the envelope, or an error.
pub type Reply<T> = Result<(StatusCode, Json<Envelope<T>>), ApiError>;

/// Largest accepted request body (413 beyond).
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// The whole HTTP API. Every route is declared with its OpenAPI operation
/// (`openapi::routes`), so `/api/openapi.json` lists exactly what is served.
pub fn router(state: Arc<AppState>) -> Router {
    openapi::router()
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on this route"))
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_key))
        .with_state(state)
}

/// CORS for browsers on other origins (`CORS_ORIGIN`): a comma-separated
/// list of origins, or `*`. An origin that is not a valid header value is
/// skipped with a warning.
pub fn cors(origins: &str) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]);
    if origins.trim() == "*" {
        return layer.allow_origin(AllowOrigin::any());
    }
    let list: Vec<HeaderValue> = origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .filter_map(|o| match HeaderValue::from_str(o) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = o, "CORS_ORIGIN entry is not a valid origin; skipped");
                None
            }
        })
        .collect();
    layer.allow_origin(AllowOrigin::list(list)).allow_credentials(true)
}

/// `GET /health`: what this host runs on.
#[derive(serde::Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
    version: &'static str,
    /// `sqlite` or `postgres`.
    store_backend: &'static str,
    /// `memory` or `redis`.
    queue_backend: &'static str,
    /// Why the queue is not the configured one, when it is not.
    queue_backend_note: Option<String>,
    /// Whether this process runs tests.
    worker: bool,
    adapters: Vec<String>,
    assertion_types: Vec<String>,
}

/// What this host runs on: store, queue, worker, plugins.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Envelope<Health>)))]
async fn health(State(state): State<Arc<AppState>>) -> Json<Envelope<Health>> {
    let engine = &state.engine;
    ok(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        store_backend: engine.store().backend(),
        queue_backend: engine.queue().backend(),
        queue_backend_note: state.queue_note.clone(),
        worker: engine.worker().is_some(),
        adapters: engine.sandbox().adapter_names(),
        assertion_types: engine.sandbox().assertion_types(),
    })
}
