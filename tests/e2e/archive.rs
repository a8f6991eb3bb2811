//! Full history (RFC 5005 archived feeds), end to end: the real binary
//! serving a site of a few hundred articles with small archive pages.
//! Walking `prev-archive` (JSON Feed: `next_url`) from each current feed
//! reaches every article once, in order; closed pages keep their bytes
//! and ETag when an article arrives; independent readers and the Atom
//! schema accept every page; archive pages are no WebSub topics.

use std::collections::BTreeMap;
use std::process::Command;

use crate::live::{Resp, TestDaemon};
use crate::util::{have_tool, run_command, stamps, Workspace};
use crate::websub::Recorder;

const BASE: &str = "https://news.example.org/";

/// A Markdown article, one an hour from 2025-01-01, in Red or Blue.
fn story(i: usize) -> String {
    format!(
        "---\ntitle: \"Story {i:03}\"\ndate: 2025-01-{:02}T{:02}:00:00Z\ncategories: [{}]\n---\nBody of story {i}.\n",
        1 + i / 24,
        i % 24,
        if i.is_multiple_of(2) { "Red" } else { "Blue" }
    )
}

/// `n` articles (`s000.md` … oldest first).
fn site(n: usize) -> Workspace {
    let ws = Workspace::new();
    for i in 0..n {
        ws.write(&format!("content/s{i:03}.md"), story(i));
    }
    ws
}

/// Permalinks of stories `range`, newest first, optionally only one
/// category's.
fn permalinks(n: usize, red_only: bool) -> Vec<String> {
    (0..n)
        .rev()
        .filter(|i| !red_only || i.is_multiple_of(2))
        .map(|i| format!("{BASE}articles/s{i:03}/"))
        .collect()
}

/// The `href` of the link element with `rel="<rel>"` (Atom `<link>` or
/// RSS `<atom:link>`), as Herald writes them (href first).
fn rel_href(doc: &str, rel: &str) -> Option<String> {
    let at = doc.find(&format!("rel=\"{rel}\""))?;
    let open = doc[..at].rfind('<')?;
    let tag = &doc[open..at];
    let href = tag.split("href=\"").nth(1)?;
    Some(href[..href.find('"')?].to_string())
}

/// The route of an absolute URL of the site.
fn route(url: &str) -> String {
    format!(
        "/{}",
        url.strip_prefix(BASE)
            .unwrap_or_else(|| panic!("{url} is not on the site"))
    )
}

/// One document of a walk: its route, the response, and its entries'
/// permalinks as feed-rs reads them.
struct Doc {
    route: String,
    resp: Resp,
}

/// Walks from `start` back through `prev-archive` (or JSON Feed
/// `next_url`): every document, newest first, each read by feed-rs.
fn walk(d: &TestDaemon, start: &str) -> (Vec<Doc>, Vec<String>) {
    let mut docs = Vec::new();
    let mut links = Vec::new();
    let mut at = Some(start.to_string());
    while let Some(r) = at.take() {
        assert!(docs.len() < 200, "{start}: a walk that does not end");
        let resp = d.get(&r);
        assert_eq!(resp.status, 200, "{r}");
        let feed = feed_rs::parser::parse(resp.body.as_slice())
            .unwrap_or_else(|e| panic!("feed-rs cannot read {r}: {e}"));
        assert!(!feed.entries.is_empty(), "{r}: no entries");
        for e in &feed.entries {
            let link = e
                .links
                .iter()
                .find(|l| l.rel.as_deref().is_none_or(|rel| rel == "alternate"))
                .unwrap_or_else(|| panic!("{r}: an entry without its permalink"));
            links.push(link.href.clone());
        }
        let text = resp.text();
        at = if r.ends_with(".json") {
            let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
            v["next_url"].as_str().map(route)
        } else {
            rel_href(&text, "prev-archive").map(|u| route(&u))
        };
        docs.push(Doc { route: r, resp });
    }
    (docs, links)
}

