//! Restarts and file-backed pages, end to end: a restart over unchanged
//! content renders nothing (the manifest and the files on disk agree), a
//! restart after changes made while Herald was stopped renders exactly
//! what a live edit of the same change renders, pages are served from
//! their files with their validators and conditional GET, and a page file
//! damaged or removed behind Herald's back is never served broken: it is
//! noticed (at start, or by the request that reads it) and written again.

use std::time::{Duration, Instant};

use crate::live::{Resp, TestDaemon, DEADLINE};
use crate::util::{copy_tree, Workspace};

/// A Markdown article, one an hour from 2025-01-01, in Red or Blue.
fn story(i: usize, title: &str) -> String {
    format!(
        "---\ntitle: \"{title}\"\ndate: 2025-01-{:02}T{:02}:00:00Z\ncategories: [{}]\ntags: [t{}]\n---\nBody of story {i}, with *some* text.\n",
        1 + i / 24,
        i % 24,
        if i.is_multiple_of(2) { "Red" } else { "Blue" },
        i % 3
    )
}

/// `n` articles with small archive and listing pages, so that a few
/// dozen articles make every kind of route.
fn site(n: usize) -> Workspace {
    let ws = Workspace::new();
    for i in 0..n {
        ws.write(
            &format!("content/s{i:03}.md"),
            story(i, &format!("Story {i:03}")),
        );
    }
    ws
}

const CONFIG: &str = "max_items = 5\narchive_page_size = 4\npage_size = 5\n";

/// The value of `key=` in the start-up "published" line of `log` (the
/// last start's).
fn start_field(log: &str, key: &str) -> usize {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("published") && l.contains("reason=\"start\""))
        .unwrap_or_else(|| panic!("no start-up publish line in:\n{log}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {line}: {e}"))
}

/// Routes worth comparing across a restart: one of each kind.
const ROUTES: &[&str] = &[
    "/rss.xml",
    "/atom.xml",
    "/feed.json",
    "/",
    "/page/2/",
    "/feeds.opml",
    "/articles/s003/",
    "/archive/rss/1.xml",
    "/archive/json/2.json",
    "/categories/red/atom.xml",
    "/categories/red/archive/atom/1.xml",
    "/tags/t1/",
];

/// Status, ETag, Last-Modified and body of each route, with and without
/// gzip.
fn snapshot(d: &TestDaemon) -> Vec<(String, u16, String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for route in ROUTES {
        for gzip in [false, true] {
            let headers: &[(&str, &str)] = if gzip {
                &[("Accept-Encoding", "gzip")]
            } else {
                &[]
            };
            let r = d.request("GET", route, headers);
            assert_eq!(r.status, 200, "{route} gzip={gzip}: {}", r.text());
            out.push((
                format!("{route} gzip={gzip}"),
                r.status,
                r.header("etag").to_string(),
                r.header("last-modified").to_string(),
                r.body.clone(),
            ));
        }
    }
    out
}

/// A restart over the same content and output renders nothing: every
/// route is taken from disk as the manifest recorded it, and every
/// response (status, ETag, Last-Modified, bytes, in both codings) is the
/// one served before the restart.
#[test]
fn restart_with_unchanged_content_renders_nothing() {
    let d = TestDaemon::start(site(40), CONFIG);
    let routes = start_field(&d.log(), "routes");
    assert_eq!(
        start_field(&d.log(), "reused"),
        0,
        "a first start has no manifest"
    );
    let before = snapshot(&d);
    let (_, ws) = d.stop_keep();
    assert!(
        ws.exists("state/site.manifest"),
        "no manifest saved at shutdown"
    );

    let d = TestDaemon::start(ws, CONFIG);
    let log = d.log();
    assert_eq!(start_field(&log, "rendered"), 0, "{log}");
    // Referenced files and redirect pages are no documents of the
    // manifest; this site has none.
    assert_eq!(start_field(&log, "reused"), routes, "{log}");
    let after = snapshot(&d);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "{} changed across a restart", b.0);
    }
    d.stop();
}

