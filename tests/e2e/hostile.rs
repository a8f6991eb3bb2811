//! Hostile clients against the real binary over real sockets: no client,
//! and no handful of sockets from one address, may keep others from being
//! served. A request head (or the HTTP/2 preface) however split, an HTTP/2
//! connection kept open by keep-alive PINGs, one address opening more than
//! its share of connections, requests without a proper `Host`, and the
//! security headers of HTML pages.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::live::{column, parse_response, Resp, TestDaemon};
use crate::util::Workspace;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn ws_with_article() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "content/a.txt",
        column("May 1, 2025, 9 a.m.", "News", "A", "Body."),
    );
    ws
}

/// A TCP connection to `to` from the local address `from` (any address of
/// 127/8 is this host on Linux), so one test can be several clients.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    rustix::net::bind(&fd, &SocketAddr::new(IpAddr::V4(from), 0)).expect("bind client address");
    rustix::net::connect(&fd, &to).expect("connect");
    TcpStream::from(fd)
}

/// Sends `raw` on `s` and reads one response (the server sends
/// `Content-Length` on everything), failing after `limit`.
fn exchange(s: &mut TcpStream, raw: &[u8], limit: Duration) -> Resp {
    s.write_all(raw).expect("send request");
    read_response(s, limit)
}

/// Reads one whole response from `s` within `limit`.
fn read_response(s: &mut TcpStream, limit: Duration) -> Resp {
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                return parse_response(&raw[..end + 4 + len], false);
            }
        }
        let left = limit.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "no whole response within {limit:?}; got {:?}",
            String::from_utf8_lossy(&raw)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "connection closed before a whole response; got {:?}",
                String::from_utf8_lossy(&raw)
            ),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "no whole response within {limit:?} ({e}); got {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
}

/// Sends one byte of `trickle` every 250 ms (its first byte already sent)
/// until the server closes `s`; returns how long after `since` that was.
/// Fails if `s` is still open after `limit`.
fn trickle_until_closed(
    s: &mut TcpStream,
    trickle: &[u8],
    since: Instant,
    limit: Duration,
) -> Duration {
    s.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let mut buf = [0u8; 1024];
    let mut next = 1;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 408"), "unexpected {text:?}");
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return since.elapsed(),
        }
        assert!(since.elapsed() < limit, "still open after {limit:?}");
        if let Some(b) = trickle.get(next) {
            if s.write_all(std::slice::from_ref(b)).is_err() {
                return since.elapsed();
            }
            next += 1;
        }
    }
}

/// Connections that open with the single byte `P` and then trickle the
/// rest of the HTTP/2 preface, one byte at a time, holding every slot of
/// `max_connections`, are cut off after `header_read_timeout_secs` like any
/// slow request head, and a normal client waiting behind them is served.
#[test]
fn preface_trickle_cannot_hold_every_slot() {
    let d = TestDaemon::start(
        ws_with_article(),
        "max_connections = 6\nheader_read_timeout_secs = 1\nidle_timeout_secs = 30\n",
    );
    let addr = d.addr;
    let flood: Vec<_> = (0..6)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(&PREFACE[..1]).expect("send P");
            (s, Instant::now())
        })
        .collect();
    let tricklers: Vec<_> = flood
        .into_iter()
        .map(|(mut s, since)| {
            std::thread::spawn(move || {
                trickle_until_closed(&mut s, PREFACE, since, Duration::from_secs(5))
            })
        })
        .collect();
    // Behind the six in the listen backlog: served once they are cut off.
    let asked = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    let r = exchange(
        &mut s,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(4),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "served after {waited:?}: the flood did not hold every slot"
    );
    for t in tricklers {
        let closed = t.join().expect("trickler");
        assert!(
            closed >= Duration::from_millis(800) && closed < Duration::from_secs(4),
            "trickling connection closed after {closed:?}"
        );
    }
    d.stop();
}

