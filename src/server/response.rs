//! Building responses: a document from the snapshot (its coding, its
//! precondition's outcome, its ready headers), plain-text answers and the
//! 404 page.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::conditional::{evaluate, Precondition};
use super::negotiate::negotiate;
use crate::site::{Asset, Coding, Site};

/// A short text answer (errors, `/healthz`), not sniffed as anything else.
pub(super) fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The 404 page, with the headers the snapshot made for it.
pub(super) fn not_found(site: &Site, head: bool) -> Response<Full<Bytes>> {
    let Some(page) = site.not_found() else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut r = Response::new(Full::new(if head { Bytes::new() } else { page.body() }));
    *r.status_mut() = StatusCode::NOT_FOUND;
    *r.headers_mut() = site.not_found_headers().clone();
    r
}

pub(super) fn serve_asset(
    headers: &HeaderMap,
    asset: &Asset,
    head: bool,
    cache_control: &HeaderValue,
) -> Response<Full<Bytes>> {
    let br = asset.br();
    let coding = match negotiate(headers, br.is_some()) {
        // An article page's gzip form is only ever larger for a tiny page.
        Coding::Gzip if asset.gzip_len >= asset.len => Coding::Identity,
        c => c,
    };
    let status = match evaluate(headers, asset.tag(coding).as_bytes(), asset.last_modified) {
        Precondition::Proceed => StatusCode::OK,
        Precondition::NotModified => StatusCode::NOT_MODIFIED,
        Precondition::Failed => StatusCode::PRECONDITION_FAILED,
    };
    let send_body = status == StatusCode::OK && !head;
    let mut r = Response::new(Full::new(match (send_body, coding, br) {
        (false, ..) => Bytes::new(),
        (true, Coding::Br, Some(b)) => b.bytes.clone(),
        (true, Coding::Gzip, _) => asset.gzip(),
        (true, ..) => asset.body(),
    }));
    *r.status_mut() = status;
    *r.headers_mut() = asset.headers(coding, status, cache_control);
    r
}
