//! The built-in hub under load and abuse: what strangers and slow or dead
//! subscribers do never stalls the feeds, never delays healthy
//! subscribers, never exhausts file descriptors, and never slips past the
//! per-host caps or the callback address policy. Many callback hosts are
//! simulated with distinct addresses on 127.0.0.0/8.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::live::{TestDaemon, DEADLINE};
use crate::util::Workspace;
use crate::websub::{col, echo, post_form, post_raw, stored, wait_stored, Recorder, TOPIC};

const FAR: u64 = 4_102_444_800; // 2100-01-01

/// `state/websub.json` holding `callbacks`, all subscribed to [`TOPIC`].
/// A subscriber whose callbacks under `prefix` never answer a delivery
/// (`n` of them, subscribed) and one more, `/zz-fast`, that answers at
/// once: sorted last, so its delivery starts after every hung one's. In
/// a workspace with one article.
fn hung_then_fast(prefix: &'static str, n: usize) -> (Recorder, Workspace) {
    let sub = Recorder::start(move |g| {
        if g.method == "POST" && g.target.starts_with(prefix) {
            None
        } else {
            echo(g)
        }
    });
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let mut callbacks: Vec<String> = (0..n)
        .map(|i| sub.url(&format!("{prefix}/{i:02}")))
        .collect();
    callbacks.push(sub.url("/zz-fast"));
    write_subscriptions(&ws, &callbacks);
    (sub, ws)
}

fn write_subscriptions(ws: &Workspace, callbacks: &[String]) {
    let subs: Vec<serde_json::Value> = callbacks
        .iter()
        .map(|cb| {
            serde_json::json!({"route": "/feed.json", "topic": TOPIC, "callback": cb, "expires": FAR})
        })
        .collect();
    ws.write(
        "state/websub.json",
        serde_json::to_vec(&serde_json::json!({"version": 1, "subscriptions": subs})).unwrap(),
    );
}

