//! The browser pages hangar serves itself: the remote-browser viewer of a connect session
//! (`/connect/{id}`, noVNC bundled from npm by `cargo xtask web` and embedded at build time).
//! The pages hold no data: their scripts call the API with the person's token.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::api::AppState;

const VIEWER_HTML: &str = include_str!("../../../web/viewer.html");
const VIEWER_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/viewer.js"));

/// Routes of the pages and their assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/connect/{id}", get(viewer))
        .route("/assets/viewer.js", get(viewer_js))
}

async fn viewer() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        VIEWER_HTML,
    )
}

async fn viewer_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        VIEWER_JS,
    )
}
