//! `herald build` and `herald check` end to end: the real binary on the
//! fixture tree (`tests/fixtures/content` plus the broken files of
//! `tests/fixtures/broken`), outputs read back with `feed-rs`.

use std::collections::BTreeSet;
use std::io::Read;

use chrono::{DateTime, Utc};
use feed_rs::model::{Entry, Feed};

use crate::util::{stamps, tree, Workspace};

/// The published fixture articles, newest first: slug, title, published
/// and updated (UTC; the columns are read in Asia/Shanghai, UTC+8), labels.
pub const ARTICLES: [(&str, &str, &str, &str, &[&str]); 12] = [
    (
        "sept-noon",
        "A September column at noon",
        "2025-09-11T04:00:00Z",
        "2025-09-11T04:00:00Z",
        &["Columns and Opinions"],
    ),
    (
        "after-midnight",
        "Five past midnight",
        "2025-08-08T16:05:00Z",
        "2025-08-08T16:05:00Z",
        &["World"],
    ),
    (
        "midnight",
        "Fireworks at midnight",
        "2025-07-03T16:00:00Z",
        "2025-07-03T16:00:00Z",
        &["World"],
    ),
    (
        "title-only",
        "Headline without a story",
        "2025-06-03T12:15:00Z",
        "2025-06-03T12:15:00Z",
        &["World"],
    ),
    (
        "hostile-title",
        HOSTILE_TITLE,
        "2025-06-01T22:40:00Z",
        "2025-06-01T22:40:00Z",
        &["Columns and Opinions"],
    ),
    (
        "windows-export",
        "Exported from Windows",
        "2025-06-01T15:05:00Z",
        "2025-06-01T15:05:00Z",
        &["Columns and Opinions"],
    ),
    (
        "hostile-html",
        "Raw HTML that must be cleaned",
        "2025-05-26T04:00:00Z",
        "2025-05-26T04:00:00Z",
        &["World"],
    ),
    (
        "toml-notes",
        "Notes kept in TOML",
        "2025-05-25T02:00:00Z",
        "2025-05-25T02:00:00Z",
        &["World", "notes"],
    ),
    (
        "ceasefire-talks",
        "Ceasefire talks resume",
        "2025-05-22T22:40:00Z",
        "2025-05-24T01:00:00Z",
        &["Columns and Opinions", "diplomacy", "ukraine"],
    ),
    (
        "thousand-for-thousand",
        "What impact will the \"thousand people for thousand people\" plan between Russia and Ukraine have?",
        "2025-05-21T22:40:00Z",
        "2025-05-21T22:40:00Z",
        &["Columns and Opinions"],
    ),
    (
        "twin",
        "The first twin",
        "2025-05-05T02:00:00Z",
        "2025-05-05T02:00:00Z",
        &["World"],
    ),
    (
        "march-morning",
        "Morning talks open in Geneva",
        "2024-03-01T01:00:00Z",
        "2024-03-01T01:00:00Z",
        &["World"],
    ),
];

const HOSTILE_TITLE: &str = "Tom & Jerry <script>alert(\"x\")</script> say 'hi' ]]> done";

/// Every rejected fixture file, as `herald build` logs it and `herald
/// check` prints it (sorted by path).
const REJECTED: [&str; 7] = [
    "content/broken/binary.txt:3: binary file (NUL byte), not an article",
    "content/broken/empty.txt:1: empty file: expected a date line",
    "content/broken/garbage-date.txt:1: invalid date line \"Yesterday-ish, around lunch\": no day (expected e.g. \"May 22, 2025, 6:40 a.m.\")",
    "content/broken/invalid-utf8.txt:5: invalid UTF-8 at byte 29",
    "content/broken/no-title.txt:5: no title: file ends after the header",
    "content/broken/twin.md:1: slug \"twin\" is already used by content/broken/2025-05-05-twin.txt; rename one of the files or set `slug`",
    "content/broken/unclosed.md:5: front matter opened on line 1 is never closed with `---`",
];

const WARNED: [&str; 1] =
    ["content/columns/2025-06-03-title-only.txt:7: article has a title but no body paragraphs"];

/// Text of fixture files that must never reach any output: drafts, site
/// chrome, the losing slug twin, the future article, and everything the
/// sanitiser removes.
const NEVER_PUBLISHED: [&str; 14] = [
    "Draft text that must never appear",
    "Not ready",
    "A teaser that must not be published",
    "Teaser body",
    "Something else entirely",
    "The second twin",
    "News from the future",
    "stolen",
    "onerror",
    "onclick",
    "javascript:",
    "iframe",
    "evil.example",
    "\u{1}",
];

