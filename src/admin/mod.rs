//! The admin listener: what the operator reads and readers must not,
//! served on its own address (`admin_listen`, loopback by default) and
//! never on the public one — `/metrics` (Prometheus text), `/stats`
//! (readership as JSON), `/stats.html` or `/stats/` (the same as a page
//! with a chart of the last days) and `/healthz`. Also the upkeep of the
//! readership counters: the day's end, WebSub figures from the built-in
//! hub, and periodic saves. Uses `server` (what it shares), `metrics`,
//! `stats` and `syndicate`.
//!
//! - `mod.rs`: the accept loop, the connection limits, routing, upkeep.
//! - `metrics.rs`: the Prometheus text, with the readership gauges.
//! - `stats.rs`: `/stats` as JSON and as an HTML page.
//!
//! HTTP/1.1 only, a few connections at once: a scraper and an operator,
//! not the public.

mod metrics;
mod stats;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::server::Shared;

/// The admin listener's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections at once; a further one is closed at once.
    pub max_connections: usize,
    /// A request head must arrive within this time.
    pub header_read_timeout: Duration,
    /// A connection is closed after this long, however busy.
    pub connection_lifetime: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
}

/// How often the upkeep looks at the clock (and whether a save is due).
const TICK: Duration = Duration::from_secs(1);

/// Serves the admin routes on `listener` until `shutdown` resolves.
/// Connections beyond `limits.max_connections` are closed at once; each
/// lives at most `limits.connection_lifetime`.
pub async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, most likely: wait for some to close.
                    tracing::debug!("admin listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(%peer, "admin listener: connection refused, all slots taken");
            continue;
        };
        let shared = Arc::clone(&shared);
        let limits = limits.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = Arc::clone(&shared);
                async move {
                    Ok::<_, Infallible>(if loopback && !loopback_host(&req) {
                        text(
                            StatusCode::FORBIDDEN,
                            "text/plain; charset=utf-8",
                            "forbidden: on a loopback address the admin listener answers \
                             only requests for localhost or an IP address (Host)\n"
                                .into(),
                        )
                    } else {
                        respond(&req, &shared)
                    })
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .serve_connection(TokioIo::new(stream), svc);
            match tokio::time::timeout(limits.connection_lifetime, conn).await {
                Ok(Err(e)) => tracing::debug!(%peer, "admin connection ended: {e}"),
                Err(_) => tracing::debug!(%peer, "admin connection closed: lifetime over"),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
}

/// Whether a request to a loopback admin listener names a loopback host:
/// an IP address, `localhost` or a name under `.localhost`, or none at
/// all (HTTP/1.0). Anything else is a browser sent here by a rebound DNS
/// name, and a page of another site must not read the figures.
fn loopback_host<B>(req: &Request<B>) -> bool {
    let Some(host) = req.headers().get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: [::1]:9190.
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
}

/// Answers one admin request.
pub fn respond<B>(req: &Request<B>, shared: &Shared) -> Response<Full<Bytes>> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "method not allowed: use GET or HEAD\n".into(),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    if matches!(
        req.uri().path(),
        "/metrics" | "/stats" | "/stats.json" | "/stats.html" | "/stats/" | "/stats/index.html"
    ) {
        // The hub's figures as they are now, not as of the last tick.
        take_websub(shared);
    }
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(shared),
        ),
        "/stats" | "/stats.json" => match &shared.stats {
            Some(s) => (
                StatusCode::OK,
                "application/json",
                stats::json(&s.report(), s.limits()),
            ),
            None => no_stats(),
        },
        "/stats.html" | "/stats/" | "/stats/index.html" => match &shared.stats {
            Some(s) => {
                // Feeds named by the labels of the snapshot served now.
                let site = shared.site.load();
                (
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    stats::html(&s.report(), s.limits(), |route| site.label_of(route)),
                )
            }
            None => no_stats(),
        },
        "/healthz" => {
            let (status, text) = shared.metrics.health.report();
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                "text/plain; charset=utf-8",
                text,
            )
        }
        "/" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<!doctype html><meta charset=\"utf-8\"><title>Herald admin</title>\
             <ul><li><a href=\"/stats.html\">readers</a> (<a href=\"/stats\">JSON</a>)</li>\
             <li><a href=\"/metrics\">metrics</a></li><li><a href=\"/healthz\">health</a></li></ul>\n"
                .into(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the admin listener serves /metrics, /stats, /stats.html and /healthz\n"
                .into(),
        ),
    };
    // What a monitor polls is counted, a 503 of `/healthz` above all.
    let class = match req.uri().path() {
        "/metrics" => Some("metrics"),
        "/healthz" => Some("health"),
        _ => None,
    };
    if let Some(class) = class {
        shared.metrics.request(
            crate::metrics::ROUTE_CLASSES
                .iter()
                .position(|c| *c == class)
                .unwrap_or(0),
            status.as_u16(),
        );
    }
    let len = body.len();
    let mut r = text(status, content_type, body);
    if head {
        // The length the GET would have (RFC 9110 §9.3.2), no body.
        *r.body_mut() = Full::new(Bytes::new());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    r
}

