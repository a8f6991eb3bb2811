//! HTML that every page shares (the head with its style and feed
//! autodiscovery links, the site header, times in the configured zone),
//! each article's page — the permalink the feeds point to — and the 404
//! page. The listings (index, category and tag pages) are in `pages.rs`.

use std::fmt::Write;

use chrono::{DateTime, FixedOffset};

use super::{escape, label_title, labels_of, Feed, Format, LabelKind, Settings};
use crate::article::Article;

/// The pages' one style sheet, inline (no request, no external asset).
/// Times never wrap inside (a date split over two lines on a phone reads
/// as two); images, code and tables never widen the page.
const STYLE: &str = "body{font:17px/1.55 system-ui,sans-serif;max-width:46rem;margin:1.5rem auto;padding:0 1rem;color:#222}\
a{color:#0645ad}h1{line-height:1.2;margin:.4em 0}.meta{color:#666;font-size:.9em}li{margin:.4em 0}\
time{white-space:nowrap}.site{margin:0;font-weight:600}.entry h2{font-size:1.2em;line-height:1.3;margin:1.4em 0 .1em}\
.entry h2 a{text-decoration:none}.entry p{margin:.2em 0}.pages{display:flex;flex-wrap:wrap;gap:.5em 1em;margin:2em 0}.older{margin-left:auto}\
footer{border-top:1px solid #ddd;margin-top:2em}img,video{max-width:100%;height:auto}pre{overflow-x:auto}\
table{border-collapse:collapse;display:block;overflow-x:auto}td,th{border:1px solid #ccc;padding:.2em .5em}";

/// The `Content-Security-Policy` of every page here: what the pages need
/// and nothing more. No scripts, frames, fonts, forms or connections of any
/// kind (`default-src 'none'`); the one inline `<style>` of [`head`] by its
/// SHA-256, and the three `style="text-align: …"` attributes pulldown-cmark
/// writes on aligned table cells (`'unsafe-hashes'` names attribute
/// hashes; ammonia drops every other `style` attribute); images from this
/// site and, as article bodies may show them, from any http(s) address;
/// no `<base>`, no form targets, no framing by any page. Each hash is
/// that of the exact text: changing [`STYLE`] means changing its hash
/// here (a test says which).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; \
style-src 'sha256-+Zzrnnhd5AqPh6XZGl3B4E3xOSxP5d895uVzTG4IaRQ=' 'unsafe-hashes' \
'sha256-6l+tpow5lGPV0MHWZlDv8nD7HrL77FGFldqQ7zc5gxY=' \
'sha256-Y9v1MZrln1N8aPBY5lmpxYKwFkcp/nyBMMEnn7WFjuw=' \
'sha256-i0JPB0qmRu5AViJTxOIzqXnfGoiWFw+oNAm4uJd7ZQk='; \
img-src 'self' https: http:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The end of every page.
pub(super) const FOOT: &str = "</body>\n</html>\n";

/// The document's head: title, style, and an autodiscovery link for each
/// format of each of `feeds` (title and route folder of each).
pub(super) fn head<'a>(
    out: &mut String,
    title: &str,
    s: &Settings,
    feeds: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n",
        escape(&s.language),
        escape(title)
    );
    for (feed_title, dir) in feeds {
        for format in Format::ALL {
            let _ = writeln!(
                out,
                "<link rel=\"alternate\" type=\"{}\" title=\"{} ({})\" href=\"{}\">",
                format.media_type(),
                escape(feed_title),
                format.label(),
                escape(&s.url(&format!("{dir}{}", format.file())))
            );
        }
    }
    let _ = write!(out, "<style>{STYLE}</style>\n</head>\n<body>\n");
}

/// The site's name, linking home, atop every page but the index.
pub(super) fn site_header(out: &mut String, s: &Settings) {
    let _ = writeln!(
        out,
        "<header><p class=\"site\"><a href=\"{}\">{}</a></p></header>",
        escape(&s.url("")),
        escape(&s.title)
    );
}

/// Links to a feed in each format: `RSS · Atom · JSON Feed`.
pub(super) fn feed_links(out: &mut String, s: &Settings, f: &Feed) {
    for (i, format) in Format::ALL.into_iter().enumerate() {
        let _ = write!(
            out,
            "{}<a href=\"{}\">{}</a>",
            if i > 0 { " · " } else { "" },
            escape(&s.url(&f.route(format.file()))),
            format.label()
        );
    }
}

/// The zone's name for a local time: its abbreviation (`CST`, `CEST`),
/// or `UTC+08` where the zone has none but an offset.
fn zone_label(abbreviation: String) -> String {
    if abbreviation.starts_with(['+', '-']) {
        format!("UTC{abbreviation}")
    } else {
        abbreviation
    }
}

