//! Conditional requests: `If-Match`, `If-Unmodified-Since`,
//! `If-None-Match` and `If-Modified-Since` evaluated in the order of
//! RFC 9110 §13.2.2.

use std::time::SystemTime;

use hyper::header::{self, HeaderMap};

/// Opaque tag without the weak prefix, for weak comparison (RFC 9110 §8.8.3.2).
fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// Does an `If-None-Match` / `If-Match` list match `etag`? `weak` selects
/// the comparison function.
fn list_matches(
    headers: &HeaderMap,
    name: header::HeaderName,
    etag: &[u8],
    weak: bool,
) -> Option<bool> {
    let mut present = false;
    for v in headers.get_all(&name) {
        present = true;
        // A client revalidating sends back exactly the tag it was given.
        if v.as_bytes() == etag {
            return Some(true);
        }
        for tag in v.as_bytes().split(|&b| b == b',') {
            let tag = tag.trim_ascii();
            let hit = tag == b"*"
                || if weak {
                    opaque(tag) == opaque(etag)
                } else {
                    !tag.starts_with(b"W/") && tag == etag
                };
            if hit {
                return Some(true);
            }
        }
    }
    present.then_some(false)
}

fn http_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
}

/// The outcome of evaluating preconditions.
#[derive(Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Send the representation.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates conditional request headers for a GET/HEAD in the order of
/// RFC 9110 §13.2.2:
/// 1. `If-Match` (strong comparison) — false → 412;
/// 2. else `If-Unmodified-Since` — modified after → 412;
/// 3. `If-None-Match` (weak comparison, `*` matches) — match → 304;
/// 4. else `If-Modified-Since` — not modified since → 304.
///
/// `etag` must be the validator of the representation about to be sent
/// (each content coding has its own), so a cached gzip body is never
/// confirmed for a client now asking for identity, or the reverse.
pub fn evaluate(headers: &HeaderMap, etag: &[u8], last_modified: SystemTime) -> Precondition {
    match list_matches(headers, header::IF_MATCH, etag, false) {
        Some(false) => return Precondition::Failed,
        Some(true) => {}
        None => {
            if let Some(since) = http_date(headers, header::IF_UNMODIFIED_SINCE) {
                if last_modified > since {
                    return Precondition::Failed;
                }
            }
        }
    }
    match list_matches(headers, header::IF_NONE_MATCH, etag, true) {
        Some(true) => return Precondition::NotModified,
        Some(false) => return Precondition::Proceed,
        None => {}
    }
    if let Some(since) = http_date(headers, header::IF_MODIFIED_SINCE) {
        if last_modified <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}