/// A renewal (a second subscribe of a stored topic and callback) is a line
/// appended to `websub.journal`: the whole `websub.json` is not rewritten,
/// and the renewal survives a crash (its new secret signs the next
/// delivery after a restart).
#[test]
fn renewal_appends_to_the_journal() {
    let sub = Recorder::subscriber();
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let callbacks: Vec<String> = (0..2000).map(|i| sub.url(&format!("/cb/{i:04}"))).collect();
    write_subscriptions(&ws, &callbacks);
    let before = ws.read_bytes("state/websub.json");
    let config = "[websub]\nbuiltin = true\nallow_private_callbacks = true\nmax_subscriptions_per_host = 5000\nrequests_per_minute = 1000\n";
    let mut d = TestDaemon::start(ws, config);
    let target = sub.url("/cb/0007");
    let r = post_form(
        &d,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", TOPIC),
            ("hub.callback", &target),
            ("hub.secret", "fresh-secret"),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    d.wait_log("websub: renewed");
    wait_stored(&d, "the renewal on disk", |s| {
        s.iter()
            .any(|(cb, secret)| *cb == target && secret.as_deref() == Some("fresh-secret"))
    });
    assert!(
        d.ws.read_bytes("state/websub.json") == before,
        "a renewal rewrote the whole websub.json"
    );
    let journal = d.ws.read("state/websub.journal");
    assert!(journal.contains("fresh-secret"), "{journal}");
    let ws = d.kill();
    let d = TestDaemon::start(ws, config);
    d.ws.write("content/b.txt", col("News", "B", 2));
    let got = sub.wait("the renewed callback's delivery", |g| {
        g.iter()
            .any(|g| g.method == "POST" && g.target == "/cb/0007")
    });
    let post = got
        .iter()
        .find(|g| g.method == "POST" && g.target == "/cb/0007")
        .unwrap();
    assert!(
        post.header("x-hub-signature").starts_with("sha256="),
        "signed with the renewed secret: {:?}",
        post.headers
    );
    d.stop();
}

/// Callbacks that hung on a delivery are moved aside: the next change
/// reaches a healthy subscriber within seconds, however many slow ones
/// share the feed (12 hanging callbacks, 4 delivery slots, 6 s timeout:
/// 18 s of waiting when they stand in the healthy one's way).
#[test]
fn slow_callbacks_do_not_delay_a_fast_one() {
    let (sub, ws) = hung_then_fast("/slow", 12);
    let d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nallow_private_callbacks = true\nmax_subscriptions_per_host = 100\ndelivery_concurrency = 4\nrequest_timeout_secs = 6\nretries = 0\n",
    );
    let fast = |n: usize| {
        move |g: &[crate::websub::Got]| {
            g.iter()
                .filter(|g| g.method == "POST" && g.target == "/zz-fast")
                .count()
                >= n
        }
    };
    d.ws.write("content/b.txt", col("News", "B", 2));
    let start = Instant::now();
    while !fast(1)(&sub.all()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no first delivery"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every slow one was tried and hung.
    sub.wait("the slow ones tried", |g| {
        g.iter()
            .filter(|g| g.method == "POST" && g.target.starts_with("/slow"))
            .count()
            >= 12
    });
    std::thread::sleep(Duration::from_secs(7));
    let changed = Instant::now();
    d.ws.write("content/c.txt", col("News", "C", 3));
    let start = Instant::now();
    while !fast(2)(&sub.all()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no second delivery"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let at = sub
        .all()
        .iter()
        .filter(|g| g.method == "POST" && g.target == "/zz-fast")
        .nth(1)
        .unwrap()
        .at;
    let took = at - changed;
    assert!(
        took < Duration::from_secs(4),
        "the fast subscriber waited {took:?} behind slow ones"
    );
    d.stop();
}

/// Verifications have their own budget: with every delivery slot held by
/// hanging callbacks, a new subscriber is still verified at once.
#[test]
fn verification_not_blocked_by_hung_deliveries() {
    let sub = Recorder::start(|g| {
        if g.method == "POST" && g.target.starts_with("/hang") {
            None
        } else {
            echo(g)
        }
    });
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    write_subscriptions(&ws, &[sub.url("/hang/1"), sub.url("/hang/2")]);
    let d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nallow_private_callbacks = true\ndelivery_concurrency = 2\nrequest_timeout_secs = 15\nretries = 0\n",
    );
    d.ws.write("content/b.txt", col("News", "B", 2));
    sub.wait("both deliveries hang", |g| {
        g.iter()
            .filter(|g| g.method == "POST" && g.target.starts_with("/hang"))
            .count()
            >= 2
    });
    let asked = Instant::now();
    let r = post_form(
        &d,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", TOPIC),
            ("hub.callback", &sub.url("/new")),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let got = sub.wait("the verification", |g| {
        g.iter()
            .any(|g| g.method == "GET" && g.target.starts_with("/new"))
    });
    let at = got
        .iter()
        .find(|g| g.method == "GET" && g.target.starts_with("/new"))
        .unwrap()
        .at;
    assert!(
        at - asked < Duration::from_secs(5),
        "verification waited {:?} for delivery slots",
        at - asked
    );
    d.stop();
}

/// The per-host cap holds for every mode: unsubscribe requests for one
/// host being verified count too, so a flood of them is refused past the
/// cap while another host's subscribers still get 202.
#[test]
fn per_host_cap_on_unsubscribe_too() {
    // Never answers a verification: they stay under way.
    let stuck = Recorder::start(|_| None);
    let other = Recorder::start_at("127.0.0.2:0", echo);
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nallow_private_callbacks = true\nmax_subscriptions_per_host = 5\nrequests_per_minute = 1000\nrequest_timeout_secs = 15\n",
    );
    let mut accepted = 0;
    let mut refused = Vec::new();
    for i in 0..12 {
        let r = post_form(
            &d,
            &[
                ("hub.mode", "unsubscribe"),
                ("hub.topic", TOPIC),
                ("hub.callback", &stuck.url(&format!("/u/{i}"))),
            ],
        );
        if r.status == 202 {
            accepted += 1;
        } else {
            refused.push((r.status, r.text()));
        }
    }
    assert_eq!(accepted, 5, "refused: {refused:?}");
    assert!(
        refused
            .iter()
            .all(|(s, t)| *s == 429 && t.contains("127.0.0.1")),
        "{refused:?}"
    );
    let r = post_form(
        &d,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", TOPIC),
            ("hub.callback", &other.url("/ok")),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    wait_stored(&d, "the other host's subscription", |s| s.len() == 1);
    d.stop();
}

/// `/healthz` says when deliveries to healthy subscribers fall behind, and
/// `/metrics` shows the queue and the age of its oldest change.
#[test]
fn delivery_backlog_in_healthz_and_metrics() {
    let sub = Recorder::start(|g| if g.method == "POST" { None } else { echo(g) });
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    write_subscriptions(
        &ws,
        &(0..4)
            .map(|i| sub.url(&format!("/cb/{i}")))
            .collect::<Vec<_>>(),
    );
    let d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nallow_private_callbacks = true\ndelivery_concurrency = 1\nrequest_timeout_secs = 15\nslow_delivery_secs = 15\ndelivery_lag_secs = 2\nretries = 0\n",
    );
    d.ws.write("content/b.txt", col("News", "B", 2));
    let h = d.poll("/healthz", "degraded by the delivery backlog", |r| {
        r.text().contains("websub")
    });
    assert_eq!(h.status, 200, "degraded, not dead: {}", h.text());
    assert!(h.text().contains("degraded"), "{}", h.text());
    let m = d.admin_get("/metrics").text();
    let value = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{m}"))
    };
    assert!(value("herald_websub_queue_depth") >= 3.0, "{m}");
    assert!(
        value("herald_websub_oldest_undelivered_seconds") >= 2.0,
        "{m}"
    );
    d.stop();
}

