//! What a reader or an operator reads: text in every Atom entry,
//! footnotes that work inside feeds and on shared pages, and the words of
//! Herald's own messages.

use std::path::PathBuf;
use std::process::Command;

use crate::util::{have_tool, run_command, Workspace};

fn md(title: &str, date: &str, body: &str) -> String {
    format!("---\ntitle: {title}\ndate: {date}\n---\n{body}\n")
}

fn site(config: &str, files: &[(&str, String)]) -> Workspace {
    let ws = Workspace::new();
    ws.write("herald.toml", config);
    for (p, text) in files {
        ws.write(&format!("content/{p}"), text);
    }
    ws
}

/// `shared/schemas/atom.rng` beside the checkout, when it is there.
fn atom_schema() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/schemas/atom.rng");
    if p.is_file() {
        return Some(p);
    }
    let msg = format!("Atom schema not found at {}", p.display());
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

fn xmllint_valid(ws: &Workspace, rel: &str) {
    if !have_tool("xmllint", &["--version"], "apt-get install libxml2-utils") {
        return;
    }
    let Some(schema) = atom_schema() else {
        return;
    };
    let mut cmd = Command::new("xmllint");
    cmd.arg("--noout")
        .arg("--relaxng")
        .arg(&schema)
        .arg(ws.path(rel));
    let run = run_command(cmd);
    assert_eq!(run.code, Some(0), "xmllint rejects {rel}:\n{}", run.stderr);
}

/// `feedparser`'s view of a feed: `[bozo, [[title, summary, content], …]]`.
fn feedparser(ws: &Workspace, rel: &str) -> Option<serde_json::Value> {
    if !have_tool(
        "python3",
        &["-c", "import feedparser"],
        "pip install feedparser",
    ) {
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(
            "import json, sys, feedparser\n\
             d = feedparser.parse(sys.argv[1])\n\
             print(json.dumps([int(bool(d.bozo)), [[e.get('title'), e.get('summary'), \
             [c.value for c in e.get('content', [])]] for e in d.entries]]))",
        )
        .arg(ws.path(rel));
    let run = run_command(cmd);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    Some(serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout)))
}

/// Every Atom entry carries text (W3C: MissingTextualContent): a
/// title-only article's entry has its title as `<summary>`, in the full
/// and the summary-only feed, and both stay valid Atom.
#[test]
fn title_only_atom_entry_has_a_summary() {
    let ws = site(
        "base_url = \"https://news.example.org/\"\n",
        &[
            ("empty.md", md("Only a title", "2025-05-02T10:00:00Z", "")),
            (
                "full.md",
                md("With a body", "2025-05-01T10:00:00Z", "A paragraph."),
            ),
        ],
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let atom = ws.read("feeds/atom.xml");
    for entry in atom.split("<entry>").skip(1) {
        assert!(
            entry.contains("<summary") || entry.contains("<content"),
            "entry without text:\n{entry}"
        );
    }
    assert!(atom.contains("<summary>Only a title</summary>"), "{atom}");
    xmllint_valid(&ws, "feeds/atom.xml");
    if let Some(v) = feedparser(&ws, "feeds/atom.xml") {
        assert_eq!(v[0], 0, "{v}");
        assert_eq!(v[1][0][0], "Only a title", "{v}");
        assert_eq!(v[1][0][1], "Only a title", "{v}");
        assert_eq!(v[1][1][1], "A paragraph.", "{v}");
    }
}

/// XML text with its entity references decoded, to look for markup in
/// escaped content.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&amp;", "&")
}

