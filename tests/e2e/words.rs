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