/// A callback server on `addr` that keeps connections open (HTTP/1.1
/// keep-alive): echoes challenges, answers deliveries 200, counts them.
fn keep_alive_server(addr: &str, delivered: Arc<AtomicUsize>) -> SocketAddr {
    let l = TcpListener::bind(addr).expect("bind callback host");
    let at = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let delivered = Arc::clone(&delivered);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
                let mut r = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end().to_ascii_lowercase();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    if line.starts_with("POST") {
                        delivered.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = r
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    at
}

/// Open file descriptors of process `pid`.
fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// With an open-file limit of 256 and 400 subscriptions on 400 distinct
/// callback hosts whose servers keep connections alive, every delivery
/// arrives, the descriptors in use stay below the limit, and readers are
/// served all along.
#[test]
fn deliveries_to_many_hosts_keep_fds_in_reserve() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let delivered = Arc::new(AtomicUsize::new(0));
    let n = 400;
    let callbacks: Vec<String> = (0..n)
        .map(|i| {
            let a = keep_alive_server(
                &format!("127.0.{}.{}:0", 10 + i / 200, 1 + i % 200),
                Arc::clone(&delivered),
            );
            format!("http://{a}/cb")
        })
        .collect();
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    write_subscriptions(&ws, &callbacks);
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        &format!(
            "ulimit -n 256 && exec {} --config herald.toml serve",
            env!("CARGO_BIN_EXE_herald")
        ),
    ]);
    let d = TestDaemon::start_cmd(
        ws,
        "max_connections = 32\n[websub]\nbuiltin = true\nallow_private_callbacks = true\nretries = 2\nretry_backoff_ms = 200\n",
        cmd,
    );
    let pid = d.pid();
    d.ws.write("content/b.txt", col("News", "B", 2));
    let start = Instant::now();
    let mut most = 0;
    while delivered.load(Ordering::SeqCst) < n {
        most = most.max(fds(pid));
        assert_eq!(d.get("/feed.json").status, 200, "a reader is served");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {n} delivered; {most} fds at most\n{}",
            delivered.load(Ordering::SeqCst),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..20 {
        most = most.max(fds(pid));
        assert_eq!(d.get("/feed.json").status, 200, "a reader is served");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = d.stop();
    assert!(most < 200, "{most} fds in use of 256");
    assert!(!log.contains("Too many open files"), "{log}");
}

/// The per-host cap counts an IPv6 literal host as one, however the
/// callbacks spell it.
#[test]
fn per_host_cap_counts_ipv6_literals() {
    let Ok(probe) = TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    drop(probe);
    let sub = Recorder::start_at("[::1]:0", echo);
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nallow_private_callbacks = true\nmax_subscriptions_per_host = 2\nrequests_per_minute = 1000\n",
    );
    let port = sub.addr.port();
    let mut statuses = Vec::new();
    for (i, host) in ["[::1]", "[0::1]", "[::1]", "[0:0::1]"].iter().enumerate() {
        let r = post_form(
            &d,
            &[
                ("hub.mode", "subscribe"),
                ("hub.topic", TOPIC),
                ("hub.callback", &format!("http://{host}:{port}/cb/{i}")),
            ],
        );
        statuses.push(r.status);
        if i == 1 {
            wait_stored(&d, "two stored", |s| s.len() == 2);
        }
    }
    assert_eq!(statuses, [202, 202, 403, 403]);
    assert_eq!(stored(&d.ws).len(), 2);
    d.stop();
}