/// From every current feed (main and a category's, RSS, Atom and JSON
/// Feed), walking `prev-archive` / `next_url` reaches every article
/// exactly once, newest to oldest, and feed-rs reads every page. Closed
/// pages say `fh:archive`, link `current` and their neighbours, are served
/// with their own long `max-age` and no hub `Link`; the current document
/// holds `max_items` to `max_items + archive_page_size - 1` articles.
#[test]
fn walking_prev_archive_reaches_every_article_once() {
    let n = 150;
    let d = TestDaemon::start(
        site(n),
        "max_items = 5\narchive_page_size = 7\narchive_max_age = 7200\n[websub]\nhubs = [\"https://hub.example/\"]\n",
    );
    d.poll("/feed.json", "the site published", |r| {
        r.status == 200 && r.text().contains("Story 149")
    });
    for (start, red_only) in [
        ("/atom.xml", false),
        ("/rss.xml", false),
        ("/feed.json", false),
        ("/categories/red/atom.xml", true),
        ("/categories/red/rss.xml", true),
        ("/categories/red/feed.json", true),
    ] {
        let (docs, links) = walk(&d, start);
        let want = permalinks(n, red_only);
        assert_eq!(links, want, "{start}: every article once, in order");
        let members = want.len();
        let pages = (members - 5) / 7;
        assert_eq!(docs.len(), 1 + pages, "{start}");
        let current = members - pages * 7;
        assert!((5..12).contains(&current), "{start}: {current}");
        assert_ne!(docs[0].resp.header("link"), "", "{start}: a topic");
        for (i, doc) in docs.iter().enumerate().skip(1) {
            let k = pages + 1 - i;
            assert!(
                doc.route.ends_with(&format!("/{k}.xml"))
                    || doc.route.ends_with(&format!("/{k}.json")),
                "{start}: page {k} at {}",
                doc.route
            );
            let r = &doc.resp;
            assert_eq!(
                r.header("cache-control"),
                "public, max-age=7200",
                "{}",
                doc.route
            );
            assert_eq!(r.header("link"), "", "{}: no topic, no hub", doc.route);
            assert!(r.header("etag").starts_with('"'), "{}", doc.route);
            let text = r.text();
            assert!(!text.contains("hub.example"), "{}", doc.route);
            if start.ends_with(".json") {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(v["feed_url"], format!("{BASE}{}", &start[1..]));
                continue;
            }
            assert!(text.contains("<fh:archive"), "{}: {text}", doc.route);
            assert!(
                text.contains("xmlns:fh=\"http://purl.org/syndication/history/1.0\""),
                "{}",
                doc.route
            );
            assert_eq!(
                rel_href(&text, "current").map(|u| route(&u)).as_deref(),
                Some(start),
                "{}",
                doc.route
            );
            let next = rel_href(&text, "next-archive").map(|u| route(&u));
            assert_eq!(
                next,
                (i > 1).then(|| docs[i - 1].route.clone()),
                "{}: next-archive",
                doc.route
            );
        }
        if !start.ends_with(".json") {
            let text = docs[0].resp.text();
            assert_eq!(
                rel_href(&text, "current").map(|u| route(&u)).as_deref(),
                Some(start)
            );
            assert!(!text.contains("<fh:archive"));
        }
    }
    d.stop();
}

/// When an article arrives, every closed page keeps its bytes and ETag
/// (a conditional GET with the old ETag answers 304, with the page's
/// `max-age`) and its file on disk is not rewritten; once the current
/// document is full, a new page closes and the walk still reaches every
/// article once.
#[test]
fn archive_pages_keep_bytes_and_etag_when_an_article_arrives() {
    // 100 articles, pages of 7 over 5: 13 closed pages, 4 current beyond 5.
    let n = 100;
    let d = TestDaemon::start(
        site(n),
        "max_items = 5\narchive_page_size = 7\narchive_max_age = 7200\n",
    );
    d.poll("/atom.xml", "the site published", |r| {
        r.status == 200 && r.text().contains("Story 099")
    });
    let pages: Vec<String> = ["atom", "rss"]
        .iter()
        .flat_map(|f| (1..=13).map(move |k| format!("/archive/{f}/{k}.xml")))
        .chain((1..=13).map(|k| format!("/archive/json/{k}.json")))
        .collect();
    let before: BTreeMap<&str, (Vec<u8>, String)> = pages
        .iter()
        .map(|p| {
            let r = d.get(p);
            assert_eq!(r.status, 200, "{p}");
            (p.as_str(), (r.body.clone(), r.header("etag").to_string()))
        })
        .collect();
    assert_eq!(d.get("/archive/atom/14.xml").status, 404);
    let on_disk = |s: &BTreeMap<String, (u64, std::time::SystemTime)>| {
        s.iter()
            .filter(|(f, _)| f.starts_with("archive/"))
            .map(|(f, st)| (f.clone(), *st))
            .collect::<BTreeMap<_, _>>()
    };
    let disk_before = on_disk(&stamps(&d.ws.path("feeds")));
    // One `.gz` per page: closed pages are stored only gzipped.
    assert_eq!(disk_before.len(), 13 * 3, "{disk_before:?}");

    d.ws.write("content/s100.md", story(100));
    d.poll("/atom.xml", "the new article", |r| {
        r.text().contains("Story 100")
    });
    d.poll("/feed.json", "the new article", |r| {
        r.text().contains("Story 100")
    });
    for (p, (body, etag)) in &before {
        let r = d.get(p);
        assert_eq!(&r.body, body, "{p}: bytes kept");
        assert_eq!(r.header("etag"), etag, "{p}: ETag kept");
        let r = d.request("GET", p, &[("if-none-match", etag)]);
        assert_eq!(r.status, 304, "{p}");
        assert_eq!(r.header("cache-control"), "public, max-age=7200", "{p}");
    }
    assert_eq!(
        on_disk(&stamps(&d.ws.path("feeds"))),
        disk_before,
        "no archive file rewritten"
    );

    // Three more fill the current document (5 + 7): page 14 closes, and
    // page 13 gains its next-archive link.
    for i in 101..=103 {
        d.ws.write(&format!("content/s{i:03}.md"), story(i));
    }
    d.poll("/archive/atom/14.xml", "page 14", |r| r.status == 200);
    let (_, links) = walk(&d, "/atom.xml");
    assert_eq!(links, permalinks(104, false));
    for (p, (body, etag)) in &before {
        if p.ends_with("/13.xml") {
            continue;
        }
        let r = d.get(p);
        assert_eq!((&r.body, r.header("etag")), (body, etag.as_str()), "{p}");
    }
    d.stop();
}

