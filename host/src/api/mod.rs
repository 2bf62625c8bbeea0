//! The REST API (DESIGN.md section 4): the envelope, errors, and routes.
//!
//! Every response is `{"success": true, "data": ...}` or
//! `{"success": false, "error": "..."}`; client mistakes are 4xx with a
//! message, never a panic or a 500.

mod cards;
mod error;
mod executions;
mod extract;
mod metrics;
mod plugins;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::json;

pub use error::ApiError;
pub use extract::{ApiBytes, ApiJson};

use crate::engine::Engine;
use crate::resources::ResourceMonitor;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub resources: ResourceMonitor,
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

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .nest("/api/prompt-cards", cards::card_routes())
        .nest("/api/test-cases", cards::test_case_routes())
        .nest("/api/parallel-test-execution", executions::routes())
        .nest("/api/plugins", plugins::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(state))
}

async fn health(State(state): State<Arc<AppState>>) -> axum::Json<serde_json::Value> {
    let engine = &state.engine;
    ok(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "queue_backend": engine.queue().backend(),
        "queue_backend_note": state.queue_note,
        "worker": engine.worker().is_some(),
        "adapters": engine.sandbox().adapter_names(),
        "assertion_types": engine.sandbox().assertion_types(),
    }))
}
