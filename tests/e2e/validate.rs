//! The fixture site's feeds checked by independent tools: `xmllint`
//! against the Atom RELAX NG schema, Python's `feedparser`, and the
//! `newsboat` feed reader. A missing tool skips its test on a developer
//! machine and fails it under CI (`CI` set), naming what to install.

use std::path::PathBuf;
use std::process::Command;

use crate::build::{fixture_site, published_local_date as id_date, ARTICLES};
use crate::util::{have_tool, run_command, Newsboat, Workspace};

/// Newest first: (slug, title) of the fixture site's main feed.
fn main_feed() -> Vec<(&'static str, &'static str)> {
    ARTICLES.iter().map(|a| (a.0, a.1)).collect()
}

fn built_site() -> Workspace {
    let ws = fixture_site();
    ws.herald_cfg(&["build"]).expect_code(1);
    ws
}

/// `shared/schemas/atom.rng`, which CI lays beside the checkout.
fn atom_schema() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/schemas/atom.rng");
    if p.is_file() {
        return Some(p);
    }
    let msg = format!(
        "Atom schema not found at {} (CI copies shared/ beside the checkout)",
        p.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// The main and a category Atom feed are valid against the RFC 4287
/// RELAX NG schema, as checked by `xmllint`.
#[test]
fn atom_validates_against_relax_ng_schema() {
    if !have_tool("xmllint", &["--version"], "apt-get install libxml2-utils") {
        return;
    }
    let Some(schema) = atom_schema() else {
        return;
    };
    let ws = built_site();
    for rel in ["atom.xml", "categories/world/atom.xml"] {
        let mut cmd = Command::new("xmllint");
        cmd.arg("--noout")
            .arg("--relaxng")
            .arg(&schema)
            .arg(ws.path(&format!("feeds/{rel}")));
        let run = run_command(cmd);
        assert_eq!(
            run.code,
            Some(0),
            "xmllint rejects {rel}:\n{}{}",
            run.stdout,
            run.stderr
        );
        assert!(run.stderr.contains(" validates"), "{}", run.stderr);
    }
}

/// Python's `feedparser` reads RSS and Atom without any complaint (`bozo`
/// is 0) and sees the same titles, links and ids. `feedparser` releases
/// (6.0.x) have no JSON Feed reader, so the same script checks `feed.json`
/// against the JSON Feed 1.1 rules with Python's strict `json` module.
#[test]
fn feedparser_reads_every_format_cleanly() {
    if !have_tool(
        "python3",
        &["-c", "import feedparser"],
        "pip install feedparser",
    ) {
        return;
    }
    let ws = built_site();
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(FEEDPARSER_SCRIPT)
        .current_dir(ws.path("feeds"));
    let run = run_command(cmd);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));

    let want: Vec<serde_json::Value> = main_feed()
        .iter()
        .map(|(slug, title)| {
            serde_json::json!([
                title,
                format!("https://news.example.org/articles/{slug}/"),
                format!("tag:news.example.org,{}:{slug}", id_date(slug)),
            ])
        })
        .collect();
    for file in ["rss.xml", "atom.xml"] {
        let r = &report[file];
        assert_eq!(r["bozo"], 0, "{file}: {}", r["bozo_exception"]);
        assert_eq!(
            r["version"],
            if file == "rss.xml" { "rss20" } else { "atom10" }
        );
        assert_eq!(r["title"], "Herald Test Desk", "{file}");
        assert_eq!(r["entries"].as_array().expect("entries"), &want, "{file}");
    }
    let j = &report["feed.json"];
    assert_eq!(j["problems"], serde_json::json!([]), "feed.json");
    assert_eq!(
        j["entries"].as_array().expect("entries"),
        &want,
        "feed.json"
    );
}

/// Runs in the output directory; prints one JSON report.
const FEEDPARSER_SCRIPT: &str = r#"
import json, feedparser
out = {}
for name in ("rss.xml", "atom.xml"):
    d = feedparser.parse(name)
    out[name] = {
        "bozo": int(bool(d.bozo)),
        "bozo_exception": str(d.get("bozo_exception", "")),
        "version": d.version,
        "title": d.feed.get("title"),
        "entries": [[e.get("title"), e.get("link"), e.get("id")] for e in d.entries],
    }

def reject_constant(c):
    raise ValueError("non-standard JSON constant " + c)

problems = []
with open("feed.json", "rb") as f:
    doc = json.loads(f.read().decode("utf-8"), parse_constant=reject_constant)
