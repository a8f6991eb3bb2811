//! Routing: the `Host` header, the method, refused path shapes, the
//! built-in route (`/healthz`) and the snapshot lookup. (`/metrics` is
//! served on the admin listener only: here it is no route, 404.)

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};

use super::response::{not_found, plain, serve_asset};
use crate::metrics::Metrics;
use crate::site::Site;

/// Route classes for metrics (indexes into `metrics::ROUTE_CLASSES`).
pub(super) fn class_of(route: &str) -> usize {
    match route {
        "/rss.xml" | "/atom.xml" | "/feed.json" => 0,
        "/" => 2,
        "/feeds.opml" => 4,
        "/healthz" => 5,
        "/metrics" => 6,
        r if r.starts_with("/categories/") => 1,
        r if r.starts_with("/articles/") => 3,
        _ => 7,
    }
}

/// `raw` is the request's path, `path` the route it names (`/x/index.html`
/// is `/x/`).
pub(super) fn route<B>(
    req: &Request<B>,
    raw: &str,
    path: &str,
    site: &Site,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    if let Some(r) = refuse_host(req) {
        return r;
    }
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: use GET or HEAD\n",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    if refused(raw) {
        return not_found(site, head);
    }
    if path == "/healthz" {
        // 503 while the publish loop is stuck or dead, so that a
        // monitor restarts Herald; 200 "degraded: …" for what a
        // restart would not fix (a full disk).
        let (status, text) = metrics.health.report();
        let mut r = plain(StatusCode::OK, "");
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        if !head {
            *r.body_mut() = Full::new(Bytes::from(text));
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    match site.get(path) {
        Some(asset) => serve_asset(req.headers(), path, site, asset, head),
        None => miss(req, path, site, head),
    }
}

/// A path that is no route as it is: the route it spells another way
/// (lower-case or missing percent-escapes: `/articles/%d0%ba…/` or the
/// raw UTF-8 `/articles/київ/`), an old permalink of a renamed article
/// (301 to the new one) or of one that is gone (410), the page or a
/// feed of a label gone (410), or any of these
/// without the trailing slash. Only requests that miss come here, so the
/// routes served all the time cost no extra work.
fn miss<B>(req: &Request<B>, path: &str, site: &Site, head: bool) -> Response<Full<Bytes>> {
    let canonical = canonical_path(path);
    let path = canonical.as_deref().unwrap_or(path);
    if canonical.is_some() {
        if let Some(asset) = site.get(path) {
            return serve_asset(req.headers(), path, site, asset, head);
        }
    }
    if let Some(r) = former(path, site, head) {
        return r;
    }
    let with_slash = format!("{path}/");
    if site.get(&with_slash).is_some() {
        let mut r = plain(StatusCode::MOVED_PERMANENTLY, "");
        if let Ok(v) = HeaderValue::from_str(&with_slash) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    former(&with_slash, site, head).unwrap_or_else(|| not_found(site, head))
}

/// The answer at a permalink an article no longer has: 301 to where it
/// went, or 410 when it is no longer published; 410 too at the page and
/// feeds of a category or tag no article has any more.
fn former(route: &str, site: &Site, head: bool) -> Option<Response<Full<Bytes>>> {
    let (status, asset, headers) = if let Some(m) = site.moved(route) {
        (StatusCode::MOVED_PERMANENTLY, &m.asset, &m.headers)
    } else if let Some((page, headers)) = site.gone_page(route) {
        (StatusCode::GONE, page, headers)
    } else {
        return None;
    };
    // Redirect and 410 pages are made in memory by every build.
    let body = if head { Ok(Bytes::new()) } else { asset.body() };
    let mut r = Response::new(Full::new(body.unwrap_or_default()));
    *r.status_mut() = status;
    *r.headers_mut() = headers.clone();
    Some(r)
}

/// The spelling of `path` that routes use, if it differs: every byte but
/// `/` and the unreserved ASCII characters (RFC 3986 §2.3) percent-encoded
/// with upper-case hex, and nothing else (RFC 3986 §6.2.2: escapes of
/// unreserved characters decoded, hex digits upper-cased). A `%` that
/// starts no escape stays as it is.
fn canonical_path(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let plain = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'/');
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = String::with_capacity(path.len() * 3);
    let mut i = 0;
    while i < b.len() {
        let (byte, len) = match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => (h << 4 | l, 3),
            (c, ..) => (c, 1),
        };
        if (plain(byte) && byte != b'/') || (len == 1 && (plain(byte) || byte == b'%')) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
        i += len;
    }
    (out != path).then_some(out)
}

/// The 400 answer to a request whose `Host` header is wrong ([`bad_host`]),
/// or `None` when it is right.
pub(super) fn refuse_host<B>(req: &Request<B>) -> Option<Response<Full<Bytes>>> {
    let why = bad_host(req)?;
    let mut r = plain(StatusCode::BAD_REQUEST, why);
    // Whatever sent it is broken or probing: it gets no second request.
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(r)
}

