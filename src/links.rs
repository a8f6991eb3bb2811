//! URLs inside an article body's HTML: finding the attributes that hold
//! them and rewriting their values. Pure; uses only `escape` of Herald's.
//!
//! The HTML scanned here is always Herald's own: pulldown-cmark's output,
//! or ammonia's after sanitising. Both write text with `<` escaped and
//! every attribute value quoted and entity-escaped, so a tag is exactly a
//! `<` followed by a letter, and markup shown as text (a code sample of
//! `<img src=…>`) is never mistaken for a tag. Only attribute values in
//! tags are ever changed, never text.

use std::borrow::Cow;

/// Attributes whose value is a URL (of those the sanitiser lets through).
const URL_ATTRS: [&str; 3] = ["href", "src", "cite"];

/// One attribute value in a tag, as [`rewrite_attrs`] hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Attr<'a> {
    /// Lower-case tag name (`a`, `img` …).
    pub tag: &'a str,
    /// Lower-case attribute name.
    pub name: &'a str,
    /// The value with character references decoded.
    pub value: &'a str,
}

/// What to do with one tag, as [`rewrite_tags`] asks.
enum TagEdit {
    /// Leave it as written.
    Keep,
    /// Write it anew with these attributes (name, raw escaped value).
    Attrs(Vec<(String, Option<String>)>),
}

/// A tag found by the scanner: its name and attributes, each as written.
struct Tag<'a> {
    name: String,
    /// Lower-case name and raw value (without its quotes, references not
    /// decoded) of each attribute.
    attrs: Vec<(String, Option<Raw<'a>>)>,
}

/// An attribute value as written.
#[derive(Clone, Copy)]
struct Raw<'a> {
    text: &'a str,
    /// True when it was in single quotes (and so may hold a `"`).
    single: bool,
}

impl Raw<'_> {
    /// The value ready for double quotes.
    fn for_double_quotes(&self) -> String {
        if self.single {
            self.text.replace('"', "&quot;")
        } else {
            self.text.to_string()
        }
    }
}

/// Calls `edit` for every start tag of `html`; writes the document again
/// only if some tag changes.
fn rewrite_tags<'h>(html: &'h str, mut edit: impl FnMut(&Tag<'h>) -> TagEdit) -> Cow<'h, str> {
    let b = html.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let start = i + off;
        i = start + 1;
        if html[start..].starts_with("<!--") {
            // A comment: nothing in it is a tag.
            match html[start + 4..].find("-->") {
                Some(e) => i = start + 4 + e + 3,
                None => break,
            }
            continue;
        }
        if !b.get(i).is_some_and(u8::is_ascii_alphabetic) {
            // An end tag or a declaration: no attributes to read.
            continue;
        }
        let Some((tag, end)) = scan_tag(html, i) else {
            break;
        };
        i = end;
        if let TagEdit::Attrs(attrs) = edit(&tag) {
            let o = out.get_or_insert_with(|| String::with_capacity(html.len() + 256));
            o.push_str(&html[copied..start]);
            o.push('<');
            o.push_str(&tag.name);
            for (name, value) in &attrs {
                o.push(' ');
                o.push_str(name);
                if let Some(v) = value {
                    o.push_str("=\"");
                    o.push_str(v);
                    o.push('"');
                }
            }
            if html[..end].ends_with("/>") {
                o.push_str(" />");
            } else {
                o.push('>');
            }
            copied = end;
        }
    }
    match out {
        None => Cow::Borrowed(html),
        Some(mut o) => {
            o.push_str(&html[copied..]);
            Cow::Owned(o)
        }
    }
}

/// Reads a start tag whose name begins at `at` (just after `<`). Returns
/// the tag and the index just past its `>`, or `None` if it never ends.
fn scan_tag(html: &str, at: usize) -> Option<(Tag<'_>, usize)> {
    let b = html.as_bytes();
    let mut i = at;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
        i += 1;
    }
    let name = html[at..i].to_ascii_lowercase();
    let mut attrs = Vec::new();
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        match b.get(i) {
            None => return None,
            Some(b'>') => return Some((Tag { name, attrs }, i + 1)),
            _ => {}
        }
        let name_start = i;
        while i < b.len() && !matches!(b[i], b'=' | b'>' | b'/') && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let attr = html[name_start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            attrs.push((attr, None));
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = match b.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                let end = i + 1 + html[i + 1..].find(q as char)?;
                let v = Raw {
                    text: &html[i + 1..end],
                    single: q == b'\'',
                };
                i = end + 1;
                v
            }
            _ => {
                let s = i;
                while i < b.len() && b[i] != b'>' && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                Raw {
                    text: &html[s..i],
                    single: false,
                }
            }
        };
        attrs.push((attr, Some(value)));
    }
}

