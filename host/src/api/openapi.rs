//! The OpenAPI 3.1 document, served at `GET /api/openapi.json`.
//!
//! Every route is added with `routes!` from its handler's
//! `#[utoipa::path]`, which gives the router its method and path and the
//! document its operation in one declaration: what is served and what is
//! documented cannot drift apart. A route added with plain `.route()`
//! would be served undocumented; none is.

use std::sync::Arc;

use axum::Router;
use axum::extract::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, ErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cardrun",
        description = "Run LLM prompt-card test suites in parallel. Every JSON reply is \
                       `{\"success\": true, \"data\": ...}` or `{\"success\": false, \"error\": \"...\"}`; \
                       a 5xx carries only a generic message and a request id."
    ),
    tags(
        (name = "prompt-cards", description = "Prompt cards and suite import/export"),
        (name = "test-cases", description = "Test cases of a card"),
        (name = "executions", description = "Queue, follow, read and cancel executions"),
        (name = "evaluations", description = "Suites run as a prompts x providers matrix"),
        (name = "plugins", description = "Assertion plugins (WebAssembly components)"),
        (name = "system", description = "Health, metrics, this document and the dashboard"),
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// Every route with its operation.
fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(super::health))
        .routes(routes!(super::metrics::metrics))
        .routes(routes!(openapi_json))
        .merge(super::dashboard::routes())
        .nest("/api/prompt-cards", super::cards::card_routes())
        .nest("/api/test-cases", super::cards::test_case_routes())
        .nest("/api/parallel-test-execution", super::executions::routes())
        .nest("/api/plugins", super::plugins::routes())
        .nest("/api/evaluations", super::evaluations::routes())
}

/// The document's JSON, rendered once.
#[derive(Clone)]
struct DocumentJson(Arc<str>);

/// The router of every documented route, serving the document too.
pub(super) fn router() -> Router<Arc<AppState>> {
    let (router, document) = routes().split_for_parts();
    // Rendering a document of plain data cannot fail; if it did, the
    // route would say so rather than the server refusing to start.
    let json = document.to_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    router.layer(Extension(DocumentJson(json.into())))
}

/// This document: every route with its parameters, bodies and replies.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
async fn openapi_json(Extension(DocumentJson(json)): Extension<DocumentJson>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json.to_string())
}
