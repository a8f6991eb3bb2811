//! OPML 2.0 (<http://opml.org/spec2.opml>): every feed Herald serves, so a
//! reader can subscribe to all of them at once — each feed once, in one
//! format ([`OPML_FORMAT`]), the category and the tag feeds each under a
//! parent outline of their own, each with its HTML page as `htmlUrl`.

use std::fmt::Write;

use super::{escape, Feed, Format, LabelKind, Settings};

/// The one format the OPML list names. Readers that import OPML subscribe
/// to every outline: listing each feed in three formats made them fetch
/// and show every article three times, and those without JSON Feed
/// failed on a third of the list. Atom (RFC 4287) because every entry has
/// a mandatory unique id and update time and its content says whether it
/// is HTML or text, so readers need not guess; every reader that imports
/// OPML reads it. The RSS and JSON Feed forms stay linked from each page.
pub const OPML_FORMAT: Format = Format::Atom;

/// Renders the OPML list: the main feed, then a "Categories" and a "Tags"
/// outline holding one outline per feed of that kind.
pub fn opml(feeds: &[Feed], s: &Settings) -> Vec<u8> {
    let mut out = String::with_capacity(1024 + feeds.len() * 250);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<opml version=\"2.0\">\n  <head>\n    <title>{}</title>\n  </head>\n  <body>\n",
        escape(&s.title)
    );
    for f in feeds.iter().filter(|f| f.label.is_none()) {
        outline(&mut out, "    ", f, s);
    }
    for (kind, group) in [
        (LabelKind::Category, "Categories"),
        (LabelKind::Tag, "Tags"),
    ] {
        let mut of_kind = feeds
            .iter()
            .filter(|f| f.label.as_ref().is_some_and(|l| l.kind == kind))
            .peekable();
        if of_kind.peek().is_none() {
            continue;
        }
        let _ = writeln!(out, "    <outline text=\"{group}\" title=\"{group}\">");
        for f in of_kind {
            outline(&mut out, "      ", f, s);
        }
        out.push_str("    </outline>\n");
    }
    out.push_str("  </body>\n</opml>\n");
    out.into_bytes()
}

/// One subscription. OPML 2.0 subscription lists say `type="rss"`
/// whatever the feed's format; readers skip outlines of other types.
fn outline(out: &mut String, indent: &str, f: &Feed, s: &Settings) {
    let _ = writeln!(
        out,
        "{indent}<outline type=\"rss\" text=\"{t}\" title=\"{t}\" xmlUrl=\"{x}\" htmlUrl=\"{h}\"/>",
        t = escape(&f.title),
        x = escape(&s.url(&f.route(OPML_FORMAT.file()))),
        h = escape(&f.home(s)),
    );
}

#[cfg(test)]
mod tests {
    use super::super::feeds;
    use super::super::testdata::*;
    use super::*;

    /// Every feed is listed once, in Atom, with escaped titles and its
    /// page as `htmlUrl`; category and tag feeds sit in their own group.
    #[test]
    fn lists_every_feed_once() {
        let s = settings();
        let o = String::from_utf8(opml(&feeds(&articles(), &s), &s)).unwrap();
        assert_eq!(o.matches("xmlUrl=").count(), 4, "{o}");
        assert_eq!(o.matches("<outline ").count(), 4 + 2, "{o}");
        assert!(!o.contains("rss.xml") && !o.contains("feed.json"), "{o}");
        assert!(
            o.contains("    <outline type=\"rss\" text=\"Herald &amp; Co &lt;test&gt;\" title=\"Herald &amp; Co &lt;test&gt;\" xmlUrl=\"https://news.example.org/atom.xml\" htmlUrl=\"https://news.example.org/\"/>"),
            "{o}"
        );
        let cats = o
            .split("<outline text=\"Categories\"")
            .nth(1)
            .expect("a group");
        let cats = &cats[..cats.find("</outline>").expect("closed")];
        assert!(
            cats.contains("xmlUrl=\"https://news.example.org/categories/world-news/atom.xml\" htmlUrl=\"https://news.example.org/categories/world-news/\""),
            "{o}"
        );
        let tags = o.split("<outline text=\"Tags\"").nth(1).expect("a group");
        assert!(
            tags.contains("xmlUrl=\"https://news.example.org/tags/tag-one/atom.xml\""),
            "{o}"
        );
    }
}
