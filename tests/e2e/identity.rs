//! What readers and validators rely on beyond the text: ids valid for any
//! slug, an id authority that a first run on a loopback address cannot
//! fix for good, links that follow the address `serve` listens on, old
//! permalinks that redirect (or say the article is gone), per-entry
//! authors, and documents no validator trips on (no empty content, no
//! link without a target).

use crate::util::Workspace;

fn md(title: &str, date: &str, extra: &str, body: &str) -> String {
    format!("---\ntitle: {title}\ndate: {date}\n{extra}---\n{body}\n")
}

fn site(config: &str, files: &[(&str, String)]) -> Workspace {
    let ws = Workspace::new();
    ws.write("herald.toml", config);
    for (p, text) in files {
        ws.write(&format!("content/{p}"), text);
    }
    ws
}

/// Every entry names its authors in every format: front matter `author`
/// or `authors`, else the site's `author`.
#[test]
fn every_entry_names_its_authors() {
    let ws = site(
        "base_url = \"https://news.example.org/\"\nauthor = \"The Desk\"\n",
        &[
            (
                "one.md",
                md("One", "2025-05-03T10:00:00Z", "author: Ann\n", "1"),
            ),
            (
                "two.md",
                md("Two", "2025-05-02T10:00:00Z", "authors: [Ann, Bob]\n", "2"),
            ),
            ("none.md", md("None", "2025-05-01T10:00:00Z", "", "0")),
        ],
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let want = [vec!["Ann"], vec!["Ann", "Bob"], vec!["The Desk"]];
    for file in ["rss.xml", "atom.xml", "feed.json"] {
        let f = feed_rs::parser::parse(ws.read_bytes(&format!("feeds/{file}")).as_slice())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let got: Vec<Vec<String>> = f
            .entries
            .iter()
            .map(|e| e.authors.iter().map(|p| p.name.clone()).collect())
            .collect();
        assert_eq!(got, want, "{file}");
    }
    let atom = ws.read("feeds/atom.xml");
    assert_eq!(
        atom.matches("<author>").count(),
        1 + 4,
        "feed + entries:\n{atom}"
    );
}

/// A title-only article has no empty `<content>` (W3C: NotBlank), and a
/// link whose target the sanitiser removed keeps its text but no
/// attributes that need a target (Nu checker: `rel` without `href`).
#[test]
fn no_empty_content_and_no_link_without_target() {
    let ws = site(
        "base_url = \"https://news.example.org/\"\n",
        &[
            ("empty.md", md("Only a title", "2025-05-02T10:00:00Z", "", "")),
            (
                "js.md",
                md(
                    "Script links",
                    "2025-05-01T10:00:00Z",
                    "",
                    "[click](javascript:alert(1)) and <a href=\"javascript:alert(2)\" rel=\"noopener\">this</a> and [fine](https://example.org/)",
                ),
            ),
        ],
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let atom = ws.read("feeds/atom.xml");
    assert!(
        !atom.contains("<content type=\"html\"></content>"),
        "{atom}"
    );
    assert!(!atom.contains("<content type=\"html\"/>"), "{atom}");
    assert_eq!(atom.matches("<content").count(), 1, "{atom}");
    let rss = ws.read("feeds/rss.xml");
    assert_eq!(rss.matches("<content:encoded>").count(), 1, "{rss}");
    let page = ws.read("feeds/articles/js/index.html");
    assert!(
        page.contains("<a>click</a> and <a>this</a> and <a href=\"https://example.org/\" rel=\"noopener noreferrer\">fine</a>"),
        "{page}"
    );
}