/// `<time datetime="2025-05-22T06:40:00+08:00">22 May 2025, 06:40 CST</time>`:
/// the instant in the configured zone, labelled with it.
pub(super) fn time(out: &mut String, t: &DateTime<FixedOffset>, s: &Settings) {
    let local = t.with_timezone(&s.timezone);
    let _ = write!(
        out,
        "<time datetime=\"{}\">{} {}</time>",
        local.fixed_offset().to_rfc3339(),
        local.format("%-d %b %Y, %H:%M"),
        zone_label(local.format("%Z").to_string())
    );
}

/// `3 Mar 2025 – 9 Apr 2025`: the days of the oldest and the newest
/// article of an archive page, in the configured zone.
pub(super) fn date_range(out: &mut String, oldest: &Article, newest: &Article, s: &Settings) {
    let day = |out: &mut String, t: &DateTime<FixedOffset>| {
        let local = t.with_timezone(&s.timezone);
        let _ = write!(
            out,
            "<time datetime=\"{}\">{}</time>",
            local.format("%Y-%m-%d"),
            local.format("%-d %b %Y")
        );
    };
    day(out, &oldest.published);
    out.push_str(" – ");
    day(out, &newest.published);
}

/// An article's neighbours in the whole site's order, which its page
/// links to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Neighbours<'a> {
    /// The article published just before it.
    pub older: Option<&'a Article>,
    /// The article published just after it.
    pub newer: Option<&'a Article>,
}

/// One article's page: made from the article, its neighbours and the
/// settings alone, so that nothing else published can change it.
pub fn article_page(a: &Article, near: Neighbours<'_>, s: &Settings) -> Vec<u8> {
    let (head, tail) = article_page_parts(a, near, s);
    let mut out = head.into_bytes();
    out.extend_from_slice(a.body_html.html().as_bytes());
    out.extend_from_slice(tail.as_bytes());
    out
}

/// An article's page without its body: what goes before and after it.
/// The page is exactly `head + body + tail`. It announces the site's
/// feeds and those of the article's categories and tags, and links their
/// pages.
pub fn article_page_parts(a: &Article, near: Neighbours<'_>, s: &Settings) -> (String, String) {
    let mut out = String::with_capacity(2048);
    let labels = labels_of(a);
    let titles: Vec<String> = labels
        .iter()
        .map(|(kind, name, _)| label_title(*kind, name, s))
        .collect();
    let feeds = std::iter::once((s.title.as_str(), "")).chain(
        titles
            .iter()
            .zip(&labels)
            .map(|(t, l)| (t.as_str(), l.2.as_str())),
    );
    head(&mut out, &format!("{} — {}", a.title, s.title), s, feeds);
    site_header(&mut out, s);
    let _ = write!(
        out,
        "<main>\n<article>\n<h1>{}</h1>\n<p class=\"meta\">",
        escape(&a.title)
    );
    time(&mut out, &a.published, s);
    if a.updated != a.published {
        // A no-break space: the word stays with the time it introduces.
        out.push_str(" · updated\u{a0}");
        time(&mut out, &a.updated, s);
    }
    let authors = a.authors_or(&s.author).join(", ");
    let _ = writeln!(out, " · {}</p>", escape(&authors));
    if !labels.is_empty() {
        out.push_str("<p class=\"meta\">");
        let mut last = None;
        for (kind, name, dir) in &labels {
            let sep = match (last, kind) {
                (None, LabelKind::Category) => "In ",
                (None, LabelKind::Tag) => "Tags: ",
                (Some(LabelKind::Category), LabelKind::Tag) => " · Tags: ",
                _ => ", ",
            };
            last = Some(*kind);
            let _ = write!(
                out,
                "{sep}<a href=\"{}\">{}</a>",
                escape(&s.url(dir)),
                escape(name)
            );
        }
        out.push_str("</p>\n");
    }
    let mut tail = String::from("</article>\n");
    if near.older.is_some() || near.newer.is_some() {
        tail.push_str("<nav class=\"pages\">");
        if let Some(n) = near.newer {
            let _ = write!(
                tail,
                "<a rel=\"next\" href=\"{}\">← Newer: {}</a>",
                escape(&s.article_url(n)),
                escape(&n.title)
            );
        }
        if let Some(o) = near.older {
            let _ = write!(
                tail,
                "<a class=\"older\" rel=\"prev\" href=\"{}\">Older: {} →</a>",
                escape(&s.article_url(o)),
                escape(&o.title)
            );
        }
        tail.push_str("</nav>\n");
    }
    tail.push_str("</main>\n");
    tail.push_str(FOOT);
    (out, tail)
}

