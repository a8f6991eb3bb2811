//! OPML 2.0 (<http://opml.org/spec2.opml>): every feed Herald serves, so a
//! reader can subscribe to all of them at once.

use std::fmt::Write;

use super::{escape, Feed, Format, Settings};

/// Renders the OPML list: one outline per feed and format.
pub fn opml(feeds: &[Feed], s: &Settings) -> Vec<u8> {
    let mut out = String::with_capacity(1024 + feeds.len() * 600);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<opml version=\"2.0\">\n  <head>\n    <title>{}</title>\n  </head>\n  <body>\n",
        escape(&s.title)
    );
    for f in feeds {
        for format in Format::ALL {
            // OPML 2.0 subscription lists say type="rss" whatever the
            // feed's format; readers skip outlines of other types.
            let _ = writeln!(
                out,
                "    <outline type=\"rss\" text=\"{t}\" title=\"{t}\" xmlUrl=\"{x}\" htmlUrl=\"{h}\"/>",
                t = escape(&format!("{} ({})", f.title, format.label())),
                x = escape(&s.url(&f.route(format.file()))),
                h = escape(&f.home(s)),
            );
        }
    }
    out.push_str("  </body>\n</opml>\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::feeds;
    use super::super::testdata::*;
    use super::*;

    /// Every feed in every format is listed, with escaped titles.
    #[test]
    fn lists_every_feed() {
        let s = settings();
        let o = String::from_utf8(opml(&feeds(&articles(), &s), &s)).unwrap();
        assert_eq!(o.matches("<outline ").count(), 12, "4 feeds (tags too) × 3");
        assert!(
            o.contains("type=\"rss\" text=\"Herald &amp; Co &lt;test&gt; (RSS)\""),
            "{o}"
        );
        assert!(
            o.contains(
                "xmlUrl=\"https://news.example.org/categories/columns-and-opinions/feed.json\""
            ),
            "{o}"
        );
    }
}
