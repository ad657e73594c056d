//! The wallet's pages: the files Trunk built from `wallet-ui/`, embedded at build time and
//! served at `/wallet/`. Any other path under `/wallet/` that is not a file or a route (the
//! wallet's own views, like `/wallet/grants`) gets `index.html`, so a reload keeps its place.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/wallet_assets.rs"));

/// Whether the wallet's pages were built into this binary.
pub fn built() -> bool {
    WALLET_ASSETS.iter().any(|(name, _)| *name == "index.html")
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn file(name: &str) -> Response {
    let Some((_, bytes)) = WALLET_ASSETS.iter().find(|(n, _)| *n == name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "The wallet's pages are not built into this host (cargo xtask build).",
        )
            .into_response();
    };
    let mut r = (*bytes).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    // Trunk names files by their hash, so they never change; the page itself is re-read.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if name == "index.html" {
            "no-cache"
        } else {
            "public, max-age=31536000, immutable"
        }),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
             style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'self'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// `GET /wallet/`: the wallet's page.
#[utoipa::path(
    get,
    path = "/wallet/",
    tag = "wallet",
    responses(
        (status = 200, description = "The wallet's page (HTML).", content_type = "text/html"),
        (status = 404, description = "The wallet's pages are not built into this host.", content_type = "text/plain"),
    ),
)]
pub(crate) async fn index() -> Response {
    file("index.html")
}

/// `GET /wallet/{path}`: one of the wallet's files (script, module, style), or the page
/// for any other path (the wallet's own views).
#[utoipa::path(
    get,
    path = "/wallet/{path}",
    tag = "wallet",
    params(("path" = String, Path, description = "A file of the wallet, or one of its views.")),
    responses(
        (status = 200, description = "The file, or the wallet's page.", content_type = "*/*"),
        (status = 404, description = "The wallet's pages are not built into this host.", content_type = "text/plain"),
    ),
)]
pub(crate) async fn asset(Path(path): Path<String>) -> Response {
    if path.starts_with("api/") {
        return crate::api::ApiError::NotFound.into_response();
    }
    if WALLET_ASSETS.iter().any(|(n, _)| *n == path) {
        file(&path)
    } else {
        file("index.html")
    }
}