/// A runtime for an HTTP/2 client.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An h2c connection that opens no stream and only answers the server's
/// keep-alive PINGs is closed after `idle_timeout_secs`.
#[test]
fn http2_pings_alone_do_not_keep_a_connection() {
    let d = TestDaemon::start(
        ws_with_article(),
        "idle_timeout_secs = 1\nheader_read_timeout_secs = 1\n",
    );
    let addr = d.addr;
    let lasted = runtime().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        let (_send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        // The connection answers PINGs while it is polled; `_send` keeps it
        // from ending on the client's side.
        // Ended by the server: how (GOAWAY or not) is not the point.
        let _ended = tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("connection still open after 5 s");
        started.elapsed()
    });
    assert!(
        lasted >= Duration::from_millis(800),
        "closed after {lasted:?}"
    );
    d.stop();
}

/// A workspace whose main feed is about `kb` kilobytes.
fn ws_with_big_feed(kb: usize) -> Workspace {
    let ws = Workspace::new();
    let para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(40);
    let n = kb.div_ceil(25);
    for i in 0..n {
        let body = [para.as_str(); 11].join("\n\n");
        ws.write(
            &format!("content/big{i}.txt"),
            column(
                &format!("May {}, 2025, 9 a.m.", 1 + i % 28),
                "News",
                &format!("Big {i}"),
                &body,
            ),
        );
    }
    ws
}

/// Reads `/rss.xml` over h2c with a 16 KB stream window, giving back
/// `pause` after each chunk (never, when `None`: the window stays full).
/// Returns the bytes received and whether the connection ended.
async fn h2_read_slowly(
    addr: SocketAddr,
    pause: Option<Duration>,
    limit: Duration,
) -> (usize, Duration, bool) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(16 * 1024)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .expect("h2 handshake");
    let mut conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{addr}/rss.xml"))
        .body(())
        .expect("request");
    let mut send = send.ready().await.expect("ready");
    let (resp, _) = send.send_request(req, true).expect("send request");
    let resp = resp.await.expect("response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0;
    let read = async {
        while let Some(chunk) = body.data().await {
            let Ok(chunk) = chunk else { break };
            got += chunk.len();
            match pause {
                Some(p) => {
                    tokio::time::sleep(p).await;
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                None => std::future::pending::<()>().await,
            }
        }
    };
    let ended = tokio::select! {
        () = read => true,
        _ = &mut conn => true,
        () = tokio::time::sleep(limit) => false,
    };
    (got, started.elapsed(), ended)
}

/// A slow reader of a large feed over h2c, taking longer than
/// `idle_timeout_secs` for the whole body, gets all of it: a stream whose
/// response is still being sent is not idle.
#[test]
fn http2_slow_reader_is_not_idle() {
    let d = TestDaemon::start(
        ws_with_big_feed(300),
        "idle_timeout_secs = 1\nheader_read_timeout_secs = 1\n",
    );
    let want: usize = d.get("/rss.xml").header("content-length").parse().unwrap();
    assert!(want > 250_000, "feed is large: {want}");
    let addr = d.addr;
    let (got, took, ended) = runtime().block_on(h2_read_slowly(
        addr,
        Some(Duration::from_millis(150)),
        Duration::from_secs(15),
    ));
    assert!(ended, "body not read within 15 s");
    assert_eq!(got, want, "whole body received");
    assert!(took >= Duration::from_secs(2), "read slowly: {took:?}");
    d.stop();
}

/// An h2c client that asks for a large feed and then never reads (its
/// window stays full, so nothing more can be sent) while it keeps answering
/// PINGs is closed after `idle_timeout_secs`.
#[test]
fn http2_stalled_reader_is_idle() {
    let d = TestDaemon::start(
        ws_with_big_feed(300),
        "idle_timeout_secs = 1\nheader_read_timeout_secs = 1\n",
    );
    let addr = d.addr;
    let (got, took, ended) = runtime().block_on(h2_read_slowly(addr, None, Duration::from_secs(5)));
    assert!(ended, "stalled connection still open after 5 s");
    assert!(got > 0 && got <= 16 * 1024, "one window's worth: {got}");
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    d.stop();
}

/// One address holding `max_connections_per_ip` connections gets a 503
/// and a closed connection for the next one at once — also while every
/// slot of `max_connections` is taken — while other addresses are served;
/// when one of its connections ends, it may open another.
#[test]
fn per_address_cap() {
    let d = TestDaemon::start(
        ws_with_article(),
        "max_connections = 4\nmax_connections_per_ip = 2\nheader_read_timeout_secs = 10\n",
    );
    let addr = d.addr;
    let one = Ipv4Addr::new(127, 0, 0, 1);
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let three = Ipv4Addr::new(127, 0, 0, 3);
    let ask = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let limit = Duration::from_secs(4);
    // Two keep-alive connections from 127.0.0.1, each served once (so
    // both are surely counted).
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect_from(one, addr);
            assert_eq!(exchange(&mut s, ask, limit).status, 200);
            s
        })
        .collect();
    let refused = |from: Ipv4Addr| {
        let started = Instant::now();
        let mut s = connect_from(from, addr);
        let r = read_response(&mut s, Duration::from_secs(2));
        assert_eq!(r.status, 503, "{from}");
        assert_eq!(r.header("connection"), "close", "{from}");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{from}: closed after the 503");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "{from}: refused after {took:?}"
        );
    };
    refused(one);
    // Another address is served as usual.
    let mut other = connect_from(two, addr);
    assert_eq!(exchange(&mut other, ask, limit).text(), "ok\n");
    // Every slot taken (two from .1, .2 and .3 one each): a third
    // connection from .1 is still refused at once, not queued.
    let mut third = connect_from(three, addr);
    assert_eq!(exchange(&mut third, ask, limit).status, 200);
    refused(one);
    // A fifth client within its address's share waits for a slot, and is
    // served when one frees.
    let mut waiting = connect_from(two, addr);
    waiting.write_all(ask).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        waiting.read(&mut buf).is_err(),
        "served beyond max_connections"
    );
    drop(third);
    let r = read_response(&mut waiting, limit);
    assert_eq!(r.status, 200);
    // One of .1's connections ends: .1 may open another.
    drop(held.pop());
    let started = Instant::now();
    loop {
        let mut s = connect_from(one, addr);
        let r = exchange(&mut s, ask, limit);
        if r.status == 200 {
            break;
        }
        assert!(started.elapsed() < limit, "still refused after a close");
    }
    let log = d.stop();
    assert!(!log.contains("panic"), "{log}");
}

