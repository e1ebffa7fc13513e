//! The browser pages hangar serves itself, all embedded in the binary at build time (see
//! `build.rs`: `web/dist/` from `cargo xtask web`), so the binary alone serves them:
//!
//! | route | answers |
//! |---|---|
//! | `GET /`, `/app`, `/app/...` | the dashboard's `index.html` (client-side routes) |
//! | `GET /assets/{file}` | Vite's content-hashed assets, `Cache-Control: immutable` for a year |
//! | `GET /connect/{id}` | the remote-browser viewer of a connect session (`viewer.html`) |
//!
//! Text files are precompressed at build time (gzip and Brotli); the answer is the form the
//! request's `Accept-Encoding` prefers (RFC 9110 section 12.5.3), with
//! `Vary: Accept-Encoding`. The pages hold no data: their scripts call the API, with the
//! session cookie (dashboard) or the viewer token in the URL fragment (viewer). Pages carry
//! [`PAGE_CSP`] (scripts only from hangar itself, never inline), `X-Frame-Options: DENY`,
//! `Referrer-Policy: same-origin` and `Cache-Control: no-cache`. Not `no-referrer`: under it
//! browsers send `Origin: null` on the pages' own POSTs (Fetch, "serializing a request
//! origin"), which the CSRF check must refuse; `same-origin` sends no referrer elsewhere.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::AppState;

/// One embedded file: its path under `web/dist` and its bytes, plain and precompressed.
#[derive(Debug)]
pub struct Asset {
    /// Path relative to `web/dist`, `/`-separated (`index.html`, `assets/index-1a2b.js`).
    pub path: &'static str,
    /// The file as built.
    pub identity: &'static [u8],
    /// Its gzip form (RFC 1952), when smaller.
    pub gzip: Option<&'static [u8]>,
    /// Its Brotli form (RFC 7932), when smaller.
    pub br: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// `Content-Security-Policy` of the dashboard and the viewer: everything from hangar's own
/// origin (WebSockets included: CSP Level 3 `'self'` matches `ws:`/`wss:` of the same
/// host), no inline or foreign script, no framing, forms post to hangar only. Inline styles
/// are allowed: xterm.js and noVNC set them.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; \
    connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";

/// Routes of the pages and their assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/app", get(dashboard))
        .route("/app/{*path}", get(dashboard))
        .route("/assets/{*file}", get(asset))
        .route("/connect/{id}", get(viewer))
}

/// The embedded file at `path` (relative to `web/dist`), if there is one.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

async fn dashboard(headers: HeaderMap) -> Response {
    page("index.html", &headers)
}

async fn viewer(headers: HeaderMap) -> Response {
    page("viewer.html", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match find(&format!("assets/{file}")) {
        Some(asset) => {
            let mut response = serve(asset, &headers);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            response
        }
        None => crate::error::ApiError::not_found("no such asset").into_response(),
    }
}

fn page(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = find(name) else {
        return crate::error::ApiError::not_found("page not built into this binary")
            .into_response();
    };
    let mut response = serve(asset, headers);
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let (body, encoding) =
        match preferred_encoding(&accept, asset.br.is_some(), asset.gzip.is_some()) {
            Encoding::Br => (asset.br.unwrap_or(asset.identity), Some("br")),
            Encoding::Gzip => (asset.gzip.unwrap_or(asset.identity), Some("gzip")),
            Encoding::Identity => (asset.identity, None),
        };
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(asset.path)),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.br.is_some() || asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(encoding) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    response
}

/// A content coding hangar can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Brotli (`br`).
    Br,
    /// `gzip` (also accepted as `x-gzip`).
    Gzip,
    /// No coding.
    Identity,
}

/// The coding to answer with for an `Accept-Encoding` value (RFC 9110 section 12.5.3):
/// the available coding with the highest q-value above 0, Brotli before gzip on a tie, `*`
/// standing for codings not named; identity when nothing else is acceptable.
pub fn preferred_encoding(accept: &str, have_br: bool, have_gzip: bool) -> Encoding {
    let mut q_br = None;
    let mut q_gzip = None;
    let mut q_any = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match name.as_str() {
            "br" => q_br = Some(q),
            "gzip" | "x-gzip" => q_gzip = Some(q),
            "*" => q_any = Some(q),
            _ => {}
        }
    }
    let br = if have_br {
        q_br.or(q_any).unwrap_or(0.0)
    } else {
        0.0
    };
    let gzip = if have_gzip {
        q_gzip.or(q_any).unwrap_or(0.0)
    } else {
        0.0
    };
    if br > 0.0 && br >= gzip {
        Encoding::Br
    } else if gzip > 0.0 {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// The `Content-Type` for a built file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_picks_the_preferred_available_coding() {
        use Encoding::*;
        let cases = [
            ("gzip, deflate, br, zstd", true, true, Br),
            ("gzip, deflate, br", false, true, Gzip),
            ("gzip, deflate", true, true, Gzip),
            ("br;q=0.5, gzip", true, true, Gzip),
            ("br;q=0, gzip;q=0", true, true, Identity),
            ("*", true, true, Br),
            ("*;q=0.1, br;q=0", true, true, Gzip),
            ("identity", true, true, Identity),
            ("", true, true, Identity),
            ("GZIP", true, true, Gzip),
            ("br", false, false, Identity),
        ];
        for (accept, br, gz, want) in cases {
            assert_eq!(preferred_encoding(accept, br, gz), want, "{accept:?}");
        }
    }

    #[test]
    fn the_dashboard_and_the_viewer_are_embedded() {
        assert!(find("index.html").is_some());
        assert!(find("viewer.html").is_some());
        assert_eq!(
            content_type("assets/index-1a2b.js"),
            "text/javascript; charset=utf-8"
        );
    }
}
