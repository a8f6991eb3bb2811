//! Knowing your readers: aggregators' reported subscribers, distinct
//! direct pollers and the admin listener, over real sockets against the
//! real binary — `/stats` and `/metrics` only on the admin address, and
//! the figures kept across a restart.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};

use crate::live::{column, http, parse_response, Resp, TestDaemon, DEADLINE};
use crate::util::{fixtures, Workspace};

fn ws() -> Workspace {
    let ws = Workspace::new();
    for (name, cat, day) in [("a", "World", 1), ("b", "Sport", 2)] {
        ws.write(
            &format!("content/{name}.txt"),
            column(
                &format!("May {day}, 2025, noon"),
                cat,
                &format!("Title {name}"),
                "Body.",
            ),
        );
    }
    ws
}

/// (aggregator, count, User-Agent) of the fixture file, reporting ones only.
fn reporting_user_agents() -> Vec<(String, u64, String)> {
    let text = std::fs::read_to_string(fixtures().join("user_agents.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let (name, count, ua) = (f.next()?, f.next()?, f.next()?);
            Some((name.to_string(), count.parse().ok()?, ua.to_string()))
        })
        .collect()
}

/// GET `path` from the client address `from` (any of 127.0.0.0/8), with
/// extra headers.
fn get_from(from: Ipv4Addr, to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    rustix::net::bind(&fd, &SocketAddrV4::new(from, 0)).unwrap();
    rustix::net::connect(&fd, &to).unwrap();
    let mut s = TcpStream::from(fd);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&raw, false)
}

fn stats(d: &TestDaemon) -> serde_json::Value {
    let r = d.admin_get("/stats");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/json");
    serde_json::from_slice(&r.body).expect("/stats is JSON")
}

/// Requests with real aggregator `User-Agent` strings (the fixtures) give
/// each aggregator's latest figure per feed, on `/stats` and `/metrics`
/// of the admin listener; an absurd figure is ignored; an aggregator's
/// fetch is no direct poller.
#[test]
fn aggregator_user_agents_are_counted() {
    let d = TestDaemon::start(ws(), "");
    let uas = reporting_user_agents();
    assert!(uas.len() >= 15);
    for (_, _, ua) in &uas {
        for feed in ["/rss.xml", "/categories/world/atom.xml"] {
            let r = d.request("GET", feed, &[("User-Agent", ua)]);
            assert_eq!(r.status, 200, "{feed}");
        }
    }
    // Feedly's figure changes; the latest counts. An absurd one is ignored.
    for n in ["1,234,568", "99999999999"] {
        let ua = format!(
            "Feedly/1.0 (+http://www.feedly.com/fetcher.html; {n} subscribers; like FeedFetcher-Google)"
        );
        d.request("GET", "/rss.xml", &[("User-Agent", &ua)]);
    }
    let v = stats(&d);
    let today = &v["days"][0];
    let rss = &today["feeds"]["/rss.xml"];
    let mut want = std::collections::BTreeMap::new();
    for (name, n, _) in &uas {
        want.insert(name.clone(), *n);
    }
    let cat = &today["feeds"]["/categories/world/atom.xml"]["aggregators"];
    for (name, n) in &want {
        assert_eq!(cat[name], *n, "{name} on the category feed: {cat}");
    }
    want.insert("Feedly".into(), 1_234_568);
    for (name, n) in &want {
        assert_eq!(rss["aggregators"][name], *n, "{name}: {rss}");
    }
    assert_eq!(rss["aggregators"].as_object().unwrap().len(), want.len());
    assert_eq!(
        rss["direct_pollers"], 0,
        "aggregators are no direct pollers"
    );
    assert_eq!(
        rss["aggregator_subscribers"].as_u64().unwrap(),
        want.values().sum::<u64>()
    );
    let m = d.admin_get("/metrics").text();
    assert!(
        m.contains(
            "herald_feed_aggregator_subscribers{feed=\"/rss.xml\",aggregator=\"Feedly\"} 1234568\n"
        ),
        "{m}"
    );
    assert!(
        m.contains("herald_feed_aggregator_subscribers{feed=\"/rss.xml\",aggregator=\"The Old Reader\"} 3\n"),
        "{m}"
    );
    let page = d.admin_get("/stats.html");
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let html = page.text();
    assert!(
        html.contains("<svg") && html.contains("The Old Reader: 3"),
        "{html}"
    );
    assert!(
        !html.contains("<script") && !html.contains("src="),
        "{html}"
    );
    d.stop();
}

