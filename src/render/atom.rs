//! Atom 1.0 (RFC 4287) with `atom_syndication`: feed id, title, updated,
//! author, generator, `self` and `alternate` links; entries with id, title,
//! published, updated, alternate link, categories, summary and
//! `content type="html"`.

use atom_syndication::{
    Category, Content, Entry, Feed as AtomFeed, Generator, Link, Person, Text, WriteConfig,
};
use chrono::DateTime;

use super::{Body, Feed, Format, Settings, FH_NAMESPACE};
use crate::article::xml_clean;

fn link(href: String, rel: &str, mime: &str) -> Link {
    Link {
        href,
        rel: rel.into(),
        mime_type: Some(mime.into()),
        ..Link::default()
    }
}

/// Renders one feed document as Atom 1.0: a current document, or an
/// archive page (RFC 5005 §4: `fh:archive`, history links, no hub). Every
/// document of a feed has the feed's id: they are one feed in parts.
pub fn atom(feed: &Feed, s: &Settings) -> Vec<u8> {
    let mut f = AtomFeed::default();
    f.set_id(feed.id(s));
    f.set_title(Text::plain(xml_clean(&feed.title)));
    f.set_subtitle(Some(Text::plain(xml_clean(&s.description))));
    // RFC 4287 §4.2.15: the newest change of any entry; with no entries the
    // Unix epoch keeps the document valid and deterministic.
    f.set_updated(
        feed.updated()
            .unwrap_or_else(|| DateTime::UNIX_EPOCH.fixed_offset()),
    );
    f.set_authors(vec![Person {
        name: s.author.clone(),
        ..Person::default()
    }]);
    f.set_generator(Some(Generator {
        value: s.generator.clone(),
        ..Generator::default()
    }));
    f.set_lang(Some(s.language.clone()));
    let mut links = vec![
        link(
            s.url(&feed.doc_route(Format::Atom)),
            "self",
            "application/atom+xml",
        ),
        link(feed.home(s), "alternate", "text/html"),
    ];
    // WebSub discovery (W3C WebSub §4): each hub beside `self`. An
    // archive page is no topic: it names no hub.
    if !feed.is_archive() {
        links.extend(s.hubs.iter().map(|h| Link {
            href: h.clone(),
            rel: "hub".into(),
            ..Link::default()
        }));
    }
    links.extend(
        feed.history_links(Format::Atom, s)
            .into_iter()
            .map(|(rel, href)| link(href, rel, "application/atom+xml")),
    );
    f.set_links(links);
    if feed.is_archive() {
        f.namespaces
            .insert("fh".to_string(), FH_NAMESPACE.to_string());
    }
    f.set_entries(
        feed.items
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut e = Entry::default();
                e.set_id(a.id.clone());
                e.set_title(Text::plain(a.title.clone()));
                e.set_published(Some(a.published));
                e.set_updated(a.updated);
                let mut links = vec![link(s.article_url(a), "alternate", "text/html")];
                // The picture, as an enclosure link (RFC 4287 §4.2.7.2).
                if let Some((href, known)) = super::picture(a, s) {
                    links.push(Link {
                        href,
                        rel: "enclosure".into(),
                        mime_type: known.map(|(_, ty)| ty.to_string()),
                        length: known.map(|(len, _)| len.to_string()),
                        ..Link::default()
                    });
                }
                e.set_links(links);
                // Every entry names its authors (the site's when the article
                // names none): readers show the entry's, not the feed's.
                e.set_authors(
                    a.authors_or(&s.author)
                        .into_iter()
                        .map(|name| Person {
                            name: name.to_string(),
                            ..Person::default()
                        })
                        .collect::<Vec<_>>(),
                );
                e.set_categories(
                    a.labels()
                        .into_iter()
                        .map(|c| Category {
                            term: c.to_string(),
                            ..Category::default()
                        })
                        .collect::<Vec<_>>(),
                );
                // No empty `<content>` for a title-only article (RFC 4287
                // allows none; validators flag a blank one).
                let content = s.atom_body == Body::Full && !a.body_html.is_empty();
                if content {
                    let mut c = Content::default();
                    c.set_content_type(Some("html".to_string()));
                    c.set_value(Some(feed.body_html(i, s).to_owned()));
                    e.set_content(Some(c));
                }
                // Every entry carries text (the W3C validator's
                // MissingTextualContent): an entry with neither body nor
                // summary gets its title as `<summary>`. The title is the
                // whole of what the article says, a plain-text summary
                // claims no body that is not there, and readers that list
                // summaries show a line instead of a blank.
                if !a.summary.is_empty() {
                    e.set_summary(Some(Text::plain(a.summary.clone())));
                } else if !content {
                    e.set_summary(Some(Text::plain(a.title.clone())));
                }
                e
            })
            .collect::<Vec<_>>(),
    );
    let cfg = WriteConfig {
        write_document_declaration: true,
        indent_size: Some(2),
    };
    let mut out = f
        .write_with_config(Vec::with_capacity(4096 + feed.items.len() * 6000), cfg)
        // The writer's only errors are those of the sink, and a Vec takes
        // every byte. (An empty document served with 200 was the fallback.)
        .expect("writing XML into memory cannot fail");
    out.push(b'\n');
    if feed.is_archive() {
        mark_archive(&mut out);
    }
    out
}