/// The feeds of the fixture site: directory prefixes.
const FEED_DIRS: [&str; 3] = ["", "categories/columns-and-opinions/", "categories/world/"];

/// A workspace holding the fixture config, the good fixtures under
/// `content/` and the broken ones under `content/broken/`.
pub fn fixture_site() -> Workspace {
    let ws = Workspace::new();
    ws.copy_fixture("herald.toml", "herald.toml");
    ws.copy_fixture("content", "content");
    ws.copy_fixture("broken", "content/broken");
    ws
}

/// A workspace with the fixture config and only the good fixtures: the
/// published articles less the slug twin, which lives with the broken ones.
fn clean_site() -> Workspace {
    let ws = Workspace::new();
    ws.copy_fixture("herald.toml", "herald.toml");
    ws.copy_fixture("content", "content");
    ws
}

fn parse_feed(ws: &Workspace, rel: &str) -> Feed {
    feed_rs::parser::parse(ws.read_bytes(&format!("feeds/{rel}")).as_slice())
        .unwrap_or_else(|e| panic!("feed-rs cannot parse {rel}: {e}"))
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn title(e: &Entry) -> &str {
    e.title.as_ref().map_or("", |t| t.content.as_str())
}

/// The item's full content; trailing white space trimmed because feed-rs
/// trims Atom and JSON Feed content but not RSS `content:encoded`.
fn body(e: &Entry) -> &str {
    e.content
        .as_ref()
        .and_then(|c| c.body.as_deref())
        .unwrap_or("")
        .trim_end()
}

fn entry<'a>(f: &'a Feed, slug: &str) -> &'a Entry {
    f.entries
        .iter()
        .find(|e| e.id.ends_with(&format!(":{slug}")))
        .unwrap_or_else(|| panic!("no entry {slug}"))
}

fn ids(f: &Feed) -> Vec<String> {
    f.entries.iter().map(|e| e.id.clone()).collect()
}

/// `(id, updated)` of every item of the main JSON Feed, read directly.
fn json_items(ws: &Workspace) -> Vec<(String, String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&ws.read("feeds/feed.json")).expect("feed.json is JSON");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().expect("id").to_string(),
                i["date_published"].as_str().expect("published").to_string(),
                i["date_modified"].as_str().expect("modified").to_string(),
            )
        })
        .collect()
}

fn item<'a>(items: &'a [(String, String, String)], slug: &str) -> &'a (String, String, String) {
    items
        .iter()
        .find(|(id, _, _)| id.ends_with(&format!(":{slug}")))
        .unwrap_or_else(|| panic!("no item {slug} in {items:?}"))
}

/// Building the fixtures exits 1, logs each broken file once as
/// `path:line: reason`, says nothing about ignored litter, and still
/// publishes every good article.
#[test]
fn build_reports_each_broken_file_and_publishes_the_rest() {
    let ws = fixture_site();
    let run = ws.herald_cfg(&["build"]);
    run.expect_code(1);
    assert_eq!(run.log("ERROR"), REJECTED, "stderr:\n{}", run.stderr);
    assert_eq!(run.log("WARN"), WARNED, "stderr:\n{}", run.stderr);
    for litter in [".x.swp", "x.txt~", ".hidden.txt", "notes.rst"] {
        assert!(
            !run.stderr.contains(litter),
            "{litter} mentioned:\n{}",
            run.stderr
        );
    }
    assert_eq!(run.build_field("articles"), "12");
    assert_eq!(run.build_field("rejected"), "7");

    let rss = parse_feed(&ws, "rss.xml");
    let titles: Vec<&str> = rss.entries.iter().map(title).collect();
    let want: Vec<&str> = ARTICLES.iter().map(|a| a.1).collect();
    assert_eq!(titles, want);
    for (slug, ..) in ARTICLES {
        assert!(
            ws.exists(&format!("feeds/articles/{slug}/index.html")),
            "page of {slug}"
        );
    }
}

