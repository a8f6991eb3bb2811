//! HTML: the index (newest articles, every feed, `<link rel="alternate">`
//! autodiscovery for each feed) and one page per article, the permalink
//! the feeds point to.

use std::fmt::Write;

use super::{escape, Feed, Format, Settings};
use crate::article::Article;

const STYLE: &str = "body{font:17px/1.55 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}\
a{color:#0645ad}h1{line-height:1.2}.meta{color:#666;font-size:.9em}li{margin:.4em 0}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}";

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
style-src 'sha256-CTcRO/Ia4udwRMspf7QkbVHeqB/5eWrkg8WfnYLfRdw=' 'unsafe-hashes' \
'sha256-6l+tpow5lGPV0MHWZlDv8nD7HrL77FGFldqQ7zc5gxY=' \
'sha256-Y9v1MZrln1N8aPBY5lmpxYKwFkcp/nyBMMEnn7WFjuw=' \
'sha256-i0JPB0qmRu5AViJTxOIzqXnfGoiWFw+oNAm4uJd7ZQk='; \
img-src 'self' https: http:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn head(out: &mut String, title: &str, s: &Settings, feeds: &[&Feed]) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n",
        escape(&s.language),
        escape(title)
    );
    for f in feeds {
        for format in Format::ALL {
            let _ = writeln!(
                out,
                "<link rel=\"alternate\" type=\"{}\" title=\"{} ({})\" href=\"{}\">",
                format.media_type(),
                escape(&f.title),
                format.label(),
                escape(&s.url(&f.route(format.file())))
            );
        }
    }
    let _ = write!(out, "<style>{STYLE}</style>\n</head>\n<body>\n");
}

fn feed_links(out: &mut String, s: &Settings, f: &Feed) {
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

/// The home page: newest articles of the main feed, then every feed.
pub fn index(feeds: &[Feed], s: &Settings) -> Vec<u8> {
    let mut out = String::with_capacity(8192);
    let all: Vec<&Feed> = feeds.iter().collect();
    head(&mut out, &s.title, s, &all);
    let _ = write!(
        out,
        "<header><h1>{}</h1>\n<p>{}</p></header>\n<main>\n<ul class=\"articles\">\n",
        escape(&s.title),
        escape(&s.description)
    );
    if let Some(main) = feeds.first() {
        for a in &main.items {
            let _ = writeln!(
                out,
                "<li><a href=\"{}\">{}</a> <span class=\"meta\">{}</span></li>",
                escape(&s.article_url(a)),
                escape(&a.title),
                a.published.format("%Y-%m-%d %H:%M")
            );
        }
    }
    out.push_str("</ul>\n</main>\n<footer>\n<h2>Feeds</h2>\n<ul class=\"feeds\">\n");
    for f in feeds {
        let _ = write!(
            out,
            "<li>{}: ",
            escape(f.category.as_deref().unwrap_or("All articles"))
        );
        feed_links(&mut out, s, f);
        out.push_str("</li>\n");
    }
    let _ = write!(
        out,
        "</ul>\n<p><a href=\"{}\">OPML list of all feeds</a></p>\n</footer>\n</body>\n</html>\n",
        escape(&s.url("feeds.opml"))
    );
    out.into_bytes()
}

/// One article's page. `feeds` are the feeds it belongs to (main first).
pub fn article_page(a: &Article, feeds: &[&Feed], s: &Settings) -> Vec<u8> {
    let (head, tail) = article_page_parts(a, feeds, s);
    let mut out = head.into_bytes();
    out.extend_from_slice(a.body_html.html().as_bytes());
    out.extend_from_slice(tail.as_bytes());
    out
}

/// An article's page without its body: what goes before and after it.
/// The page is exactly `head + body + tail`.
pub fn article_page_parts(a: &Article, feeds: &[&Feed], s: &Settings) -> (String, String) {
    let mut out = String::with_capacity(2048);
    head(&mut out, &format!("{} — {}", a.title, s.title), s, feeds);
    let _ = write!(
        out,
        "<nav><a href=\"{}\">{}</a></nav>\n<article>\n<h1>{}</h1>\n<p class=\"meta\"><time datetime=\"{}\">{}</time>",
        escape(&s.url("")),
        escape(&s.title),
        escape(&a.title),
        a.published.to_rfc3339(),
        a.published.format("%Y-%m-%d %H:%M")
    );
    let author = a.author.as_deref().unwrap_or(&s.author);
    let _ = write!(out, " · {}", escape(author));
    for f in feeds.iter().filter(|f| f.category.is_some()) {
        let _ = write!(
            out,
            " · <a href=\"{}\">{}</a>",
            escape(&s.url(&f.route("rss.xml"))),
            escape(f.category.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</p>\n");
    (out, "</article>\n</body>\n</html>\n".to_string())
}

/// The 404 page.
pub fn not_found(s: &Settings) -> Vec<u8> {
    let mut out = String::new();
    head(&mut out, "Not found", s, &[]);
    let _ = write!(
        out,
        "<h1>Not found</h1>\n<p>No such page. <a href=\"{}\">{}</a></p>\n</body>\n</html>\n",
        escape(&s.url("")),
        escape(&s.title)
    );
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::feeds;
    use super::super::testdata::*;
    use super::*;

    /// The index lists articles and has autodiscovery links for every feed.
    #[test]
    fn index_autodiscovery() {
        let s = settings();
        let f = feeds(&articles(), &s);
        let h = String::from_utf8(index(&f, &s)).unwrap();
        assert_eq!(
            h.matches("<link rel=\"alternate\"").count(),
            9,
            "3 feeds × 3 formats"
        );
        assert!(h.contains("<link rel=\"alternate\" type=\"application/rss+xml\" title=\"Herald &amp; Co &lt;test&gt; (RSS)\" href=\"https://news.example.org/rss.xml\">"), "{h}");
        assert!(
            h.contains("href=\"https://news.example.org/categories/world-news/atom.xml\""),
            "{h}"
        );
        assert!(
            h.contains("<a href=\"https://news.example.org/articles/plain/\">Plain title</a>"),
            "{h}"
        );
        assert!(h.contains("A &amp; B &lt;script&gt;"), "{h}");
        assert!(!h.contains("<script>"));
    }

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

    /// An article page holds the body, escaped title, and feed links.
    #[test]
    fn article_page_content() {
        let s = settings();
        let f = feeds(&articles(), &s);
        let a = &articles()[0];
        let h = String::from_utf8(article_page(a, &[&f[0], &f[1]], &s)).unwrap();
        assert!(
            h.contains(
                "<h1>A &amp; B &lt;script&gt;alert(1)&lt;/script&gt; &quot;q&quot; ]]&gt;</h1>"
            ),
            "{h}"
        );
        assert!(h.contains(&a.body_html.html()));
        assert_eq!(h.matches("<link rel=\"alternate\"").count(), 6);
    }
}