/// The 404 page.
pub fn not_found(s: &Settings) -> Vec<u8> {
    let mut out = String::new();
    head(&mut out, "Not found", s, std::iter::empty());
    site_header(&mut out, s);
    let _ = write!(
        out,
        "<main>\n<h1>Not found</h1>\n<p>No such page. The <a href=\"{}\">front page</a> lists every article.</p>\n</main>\n{FOOT}",
        escape(&s.url(""))
    );
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::*;

    /// The SHA-256 of `text`, base64, as a CSP source expression.
    fn csp_hash(text: &str) -> String {
        use sha2::Digest;
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let digest = sha2::Sha256::digest(text.as_bytes());
        let mut out = String::new();
        for c in digest.chunks(3) {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                out.push(if i <= c.len() {
                    char::from(B64[(n >> (18 - 6 * i) & 63) as usize])
                } else {
                    '='
                });
            }
        }
        format!("'sha256-{out}'")
    }

    /// The policy's style hashes are those of the inline style and of the
    /// alignment attributes pulldown-cmark writes (so a page renders as
    /// it should under it), and it allows nothing else inline.
    #[test]
    fn csp_matches_what_pages_use() {
        let style_src = CONTENT_SECURITY_POLICY
            .split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix("style-src "))
            .expect("a style-src");
        let mut want = vec![csp_hash(STYLE), "'unsafe-hashes'".to_string()];
        let mut html = String::new();
        let md = "| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |\n";
        pulldown_cmark::html::push_html(
            &mut html,
            pulldown_cmark::Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES),
        );
        for attr in html.split("style=\"").skip(1) {
            let value = &attr[..attr.find('"').expect("attribute ends")];
            let h = csp_hash(value);
            if !want.contains(&h) {
                want.push(h);
            }
        }
        assert_eq!(want.len(), 5, "three alignments in {html}");
        assert_eq!(style_src.split(' ').collect::<Vec<_>>(), want);
        let s = settings();
        let page = String::from_utf8(not_found(&s)).unwrap();
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    }

    /// An article page holds the body, the escaped title, autodiscovery
    /// links for its feeds, its times in the configured zone (the update
    /// only when it differs), links to its category's and tag's pages and
    /// to its neighbours; every author.
    #[test]
    fn article_page_content() {
        let s = settings();
        let arts = articles();
        let a = &arts[1];
        let near = Neighbours {
            older: Some(&arts[2]),
            newer: Some(&arts[0]),
        };
        let h = String::from_utf8(article_page(a, near, &s)).unwrap();
        assert!(h.contains("<h1>Plain title</h1>"), "{h}");
        assert!(h.contains(&a.body_html.html()));
        assert_eq!(h.matches("<link rel=\"alternate\"").count(), 9, "{h}");
        assert!(h.contains("<link rel=\"alternate\" type=\"application/atom+xml\" title=\"Herald &amp; Co &lt;test&gt; — Tag: tag one (Atom)\" href=\"https://news.example.org/tags/tag-one/atom.xml\">"), "{h}");
        assert!(
            h.contains(
                "<time datetime=\"2025-05-22T06:40:00+08:00\">22 May 2025, 06:40 CST</time>"
            ),
            "{h}"
        );
        assert!(!h.contains("updated"), "{h}");
        assert!(h.contains("<p class=\"meta\">In <a href=\"https://news.example.org/categories/columns-and-opinions/\">Columns and Opinions</a> · Tags: <a href=\"https://news.example.org/tags/tag-one/\">tag one</a></p>"), "{h}");
        assert!(h.contains("<a rel=\"next\" href=\"https://news.example.org/articles/hostile/\">← Newer: A &amp; B &lt;script&gt;"), "{h}");
        assert!(h.contains("<a class=\"older\" rel=\"prev\" href=\"https://news.example.org/articles/other/\">Older: Über news →</a>"), "{h}");

        let mut edited = (**a).clone();
        edited.updated = "2025-05-23T01:00:00Z"
            .parse::<DateTime<FixedOffset>>()
            .unwrap();
        let h = String::from_utf8(article_page(&edited, Neighbours::default(), &s)).unwrap();
        assert!(
            h.contains(" · updated\u{a0}<time datetime=\"2025-05-23T09:00:00+08:00\">23 May 2025, 09:00 CST</time>"),
            "{h}"
        );
        assert!(!h.contains("<nav"), "no neighbours, no links: {h}");

        edited.author = Some("Ann & Co".into());
        edited.more_authors = vec!["Bob".into()];
        let h = String::from_utf8(article_page(&edited, Neighbours::default(), &s)).unwrap();
        assert!(h.contains(" · Ann &amp; Co, Bob</p>"), "every author: {h}");
    }

    /// A time is labelled with its zone's abbreviation, or with its UTC
    /// offset where the zone has none.
    #[test]
    fn zone_labels() {
        let t: DateTime<FixedOffset> = "2025-07-01T12:00:00Z".parse().unwrap();
        for (zone, want) in [
            ("UTC", "1 Jul 2025, 12:00 UTC"),
            ("Europe/Kyiv", "1 Jul 2025, 15:00 EEST"),
            ("America/Sao_Paulo", "1 Jul 2025, 09:00 UTC-03"),
        ] {
            let s = Settings {
                timezone: zone.parse().unwrap(),
                ..settings()
            };
            let mut out = String::new();
            time(&mut out, &t, &s);
            assert!(out.ends_with(&format!(">{want}</time>")), "{zone}: {out}");
        }
    }
}
