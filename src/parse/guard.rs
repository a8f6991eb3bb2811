//! Checks that keep one hostile or careless file cheap to reject: dates
//! every output format can show, nesting depth measured by a linear scan
//! before a parser whose cost grows with depth sees the text, and short
//! escaped excerpts for messages. Pure.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime};
use chrono_tz::Tz;

/// Checks that `t` can be shown by every format Herald writes: RFC 2822
/// (RSS) and RFC 3339 (Atom, JSON Feed) need a four-digit year, and so do
/// HTTP dates; the HTML shows the time in the site's zone. So the instant
/// must fall within the years 1 to 9999 in UTC, in its own offset and in
/// `tz`.
///
/// # Errors
/// A sentence naming the instant and the bound it crosses.
pub fn showable(t: &DateTime<FixedOffset>, tz: Tz) -> Result<(), String> {
    let in_range = |n: &NaiveDateTime| (1..=9999).contains(&n.year());
    let utc = t.naive_utc();
    // Checked first: within these years, applying any offset (less than a
    // day) cannot leave the range chrono can represent.
    let bad = if !in_range(&utc) {
        Some((utc, "UTC".to_string()))
    } else {
        let own = t.naive_local();
        let zoned = t.with_timezone(&tz).naive_local();
        if !in_range(&own) {
            Some((own, format!("its own offset {}", t.offset())))
        } else if !in_range(&zoned) {
            Some((zoned, format!("the site's time zone {tz}")))
        } else {
            None
        }
    };
    match bad {
        None => Ok(()),
        Some((n, place)) => Err(format!(
            "{} in {place} is outside the years 0001 to 9999 that feed dates can show",
            n.format("%Y-%m-%d %H:%M")
        )),
    }
}

/// Longest excerpt of file text quoted in a message, in characters.
const EXCERPT_CHARS: usize = 40;

/// A short, escaped quotation of text from a file for a log message: at
/// most 40 characters, control characters and quotes escaped (as Rust's
/// `{:?}`), `…` when cut. A message never carries more of a file than
/// this, whatever the file is.
pub fn excerpt(s: &str) -> String {
    let mut cut: String = s.chars().take(EXCERPT_CHARS).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// True when YAML text uses an alias (`*name`): a value starting with
/// `*` outside quotes and comments. Aliases are expanded by the parser, so
/// a few KiB of anchors, each a list of aliases of the one before, stand
/// for gigabytes ("billion laughs"); front matter has no need of them, and
/// no plain YAML value can start with `*` anyway.
pub fn yaml_alias(text: &str) -> bool {
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut comment = false;
    // A value may start here: at a line start, after `[`, `{`, `,`, and
    // after `:`, `-` or `?` followed by white space (`after_indicator`).
    let mut value_start = true;
    let mut after_indicator = false;
    let mut prev = b'\n';
    for &b in text.as_bytes() {
        let was = prev;
        prev = b;
        if b == b'\n' {
            comment = false;
            if quote == Some(b'\'') {
                quote = None;
            }
            value_start = quote.is_none();
            after_indicator = false;
            continue;
        }
        if comment {
            continue;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' && q == b'"' {
                escaped = true;
            } else if b == q {
                quote = None;
            }
            continue;
        }
        match b {
            b' ' | b'\t' => value_start |= after_indicator,
            b'*' if value_start => return true,
            b'"' | b'\'' if value_start => {
                quote = Some(b);
                value_start = false;
            }
            b'#' if was.is_ascii_whitespace() => comment = true,
            b'[' | b'{' | b',' => value_start = true,
            b':' | b'-' | b'?' => {
                value_start = false;
                after_indicator = true;
                continue;
            }
            _ => value_start = false,
        }
        after_indicator = false;
    }
    false
}

/// The syntax whose nesting [`nesting_depth`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// YAML: flow collections (`[`, `{`), block indentation and `- ` runs.
    Yaml,
    /// TOML: arrays, inline tables and dotted keys.
    Toml,
}

