//! `herald serve` end to end: the real binary on a temp content tree and a
//! free port; every kind of file change, polled over HTTP until visible;
//! HTTP semantics over real sockets; faults. Each test ends in a checked
//! graceful shutdown.

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::live::{column, feed_titles, gunzip, http, unbrotli, TestDaemon, DEADLINE};
use crate::util::Workspace;

fn ws_with(files: &[(&str, String)]) -> Workspace {
    let ws = Workspace::new();
    for (p, text) in files {
        ws.write(&format!("content/{p}"), text);
    }
    ws
}

fn col(title: &str, day: u32) -> String {
    column(
        &format!("May {day}, 2025, 9 a.m."),
        "News",
        title,
        &format!("Body of {title}."),
    )
}

/// The daemon serves every route with the right types, HEAD, 405, 404 and
/// traversal attempts over a real socket.
#[test]
fn http_routes_over_socket() {
    let d = TestDaemon::start(
        ws_with(&[("2025-05-01-a.txt", col("Alpha & <Omega>", 1))]),
        "",
    );
    let r = d.get("/rss.xml");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        "application/rss+xml; charset=utf-8"
    );
    assert!(
        r.text()
            .contains("<title>Alpha &amp; &lt;Omega&gt;</title>"),
        "{}",
        r.text()
    );
    for (p, ct) in [
        ("/atom.xml", "application/atom+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
        ("/feeds.opml", "text/x-opml; charset=utf-8"),
        ("/", "text/html; charset=utf-8"),
        ("/articles/a/", "text/html; charset=utf-8"),
        (
            "/categories/news/atom.xml",
            "application/atom+xml; charset=utf-8",
        ),
    ] {
        let r = d.get(p);
        assert_eq!((r.status, r.header("content-type")), (200, ct), "{p}");
    }
    let h = d.request("HEAD", "/atom.xml", &[]);
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(
        h.header("content-length"),
        d.get("/atom.xml").header("content-length")
    );
    let p = d.request("POST", "/atom.xml", &[]);
    assert_eq!((p.status, p.header("allow")), (405, "GET, HEAD"));
    for bad in [
        "/nope",
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/articles/..%2f..%2fherald.toml",
        "/herald.toml",
        "/state/state.json",
    ] {
        let r = d.get(bad);
        assert_eq!(r.status, 404, "{bad}");
        assert!(r.text().contains("Not found"), "{bad}: small HTML page");
    }
    assert_eq!(d.get("/healthz").text(), "ok\n");
    d.stop();
}

/// gzip is negotiated, decompresses to the identity body, has its own
/// ETag, and conditional GETs answer 304 with the validators repeated.
#[test]
fn gzip_and_conditional_get() {
    let d = TestDaemon::start(ws_with(&[("a.txt", col("A", 1))]), "");
    let plain = d.get("/atom.xml");
    let gz = d.request("GET", "/atom.xml", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert_eq!(gz.header("vary"), "Accept-Encoding");
    assert_eq!(gunzip(&gz.body), plain.body);
    assert_ne!(gz.header("etag"), plain.header("etag"));
    let no = d.request("GET", "/atom.xml", &[("Accept-Encoding", "gzip;q=0")]);
    assert_eq!(no.header("content-encoding"), "");

    let etag = plain.header("etag").to_string();
    let r = d.request("GET", "/atom.xml", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), etag);
    assert_eq!(r.header("cache-control"), plain.header("cache-control"));
    assert_eq!(r.header("vary"), "Accept-Encoding");
    // The identity ETag must not validate the gzip representation.
    let r = d.request(
        "GET",
        "/atom.xml",
        &[("If-None-Match", &etag), ("Accept-Encoding", "gzip")],
    );
    assert_eq!(r.status, 200);
    let r = d.request(
        "GET",
        "/atom.xml",
        &[("If-Modified-Since", plain.header("last-modified"))],
    );
    assert_eq!(r.status, 304);
    d.stop();
}

