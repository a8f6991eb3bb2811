//! The pages at permalinks an article no longer has: a redirect page at
//! each old permalink of a renamed article (written under `feeds/` too,
//! so that a web server serving the directory keeps old links working:
//! it names the new permalink as canonical and refreshes to it), and the
//! pages answered with 410 for an article, or a category or tag, that is
//! gone.

use std::fmt::Write;

use super::{escape, Settings};

/// The redirect page for an old permalink of the article titled `title`,
/// now at `to` (an absolute URL).
pub fn moved_page(title: &str, to: &str, s: &Settings) -> Vec<u8> {
    let to = escape(to);
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Moved: {title}</title>\n<link rel=\"canonical\" href=\"{to}\">\n\
         <meta http-equiv=\"refresh\" content=\"0; url={to}\">\n\
         <meta name=\"robots\" content=\"noindex\">\n</head>\n<body>\n\
         <p>This article is now at <a href=\"{to}\">{title}</a>.</p>\n</body>\n</html>\n",
        lang = escape(&s.language),
        title = escape(title),
    );
    out.into_bytes()
}

/// The page answered (with 410) at the permalink of an article that is
/// no longer published.
pub fn gone_page(s: &Settings) -> Vec<u8> {
    gone("This article has been removed.", s)
}

/// The page answered (with 410) at the page and the feeds of a category
/// or tag that no published article has any more.
pub fn gone_label_page(s: &Settings) -> Vec<u8> {
    gone(
        "No article is filed under this category or tag any more.",
        s,
    )
}

/// A 410 page saying `why` (plain text), linking the site's home.
fn gone(why: &str, s: &Settings) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Gone</title>\n<meta name=\"robots\" content=\"noindex\">\n</head>\n<body>\n\
         <h1>Gone</h1>\n<p>{why} <a href=\"{home}\">{site}</a></p>\n\
         </body>\n</html>\n",
        lang = escape(&s.language),
        home = escape(&s.url("")),
        site = escape(&s.title),
    );
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::testdata::settings;
    use super::*;

    /// The redirect page names the new permalink as canonical, refreshes
    /// to it at once and links it; titles and URLs are escaped.
    #[test]
    fn redirect_page() {
        let s = settings();
        let to = "https://news.example.org/articles/new/?a=1&b=2";
        let p = String::from_utf8(moved_page("A & <B>", to, &s)).unwrap();
        let esc = "https://news.example.org/articles/new/?a=1&amp;b=2";
        for want in [
            format!("<link rel=\"canonical\" href=\"{esc}\">"),
            format!("<meta http-equiv=\"refresh\" content=\"0; url={esc}\">"),
            format!("<a href=\"{esc}\">A &amp; &lt;B&gt;</a>"),
        ] {
            assert!(p.contains(&want), "{want} in {p}");
        }
        let g = String::from_utf8(gone_page(&s)).unwrap();
        assert!(g.contains("<h1>Gone</h1>") && g.contains("href=\"https://news.example.org/\""));
        assert!(g.contains("This article has been removed."), "{g}");
        let l = String::from_utf8(gone_label_page(&s)).unwrap();
        assert!(
            l.contains("<h1>Gone</h1>") && l.contains("category or tag"),
            "{l}"
        );
    }
}