/// Every archive page of a built site (RSS and Atom, main and category
/// feeds) is read by Python's `feedparser` without complaint, with every
/// entry; every Atom page validates against the RFC 4287 RELAX NG schema
/// (with `xmllint`), `fh:archive` being a foreign element it allows.
#[test]
fn readers_and_the_atom_schema_accept_every_archive_page() {
    let ws = site(60);
    ws.write(
        "herald.toml",
        "base_url = \"https://news.example.org/\"\nmax_items = 5\narchive_page_size = 7\n",
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let mut atom = Vec::new();
    let mut xml = Vec::new();
    // Closed pages are stored only gzipped: the tools read them unpacked.
    for (f, _) in stamps(&ws.path("feeds")) {
        if let Some(f) = f.strip_suffix(".gz") {
            if f.contains("archive/") && f.ends_with(".xml") {
                let page = crate::live::gunzip(&ws.read_bytes(&format!("feeds/{f}.gz")));
                ws.write(&format!("unpacked/{f}"), page);
                if f.contains("/atom/") {
                    atom.push(f.to_string());
                }
                xml.push(f.to_string());
            }
        }
    }
    // Main: (60 - 5) / 7 = 7 pages; each category (30): 3.
    assert_eq!(xml.len(), 2 * (7 + 3 + 3), "{xml:?}");
    if have_tool(
        "python3",
        &["-c", "import feedparser"],
        "pip install feedparser",
    ) {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(
                "import sys, feedparser\n\
                 for name in sys.argv[1:]:\n\
                 \x20   d = feedparser.parse(name)\n\
                 \x20   print(name, int(bool(d.bozo)), d.version, len(d.entries), repr(d.get('bozo_exception', '')))\n",
            )
            .args(&xml)
            .current_dir(ws.path("unpacked"));
        let run = run_command(cmd);
        assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
        for line in run.stdout.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let want = if f[0].contains("/atom/") {
                "atom10"
            } else {
                "rss20"
            };
            assert_eq!(&f[1..4], ["0", want, "7"], "{line}");
        }
        assert_eq!(run.stdout.lines().count(), xml.len());
    }
    if have_tool("xmllint", &["--version"], "apt-get install libxml2-utils") {
        let schema =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/schemas/atom.rng");
        if schema.is_file() {
            let mut cmd = Command::new("xmllint");
            cmd.arg("--noout")
                .arg("--relaxng")
                .arg(&schema)
                .args(&atom)
                .current_dir(ws.path("unpacked"));
            let run = run_command(cmd);
            assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
            assert_eq!(
                run.stderr.matches(" validates").count(),
                atom.len(),
                "{}",
                run.stderr
            );
        } else {
            eprintln!("SKIPPED: Atom schema not found at {}", schema.display());
        }
    }
}

