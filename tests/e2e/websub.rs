//! WebSub end to end: the real binary, and small HTTP servers on loopback
//! playing an external hub (recording publish pings) and subscribers of
//! the built-in hub (answering challenges, recording deliveries, or
//! hanging). Interoperation with an independent implementation (the
//! Python package `flask-websub`) runs when it is installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};

use crate::live::{column, http, Resp, TestDaemon, DEADLINE};
use crate::util::Workspace;

/// One request a test server received.
#[derive(Debug, Clone)]
pub struct Got {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Got {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    /// The query (GET) or form (POST) parameter `name`.
    pub(crate) fn param(&self, name: &str) -> Option<String> {
        let raw: Vec<u8> = if self.method == "GET" {
            self.target
                .split_once('?')
                .map_or(Vec::new(), |(_, q)| q.as_bytes().to_vec())
        } else {
            self.body.clone()
        };
        form_urlencoded::parse(&raw)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// What a test server answers: status and body for a request.
type Answer = Box<dyn Fn(&Got) -> Option<(u16, Vec<u8>)> + Send + Sync>;

/// A small HTTP/1.1 server on loopback recording every request; each
/// connection is answered (or, when the answer is `None`, held open
/// without a word, as a dead callback does) on its own thread.
pub struct Recorder {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Recorder {
    pub fn start(
        answer: impl Fn(&Got) -> Option<(u16, Vec<u8>)> + Send + Sync + 'static,
    ) -> Recorder {
        Recorder::start_at("127.0.0.1:0", answer)
    }

    /// As [`Recorder::start`], listening on `bind` (a loopback address).
    pub fn start_at(
        bind: &str,
        answer: impl Fn(&Got) -> Option<(u16, Vec<u8>)> + Send + Sync + 'static,
    ) -> Recorder {
        let l = TcpListener::bind(bind).expect("bind test server");
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (got2, answer): (_, Arc<Answer>) = (Arc::clone(&got), Arc::new(Box::new(answer)));
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let (got, answer) = (Arc::clone(&got2), Arc::clone(&answer));
                std::thread::spawn(move || serve_one(s, &got, &answer));
            }
        });
        Recorder { addr, got }
    }