/// Callback addresses that embed loopback (IPv4-compatible, IPv4-translated)
/// and the discard, documentation and IETF protocol ranges are refused,
/// as is a secret or callback that is not UTF-8.
#[test]
fn callback_filter_and_utf8() {
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(ws, "[websub]\nbuiltin = true\nrequests_per_minute = 1000\n");
    for cb in [
        "http://[::127.0.0.1]/cb",
        "http://[::ffff:0:127.0.0.1]/cb",
        "http://[100::1]/cb",
        "http://[2001::1]/cb",
        "http://[3fff::1]/cb",
    ] {
        let r = post_form(
            &d,
            &[
                ("hub.mode", "subscribe"),
                ("hub.topic", TOPIC),
                ("hub.callback", cb),
            ],
        );
        assert_eq!(r.status, 400, "{cb}: {}", r.text());
        assert!(
            r.text().contains("hub.callback refused"),
            "{cb}: {}",
            r.text()
        );
    }
    let topic: String = form_urlencoded::byte_serialize(TOPIC.as_bytes()).collect();
    for (body, name) in [
        (
            format!("hub.mode=subscribe&hub.topic={topic}&hub.callback=https%3A%2F%2Fexample.org%2Fcb&hub.secret=ab%FFcd"),
            "hub.secret",
        ),
        (
            format!("hub.mode=subscribe&hub.topic={topic}&hub.callback=https%3A%2F%2Fexample.org%2F%C3%28"),
            "hub.callback",
        ),
    ] {
        let r = post_raw(d.addr, "application/x-www-form-urlencoded", body.as_bytes());
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert!(
            r.text().contains(name) && r.text().contains("UTF-8"),
            "{name}: {}",
            r.text()
        );
    }
    d.stop();
}

/// A body that has not arrived within `body_timeout_secs` is answered
/// 408, as documented.
#[test]
fn slow_body_is_408() {
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(ws, "[websub]\nbuiltin = true\n");
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(
        format!(
            "POST /websub HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nhub.mode=sub",
            d.addr
        )
        .as_bytes(),
    )
    .unwrap();
    // Trickled, a byte every 700 ms (defaults: 10 s for the body, 10 s for the request): each arrives in time, the whole does
    // not.
    for b in b"scribe&hub.topic=x".iter() {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    d.stop();
}

/// With `allow_private_callbacks = true`, loopback and private callbacks
/// are allowed, but link-local and cloud metadata addresses never are;
/// the start warns that the switch is on.
#[test]
fn private_switch_never_allows_metadata() {
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nallow_private_callbacks = true\nrequests_per_minute = 1000\n",
    );
    assert!(
        d.log().contains("allow_private_callbacks"),
        "a warning at start:\n{}",
        d.log()
    );
    for cb in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/cb",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
    ] {
        let r = post_form(
            &d,
            &[
                ("hub.mode", "subscribe"),
                ("hub.topic", TOPIC),
                ("hub.callback", cb),
            ],
        );
        assert_eq!(r.status, 400, "{cb}: {}", r.text());
    }
    let ok = Recorder::subscriber();
    let r = post_form(
        &d,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", TOPIC),
            ("hub.callback", &ok.url("/cb")),
        ],
    );
    assert_eq!(r.status, 202, "loopback still allowed: {}", r.text());
    d.stop();
}

