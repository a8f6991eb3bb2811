//! RSS 2.0 with the `rss` crate: channel metadata, `atom:link rel="self"`,
//! items with `guid`, RFC 2822 `pubDate`, categories, summary as
//! `description`, full HTML as `content:encoded`, author as `dc:creator`.

use std::collections::BTreeMap;

use rss::extension::atom::{AtomExtension, Link};
use rss::extension::dublincore::DublinCoreExtension;
use rss::extension::{Extension, ExtensionMap};
use rss::{Category, Channel, Enclosure, Guid, Item};

use super::{escape, Body, Feed, Format, Settings, FH_NAMESPACE};
use crate::article::xml_clean;

/// The Media RSS namespace (`media:content`).
const MEDIA_RSS: &str = "http://search.yahoo.com/mrss/";

/// Renders one feed document as RSS 2.0: a current document, or an
/// archive page (RFC 5005 §4: `fh:archive`, history links as `atom:link`,
/// no hub).
pub fn rss(feed: &Feed, s: &Settings) -> Vec<u8> {
    let ttl = if feed.is_archive() {
        s.archive_max_age.div_ceil(60).max(1)
    } else {
        s.ttl_minutes()
    };
    let mut ch = Channel {
        title: xml_clean(&feed.title).into_owned(),
        link: feed.home(s),
        description: xml_clean(&s.description).into_owned(),
        language: Some(s.language.clone()),
        generator: Some(s.generator.clone()),
        ttl: Some(ttl.to_string()),
        last_build_date: feed.updated().map(|d| d.to_rfc2822()),
        ..Channel::default()
    };
    // WebSub discovery (W3C WebSub §4): each hub, and the topic's own URL.
    // An archive page is no topic: it names no hub.
    let hubs = s.hubs.iter().filter(|_| !feed.is_archive()).map(|h| Link {
        href: h.clone(),
        rel: "hub".into(),
        ..Link::default()
    });
    let history = feed
        .history_links(Format::Rss, s)
        .into_iter()
        .map(|(rel, href)| Link {
            href,
            rel: rel.into(),
            mime_type: Some("application/rss+xml".into()),
            ..Link::default()
        });
    ch.atom_ext = Some(AtomExtension {
        links: hubs
            .chain(std::iter::once(Link {
                href: s.url(&feed.doc_route(Format::Rss)),
                rel: "self".into(),
                mime_type: Some("application/rss+xml".into()),
                ..Link::default()
            }))
            .chain(history)
            .collect(),
    });
    ch.namespaces = BTreeMap::from([
        (
            "dc".to_string(),
            "http://purl.org/dc/elements/1.1/".to_string(),
        ),
        ("media".to_string(), MEDIA_RSS.to_string()),
    ]);
    if feed.is_archive() {
        ch.namespaces
            .insert("fh".to_string(), FH_NAMESPACE.to_string());
        let archive = Extension {
            name: "fh:archive".into(),
            ..Extension::default()
        };
        ch.extensions.insert(
            "fh".into(),
            BTreeMap::from([("archive".to_string(), vec![archive])]),
        );
    }
    ch.items = feed
        .items
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let link = s.article_url(a);
            let permalink = a.id.starts_with("http://") || a.id.starts_with("https://");
            // The picture: an enclosure (which needs length and type, so
            // only for a file Herald publishes) and a Media RSS
            // `media:content`, which readers show as the item's image.
            let pic = super::picture(a, s);
            let enclosure = pic.as_ref().and_then(|(url, known)| {
                known.map(|(len, ty)| Enclosure {
                    url: url.clone(),
                    length: len.to_string(),
                    mime_type: ty.to_string(),
                })
            });
            let mut extensions = ExtensionMap::default();
            if let Some((url, known)) = &pic {
                let mut attrs = BTreeMap::from([
                    ("url".to_string(), url.clone()),
                    ("medium".to_string(), "image".to_string()),
                ]);
                if let Some((len, ty)) = known {
                    attrs.insert("type".into(), ty.to_string());
                    attrs.insert("fileSize".into(), len.to_string());
                }
                let content = Extension {
                    name: "media:content".into(),
                    attrs,
                    ..Extension::default()
                };
                extensions.insert(
                    "media".into(),
                    BTreeMap::from([("content".to_string(), vec![content])]),
                );
            }
            Item {
                title: Some(a.title.clone()),
                link: Some(link),
                guid: Some(Guid {
                    value: a.id.clone(),
                    permalink,
                }),
                pub_date: Some(a.published.to_rfc2822()),
                categories: a
                    .labels()
                    .into_iter()
                    .map(|c| Category {
                        name: c.to_string(),
                        domain: None,
                    })
                    .collect(),
                // `description` is HTML by convention; the summary is plain
                // text. Neither is written empty (a title-only article).
                description: (!a.summary.is_empty()).then(|| escape(&a.summary)),
                content: (s.rss_body == Body::Full && !a.body_html.is_empty())
                    .then(|| feed.body_html(i, s).to_owned()),
                enclosure,
                extensions,
                dublin_core_ext: Some(DublinCoreExtension {
                    creators: a
                        .authors_or(&s.author)
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    ..DublinCoreExtension::default()
                }),
                ..Item::default()
            }
        })
        .collect();
    let mut out = ch
        .pretty_write_to(Vec::with_capacity(4096 + feed.items.len() * 6000), b' ', 2)
        // The writer's only errors are those of the sink, and a Vec takes
        // every byte. (An empty document served with 200 was the fallback.)
        .expect("writing XML into memory cannot fail");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::super::{feeds, Body};
    use super::*;

    fn render(s: &Settings) -> String {
        let f = feeds(&articles(), s);
        String::from_utf8(rss(&f[0], s)).unwrap()
    }

    /// Channel and item fields are all present, ids are non-permalink guids.
    #[test]
    fn fields() {
        let x = render(&settings());
        for want in [
            "<title>Herald &amp; Co &lt;test&gt;</title>",
            "<link>https://news.example.org/</link>",
            "<language>en</language>",
            "<generator>Herald test</generator>",
            "<ttl>5</ttl>",
            "<lastBuildDate>Fri, 23 May 2025 10:00:00 +0800</lastBuildDate>",
            "<atom:link href=\"https://news.example.org/rss.xml\" rel=\"self\" type=\"application/rss+xml\"/>",
            "<atom:link href=\"https://news.example.org/websub\" rel=\"hub\"/>",
            "<atom:link href=\"https://hub.example/\" rel=\"hub\"/>",
            "<guid isPermaLink=\"false\">tag:news.example.org,2025-05-22:plain</guid>",
            "<pubDate>Thu, 22 May 2025 06:40:00 +0800</pubDate>",
            "<link>https://news.example.org/articles/plain/</link>",
            "<category>Columns and Opinions</category>",
            "<category>tag one</category>",
            "<dc:creator>Desk</dc:creator>",
            "<content:encoded><![CDATA[<p>Body of Plain title ]]&gt; end</p>",
        ] {
            assert!(x.contains(want), "missing {want} in\n{x}");
        }
    }

    /// Summary mode leaves out content:encoded.
    #[test]
    fn summary_mode() {
        let mut s = settings();
        s.rss_body = Body::Summary;
        let x = render(&s);
        assert!(!x.contains("content:encoded>"), "{x}");
        assert!(
            x.contains("<description><![CDATA[Summary of Plain title]]></description>"),
            "{x}"
        );
    }

    /// A hostile title is text: escaped, and a `]]>` in CDATA is split.
    #[test]
    fn hostile_text() {
        let x = render(&settings());
        assert!(x.contains("<title>A &amp; B &lt;script&gt;alert(1)&lt;/script&gt; &quot;q&quot; ]]&gt;</title>"), "{x}");
        assert!(!x.contains("<script>"));
    }
}