/// 300 distinct client addresses from 127.0.0.0/8, each polling a feed
/// several times (200 and 304 alike), are estimated within 5 % as direct
/// pollers of that feed and of all feeds; the figures survive a restart,
/// and the same clients polling again after it are not counted twice.
#[test]
fn distinct_pollers_survive_restart() {
    let d = TestDaemon::start(ws(), "");
    let n = 300u32;
    let addr = |i: u32| Ipv4Addr::from(0x7f01_0000 + i);
    let etag = d.get("/atom.xml").header("etag").to_string();
    let reader = [(
        "User-Agent",
        "NetNewsWire (RSS Reader; https://netnewswire.com/)",
    )];
    for i in 0..n {
        let r = get_from(addr(i), d.addr, "/atom.xml", &reader);
        assert_eq!(r.status, 200);
    }
    for i in 0..n / 2 {
        // A conditional poll is a poll too, and the same client again.
        let r = get_from(addr(i), d.addr, "/atom.xml", &[("If-None-Match", &etag)]);
        assert_eq!(r.status, 304);
    }
    let within =
        |got: u64, want: u32| (got as f64 - f64::from(want)).abs() <= 0.05 * f64::from(want);
    let v = stats(&d);
    let got = v["days"][0]["feeds"]["/atom.xml"]["direct_pollers"]
        .as_u64()
        .unwrap();
    assert!(within(got, n), "{n} addresses estimated as {got}");
    let all = v["days"][0]["direct_pollers"].as_u64().unwrap();
    assert!(within(all, n + 1), "{} in all estimated as {all}", n + 1);
    let m = d.admin_get("/metrics").text();
    assert!(
        m.contains(&format!(
            "herald_feed_direct_pollers{{feed=\"/atom.xml\"}} {got}\n"
        )),
        "{m}"
    );

    let (log, ws) = d.stop_keep();
    assert!(!log.contains("stats:"), "no stats error: {log}");
    let d = TestDaemon::start(ws, "");
    assert_eq!(stats(&d)["days"], v["days"], "figures survive a restart");
    for i in 0..n {
        get_from(addr(i), d.addr, "/atom.xml", &reader);
    }
    let again = stats(&d)["days"][0]["feeds"]["/atom.xml"]["direct_pollers"]
        .as_u64()
        .unwrap();
    assert_eq!(again, got, "the same clients are not counted twice");
    d.stop();
}