/// Footnotes: on the article page the notes form a numbered list at the
/// end, each note's text beside its number with a link back; in every
/// feed format the ids carry the article's slug (two articles' notes never
/// share an id) and the links are absolute, to the page's anchors; a body
/// with raw HTML keeps its footnotes through the sanitiser.
#[test]
fn footnotes_are_scoped_and_absolute() {
    let ws = site(
        "base_url = \"https://news.example.org/\"\n",
        &[
            (
                "alpha.md",
                md(
                    "Alpha",
                    "2025-05-02T10:00:00Z",
                    "Claim one.[^src] Claim two.[^2]\n\n[^src]: The source.\n[^2]: Second note.",
                ),
            ),
            (
                "beta.md",
                md(
                    "Beta",
                    "2025-05-01T10:00:00Z",
                    "Raw <b>bold</b> and a claim.[^1]\n\n[^1]: Beta's note.",
                ),
            ),
        ],
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let page = ws.read("feeds/articles/alpha/index.html");
    assert!(
        page.contains("Claim one.<sup id=\"fnref-1\"><a href=\"#fn-1\">1</a></sup>"),
        "{page}"
    );
    assert!(
        page.contains("<ol>\n<li id=\"fn-1\">\n<p>The source. <a href=\"#fnref-1\""),
        "{page}"
    );
    assert!(
        page.contains("<li id=\"fn-2\">\n<p>Second note. <a href=\"#fnref-2\""),
        "{page}"
    );
    assert!(!page.contains("footnote-definition-label"), "{page}");
    let beta = ws.read("feeds/articles/beta/index.html");
    assert!(beta.contains("<li id=\"fn-1\">"), "{beta}");
    assert!(
        beta.contains("<sup id=\"fnref-1\"><a href=\"#fn-1\""),
        "{beta}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ws.read("feeds/feed.json")).expect("feed.json is JSON");
    let json_html: String = json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["content_html"].as_str().unwrap_or("").to_string())
        .collect();
    for (file, text) in [
        ("atom.xml", unescape(&ws.read("feeds/atom.xml"))),
        ("rss.xml", unescape(&ws.read("feeds/rss.xml"))),
        ("feed.json", json_html),
    ] {
        for want in [
            "<sup id=\"alpha-fnref-1\"><a href=\"https://news.example.org/articles/alpha/#fn-1\">1</a></sup>",
            "<li id=\"alpha-fn-1\">",
            "<a href=\"https://news.example.org/articles/alpha/#fnref-2\"",
            "<li id=\"beta-fn-1\">",
            "<sup id=\"beta-fnref-1\"><a href=\"https://news.example.org/articles/beta/#fn-1\"",
        ] {
            assert!(text.contains(want), "{file} lacks {want}:\n{text}");
        }
        assert!(
            !text.contains("href=\"#"),
            "{file} has a relative link:\n{text}"
        );
    }
    xmllint_valid(&ws, "feeds/atom.xml");
}

const ARTICLE: &str = "---\ntitle: A\ndate: 2025-05-02T10:00:00Z\n---\nBody.\n";

/// An unknown key close to a known one is answered with the known one,
/// without the list of every key; a key inside a table is named with its
/// table.
#[test]
fn config_errors_suggest_a_key_and_name_the_table() {
    let ws = site("max_item = 5\n", &[("a.md", ARTICLE.to_string())]);
    let run = ws.herald_cfg(&["check"]);
    run.expect_code(78);
    assert!(
        run.stderr
            .contains("herald.toml:1: unknown key `max_item`; did you mean `max_items`?"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("`page_size`"), "{}", run.stderr);

    ws.write("herald.toml", "[websub]\nbuiltins = true\n");
    let run = ws.herald_cfg(&["check"]);
    run.expect_code(78);
    assert!(
        run.stderr
            .contains("herald.toml:2: [websub] unknown key `builtins`; did you mean `builtin`?"),
        "{}",
        run.stderr
    );

    ws.write("herald.toml", "[websub]\nbuiltin = \"yes\"\n");
    let run = ws.herald_cfg(&["check"]);
    run.expect_code(78);
    assert!(
        run.stderr
            .contains("herald.toml:2: [websub] builtin: invalid type"),
        "{}",
        run.stderr
    );

    ws.write("herald.toml", "zzzzzz = 1\n");
    let run = ws.herald_cfg(&["check"]);
    run.expect_code(78);
    assert!(
        run.stderr.contains("herald.toml:1: unknown key `zzzzzz`")
            && !run.stderr.contains("did you mean"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("`page_size`"), "{}", run.stderr);
}

/// `listen` takes a host name, resolved when Herald starts; a name that
/// does not resolve is an error naming the key.
#[test]
fn listen_takes_a_host_name() {
    let ws = site(
        "listen = \"localhost:8080\"\n",
        &[("a.md", ARTICLE.to_string())],
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let atom = ws.read("feeds/atom.xml");
    assert!(
        atom.contains("http://127.0.0.1:8080/articles/a/")
            || atom.contains("http://[::1]:8080/articles/a/"),
        "{atom}"
    );
    ws.write("herald.toml", "listen = \"no-such-host.invalid:8080\"\n");
    let run = ws.herald_cfg(&["check"]);
    run.expect_code(78);
    assert!(
        run.stderr
            .contains("herald.toml:1: listen: \"no-such-host.invalid:8080\""),
        "{}",
        run.stderr
    );
}

/// A date whose day the month does not have says so, rather than asking
/// for RFC 3339 it already is.
#[test]
fn a_date_that_does_not_exist_says_so() {
    let ws = site(
        "",
        &[(
            "b.md",
            "---\ntitle: B\ndate: 2025-02-30T10:00:00+02:00\n---\nBody.\n".to_string(),
        )],
    );
    let run = ws.herald(&["check"]);
    assert!(
        run.stdout.contains(
            "content/b.md:3: invalid `date` \"2025-02-30T10:00:00+02:00\": February 2025 has no day 30"
        ),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("expected RFC 3339"), "{}", run.stdout);
}

/// A missing content directory is one error, not a watch warning before
/// it.
#[test]
fn missing_content_directory_is_one_error() {
    let ws = site(
        "content_dir = \"nowhere\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"off\"\n",
        &[],
    );
    let run = ws.herald_cfg(&["serve"]);
    run.expect_code(3);
    assert!(!run.stderr.contains("cannot watch"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("nowhere: content directory cannot be read"),
        "{}",
        run.stderr
    );
}

/// Every duration in the log is rounded (to a tenth of a millisecond at
/// most), never a float's full expansion.
#[test]
fn log_durations_are_rounded() {
    let ws = site(
        "log_level = \"debug\"\nbase_url = \"https://news.example.org/\"\n",
        &[("a.md", ARTICLE.to_string())],
    );
    let run = ws.herald_cfg(&["build"]);
    run.expect_code(0);
    let fields: Vec<&str> = run
        .stderr
        .split_whitespace()
        .filter(|w| w.contains("ms="))
        .collect();
    assert!(
        fields.iter().any(|f| f.starts_with("ms=")),
        "{}",
        run.stderr
    );
    for f in fields {
        let v = f.split_once("ms=").map_or("", |(_, v)| v);
        let decimals = v.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 1, "{f} in:\n{}", run.stderr);
    }
}

/// An edit's `updated` is a whole second in every feed format.
#[test]
fn updated_is_whole_seconds() {
    let ws = site(
        "base_url = \"https://news.example.org/\"\n",
        &[("a.md", ARTICLE.to_string())],
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    ws.write("content/a.md", ARTICLE.replace("Body.", "Body, edited."));
    ws.herald_cfg(&["build"]).expect_code(0);
    let atom = ws.read("feeds/atom.xml");
    let entry = atom.split("<entry>").nth(1).expect("an entry");
    let updated = entry
        .split("<updated>")
        .nth(1)
        .and_then(|u| u.split('<').next())
        .expect("entry updated");
    assert!(!updated.starts_with("2025-05-02"), "edited: {updated}");
    assert!(!updated.contains('.'), "atom: {updated}");
    let json: serde_json::Value =
        serde_json::from_str(&ws.read("feeds/feed.json")).expect("feed.json is JSON");
    let modified = json["items"][0]["date_modified"].as_str().unwrap_or("");
    assert_eq!(
        modified.len(),
        "2025-05-02T10:00:00+00:00".len(),
        "json: {modified}"
    );
    assert!(!modified.contains('.'), "json: {modified}");
}

/// `check` counts in words that agree with the number.
#[test]
fn check_counts_agree_in_number() {
    let ws = site("", &[("a.md", ARTICLE.to_string())]);
    let run = ws.herald(&["check"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("1 article ok, 0 files rejected, 0 warnings"),
        "{}",
        run.stdout
    );
    ws.write("content/b.md", "---\ntitle: B\n---\n\n");
    ws.write("content/c.md", ARTICLE.replace("Body.", ""));
    let run = ws.herald(&["check"]);
    assert!(
        run.stdout
            .contains("2 articles ok, 1 file rejected, 1 warning"),
        "{}",
        run.stdout
    );
}