/// An upper estimate of how deeply the collections in a front matter
/// nest, in one pass over its bytes.
///
/// YAML parsers spend time per token in proportion to the depth of open
/// flow collections (libyaml checks every open level for stale simple
/// keys), so 200 KB of `[[[[` takes half a minute to reject: the depth is
/// measured before the parser runs. Brackets are counted twice — once
/// blind, once skipping quoted strings and comments — and the larger count
/// wins, so a bracket hidden in a quote or a comment cannot make the
/// estimate fall below the real depth, and real text never comes near a
/// limit of dozens. YAML block nesting (indentation levels and `- - -`
/// runs) and TOML dotted keys count as well.
pub fn nesting_depth(text: &str, syntax: Syntax) -> usize {
    let mut blind: usize = 0;
    let mut aware: usize = 0;
    let mut deepest: usize = 0;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut prev = b'\n';
    for &b in text.as_bytes() {
        match b {
            b'[' | b'{' => blind += 1,
            b']' | b'}' => blind = blind.saturating_sub(1),
            _ => {}
        }
        if b == b'\n' {
            comment = false;
            // Neither language continues a single-quoted string, nor a
            // TOML basic string, over a line end; a YAML double-quoted
            // string may, and stays open.
            if quote == Some(b'\'') || (syntax == Syntax::Toml && quote.is_some()) {
                quote = None;
            }
        } else if comment {
        } else if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' && q == b'"' {
                escaped = true;
            } else if b == q {
                quote = None;
            }
        } else {
            match b {
                b'"' | b'\'' => quote = Some(b),
                b'#' if prev.is_ascii_whitespace() || prev == b'\n' => comment = true,
                b'[' | b'{' => aware += 1,
                b']' | b'}' => aware = aware.saturating_sub(1),
                _ => {}
            }
        }
        prev = b;
        deepest = deepest.max(blind).max(aware);
    }
    deepest.max(match syntax {
        Syntax::Yaml => yaml_block_depth(text),
        Syntax::Toml => toml_dotted_depth(text),
    })
}

/// Levels of YAML block nesting: the indentation levels open at each line,
/// plus the `- ` entries that open further levels on the same line.
fn yaml_block_depth(text: &str) -> usize {
    let mut open: Vec<usize> = Vec::new();
    let mut deepest = 0;
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        while open.last().is_some_and(|&i| i >= indent) {
            open.pop();
        }
        open.push(indent);
        let mut dashes = 0;
        let mut r = rest;
        while let Some(after) = r.strip_prefix('-') {
            if !(after.is_empty() || after.starts_with([' ', '\t'])) {
                break;
            }
            dashes += 1;
            r = after.trim_start_matches([' ', '\t']);
        }
        deepest = deepest.max(open.len() + dashes);
    }
    deepest
}

/// Segments of the longest TOML dotted key or table header (`a.b.c = 1`,
/// `[a.b.c]`): each one a table inside the last. Dots in quoted keys and
/// in values count too; that only over-estimates.
fn toml_dotted_depth(text: &str) -> usize {
    text.lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or(line);
            key.bytes().filter(|&b| b == b'.').count() + 1
        })
        .max()
        .unwrap_or(0)
}

/// HTML elements that never have content (no end tag to wait for).
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];

/// Elements whose end tag may be left out: the parser closes them
/// implicitly, so they do not nest when written one after another.
const OPTIONAL_END: &[&str] = &[
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot", "rp",
    "rt", "colgroup", "caption",
];

/// Most attributes one raw HTML element may carry: the sanitiser's HTML
/// parser compares each attribute with those before it on its element.
pub const MAX_HTML_ATTRIBUTES: usize = 128;

/// What [`html_shape`] measures of an HTML fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HtmlShape {
    /// An upper estimate of the most elements open at once.
    pub depth: usize,
    /// The most attributes (roughly: names inside one start tag).
    pub attributes: usize,
}

/// Measures an HTML fragment in one pass, before the sanitiser's HTML
/// parser sees it: that parser works per element in proportion to the
/// depth of open elements (200 KB of nested `<div>` took 13 s) and per
/// attribute in proportion to the attributes before it on its element.
/// Start tags open a level, end tags close back to the matching open
/// element; void elements, elements whose end tag is optional, and
/// self-closed tags inside SVG or MathML open none (on HTML elements the
/// parser ignores `/>`). Counting stops once `limit` levels are passed, so
/// the scan is linear whatever the input.
pub fn html_shape(html: &str, limit: usize) -> HtmlShape {
    let b = html.as_bytes();
    let mut open: Vec<&str> = Vec::new();
    let mut shape = HtmlShape {
        depth: 0,
        attributes: 0,
    };
    let mut i = 0;
    while let Some(at) = memchr_lt(&b[i..]) {
        i += at + 1;
        let closing = b.get(i) == Some(&b'/');
        let start = i + usize::from(closing);
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'-') {
            end += 1;
        }
        if end == start || !b[start].is_ascii_alphabetic() {
            continue;
        }
        let name = &html[start..end];
        let lower = |n: &str, list: &[&str]| list.iter().any(|v| v.eq_ignore_ascii_case(n));
        if closing {
            if let Some(pos) = open.iter().rposition(|o| o.eq_ignore_ascii_case(name)) {
                open.truncate(pos);
            }
            continue;
        }
        // The rest of the tag: attributes up to `>` (outside quotes).
        let (attrs, self_closed, next) = scan_tag(b, end);
        shape.attributes = shape.attributes.max(attrs);
        i = next;
        // `/>` closes an element only in SVG and MathML: the HTML parser
        // ignores it on an HTML element, so `<div/><div/>` nests.
        let foreign = || {
            open.iter()
                .any(|o| o.eq_ignore_ascii_case("svg") || o.eq_ignore_ascii_case("math"))
        };
        if (self_closed && foreign()) || lower(name, VOID) || lower(name, OPTIONAL_END) {
            continue;
        }
        open.push(name);
        shape.depth = shape.depth.max(open.len());
        if shape.depth > limit {
            break;
        }
    }
    shape
}

