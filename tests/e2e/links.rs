//! Links and files in article bodies: relative references made absolute
//! in feed content, the files they point to (a page bundle's images, a
//! PDF beside an article) published beside the article's permalink with
//! the right type and caching, guarded as article files are, and an
//! article's picture announced to readers (JSON Feed `image`, RSS
//! `enclosure`/`media:content`, Atom `rel="enclosure"`). Last, a site with
//! all of it (and non-ASCII slugs) read by every validator and reader.

use std::process::Command;

use crate::live::{wait_until, TestDaemon};
use crate::util::{have_tool, run_command, Newsboat, Workspace};

/// A 1×1 PNG.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

/// A small SVG (text: published with a gzip twin).
const SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"><rect width=\"10\" height=\"10\" fill=\"#c33\"/></svg>\n";

const BASE: &str = "https://news.example.org/";

/// The body of the bundle article: every kind of reference.
const STORY: &str = "---
title: The story
date: 2025-05-02T10:00:00Z
categories: [World]
---
![Chart](chart.png) and ![Map](img/map.svg \"A map\").

See [the notes](../kyiv-notes/), [the top](#top), [a report](https://example.com/r?a=1&b=2)
and [the PDF](report.pdf?download=1#page=2).

<img src=\"chart.png\" alt=\"again\">

```
<img src=\"chart.png\"> stays text
```
";

/// A workspace with the bundle `content/2025/05/story/` (index.md, two
/// images, a PDF, a file nothing links to) and a plain article.
fn bundle_site(extra_config: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "herald.toml",
        format!("base_url = \"{BASE}\"\n{extra_config}"),
    );
    ws.write("content/2025/05/story/index.md", STORY);
    ws.write("content/2025/05/story/chart.png", PNG);
    ws.write("content/2025/05/story/img/map.svg", SVG);
    ws.write("content/2025/05/story/report.pdf", b"%PDF-1.4\n%%EOF\n");
    ws.write("content/2025/05/story/stray.png", PNG);
    ws.write(
        "content/other.md",
        "---\ntitle: Other\ndate: 2025-05-01T10:00:00Z\n---\nNo links.\n",
    );
    ws
}

/// The content of the story in each feed format: RSS `content:encoded`,
/// Atom `content`, JSON Feed `content_html`.
fn story_contents(ws: &Workspace) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for file in ["rss.xml", "atom.xml", "feed.json"] {
        let f = feed_rs::parser::parse(ws.read_bytes(&format!("feeds/{file}")).as_slice())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let e = f
            .entries
            .iter()
            .find(|e| e.title.as_ref().is_some_and(|t| t.content == "The story"))
            .expect("the story");
        let body = e
            .content
            .as_ref()
            .and_then(|c| c.body.clone())
            .expect("content");
        out.push((file, body));
    }
    out
}

/// Every `href`/`src` in feed content is absolute, resolved against the
/// article's permalink (the bundle is published as `articles/story/`);
/// fragment-only and absolute URLs are untouched, and so is text that
/// only looks like markup. The article page keeps the references as
/// written (the browser resolves them against the permalink).
#[test]
fn relative_references_are_absolute_in_feeds() {
    let ws = bundle_site("");
    ws.herald_cfg(&["build"]).expect_code(0);
    let story = format!("{BASE}articles/story/");
    for (file, body) in story_contents(&ws) {
        for want in [
            format!("<img src=\"{story}chart.png\" alt=\"Chart\">"),
            format!("<img src=\"{story}img/map.svg\" alt=\"Map\" title=\"A map\">"),
            format!("<a href=\"{BASE}articles/kyiv-notes/\">the notes</a>"),
            "<a href=\"#top\">the top</a>".to_string(),
            "<a href=\"https://example.com/r?a=1&amp;b=2\">a report</a>".to_string(),
            format!("<a href=\"{story}report.pdf?download=1#page=2\">the PDF</a>"),
            format!("<img src=\"{story}chart.png\" alt=\"again\">"),
            "&lt;img src=\"chart.png\"&gt; stays text".to_string(),
        ] {
            let want = want.replace(" rel=\"noopener noreferrer\"", "");
            let body = body.replace(" rel=\"noopener noreferrer\"", "");
            assert!(body.contains(&want), "{file}: missing {want}\nin {body}");
        }
    }
    let page = ws.read("feeds/articles/story/index.html");
    assert!(
        page.contains("<img src=\"chart.png\" alt=\"Chart\">"),
        "{page}"
    );
}

/// The files an article references are published beside its permalink,
/// byte for byte, with a `.gz` twin only when compressible; a file no
/// article references is not; served with their media type, validators,
/// caching and (for SVG) a sandboxing policy; edited files are served
/// anew and a deleted article takes its files with it.
#[test]
fn referenced_files_are_published_and_served() {
    let ws = bundle_site("");
    ws.herald_cfg(&["build"]).expect_code(0);
    assert_eq!(ws.read_bytes("feeds/articles/story/chart.png"), PNG);
    assert!(
        !ws.exists("feeds/articles/story/chart.png.gz"),
        "PNG is compressed already"
    );
    assert_eq!(ws.read("feeds/articles/story/img/map.svg"), SVG);
    assert!(ws.exists("feeds/articles/story/img/map.svg.gz"));
    assert!(ws.exists("feeds/articles/story/report.pdf"));
    assert!(
        !ws.exists("feeds/articles/story/stray.png"),
        "referenced by no article"
    );

    let d = TestDaemon::start(ws, "");
    let r = d.get("/articles/story/chart.png");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, PNG);
    assert_eq!(r.header("content-type"), "image/png");
    assert_eq!(r.header("cache-control"), "public, max-age=300");
    assert!(!r.header("etag").is_empty() && !r.header("last-modified").is_empty());
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    let again = d.request(
        "GET",
        "/articles/story/chart.png",
        &[("If-None-Match", r.header("etag"))],
    );
    assert_eq!(again.status, 304);
    let gz = d.request(
        "GET",
        "/articles/story/chart.png",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(
        (gz.header("content-encoding"), gz.body.as_slice()),
        ("", PNG)
    );

    let svg = d.request(
        "GET",
        "/articles/story/img/map.svg",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(svg.header("content-type"), "image/svg+xml");
    assert_eq!(svg.header("content-encoding"), "gzip");
    assert!(
        svg.header("content-security-policy").contains("sandbox"),
        "{:?}",
        svg.headers
    );
    assert_eq!(
        d.get("/articles/story/report.pdf").header("content-type"),
        "application/pdf"
    );
    assert_eq!(d.get("/articles/story/stray.png").status, 404);

    // An edited image is served anew; a new reference publishes its file.
    let mut bigger = PNG.to_vec();
    bigger.extend_from_slice(b"trailing bytes");
    d.ws.write("content/2025/05/story/chart.png", &bigger);
    d.poll("/articles/story/chart.png", "edited image", |r| {
        r.body == bigger
    });
    d.ws.write(
        "content/other.md",
        "---\ntitle: Other\ndate: 2025-05-01T10:00:00Z\n---\n![Also](pic.png)\n",
    );
    d.ws.write("content/pic.png", PNG);
    d.poll("/articles/other/pic.png", "new reference", |r| {
        r.status == 200
    });
    wait_until("the new file written", || {
        d.ws.exists("feeds/articles/other/pic.png")
    });

    std::fs::remove_dir_all(d.ws.path("content/2025")).unwrap();
    d.poll(
        "/articles/story/chart.png",
        "files of a deleted article",
        |r| r.status == 404,
    );
    wait_until("the files of a deleted article removed", || {
        !d.ws.exists("feeds/articles/story")
    });
    d.stop();
}

/// Files are input like articles: a file over `max_asset_bytes`, a FIFO,
/// a symlink out of the content directory, an article file and a missing
/// image are not published, each reported once naming the article and
/// the reason; a symlink inside the content directory is followed; the
/// rest of the site is published.
#[test]
fn referenced_files_are_guarded() {
    let ws = Workspace::new();
    ws.write(
        "herald.toml",
        format!("base_url = \"{BASE}\"\nmax_asset_bytes = 1000\n"),
    );
    ws.write(
        "content/a.md",
        "---\ntitle: A\ndate: 2025-05-01T10:00:00Z\n---\n![big](big.png) ![fifo](pipe.png) ![out](out.png) ![in](in.png) ![gone](missing.png) [b](b.md) ![ok](ok.png)\n",
    );
    ws.write("content/big.png", vec![0u8; 5000]);
    ws.write("content/ok.png", PNG);
    ws.write(
        "content/b.md",
        "---\ntitle: B\ndate: 2025-05-02T10:00:00Z\n---\nb\n",
    );
    ws.write("secret.png", PNG);
    std::os::unix::fs::symlink(ws.path("secret.png"), ws.path("content/out.png")).unwrap();
    std::os::unix::fs::symlink(ws.path("content/ok.png"), ws.path("content/in.png")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        ws.path("content/pipe.png"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let run = ws.herald_cfg(&["build"]);
    run.expect_code(0);
    let warned = run.log("WARN").join("\n");
    for want in [
        "content/a.md: big.png: file is 5000 bytes; at most 1000 are published (limit `max_asset_bytes`)",
        "content/a.md: pipe.png: a FIFO (named pipe), not a regular file: not published",
        "content/a.md: out.png: symlink to",
        "content/a.md: missing.png: no such file",
    ] {
        assert!(warned.contains(want), "missing {want:?} in\n{warned}");
    }
    assert_eq!(warned.matches("big.png").count(), 1, "{warned}");
    for (file, published) in [
        ("big.png", false),
        ("pipe.png", false),
        ("out.png", false),
        ("missing.png", false),
        ("b.md", false),
        ("in.png", true),
        ("ok.png", true),
    ] {
        assert_eq!(
            ws.exists(&format!("feeds/articles/a/{file}")),
            published,
            "{file}"
        );
    }
    assert!(ws.exists("feeds/articles/b/index.html"));
}

/// An article's picture reaches readers: front matter `image` (else the
/// first image of the body) becomes JSON Feed `image`, an RSS
/// `enclosure` with length and type plus `media:content`, and an Atom
/// `rel="enclosure"` link; an image elsewhere on the web is announced
/// without the length it cannot know.
#[test]
fn the_picture_of_an_article_reaches_readers() {
    let ws = bundle_site("");
    ws.write(
        "content/other.md",
        "---\ntitle: Other\ndate: 2025-05-01T10:00:00Z\nimage: https://cdn.example.org/p.jpg\n---\nNo picture in the body.\n",
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let chart = format!("{BASE}articles/story/chart.png");
    let len = PNG.len();
    let rss = ws.read("feeds/rss.xml");
    for want in [
        format!("<enclosure url=\"{chart}\" length=\"{len}\" type=\"image/png\"/>"),
        format!("<media:content fileSize=\"{len}\" medium=\"image\" type=\"image/png\" url=\"{chart}\">"),
        "<media:content medium=\"image\" url=\"https://cdn.example.org/p.jpg\">".to_string(),
    ] {
        assert!(rss.contains(&want), "missing {want} in\n{rss}");
    }
    let atom = ws.read("feeds/atom.xml");
    assert!(
        atom.contains(&format!(
            "<link href=\"{chart}\" rel=\"enclosure\" type=\"image/png\" length=\"{len}\"/>"
        )),
        "{atom}"
    );
    assert!(
        atom.contains("<link href=\"https://cdn.example.org/p.jpg\" rel=\"enclosure\"/>"),
        "{atom}"
    );
    let json: serde_json::Value = serde_json::from_str(&ws.read("feeds/feed.json")).unwrap();
    assert_eq!(json["items"][0]["image"], chart.as_str());
    assert_eq!(json["items"][1]["image"], "https://cdn.example.org/p.jpg");

    let f = feed_rs::parser::parse(rss.as_bytes()).unwrap();
    let media = &f.entries[0].media;
    assert!(
        media
            .iter()
            .flat_map(|m| &m.content)
            .any(|c| c.url.as_ref().is_some_and(|u| u.as_str() == chart)),
        "{media:?}"
    );
}

/// A site with non-ASCII slugs, relative links, a page bundle and
/// pictures: every feed is read without a complaint by Python's
/// `feedparser` (which sees the enclosures and absolute links), `feed-rs`,
/// `xmllint` against the RFC 4287 schema (Atom) and `newsboat`.
#[test]
fn a_rich_site_passes_every_reader_and_validator() {
    let ws = bundle_site("");
    ws.write(
        "content/sub/київ.md",
        "---\ntitle: Київ\ndate: 2025-05-03T10:00:00Z\ncategories: [Світ]\nimage: фото.png\nauthors: [Олена, Bob]\n---\n![фото](фото.png) [назад](../story/)\n",
    );
    ws.write("content/sub/фото.png", PNG);
    ws.herald_cfg(&["build"]).expect_code(0);
    let feeds = [
        "rss.xml",
        "atom.xml",
        "feed.json",
        "categories/world/rss.xml",
        "categories/world/atom.xml",
        "categories/%D1%81%D0%B2%D1%96%D1%82/atom.xml",
    ];
    for f in feeds {
        let path = format!("feeds/{}", percent_decode(f));
        let parsed = feed_rs::parser::parse(ws.read_bytes(&path).as_slice())
            .unwrap_or_else(|e| panic!("feed-rs: {f}: {e}"));
        assert!(!parsed.entries.is_empty(), "{f}");
    }
    let kyiv = format!("{BASE}articles/%D0%BA%D0%B8%D1%97%D0%B2/");

    if have_tool("xmllint", &["--version"], "apt-get install libxml2-utils") {
        let schema =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/schemas/atom.rng");
        if schema.is_file() {
            for f in feeds.iter().filter(|f| f.ends_with("atom.xml")) {
                let mut cmd = Command::new("xmllint");
                cmd.arg("--noout")
                    .arg("--relaxng")
                    .arg(&schema)
                    .arg(ws.path(&format!("feeds/{}", percent_decode(f))));
                let run = run_command(cmd);
                assert_eq!(
                    run.code,
                    Some(0),
                    "xmllint {f}: {}{}",
                    run.stdout,
                    run.stderr
                );
            }
        } else {
            eprintln!("SKIPPED: no Atom schema at {}", schema.display());
        }
    }

    if have_tool(
        "python3",
        &["-c", "import feedparser"],
        "pip install feedparser",
    ) {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(
                "import json, sys, feedparser\n\
                 out = {}\n\
                 for name in sys.argv[1:]:\n\
                 \x20   d = feedparser.parse(name)\n\
                 \x20   out[name] = {'bozo': int(bool(d.bozo)), 'why': str(d.get('bozo_exception', '')),\n\
                 \x20       'entries': [[e.get('id'), e.get('link'), [a.get('name') for a in e.get('authors', [])],\n\
                 \x20                    [x.get('href') for x in e.get('enclosures', [])],\n\
                 \x20                    (e.get('content') or [{}])[0].get('value', '')] for e in d.entries]}\n\
                 print(json.dumps(out))",
            )
            .args(["rss.xml", "atom.xml"])
            .current_dir(ws.path("feeds"));
        let run = run_command(cmd);
        assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
        let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        for name in ["rss.xml", "atom.xml"] {
            let r = &report[name];
            assert_eq!(r["bozo"], 0, "{name}: {}", r["why"]);
            let e = &r["entries"][0];
            assert_eq!(
                e[0], "tag:news.example.org,2025-05-03:%D0%BA%D0%B8%D1%97%D0%B2",
                "{name}"
            );
            assert_eq!(e[1], kyiv.as_str(), "{name}");
            assert_eq!(e[2], serde_json::json!(["Олена", "Bob"]), "{name}");
            let photo = format!("{kyiv}%D1%84%D0%BE%D1%82%D0%BE.png");
            assert_eq!(e[3], serde_json::json!([photo]), "{name}");
            let content = e[4].as_str().unwrap_or("");
            assert!(
                content.contains(&format!("src=\"{photo}\"")),
                "{name}: {content}"
            );
            assert!(
                content.contains(&format!("href=\"{BASE}articles/story/\"")),
                "{name}: {content}"
            );
        }
    }

    if have_tool("newsboat", &["--version"], "apt-get install newsboat") {
        for f in ["rss.xml", "atom.xml"] {
            let url = format!("file://{}", ws.path(&format!("feeds/{f}")).display());
            let nb = Newsboat::new(&format!("{url}\n"));
            let newsboat = |action: &str| nb.run(&["-x", action]);
            let run = newsboat("reload");
            assert_eq!(run.code, Some(0), "{f}: {}{}", run.stdout, run.stderr);
            let run = newsboat("print-unread");
            assert_eq!(
                run.stdout.trim(),
                "3 unread articles",
                "{f}: {}",
                run.stderr
            );
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
