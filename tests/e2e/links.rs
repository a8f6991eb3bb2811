//! Links and files in article bodies: relative references made absolute
//! in feed content, the files they point to (a page bundle's images, a
//! PDF beside an article) published beside the article's permalink with
//! the right type and caching, guarded as article files are, and an
//! article's picture announced to readers (JSON Feed `image`, RSS
//! `enclosure`/`media:content`, Atom `rel="enclosure"`). Last, a site with
//! all of it (and non-ASCII slugs) read by every validator and reader.

use crate::util::Workspace;

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