    /// A subscriber: echoes `hub.challenge` on GET, 200 on POST.
    pub fn subscriber() -> Recorder {
        Recorder::start(echo)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Requests with `method`.
    pub fn of(&self, method: &str) -> Vec<Got> {
        self.all()
            .into_iter()
            .filter(|g| g.method == method)
            .collect()
    }

    /// Waits until `ok` holds of what was received; returns that.
    pub fn wait(&self, what: &str, ok: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let all = self.all();
            if ok(&all) {
                return all;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what} not seen within {DEADLINE:?}; received:\n{all:#?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A subscriber's answer: the challenge echoed on GET, 200 on POST.
pub fn echo(g: &Got) -> Option<(u16, Vec<u8>)> {
    if g.method == "GET" {
        Some((
            200,
            g.param("hub.challenge").unwrap_or_default().into_bytes(),
        ))
    } else {
        Some((200, b"thanks".to_vec()))
    }
}

fn serve_one(s: TcpStream, got: &Mutex<Vec<Got>>, answer: &Answer) {
    let _ = s.set_read_timeout(Some(DEADLINE));
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let g = Got {
        method,
        target,
        headers,
        body,
        at: Instant::now(),
    };
    got.lock().unwrap().push(g.clone());
    let mut s = r.into_inner();
    match answer(&g) {
        Some((status, body)) => {
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
        // Dead: hold the connection without a word until the client gives up.
        None => {
            let mut sink = [0u8; 64];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        }
    }
}

/// POSTs a form to the daemon's hub.
pub(crate) fn post_form(d: &TestDaemon, pairs: &[(&str, &str)]) -> Resp {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    post_raw(d.addr, "application/x-www-form-urlencoded", body.as_bytes())
}

pub(crate) fn post_raw(addr: SocketAddr, content_type: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let head = format!(
        "POST /websub HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A large body may be refused before it is all sent.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    crate::live::parse_response(&raw, false)
}

fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

pub(crate) fn col(category: &str, title: &str, day: u32) -> String {
    column(
        &format!("May {day}, 2025, 9 a.m."),
        category,
        title,
        &format!("Body of {title}."),
    )
}

/// The stored subscriptions (state/websub.json and the changes in
/// state/websub.journal that follow its generation), as (callback,
/// secret), in the order of the file then of the journal.
pub(crate) fn stored(ws: &Workspace) -> Vec<(String, Option<String>)> {
    stored_values(ws)
        .iter()
        .map(|s| {
            (
                s["callback"].as_str().unwrap().to_string(),
                s["secret"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The stored subscriptions as JSON objects (see [`stored`]).
pub(crate) fn stored_values(ws: &Workspace) -> Vec<serde_json::Value> {
    let key = |s: &serde_json::Value| {
        (
            s["route"].as_str().unwrap_or("").to_string(),
            s["callback"].as_str().unwrap_or("").to_string(),
        )
    };
    let mut subs: Vec<serde_json::Value> = Vec::new();
    let mut generation = 0;
    if let Ok(text) = std::fs::read_to_string(ws.path("state/websub.json")) {
        let v: serde_json::Value = serde_json::from_str(&text).expect("websub.json is JSON");
        generation = v["generation"].as_u64().unwrap_or(0);
        subs = v["subscriptions"].as_array().expect("a list").clone();
    }
    let journal = std::fs::read_to_string(ws.path("state/websub.journal")).unwrap_or_default();
    let mut lines = journal.lines();
    let follows = lines
        .next()
        .and_then(|h| serde_json::from_str::<serde_json::Value>(h).ok())
        .is_some_and(|h| h["generation"].as_u64() == Some(generation));
    if follows {
        for l in lines {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                break;
            };
            if let Some(s) = v.get("put") {
                match subs.iter_mut().find(|o| key(o) == key(s)) {
                    Some(o) => *o = s.clone(),
                    None => subs.push(s.clone()),
                }
            } else if let Some(d) = v.get("del") {
                subs.retain(|o| key(o) != key(d));
            }
        }
    }
    subs
}

/// Waits until the stored subscriptions satisfy `ok`.
pub(crate) fn wait_stored(
    d: &TestDaemon,
    what: &str,
    ok: impl Fn(&[(String, Option<String>)]) -> bool,
) {
    let start = Instant::now();
    while !ok(&stored(&d.ws)) {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: stored {:?}\nlog:\n{}",
            stored(&d.ws),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) const TOPIC: &str = "https://news.example.org/feed.json";

/// Feeds name their hubs and themselves in the body and in `Link`
/// headers (also on a 304); the index names them as `<link>`s.
#[test]
fn feeds_advertise_hubs() {
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nhubs = [\"https://hub.example/\"]\n",
    );
    let link = "<https://news.example.org/websub>; rel=\"hub\", <https://hub.example/>; rel=\"hub\", <https://news.example.org/rss.xml>; rel=\"self\"";
    let r = d.get("/rss.xml");
    assert_eq!(r.header("link"), link);
    assert!(
        r.text()
            .contains("<atom:link href=\"https://news.example.org/websub\" rel=\"hub\"/>"),
        "{}",
        r.text()
    );
    let tag = r.header("etag").to_string();
    let r304 = d.request("GET", "/rss.xml", &[("If-None-Match", &tag)]);
    assert_eq!((r304.status, r304.header("link")), (304, link));
    let atom = d.get("/categories/news/atom.xml");
    assert!(atom
        .header("link")
        .ends_with("<https://news.example.org/categories/news/atom.xml>; rel=\"self\""));
    assert!(atom
        .text()
        .contains("<link href=\"https://hub.example/\" rel=\"hub\"/>"));
    let json: serde_json::Value = serde_json::from_slice(&d.get("/feed.json").body).unwrap();
    assert_eq!(json["hubs"][0]["url"], "https://news.example.org/websub");
    assert_eq!(json["hubs"][1]["type"], "WebSub");
    let index = d.get("/").text();
    assert!(
        index.contains("<link rel=\"hub\" href=\"https://news.example.org/websub\">"),
        "{index}"
    );
    d.stop();
}

/// After a publish, each external hub gets one `hub.mode=publish` ping per
/// feed whose bytes changed (topic in `hub.url` and `hub.topic`), none for
/// feeds that did not change, and a ping answered 500 is retried; the
/// failure is logged once and the recovery once.
#[test]
fn publish_pings_changed_topics_only() {
    let first = Arc::new(Mutex::new(true));
    let hub = Recorder::start(move |_| {
        let mut f = first.lock().unwrap();
        Some(if std::mem::replace(&mut *f, false) {
            (500, b"try later".to_vec())
        } else {
            (204, Vec::new())
        })
    });
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    ws.write("content/b.txt", col("Sport", "B", 2));
    let d = TestDaemon::start(
        ws,
        &format!(
            "[websub]\nhubs = [\"{}\"]\nretry_backoff_ms = 50\n",
            hub.url("/hub")
        ),
    );
    d.wait_titles(&["B", "A"]);
    assert!(hub.all().is_empty(), "no ping for the first publish");
    // A rewrite with the same bytes changes no feed: no ping.
    d.ws.write("content/b.txt", col("Sport", "B", 2));
    d.ws.write("content/c.txt", col("News", "C", 3));
    d.wait_titles(&["C", "B", "A"]);
    let want: Vec<String> = ["rss.xml", "atom.xml", "feed.json"]
        .iter()
        .flat_map(|f| {
            [
                format!("https://news.example.org/{f}"),
                format!("https://news.example.org/categories/news/{f}"),
            ]
        })
        .collect();
    // Six topics, the first one twice (answered 500, then retried).
    let got = hub.wait("6 topics pinged, one retried", |g| g.len() >= 7);
    // Then a change in the other category: its pings follow those, and
    // nothing came in between.
    d.ws.write("content/d.txt", col("Sport", "D", 4));
    let all = hub.wait("6 more topics", |g| g.len() >= 13);
    assert_eq!(all.len(), 13, "{all:#?}");
    let later: Vec<String> = all[7..]
        .iter()
        .filter_map(|g| g.param("hub.topic"))
        .collect();
    assert!(later.iter().all(|t| !t.contains("/news/")), "{later:?}");
    assert_eq!(later.iter().filter(|t| t.contains("/sport/")).count(), 3);
    let got = &got[..7];
    let mut topics: Vec<String> = Vec::new();
    for g in got {
        assert_eq!((g.method.as_str(), g.target.as_str()), ("POST", "/hub"));
        assert_eq!(
            g.header("content-type"),
            "application/x-www-form-urlencoded"
        );
        assert_eq!(g.param("hub.mode").as_deref(), Some("publish"));
        let t = g.param("hub.topic").expect("hub.topic");
        assert_eq!(g.param("hub.url").as_deref(), Some(t.as_str()));
        topics.push(t);
    }
    // The one answered 500 is pinged again (pings go out concurrently, so
    // which one came first is not fixed).
    let twice: Vec<&String> = topics
        .iter()
        .filter(|t| topics.iter().filter(|u| u == t).count() == 2)
        .collect();
    assert_eq!(twice.len(), 2, "the 500 is retried: {topics:?}");
    topics.sort();
    topics.dedup();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(topics, want_sorted, "only feeds whose bytes changed");
    let log = d.stop();
    assert_eq!(
        log.matches("publish ping for").count(),
        1,
        "one failure line:\n{log}"
    );
    assert_eq!(
        log.matches("accepts publish pings again").count(),
        1,
        "{log}"
    );
}

/// Feeds that changed while Herald was not running (an article added
/// meanwhile) are pinged at start-up, those that did not are not; a first
/// start, with no feeds written before, pings nothing.
#[test]
fn start_up_pings_feeds_changed_while_stopped() {
    let hub = Recorder::start(|_| Some((204, Vec::new())));
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    ws.write("content/b.txt", col("Sport", "B", 2));
    let cfg = format!("[websub]\nhubs = [\"{}\"]\n", hub.url("/hub"));
    let d = TestDaemon::start(ws, &cfg);
    d.wait_titles(&["B", "A"]);
    let (_, ws) = d.stop_keep();
    assert!(hub.all().is_empty(), "a first start pings nothing");

    ws.write("content/c.txt", col("News", "C", 3));
    let d = TestDaemon::start(ws, &cfg);
    d.wait_titles(&["C", "B", "A"]);
    let got = hub.wait("6 topics pinged at start-up", |g| g.len() >= 6);
    let mut topics: Vec<String> = got.iter().filter_map(|g| g.param("hub.topic")).collect();
    topics.sort();
    let mut want: Vec<String> = ["rss.xml", "atom.xml", "feed.json"]
        .iter()
        .flat_map(|f| {
            [
                format!("https://news.example.org/{f}"),
                format!("https://news.example.org/categories/news/{f}"),
            ]
        })
        .collect();
    want.sort();
    assert_eq!(topics, want, "the main and News feeds, not Sport's");
    let (_, ws) = d.stop_keep();

    // Nothing changed while stopped: the next pings are only those of an
    // edit made after start-up.
    let d = TestDaemon::start(ws, &cfg);
    d.wait_titles(&["C", "B", "A"]);
    d.ws.write("content/d.txt", col("Sport", "D", 4));
    let all = hub.wait("6 more topics", |g| g.len() >= 12);
    let later: Vec<String> = all[6..]
        .iter()
        .filter_map(|g| g.param("hub.topic"))
        .collect();
    assert!(later.iter().all(|t| !t.contains("/news/")), "{later:?}");
    assert_eq!(
        later.iter().filter(|t| t.contains("/sport/")).count(),
        3,
        "{later:?}"
    );
    d.stop();
}

/// A subscriber of the built-in hub: 202, then a GET challenge it must
/// echo (its own query kept), then stored; an added article is POSTed as
/// the exact new feed with its media type, Link header and a valid HMAC.
/// A re-subscribe replaces the secret (one subscription, one delivery);
/// subscriptions survive a restart; after unsubscribing, or once a lease
/// has ended, nothing more arrives and the subscription is gone.
#[test]
fn builtin_hub_subscribe_deliver_resubscribe_unsubscribe_expire() {
    let sub = Recorder::subscriber();
    let control = Recorder::subscriber();
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let cfg = "[websub]\nbuiltin = true\nallow_private_callbacks = true\n";
    let d = TestDaemon::start(ws, cfg);
    let cb = sub.url("/cb?who=me");
    let r = post_form(
        &d,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", TOPIC),
            ("hub.callback", &cb),
            ("hub.lease_seconds", "3600"),
            ("hub.secret", "s3cret"),
            ("extra", "ignored"),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let got = sub.wait("the challenge", |g| !g.is_empty());
    let ch = &got[0];
    assert_eq!(ch.method, "GET");
    assert!(ch.target.starts_with("/cb?who=me&"), "{}", ch.target);
    assert_eq!(ch.param("hub.mode").as_deref(), Some("subscribe"));
    assert_eq!(ch.param("hub.topic").as_deref(), Some(TOPIC));
    assert_eq!(ch.param("hub.lease_seconds").as_deref(), Some("3600"));
    assert!(ch.param("hub.challenge").is_some_and(|c| c.len() >= 32));
    wait_stored(&d, "subscribed", |s| s.len() == 1);
    assert_eq!(stored(&d.ws), vec![(cb.clone(), Some("s3cret".into()))]);
    // The readership figures on the admin listener count it.
    let stats: serde_json::Value = serde_json::from_slice(&d.admin_get("/stats").body).unwrap();
    assert_eq!(
        stats["days"][0]["feeds"]["/feed.json"]["websub"], 1,
        "{stats}"
    );
    assert_eq!(stats["days"][0]["websub"], 1, "{stats}");

    d.ws.write("content/b.txt", col("News", "B", 2));
    let feed = d.wait_titles(&["B", "A"]);
    let posts = sub.wait("a delivery", |g| g.iter().any(|g| g.method == "POST"));
    let p = posts.iter().find(|g| g.method == "POST").unwrap();
    let body = d.get("/feed.json").body;
    assert_eq!(p.body, body, "the exact new feed");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&p.body).unwrap(),
        feed
    );
    assert_eq!(
        p.header("content-type"),
        "application/feed+json; charset=utf-8"
    );
    assert_eq!(
        p.header("link"),
        "<https://news.example.org/websub>; rel=\"hub\", <https://news.example.org/feed.json>; rel=\"self\""
    );
    assert_eq!(p.header("x-hub-signature"), signature("s3cret", &body));

    // Re-subscribe with a new secret: still one subscription.
    let r = post_form(
        &d,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", TOPIC),
            ("hub.callback", &cb),
            ("hub.secret", "n3w"),
        ],
    );
    assert_eq!(r.status, 202);
    wait_stored(&d, "secret replaced", |s| {
        s == [(cb.clone(), Some("n3w".into()))]
    });

    // Survives a restart.
    let (_, ws) = d.stop_keep();
    let d = TestDaemon::start(ws, cfg);
    d.ws.write("content/c.txt", col("News", "C", 3));
    d.wait_titles(&["C", "B", "A"]);
    let posts = sub.wait("a second delivery", |g| {
        g.iter().filter(|g| g.method == "POST").count() >= 2
    });
    let body = d.get("/feed.json").body;
    let p = posts.iter().rfind(|g| g.method == "POST").unwrap();
    assert_eq!(p.body, body);
    assert_eq!(p.header("x-hub-signature"), signature("n3w", &body));

    // A control subscriber, then unsubscribe the first one; and a third
    // with a one-second lease.
    let ctl = control.url("/ctl");
    assert_eq!(
        post_form(
            &d,
            &[
                ("hub.mode", "subscribe"),
                ("hub.topic", TOPIC),
                ("hub.callback", &ctl)
            ]
        )
        .status,
        202
    );
    let short = Recorder::subscriber();
    let short_cb = short.url("/short");
    assert_eq!(
        post_form(
            &d,
            &[
                ("hub.mode", "subscribe"),
                ("hub.topic", TOPIC),
                ("hub.callback", &short_cb),
                ("hub.lease_seconds", "1")
            ]
        )
        .status,
        202
    );
    assert_eq!(
        post_form(
            &d,
            &[
                ("hub.mode", "unsubscribe"),
                ("hub.topic", TOPIC),
                ("hub.callback", &cb)
            ]
        )
        .status,
        202
    );
    let got = sub.wait("the unsubscribe challenge", |g| {
        g.iter()
            .any(|g| g.param("hub.mode").as_deref() == Some("unsubscribe"))
    });
    let un = got
        .iter()
        .find(|g| g.param("hub.mode").as_deref() == Some("unsubscribe"))
        .unwrap();
    assert_eq!(un.param("hub.lease_seconds"), None);
    wait_stored(&d, "unsubscribed, control and short stored", |s| {
        s.len() == 2 && !s.iter().any(|(c, _)| *c == cb)
    });
    // Wait for the short lease to end (its expiry is in whole seconds).
    let expires = stored_values(&d.ws)
        .iter()
        .find(|s| s["callback"] == short_cb.as_str())
        .and_then(|s| s["expires"].as_u64())
        .expect("the short lease is stored");
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = Instant::now();
    while unix() < expires {
        assert!(start.elapsed() < DEADLINE, "the clock stands still");
        std::thread::sleep(Duration::from_millis(20));
    }
    let posts_before = sub.of("POST").len();
    d.ws.write("content/d.txt", col("News", "D", 4));
    d.wait_titles(&["D", "C", "B", "A"]);
    let got = control.wait("control gets the change", |g| {
        g.iter().any(|g| g.method == "POST")
    });
    let p = got.iter().find(|g| g.method == "POST").unwrap();
    assert_eq!(p.header("x-hub-signature"), "", "no secret, no signature");
    wait_stored(&d, "the expired lease removed", |s| {
        s.len() == 1 && s[0].0 == ctl
    });
    // Both were out of the store before the change was published, so
    // they were never queued.
    assert_eq!(
        sub.of("POST").len(),
        posts_before,
        "nothing after unsubscribing"
    );
    assert!(short.of("POST").is_empty(), "nothing after the lease ended");
    d.stop();
}

/// Bad and hostile requests get a 4xx naming the problem and store
/// nothing; callbacks on loopback, private, link-local addresses (by
/// literal or by name) are refused and never contacted; bodies over the
/// cap get 413; the hub is POST only; a client over the rate gets 429.
#[test]
fn hub_refuses_bad_requests() {
    let trap = Recorder::subscriber();
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nmax_request_bytes = 2048\nrequests_per_minute = 40\n",
    );
    let trap_port = trap.addr.port();
    let loopback = format!("http://127.0.0.1:{trap_port}/cb");
    let by_name = format!("http://localhost:{trap_port}/cb");
    let v6 = format!("http://[::1]:{trap_port}/cb");
    let mapped = format!("http://[::ffff:127.0.0.1]:{trap_port}/cb");
    let decimal = format!("http://2130706433:{trap_port}/cb");
    let big_secret = "s".repeat(200);
    let sub = |cb: &str| {
        vec![
            ("hub.mode", "subscribe".to_string()),
            ("hub.topic", TOPIC.to_string()),
            ("hub.callback", cb.to_string()),
        ]
    };
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "no mode",
            vec![
                ("hub.topic", TOPIC.into()),
                ("hub.callback", "https://a.example/".into()),
            ],
            400,
            "hub.mode is missing",
        ),
        (
            "no topic",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.callback", "https://a.example/".into()),
            ],
            400,
            "hub.topic is missing",
        ),
        (
            "no callback",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.topic", TOPIC.into()),
            ],
            400,
            "hub.callback is missing",
        ),
        (
            "bad mode",
            vec![
                ("hub.mode", "watch".into()),
                ("hub.topic", TOPIC.into()),
                ("hub.callback", "https://a.example/".into()),
            ],
            400,
            "not subscribe or unsubscribe",
        ),
        (
            "unknown topic",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.topic", "https://news.example.org/secret.xml".into()),
                ("hub.callback", "https://a.example/".into()),
            ],
            400,
            "not one of this site's feeds",
        ),
        (
            "another site",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.topic", "https://evil.example/rss.xml".into()),
                ("hub.callback", "https://a.example/".into()),
            ],
            400,
            "not one of this site's feeds",
        ),
        (
            "ftp callback",
            sub("ftp://a.example/x"),
            400,
            "not an http(s) URL",
        ),
        (
            "javascript callback",
            sub("javascript:alert(1)"),
            400,
            "not an http(s) URL",
        ),
        ("relative callback", sub("/cb"), 400, "not a URL"),
        (
            "loopback literal",
            sub(&loopback),
            400,
            "loopback address 127.0.0.1",
        ),
        ("loopback by name", sub(&by_name), 400, "loopback address"),
        ("IPv6 loopback", sub(&v6), 400, "loopback address ::1"),
        ("IPv4-mapped loopback", sub(&mapped), 400, "loopback"),
        (
            "decimal loopback",
            sub(&decimal),
            400,
            "loopback address 127.0.0.1",
        ),
        (
            "private",
            sub("http://10.1.2.3/cb"),
            400,
            "private address 10.1.2.3",
        ),
        (
            "link-local metadata",
            sub("http://169.254.169.254/latest"),
            400,
            "link-local",
        ),
        ("multicast", sub("http://224.0.0.1/cb"), 400, "multicast"),
    ];
    for (label, pairs, status, reason) in &cases {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = post_form(&d, &pairs);
        assert_eq!(r.status, *status, "{label}: {}", r.text());
        assert!(r.text().contains(reason), "{label}: {}", r.text());
    }
    let mut secret = sub("https://a.example/cb");
    secret.push(("hub.secret", big_secret));
    let pairs: Vec<(&str, &str)> = secret.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = post_form(&d, &pairs);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("hub.secret is 200 bytes"), "{}", r.text());
    let r = post_raw(
        d.addr,
        "application/x-www-form-urlencoded",
        &vec![b'a'; 100_000],
    );
    assert_eq!(r.status, 413, "{}", r.text());
    let r = post_raw(d.addr, "application/json", b"{}");
    assert_eq!(r.status, 415, "{}", r.text());
    let g = http(d.addr, "GET", "/websub", &[]);
    assert_eq!((g.status, g.header("allow")), (405, "POST"));
    assert!(
        trap.all().is_empty(),
        "a refused callback is never contacted"
    );
    assert!(stored(&d.ws).is_empty(), "nothing stored");
    // Over the rate: 429 from then on.
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(post_form(&d, &[("hub.mode", "subscribe")]).status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 429);
    let r = post_form(&d, &[]);
    assert!(r.text().contains("at most 40 a minute"), "{}", r.text());
    assert_eq!(d.get("/healthz").text(), "ok\n");
    d.stop();
}

/// A callback that accepts deliveries and never answers does not delay a
/// live subscriber's; past `max_subscriptions_per_host` a subscription
/// is refused with 403.
#[test]
fn dead_callback_does_not_delay_live_one() {
    let dead = Recorder::start(|g| if g.method == "GET" { echo(g) } else { None });
    let live = Recorder::subscriber();
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nallow_private_callbacks = true\nmax_subscriptions_per_host = 2\nrequest_timeout_secs = 8\nretries = 1\n",
    );
    for cb in [dead.url("/dead"), live.url("/live")] {
        assert_eq!(
            post_form(
                &d,
                &[
                    ("hub.mode", "subscribe"),
                    ("hub.topic", TOPIC),
                    ("hub.callback", &cb)
                ]
            )
            .status,
            202
        );
    }
    wait_stored(&d, "both stored", |s| s.len() == 2);
    let r = post_form(
        &d,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", TOPIC),
            ("hub.callback", &live.url("/third")),
        ],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("at most 2 per host"), "{}", r.text());
    let started = Instant::now();
    d.ws.write("content/b.txt", col("News", "B", 2));
    let got = live.wait("the live delivery", |g| {
        g.iter().any(|g| g.method == "POST")
    });
    let took = got.iter().find(|g| g.method == "POST").unwrap().at - started;
    dead.wait("the dead one was tried", |g| {
        g.iter().any(|g| g.method == "POST")
    });
    assert!(
        took < Duration::from_secs(4),
        "live delivery took {took:?} beside a dead callback"
    );
    d.stop();
}