/// HTTP/1.1 requests without `Host`, with two, or with a value that is no
/// host get 400 with a short reason (RFC 9112 §3.2); HTTP/1.0 may omit it.
#[test]
fn host_header_required_once() {
    let d = TestDaemon::start(ws_with_article(), "");
    let limit = Duration::from_secs(4);
    for (label, raw) in [
        ("missing", &b"GET /healthz HTTP/1.1\r\n\r\n"[..]),
        (
            "twice",
            &b"GET /healthz HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"[..],
        ),
        (
            "twice, same value",
            &b"GET /rss.xml HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"[..],
        ),
        (
            "not a host",
            &b"GET /rss.xml HTTP/1.1\r\nHost: a/b\r\n\r\n"[..],
        ),
        (
            "HTTP/1.0, twice",
            &b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"[..],
        ),
    ] {
        let mut s = TcpStream::connect(d.addr).unwrap();
        let r = exchange(&mut s, raw, limit);
        assert_eq!(r.status, 400, "{label}");
        assert!(r.text().contains("Host"), "{label}: {}", r.text());
        assert_eq!(r.header("connection"), "close", "{label}");
    }
    for (label, raw) in [
        (
            "one",
            &b"GET /healthz HTTP/1.1\r\nHost: news.example.org\r\n\r\n"[..],
        ),
        (
            "with port",
            &b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"[..],
        ),
        (
            "IPv6",
            &b"GET /healthz HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"[..],
        ),
        ("HTTP/1.0 without", &b"GET /healthz HTTP/1.0\r\n\r\n"[..]),
    ] {
        let mut s = TcpStream::connect(d.addr).unwrap();
        let r = exchange(&mut s, raw, limit);
        assert_eq!((r.status, r.text().as_str()), (200, "ok\n"), "{label}");
    }
    d.stop();
}

