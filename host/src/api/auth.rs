//! API keys on every request (issue 14): a layer in front of the routes.
//! `/health`, the OpenAPI document and the dashboard's static files stay
//! open; `/metrics` is open unless `METRICS_TOKEN` is set. The tenant a key
//! belongs to goes into the request's extensions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::tenants::{Access, AuthError, Metered, bearer_token};

/// Paths anyone may read.
fn is_open(path: &str) -> bool {
    matches!(path, "/" | "/health" | "/api/openapi.json") || path.starts_with("/dashboard/")
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token)
}

pub async fn require_key(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/metrics" {
        return match &state.metrics_token {
            Some(token) if !same(bearer(request.headers()), token) => refused(AuthError::Invalid),
            _ => next.run(request).await,
        };
    }
    if is_open(path) {
        return next.run(request).await;
    }
    match state.auth.check(bearer(request.headers())).await {
        Ok(Access::Open) => next.run(request).await,
        Ok(Access::Tenant(tenant)) => {
            if let Err(over) = state.quotas.take(tenant.id, Metered::Requests, 1) {
                return ApiError::from(over).into_response();
            }
            request.extensions_mut().insert(tenant);
            next.run(request).await
        }
        Err(AuthError::Store(e)) => ApiError::from(e).into_response(),
        Err(e) => refused(e),
    }
}

/// 401 in the envelope, with the challenge HTTP asks for.
fn refused(why: AuthError) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, why.to_string()).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Compares a presented token with the configured one without stopping at
/// the first differing byte.
fn same(presented: Option<&str>, expected: &str) -> bool {
    let Some(presented) = presented else { return false };
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