/// `/metrics`, `/stats` and the page are not reachable on the public
/// listener (404) but are on the admin one, which serves nothing else;
/// with `admin_listen = "off"` they are served nowhere and feeds are
/// still counted and saved.
#[test]
fn admin_routes_only_on_the_admin_listener() {
    let d = TestDaemon::start(ws(), "");
    let admin = d.admin.expect("admin address logged");
    assert_ne!(admin, d.addr);
    for p in [
        "/metrics",
        "/stats",
        "/stats.html",
        "/stats/",
        "/stats.json",
    ] {
        let r = d.get(p);
        assert_eq!(r.status, 404, "public {p}: {}", r.text());
        assert!(!r.text().contains("herald_"), "public {p}");
        let r = http(admin, "GET", p, &[]);
        assert_eq!(r.status, 200, "admin {p}");
        // Never stored, never sniffed as anything but what it says.
        assert_eq!(r.header("cache-control"), "no-store", "admin {p}");
        assert_eq!(r.header("x-content-type-options"), "nosniff", "admin {p}");
    }
    assert!(d
        .admin_get("/metrics")
        .text()
        .contains("herald_articles 2\n"));
    assert_eq!(d.get("/healthz").status, 200, "/healthz stays public");
    assert_eq!(d.admin_get("/healthz").status, 200);
    assert_eq!(d.admin_get("/rss.xml").status, 404, "no feeds on admin");
    assert_eq!(http(admin, "POST", "/stats", &[]).status, 405);
    // A browser sent to the loopback listener by a rebound DNS name names
    // that name as Host: refused, so no page of another site reads it.
    let mut c = std::net::TcpStream::connect(admin).unwrap();
    std::io::Write::write_all(
        &mut c,
        b"GET /stats HTTP/1.1\r\nHost: rebound.example:9190\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut c, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("\"days\""), "{answer}");
    let head = http(admin, "HEAD", "/stats", &[]);
    let get = d.admin_get("/stats");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), get.body.len().to_string());
    let (_, ws) = d.stop_keep();

    let d = TestDaemon::start(ws, "admin_listen = \"off\"\n");
    assert_eq!(d.admin, None, "{}", d.log());
    assert_eq!(d.get("/metrics").status, 404);
    d.request(
        "GET",
        "/rss.xml",
        &[("User-Agent", "Feedbin - 7 subscribers")],
    );
    let (_, ws) = d.stop_keep();
    let saved = ws.read("state/stats.json");
    assert!(saved.contains("\"Feedbin\":7"), "{saved}");
}

/// The figures are saved every `save_interval_secs` (not only at
/// shutdown): after a crash (SIGKILL), a restart shows what was counted
/// before the last save.
#[test]
fn figures_saved_periodically_survive_a_crash() {
    let d = TestDaemon::start(ws(), "[stats]\nsave_interval_secs = 1\n");
    let r = d.request(
        "GET",
        "/rss.xml",
        &[("User-Agent", "Feedbin - 12 subscribers")],
    );
    assert_eq!(r.status, 200);
    let path = d.ws.path("state/stats.json");
    crate::live::wait_until("stats.json saved with Feedbin's figure", || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.contains("\"Feedbin\":12"))
    });
    let d = TestDaemon::start(d.kill(), "[stats]\nsave_interval_secs = 1\n");
    assert_eq!(
        stats(&d)["days"][0]["feeds"]["/rss.xml"]["aggregators"]["Feedbin"],
        12
    );
    d.stop();
}

/// Invented `User-Agent`s claiming millions of subscribers go to a
/// separate, labelled bucket that no total counts, and cannot crowd out
/// a known aggregator; a known aggregator's figure reported from one
/// address is not replaced by another address's.
#[test]
fn invented_aggregators_cannot_squat_the_figures() {
    let d = TestDaemon::start(ws(), "");
    let feedly = |n: &str| {
        format!("Feedly/1.0 (+http://www.feedly.com/fetcher.html; {n} subscribers; like FeedFetcher-Google)")
    };
    let real = Ipv4Addr::new(127, 0, 0, 1);
    let r = get_from(
        real,
        d.addr,
        "/rss.xml",
        &[("User-Agent", &feedly("1,234"))],
    );
    assert_eq!(r.status, 200);
    for i in 0..32u8 {
        let ua = format!("Squatter{i}/1.0 (9,999,999 subscribers)");
        let r = get_from(
            Ipv4Addr::new(127, 2, 0, i),
            d.addr,
            "/rss.xml",
            &[("User-Agent", &ua)],
        );
        assert_eq!(r.status, 200);
    }
    get_from(
        real,
        d.addr,
        "/rss.xml",
        &[("User-Agent", &feedly("1,240"))],
    );
    // Another address claiming to be Feedly with a smaller figure.
    get_from(
        Ipv4Addr::new(127, 3, 0, 1),
        d.addr,
        "/rss.xml",
        &[("User-Agent", &feedly("1"))],
    );
    let v = stats(&d);
    let today = &v["days"][0];
    let rss = &today["feeds"]["/rss.xml"];
    assert_eq!(
        rss["aggregators"],
        serde_json::json!({"Feedly": 1240}),
        "{rss}"
    );
    assert_eq!(rss["aggregator_subscribers"], 1240, "{rss}");
    assert_eq!(today["aggregator_subscribers"], 1240, "{today}");
    let unverified = rss["unrecognised_aggregators"]
        .as_object()
        .expect("the bucket");
    assert_eq!(unverified.len(), 32, "{rss}");
    assert_eq!(unverified["Squatter7"], 9_999_999);
    let m = d.admin_get("/metrics").text();
    assert!(!m.contains("Squatter"), "not among the aggregators: {m}");
    let html = d.admin_get("/stats.html").text();
    assert!(html.contains("unrecognised"), "{html}");
    // Kept across a restart, in their own buckets.
    let (_, ws) = d.stop_keep();
    let d = TestDaemon::start(ws, "");
    let again = stats(&d);
    assert_eq!(again["days"][0]["feeds"]["/rss.xml"], *rss);
    d.stop();
}