/// The SHA-256 of `text`, base64, as CSP source expressions name it.
fn csp_hash(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in digest.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= c.len() {
                B64[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    format!("'sha256-{out}'")
}

/// Every HTML page (the index, an article page, the 404 page; GET and
/// HEAD) carries a Content-Security-Policy that allows its own inline
/// style (by hash), images from anywhere over http(s) and nothing else,
/// forbids framing, and sets `nosniff` and a Referrer-Policy; feeds carry
/// `nosniff` and no CSP.
#[test]
fn html_security_headers() {
    let ws = ws_with_article();
    ws.write(
        "content/t.md",
        "---\ntitle: \"Table\"\ndate: 2025-05-02\n---\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\n![x](https://img.example/x.png)\n",
    );
    let d = TestDaemon::start(ws, "");
    let feed: serde_json::Value = serde_json::from_slice(&d.get("/feed.json").body).unwrap();
    let pages: Vec<String> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["url"].as_str().unwrap()["https://news.example.org".len()..].to_string())
        .collect();
    assert_eq!(pages.len(), 2);
    let mut paths = vec!["/".to_string(), "/nope".to_string()];
    paths.extend(pages);
    for path in &paths {
        for method in ["GET", "HEAD"] {
            let r = d.request(method, path, &[]);
            let want = if path == "/nope" { 404 } else { 200 };
            assert_eq!(r.status, want, "{method} {path}");
            assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
            assert_eq!(
                r.header("x-content-type-options"),
                "nosniff",
                "{method} {path}"
            );
            assert_eq!(r.header("x-frame-options"), "DENY", "{method} {path}");
            assert_eq!(
                r.header("referrer-policy"),
                "strict-origin-when-cross-origin",
                "{method} {path}"
            );
            let csp = r.header("content-security-policy");
            let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
            for d in [
                "default-src 'none'",
                "img-src 'self' https: http:",
                "frame-ancestors 'none'",
                "base-uri 'none'",
                "form-action 'none'",
            ] {
                assert!(directives.contains(&d), "{method} {path}: {d} in {csp}");
            }
            if method == "HEAD" {
                continue;
            }
            // The page's one inline style is allowed by its hash, and
            // nothing allows inline scripts or any other source.
            let html = r.text();
            let style = html
                .split("<style>")
                .nth(1)
                .and_then(|s| s.split("</style>").next())
                .expect("an inline style");
            let style_src = directives
                .iter()
                .find(|d| d.starts_with("style-src "))
                .unwrap_or_else(|| panic!("{path}: no style-src in {csp}"));
            assert!(style_src.contains(&csp_hash(style)), "{path}: {csp}");
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("script-src"),
                "{csp}"
            );
            if html.contains("style=\"text-align: left\"") {
                assert!(style_src.contains(&csp_hash("text-align: left")), "{csp}");
                assert!(style_src.contains(&csp_hash("text-align: right")), "{csp}");
            }
        }
    }
    assert!(
        paths
            .iter()
            .any(|p| d.get(p).text().contains("text-align: right")),
        "the table page has aligned cells"
    );
    for path in ["/rss.xml", "/feed.json", "/feeds.opml"] {
        let r = d.get(path);
        assert_eq!(r.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(r.header("content-security-policy"), "", "{path}");
    }
    d.stop();
}

/// A request head over `max_header_bytes` is answered 431 and one under it
/// is served, at the smallest limit the config takes (8192); a smaller
/// one is a config error naming the key, not a limit silently raised.
#[test]
fn header_limit_is_what_it_says() {
    let ws = ws_with_article();
    ws.write("herald.toml", "max_header_bytes = 4096\n");
    let r = ws.herald_cfg(&["build"]);
    assert_eq!(r.code, Some(78), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("herald.toml:1: max_header_bytes: must be 8192"),
        "{}",
        r.stderr
    );
    let d = TestDaemon::start(ws, "max_header_bytes = 8192\n");
    let limit = Duration::from_secs(4);
    for (filler, want) in [(7000, 200), (9000, 431)] {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(filler)
        );
        let mut s = TcpStream::connect(d.addr).unwrap();
        assert_eq!(
            exchange(&mut s, head.as_bytes(), limit).status,
            want,
            "{filler}"
        );
    }
    d.stop();
}