/// While the subscriptions cannot be saved (the journal's path is taken by
/// a directory), the hub goes on, the failure is logged once, and the
/// subscription is saved once the path is free again.
#[test]
fn unsavable_subscriptions_logged_once_then_saved() {
    let sub = Recorder::subscriber();
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    std::fs::create_dir_all(ws.path("state/websub.journal")).unwrap();
    let mut d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nallow_private_callbacks = true\n",
    );
    let cb = sub.url("/cb");
    let r = post_form(
        &d,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", TOPIC),
            ("hub.callback", &cb),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    d.wait_log("cannot save the subscriptions");
    // One retry period and more: still one line.
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(
        d.log().matches("cannot save the subscriptions").count(),
        1,
        "{}",
        d.log()
    );
    std::fs::remove_dir(d.ws.path("state/websub.journal")).unwrap();
    d.wait_log("the subscriptions are saved again");
    assert_eq!(stored(&d.ws), [(cb, None)]);
    d.stop();
}

/// The per-host cap holds under a flood of concurrent subscriptions whose
/// verifications finish while more requests for the same host arrive: on
/// each of 8 hosts in turn, 32 connections at once ask for distinct
/// callbacks until every accepted one has been verified; exactly
/// `max_subscriptions_per_host` (100) per host are accepted and stored,
/// the rest refused with 403 or 429 (a verification leaving the pending
/// ones and its subscription being stored must be one step to the count,
/// or a request in between takes a 101st place).
#[test]
fn per_host_cap_holds_under_concurrent_subscribes() {
    let hosts: Vec<Recorder> = (1..=8)
        .map(|h| Recorder::start_at(&format!("127.0.0.{h}:0"), echo))
        .collect();
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let cap = 100;
    let d = TestDaemon::start(
        ws,
        &format!("[websub]\nbuiltin = true\nallow_private_callbacks = true\nmax_subscriptions_per_host = {cap}\nrequests_per_minute = 100000\n"),
    );
    let mut accepted = Vec::new();
    for (h, host) in hosts.iter().enumerate() {
        let next = AtomicUsize::new(0);
        // Set once the host has answered as many challenges as places:
        // the flood goes on a little past the last verification.
        let verified: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let answers: Vec<(u16, String)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..32)
                .map(|_| {
                    let (next, verified, d) = (&next, &verified, &d);
                    s.spawn(move || {
                        let mut got = Vec::new();
                        loop {
                            if host.of("GET").len() >= cap {
                                let at = verified.get_or_init(Instant::now);
                                if at.elapsed() > Duration::from_millis(100) {
                                    return got;
                                }
                            }
                            let i = next.fetch_add(1, Ordering::SeqCst);
                            assert!(i < 5000, "host {h}: {cap} verifications not seen");
                            let cb = host.url(&format!("/cb/{i:04}"));
                            let r = post_form(
                                d,
                                &[
                                    ("hub.mode", "subscribe"),
                                    ("hub.topic", TOPIC),
                                    ("hub.callback", &cb),
                                ],
                            );
                            got.push((r.status, r.text()));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        // 503: too many name checks at once, no answer about the cap.
        let odd: Vec<_> = answers
            .iter()
            .filter(|(s, _)| !matches!(s, 202 | 403 | 429 | 503))
            .collect();
        assert!(odd.is_empty(), "host {h}: {odd:?}");
        accepted.push(answers.iter().filter(|(s, _)| *s == 202).count());
    }
    let total: usize = accepted.iter().sum();
    // Every accepted request is verified (the subscribers echo), then
    // stored: wait for the last of them, and for the file to say so.
    crate::live::wait_until("every accepted request verified", || {
        d.log().matches("websub: subscribed").count() >= total
    });
    wait_stored(&d, "the verified subscriptions saved", |s| s.len() >= total);
    assert_eq!(accepted, vec![cap; hosts.len()], "202s per host");
    let stored = stored(&d.ws);
    for (h, r) in hosts.iter().enumerate() {
        let prefix = r.url("/");
        let on_host = stored
            .iter()
            .filter(|(cb, _)| cb.starts_with(&prefix))
            .count();
        assert_eq!(on_host, cap, "subscriptions stored on host {h}");
    }
    d.stop();
}

/// The hub's record of failing callbacks is pruned when a subscription
/// ends: two callbacks that fail their delivery show in
/// `herald_websub_slow_callbacks`; one unsubscribed, it counts one; the
/// other's lease over, none.
#[test]
fn failing_callbacks_forgotten_when_subscriptions_end() {
    let sub = Recorder::start(|g| {
        if g.method == "POST" {
            Some((500, b"broken".to_vec()))
        } else {
            echo(g)
        }
    });
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nallow_private_callbacks = true\nretries = 0\n",
    );
    let slow = |d: &TestDaemon| -> Option<u64> {
        d.admin_get("/metrics")
            .text()
            .lines()
            .find_map(|l| l.strip_prefix("herald_websub_slow_callbacks "))
            .and_then(|v| v.trim().parse().ok())
    };
    let (gone, expiring) = (sub.url("/unsubscribed"), sub.url("/expiring"));
    // The lease leaves time for the first delivery to fail.
    let lease = 6;
    for (cb, lease) in [(&gone, "864000"), (&expiring, &*lease.to_string())] {
        let r = post_form(
            &d,
            &[
                ("hub.mode", "subscribe"),
                ("hub.topic", TOPIC),
                ("hub.callback", cb),
                ("hub.lease_seconds", lease),
            ],
        );
        assert_eq!(r.status, 202, "{}", r.text());
    }
    wait_stored(&d, "both subscribed", |s| s.len() == 2);
    let subscribed = Instant::now();
    d.ws.write("content/b.txt", col("News", "B", 2));
    crate::live::wait_until("both deliveries failed and remembered", || {
        slow(&d) == Some(2)
    });
    assert!(
        subscribed.elapsed() < Duration::from_secs(lease - 1),
        "the failures came after the lease; nothing shown"
    );
    let r = post_form(
        &d,
        &[
            ("hub.mode", "unsubscribe"),
            ("hub.topic", TOPIC),
            ("hub.callback", &gone),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    wait_stored(&d, "unsubscribed", |s| s.len() == 1);
    crate::live::wait_until("the unsubscribed callback forgotten", || {
        slow(&d) == Some(1)
    });
    // Past the lease, a change sweeps the subscriptions whose leases ended.
    while subscribed.elapsed() < Duration::from_secs(lease + 1) {
        std::thread::sleep(Duration::from_millis(100));
    }
    d.ws.write("content/c.txt", col("News", "C", 3));
    wait_stored(&d, "the lease ended", |s| s.is_empty());
    crate::live::wait_until("the expired callback forgotten", || slow(&d) == Some(0));
    d.stop();
}

/// On the first change after a start, callbacks that hang and are not yet
/// known to be slow do not hold a healthy one back until they are cut
/// off: with 50 of them ahead of it and 2 delivery places, the fast
/// subscriber has its delivery before the first hung one reaches
/// `slow_delivery_secs` (without the waiting room: 50 / 2 × 8 s).
#[test]
fn first_change_fast_one_not_behind_hung_ones() {
    let (sub, ws) = hung_then_fast("/hang", 50);
    let mut d = TestDaemon::start(
        ws,
        "max_connections = 64\n[websub]\nbuiltin = true\nallow_private_callbacks = true\nmax_subscriptions_per_host = 100\ndelivery_concurrency = 2\nslow_delivery_secs = 8\nrequest_timeout_secs = 10\nretries = 0\n",
    );
    d.ws.write("content/b.txt", col("News", "B", 2));
    let got = sub.wait("the fast subscriber's delivery", |g| {
        g.iter()
            .any(|g| g.method == "POST" && g.target == "/zz-fast")
    });
    assert!(
        !d.log().contains("did not answer within"),
        "a hung callback was cut off before the fast one was served:\n{}",
        d.log()
    );
    let hung = got
        .iter()
        .filter(|g| g.method == "POST" && g.target.starts_with("/hang"))
        .count();
    assert_eq!(hung, 50, "every hung callback was tried first");
    // They are still found out, and moved aside.
    d.wait_log("did not answer within 8 s");
    d.stop();
}