/// RSS, Atom and JSON Feed round-trip through `feed-rs` with the exact
/// titles (the hostile one as literal characters), `tag:` ids, dates,
/// categories and bodies.
#[test]
fn feeds_round_trip_through_feed_rs() {
    let ws = fixture_site();
    ws.herald_cfg(&["build"]).expect_code(1);
    let rss_text = ws.read("feeds/rss.xml");

    for file in ["rss.xml", "atom.xml", "feed.json"] {
        let f = parse_feed(&ws, file);
        assert_eq!(
            f.title.as_ref().map(|t| t.content.as_str()),
            Some("Herald Test Desk"),
            "{file}"
        );
        assert_eq!(f.entries.len(), ARTICLES.len(), "{file}");
        for (e, (slug, title_want, published, updated, labels)) in f.entries.iter().zip(ARTICLES) {
            let id = format!("tag:news.example.org,{}:{slug}", published_local_date(slug));
            assert_eq!(e.id, id, "{file} id");
            assert_eq!(title(e), title_want, "{file} title of {slug}");
            assert_eq!(
                e.published,
                Some(utc(published)),
                "{file} published of {slug}"
            );
            if file != "rss.xml" {
                // RSS 2.0 has no per-item update time.
                assert_eq!(e.updated, Some(utc(updated)), "{file} updated of {slug}");
            }
            let terms: Vec<&str> = e.categories.iter().map(|c| c.term.as_str()).collect();
            assert_eq!(terms, labels, "{file} categories of {slug}");
            let link = format!("https://news.example.org/articles/{slug}/");
            assert!(
                e.links.iter().any(|l| l.href == link),
                "{file} link of {slug}: {:?}",
                e.links
            );
            if file == "rss.xml" {
                assert!(
                    rss_text.contains(&format!("<guid isPermaLink=\"false\">{id}</guid>")),
                    "guid of {slug} is not marked as a non-permalink"
                );
            }
        }

        let hostile = entry(&f, "hostile-title");
        assert_eq!(
            body(hostile),
            "<p>Bell and vertical tab are gone.</p>\n<p>Latest figures show a &lt;b&gt;rise&lt;/b&gt; &amp; a fall.</p>",
            "{file}: control characters dropped, markup escaped, chrome cut"
        );
        assert_eq!(
            body(entry(&f, "windows-export")),
            "<p>A paragraph typed on Windows, with a tab-indented continuation.</p>\n<p>Last paragraph.</p>",
            "{file}: BOM, CRLF, tabs and the views line are not text"
        );
        assert_eq!(
            body(entry(&f, "march-morning")),
            "<p>Delegations met at nine in the morning.</p>\n<p>Latest figures show turnout above forecasts.</p>",
            "{file}: a paragraph starting with `Latest` is body"
        );
        assert_eq!(
            body(entry(&f, "hostile-html")),
            "<p>Plain opening paragraph.</p>\n\n<img src=\"https://example.org/p.png\">\n<p><a>click me</a> and <a>this</a>.</p>",
            "{file}: raw HTML sanitised"
        );
        assert_eq!(body(entry(&f, "title-only")), "", "{file}: no body");
        assert_eq!(
            entry(&f, "ceasefire-talks")
                .summary
                .as_ref()
                .map(|s| s.content.as_str()),
            Some("One paragraph for feed readers."),
            "{file}: front-matter summary"
        );
        let sample = body(entry(&f, "thousand-for-thousand"));
        assert!(
            sample.starts_with("<p>On May 16 local time, the delegations of Russia and Ukraine")
                && sample.ends_with("the political settlement of the conflict.</p>")
                && sample.matches("<p>").count() == 5,
            "{file}: the real column keeps its five paragraphs and drops the teasers: {sample}"
        );
    }
}

/// The local (UTC+8) publication date in each fixture id.
pub fn published_local_date(slug: &str) -> &'static str {
    match slug {
        "sept-noon" => "2025-09-11",
        "after-midnight" => "2025-08-09",
        "midnight" => "2025-07-04",
        "title-only" => "2025-06-03",
        "hostile-title" => "2025-06-02",
        "windows-export" => "2025-06-01",
        "hostile-html" => "2025-05-26",
        "toml-notes" => "2025-05-25",
        "ceasefire-talks" => "2025-05-23",
        "thousand-for-thousand" => "2025-05-22",
        "twin" => "2025-05-05",
        "march-morning" => "2024-03-01",
        other => panic!("unknown slug {other}"),
    }
}

/// Drafts, teasers, the losing slug twin, future articles and everything
/// the sanitiser removes appear in no output file, and the hostile title
/// is never markup in any HTML page.
#[test]
fn nothing_unpublishable_leaks_into_any_output() {
    let ws = fixture_site();
    ws.herald_cfg(&["build"]).expect_code(1);
    let files = tree(&ws.path("feeds"));
    assert!(!files.is_empty());
    for (rel, bytes) in &files {
        if rel.ends_with(".gz") {
            continue;
        }
        let text = String::from_utf8(bytes.clone()).unwrap_or_else(|_| panic!("{rel} not UTF-8"));
        for bad in NEVER_PUBLISHED {
            assert!(!text.contains(bad), "{rel} contains {bad:?}");
        }
        assert!(!text.contains('\u{b}'), "{rel} contains a vertical tab");
        if rel.ends_with(".html") {
            assert!(!text.contains("<script"), "{rel} contains a script tag");
        }
    }
    assert!(!ws.exists("feeds/articles/future"));
    assert!(!ws.exists("feeds/articles/draft"));
}

