//! The operator portal: four static files compiled into the binary (no
//! CDN, no build step), served with a Content-Security-Policy that allows
//! only them and this API. The portal signs in with a tenant token kept in
//! the tab's sessionStorage.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::Resp;

/// The portal's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Index,
    Script,
    Style,
    Icon,
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn serve(asset: Asset) -> Resp {
    let (content_type, body) = match asset {
        Asset::Index => (
            "text/html; charset=utf-8",
            include_str!("../../portal/index.html"),
        ),
        Asset::Script => (
            "text/javascript; charset=utf-8",
            include_str!("../../portal/app.js"),
        ),
        Asset::Style => (
            "text/css; charset=utf-8",
            include_str!("../../portal/style.css"),
        ),
        Asset::Icon => ("image/svg+xml", include_str!("../../portal/icon.svg")),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, content_type)
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("x-frame-options", "DENY")
        .header(CACHE_CONTROL, "no-cache")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("valid response")
}
