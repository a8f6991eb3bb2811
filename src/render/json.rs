//! JSON Feed 1.1 (<https://www.jsonfeed.org/version/1.1/>) with serde.

use serde::Serialize;

use super::{Body, Feed, Settings};

#[derive(Serialize)]
struct JsonFeed<'a> {
    version: &'static str,
    title: &'a str,
    home_page_url: String,
    feed_url: String,
    description: &'a str,
    language: &'a str,
    authors: [Author<'a>; 1],
    /// WebSub hubs (JSON Feed 1.1 `hubs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hubs: Vec<Hub<'a>>,
    /// The page with the articles just older than these (RFC 5005
    /// archive pages, as JSON Feed 1.1 pages a feed).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_url: Option<String>,
    items: Vec<Item<'a>>,
}

#[derive(Serialize)]
struct Hub<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    url: &'a str,
}

#[derive(Serialize)]
struct Author<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Item<'a> {
    id: &'a str,
    url: String,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_html: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_text: Option<&'a str>,
    summary: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    date_published: String,
    date_modified: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<&'a str>,
    authors: Vec<Author<'a>>,
}

/// Renders one feed document as JSON Feed 1.1. In summary mode an item
/// carries the summary as `content_text` (the spec requires one of the
/// two contents). Every document of a feed names the feed's `feed_url`;
/// `next_url` leads to its next older page; an archive page names no hub.
pub fn json(feed: &Feed, s: &Settings) -> Vec<u8> {
    let doc = JsonFeed {
        version: "https://jsonfeed.org/version/1.1",
        title: &feed.title,
        home_page_url: feed.home(s),
        feed_url: s.url(&feed.route("feed.json")),
        description: &s.description,
        language: &s.language,
        authors: [Author { name: &s.author }],
        next_url: feed.next_url(s),
        hubs: s
            .hubs
            .iter()
            .filter(|_| !feed.is_archive())
            .map(|url| Hub {
                kind: "WebSub",
                url,
            })
            .collect(),
        items: feed
            .items
            .iter()
            .enumerate()
            .map(|(i, a)| {
                // A title-only article has no HTML to show: its (perhaps
                // empty) summary is the `content_text` the spec requires.
                let full = s.json_body == Body::Full && !a.body_html.is_empty();
                Item {
                    id: &a.id,
                    url: s.article_url(a),
                    title: &a.title,
                    content_html: full.then(|| feed.body_html(i, s)),
                    content_text: (!full).then_some(a.summary.as_str()),
                    summary: &a.summary,
                    image: super::picture(a, s).map(|(url, _)| url),
                    date_published: a.published.to_rfc3339(),
                    date_modified: a.updated.to_rfc3339(),
                    tags: a.labels(),
                    authors: a
                        .authors_or(&s.author)
                        .into_iter()
                        .map(|name| Author { name })
                        .collect(),
                }
            })
            .collect(),
    };
    let mut out = serde_json::to_vec_pretty(&doc).expect("feed serialises: strings only");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::super::feeds;
    use super::super::testdata::*;
    use super::*;

    /// Every JSON Feed field the spec and the issue name, with exact values.
    #[test]
    fn fields() {
        let s = settings();
        let v: serde_json::Value =
            serde_json::from_slice(&json(&feeds(&articles(), &s)[0], &s)).unwrap();
        assert_eq!(v["version"], "https://jsonfeed.org/version/1.1");
        assert_eq!(v["title"], "Herald & Co <test>");
        assert_eq!(v["home_page_url"], "https://news.example.org/");
        assert_eq!(v["feed_url"], "https://news.example.org/feed.json");
        assert_eq!(
            v["hubs"],
            serde_json::json!([
                {"type": "WebSub", "url": "https://news.example.org/websub"},
                {"type": "WebSub", "url": "https://hub.example/"}
            ])
        );
        let it = &v["items"][1];
        assert_eq!(it["id"], "tag:news.example.org,2025-05-22:plain");
        assert_eq!(it["url"], "https://news.example.org/articles/plain/");
        assert_eq!(it["title"], "Plain title");
        assert_eq!(it["summary"], "Summary of Plain title");
        assert_eq!(it["date_published"], "2025-05-22T06:40:00+08:00");
        assert_eq!(it["date_modified"], "2025-05-22T06:40:00+08:00");
        assert_eq!(
            it["tags"],
            serde_json::json!(["Columns and Opinions", "tag one"])
        );
        assert!(it["content_html"]
            .as_str()
            .unwrap()
            .starts_with("<p>Body of Plain title"));
        assert_eq!(
            v["items"][0]["title"],
            "A & B <script>alert(1)</script> \"q\" ]]>"
        );
    }
}
