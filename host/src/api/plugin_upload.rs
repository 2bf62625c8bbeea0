//! What `POST /api/plugins` carries: an assertion component as the body
//! (`application/wasm`, or any type but multipart), or a model adapter as
//! `multipart/form-data` with a `manifest` part (JSON: name, config,
//! allowed hosts, secret headers) and a `component` part (the `.wasm`):
//! `curl -F manifest=@adapter.json -F component=@adapter.wasm`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;

use super::ApiError;
use super::extract::ApiBytes;
use crate::sandbox::AdapterManifest;

pub enum PluginUpload {
    Assertion(Bytes),
    Adapter { manifest: AdapterManifest, component: Bytes },
}

/// The multipart form of an adapter upload (for the document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used.
pub struct AdapterForm {
    /// The adapter's manifest as JSON.
    manifest: AdapterManifest,
    /// The `model-adapter` component.
    #[schema(value_type = String, format = Binary)]
    component: Vec<u8>,
}

impl<S: Send + Sync> FromRequest<S> for PluginUpload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let kind = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !kind.starts_with("multipart/form-data") {
            let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
            return Ok(Self::Assertion(bytes));
        }
        let mut multipart = Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid multipart body: {}", e.body_text())))?;
        let bad = |e: axum::extract::multipart::MultipartError| ApiError::new(e.status(), e.body_text());
        let (mut manifest, mut component) = (None, None);
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            match field.name().unwrap_or_default() {
                "manifest" => {
                    let text = field.bytes().await.map_err(bad)?;
                    let parsed: AdapterManifest =
                        serde_json::from_slice(&text).map_err(|e| ApiError::bad_request(format!("manifest: {e}")))?;
                    manifest = Some(parsed);
                }
                "component" => component = Some(field.bytes().await.map_err(bad)?),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unexpected multipart part `{other}`; an adapter upload has `manifest` and `component`"
                    )));
                }
            }
        }
        match (manifest, component) {
            (Some(manifest), Some(component)) if !component.is_empty() => Ok(Self::Adapter { manifest, component }),
            _ => Err(ApiError::bad_request("an adapter upload needs a `manifest` part and a `component` part")),
        }
    }
}