/// Scans a start tag's attributes from `at` (just past its name) to its
/// `>`, as the HTML tokenizer does: how many attribute names, whether it
/// ends in `/>`, and where the scan stopped. A quote opens a quoted value
/// only right after `=` (elsewhere it is part of a name, and must not
/// hide the tags that follow from the count).
fn scan_tag(b: &[u8], mut at: usize) -> (usize, bool, usize) {
    #[derive(PartialEq)]
    enum St {
        /// Between attributes.
        Gap,
        /// In an attribute name.
        Name,
        /// After `=`, before the value.
        Eq,
        /// In a value: quoted (by this byte) or unquoted (`None`).
        Value(Option<u8>),
    }
    let mut st = St::Gap;
    let mut attrs = 0;
    // A `/` between attributes (not inside a value) just before `>`.
    let mut slash = false;
    while at < b.len() {
        let c = b[at];
        at += 1;
        if let St::Value(Some(q)) = st {
            if c == q {
                st = St::Gap;
            }
            continue;
        }
        if c == b'>' {
            return (attrs, slash, at);
        }
        slash = c == b'/' && matches!(st, St::Gap | St::Name);
        st = match st {
            St::Eq if c == b'"' || c == b'\'' => St::Value(Some(c)),
            St::Eq if c.is_ascii_whitespace() => St::Eq,
            St::Eq => St::Value(None),
            St::Value(None) if c.is_ascii_whitespace() => St::Gap,
            St::Name | St::Gap if c == b'=' => St::Eq,
            St::Name | St::Gap if c.is_ascii_whitespace() || c == b'/' => St::Gap,
            St::Gap => {
                attrs += 1;
                St::Name
            }
            other => other,
        };
    }
    (attrs, false, at)
}