fn no_stats() -> (StatusCode, &'static str, String) {
    (
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "not found: readership counting is off ([stats] enabled = false)\n".into(),
    )
}

/// An answer of the admin listener: never stored by a cache, not sniffed.
fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = crate::server::text(status, content_type, body);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Keeps the readership counters: every second, starts a new day when
/// the UTC date has changed; every `save_every`, takes the built-in hub's
/// subscription counts and saves (off the async threads). Runs until the
/// runtime ends.
pub async fn upkeep(shared: Arc<Shared>, save_every: Duration) {
    let Some(stats) = shared.stats.clone() else {
        return;
    };
    let mut saved = Instant::now();
    let mut failing = false;
    loop {
        tokio::time::sleep(TICK).await;
        stats.roll(unix_now());
        if saved.elapsed() >= save_every {
            saved = Instant::now();
            take_websub(&shared);
            let s = Arc::clone(&stats);
            match tokio::task::spawn_blocking(move || s.save()).await {
                Ok(Ok(())) if failing => {
                    failing = false;
                    tracing::info!("stats: saving works again");
                }
                Ok(Err(e)) if !failing => {
                    failing = true;
                    tracing::error!("stats: cannot save the readership figures: {e}");
                }
                _ => {}
            }
        }
    }
}

/// Hands the hub's subscription counts per feed to the counters.
pub fn take_websub(shared: &Shared) {
    if let (Some(stats), Some(hub)) = (&shared.stats, &shared.hub) {
        stats.set_websub(hub.subscriptions_per_route());
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{articles, settings};
    use crate::site::SiteBuilder;
    use http_body_util::BodyExt;

    fn shared() -> Shared {
        let site = SiteBuilder::default()
            .build(
                &articles(),
                0,
                &settings(),
                std::time::SystemTime::UNIX_EPOCH,
            )
            .0;
        let mut s = Shared::new(site);
        let dir = std::env::temp_dir().join(format!("herald-admin-test-{}", std::process::id()));
        let (st, _) = crate::stats::Stats::open(&dir, crate::stats::Limits::default(), unix_now());
        st.set_feeds(["/rss.xml"]);
        s.stats = Some(Arc::new(st));
        s
    }

    fn get(s: &Shared, method: &str, path: &str) -> (u16, String, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let r = respond(&req, s);
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map_or("", |v| v.to_str().unwrap())
            .to_string();
        let status = r.status().as_u16();
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(r.into_body().collect())
            .unwrap()
            .to_bytes();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Only loopback names reach a loopback admin listener: a rebound DNS
    /// name (a page of another site) does not.
    #[test]
    fn loopback_hosts() {
        let host = |h: &str| {
            Request::builder()
                .uri("/stats")
                .header(header::HOST, h)
                .body(())
                .unwrap()
        };
        for ok in [
            "127.0.0.1:9190",
            "127.0.0.1",
            "localhost:9190",
            "LOCALHOST",
            "admin.localhost",
            "[::1]:9190",
            "10.0.0.5",
        ] {
            assert!(loopback_host(&host(ok)), "{ok}");
        }
        for bad in [
            "evil.example:9190",
            "evil.example",
            "localhost.evil.example",
            "[evil]:1",
            "127.0.0.1.evil.example",
        ] {
            assert!(!loopback_host(&host(bad)), "{bad}");
        }
        assert!(loopback_host(
            &Request::builder().uri("/").body(()).unwrap()
        ));
    }

    /// Each admin route answers with its media type; other paths 404,
    /// other methods 405, HEAD no body.
    #[test]
    fn routes() {
        let s = shared();
        s.stats.as_ref().unwrap().count(
            "/rss.xml",
            Some(b"Feedly/1.0 (+http://www.feedly.com/fetcher.html; 42 subscribers)"),
            1,
        );
        let (st, ct, body) = get(&s, "GET", "/metrics");
        assert_eq!(
            (st, ct.as_str()),
            (200, "text/plain; version=0.0.4; charset=utf-8")
        );
        assert!(body.contains("herald_site_routes "), "{body}");
        assert!(
            body.contains(
                "herald_feed_aggregator_subscribers{feed=\"/rss.xml\",aggregator=\"Feedly\"} 42\n"
            ),
            "{body}"
        );
        let (st, ct, body) = get(&s, "GET", "/stats");
        assert_eq!((st, ct.as_str()), (200, "application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["days"][0]["feeds"]["/rss.xml"]["aggregators"]["Feedly"],
            42
        );
        for p in ["/stats.html", "/stats/"] {
            let (st, ct, body) = get(&s, "GET", p);
            assert_eq!((st, ct.as_str()), (200, "text/html; charset=utf-8"), "{p}");
            assert!(body.contains("<svg") && body.contains("Feedly"), "{body}");
            assert!(!body.contains("<script"), "no script");
        }
        assert_eq!(get(&s, "GET", "/healthz").0, 200);
        assert_eq!(get(&s, "GET", "/rss.xml").0, 404);
        assert_eq!(get(&s, "POST", "/stats").0, 405);
        let (st, _, body) = get(&s, "HEAD", "/stats");
        assert_eq!((st, body.as_str()), (200, ""));
    }
}
