//! The dashboard: one page and its assets, embedded in the binary (no CDN,
//! no build step). It uses only the public REST and Socket.IO API.
//!
//! `socket.io.min.js` is the official client's browser build, copied from
//! the npm package `socket.io-client` (see `host/dashboard/README.md`).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// (path, content type, body)
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../dashboard/app.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../dashboard/style.css")),
    ("socket.io.min.js", "text/javascript; charset=utf-8", include_str!("../../dashboard/socket.io.min.js")),
];

const INDEX: &str = include_str!("../../dashboard/index.html");

pub fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(index)).routes(routes!(asset))
}

/// The dashboard's page.
#[utoipa::path(get, path = "/", tag = "system",
    responses((status = 200, description = "The dashboard", content_type = "text/html")))]
async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX).into_response()
}

/// One of the dashboard's scripts or styles.
#[utoipa::path(get, path = "/dashboard/{file}", tag = "system",
    params(("file" = String, Path, description = "`app.js`, `style.css` or `socket.io.min.js`")),
    responses(
        (status = 200, description = "The asset", content_type = "text/javascript"),
        (status = 404, description = "No such asset", content_type = "text/plain"),
    ))]
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => {
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "no-cache")], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