fn memchr_lt(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'<')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dates any format can show pass; the year 0, negative years, years
    /// past 9999 and instants pushed across a bound by an offset or by
    /// the site's zone are refused, naming where.
    #[test]
    fn showable_dates() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        let kiritimati: Tz = "Pacific/Kiritimati".parse().unwrap();
        let ok = [
            ("ordinary", t("2025-05-22T06:40:00+08:00"), Tz::UTC),
            ("first day", t("0001-01-01T00:00:00Z"), Tz::UTC),
            ("last second", t("9999-12-31T23:59:59Z"), Tz::UTC),
        ];
        for (label, d, tz) in ok {
            assert_eq!(showable(&d, tz), Ok(()), "{label}");
        }
        let neg =
            DateTime::parse_from_str("-0001-06-01 00:00:00+00:00", "%Y-%m-%d %H:%M:%S%:z").unwrap();
        let bad = [
            ("negative year", neg, Tz::UTC, "in UTC"),
            (
                "offset pushes UTC past 9999",
                t("9999-12-31T23:59:59-12:00"),
                Tz::UTC,
                "in UTC",
            ),
            (
                "own offset before year 1",
                t("0000-12-31T23:30:00-01:00"),
                Tz::UTC,
                "own offset",
            ),
            (
                "site zone past 9999",
                t("9999-12-31T23:00:00Z"),
                kiritimati,
                "time zone",
            ),
        ];
        for (label, d, tz, want) in bad {
            let e = showable(&d, tz).unwrap_err();
            assert!(
                e.contains(want) && e.contains("0001 to 9999"),
                "{label}: {e}"
            );
        }
    }

    /// YAML aliases are found at the start of a value, in block and flow
    /// style; asterisks inside text, quotes and comments are not aliases.
    #[test]
    fn yaml_aliases() {
        let cases = [
            ("tags alias", "a: &l [x]\ntags: *l\n", true),
            ("flow alias", "tags: [a, *l]\n", true),
            ("sequence alias", "tags:\n  - *l\n", true),
            ("emphasis in text", "title: a *b* c\n", false),
            ("quoted", "title: \"*b*\"\nsummary: '*c'\n", false),
            ("comment", "title: x # *not\n", false),
            ("glob in value", "path: a/*.md\n", false),
            ("dash inside a word", "title: a-*b\n", false),
            ("colon inside a value", "url: http://x/*\n", false),
        ];
        for (label, text, want) in cases {
            assert_eq!(yaml_alias(text), want, "{label}");
        }
    }

    /// Excerpts are short, escaped and marked when cut.
    #[test]
    fn excerpts() {
        assert_eq!(excerpt("May 1"), "\"May 1\"");
        assert_eq!(excerpt("a\nb\u{1b}[31m"), "\"a\\nb\\u{1b}[31m\"");
        let long = "root:x:0:0:root:/root:/bin/bash daemon:x:1:1:daemon:/usr/sbin";
        let e = excerpt(long);
        assert!(e.chars().count() <= 43 && e.ends_with("…\""), "{e}");
    }

    /// Front-matter depth: flow brackets however they are hidden, block
    /// indentation, `- ` runs and TOML dotted keys; real front matter is
    /// shallow.
    #[test]
    fn front_matter_depth() {
        let cases = [
            (
                "real yaml",
                "title: \"A [b] c\"\ntags: [a, b]\nx:\n  y: 1\n",
                Syntax::Yaml,
                2,
            ),
            ("flow", "x: [[[[1]]]]", Syntax::Yaml, 4),
            (
                "unclosed flow",
                &format!("x: {}", "[".repeat(500)),
                Syntax::Yaml,
                500,
            ),
            (
                "quoted closers",
                &format!("x: {}", "[\"]\"".repeat(100)),
                Syntax::Yaml,
                100,
            ),
            (
                "apostrophe hides openers",
                &format!("x: don't {}", "[".repeat(100)),
                Syntax::Yaml,
                100,
            ),
            ("comment closers", &"[ # ]\n".repeat(100), Syntax::Yaml, 100),
            ("block", "a:\n b:\n  c:\n   d: 1\n", Syntax::Yaml, 4),
            ("dash run", "x:\n- - - - a\n", Syntax::Yaml, 5),
            ("toml arrays", "x = [[[1]]]", Syntax::Toml, 3),
            ("toml dotted", "a.b.c.d = 1", Syntax::Toml, 4),
            ("toml header", "[a.b.c]\nx = 1", Syntax::Toml, 3),
        ];
        for (label, text, syntax, want) in cases {
            assert_eq!(nesting_depth(text, syntax), want, "{label}");
        }
    }

    /// HTML depth: nesting counted, closes matched, void, self-closed and
    /// optional-end elements open nothing; the scan stops past the limit.
    /// Attributes per element: names counted, quoted values skipped.
    #[test]
    fn html_depths() {
        let cases = [
            ("flat", "<p>a</p><p>b</p>", 0),
            ("nested", "<div><section><span>x</span></section></div>", 3),
            ("unclosed", "<div><div><div>", 3),
            (
                "void, and self-closed in SVG",
                "<div><img src=x><br/><svg><path d=\"x\"/><path/></svg></div>",
                2,
            ),
            (
                "self-closing ignored on HTML elements",
                "<div/><div/><div/>",
                3,
            ),
            ("optional ends", "<ul><li>a<li>b<li>c</ul>", 1),
            ("misnested close", "<div><b><i></div><p>", 3),
            ("text with lt", "1 < 2 and <3", 0),
        ];
        for (label, html, want) in cases {
            assert_eq!(html_shape(html, 64).depth, want, "{label}");
        }
        assert_eq!(html_shape(&"<div>".repeat(100_000), 64).depth, 65);
        let quoted = format!("<p><focal input\"\n{}", "<p><font size=1>".repeat(100));
        assert_eq!(
            html_shape(&quoted, 64).depth,
            65,
            "a stray quote hid the fonts"
        );
        let attrs = [
            ("none", "<p>x</p>", 0),
            (
                "quoted values",
                "<a href=\"a b>c\" title='x y' download>x</a>",
                3,
            ),
            ("unquoted", "<img src=x alt=y/>", 2),
            ("many", &format!("<div{}>x</div>", " a".repeat(500)), 500),
            ("a quote in a name hides nothing", "<x a\"b c=\"d>e\" f>", 3),
        ];
        for (label, html, want) in attrs {
            assert_eq!(html_shape(html, 64).attributes, want, "{label}");
        }
    }
}