/// A subscription whose callback name resolves to loopback when the
/// feed changes (stored while it pointed elsewhere: DNS rebinding), or
/// whose literal address is loopback, gets nothing: the address policy
/// is applied to the address connected to, at delivery time.
#[test]
fn delivery_time_address_check() {
    let trap = Recorder::subscriber();
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let port = trap.addr.port();
    let far = 4_102_444_800u64; // 2100-01-01
    ws.write(
        "state/websub.json",
        format!(
            r#"{{"version":1,"subscriptions":[
              {{"route":"/feed.json","topic":"{TOPIC}","callback":"http://localhost:{port}/name","expires":{far}}},
              {{"route":"/feed.json","topic":"{TOPIC}","callback":"http://127.0.0.1:{port}/literal","expires":{far}}}]}}"#
        ),
    );
    let mut d = TestDaemon::start(ws, "[websub]\nbuiltin = true\nretries = 0\n");
    d.ws.write("content/b.txt", col("News", "B", 2));
    d.wait_titles(&["B", "A"]);
    d.wait_log("to http://localhost:");
    d.wait_log("to http://127.0.0.1:");
    let log = d.stop();
    assert!(
        trap.all().is_empty(),
        "nothing reached loopback: {:?}",
        trap.all()
    );
    assert!(
        log.contains("forbidden addresses (loopback address"),
        "{log}"
    );
    assert!(
        log.contains("callback refused: loopback address 127.0.0.1"),
        "{log}"
    );
}

