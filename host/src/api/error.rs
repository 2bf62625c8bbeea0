//! API errors and their status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::engine::{EngineError, PlanError};
use crate::store::StoreError;

/// The body of every error response: `success` is false.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    success: bool,
    /// What went wrong, in words a client can act on (a 5xx: a generic
    /// message with the request id).
    error: String,
    /// With a 5xx: the id its cause is logged under.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<uuid::Uuid>,
}

/// An error response: a status and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (429s).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    /// A 5xx carries no internal text (SQL, paths, a backend's wording):
    /// the client gets a generic message and a request id, and the log gets
    /// the cause under the same id.
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            let request_id = uuid::Uuid::new_v4();
            tracing::error!(status = %self.status, %request_id, error = %self.message, "request failed");
            let message = match self.status {
                StatusCode::SERVICE_UNAVAILABLE => "a backend this server needs is unavailable; try again shortly",
                _ => "internal error",
            };
            let body = ErrorBody {
                success: false,
                error: format!("{message} (request id {request_id})"),
                request_id: Some(request_id),
            };
            return (self.status, axum::Json(body)).into_response();
        }
        let mut response =
            (self.status, axum::Json(ErrorBody { success: false, error: self.message, request_id: None }))
                .into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status =
            if e.is_unavailable() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR };
        Self::new(status, format!("store ({}): {e}", e.code()))
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(_) => Self::not_found(e.to_string()),
            EngineError::Queue(q) => Self::new(StatusCode::SERVICE_UNAVAILABLE, q.to_string()),
            EngineError::Store(s) => s.into(),
        }
    }
}

/// A tenant over a quota: 429, and when to try again.
impl From<crate::tenants::OverQuota> for ApiError {
    fn from(over: crate::tenants::OverQuota) -> Self {
        let seconds = over.retry_after.as_secs().max(1);
        Self { status: StatusCode::TOO_MANY_REQUESTS, message: over.to_string(), retry_after: Some(seconds) }
    }
}

/// Input that breaks a domain rule is the client's to fix.
impl From<crate::domain::Invalid> for ApiError {
    fn from(e: crate::domain::Invalid) -> Self {
        Self::bad_request(e.0)
    }
}

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::NotFound(m) => Self::not_found(m),
            PlanError::Invalid(m) => Self::bad_request(m),
            PlanError::Store(s) => s.into(),
        }
    }
}