/// Each category gets RSS, Atom and JSON feeds holding exactly its
/// articles; every output file has a `.gz` twin with the same bytes.
#[test]
fn category_feeds_and_gzip_twins() {
    let ws = fixture_site();
    ws.herald_cfg(&["build"]).expect_code(1);
    let cats: BTreeSet<String> = std::fs::read_dir(ws.path("feeds/categories"))
        .expect("categories dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        cats,
        BTreeSet::from(["columns-and-opinions".to_string(), "world".to_string()])
    );
    for (dir, category) in [
        ("categories/world/", "World"),
        ("categories/columns-and-opinions/", "Columns and Opinions"),
    ] {
        let want: Vec<&str> = ARTICLES
            .iter()
            .filter(|a| a.4.contains(&category))
            .map(|a| a.1)
            .collect();
        for file in ["rss.xml", "atom.xml", "feed.json"] {
            let f = parse_feed(&ws, &format!("{dir}{file}"));
            let titles: Vec<&str> = f.entries.iter().map(title).collect();
            assert_eq!(titles, want, "{dir}{file}");
            assert_eq!(
                f.title.as_ref().map(|t| t.content.as_str()),
                Some(format!("Herald Test Desk — {category}").as_str())
            );
        }
    }
    let files = tree(&ws.path("feeds"));
    for (rel, bytes) in &files {
        if let Some(plain) = rel.strip_suffix(".gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes.as_slice())
                .read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(Some(&out), files.get(plain), "{rel} differs from {plain}");
        } else {
            assert!(
                files.contains_key(&format!("{rel}.gz")),
                "{rel} has no .gz twin"
            );
        }
    }
}

