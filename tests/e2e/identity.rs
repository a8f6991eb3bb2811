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