/// Archive pages are not WebSub topics: a publish that closes a page (new
/// pages, one changed) pings the hub about the current feeds only, and
/// the built-in hub refuses a subscription to an archive page.
#[test]
fn archive_pages_are_not_pinged() {
    let hub = Recorder::start(|_| Some((204, Vec::new())));
    let d = TestDaemon::start(
        site(20),
        &format!(
            "max_items = 2\narchive_page_size = 2\n[websub]\nhubs = [\"{}\"]\nbuiltin = true\nretry_backoff_ms = 50\n",
            hub.url("/hub")
        ),
    );
    d.poll("/archive/atom/9.xml", "the archive published", |r| {
        r.status == 200
    });
    // Two more Red articles: the main feed and Red each close a page.
    d.ws.write("content/s020.md", story(20));
    d.ws.write("content/s022.md", story(22));
    d.poll("/archive/atom/10.xml", "a new page", |r| r.status == 200);
    let got = hub.wait("the current feeds pinged", |g| g.len() >= 6);
    // Then a Blue one, whose pings come after any of the first publish.
    d.ws.write("content/s021.md", story(21));
    let all = hub.wait("the Blue feeds pinged", |g| {
        g.iter().any(|g| {
            form_urlencoded::parse(&g.body).any(|(k, v)| k == "hub.topic" && v.contains("/blue/"))
        })
    });
    assert!(all.len() >= got.len());
    for g in &all {
        let topic = form_urlencoded::parse(&g.body)
            .find(|(k, _)| k == "hub.topic")
            .map(|(_, v)| v.into_owned())
            .expect("a topic");
        assert!(!topic.contains("/archive/"), "archive page pinged: {topic}");
    }
    let body = format!(
        "hub.mode=subscribe&hub.topic={}&hub.callback={}",
        form_urlencoded::byte_serialize(format!("{BASE}archive/atom/1.xml").as_bytes())
            .collect::<String>(),
        form_urlencoded::byte_serialize(b"https://cb.example/x").collect::<String>(),
    );
    let r = crate::websub::post_raw(d.addr, "application/x-www-form-urlencoded", body.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("is not one of this site's feeds"),
        "{}",
        r.text()
    );
    d.stop();
}

/// `build` writes every closed archive page as its `.gz` alone (no
/// uncompressed file beside it) and, when the archive shrinks, removes the
/// pages no longer there (and a stray document under `archive/`, and an
/// uncompressed page an earlier layout left), keeping what is not Herald's.
#[test]
fn build_writes_and_prunes_archive_files() {
    let ws = site(60);
    ws.write(
        "herald.toml",
        "base_url = \"https://news.example.org/\"\nmax_items = 5\narchive_page_size = 7\n",
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    for (f, there) in [
        ("archive/atom/7.xml.gz", true),
        ("archive/atom/7.xml", false),
        ("archive/rss/1.xml.gz", true),
        ("archive/json/7.json.gz", true),
        ("archive/json/7.json", false),
        ("categories/red/archive/atom/3.xml.gz", true),
        // The current documents keep both files.
        ("atom.xml", true),
        ("atom.xml.gz", true),
    ] {
        assert_eq!(ws.exists(&format!("feeds/{f}")), there, "{f}");
    }
    ws.write("feeds/archive/atom/99.xml", "<feed/>");
    ws.write("feeds/archive/atom/5.xml", "<feed>an earlier layout</feed>");
    ws.write("feeds/archive/notes.txt", "mine");
    for i in 40..60 {
        std::fs::remove_file(ws.path(&format!("content/s{i:03}.md"))).unwrap();
    }
    ws.herald_cfg(&["build"]).expect_code(0);
    // (40 - 5) / 7 = 5 pages; Red: (20 - 5) / 7 = 2.
    for (f, there) in [
        ("archive/atom/5.xml.gz", true),
        ("archive/atom/5.xml", false),
        ("archive/atom/6.xml", false),
        ("archive/atom/6.xml.gz", false),
        ("archive/json/7.json.gz", false),
        ("archive/atom/99.xml", false),
        ("archive/notes.txt", true),
        ("categories/red/archive/atom/2.xml.gz", true),
        ("categories/red/archive/atom/3.xml.gz", false),
    ] {
        assert_eq!(ws.exists(&format!("feeds/{f}")), there, "{f}");
    }
    let page = String::from_utf8(crate::live::gunzip(
        &ws.read_bytes("feeds/archive/atom/5.xml.gz"),
    ))
    .unwrap();
    assert!(
        page.contains("Story 034") && !page.contains("Story 035"),
        "{page}"
    );
    assert!(!page.contains("next-archive"), "{page}");
}
