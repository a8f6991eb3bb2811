//! Routing: the method, refused path shapes, the built-in routes
//! (`/healthz`, `/metrics`) and the snapshot lookup.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

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
    match path {
        "/healthz" => {
            let mut r = plain(StatusCode::OK, if head { "" } else { "ok\n" });
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
        "/metrics" => {
            let mut body = metrics.render();
            let _ = std::fmt::Write::write_fmt(
                &mut body,
                format_args!(
                    "# TYPE herald_site_routes gauge\nherald_site_routes {}\n",
                    site.len()
                ),
            );
            let mut r = Response::new(Full::new(if head {
                Bytes::new()
            } else {
                Bytes::from(body)
            }));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
        _ => {}
    }
    let Some(asset) = site.get(path) else {
        let with_slash = format!("{path}/");
        if site.get(&with_slash).is_some() {
            let mut r = plain(StatusCode::MOVED_PERMANENTLY, "");
            if let Ok(v) = HeaderValue::from_str(&with_slash) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        return not_found(site, head);
    };
    serve_asset(req.headers(), asset, head, &site.cache_control)
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
