//! `/metrics` counts every status Herald answers with: the hub's 202,
//! 403, 413, 415 and 429, a deleted article's 410, a refused
//! connection's 503 and `/healthz`'s 503 once the publish loop is dead.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use crate::live::{http, TestDaemon, DEADLINE};
use crate::util::Workspace;

fn post(d: &TestDaemon, content_type: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect_timeout(&d.addr, DEADLINE).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let head = format!(
        "POST /websub HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        d.addr,
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    crate::live::parse_response(&raw, false).status
}

fn subscribe(d: &TestDaemon, callback: &str) -> u16 {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("hub.mode", "subscribe"),
            ("hub.topic", "https://news.example.org/rss.xml"),
            ("hub.callback", callback),
        ])
        .finish();
    post(d, "application/x-www-form-urlencoded", body.as_bytes())
}

/// The `/metrics` line counting `status` answers on `route`, if any.
fn counted(metrics: &str, route: &str, status: u16) -> Option<u64> {
    let key = format!("herald_http_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|n| n.parse().ok())
}

fn ws() -> Workspace {
    let ws = Workspace::new();
    for s in ["a", "b"] {
        ws.write(
            &format!("content/{s}.md"),
            format!("---\ntitle: {s}\nslug: {s}\ndate: 2025-05-01\n---\nBody.\n"),
        );
    }
    ws
}

/// Every status Herald sends is counted by route class.
#[test]
fn every_status_sent_is_counted() {
    // A callback that never answers keeps the first verification pending.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let d = TestDaemon::start(
        ws(),
        "max_connections_per_ip = 2\n[websub]\nbuiltin = true\nallow_private_callbacks = true\n\
         max_subscriptions_per_host = 1\nmax_request_bytes = 2048\nrequests_per_minute = 20\n",
    );
    assert_eq!(subscribe(&d, &format!("http://127.0.0.1:{port}/one")), 202);
    // Its host has a verification under way: another waits (429).
    assert_eq!(subscribe(&d, &format!("http://127.0.0.1:{port}/two")), 429);
    // A verified subscriber on another host: its second is refused (403).
    let sub = crate::websub::Recorder::start_at("127.0.0.2:0", crate::websub::echo);
    assert_eq!(subscribe(&d, &sub.url("/one")), 202);
    crate::websub::wait_stored(&d, "the verified subscriber", |s| s.len() == 1);
    assert_eq!(subscribe(&d, &sub.url("/two")), 403);
    assert_eq!(
        post(&d, "application/x-www-form-urlencoded", &[b'a'; 100_000]),
        413
    );
    assert_eq!(post(&d, "application/json", b"{}"), 415);
    let mut last = 0;
    for _ in 0..25 {
        last = post(
            &d,
            "application/x-www-form-urlencoded",
            b"hub.mode=subscribe",
        );
    }
    assert_eq!(last, 429);
    std::fs::remove_file(d.ws.path("content/b.md")).unwrap();
    d.poll("/articles/b/", "gone", |r| r.status == 410);
    // Two connections held: the third from this address is refused.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 256];
            assert!(s.read(&mut buf).unwrap() > 0);
            s
        })
        .collect();
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(
        raw.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    drop(held);

    let m = d.admin_get("/metrics").text();
    for status in [202, 403, 413, 415, 429] {
        assert!(counted(&m, "other", status).is_some(), "hub {status}:\n{m}");
    }
    assert!(counted(&m, "article", 410).is_some(), "{m}");
    assert_eq!(
        counted(&m, "other", 503),
        Some(1),
        "refused connection:\n{m}"
    );
    d.stop();
    drop(silent);

    // A dead publish loop: /healthz answers 503, on both listeners.
    let d = TestDaemon::start_with(ws(), "", |c| {
        c.env("HERALD_FAILPOINT", "publish-panic");
    });
    d.ws.write(
        "content/a.md",
        "---\ntitle: edited\nslug: a\ndate: 2025-05-01\n---\nB.\n",
    );
    d.poll("/healthz", "503", |r| r.status == 503);
    assert_eq!(d.admin_get("/healthz").status, 503);
    let m = d.admin_get("/metrics").text();
    assert_eq!(counted(&m, "health", 503), Some(2), "{m}");
    let _ = http(d.addr, "GET", "/rss.xml", &[]);
    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit();
    assert_eq!(code, Some(5));
}

/// The answers hyper writes itself before Herald sees a request are
/// counted too: a malformed request line (400) and a request head over
/// `max_header_bytes` (431), under `route="other"`.
#[test]
fn hyper_own_answers_counted() {
    let d = TestDaemon::start(ws(), "max_header_bytes = 8192\n");
    let raw = |bytes: &[u8]| -> String {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let _ = s.write_all(bytes);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        String::from_utf8_lossy(&raw).into_owned()
    };
    let bad = raw(b"GET /a b c HTTP/9.9\x01\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let big = raw(big.as_bytes());
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    let m = d
        .admin_poll("/metrics", "both counted", |r| {
            counted(&r.text(), "other", 400).is_some() && counted(&r.text(), "other", 431).is_some()
        })
        .text();
    assert_eq!(counted(&m, "other", 400), Some(1), "{m}");
    assert_eq!(counted(&m, "other", 431), Some(1), "{m}");
    d.stop();
}