/// Decodes the character references Herald's HTML writers put in
/// attribute values (`&amp;`, `&quot;`, `&#39;`, `&#x27;`, `&lt;`, `&gt;`,
/// `&nbsp;`, and any numeric one); anything else is left as written.
pub fn unescape(v: &str) -> Cow<'_, str> {
    if !v.contains('&') {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "nbsp" => Some('\u{a0}'),
                _ => {
                    let n = name.strip_prefix('#')?;
                    let code = match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => n.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Calls `f` with each URL attribute (`href`, `src`, `cite`) of every tag
/// in `html`; where it returns a new value, that value replaces the old
/// one (escaped here). Text is never touched; the document is copied only
/// if some value changes.
pub fn rewrite_attrs<'h>(
    html: &'h str,
    mut f: impl FnMut(Attr<'_>) -> Option<String>,
) -> Cow<'h, str> {
    rewrite_tags(html, |tag| {
        let mut changed = false;
        let attrs: Vec<(String, Option<String>)> = tag
            .attrs
            .iter()
            .map(|(name, raw)| {
                let new = raw
                    .filter(|_| URL_ATTRS.contains(&name.as_str()))
                    .and_then(|raw| {
                        f(Attr {
                            tag: &tag.name,
                            name,
                            value: &unescape(raw.text),
                        })
                    });
                match new {
                    Some(v) => {
                        changed = true;
                        (name.clone(), Some(crate::escape::double_quoted(&v)))
                    }
                    None => (name.clone(), raw.map(|r| r.for_double_quotes())),
                }
            })
            .collect();
        if changed {
            TagEdit::Attrs(attrs)
        } else {
            TagEdit::Keep
        }
    })
}

/// Calls `f` with each URL attribute (`href`, `src`, `cite`) of every tag
/// in `html`, in document order.
pub fn for_each_url(html: &str, mut f: impl FnMut(Attr<'_>)) {
    let _ = rewrite_attrs(html, |a| {
        f(a);
        None
    });
}

/// True for a URL that is resolved against a base: neither absolute
/// (with a scheme), nor fragment-only, nor empty.
pub fn is_relative(url: &str) -> bool {
    let url = url.trim();
    !url.is_empty()
        && !url.starts_with('#')
        && matches!(
            url::Url::parse(url),
            Err(url::ParseError::RelativeUrlWithoutBase)
        )
}

/// Makes every relative URL attribute of `html` absolute, resolved
/// against `base` (the article's permalink) as RFC 3986 §5 says; absolute
/// and fragment-only URLs stay as written, and so does all text. Feed
/// readers have no page to resolve a relative URL against. Returns the
/// HTML itself (not copied) when it holds no relative URL.
pub fn absolutize<'h>(html: &'h str, base: &url::Url) -> Cow<'h, str> {
    if !(html.contains("href=") || html.contains("src=") || html.contains("cite=")) {
        return Cow::Borrowed(html);
    }
    rewrite_attrs(html, |a| {
        if !is_relative(a.value) {
            return None;
        }
        base.join(a.value.trim()).ok().map(String::from)
    })
}