/// The index links every article and announces the main and category
/// feeds with `<link rel="alternate">`; the OPML lists every feed once,
/// tags' too, as Atom.
#[test]
fn index_autodiscovery_and_opml_list_every_feed() {
    let ws = fixture_site();
    ws.herald_cfg(&["build"]).expect_code(1);
    let index = ws.read("feeds/index.html");
    let opml = ws.read("feeds/feeds.opml");
    let mut listed = BTreeSet::new();
    for dir in FEED_DIRS {
        let name = match dir {
            "" => "Herald Test Desk".to_string(),
            "categories/world/" => "Herald Test Desk — World".to_string(),
            _ => "Herald Test Desk — Columns and Opinions".to_string(),
        };
        for (file, mime, kind) in [
            ("rss.xml", "application/rss+xml", "RSS"),
            ("atom.xml", "application/atom+xml", "Atom"),
            ("feed.json", "application/feed+json", "JSON Feed"),
        ] {
            assert!(ws.exists(&format!("feeds/{dir}{file}")));
            let url = format!("https://news.example.org/{dir}{file}");
            let link = format!(
                "<link rel=\"alternate\" type=\"{mime}\" title=\"{name} ({kind})\" href=\"{url}\">"
            );
            assert!(index.contains(&link), "index lacks {link}");
            if file == "atom.xml" {
                listed.insert(url);
            }
        }
    }
    assert_eq!(index.matches("<link rel=\"alternate\"").count(), 9);
    for tag in ["diplomacy", "notes", "ukraine"] {
        assert!(ws.exists(&format!("feeds/tags/{tag}/rss.xml")));
        listed.insert(format!("https://news.example.org/tags/{tag}/atom.xml"));
    }
    let in_opml: Vec<String> = opml
        .split("xmlUrl=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(in_opml.iter().cloned().collect::<BTreeSet<_>>(), listed);
    assert_eq!(in_opml.len(), 6, "each feed once: {opml}");
    for (slug, t, ..) in ARTICLES {
        let href = format!("<a href=\"https://news.example.org/articles/{slug}/\">");
        assert!(index.contains(&href), "index lacks {slug}");
        let escaped = t
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        assert!(index.contains(&escaped), "index lacks title {escaped}");
    }
}

/// Two builds of the same content in fresh directories give byte-identical
/// output and state; a second build in the same place rewrites nothing.
#[test]
fn builds_are_deterministic_and_idempotent() {
    let a = fixture_site();
    let b = fixture_site();
    a.herald_cfg(&["build"]).expect_code(1);
    b.herald_cfg(&["build"]).expect_code(1);
    let ta = tree(&a.path("feeds"));
    assert_eq!(
        ta.len(),
        2 * (6 * 3 + 12 + 1 + 5 + 1),
        "6 feeds in 3 formats (the main one, 2 categories, 3 tags), 12 article pages, \
         the index, the 5 category and tag pages, OPML"
    );
    assert_eq!(ta, tree(&b.path("feeds")));
    assert_eq!(a.read("state/state.json"), b.read("state/state.json"));

    let before = stamps(&a.path("feeds"));
    let state_before = stamps(&a.path("state"));
    let again = a.herald_cfg(&["build"]);
    again.expect_code(1);
    assert_eq!(again.build_field("written"), "0", "{}", again.stderr);
    assert_eq!(again.build_field("removed"), "0");
    assert_eq!(
        stamps(&a.path("feeds")),
        before,
        "output files were rewritten"
    );
    assert_eq!(
        stamps(&a.path("state")),
        state_before,
        "state was rewritten"
    );
}

/// Editing an article's body keeps its id and published date and moves its
/// `updated` to the time of the build; other articles keep theirs.
#[test]
fn edit_keeps_id_and_moves_updated_forward() {
    let ws = clean_site();
    ws.herald_cfg(&["build"]).expect_code(0);
    let first = json_items(&ws);
    let path = "content/columns/2025-07-04-midnight.txt";
    let mut text = ws.read(path);
    text.push_str("\nA correction was added after publication.\n");
    let before = Utc::now() - chrono::Duration::seconds(1);
    ws.write(path, text);
    ws.herald_cfg(&["build"]).expect_code(0);
    let after = Utc::now() + chrono::Duration::seconds(1);
    let second = json_items(&ws);

    assert_eq!(
        second.iter().map(|i| &i.0).collect::<Vec<_>>(),
        first.iter().map(|i| &i.0).collect::<Vec<_>>(),
        "ids and order unchanged"
    );
    let (id, published, updated) = item(&second, "midnight");
    assert_eq!(id, "tag:news.example.org,2025-07-04:midnight");
    assert_eq!(published, "2025-07-04T00:00:00+08:00");
    let updated = utc(updated);
    assert!(
        updated >= before && updated <= after,
        "updated {updated} not within the build ({before}..{after})"
    );
    for (old, new) in first.iter().zip(&second) {
        if !old.0.ends_with(":midnight") {
            assert_eq!(old, new, "an untouched article changed");
        }
    }
    let atom = parse_feed(&ws, "atom.xml");
    assert_eq!(entry(&atom, "midnight").updated, Some(updated));
    assert!(body(entry(&atom, "midnight")).contains("A correction was added"));
}

/// Touching a file or re-saving it with CRLF line endings is not a change:
/// nothing is rewritten and `updated` stays.
#[test]
fn touch_and_crlf_resave_change_nothing() {
    let ws = clean_site();
    ws.herald_cfg(&["build"]).expect_code(0);
    let first = json_items(&ws);
    let path = "content/columns/2025-07-04-midnight.txt";
    let crlf = ws.read(path).replace('\n', "\r\n");
    ws.write(path, crlf);
    let f = std::fs::File::options()
        .append(true)
        .open(ws.path(path))
        .expect("open");
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .expect("set mtime");
    drop(f);
    let run = ws.herald_cfg(&["build"]);
    run.expect_code(0);
    assert_eq!(run.build_field("written"), "0", "{}", run.stderr);
    assert_eq!(json_items(&ws), first);
}

/// Renaming a file, moving it into another directory, or both with a new
/// slug keeps its id and `updated`; the old page becomes a redirect page.
#[test]
fn rename_and_move_keep_ids() {
    let ws = clean_site();
    ws.herald_cfg(&["build"]).expect_code(0);
    let first = json_items(&ws);

    std::fs::create_dir_all(ws.path("content/archive/2025/09")).expect("mkdir");
    std::fs::rename(
        ws.path("content/columns/2025-09-11-sept-noon.txt"),
        ws.path("content/archive/2025/09/sept-noon.txt"),
    )
    .expect("move");
    std::fs::rename(
        ws.path("content/markdown/2025-05-25-toml-notes.md"),
        ws.path("content/markdown/notes-in-toml.md"),
    )
    .expect("rename");
    ws.herald_cfg(&["build"]).expect_code(0);
    let second = json_items(&ws);
    assert_eq!(second, first, "ids and dates survive rename and move");

    let v: serde_json::Value = serde_json::from_str(&ws.read("feeds/feed.json")).expect("json");
    let renamed = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == "tag:news.example.org,2025-05-25:toml-notes")
        .expect("renamed article");
    assert_eq!(
        renamed["url"],
        "https://news.example.org/articles/notes-in-toml/"
    );
    assert!(ws.exists("feeds/articles/notes-in-toml/index.html"));
    let old = ws.read("feeds/articles/toml-notes/index.html");
    assert!(
        old.contains("url=https://news.example.org/articles/notes-in-toml/"),
        "the old path holds a redirect page, not the stale article: {old}"
    );
    assert!(ws.exists("feeds/articles/sept-noon/index.html"));
}

