//! The REST API (DESIGN.md section 4): the envelope, errors, and routes.
//!
//! Every response is `{"success": true, "data": ...}` or
//! `{"success": false, "error": "..."}`; client mistakes are 4xx with a
//! message, never a panic or a 500.

mod cards;
mod dashboard;
mod error;
mod evaluations;
mod executions;
mod extract;
mod metrics;
mod plugins;
mod suite_upload;
pub mod system;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::json;

pub use error::ApiError;
pub use executions::ExecutionResults;
pub use extract::{ApiBytes, ApiJson};

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
}

/// `{"success": true, "data": data}`.
pub fn ok(data: impl serde::Serialize) -> axum::Json<serde_json::Value> {
    axum::Json(json!({"success": true, "data": data}))
}

/// Largest accepted request body (413 beyond).
pub const MAX_BODY_BYTES: usize = 8 << 20;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(dashboard::routes())
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .nest("/api/prompt-cards", cards::card_routes())
        .nest("/api/test-cases", cards::test_case_routes())
        .nest("/api/parallel-test-execution", executions::routes())
        .nest("/api/plugins", plugins::routes())
        .nest("/api/evaluations", evaluations::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on this route"))
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
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
#[derive(serde::Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    /// `sqlite` or `postgres`.
    store_backend: &'static str,
    queue_backend: &'static str,
    queue_backend_note: Option<String>,
    worker: bool,
    adapters: Vec<String>,
    assertion_types: Vec<String>,
}

async fn health(State(state): State<Arc<AppState>>) -> axum::Json<serde_json::Value> {
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