/// Changes made while Herald was stopped (one title edited, one article
/// added, one removed) are rendered at the next start, and nothing else:
/// exactly as many documents as the same changes render when made while
/// Herald runs.
#[test]
fn restart_after_changes_renders_only_those() {
    let d = TestDaemon::start(site(40), CONFIG);
    let (_, ws) = d.stop_keep();
    let twin = Workspace::new();
    copy_tree(ws.root(), twin.root());
    let change = |ws: &Workspace| {
        ws.write("content/s010.md", story(10, "Story ten, edited"));
        ws.write("content/s100.md", story(39, "A new story"));
        std::fs::remove_file(ws.path("content/s020.md")).unwrap();
    };

    // The changes while running, in one batch: what they render.
    let mut live = TestDaemon::start(twin, CONFIG);
    let publishes = live.log().matches("published").count();
    change(&live.ws);
    live.poll("/articles/s010/", "the live edit", |r| {
        r.text().contains("Story ten, edited")
    });
    live.poll("/articles/s020/", "the live removal", |r| r.status == 410);
    live.poll("/articles/s100/", "the live addition", |r| r.status == 200);
    let log = live.wait_log("reason=\"change\"");
    let changed: usize = log
        .lines()
        .filter(|l| l.contains("published") && l.contains("reason=\"change\""))
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("changed="))
                .expect("changed= in the publish line")
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert!(
        live.log().matches("published").count() > publishes,
        "{}",
        live.log()
    );
    live.stop();

    // The same changes while stopped, and a stray file under articles/.
    change(&ws);
    assert!(ws.exists("feeds/articles/s020/index.html.gz"));
    ws.write("feeds/articles/s020/notes.txt", "left behind");
    let d = TestDaemon::start(ws, CONFIG);
    let log = d.log();
    let rendered = start_field(&log, "rendered");
    let routes = start_field(&log, "routes");
    assert_eq!(
        start_field(&log, "changed"),
        changed,
        "a start after the changes changed other documents than the live edit:\n{log}"
    );
    // Rendered: those, and the few whose inputs changed but whose bytes
    // came out the same (a listing's neighbour link, say).
    assert!(rendered >= changed && rendered <= changed + 4, "{log}");
    assert!(rendered < routes / 2, "{rendered} of {routes}");
    assert!(d
        .get("/articles/s010/")
        .text()
        .contains("Story ten, edited"));
    assert!(d.get("/feed.json").text().contains("A new story"));
    assert_eq!(d.get("/articles/s020/").status, 410);
    // The removed article's files go once serving has begun.
    let start = Instant::now();
    while d.ws.exists("feeds/articles/s020/index.html.gz")
        || d.ws.exists("feeds/articles/s020/notes.txt")
    {
        assert!(start.elapsed() < DEADLINE, "s020's files were not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!d.ws.exists("feeds/articles/s020/index.html"));
    assert!(d.ws.exists("feeds/articles/s010/index.html.gz"));
    d.stop();
}

/// Polls `route` (gzip asked) until it answers 200 with `want`; every
/// answer on the way is either that or a 503 asking to retry — never
/// other bytes.
fn served_whole(d: &TestDaemon, route: &str, want: &[u8]) {
    let start = Instant::now();
    loop {
        let r: Resp = d.request("GET", route, &[("Accept-Encoding", "gzip")]);
        match r.status {
            200 => {
                assert_eq!(r.body, want, "{route}: other bytes served");
                return;
            }
            503 => assert_eq!(r.header("retry-after"), "1", "{route}"),
            s => panic!("{route}: {s} {}", r.text()),
        }
        assert!(start.elapsed() < DEADLINE, "{route} never served again");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A page's `.gz` twin cut short, another's overwritten with other bytes
/// of the same length, and a third's removed, while Herald runs: none is
/// ever served broken; the request that finds one answers 503 and has it
/// written again, after which it is served as before.
#[test]
fn damaged_page_files_are_never_served_and_are_rewritten() {
    let d = TestDaemon::start(site(40), CONFIG);
    let files = [
        ("/articles/s003/", "feeds/articles/s003/index.html.gz"),
        ("/archive/atom/2.xml", "feeds/archive/atom/2.xml.gz"),
        ("/page/3/", "feeds/page/3/index.html.gz"),
    ];
    let mut good = Vec::new();
    for (route, file) in files {
        let r = d.request("GET", route, &[("Accept-Encoding", "gzip")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, d.ws.read_bytes(file), "{route} is its file's bytes");
        good.push(r.body);
    }
    let cut = d.ws.read_bytes(files[0].1);
    d.ws.write(files[0].1, &cut[..cut.len() / 2]);
    let mut flipped = d.ws.read_bytes(files[1].1);
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    d.ws.write(files[1].1, &flipped);
    std::fs::remove_file(d.ws.path(files[2].1)).unwrap();

    for ((route, file), want) in files.iter().zip(&good) {
        served_whole(&d, route, want);
        // The identity form too, inflated from the checked twin.
        let plain = d.get(route);
        assert_eq!(plain.status, 200);
        assert_eq!(plain.body, crate::live::gunzip(want));
        // Written again with its bytes.
        let start = Instant::now();
        // Removed, it may not be there yet.
        while std::fs::read(d.ws.path(file)).ok().as_ref() != Some(want) {
            assert!(start.elapsed() < DEADLINE, "{file} not written again");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(
        d.log().contains("behind Herald's back"),
        "the repair is logged:\n{}",
        d.log()
    );
    d.stop();
}

/// Page files changed or removed while Herald was stopped do not match
/// the manifest's record: exactly those are rendered again at start, and
/// served with the bytes they had.
#[test]
fn files_damaged_while_stopped_are_rendered_again() {
    let d = TestDaemon::start(site(40), CONFIG);
    let want_page = d.request("GET", "/articles/s007/", &[("Accept-Encoding", "gzip")]);
    let want_archive = d.get("/archive/rss/2.xml");
    let want_feed = d.get("/rss.xml");
    let (_, ws) = d.stop_keep();
    std::fs::remove_file(ws.path("feeds/articles/s007/index.html.gz")).unwrap();
    ws.write("feeds/archive/rss/2.xml.gz", "not a feed");
    ws.write("feeds/rss.xml", "<rss/>");

    let d = TestDaemon::start(ws, CONFIG);
    assert_eq!(start_field(&d.log(), "rendered"), 3, "{}", d.log());
    let page = d.request("GET", "/articles/s007/", &[("Accept-Encoding", "gzip")]);
    assert_eq!((page.status, &page.body), (200, &want_page.body));
    assert_eq!(page.header("etag"), want_page.header("etag"));
    assert_eq!(d.get("/archive/rss/2.xml").body, want_archive.body);
    assert_eq!(d.get("/rss.xml").body, want_feed.body);
    assert_eq!(
        crate::live::gunzip(&d.ws.read_bytes("feeds/archive/rss/2.xml.gz")),
        want_archive.body
    );
    assert!(!d.ws.exists("feeds/archive/rss/2.xml"));
    assert_eq!(d.ws.read_bytes("feeds/rss.xml"), want_feed.body);
    d.stop();
}

/// Pages served from their files answer conditional requests as pages
/// held in memory do: 304 for their ETag (per coding) and for a date not
/// before their Last-Modified, 412 for `If-Match` with another tag, and
/// HEAD with the GET's length and no body.
#[test]
fn file_backed_pages_answer_conditional_requests() {
    let d = TestDaemon::start(site(40), CONFIG);
    for route in ["/articles/s012/", "/archive/atom/1.xml", "/tags/t2/"] {
        for coding in ["identity", "gzip"] {
            let ae = [("Accept-Encoding", coding)];
            let r = d.request("GET", route, &ae);
            assert_eq!(r.status, 200, "{route}");
            let etag = r.header("etag").to_string();
            let lm = r.header("last-modified").to_string();
            assert_eq!(r.header("content-length"), r.body.len().to_string());
            let inm = d.request("GET", route, &[ae[0], ("If-None-Match", &etag)]);
            assert_eq!(inm.status, 304, "{route} {coding}");
            assert!(inm.body.is_empty());
            assert_eq!(inm.header("etag"), etag);
            let ims = d.request("GET", route, &[ae[0], ("If-Modified-Since", &lm)]);
            assert_eq!(ims.status, 304, "{route} {coding} If-Modified-Since");
            let im = d.request("GET", route, &[ae[0], ("If-Match", "\"other\"")]);
            assert_eq!(im.status, 412, "{route} {coding} If-Match");
            let head = d.request("HEAD", route, &ae);
            assert_eq!(head.status, 200);
            assert!(head.body.is_empty());
            assert_eq!(head.header("content-length"), r.body.len().to_string());
            assert_eq!(head.header("etag"), etag);
        }
    }
    d.stop();
}

/// Every kind of document — an article page and a closed archive page
/// served from their files, a feed and a published file held in memory —
/// answers a byte range of the representation negotiated (the gzip form's
/// bytes when gzip is asked): 206 with `Content-Range` and those bytes;
/// 416 with `Content-Range: bytes */len` past the end; the whole document
/// for several ranges, for `If-Range` naming an older copy, and for HEAD.
#[test]
fn documents_answer_byte_ranges() {
    let ws = site(40);
    let pdf: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ws.write("content/report/report.pdf", &pdf);
    ws.write(
        "content/report/index.md",
        "---\ntitle: The report\ndate: 2025-01-03T00:30:00Z\n---\n[The report](report.pdf)\n",
    );
    let d = TestDaemon::start(ws, CONFIG);
    let report = "/articles/report/report.pdf".to_string();
    assert_eq!(d.get(&report).body, pdf, "{report}");
    for route in [
        "/articles/s012/",
        "/archive/atom/1.xml",
        "/rss.xml",
        report.as_str(),
    ] {
        for coding in ["identity", "gzip"] {
            let ae = ("Accept-Encoding", coding);
            let whole = d.request("GET", route, &[ae]);
            assert_eq!(whole.status, 200, "{route}");
            assert_eq!(whole.header("accept-ranges"), "bytes", "{route}");
            let (len, etag) = (whole.body.len(), whole.header("etag").to_string());
            let want = |a: usize, b: usize| whole.body[a..b].to_vec();
            for (spec, a, b) in [
                ("bytes=0-99".to_string(), 0, 100),
                (format!("bytes={}-", len - 10), len - 10, len),
                ("bytes=-37".to_string(), len - 37, len),
                (format!("bytes=5-{}", len * 2), 5, len),
            ] {
                let r = d.request("GET", route, &[ae, ("Range", &spec)]);
                assert_eq!(r.status, 206, "{route} {coding} {spec}");
                assert_eq!(r.body, want(a, b), "{route} {coding} {spec}");
                assert_eq!(
                    r.header("content-range"),
                    format!("bytes {a}-{}/{len}", b - 1),
                    "{route} {coding} {spec}"
                );
                assert_eq!(r.header("content-length"), (b - a).to_string());
                assert_eq!(r.header("etag"), etag);
                // Resuming the same copy: If-Range with its ETag.
                let r = d.request("GET", route, &[ae, ("Range", &spec), ("If-Range", &etag)]);
                assert_eq!((r.status, r.body), (206, want(a, b)), "{route} If-Range");
            }
            let past = d.request("GET", route, &[ae, ("Range", &format!("bytes={len}-"))]);
            assert_eq!(past.status, 416, "{route} {coding}");
            assert_eq!(past.header("content-range"), format!("bytes */{len}"));
            for (name, value) in [
                ("Range", "bytes=0-1,5-6"),
                ("Range", "bytes=9-3"),
                ("Range", "lines=1-2"),
            ] {
                let r = d.request("GET", route, &[ae, (name, value)]);
                assert_eq!((r.status, &r.body), (200, &whole.body), "{route} {value}");
            }
            let stale = d.request(
                "GET",
                route,
                &[
                    ae,
                    ("Range", "bytes=0-9"),
                    ("If-Range", "\"an-older-copy\""),
                ],
            );
            assert_eq!((stale.status, &stale.body), (200, &whole.body), "{route}");
            let head = d.request("HEAD", route, &[ae, ("Range", "bytes=0-9")]);
            assert_eq!(head.status, 200, "{route} HEAD");
            assert!(head.body.is_empty());
        }
    }
    d.stop();
}

/// A manifest cut short or filled with garbage costs a full render, never
/// a wrong page: the start renders what the manifest no longer names and
/// serves the same bytes.
#[test]
fn damaged_manifest_renders_again() {
    let d = TestDaemon::start(site(30), CONFIG);
    let routes = start_field(&d.log(), "routes");
    let before = d.get("/archive/rss/1.xml").body;
    let (_, ws) = d.stop_keep();
    let m = ws.read_bytes("state/site.manifest");
    ws.write("state/site.manifest", &m[..m.len() / 2]);
    let d = TestDaemon::start(ws, CONFIG);
    let rendered = start_field(&d.log(), "rendered");
    let reused = start_field(&d.log(), "reused");
    assert!(rendered > 0 && reused > 0, "{}", d.log());
    assert_eq!(rendered + reused, routes);
    assert_eq!(d.get("/archive/rss/1.xml").body, before);
    let (_, ws) = d.stop_keep();
    ws.write("state/site.manifest", vec![0xa5u8; 4096]);
    let d = TestDaemon::start(ws, CONFIG);
    assert_eq!(start_field(&d.log(), "rendered"), routes, "{}", d.log());
    assert!(d.log().contains("manifest"), "{}", d.log());
    assert_eq!(d.get("/archive/rss/1.xml").body, before);
    d.stop();
}

/// `herald build` records what it wrote too: a `serve` started on its
/// output and state renders nothing and serves the built files' bytes.
#[test]
fn serve_after_build_renders_nothing() {
    let ws = site(30);
    ws.write(
        "herald.toml",
        format!("{}{CONFIG}", crate::live::FAST_CONFIG),
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let built = ws.read_bytes("feeds/archive/atom/2.xml.gz");
    let d = TestDaemon::start(ws, CONFIG);
    let log = d.log();
    assert_eq!(start_field(&log, "rendered"), 0, "{log}");
    assert_eq!(start_field(&log, "reused"), start_field(&log, "routes"));
    let r = d.request("GET", "/archive/atom/2.xml", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.body, built);
    d.stop();
}
