//! [`respond`]: one request answered from a snapshot, stage by stage —
//! route ([`super::route`]), then for a document negotiation
//! ([`mod@super::negotiate`]), preconditions ([`super::conditional`]) and the
//! response ([`super::response`]).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

use super::response::Unavailable;
use super::route::{class_of, refuse_host, route};
use super::Shared;
use crate::metrics::Metrics;
use crate::site::Site;
use crate::stats::Stats;

/// Answers one request from the current snapshot. A request to the
/// built-in WebSub hub (any method on its path, while it runs) goes to
/// the hub, which reads its body with a size cap and a time limit;
/// every other request is answered by [`respond`], which reads none.
pub async fn serve(
    req: Request<hyper::body::Incoming>,
    shared: &Shared,
    peer: std::net::IpAddr,
) -> Response<Full<Bytes>> {
    let hub = shared
        .hub
        .as_ref()
        .filter(|_| req.uri().path() == crate::syndicate::HUB_PATH);
    let Some(hub) = hub else {
        let site = shared.site.load();
        let r = respond_counted(&req, &site, &shared.metrics, shared.stats.as_deref(), peer);
        if r.extensions().get::<Unavailable>().is_none() {
            return r;
        }
        // A page found changed on disk: a publish may have rewritten it
        // and swapped in its snapshot meanwhile. Asked of that one once.
        let now = shared.site.load();
        if std::sync::Arc::ptr_eq(&site, &now) {
            return r;
        }
        return respond_counted(&req, &now, &shared.metrics, shared.stats.as_deref(), peer);
    };
    let resp = match refuse_host(&req) {
        Some(r) => r,
        None => {
            // Held across the body read: the snapshot the topic is
            // checked against, not a guard on the current one.
            let site = shared.site.load_full();
            hub.intake(req, super::accept::client_key(peer), &site)
                .await
        }
    };
    shared
        .metrics
        .request(class_of(crate::syndicate::HUB_PATH), resp.status().as_u16());
    resp
}

/// [`respond`], then counts a feed's answer (200 or 304) for the
/// readership figures ([`Stats::count`]): nothing is allocated, and the
/// `User-Agent` is read only for a feed's route.
pub fn respond_counted<B>(
    req: &Request<B>,
    site: &Site,
    metrics: &Metrics,
    stats: Option<&Stats>,
    peer: std::net::IpAddr,
) -> Response<Full<Bytes>> {
    let resp = respond(req, site, metrics);
    if let Some(stats) = stats {
        if matches!(resp.status(), StatusCode::OK | StatusCode::NOT_MODIFIED) {
            stats.count(
                req.uri().path(),
                req.headers()
                    .get(hyper::header::USER_AGENT)
                    .map(|v| v.as_bytes()),
                super::accept::client_key(peer),
            );
        }
    }
    resp
}