/// What is wrong with a request's `Host` header, if anything (RFC 9112
/// §3.2): an HTTP/1.1 request without one, any request with more than one,
/// or a value that is no `uri-host [":" port]` (RFC 3986 §3.2.2; empty is
/// allowed). HTTP/2 requests name their authority in `:authority`. A
/// lookup and a scan of a few bytes: this runs for every request.
fn bad_host<B>(req: &Request<B>) -> Option<&'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Some("bad request: more than one Host header\n"),
        (None, _) if req.version() == Version::HTTP_11 => {
            Some("bad request: no Host header (HTTP/1.1 needs one)\n")
        }
        (Some(h), None) if !host_syntax(h.as_bytes()) => {
            Some("bad request: the Host header is not a host name or address\n")
        }
        _ => None,
    }
}

/// Bytes a `Host` value may hold: a registered name or IPv4 address
/// (unreserved, percent-encoded, sub-delims), an IP literal in brackets,
/// a colon before the port.
fn host_syntax(v: &[u8]) -> bool {
    v.iter().all(|&c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            )
    })
}

/// Paths refused outright, so that no alias of a route is ever served:
/// `..`, `//`, a backslash, a NUL, or a percent-encoded dot, slash,
/// backslash or NUL. Routes are map keys, so none of these could reach
/// the disk anyway. One pass over the bytes: this runs for every request.
fn refused(path: &str) -> bool {
    let b = path.as_bytes();
    b.iter().enumerate().any(|(i, &c)| match c {
        b'\\' | 0 => true,
        b'.' => b.get(i + 1) == Some(&b'.'),
        b'/' => b.get(i + 1) == Some(&b'/'),
        b'%' => matches!(
            (b.get(i + 1), b.get(i + 2).map(u8::to_ascii_lowercase)),
            (Some(b'2'), Some(b'e' | b'f')) | (Some(b'5'), Some(b'c')) | (Some(b'0'), Some(b'0'))
        ),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HTTP/1.1 needs exactly one `Host` with a host in it; HTTP/1.0 may
    /// omit it, HTTP/2 names the authority elsewhere; two are refused on
    /// every version.
    #[test]
    fn host_header() {
        let ok = "";
        for (label, version, hosts, want) in [
            ("one", Version::HTTP_11, &["news.example.org"][..], ok),
            ("with port", Version::HTTP_11, &["127.0.0.1:8080"][..], ok),
            ("IPv6 literal", Version::HTTP_11, &["[::1]:8080"][..], ok),
            ("empty", Version::HTTP_11, &[""][..], ok),
            ("none on 1.1", Version::HTTP_11, &[][..], "no Host"),
            ("none on 1.0", Version::HTTP_10, &[][..], ok),
            ("none on 2", Version::HTTP_2, &[][..], ok),
            ("two", Version::HTTP_11, &["a", "b"][..], "more than one"),
            (
                "two equal",
                Version::HTTP_11,
                &["a", "a"][..],
                "more than one",
            ),
            (
                "two on 1.0",
                Version::HTTP_10,
                &["a", "b"][..],
                "more than one",
            ),
            ("a path", Version::HTTP_11, &["a/b"][..], "not a host"),
            ("user info", Version::HTTP_11, &["u@a"][..], "not a host"),
            ("a space", Version::HTTP_11, &["a b"][..], "not a host"),
            (
                "non-ASCII",
                Version::HTTP_11,
                &["bücher.example"][..],
                "not a host",
            ),
        ] {
            let mut b = Request::builder().version(version).uri("/");
            for h in hosts {
                b = b.header(header::HOST, HeaderValue::from_bytes(h.as_bytes()).unwrap());
            }
            let got = bad_host(&b.body(()).unwrap()).unwrap_or("");
            assert!(
                got.contains(want) && got.is_empty() == want.is_empty(),
                "{label}: {got:?}"
            );
        }
    }

    /// Paths that spell a route another way map to it; routes and paths
    /// that are no route spelled otherwise map to nothing.
    #[test]
    fn canonical_spellings() {
        for (path, want) in [
            (
                "/articles/%d0%ba%d0%b8%d1%97%d0%b2/",
                Some("/articles/%D0%BA%D0%B8%D1%97%D0%B2/"),
            ),
            (
                "/articles/київ/",
                Some("/articles/%D0%BA%D0%B8%D1%97%D0%B2/"),
            ),
            (
                "/articles/%D0%BA%d0%B8%D1%97%D0%b2",
                Some("/articles/%D0%BA%D0%B8%D1%97%D0%B2"),
            ),
            ("/articles/%61b%7E/", Some("/articles/ab~/")),
            ("/a%20b", None),
            ("/a b", Some("/a%20b")),
            ("/articles/plain/", None),
            ("/articles/%D0%BA/", None),
            ("/x%", None),
            ("/x%zz", None),
            ("/x%2", None),
        ] {
            assert_eq!(canonical_path(path).as_deref(), want, "{path}");
        }
    }

    /// Path shapes refused before any lookup, and ordinary paths that pass.
    #[test]
    fn refused_paths() {
        for p in [
            "/..", "/a/../b", "//x", "/a//b", "/a\\b", "/a\0", "/%2e%2e/", "/%2E", "/x%2fy",
            "/x%2F", "/x%5c", "/x%5C", "/x%00", "/..%5c..",
        ] {
            assert!(refused(p), "{p:?} must be refused");
        }
        for p in [
            "/",
            "/rss.xml",
            "/articles/a.b/",
            "/categories/world-news/atom.xml",
            "/a%20b",
            "/.well-known",
            "/a.",
            "/x%2",
            "/x%",
            "/x%25",
            "/x%3f",
        ] {
            assert!(!refused(p), "{p:?} must pass");
        }
    }
}