/// Adds `<fh:archive/>` (RFC 5005 §4) as the feed's first child: RFC
/// 4287's schema allows foreign elements among the feed's metadata, before
/// its entries, where `atom_syndication` (which writes them last) does
/// not put them.
fn mark_archive(doc: &mut Vec<u8>) {
    let Some(feed) = doc.windows(5).position(|w| w == b"<feed") else {
        return;
    };
    // Attribute values are escaped: the first `>` ends the start tag.
    if let Some(end) = doc[feed..].iter().position(|&b| b == b'>') {
        let at = feed + end + 1;
        doc.splice(at..at, b"\n  <fh:archive/>".iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::super::{feeds, Body};
    use super::*;

    fn render(s: &Settings) -> String {
        String::from_utf8(atom(&feeds(&articles(), s)[0], s)).unwrap()
    }

    /// Feed and entry elements RFC 4287 requires, with stable ids.
    #[test]
    fn fields() {
        let x = render(&settings());
        for want in [
            "<id>tag:news.example.org,2025-05-22:feed</id>",
            "<title>Herald &amp; Co &lt;test&gt;</title>",
            "<updated>2025-05-23T10:00:00+08:00</updated>",
            "<name>Desk</name>",
            "<generator>Herald test</generator>",
            "rel=\"self\"",
            "href=\"https://news.example.org/atom.xml\"",
            "rel=\"alternate\"",
            "<link href=\"https://news.example.org/websub\" rel=\"hub\"/>",
            "<link href=\"https://hub.example/\" rel=\"hub\"/>",
            "<id>tag:news.example.org,2025-05-22:plain</id>",
            "<published>2025-05-22T06:40:00+08:00</published>",
            "href=\"https://news.example.org/articles/plain/\"",
            "<category term=\"Columns and Opinions\"/>",
            "<summary>Summary of Plain title</summary>",
            "<content type=\"html\">&lt;p&gt;Body of Plain title",
        ] {
            assert!(x.contains(want), "missing {want} in\n{x}");
        }
    }

    /// Summary mode leaves out content; an empty feed is still valid.
    #[test]
    fn summary_and_empty() {
        let mut s = settings();
        s.atom_body = Body::Summary;
        assert!(!render(&s).contains("<content"));
        let empty = String::from_utf8(atom(&feeds(&[], &s)[0], &s)).unwrap();
        assert!(
            empty.contains("<updated>1970-01-01T00:00:00+00:00</updated>"),
            "{empty}"
        );
    }

    /// Hostile titles stay text.
    #[test]
    fn hostile_text() {
        let x = render(&settings());
        assert!(
            x.contains("<title>A &amp; B &lt;script&gt;alert(1)&lt;/script&gt;"),
            "{x}"
        );
        assert!(!x.contains("<script>"));
    }
}