/// Answers one request from a snapshot. Never fails: every internal state
/// maps to a status code here.
pub fn respond<B>(req: &Request<B>, site: &Site, metrics: &Metrics) -> Response<Full<Bytes>> {
    let raw = req.uri().path();
    let path = raw
        .strip_suffix("index.html")
        .filter(|p| p.ends_with('/'))
        .unwrap_or(raw);
    let resp = route(req, raw, path, site, metrics);
    metrics.request(class_of(path), resp.status().as_u16());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{articles, settings};
    use crate::server::Coding;
    use crate::site::SiteBuilder;
    use http_body_util::BodyExt;
    use hyper::StatusCode;
    use std::future::Future;
    use std::time::SystemTime;

    fn site() -> Site {
        SiteBuilder::default()
            .build(&articles(), 0, &settings(), SystemTime::UNIX_EPOCH)
            .0
    }

    fn get(
        site: &Site,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "news.example.org");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        respond(&b.body(()).unwrap(), site, &Metrics::default())
    }

    fn body(r: Response<Full<Bytes>>) -> Bytes {
        futures_lite_block(r.into_body().collect())
            .expect("Full bodies cannot fail")
            .to_bytes()
    }

    fn futures_lite_block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn hv<'a>(r: &'a Response<Full<Bytes>>, name: &str) -> &'a str {
        r.headers().get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// A feed GET carries type, length, validators, caching and CORS headers.
    #[test]
    fn feed_headers() {
        let s = site();
        let r = get(&s, "GET", "/rss.xml", &[]);
        assert_eq!(r.status(), 200);
        assert_eq!(hv(&r, "content-type"), "application/rss+xml; charset=utf-8");
        assert_eq!(
            hv(&r, "etag"),
            s.get("/rss.xml").unwrap().tag(Coding::Identity)
        );
        assert_eq!(hv(&r, "cache-control"), "public, max-age=300");
        assert_eq!(hv(&r, "vary"), "Accept-Encoding");
        assert_eq!(hv(&r, "access-control-allow-origin"), "*");
        assert_eq!(hv(&r, "last-modified"), "Fri, 23 May 2025 02:00:00 GMT");
        let link = "<https://news.example.org/websub>; rel=\"hub\", \
                    <https://hub.example/>; rel=\"hub\", \
                    <https://news.example.org/rss.xml>; rel=\"self\"";
        assert_eq!(hv(&r, "link"), link);
        let len: usize = hv(&r, "content-length").parse().unwrap();
        assert_eq!(body(r).len(), len);
        // WebSub discovery holds on a revalidation too, in every coding.
        for ae in ["identity", "gzip"] {
            let r = get(&s, "GET", "/rss.xml", &[("accept-encoding", ae)]);
            let tag = hv(&r, "etag").to_string();
            let r = get(
                &s,
                "GET",
                "/rss.xml",
                &[("accept-encoding", ae), ("if-none-match", &tag)],
            );
            assert_eq!((r.status().as_u16(), hv(&r, "link")), (304, link), "{ae}");
        }
        assert_eq!(
            hv(
                &get(&s, "GET", "/categories/world-news/feed.json", &[]),
                "link"
            ),
            "<https://news.example.org/websub>; rel=\"hub\", \
             <https://hub.example/>; rel=\"hub\", \
             <https://news.example.org/categories/world-news/feed.json>; rel=\"self\""
        );
        assert_eq!(hv(&get(&s, "GET", "/", &[]), "link"), "", "feeds only");
    }

    /// Each media type is right, with charset.
    #[test]
    fn media_types() {
        let s = site();
        for (p, ct) in [
            ("/atom.xml", "application/atom+xml; charset=utf-8"),
            ("/feed.json", "application/feed+json; charset=utf-8"),
            ("/feeds.opml", "text/x-opml; charset=utf-8"),
            ("/", "text/html; charset=utf-8"),
            ("/index.html", "text/html; charset=utf-8"),
            ("/articles/plain/", "text/html; charset=utf-8"),
            ("/articles/plain/index.html", "text/html; charset=utf-8"),
            (
                "/categories/world-news/feed.json",
                "application/feed+json; charset=utf-8",
            ),
        ] {
            let r = get(&s, "GET", p, &[]);
            assert_eq!(r.status(), 200, "{p}");
            assert_eq!(hv(&r, "content-type"), ct, "{p}");
        }
        assert_eq!(
            hv(&get(&s, "GET", "/", &[]), "access-control-allow-origin"),
            "",
            "CORS only on feeds"
        );
    }

    /// gzip is chosen by Accept-Encoding with q-values, has its own ETag, and
    /// decompresses to the identity body.
    #[test]
    fn gzip_negotiation() {
        let s = site();
        let a = s.get("/atom.xml").unwrap();
        for (ae, gz) in [
            ("gzip", true),
            ("gzip, deflate, br", true),
            ("br;q=1.0, gzip;q=0.5", true),
            ("gzip;q=0", false),
            ("GZIP;Q=0.001", true),
            ("*", true),
            ("*;q=0", false),
            ("identity", false),
            ("deflate", false),
            ("x-gzip", true),
            ("*, gzip;q=0", false),
        ] {
            let r = get(&s, "GET", "/atom.xml", &[("accept-encoding", ae)]);
            assert_eq!(hv(&r, "content-encoding") == "gzip", gz, "{ae}");
            assert_eq!(
                hv(&r, "etag"),
                a.tag(if gz { Coding::Gzip } else { Coding::Identity }),
                "{ae}"
            );
        }
        let r = get(&s, "GET", "/atom.xml", &[("accept-encoding", "gzip")]);
        let b = body(r);
        let mut d = flate2::read::GzDecoder::new(&b[..]);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut out).unwrap();
        assert_eq!(out, a.body().unwrap());
    }

    /// Once a feed's brotli form is made, clients that accept br get it,
    /// with its own ETag, decompressing to the document; q-values decide
    /// between br and gzip (br on a tie); article pages never get one.
    #[test]
    fn brotli_negotiation() {
        let s = site();
        let a = s.get("/atom.xml").unwrap();
        let r = get(&s, "GET", "/atom.xml", &[("accept-encoding", "br")]);
        assert_eq!(hv(&r, "content-encoding"), "", "no brotli form yet");
        assert!(a.make_br(5));
        assert!(!a.make_br(5), "made once");
        let br = a.br().expect("brotli beats gzip on a feed");
        assert!(br.bytes.len() < a.gzip_len);
        for (ae, want) in [
            ("br", "br"),
            ("gzip, deflate, br", "br"),
            ("br;q=0.5, gzip", "gzip"),
            ("gzip;q=0.5, br;q=0.5", "br"),
            ("br;q=0", ""),
            ("br;q=0, gzip", "gzip"),
            ("*", "br"),
            ("*, br;q=0", "gzip"),
            ("*, gzip;q=0", "br"),
            ("BR;Q=0.2, gzip;q=0.1", "br"),
            ("identity", ""),
        ] {
            let r = get(&s, "GET", "/atom.xml", &[("accept-encoding", ae)]);
            assert_eq!(hv(&r, "content-encoding"), want, "{ae}");
            let tag = match want {
                "br" => a.tag(Coding::Br),
                "gzip" => a.tag(Coding::Gzip),
                _ => a.tag(Coding::Identity),
            };
            assert_eq!(hv(&r, "etag"), tag, "{ae}");
            assert_eq!(hv(&r, "vary"), "Accept-Encoding", "{ae}");
        }
        let r = get(&s, "GET", "/atom.xml", &[("accept-encoding", "br")]);
        assert_eq!(hv(&r, "content-length"), br.bytes.len().to_string());
        let z = body(r);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut brotli::Decompressor::new(&z[..], 4096), &mut out).unwrap();
        assert_eq!(out, a.body().unwrap());
        // Its ETag validates the brotli form only.
        let br_tag = a.tag(Coding::Br).to_string();
        let r = get(
            &s,
            "GET",
            "/atom.xml",
            &[("accept-encoding", "br"), ("if-none-match", &br_tag)],
        );
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(hv(&r, "etag"), br_tag);
        let r = get(
            &s,
            "GET",
            "/atom.xml",
            &[("accept-encoding", "gzip"), ("if-none-match", &br_tag)],
        );
        assert_eq!(r.status(), StatusCode::OK);
        // Article pages keep no uncompressed copy to make one from.
        let page = s.get("/articles/plain/").unwrap();
        assert!(!page.make_br(5));
        let r = get(
            &s,
            "GET",
            "/articles/plain/",
            &[("accept-encoding", "br, gzip")],
        );
        assert_eq!(hv(&r, "content-encoding"), "gzip");
        assert_eq!(
            s.wanting_br(None).len(),
            s.routes()
                .filter(|(r, _)| {
                    !r.starts_with("/articles/") && (*r == "/" || !r.ends_with('/'))
                })
                .count()
                - 1,
            "every feed, the index and OPML but the one made (not the pages)"
        );
    }

    /// Article pages are kept gzip-only in memory; a client without gzip
    /// still gets the exact page, with the identity ETag and length.
    #[test]
    fn article_page_identity_from_gzip() {
        let s = site();
        let a = s.get("/articles/plain/").unwrap();
        let r = get(&s, "GET", "/articles/plain/", &[]);
        assert_eq!(hv(&r, "etag"), a.tag(Coding::Identity));
        assert_eq!(hv(&r, "content-length"), a.len.to_string());
        let b = body(r);
        assert!(String::from_utf8_lossy(&b).contains("<h1>Plain title</h1>"));
        let z = body(get(
            &s,
            "GET",
            "/articles/plain/",
            &[("accept-encoding", "gzip")],
        ));
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[..]), &mut out).unwrap();
        assert_eq!(out, b);
    }

    /// Conditional GET per RFC 9110 §13.2.2: If-None-Match wins over
    /// If-Modified-Since, lists and `*` and weak tags match, and an ETag of
    /// the other encoding never produces a 304.
    #[test]
    fn conditional_get() {
        let s = site();
        let a = s.get("/rss.xml").unwrap();
        let lm = a.last_modified_http();
        let lm = lm.as_str();
        let (etag, etag_gz) = (
            a.tag(Coding::Identity).to_string(),
            a.tag(Coding::Gzip).to_string(),
        );
        let old = "Thu, 01 Jan 2015 00:00:00 GMT";
        let weak = format!("W/{}", etag.as_str());
        let list = format!("\"x\", {}", etag.as_str());
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);
        let cases: Vec<Case<'_>> = vec![
            ("inm exact", vec![("if-none-match", etag.as_str())], 304),
            ("inm weak", vec![("if-none-match", &weak)], 304),
            ("inm list", vec![("if-none-match", &list)], 304),
            ("inm star", vec![("if-none-match", "*")], 304),
            ("inm other", vec![("if-none-match", "\"nope\"")], 200),
            (
                "inm beats ims",
                vec![("if-none-match", "\"nope\""), ("if-modified-since", lm)],
                200,
            ),
            ("ims equal", vec![("if-modified-since", lm)], 304),
            ("ims older", vec![("if-modified-since", old)], 200),
            ("ims garbage", vec![("if-modified-since", "yesterday")], 200),
            (
                "gzip etag on identity request",
                vec![("if-none-match", etag_gz.as_str())],
                200,
            ),
            (
                "identity etag on gzip request",
                vec![
                    ("if-none-match", etag.as_str()),
                    ("accept-encoding", "gzip"),
                ],
                200,
            ),
            (
                "gzip etag on gzip request",
                vec![
                    ("if-none-match", etag_gz.as_str()),
                    ("accept-encoding", "gzip"),
                ],
                304,
            ),
            ("if-match fails", vec![("if-match", "\"nope\"")], 412),
            ("if-match ok", vec![("if-match", etag.as_str())], 200),
            ("ius older", vec![("if-unmodified-since", old)], 412),
        ];
        for (label, h, want) in cases {
            let r = get(&s, "GET", "/rss.xml", &h);
            assert_eq!(r.status(), want, "{label}");
            if want == 304 {
                assert!(!hv(&r, "etag").is_empty(), "{label}: 304 repeats ETag");
                assert_eq!(hv(&r, "cache-control"), "public, max-age=300", "{label}");
                assert_eq!(hv(&r, "vary"), "Accept-Encoding", "{label}");
                assert_eq!(
                    hv(&r, "last-modified"),
                    "",
                    "{label}: 304 omits Last-Modified"
                );
                assert_eq!(
                    hv(&r, "content-type"),
                    "",
                    "{label}: 304 has no content headers"
                );
                assert!(body(r).is_empty(), "{label}: 304 has no body");
            }
        }
    }

    /// HEAD gives GET's headers and no body; other methods get 405 + Allow.
    #[test]
    fn head_and_methods() {
        let s = site();
        let g = get(&s, "GET", "/feed.json", &[]);
        let h = get(&s, "HEAD", "/feed.json", &[]);
        assert_eq!(h.status(), 200);
        assert_eq!(hv(&h, "content-length"), hv(&g, "content-length"));
        assert_eq!(hv(&h, "etag"), hv(&g, "etag"));
        assert!(body(h).is_empty());
        for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            let r = get(&s, m, "/feed.json", &[]);
            assert_eq!(r.status(), 405, "{m}");
            assert_eq!(hv(&r, "allow"), "GET, HEAD");
        }
    }

    /// Unknown routes and traversal attempts get the 404 page; a missing
    /// trailing slash on an article redirects.
    #[test]
    fn not_found_and_traversal() {
        let s = site();
        for p in [
            "/nope",
            "/../etc/passwd",
            "/articles/../rss.xml",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/articles/%2E%2E/x",
            "/..%5c..%5cwindows",
            "/articles\\plain",
            "/rss.xml%00",
            "//etc/passwd",
            "/Cargo.toml",
        ] {
            let r = get(&s, "GET", p, &[]);
            assert_eq!(r.status(), 404, "{p}");
            assert_eq!(hv(&r, "content-type"), "text/html; charset=utf-8");
            assert!(
                String::from_utf8_lossy(&body(r)).contains("Not found"),
                "{p}"
            );
        }
        let r = get(&s, "GET", "/articles/plain", &[]);
        assert_eq!(r.status(), 301);
        assert_eq!(hv(&r, "location"), "/articles/plain/");
    }

    /// /healthz answers; /metrics is no public route (404: it is served
    /// on the admin listener only); requests are counted by class and
    /// status.
    #[test]
    fn health_and_metrics() {
        let s = site();
        let m = Metrics::default();
        let req = |p: &str| {
            Request::builder()
                .uri(p)
                .header("host", "news.example.org")
                .body(())
                .unwrap()
        };
        assert_eq!(respond(&req("/healthz"), &s, &m).status(), 200);
        respond(&req("/rss.xml"), &s, &m);
        respond(&req("/nope"), &s, &m);
        for p in ["/metrics", "/stats", "/stats.html", "/stats/"] {
            assert_eq!(respond(&req(p), &s, &m).status(), 404, "{p}");
        }
        let t = m.render();
        assert!(
            t.contains("herald_http_requests_total{route=\"feed\",status=\"200\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("herald_http_requests_total{route=\"other\",status=\"404\"} 4"),
            "{t}"
        );
        assert!(
            t.contains("herald_http_requests_total{route=\"health\",status=\"200\"} 1"),
            "{t}"
        );
    }

    /// A feed answered (200 or 304) is counted: an aggregator's reported
    /// subscribers, or the client as a direct poller; other routes and
    /// other statuses count nothing.
    #[test]
    fn feeds_counted() {
        let s = site();
        let m = Metrics::default();
        let dir = tempfile::tempdir().unwrap();
        let (stats, _) = Stats::open(dir.path(), crate::stats::Limits::default(), 1_764_763_200);
        stats.set_feeds(["/rss.xml", "/atom.xml"]);
        let peer = |i: u8| std::net::IpAddr::from([127, 0, 0, i]);
        let req = |p: &str, ua: &str, inm: &str| {
            let mut b = Request::builder()
                .uri(p)
                .header("host", "news.example.org")
                .header("user-agent", ua);
            if !inm.is_empty() {
                b = b.header("if-none-match", inm);
            }
            b.body(()).unwrap()
        };
        let feedly = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 42 subscribers; like FeedFetcher-Google)";
        let tag = s.get("/rss.xml").unwrap().tag(Coding::Identity).to_string();
        for (path, ua, inm, ip, status) in [
            ("/rss.xml", feedly, "", 1, 200),
            ("/rss.xml", "NetNewsWire", &*tag, 2, 304),
            ("/rss.xml", "NetNewsWire", "", 2, 200),
            ("/rss.xml", "NetNewsWire", "", 3, 200),
            ("/atom.xml", "NetNewsWire", "", 4, 200),
            ("/", "NetNewsWire", "", 5, 200),
            ("/nope.xml", "NetNewsWire", "", 6, 404),
        ] {
            let r = respond_counted(&req(path, ua, inm), &s, &m, Some(&stats), peer(ip));
            assert_eq!(r.status(), status, "{path}");
        }
        let day = &stats.report()[0].1;
        assert_eq!(day.feeds["/rss.xml"].aggregators["Feedly"], 42);
        assert_eq!(day.feeds["/rss.xml"].direct_pollers, 2);
        assert_eq!(day.feeds["/atom.xml"].direct_pollers, 1);
        assert_eq!(day.direct_pollers, 3);
    }
}