/// The independent peer (`tests/interop/flask_websub_peer.py`, on the
/// Python package `flask-websub`), when it can run: its output lines as
/// they come. Skipped with a printed reason otherwise (under CI, where
/// `.ci/run` installs it, a missing package fails the test).
struct Peer {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    fn available() -> bool {
        let ok = std::process::Command::new("python3")
            .args(["-c", "import flask_websub, celery"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let msg = "python3 with flask-websub and celery is not available: install them with `python3 -m pip install flask-websub celery`";
            if std::env::var_os("CI").is_some() {
                panic!("{msg} (CI is set, so this check may not be skipped)");
            }
            eprintln!("SKIPPED: {msg}");
        }
        ok
    }

    fn start(mode: &str, port: u16, url: &str) -> Peer {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/flask_websub_peer.py"
        );
        let mut child = std::process::Command::new("python3")
            .args([script, mode, &port.to_string(), url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the flask-websub peer");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = Arc::clone(&lines);
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(l);
            }
        });
        Peer { child, lines }
    }

    /// Waits for a line starting with `prefix`; fails on an ERROR line.
    fn wait(&self, prefix: &str) -> String {
        let start = Instant::now();
        loop {
            let lines = self.lines.lock().unwrap().clone();
            if let Some(e) = lines.iter().find(|l| l.starts_with("ERROR")) {
                panic!("flask-websub peer: {e}\n{lines:#?}");
            }
            if let Some(l) = lines.iter().find(|l| l.starts_with(prefix)) {
                return l.clone();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {prefix} from the peer: {lines:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound, then released for the caller to use).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// flask-websub's subscriber discovers the built-in hub from a feed's
/// `Link` headers, subscribes (answering Herald's challenge) and receives
/// the new feed when an article is added.
#[test]
fn interop_flask_websub_subscriber() {
    if !Peer::available() {
        return;
    }
    let port = free_port();
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(
        ws,
        &format!(
            "base_url = \"http://127.0.0.1:{port}/\"\nlisten = \"127.0.0.1:{port}\"\n[websub]\nbuiltin = true\nallow_private_callbacks = true\n"
        ),
    );
    let feed = format!("http://127.0.0.1:{port}/atom.xml");
    let peer = Peer::start("subscriber", free_port(), &feed);
    let found = peer.wait("DISCOVERED");
    assert_eq!(
        found,
        format!("DISCOVERED http://127.0.0.1:{port}/websub {feed}")
    );
    peer.wait("SUBSCRIBED");
    wait_stored(&d, "the peer's subscription", |s| s.len() == 1);
    d.ws.write("content/b.txt", col("News", "B", 2));
    d.wait_titles(&["B", "A"]);
    let body = d.get("/atom.xml").body;
    let got = peer.wait("NOTIFIED");
    assert_eq!(
        got,
        format!("NOTIFIED {} {}", sha256_hex(&body), body.len())
    );
    d.stop();
}

/// Herald's publish pings reach flask-websub's hub: the hub, told by
/// nothing else, fetches the feed and pushes it to its own subscriber.
#[test]
fn interop_flask_websub_hub() {
    if !Peer::available() {
        return;
    }
    let (port, hub_port) = (free_port(), free_port());
    let topic = format!("http://127.0.0.1:{port}/rss.xml");
    let peer = Peer::start("hub", hub_port, &topic);
    peer.wait("SUBSCRIBED");
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let d = TestDaemon::start(
        ws,
        &format!(
            "base_url = \"http://127.0.0.1:{port}/\"\nlisten = \"127.0.0.1:{port}\"\n[websub]\nhubs = [\"http://127.0.0.1:{hub_port}/hub\"]\n"
        ),
    );
    d.ws.write("content/b.txt", col("News", "B", 2));
    d.wait_titles(&["B", "A"]);
    let body = d.get("/rss.xml").body;
    let got = peer.wait("NOTIFIED");
    assert_eq!(
        got,
        format!("NOTIFIED {} {}", sha256_hex(&body), body.len())
    );
    d.stop();
}

/// An https callback is spoken to over TLS with its certificate checked
/// (against the webpki roots): a self-signed one is refused during the
/// handshake, named in the log, and nothing is stored.
#[test]
fn https_callback_certificate_checked() {
    if !crate::util::have_tool("openssl", &["version"], "apt-get install openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(made.success(), "openssl made no certificate");
    let port = free_port();
    // A TLS server that would echo the challenge if the handshake worked.
    let script = format!(
        r#"
import http.server, ssl, urllib.parse, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        c = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("hub.challenge", [""])[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(c))); self.end_headers(); self.wfile.write(c)
s = http.server.HTTPServer(("127.0.0.1", {port}), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("{}", "{}")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print("READY", flush=True)
s.serve_forever()
"#,
        cert.display(),
        key.display()
    );
    let mut py = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn python3");
    let mut ready = String::new();
    BufReader::new(py.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "READY");
    let ws = Workspace::new();
    ws.write("content/a.txt", col("News", "A", 1));
    let mut d = TestDaemon::start(
        ws,
        "[websub]\nbuiltin = true\nallow_private_callbacks = true\n",
    );
    let cb = format!("https://127.0.0.1:{port}/cb");
    let r = post_form(
        &d,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", TOPIC),
            ("hub.callback", &cb),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let line = d.wait_log("not verified");
    let _ = py.kill();
    let _ = py.wait();
    assert!(line.contains("certificate"), "{line}");
    assert!(stored(&d.ws).is_empty());
    d.stop();
}
