//! The dashboard: one page and its assets, embedded in the binary (no CDN,
//! no build step). It uses only the public REST and Socket.IO API.
//!
//! `socket.io.min.js` is the official client's browser build, copied from
//! the npm package `socket.io-client` (see `host/dashboard/README.md`).

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// (path, content type, body)
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../dashboard/app.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../dashboard/style.css")),
    ("socket.io.min.js", "text/javascript; charset=utf-8", include_str!("../../dashboard/socket.io.min.js")),
];

const INDEX: &str = include_str!("../../dashboard/index.html");

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/dashboard/{file}", get(asset))
}

async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX).into_response()
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => {
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "no-cache")], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
