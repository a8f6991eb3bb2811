//! Building responses: a document from the snapshot (its coding, its
//! precondition's outcome, its ready headers), plain-text answers and the
//! 404 page.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::conditional::{evaluate, Precondition};
use super::negotiate::negotiate;
use super::range::{ranged, Ranged};
use crate::site::{Asset, Coding, Site};

/// An answer Herald writes itself (errors, `/healthz`, the hub's and the
/// admin listener's): `body` as `content_type`, which browsers do not
/// sniff as anything else. The one place these headers are set.
pub(crate) fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A short plain-text answer (errors, `/healthz`).
pub(super) fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    text(status, "text/plain; charset=utf-8", body.as_bytes())
}

/// The 404 page, with the headers the snapshot made for it.
pub(super) fn not_found(site: &Site, head: bool) -> Response<Full<Bytes>> {
    let Some(page) = site.not_found() else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    // Made in memory by every build: its bytes cannot be damaged.
    let body = if head { Ok(Bytes::new()) } else { page.body() };
    let mut r = Response::new(Full::new(body.unwrap_or_default()));
    *r.status_mut() = StatusCode::NOT_FOUND;
    *r.headers_mut() = site.not_found_headers().clone();
    r
}

/// Marks the answer to a request that found a file-backed page damaged,
/// so the connection's handler can try the newest snapshot once (the page
/// may have been rewritten by a publish just swapped in).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unavailable;

/// A document's answer: its coding negotiated, its preconditions
/// evaluated, the byte range asked for cut from it (see `range.rs`), its
/// ready headers. A file-backed page whose file no longer holds its bytes
/// is never sent: `route` is reported to the snapshot's
/// [`crate::site::Damage`] (the publish loop writes it again) and the
/// answer is a 503 that asks to retry in a second ([`Unavailable`]).
pub(super) fn serve_asset(
    headers_in: &HeaderMap,
    route: &str,
    site: &Site,
    asset: &Asset,
    head: bool,
) -> Response<Full<Bytes>> {
    let cache_control = &site.cache_control;
    let br = asset.br();
    let coding = match negotiate(headers_in, br.is_some()) {
        // An article page's gzip form is only ever larger for a tiny page.
        Coding::Gzip if asset.gzip_len >= asset.len => Coding::Identity,
        c => c,
    };
    let status = match evaluate(
        headers_in,
        asset.tag(coding).as_bytes(),
        asset.last_modified,
    ) {
        Precondition::Proceed => StatusCode::OK,
        Precondition::NotModified => StatusCode::NOT_MODIFIED,
        Precondition::Failed => StatusCode::PRECONDITION_FAILED,
    };
    let send_body = status == StatusCode::OK && !head;
    let body = match (send_body, coding, br) {
        (false, ..) => Ok(Bytes::new()),
        (true, Coding::Br, Some(b)) => Ok(b.bytes.clone()),
        (true, Coding::Gzip, _) => asset.gzip(),
        (true, ..) => asset.body(),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("not serving {e}: rendering it again");
            site.damage().report(route);
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "this page is being written again; retry in a second\n",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.extensions_mut().insert(Unavailable);
            return r;
        }
    };
    let mut headers = asset.headers(coding, status, cache_control);
    if send_body {
        let tag = asset.tag(coding);
        match ranged(
            headers_in,
            body.len() as u64,
            tag.as_bytes(),
            asset.last_modified,
        ) {
            Ranged::Whole => {}
            Ranged::Part { start, end } => {
                let part = body.slice(start as usize..end as usize);
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(part.len()));
                headers.insert(
                    header::CONTENT_RANGE,
                    content_range(&format!("bytes {start}-{}/{}", end - 1, body.len())),
                );
                let mut r = Response::new(Full::new(part));
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                *r.headers_mut() = headers;
                return r;
            }
            Ranged::Unsatisfiable => {
                let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    content_range(&format!("bytes */{}", body.len())),
                );
                return r;
            }
        }
    }
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A `Content-Range` value (digits, spaces, `-`, `/` and `*`: always valid).
fn content_range(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("bytes */0"))
}