/// For a feed: the footnote ids of a body (`fn-N`, `fnref-N`, as the
/// Markdown parser writes them) prefixed with the article's slug, so that
/// entries a reader shows together on one page keep distinct ids, and the
/// links to them (`#fn-N`) made absolute against `base`, the permalink,
/// whose page has those anchors (a feed reader has no page of its own to
/// resolve a fragment against). Everything else, and a body without
/// footnotes, comes back as it was.
pub fn scope_footnotes<'h>(html: &'h str, slug: &str, base: &url::Url) -> Cow<'h, str> {
    fn is_note(id: &str) -> bool {
        id.strip_prefix("fn-")
            .or_else(|| id.strip_prefix("fnref-"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
    }
    if !html.contains("fnref-") {
        return Cow::Borrowed(html);
    }
    rewrite_tags(html, |tag| {
        if !matches!(tag.name.as_str(), "a" | "sup" | "li") {
            return TagEdit::Keep;
        }
        let mut changed = false;
        let attrs: Vec<(String, Option<String>)> = tag
            .attrs
            .iter()
            .map(|(name, raw)| {
                let value = raw.map(|r| unescape(r.text));
                let new = match (name.as_str(), value.as_deref()) {
                    ("id", Some(v)) if is_note(v) => Some(format!("{slug}-{v}")),
                    ("href", Some(v)) if v.strip_prefix('#').is_some_and(is_note) => {
                        let mut u = base.clone();
                        u.set_fragment(Some(&v[1..]));
                        Some(u.to_string())
                    }
                    _ => None,
                };
                match new {
                    Some(v) => {
                        changed = true;
                        (name.clone(), Some(crate::escape::double_quoted(&v)))
                    }
                    None => (name.clone(), raw.map(|r| r.for_double_quotes())),
                }
            })
            .collect();
        if changed {
            TagEdit::Attrs(attrs)
        } else {
            TagEdit::Keep
        }
    })
}

/// Drops every attribute of an `<a>` that has no `href`: the sanitiser
/// removes a target it refuses (`javascript:` …) but keeps the other
/// attributes and adds `rel`, and `rel` (like `target`, `download` …)
/// is an error on an `<a>` without `href`. The text of the link stays.
/// Any other HTML comes back as it was, not copied.
pub fn drop_targetless_link_attrs(html: &str) -> Cow<'_, str> {
    rewrite_tags(html, |tag| {
        if tag.name == "a" && !tag.attrs.is_empty() && !tag.attrs.iter().any(|(n, _)| n == "href") {
            TagEdit::Attrs(Vec::new())
        } else {
            TagEdit::Keep
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URL attributes are found in tags only, with references decoded;
    /// markup shown as text, comments and end tags are not tags.
    #[test]
    fn finds_urls_in_tags_only() {
        let html = "<p><a href=\"a?x=1&amp;y=2\" rel=\"x\">t</a> <img src='b.png' alt=\"&lt;\"/>\
                    <!-- <a href=\"no\"> --> &lt;img src=\"text.png\"&gt; <q cite=c.html>q</q>\
                    <blockquote CITE=\"d.html\"></blockquote></p>";
        let mut seen = Vec::new();
        for_each_url(html, |a| {
            seen.push(format!("{}.{}={}", a.tag, a.name, a.value))
        });
        assert_eq!(
            seen,
            [
                "a.href=a?x=1&y=2",
                "img.src=b.png",
                "q.cite=c.html",
                "blockquote.cite=d.html"
            ]
        );
    }

    /// Rewritten values are escaped and replace only themselves; a
    /// document without a change is returned as it was, not copied.
    #[test]
    fn rewrites_values_only() {
        let html =
            "<p>x <a href=\"r\" title=\"t &amp; u\">r</a> <img src=\"i.png\" alt=\"\" /> y</p>";
        let out = rewrite_attrs(html, |a| {
            (a.name == "href").then(|| format!("https://e/{}?a&b=\"", a.value))
        });
        assert_eq!(
            out,
            "<p>x <a href=\"https://e/r?a&amp;b=&quot;\" title=\"t &amp; u\">r</a> <img src=\"i.png\" alt=\"\" /> y</p>"
        );
        assert!(matches!(rewrite_attrs(html, |_| None), Cow::Borrowed(_)));
    }

    /// Character references in attribute values decode; unknown ones and
    /// a lone `&` stay as written.
    #[test]
    fn unescapes_references() {
        assert_eq!(
            unescape("a&amp;b&#39;c&#x27;d&quot;e&lt;&gt;"),
            "a&b'c'd\"e<>"
        );
        assert_eq!(unescape("&copy; & &#xZZ; &"), "&copy; & &#xZZ; &");
        assert!(matches!(unescape("plain"), Cow::Borrowed(_)));
    }

    /// Relative URLs resolve against the permalink (RFC 3986 §5: `..`,
    /// root-relative, network-path, query); absolute and fragment-only
    /// ones and text stay as they are.
    #[test]
    fn relative_urls_become_absolute() {
        let base = url::Url::parse("https://news.example.org/blog/articles/story/").unwrap();
        let html = "<p><img src=\"chart.png\" alt=\"c\"> <a href=\"../kyiv-notes/\">n</a> \
                    <a href=\"/about\">a</a> <a href=\"//cdn.example/x.js\">c</a> \
                    <a href=\"?page=2\">q</a> <a href=\"#top\">t</a> \
                    <a href=\"mailto:desk@example.org\">m</a> <a href=\"https://e.org/x?a=1&amp;b=2\">e</a> \
                    <a href=\"my%20file.pdf\">f</a> &lt;img src=\"text.png\"&gt;</p>";
        let out = absolutize(html, &base);
        assert_eq!(
            out,
            "<p><img src=\"https://news.example.org/blog/articles/story/chart.png\" alt=\"c\"> \
             <a href=\"https://news.example.org/blog/articles/kyiv-notes/\">n</a> \
             <a href=\"https://news.example.org/about\">a</a> <a href=\"https://cdn.example/x.js\">c</a> \
             <a href=\"https://news.example.org/blog/articles/story/?page=2\">q</a> <a href=\"#top\">t</a> \
             <a href=\"mailto:desk@example.org\">m</a> <a href=\"https://e.org/x?a=1&amp;b=2\">e</a> \
             <a href=\"https://news.example.org/blog/articles/story/my%20file.pdf\">f</a> &lt;img src=\"text.png\"&gt;</p>"
        );
        let absolute = "<p><a href=\"https://e.org/\">x</a> plain href= text</p>";
        assert!(matches!(absolutize(absolute, &base), Cow::Borrowed(_)));
    }

    /// An `<a>` left without a target loses its attributes and keeps its
    /// text; links with a target and other tags are untouched.
    #[test]
    fn targetless_links_lose_their_attributes() {
        let html = "<p><a rel=\"noopener noreferrer\">click</a> <a href=\"https://e/\" rel=\"noopener noreferrer\">ok</a> <a>bare</a> <abbr title=\"x\">y</abbr></p>";
        assert_eq!(
            drop_targetless_link_attrs(html),
            "<p><a>click</a> <a href=\"https://e/\" rel=\"noopener noreferrer\">ok</a> <a>bare</a> <abbr title=\"x\">y</abbr></p>"
        );
        let fine = "<p><a href=\"x\">x</a></p>";
        assert!(matches!(drop_targetless_link_attrs(fine), Cow::Borrowed(_)));
    }
}
