//! HTML escaping, written once: text for HTML (and XML) content and
//! attribute values ([`html`], [`push_html`]), and a value for a
//! double-quoted attribute in article HTML ([`double_quoted`]). Pure;
//! uses nothing of ours. (`render::escape`, which the renderers call,
//! is [`html`].)

/// Appends `s` to `out` with `&`, `<`, `>`, `"` and `'` escaped: safe in
/// element content and in attribute values quoted either way.
pub fn push_html(out: &mut String, s: &str) {
    push(out, s, true);
}

/// `s` escaped as [`push_html`] does.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push(&mut out, s, true);
    out
}

/// `s` ready for a double-quoted attribute value of article HTML: `&`,
/// `"`, `<` and `>` escaped, apostrophes left as the author wrote them
/// (a rewritten link changes no more of the value than it must).
pub fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push(&mut out, s, false);
    out
}

fn push(out: &mut String, s: &str, apostrophe: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' if apostrophe => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each character with a meaning in HTML is escaped, in content and
    /// in a double-quoted attribute, and the rest passes as it is.
    #[test]
    fn escapes() {
        let cases = [
            ("plain", "plain", "plain", "plain"),
            ("empty", "", "", ""),
            (
                "all five",
                "<a href=\"x\">&'",
                "&lt;a href=&quot;x&quot;&gt;&amp;&#39;",
                "&lt;a href=&quot;x&quot;&gt;&amp;'",
            ),
            ("already escaped", "&amp;", "&amp;amp;", "&amp;amp;"),
            (
                "non-ASCII",
                "Zürich — 東京",
                "Zürich — 東京",
                "Zürich — 東京",
            ),
        ];
        for (label, input, content, attr) in cases {
            assert_eq!(html(input), content, "{label}");
            let mut out = String::from("x");
            push_html(&mut out, input);
            assert_eq!(out, format!("x{content}"), "{label}");
            assert_eq!(double_quoted(input), attr, "{label}");
        }
    }
}