/// A new process with the same state file (even with the output directory
/// wiped) gives every article the same id and `updated`, and leaves the
/// state file byte-identical.
#[test]
fn restart_keeps_ids_and_state() {
    let ws = clean_site();
    ws.herald_cfg(&["build"]).expect_code(0);
    let first = json_items(&ws);
    let state = ws.read("state/state.json");
    std::fs::remove_dir_all(ws.path("feeds")).expect("wipe output");
    ws.herald_cfg(&["build"]).expect_code(0);
    assert_eq!(json_items(&ws), first);
    assert_eq!(ws.read("state/state.json"), state);
}

/// Moving `base_url` from http to https, and then to another host, changes
/// links but never ids.
#[test]
fn base_url_change_keeps_ids() {
    let ws = Workspace::new();
    ws.copy_fixture("content", "content");
    let config = |url: &str| format!("timezone = \"Asia/Shanghai\"\nbase_url = \"{url}\"\n");
    ws.write("herald.toml", config("http://news.example.org"));
    ws.herald_cfg(&["build"]).expect_code(0);
    let first = ids(&parse_feed(&ws, "atom.xml"));
    assert_eq!(first.len(), 11);
    assert!(first
        .iter()
        .all(|id| id.starts_with("tag:news.example.org,")));
    assert!(ws
        .read("feeds/rss.xml")
        .contains("<link>http://news.example.org/articles/"));

    for url in ["https://news.example.org/", "https://www.example.com/news/"] {
        ws.write("herald.toml", config(url));
        ws.herald_cfg(&["build"]).expect_code(0);
        for file in ["rss.xml", "atom.xml", "feed.json"] {
            let f = parse_feed(&ws, file);
            assert_eq!(ids(&f), first, "{file} after base_url = {url}");
            let link = &f.entries[0].links[0].href;
            assert!(
                link.starts_with(url),
                "{file}: {link} does not start with {url}"
            );
        }
    }
}

/// An article dated in the future is in no feed, page or index, and the
/// build does not count it as a problem.
#[test]
fn future_dated_article_is_absent() {
    let ws = clean_site();
    let run = ws.herald_cfg(&["build"]);
    run.expect_code(0);
    assert_eq!(run.build_field("articles"), "11");
    for dir in FEED_DIRS {
        for file in ["rss.xml", "atom.xml", "feed.json"] {
            let f = parse_feed(&ws, &format!("{dir}{file}"));
            assert!(
                f.entries.iter().all(|e| !e.id.contains("future")),
                "{dir}{file} lists the future article"
            );
        }
    }
    assert!(!ws.read("feeds/index.html").contains("News from the future"));
    assert!(!ws.exists("feeds/articles/future"));
}

/// `herald check` prints every problem and a summary, exits 1, and writes
/// nothing at all (no output, no state).
#[test]
fn check_lists_all_problems_and_writes_nothing() {
    let ws = fixture_site();
    let before = tree(ws.root());
    let run = ws.herald_cfg(&["check"]);
    run.expect_code(1);
    let mut want: Vec<String> = REJECTED.iter().map(|r| format!("error: {r}")).collect();
    want.extend(WARNED.iter().map(|w| format!("warning: {w}")));
    want.push("12 articles ok, 7 files rejected, 1 warning".into());
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), want);
    assert_eq!(tree(ws.root()), before, "check changed files");
    assert!(std::fs::read_dir(ws.path("feeds"))
        .expect("feeds")
        .next()
        .is_none());
    assert!(std::fs::read_dir(ws.path("state"))
        .expect("state")
        .next()
        .is_none());

    let clean = clean_site();
    let run = clean.herald_cfg(&["check"]);
    run.expect_code(0);
    assert_eq!(
        run.stdout,
        "warning: content/columns/2025-06-03-title-only.txt:7: article has a title but no body paragraphs\n\
         11 articles ok, 0 files rejected, 1 warning\n"
    );
}

/// `--version` prints the crate version; `--help` names every command and
/// the global path flags.
#[test]
fn help_and_version() {
    let ws = Workspace::new();
    let run = ws.herald(&["--version"]);
    run.expect_code(0);
    assert_eq!(
        run.stdout,
        format!("herald {}\n", env!("CARGO_PKG_VERSION"))
    );
    let run = ws.herald(&["--help"]);
    run.expect_code(0);
    for word in [
        "Usage: herald [OPTIONS] <COMMAND>",
        "serve",
        "build",
        "check",
        "--config <CONFIG>",
        "--content <CONTENT>",
        "--output <OUTPUT>",
        "--state <STATE>",
    ] {
        assert!(
            run.stdout.contains(word),
            "--help lacks {word}:\n{}",
            run.stdout
        );
    }
    let run = ws.herald(&[]);
    run.expect_code(2);
    assert!(run.stderr.contains("Usage: herald"), "{}", run.stderr);
}