/// `/stats.html` reads on a phone: a viewport that follows the device,
/// the table in a container that scrolls sideways instead of the page,
/// the chart's legend as text outside the scaled drawing, and each feed
/// named as a person reads it — the label's own name, its kind and
/// format, the path decoded — rather than percent-encoded.
#[test]
fn stats_page_reads_on_a_phone() {
    let ws = Workspace::new();
    ws.write(
        "content/kyiv.md",
        "---\ntitle: Kyiv\ndate: 2025-05-01T10:00:00Z\ncategories: [Київ]\ntags: [\"Élections 2025\"]\n---\nBody.\n",
    );
    let d = TestDaemon::start(ws, "");
    let feedly = [(
        "User-Agent",
        "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 12 subscribers; like FeedFetcher-Google)",
    )];
    for feed in [
        "/categories/%D0%BA%D0%B8%D1%97%D0%B2/atom.xml",
        "/tags/%C3%A9lections-2025/rss.xml",
        "/rss.xml",
    ] {
        assert_eq!(d.request("GET", feed, &feedly).status, 200, "{feed}");
    }
    let html = d.admin_get("/stats.html").text();
    assert!(
        html.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"),
        "{html}"
    );
    // The table scrolls inside its own box, never the page.
    let style = html.split("</style>").next().unwrap();
    assert!(style.contains(".scroll{overflow-x:auto"), "{style}");
    let table = html.find("<table").expect("a table");
    let boxed = html[..table]
        .rfind("<div class=\"scroll\">")
        .expect("a box");
    assert!(
        !html[boxed..table].contains("</div>"),
        "the table is in the box"
    );
    // The legend is text of the page, not of the scaled chart.
    let svg = &html[html.find("<svg").expect("a chart")..];
    let (svg, after) = svg.split_once("</svg>").expect("a whole chart");
    let legend = after
        .split_once("<ul class=\"legend\">")
        .and_then(|(_, l)| l.split_once("</ul>"))
        .expect("a legend after the chart")
        .0;
    for series in [
        "subscribers reported by aggregators",
        "direct pollers (estimate)",
        "WebSub subscriptions",
    ] {
        assert!(!svg.contains(series), "{series}: not in the scaled chart");
        assert!(legend.contains(series), "{series}: in the legend");
    }
    // Feeds named with their label's name, kind and format, path decoded.
    assert!(
        !html.contains("%D0%BA") && !html.contains("%C3%A9"),
        "{html}"
    );
    for want in [
        "Київ</strong> <small>category, Atom</small>",
        "Élections 2025</strong> <small>tag, RSS</small>",
        "<code>/categories/київ/atom.xml</code>",
        "<code>/tags/élections-2025/rss.xml</code>",
        "<code>/rss.xml</code>",
    ] {
        assert!(html.contains(want), "{want}: {html}");
    }
    d.stop();
}
