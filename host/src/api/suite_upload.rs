//! A suite and the files it refers to, from a request in any of four
//! forms: the YAML as the body; JSON `{suite, files: {path: text}}`;
//! `multipart/form-data` with a `suite` part and one part per file, named
//! by its path relative to the suite (`curl -F suite=@suite.yaml -F
//! 'file=@prompts/a.txt;filename=prompts/a.txt'`); or the suite's folder
//! as one archive (`application/x-tar`, `application/gzip` for tar.gz,
//! `application/zip`; see `suite::archive`). Only these files are
//! readable by the suite: an import never reads the server's files.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;

use super::ApiError;
use super::extract::ApiJson;

pub struct SuiteUpload {
    pub yaml: String,
    pub files: BTreeMap<String, String>,
}

/// The JSON form.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuiteJson {
    /// The suite's YAML.
    suite: String,
    /// Relative path to text, for the suite's `file://` references.
    #[serde(default)]
    files: BTreeMap<String, String>,
}

/// The multipart form, for the document: a `suite` part and one part per
/// file, named by its path (the file name), not a fixed set of fields.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used.
pub struct SuiteForm {
    /// The suite's YAML.
    suite: String,
    /// Any further part: a file, its path as the part's file name.
    #[schema(value_type = Option<String>, format = Binary)]
    file: Option<Vec<u8>>,
}

impl<S: Send + Sync> FromRequest<S> for SuiteUpload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let kind = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if kind.starts_with("application/json") {
            let ApiJson(upload) = ApiJson::<SuiteJson>::from_request(req, state).await?;
            return Ok(Self { yaml: upload.suite, files: upload.files });
        }
        if let Some(archive) = crate::suite::archive::ArchiveKind::from_content_type(&kind) {
            let bytes = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
            // Inflating up to 32 MiB is CPU work: off the async workers.
            let unpacked = tokio::task::spawn_blocking(move || crate::suite::archive::unpack(&bytes, archive))
                .await
                .map_err(|e| {
                    ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        format!("unpacking a suite archive: {e}"),
                    )
                })?
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            if !unpacked.skipped.is_empty() {
                tracing::debug!(skipped = ?unpacked.skipped, "suite archive files that are not text were left out");
            }
            return Ok(Self { yaml: unpacked.yaml, files: unpacked.files });
        }
        if kind.starts_with("multipart/form-data") {
            let multipart = Multipart::from_request(req, state)
                .await
                .map_err(|e| ApiError::bad_request(format!("invalid multipart body: {}", e.body_text())))?;
            return from_multipart(multipart).await;
        }
        let yaml = String::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), format!("the suite must be UTF-8 YAML: {}", e.body_text())))?;
        Ok(Self { yaml, files: BTreeMap::new() })
    }
}

async fn from_multipart(mut multipart: Multipart) -> Result<SuiteUpload, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| ApiError::new(e.status(), e.body_text());
    let mut yaml = None;
    let mut files = BTreeMap::new();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        let path = field.file_name().map(str::to_string);
        let text = field.text().await.map_err(bad)?;
        match (name.as_str(), path) {
            ("suite", _) => yaml = Some(text),
            (_, Some(path)) if !path.is_empty() => {
                files.insert(path, text);
            }
            (other, _) => {
                return Err(ApiError::bad_request(format!(
                    "multipart part `{other}` has no file name; send each file with its path as the file name"
                )));
            }
        }
    }
    let yaml = yaml.ok_or_else(|| ApiError::bad_request("multipart body has no `suite` part"))?;
    Ok(SuiteUpload { yaml, files })
}