/// A bad config file exits 78 with one `file:line: key …` line and writes
/// nothing; a missing one says it cannot be read.
#[test]
fn config_errors_exit_78_naming_file_line_and_key() {
    let cases = [
        (
            "title = \"x\"\n\nmax_items = 0\n",
            "herald: herald.toml:3: max_items: must be at least 1, not 0\n",
        ),
        (
            "# site\ntimezone = \"Mars/Olympus\"\n",
            "herald: herald.toml:2: timezone: \"Mars/Olympus\" is not an IANA time zone name (e.g. \"Europe/Berlin\")\n",
        ),
        (
            "title = \"x\"\n[rss]\ncontent = \"some\"\n",
            "herald: herald.toml:3: [rss] content: unknown variant `some`, expected `full` or `summary`\n",
        ),
        (
            "base_url = \"ftp://example.org/\"\n",
            "herald: herald.toml:1: base_url: \"ftp://example.org/\" is not an absolute http(s) URL\n",
        ),
    ];
    for (config, want) in cases {
        let ws = Workspace::new();
        ws.copy_fixture(
            "content/2025-05-22-thousand-for-thousand.txt",
            "content/a.txt",
        );
        ws.write("herald.toml", config);
        for cmd in ["build", "check"] {
            let run = ws.herald_cfg(&[cmd]);
            run.expect_code(78);
            assert_eq!(run.stderr, want, "{cmd} with {config:?}");
        }
        assert!(tree(&ws.path("feeds")).is_empty());
    }

    let ws = Workspace::new();
    ws.write("herald.toml", "title = \"x\"\ncolour = \"red\"\n");
    let run = ws.herald_cfg(&["build"]);
    run.expect_code(78);
    assert!(
        run.stderr
            .starts_with("herald: herald.toml:2: unknown key `colour`"),
        "{}",
        run.stderr
    );
    let run = ws.herald(&["--config", "missing.toml", "build"]);
    run.expect_code(78);
    assert!(
        run.stderr
            .starts_with("herald: missing.toml: cannot read config:"),
        "{}",
        run.stderr
    );
}

/// With no config file at all, `herald build` in a directory holding
/// `content/` publishes to `feeds/` and `state/` with the defaults.
#[test]
fn no_config_file_uses_defaults() {
    let ws = Workspace::new();
    ws.copy_fixture(
        "content/2025-05-22-thousand-for-thousand.txt",
        "content/2025-05-22-thousand-for-thousand.txt",
    );
    std::fs::remove_dir(ws.path("feeds")).expect("rmdir");
    std::fs::remove_dir(ws.path("state")).expect("rmdir");
    ws.herald(&["build"]).expect_code(0);
    let f = parse_feed(&ws, "rss.xml");
    assert_eq!(ids(&f), ["tag:127.0.0.1,2025-05-22:thousand-for-thousand"]);
    assert_eq!(
        f.entries[0].links[0].href,
        "http://127.0.0.1:8080/articles/thousand-for-thousand/"
    );
    assert_eq!(f.entries[0].published, Some(utc("2025-05-22T06:40:00Z")));
    assert!(ws.exists("state/state.json"));
    assert!(ws.exists("feeds/articles/thousand-for-thousand/index.html.gz"));
}