if doc.get("version") != "https://jsonfeed.org/version/1.1":
    problems.append("version is %r" % doc.get("version"))
for key in ("title", "home_page_url", "feed_url"):
    if not isinstance(doc.get(key), str) or not doc[key]:
        problems.append("top-level %s missing" % key)
items = doc.get("items")
if not isinstance(items, list):
    problems.append("items is not a list")
    items = []
seen = set()
for i, it in enumerate(items):
    if not isinstance(it.get("id"), str) or not it["id"]:
        problems.append("item %d: id must be a non-empty string" % i)
    elif it["id"] in seen:
        problems.append("item %d: duplicate id" % i)
    seen.add(it.get("id"))
    if not any(isinstance(it.get(k), str) for k in ("content_html", "content_text")):
        problems.append("item %d: neither content_html nor content_text" % i)
    for k in ("date_published", "date_modified"):
        v = it.get(k)
        if v is not None:
            try:
                import datetime
                datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                problems.append("item %d: %s %r is not RFC 3339" % (i, k, v))
    if "tags" in it and not all(isinstance(t, str) for t in it["tags"]):
        problems.append("item %d: tags must be strings" % i)
out["feed.json"] = {
    "problems": problems,
    "entries": [[it.get("title"), it.get("url"), it.get("id")] for it in items],
}
print(json.dumps(out))
"#;

/// The `newsboat` reader loads the main RSS, the main Atom and a category
/// Atom feed from `file://` URLs and stores every article with its exact
/// title and id (read back from its SQLite cache).
#[test]
fn newsboat_loads_the_feeds() {
    if !have_tool("newsboat", &["--version"], "apt-get install newsboat") {
        return;
    }
    if !have_tool(
        "python3",
        &["-c", "import sqlite3"],
        "apt-get install python3",
    ) {
        return;
    }
    let ws = built_site();
    let main = main_feed();
    let world: Vec<(&str, &str)> = ARTICLES
        .iter()
        .filter(|a| a.4.contains(&"World"))
        .map(|a| (a.0, a.1))
        .collect();
    assert_eq!(world.len(), 7);
    for (rel, want) in [
        ("rss.xml", &main[..]),
        ("atom.xml", &main[..]),
        ("categories/world/atom.xml", &world[..]),
    ] {
        // newsboat keys articles by guid across all feeds of one cache, so
        // each feed gets its own home, config and cache.
        let url = format!("file://{}", ws.path(&format!("feeds/{rel}")).display());
        let nb = Newsboat::new(&format!("{url}\n"));
        let newsboat = |action: &str| nb.run(&["-x", action]);
        let run = newsboat("reload");
        assert_eq!(run.code, Some(0), "{rel}: {}{}", run.stdout, run.stderr);
        let run = newsboat("print-unread");
        assert_eq!(run.code, Some(0), "{rel}: {}{}", run.stdout, run.stderr);
        assert_eq!(
            run.stdout.trim(),
            format!("{} unread articles", want.len()),
            "{rel}"
        );

        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(
                "import json, sqlite3, sys\n\
                 c = sqlite3.connect(sys.argv[1])\n\
                 rows = c.execute('select title, guid, url, feedurl from rss_item order by pubDate desc').fetchall()\n\
                 feeds = c.execute('select rssurl, title from rss_feed').fetchall()\n\
                 print(json.dumps({'items': rows, 'feeds': feeds}))",
            )
            .arg(nb.cache());
        let run = run_command(cmd);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let got: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        let items: Vec<(String, String, String)> = got["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| {
                assert_eq!(r[3], url.as_str());
                (
                    r[0].as_str().unwrap_or("").to_string(),
                    r[1].as_str().unwrap_or("").to_string(),
                    r[2].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let expected: Vec<(String, String, String)> = want
            .iter()
            .map(|(slug, title)| {
                (
                    title.to_string(),
                    format!("tag:news.example.org,{}:{slug}", id_date(slug)),
                    format!("https://news.example.org/articles/{slug}/"),
                )
            })
            .collect();
        assert_eq!(items, expected, "{rel}");
        let feed_title = if rel.starts_with("categories/") {
            "Herald Test Desk — World"
        } else {
            "Herald Test Desk"
        };
        assert_eq!(
            got["feeds"],
            serde_json::json!([[url, feed_title]]),
            "{rel}"
        );
    }
}