/// Create, edit in place, rename within the tree and delete each show up
/// in the feed, and the id survives the edit and the rename.
#[test]
fn create_edit_rename_delete() {
    let d = TestDaemon::start(ws_with(&[("a.txt", col("A", 1))]), "");
    d.wait_titles(&["A"]);
    d.ws.write("content/b.txt", col("B", 2));
    let v = d.wait_titles(&["B", "A"]);
    let id_b = v["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(id_b, "tag:news.example.org,2025-05-02:b");

    d.ws.write("content/b.txt", col("B edited", 2));
    let v = d.wait_titles(&["B edited", "A"]);
    assert_eq!(v["items"][0]["id"], id_b.as_str(), "edit keeps the id");
    assert_ne!(
        v["items"][0]["date_modified"], v["items"][0]["date_published"],
        "edit moves updated"
    );

    fs::create_dir(d.ws.path("content/sub")).unwrap();
    fs::rename(
        d.ws.path("content/b.txt"),
        d.ws.path("content/sub/renamed.txt"),
    )
    .unwrap();
    let v = d.poll("/feed.json", "renamed url", |r| {
        r.text().contains("/articles/renamed/")
    });
    let v: serde_json::Value = serde_json::from_slice(&v.body).unwrap();
    assert_eq!(v["items"][0]["id"], id_b.as_str(), "rename keeps the id");
    let old = d.get("/articles/b/");
    assert_eq!(
        (old.status, old.header("location")),
        (301, "https://news.example.org/articles/renamed/"),
        "the old permalink redirects"
    );

    fs::remove_file(d.ws.path("content/sub/renamed.txt")).unwrap();
    d.wait_titles(&["A"]);
    d.stop();
}

/// Moving files and directories in from outside and out to outside the
/// tree, and deleting a directory, are all seen.
#[test]
fn moves_across_the_tree_boundary() {
    let d = TestDaemon::start(ws_with(&[("a.txt", col("A", 1))]), "");
    d.ws.write("outside/m.txt", col("Moved in", 3));
    fs::rename(d.ws.path("outside/m.txt"), d.ws.path("content/m.txt")).unwrap();
    d.wait_titles(&["Moved in", "A"]);

    d.ws.write("outside/dir/x.txt", col("Dir X", 4));
    d.ws.write(
        "outside/dir/deeper/y.md",
        "---\ntitle: Dir Y\ndate: 2025-05-05T00:00:00Z\n---\nY body\n",
    );
    fs::rename(d.ws.path("outside/dir"), d.ws.path("content/dir")).unwrap();
    d.wait_titles(&["Dir Y", "Dir X", "Moved in", "A"]);

    fs::rename(d.ws.path("content/m.txt"), d.ws.path("outside/m2.txt")).unwrap();
    d.wait_titles(&["Dir Y", "Dir X", "A"]);

    fs::rename(d.ws.path("content/dir"), d.ws.path("outside/dir2")).unwrap();
    d.wait_titles(&["A"]);

    d.ws.write("content/newdir/n1.txt", col("N1", 6));
    d.ws.write("content/newdir/n2.txt", col("N2", 7));
    d.wait_titles(&["N2", "N1", "A"]);
    fs::remove_dir_all(d.ws.path("content/newdir")).unwrap();
    d.wait_titles(&["A"]);
    d.stop();
}

/// Editors' atomic saves (vim: backup rename + new file; emacs: temp file +
/// rename) publish the new text; swap, backup and lock files never become
/// articles.
#[test]
fn editor_atomic_saves() {
    let d = TestDaemon::start(ws_with(&[("a.txt", col("A", 1))]), "");
    let id = d.wait_titles(&["A"])["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // vim: swap file, backup by rename, write a new file.
    d.ws.write("content/.a.txt.swp", "swap bytes \0\0");
    fs::rename(d.ws.path("content/a.txt"), d.ws.path("content/a.txt~")).unwrap();
    d.ws.write("content/a.txt", col("A by vim", 1));
    fs::remove_file(d.ws.path("content/.a.txt.swp")).unwrap();
    let v = d.wait_titles(&["A by vim"]);
    assert_eq!(v["items"][0]["id"], id.as_str());
    // emacs: lock symlink, autosave file, temp file renamed over the original.
    std::os::unix::fs::symlink("user@host.1234", d.ws.path("content/.#a.txt")).unwrap();
    d.ws.write("content/#a.txt#", col("autosave", 1));
    d.ws.write("content/a.txt.tmp", col("A by emacs", 1));
    fs::rename(d.ws.path("content/a.txt.tmp"), d.ws.path("content/a.txt")).unwrap();
    fs::remove_file(d.ws.path("content/.#a.txt")).unwrap();
    let v = d.wait_titles(&["A by emacs"]);
    assert_eq!(v["items"][0]["id"], id.as_str());
    let log = d.stop();
    assert!(
        !log.contains("ERROR"),
        "editor litter produced errors:\n{log}"
    );
}

/// A scraper writing a file in place in chunks (open, write, pause, write,
/// close) never gets a truncated article published.
#[test]
fn chunked_write_is_never_published_half_done() {
    let d = TestDaemon::start(ws_with(&[("a.txt", col("A", 1))]), "");
    d.wait_titles(&["A"]);
    let full = col("Chunked", 2);
    let (first, second) = full.split_at(full.find("Body of").unwrap() + 4);
    let mut f = fs::File::create(d.ws.path("content/c.txt")).unwrap();
    f.write_all(first.as_bytes()).unwrap();
    f.flush().unwrap();
    // Far longer than the debounce window: only the open file holds it back.
    let until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < until {
        let r = d.get("/feed.json");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        for item in v["items"].as_array().unwrap() {
            assert_ne!(
                item["title"], "Chunked",
                "published while still being written: {item}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f.write_all(second.as_bytes()).unwrap();
    drop(f);
    let v = d.wait_titles(&["Chunked", "A"]);
    assert!(v["items"][0]["content_html"]
        .as_str()
        .unwrap()
        .contains("Body of Chunked."));
    d.stop();
}

/// A symlink to an article outside the content directory publishes it
/// when `follow_external_symlinks` allows it.
#[test]
fn symlinked_article() {
    let ws = ws_with(&[("a.txt", col("A", 1))]);
    ws.write("elsewhere/s.txt", col("Linked", 2));
    let d = TestDaemon::start(ws, "follow_external_symlinks = true\n");
    std::os::unix::fs::symlink(d.ws.path("elsewhere/s.txt"), d.ws.path("content/s.txt")).unwrap();
    d.wait_titles(&["Linked", "A"]);
    d.stop();
}

/// Removing the content directory keeps the last feeds up; creating it
/// again is picked up.
#[test]
fn content_dir_removed_and_recreated() {
    let d = TestDaemon::start(ws_with(&[("a.txt", col("A", 1))]), "");
    d.wait_titles(&["A"]);
    fs::remove_dir_all(d.ws.path("content")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        feed_titles(&d.get("/feed.json").body),
        vec!["A"],
        "last good feeds stay up"
    );
    fs::create_dir(d.ws.path("content")).unwrap();
    d.ws.write("content/b.txt", col("B", 2));
    d.wait_titles(&["B"]);
    d.ws.write("content/c.txt", col("C", 3));
    d.wait_titles(&["C", "B"]);
    d.stop();
}

/// A broken save of a published article keeps its last good version and
/// logs the error once; a good save replaces it.
#[test]
fn broken_save_keeps_last_good() {
    let mut d = TestDaemon::start(ws_with(&[("a.txt", col("A", 1))]), "");
    d.wait_titles(&["A"]);
    d.ws.write("content/a.txt", "Maybe 1, 2025\n\nNews\n\nBroken\n");
    d.wait_log("a.txt:1: invalid date");
    d.ws.write("content/b.txt", col("B", 2));
    d.wait_titles(&["B", "A"]);
    d.ws.write("content/a.txt", col("A fixed", 1));
    d.wait_titles(&["B", "A fixed"]);
    let log = d.stop();
    assert_eq!(
        log.matches("invalid date").count(),
        1,
        "logged once:\n{log}"
    );
}

/// A burst of files (as from git checkout) becomes a handful of rebuilds
/// and the final state is exact.
#[test]
fn burst_is_a_handful_of_rebuilds() {
    let d = TestDaemon::start(ws_with(&[]), "");
    let before = metric(&d, "herald_rebuilds_total");
    let n = 1000;
    for i in 0..n {
        d.ws.write(
            &format!("content/burst/{i:04}.txt"),
            col(&format!("Burst {i:04}"), 1 + (i % 28) as u32),
        );
    }
    d.admin_poll("/metrics", "all articles", |r| {
        r.text().contains(&format!("herald_articles {n}\n"))
    });
    let rebuilds = metric(&d, "herald_rebuilds_total") - before;
    assert!(
        rebuilds <= 10,
        "{rebuilds} rebuilds for a burst of {n} files"
    );
    let v: serde_json::Value = serde_json::from_slice(&d.get("/feed.json").body).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 50);
    d.stop();
}

fn metric(d: &TestDaemon, name: &str) -> u64 {
    let t = d.admin_get("/metrics").text();
    t.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Readers hammering /atom.xml during a burst of writes always get a
/// complete, parseable feed.
#[test]
fn readers_never_see_a_broken_feed() {
    let d = TestDaemon::start(ws_with(&[("a.txt", col("A", 1))]), "");
    let addr = d.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = http(addr, "GET", "/atom.xml", &[("Accept-Encoding", "gzip")]);
                    assert_eq!(r.status, 200);
                    let body = gunzip(&r.body);
                    feed_rs::parser::parse(&body[..])
                        .unwrap_or_else(|e| panic!("unparseable feed served: {e}"));
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 0..200 {
        d.ws.write(
            &format!("content/w{i}.txt"),
            col(&format!("W{i}"), 1 + (i % 28) as u32),
        );
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    d.admin_poll("/metrics", "all written", |r| {
        r.text().contains("herald_articles 201\n")
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total: usize = readers
        .into_iter()
        .map(|h| h.join().expect("reader thread"))
        .sum();
    assert!(total > 10, "readers made {total} requests");
    d.stop();
}

/// A future-dated article appears at its time without anyone touching a file.
#[test]
fn future_article_appears_on_time() {
    let d = TestDaemon::start(ws_with(&[("a.txt", col("A", 1))]), "");
    // Whole seconds, as written into the file.
    let due = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 3, 0).unwrap();
    d.ws.write(
        "content/f.md",
        format!(
            "---\ntitle: Future\ndate: {}\n---\nLater.\n",
            due.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        feed_titles(&d.get("/feed.json").body),
        vec!["A"],
        "held back until due"
    );
    d.wait_titles(&["Future", "A"]);
    assert!(
        chrono::Utc::now() + chrono::Duration::milliseconds(50) >= due,
        "not before its time"
    );
    d.stop();
}

/// Deleting the newest article must not move the feed's Last-Modified back
/// (readers would be stuck on 304 otherwise).
#[test]
fn last_modified_never_moves_back() {
    let d = TestDaemon::start(
        ws_with(&[("a.txt", col("A", 1)), ("b.txt", col("B", 2))]),
        "",
    );
    let before = d.get("/rss.xml");
    let lm = httpdate::parse_http_date(before.header("last-modified")).unwrap();
    fs::remove_file(d.ws.path("content/b.txt")).unwrap();
    d.wait_titles(&["A"]);
    let after = d.get("/rss.xml");
    let lm2 = httpdate::parse_http_date(after.header("last-modified")).unwrap();
    assert!(lm2 > lm, "Last-Modified moved from {lm:?} to {lm2:?}");
    let r = d.request(
        "GET",
        "/rss.xml",
        &[("If-Modified-Since", before.header("last-modified"))],
    );
    assert_eq!(
        r.status, 200,
        "a client holding the old date gets the new feed"
    );
    d.stop();
}

/// When the output directory cannot be written, serving continues from
/// memory and the error is logged once.
#[test]
fn unwritable_output_keeps_serving() {
    let ws = ws_with(&[("a.txt", col("A", 1))]);
    ws.write("blocker", "a file where a directory should be");
    let d = TestDaemon::start(ws, "output_dir = \"blocker/feeds\"\n");
    d.wait_titles(&["A"]);
    d.ws.write("content/b.txt", col("B", 2));
    d.wait_titles(&["B", "A"]);
    d.ws.write("content/c.txt", col("C", 3));
    d.wait_titles(&["C", "B", "A"]);
    let log = d.stop();
    assert_eq!(
        log.matches("cannot write blocker/feeds").count(),
        1,
        "logged once:\n{log}"
    );
}

/// The files under feeds/ follow the served snapshot (written only when
/// changed, removed when their article goes).
#[test]
fn output_directory_mirrors_snapshot() {
    let d = TestDaemon::start(
        ws_with(&[("a.txt", col("A", 1)), ("b.txt", col("B", 2))]),
        "",
    );
    assert!(d.ws.exists("feeds/articles/b/index.html.gz"));
    fs::remove_file(d.ws.path("content/b.txt")).unwrap();
    d.wait_titles(&["A"]);
    let start = Instant::now();
    while d.ws.exists("feeds/articles/b/index.html") {
        assert!(start.elapsed() < DEADLINE, "stale article page not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let served = d.get("/feed.json").body;
    let start = Instant::now();
    while d.ws.read("feeds/feed.json").as_bytes() != &served[..] {
        assert!(
            start.elapsed() < DEADLINE,
            "feeds/feed.json never matched what is served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d.stop();
}

/// A change no file event reports — the target of a symlinked article
/// edited outside the content tree — is found by the periodic
/// verification pass.
#[test]
fn verification_pass_finds_missed_changes() {
    let ws = ws_with(&[("a.txt", col("A", 1))]);
    ws.write("elsewhere/s.txt", col("Linked", 2));
    std::os::unix::fs::symlink(ws.path("elsewhere/s.txt"), ws.path("content/s.txt")).unwrap();
    let mut d = TestDaemon::start(
        ws,
        "verify_interval_secs = 1\nfollow_external_symlinks = true\n",
    );
    d.wait_titles(&["Linked", "A"]);
    d.ws.write("elsewhere/s.txt", col("Linked, edited out of sight", 2));
    d.wait_titles(&["Linked, edited out of sight", "A"]);
    d.wait_log("verification pass found changes");
    d.stop();
}

/// Feeds large enough to be sent with `sendfile` (from the unlinked files
/// that hold them in memory) arrive byte for byte as written to `feeds/`,
/// identity and gzip, over HTTP/1.1 and h2c, before and after an edit.
#[test]
fn large_feeds_served_whole() {
    // Words drawn from a fixed pseudo-random vocabulary of 2,000: text
    // that gzip cannot shrink below the size where bodies go to sendfile,
    // and that, like real text, brotli compresses better.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let vocabulary: Vec<String> = (0..2000)
        .map(|_| {
            let x = next();
            (0..3 + x % 7)
                .map(|i| (b'a' + ((x >> (i * 5)) % 26) as u8) as char)
                .collect()
        })
        .collect();
    let mut word = || vocabulary[(next() % 2000) as usize].clone();
    let files: Vec<(String, String)> = (1..=28)
        .map(|day| {
            let body: Vec<String> = (0..400).map(|_| word()).collect();
            (
                format!("2025-05-{day:02}-story-{day}.txt"),
                column(
                    &format!("May {day}, 2025, 9 a.m."),
                    "News",
                    &format!("Story {day}"),
                    &body.join(" "),
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    let d = TestDaemon::start(ws_with(&refs), "");
    let check = |d: &TestDaemon| {
        let on_disk = d.ws.read_bytes("feeds/rss.xml");
        let gz_on_disk = d.ws.read_bytes("feeds/rss.xml.gz");
        assert!(
            gz_on_disk.len() > 16 * 1024,
            "gzip twin of {} B",
            gz_on_disk.len()
        );
        let plain = d.get("/rss.xml");
        assert_eq!(plain.body, on_disk);
        let gz = d.request("GET", "/rss.xml", &[("Accept-Encoding", "gzip")]);
        assert_eq!(gz.header("content-encoding"), "gzip");
        assert_eq!(gz.body, gz_on_disk);
        assert_eq!(gz.header("content-length"), gz_on_disk.len().to_string());
        // The brotli form comes a moment after publication (gzip until
        // then) and is smaller than gzip; it is big enough to be sent
        // from a file too.
        let br = d.poll_with(
            "/rss.xml",
            &[("Accept-Encoding", "br, gzip")],
            "brotli",
            |r| match r.header("content-encoding") {
                "gzip" => false,
                "br" => {
                    assert_eq!(
                        unbrotli(&r.body),
                        on_disk,
                        "a brotli body of another document"
                    );
                    true
                }
                other => panic!("content-encoding {other:?}"),
            },
        );
        assert!(br.body.len() > 16 * 1024 && br.body.len() < gz_on_disk.len());
        assert_eq!(br.header("content-length"), br.body.len().to_string());
        assert_ne!(br.header("etag"), gz.header("etag"));
        let again = d.request(
            "GET",
            "/rss.xml",
            &[
                ("Accept-Encoding", "br"),
                ("If-None-Match", br.header("etag")),
            ],
        );
        assert_eq!(again.status, 304);
        on_disk
    };
    let before = check(&d);
    assert_eq!(crate::live::h2_get(d.addr, "/rss.xml").2, before);
    d.ws.write(
        "content/2025-05-28-story-28.txt",
        column(
            "May 28, 2025, 9 a.m.",
            "News",
            "Story 28 edited",
            "Short now.",
        ),
    );
    d.poll("/rss.xml", "the edit", |r| {
        r.text().contains("Story 28 edited")
    });
    // The files are written after the snapshot is served; wait for them.
    let deadline = Instant::now() + DEADLINE;
    while !String::from_utf8_lossy(&d.ws.read_bytes("feeds/rss.xml")).contains("Story 28 edited") {
        assert!(Instant::now() < deadline, "feeds/rss.xml not rewritten");
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = check(&d);
    assert_ne!(before, after);
    assert_eq!(crate::live::h2_get(d.addr, "/rss.xml").2, after);
    d.stop();
}

/// The value of `key=` in the start's `published` log line.
fn start_field(d: &mut TestDaemon, key: &str) -> String {
    let line = d.wait_log("from_cache=");
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// The parse cache: a restart with unchanged content reads and parses no
/// article file (all come from `state/articles.cache`) and serves the same
/// feed; a file edited while Herald was stopped is parsed again and its
/// new title is served, the others still come from the cache.
#[test]
fn restart_takes_unchanged_files_from_the_parse_cache() {
    let ws = ws_with(&[("a.txt", col("A", 1)), ("b.txt", col("B", 2))]);
    let mut d = TestDaemon::start(ws, "");
    d.wait_titles(&["B", "A"]);
    assert_eq!(start_field(&mut d, "parsed"), "2");
    assert_eq!(start_field(&mut d, "from_cache"), "0");
    let rss = d.get("/rss.xml").body;
    let (_, ws) = d.stop_keep();
    assert!(ws.exists("state/articles.cache"));

    let mut d = TestDaemon::start(ws, "");
    d.wait_titles(&["B", "A"]);
    assert_eq!(start_field(&mut d, "parsed"), "0", "{}", d.log());
    assert_eq!(start_field(&mut d, "from_cache"), "2");
    assert_eq!(d.get("/rss.xml").body, rss, "the same feed");
    let (_, ws) = d.stop_keep();

    ws.write("content/a.txt", col("A, edited while stopped", 1));
    let mut d = TestDaemon::start(ws, "");
    d.poll("/rss.xml", "the edited title", |r| {
        r.status == 200 && r.text().contains("A, edited while stopped")
    });
    assert_eq!(start_field(&mut d, "parsed"), "1", "{}", d.log());
    assert_eq!(start_field(&mut d, "from_cache"), "1");
    d.stop();
}