/// `content = "summary"` leaves the body out of RSS and Atom items, while a
/// `[json] content = "full"` override keeps it in JSON Feed.
#[test]
fn summary_mode_and_per_kind_override() {
    let ws = Workspace::new();
    ws.copy_fixture("content", "content");
    ws.write(
        "herald.toml",
        "timezone = \"Asia/Shanghai\"\nbase_url = \"https://news.example.org/\"\n\
         content = \"summary\"\n\n[json]\ncontent = \"full\"\n",
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    assert!(!ws.read("feeds/rss.xml").contains("<content:encoded>"));
    assert!(!ws.read("feeds/atom.xml").contains("<content"));
    assert!(!ws
        .read("feeds/categories/world/atom.xml")
        .contains("<content"));
    for file in ["rss.xml", "atom.xml"] {
        let f = parse_feed(&ws, file);
        let e = entry(&f, "windows-export");
        assert!(e.content.is_none(), "{file} has content");
        assert_eq!(
            e.summary.as_ref().map(|s| s.content.as_str()),
            Some("A paragraph typed on Windows, with a tab-indented continuation."),
            "{file}"
        );
    }
    let json = parse_feed(&ws, "feed.json");
    assert_eq!(
        body(entry(&json, "windows-export")),
        "<p>A paragraph typed on Windows, with a tab-indented continuation.</p>\n<p>Last paragraph.</p>"
    );
}

/// A missing content directory exits 3 for `build` and `check`; an output
/// path that cannot be written exits 5; neither leaves a state file.
#[test]
fn unreadable_content_and_unwritable_output_exit_codes() {
    let ws = clean_site();
    for cmd in ["build", "check"] {
        let run = ws.herald_cfg(&["--content", "missing", cmd]);
        run.expect_code(3);
        assert!(
            run.stderr
                .starts_with("herald: missing: content directory cannot be read: "),
            "{cmd}: {}",
            run.stderr
        );
    }
    ws.write("blocked", "a file where the output directory should be");
    let run = ws.herald_cfg(&["--output", "blocked", "build"]);
    run.expect_code(5);
    assert!(
        run.stderr.contains("herald: writing blocked: "),
        "{}",
        run.stderr
    );
    assert!(!ws.exists("state/state.json"));
}

/// The commented example config shipped in `config/herald.toml` is valid.
#[test]
fn shipped_example_config_is_valid() {
    let ws = clean_site();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/herald.toml");
    let run = ws.herald(&["--config", config, "check"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .ends_with("11 articles ok, 0 files rejected, 1 warning\n"),
        "{}",
        run.stdout
    );
}

/// A file moved away while a new file takes its old path: the moved
/// article keeps its id (same content under a new path is the same
/// article) and the newcomer gets a fresh one.
#[test]
fn moved_article_keeps_id_when_a_new_file_takes_its_path() {
    let ws = Workspace::new();
    ws.write(
        "content/latest.txt",
        "May 1, 2025, noon\n\nWorld\n\nStory X\n\nX body.\n",
    );
    ws.herald(&["build"]).expect_code(0);
    std::fs::rename(
        ws.path("content/latest.txt"),
        ws.path("content/story-x.txt"),
    )
    .expect("move");
    ws.write(
        "content/latest.txt",
        "May 2, 2025, noon\n\nWorld\n\nStory Y\n\nY body.\n",
    );
    ws.herald(&["build"]).expect_code(0);
    let f = parse_feed(&ws, "feed.json");
    let got: Vec<(&str, &str)> = f
        .entries
        .iter()
        .map(|e| (title(e), e.id.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("Story Y", "tag:127.0.0.1,2025-05-02:latest"),
            ("Story X", "tag:127.0.0.1,2025-05-01:latest"),
        ]
    );
}

/// Log lines written to a file or pipe carry no terminal colour codes.
#[test]
fn logs_to_a_file_have_no_colour_codes() {
    let ws = clean_site();
    let mut cmd = std::process::Command::new(crate::util::HERALD);
    cmd.args(["--config", "herald.toml", "build"])
        .current_dir(ws.root())
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM");
    let out = cmd.output().expect("run herald");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("build finished"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in {stderr:?}");
}

/// A fatal error is one line naming its cause once.
#[test]
fn fatal_errors_name_their_cause_once() {
    let ws = Workspace::new();
    let run = ws.herald(&["--content", "missing", "build"]);
    run.expect_code(3);
    assert_eq!(
        run.stderr,
        "herald: missing: content directory cannot be read: No such file or directory (os error 2)\n"
    );
}

/// A build that finds content, settings and output unchanged does nothing;
/// a touched article, a changed setting or a file missing from the output
/// directory each make it build again, and the output is restored.
#[test]
fn unchanged_build_is_skipped_until_something_moves() {
    let ws = clean_site();
    ws.herald_cfg(&["build"]).expect_code(0);
    let again = ws.herald_cfg(&["build"]);
    again.expect_code(0);
    assert!(
        again.stderr.contains("unchanged since the last build"),
        "{}",
        again.stderr
    );
    let before = ws.read("feeds/rss.xml");

    std::fs::remove_file(ws.path("feeds/rss.xml")).unwrap();
    let run = ws.herald_cfg(&["build"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("unchanged since"), "{}", run.stderr);
    assert_eq!(run.build_field("written"), "1");
    assert_eq!(ws.read("feeds/rss.xml"), before);

    let cfg = ws.read("herald.toml");
    ws.write("herald.toml", format!("{cfg}\ncontent = \"summary\"\n"));
    let run = ws.herald_cfg(&["build"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("unchanged since"), "{}", run.stderr);
    assert!(!ws.read("feeds/rss.xml").contains("content:encoded"));
}
