//! Markdown with front matter (FORMAT.md §2): YAML between `---` lines or
//! TOML between `+++` lines, then a CommonMark body (tables, footnotes,
//! strikethrough). Raw HTML and unsafe link schemes are sanitised.

use std::path::Path;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde::Deserialize;

use super::guard::{
    excerpt, html_shape, nesting_depth, showable, yaml_alias, Syntax, MAX_HTML_ATTRIBUTES,
};
use super::{localize, Limits, ParseCtx, ParseError, MAX_LABEL_CHARS};
use crate::article::{slugify, truncate_words, xml_clean, Article};

const SUMMARY_CHARS: usize = 300;

/// Front-matter keys Herald reads; other keys (Hugo's `weight`, Jekyll's
/// `layout` …) are ignored so that existing content moves over unchanged.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct FrontMatter {
    title: Option<String>,
    date: Option<String>,
    updated: Option<String>,
    #[serde(alias = "category")]
    categories: OneOrMany,
    tags: OneOrMany,
    summary: Option<String>,
    author: OneOrMany,
    authors: OneOrMany,
    draft: bool,
    slug: Option<String>,
    id: Option<String>,
    image: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        let v = match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        v.into_iter()
            .map(|s| clean_line(&s))
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Where the front matter and the body are, and how to read the former.
struct Split<'a> {
    toml: bool,
    front: &'a str,
    /// Line number of the first front-matter line.
    front_line: usize,
    body: &'a str,
}

/// Splits `---`/`+++` front matter from the body.
fn split<'a>(path: &Path, text: &'a str) -> Result<Split<'a>, ParseError> {
    let first_end = text.find('\n').unwrap_or(text.len());
    let fence = text[..first_end].trim_end();
    let toml = match fence {
        "---" => false,
        "+++" => true,
        _ if text.trim().is_empty() => return Err(ParseError::new(path, 1, "empty file")),
        _ => {
            return Err(ParseError::new(
                path,
                1,
                "no front matter: expected `---` (YAML) or `+++` (TOML) on line 1",
            ))
        }
    };
    let mut offset = (first_end + 1).min(text.len());
    let mut line = 2;
    while offset < text.len() {
        let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        if text[offset..end].trim_end() == fence {
            let body_start = (end + 1).min(text.len());
            return Ok(Split {
                toml,
                front: &text[first_end + 1..offset],
                front_line: 2,
                body: &text[body_start..],
            });
        }
        offset = end + 1;
        line += 1;
    }
    Err(ParseError::new(
        path,
        line - 1,
        format!("front matter opened on line 1 is never closed with `{fence}`"),
    ))
}

fn read_front(path: &Path, s: &Split<'_>, limits: &Limits) -> Result<FrontMatter, ParseError> {
    if s.front.len() > limits.max_front_matter_bytes {
        return Err(ParseError::new(
            path,
            s.front_line,
            format!(
                "front matter is {} bytes; at most {} are read (limit `max_front_matter_bytes`)",
                s.front.len(),
                limits.max_front_matter_bytes
            ),
        ));
    }
    let syntax = if s.toml { Syntax::Toml } else { Syntax::Yaml };
    let depth = nesting_depth(s.front, syntax);
    if depth > limits.max_nesting {
        return Err(ParseError::new(
            path,
            s.front_line,
            format!(
                "front matter nests about {depth} levels deep; at most {} are read (limit `max_nesting`)",
                limits.max_nesting
            ),
        ));
    }
    if !s.toml && yaml_alias(s.front) {
        return Err(ParseError::new(
            path,
            s.front_line,
            "front matter uses a YAML alias (`*name`); write the value out instead",
        ));
    }
    if s.toml {
        let value: toml::Table = toml::from_str(s.front).map_err(|e| {
            let line = e.span().map_or(0, |sp| {
                s.front.as_bytes()[..sp.start.min(s.front.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
            });
            ParseError::new(
                path,
                s.front_line + line,
                format!("front matter: {}", e.message()),
            )
        })?;
        let value = toml::Value::Table(stringify_dates(value));
        FrontMatter::deserialize(value).map_err(|e| {
            ParseError::new(path, s.front_line, format!("front matter: {}", e.message()))
        })
    } else {
        if s.front.trim().is_empty() {
            return Ok(FrontMatter::default());
        }
        serde_yaml::from_str(s.front).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line().saturating_sub(1));
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            ParseError::new(path, s.front_line + line, format!("front matter: {msg}"))
        })
    }
}

/// TOML has a native date type; Herald reads every date as text so that
/// YAML and TOML go through one date parser.
fn stringify_dates(t: toml::Table) -> toml::Table {
    t.into_iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::Datetime(d) => toml::Value::String(d.to_string()),
                other => other,
            };
            (k, v)
        })
        .collect()
}

/// RFC 3339, or a date-time / date without offset read in the site's zone.
fn parse_date(s: &str, ctx: &ParseCtx) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d);
    }
    if let Ok(d) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%:z") {
        return Some(d);
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            return Some(localize(n, ctx.tz));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| localize(d.and_time(chrono::NaiveTime::MIN), ctx.tz))
}

/// For a date written right whose day its month lacks (`2025-02-30`,
/// `2025-04-31`): that, in words, since "expected RFC 3339" would send
/// the writer looking at the format.
fn no_such_day(s: &str) -> Option<String> {
    let s = s.trim();
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    if s.as_bytes().get(4) != Some(&b'-') || s.as_bytes().get(7) != Some(&b'-') {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let first = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, 1)?;
    let days = first
        .checked_add_months(chrono::Months::new(1))?
        .signed_duration_since(first)
        .num_days();
    let month = chrono::Month::try_from(u8::try_from(m).ok()?).ok()?;
    (d == 0 || i64::from(d) > days).then(|| format!("{} {y} has no day {d}", month.name()))
}

/// Finds the line a front-matter key is on, for error messages.
fn key_line(s: &Split<'_>, key: &str) -> usize {
    s.front
        .lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with([':', '=']))
        })
        .map_or(s.front_line, |i| s.front_line + i)
}

fn clean_line(s: &str) -> String {
    xml_clean(s)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn parse(
    path: &Path,
    text: &str,
    ctx: &ParseCtx,
) -> Result<Option<Article>, ParseError> {
    let split = split(path, text)?;
    let fm = read_front(path, &split, &ctx.limits)?;
    if fm.draft {
        return Ok(None);
    }
    let title = fm.title.as_deref().map(clean_line).unwrap_or_default();
    if title.is_empty() {
        return Err(ParseError::new(
            path,
            split.front_line,
            "front matter has no `title`",
        ));
    }
    let date_str = fm
        .date
        .as_deref()
        .ok_or_else(|| ParseError::new(path, split.front_line, "front matter has no `date`"))?;
    let published = parse_date(date_str, ctx).ok_or_else(|| {
        ParseError::new(
            path,
            key_line(&split, "date"),
            format!(
                "invalid `date` {}: {}",
                excerpt(date_str),
                no_such_day(date_str)
                    .unwrap_or_else(|| "expected RFC 3339, e.g. 2025-05-22T06:40:00+08:00".into())
            ),
        )
    })?;
    showable(&published, ctx.tz)
        .map_err(|why| ParseError::new(path, key_line(&split, "date"), format!("`date`: {why}")))?;
    let (updated, updated_from_file) = match fm.updated.as_deref() {
        None => (published, false),
        Some(u) => {
            let line = key_line(&split, "updated");
            let t = parse_date(u, ctx).ok_or_else(|| {
                ParseError::new(
                    path,
                    line,
                    format!(
                        "invalid `updated` {}: {}",
                        excerpt(u),
                        no_such_day(u).unwrap_or_else(|| "expected RFC 3339".into())
                    ),
                )
            })?;
            showable(&t, ctx.tz)
                .map_err(|why| ParseError::new(path, line, format!("`updated`: {why}")))?;
            (t, true)
        }
    };
    let categories = fm.categories.into_vec();
    let tags = fm.tags.into_vec();
    let labels = categories.len() + tags.len();
    if labels > ctx.limits.max_labels {
        return Err(ParseError::new(
            path,
            key_line(&split, if categories.is_empty() { "tags" } else { "categories" }),
            format!(
                "{} categories and {} tags; an article may have at most {} together (limit `max_labels`)",
                categories.len(),
                tags.len(),
                ctx.limits.max_labels
            ),
        ));
    }
    if let Some(long) = categories
        .iter()
        .chain(&tags)
        .find(|l| l.chars().count() > MAX_LABEL_CHARS)
    {
        return Err(ParseError::new(
            path,
            split.front_line,
            format!(
                "category or tag {} is {} characters long; at most {MAX_LABEL_CHARS}",
                excerpt(long),
                long.chars().count()
            ),
        ));
    }

    let body_line = text[..text.len() - split.body.len()].matches('\n').count() + 1;
    let Rendered {
        html: body_html,
        first_paragraph,
        misplaced,
    } = render_body(&xml_clean(split.body), ctx.limits.max_nesting).map_err(|(at, why)| {
        let line = body_line
            + split.body.as_bytes()[..at.min(split.body.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
        ParseError::new(path, line, why)
    })?;
    let mut warnings = Vec::new();
    if body_html.trim().is_empty() {
        warnings.push(format!(
            "{}:{body_line}: article has a title but no body",
            path.display()
        ));
    }
    if misplaced > 0 {
        warnings.push(format!(
            "{}:{body_line}: raw HTML puts content inside a table where none may go ({misplaced} places); readers see it moved before the table",
            path.display()
        ));
    }
    let summary = match fm.summary.as_deref().map(clean_line) {
        Some(s) if !s.is_empty() => s,
        _ => truncate_words(&first_paragraph, SUMMARY_CHARS),
    };

    // `author` and `authors` both take one name or a list; together, in
    // that order, each name once.
    let mut authors: Vec<String> = Vec::new();
    for name in fm
        .author
        .into_vec()
        .into_iter()
        .chain(fm.authors.into_vec())
    {
        if !authors.contains(&name) {
            authors.push(name);
        }
    }
    let mut authors = authors.into_iter();
    let mut a = Article {
        slug: fm.slug.as_deref().map(slugify).unwrap_or_default(),
        id: fm.id.as_deref().map(clean_line).unwrap_or_default(),
        title,
        published,
        updated: updated.max(published),
        updated_from_file,
        categories,
        tags,
        summary,
        body_html: crate::article::Body::new(&body_html),
        author: authors.next(),
        more_authors: authors.collect(),
        source: path.to_path_buf(),
        hash: 0,
        warnings,
        local_refs: local_refs(&body_html),
        picture: None,
    };
    // The picture: front matter `image`, else the body's first image. A
    // relative front-matter image is a file beside the article, as the
    // body's references are.
    let image = fm.image.as_deref().map(str::trim).filter(|i| !i.is_empty());
    a.picture = match image {
        Some(src) => {
            let relative = crate::links::is_relative(src) && !src.starts_with(['/', '?']);
            match a.local_refs.iter_mut().find(|r| r.url == src) {
                Some(r) => r.image = true,
                None if relative => a.local_refs.push(crate::article::LocalRef {
                    url: src.to_string(),
                    image: true,
                }),
                None => {}
            }
            Some(crate::article::Picture {
                src: src.to_string(),
                from_front_matter: true,
                published: None,
            })
        }
        None => first_image(&body_html).map(|src| crate::article::Picture {
            src,
            from_front_matter: false,
            published: None,
        }),
    };
    a.hash = a.content_hash_with(&body_html);
    Ok(Some(a))
}

/// The relative-path references of a body (not `/…`, `//…`, `?…` or
/// `#…`), each once: the files the article may link to or show.
fn local_refs(html: &str) -> Vec<crate::article::LocalRef> {
    let mut out: Vec<crate::article::LocalRef> = Vec::new();
    crate::links::for_each_url(html, |a| {
        let url = a.value.trim();
        if !crate::links::is_relative(url) || url.starts_with(['/', '?']) {
            return;
        }
        let image = a.tag == "img" && a.name == "src";
        match out.iter_mut().find(|r| r.url == url) {
            Some(r) => r.image |= image,
            None => out.push(crate::article::LocalRef {
                url: url.to_string(),
                image,
            }),
        }
    });
    out
}

/// The `src` of the body's first image.
fn first_image(html: &str) -> Option<String> {
    let mut first = None;
    crate::links::for_each_url(html, |a| {
        if first.is_none() && a.tag == "img" && a.name == "src" && !a.value.trim().is_empty() {
            first = Some(a.value.trim().to_string());
        }
    });
    first
}

/// Renders CommonMark to HTML and returns it with the plain text of the
/// first paragraph. The output of pulldown-cmark is safe except for raw HTML
/// and link targets with schemes such as `javascript:`; only when one of
/// those occurs does the (much slower) full ammonia pass run.
///
/// # Errors
/// The byte offset (in `md`) and reason when blocks and inlines nest
/// deeper than `max_nesting`, or raw HTML would (the sanitiser's HTML
/// parser slows down with the depth of open elements).
fn render_body(md: &str, max_nesting: usize) -> Result<Rendered, (usize, String)> {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_FOOTNOTES | Options::ENABLE_STRIKETHROUGH;
    let mut events: Vec<Event<'_>> = Vec::new();

    let mut needs_clean = false;
    let mut first = String::new();
    let mut depth: Option<usize> = None;
    let mut done = false;
    let mut nesting = 0usize;
    let mut misplaced = 0;
    // Table rows are padded to the header's columns: a 7 KB file of a
    // 500-column header and 500 one-cell rows is 250,000 cells, 5 MB of
    // HTML. No table holds more cells than bytes of text.
    let max_cells = md.len() + 1024;
    let mut cells = 0usize;
    for (ev, range) in Parser::new_ext(md, opts).into_offset_iter() {
        if let Event::Start(Tag::TableCell) = &ev {
            cells += 1;
            if cells > max_cells {
                return Err((
                    range.start,
                    format!(
                        "tables have more than {max_cells} cells, more than the text holds (each row is filled out to the header's columns)"
                    ),
                ));
            }
        }
        match &ev {
            Event::Start(_) => {
                nesting += 1;
                if nesting > max_nesting {
                    return Err((
                        range.start,
                        format!(
                            "Markdown blocks and inlines nest more than {max_nesting} levels deep (limit `max_nesting`)"
                        ),
                    ));
                }
            }
            Event::End(_) => nesting = nesting.saturating_sub(1),
            _ => {}
        }
        match &ev {
            Event::Html(_) | Event::InlineHtml(_) => needs_clean = true,
            Event::Start(Tag::Link { dest_url, .. })
            | Event::Start(Tag::Image { dest_url, .. })
                if !safe_url(dest_url) =>
            {
                needs_clean = true
            }
            _ => {}
        }
        if !done {
            match &ev {
                Event::Start(Tag::Paragraph) if depth.is_none() => depth = Some(0),
                Event::Start(_) if depth.is_some() => depth = depth.map(|d| d + 1),
                Event::End(TagEnd::Paragraph) if depth == Some(0) => done = true,
                Event::End(_) if depth.is_some() => depth = depth.map(|d| d.saturating_sub(1)),
                Event::Text(t) | Event::Code(t) if depth.is_some() => first.push_str(t),
                Event::SoftBreak | Event::HardBreak if depth.is_some() => first.push(' '),
                _ => {}
            }
        }
        events.push(ev);
    }
    let events = gfm_footnotes(events);
    let mut html = String::with_capacity(md.len() + md.len() / 4);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    if needs_clean {
        let shape = html_shape(&html, max_nesting);
        if shape.depth > max_nesting {
            return Err((
                0,
                format!(
                    "raw HTML elements nest more than {max_nesting} levels deep (limit `max_nesting`)"
                ),
            ));
        }
        if shape.attributes > MAX_HTML_ATTRIBUTES {
            return Err((
                0,
                format!(
                    "a raw HTML element has {} attributes; at most {MAX_HTML_ATTRIBUTES}",
                    shape.attributes
                ),
            ));
        }
        SANITISER_WARNINGS.with(|c| c.set(0));
        html = sanitiser().clean(&html).to_string();
        misplaced = SANITISER_WARNINGS.with(std::cell::Cell::get);
        // A link whose target the sanitiser refused keeps `rel` (which it
        // adds) and whatever else it had, and `<a rel>` without `href` is
        // invalid HTML: such a link keeps its text and loses its
        // attributes. Every other body comes out exactly as before.
        if let std::borrow::Cow::Owned(fixed) = crate::links::drop_targetless_link_attrs(&html) {
            html = fixed;
        }
    }
    Ok(Rendered {
        html,
        first_paragraph: first.split_whitespace().collect::<Vec<_>>().join(" "),
        misplaced,
    })
}

/// The body of a Markdown article as HTML, and what was learnt on the way.
struct Rendered {
    html: String,
    /// Plain text of the first paragraph (the summary when none is given).
    first_paragraph: String,
    /// Places where the sanitiser's HTML parser had to move raw HTML
    /// (content inside a table where tables allow none).
    misplaced: usize,
}

/// Footnotes as GitHub and most Markdown tools show them.
/// pulldown-cmark's own HTML puts each note where it was defined, as a
/// `<div id="LABEL">` whose label stands on a line of its own above the
/// note, and references it as `href="#LABEL"`. Here the notes are gathered
/// at the end in a numbered list, in the order they are first referenced;
/// each ends with a link back to the text, and the ids are `fn-N` and
/// `fnref-N`, which no other markup Herald writes uses. Feeds scope these
/// ids by the article's slug and make the links absolute
/// (`crate::links::scope_footnotes`). A definition never referenced is
/// left out, as GitHub does.
fn gfm_footnotes<'a>(events: Vec<Event<'a>>) -> Vec<Event<'a>> {
    use pulldown_cmark::CowStr;
    if !events
        .iter()
        .any(|e| matches!(e, Event::FootnoteReference(_)))
    {
        return events;
    }
    let mut defs: Vec<(String, Vec<Event<'a>>)> = Vec::new();
    let mut text: Vec<Event<'a>> = Vec::with_capacity(events.len());
    let mut open: Vec<(String, Vec<Event<'a>>)> = Vec::new();
    for ev in events {
        match ev {
            Event::Start(Tag::FootnoteDefinition(name)) => {
                open.push((name.to_lowercase(), Vec::new()));
            }
            Event::End(TagEnd::FootnoteDefinition) => {
                if let Some(d) = open.pop() {
                    defs.push(d);
                }
            }
            ev => match open.last_mut() {
                Some((_, body)) => body.push(ev),
                None => text.push(ev),
            },
        }
    }
    let known: Vec<String> = defs.iter().map(|(k, _)| k.clone()).collect();
    // Numbers in order of first reference, as the notes are listed; a
    // note may refer to another, which then comes after it.
    let mut order: Vec<String> = Vec::new();
    let mut out = footnote_refs(text, &known, &mut order);
    if order.is_empty() {
        return out;
    }
    out.push(Event::Html(CowStr::from("<hr>\n<ol>\n")));
    let mut i = 0;
    while i < order.len() {
        let n = i + 1;
        let key = order[i].clone();
        i += 1;
        let Some(pos) = defs.iter().position(|(k, _)| *k == key) else {
            continue;
        };
        let body = std::mem::take(&mut defs[pos].1);
        let mut body = footnote_refs(body, &known, &mut order);
        let back = format!("<a href=\"#fnref-{n}\" title=\"Back to the text\">\u{21a9}</a>");
        match body
            .iter()
            .rposition(|e| matches!(e, Event::End(TagEnd::Paragraph)))
        {
            Some(p) => body.insert(p, Event::InlineHtml(CowStr::from(format!(" {back}")))),
            None => body.push(Event::Html(CowStr::from(format!("<p>{back}</p>\n")))),
        }
        out.push(Event::Html(CowStr::from(format!("<li id=\"fn-{n}\">\n"))));
        out.extend(body);
        out.push(Event::Html(CowStr::from("</li>\n")));
    }
    out.push(Event::Html(CowStr::from("</ol>\n")));
    out
}

/// Footnote references as numbered links (see [`gfm_footnotes`]); the
/// first reference to a note carries the id its back link goes to. A
/// reference to a note nobody defined stays as the text it was.
fn footnote_refs<'a>(
    events: Vec<Event<'a>>,
    known: &[String],
    order: &mut Vec<String>,
) -> Vec<Event<'a>> {
    use pulldown_cmark::CowStr;
    events
        .into_iter()
        .map(|ev| {
            let Event::FootnoteReference(name) = ev else {
                return ev;
            };
            let key = name.to_lowercase();
            if !known.contains(&key) {
                return Event::Text(CowStr::from(format!("[^{name}]")));
            }
            let (n, first) = match order.iter().position(|k| *k == key) {
                Some(i) => (i + 1, false),
                None => {
                    order.push(key);
                    (order.len(), true)
                }
            };
            let id = if first {
                format!(" id=\"fnref-{n}\"")
            } else {
                String::new()
            };
            Event::InlineHtml(CowStr::from(format!(
                "<sup{id}><a href=\"#fn-{n}\">{n}</a></sup>"
            )))
        })
        .collect()
}

/// The sanitiser for bodies with raw HTML: ammonia's defaults, keeping
/// the footnote ids [`gfm_footnotes`] writes (`fn-N`, `fnref-N` on `li`
/// and `sup`), so a body with raw HTML keeps working footnotes.
fn sanitiser() -> &'static ammonia::Builder<'static> {
    static B: std::sync::OnceLock<ammonia::Builder<'static>> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let mut b = ammonia::Builder::default();
        b.add_tag_attributes("li", &["id"])
            .add_tag_attributes("sup", &["id"])
            .attribute_filter(|_, attr, value| {
                let keep = attr != "id"
                    || value
                        .strip_prefix("fn-")
                        .or_else(|| value.strip_prefix("fnref-"))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
                keep.then(|| value.into())
            });
        b
    })
}

thread_local! {
    /// Warnings of the sanitiser's HTML parser while the current thread
    /// cleans one body ([`sanitiser_warned`]).
    static SANITISER_WARNINGS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a warning of the HTML parser behind the sanitiser (html5ever
/// logs through the `log` crate, one line per misplaced node and naming
/// no file): Herald's log bridge calls this instead of logging it, and the
/// article then carries one warning that names its file.
pub fn sanitiser_warned() {
    SANITISER_WARNINGS.with(|c| c.set(c.get().saturating_add(1)));
}

/// Relative URLs, fragments and http(s)/mailto are safe; any other scheme
/// sends the body through ammonia.
fn safe_url(url: &str) -> bool {
    match url.find([':', '/', '?', '#']) {
        Some(i) if url.as_bytes()[i] == b':' => {
            let scheme = url[..i].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto")
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse as parse_any, ParseCtx};

    fn ctx() -> ParseCtx {
        ParseCtx::new("Asia/Shanghai".parse().unwrap())
    }

    fn md(name: &str, text: &str) -> Result<Option<Article>, ParseError> {
        parse_any(Path::new(name), text, &ctx())
    }

    /// Footnotes in GitHub's shape: numbered by first reference, a note
    /// that refers to another brings it after itself, a reference used
    /// twice carries its id once, an undefined one stays text, an unused
    /// definition is left out, and raw HTML keeps the ids.
    #[test]
    fn footnotes_as_github_shows_them() {
        let cases = [
            (
                "two notes",
                "A.[^b] B.[^a]\n\n[^a]: Note a.\n[^b]: Note b.",
                "<p>A.<sup id=\"fnref-1\"><a href=\"#fn-1\">1</a></sup> B.<sup id=\"fnref-2\"><a href=\"#fn-2\">2</a></sup></p>\n<hr>\n<ol>\n<li id=\"fn-1\">\n<p>Note b. <a href=\"#fnref-1\" title=\"Back to the text\">\u{21a9}</a></p>\n</li>\n<li id=\"fn-2\">\n<p>Note a. <a href=\"#fnref-2\" title=\"Back to the text\">\u{21a9}</a></p>\n</li>\n</ol>\n",
            ),
            (
                "note refers to a note, reference twice, unused note",
                "A.[^x] again[^x]\n\n[^x]: See[^y].\n[^y]: Y.\n[^z]: Unused.",
                "<p>A.<sup id=\"fnref-1\"><a href=\"#fn-1\">1</a></sup> again<sup><a href=\"#fn-1\">1</a></sup></p>\n<hr>\n<ol>\n<li id=\"fn-1\">\n<p>See<sup id=\"fnref-2\"><a href=\"#fn-2\">2</a></sup>. <a href=\"#fnref-1\" title=\"Back to the text\">\u{21a9}</a></p>\n</li>\n<li id=\"fn-2\">\n<p>Y. <a href=\"#fnref-2\" title=\"Back to the text\">\u{21a9}</a></p>\n</li>\n</ol>\n",
            ),
            ("undefined", "A.[^nope]", "<p>A.[^nope]</p>\n"),
        ];
        for (label, body, want) in cases {
            assert_eq!(render_body(body, 64).unwrap().html, want, "{label}");
        }
        let raw = render_body("<b>A</b>.[^1]\n\n[^1]: N.", 64).unwrap().html;
        assert!(
            raw.contains("<sup id=\"fnref-1\"><a href=\"#fn-1\""),
            "{raw}"
        );
        assert!(raw.contains("<li id=\"fn-1\">"), "{raw}");
    }

    const FULL: &str = "---\ntitle: \"Ceasefire talks resume\"\ndate: 2025-05-22T06:40:00+08:00\nupdated: 2025-05-23T09:00:00+08:00\ncategories: [Columns and Opinions]\ntags: [diplomacy, ukraine]\nsummary: \"One paragraph for feed readers.\"\nauthor: \"Desk editor\"\nslug: ceasefire-talks\n---\nBody in **Markdown**.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";

    /// The FORMAT.md example front matter fills every field.
    #[test]
    fn yaml_front_matter() {
        let a = md("2025-05-22-whatever.md", FULL).unwrap().unwrap();
        assert_eq!(a.title, "Ceasefire talks resume");
        assert_eq!(a.slug, "ceasefire-talks");
        assert_eq!(a.published.to_rfc3339(), "2025-05-22T06:40:00+08:00");
        assert_eq!(a.updated.to_rfc3339(), "2025-05-23T09:00:00+08:00");
        assert!(a.updated_from_file);
        assert_eq!(a.categories, vec!["Columns and Opinions"]);
        assert_eq!(a.tags, vec!["diplomacy", "ukraine"]);
        assert_eq!(a.summary, "One paragraph for feed readers.");
        assert_eq!(a.author.as_deref(), Some("Desk editor"));
        assert!(a.body_html.html().contains("<strong>Markdown</strong>"));
        assert!(
            a.body_html.html().contains("<table>"),
            "tables extension on"
        );
    }

    /// TOML front matter with a native datetime and a bare date.
    #[test]
    fn toml_front_matter() {
        let t = "+++\ntitle = \"T & U\"\ndate = 2025-05-22T06:40:00+08:00\ncategories = [\"News\"]\n+++\nFirst *para*\ngraph.\n\nSecond.\n";
        let a = md("2025-05-22-my-post.md", t).unwrap().unwrap();
        assert_eq!(a.title, "T & U");
        assert_eq!(a.slug, "my-post");
        assert_eq!(a.published.to_rfc3339(), "2025-05-22T06:40:00+08:00");
        assert_eq!(
            a.summary,
            "First paragraph.".replace("paragraph", "para graph")
        );
        let b = md("x.md", "+++\ntitle = \"d\"\ndate = 2025-05-22\n+++\nx")
            .unwrap()
            .unwrap();
        assert_eq!(
            b.published.to_rfc3339(),
            "2025-05-22T00:00:00+08:00",
            "bare date in the site zone"
        );
    }

    /// A date without offset uses the configured time zone.
    #[test]
    fn naive_date_uses_timezone() {
        let a = md("x.md", "---\ntitle: x\ndate: 2025-05-22 06:40\n---\nb")
            .unwrap()
            .unwrap();
        assert_eq!(a.published.to_rfc3339(), "2025-05-22T06:40:00+08:00");
    }

    /// Drafts are never published.
    #[test]
    fn drafts_skipped() {
        assert_eq!(
            md(
                "x.md",
                "---\ntitle: x\ndate: 2025-05-22\ndraft: true\n---\nb"
            )
            .unwrap(),
            None
        );
    }

    /// Raw HTML is sanitised: no scripts, no handlers, no javascript: URLs.
    #[test]
    fn sanitised() {
        let t = "---\ntitle: x\ndate: 2025-05-22\n---\nHi <script>alert(1)</script> <img src=x onerror=alert(1)>\n\n[click](javascript:alert(1)) [ok](https://example.com/a?b#c) [rel](../x)\n\n<div onclick=\"x()\">d</div>\n";
        let a = md("x.md", t).unwrap().unwrap();
        let h = a.body_html.html().to_ascii_lowercase();
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("onerror") && !h.contains("onclick"), "{h}");
        assert!(!h.contains("javascript:"), "{h}");
        assert!(h.contains("href=\"https://example.com/a?b#c\""), "{h}");
        assert!(h.contains("href=\"../x\""), "{h}");
        let plain = md(
            "y.md",
            "---\ntitle: y\ndate: 2025-05-22\n---\n[j](JavaScript:x) 1 < 2 & 3",
        )
        .unwrap()
        .unwrap();
        assert!(
            !plain
                .body_html
                .html()
                .to_ascii_lowercase()
                .contains("javascript"),
            "{}",
            plain.body_html.html()
        );
        assert!(
            plain.body_html.html().contains("1 &lt; 2 &amp; 3"),
            "{}",
            plain.body_html.html()
        );
    }

    /// A link whose `javascript:` target the sanitiser removed keeps its
    /// text and no attribute (an `<a rel>` without `href` is invalid);
    /// the other links of the same body keep theirs.
    #[test]
    fn refused_link_targets_leave_bare_links() {
        let t = "---\ntitle: x\ndate: 2025-05-22\n---\n[click](javascript:alert(1)) <a href=\"javascript:x\" rel=\"noopener\" title=\"t\">this</a> [ok](https://e.org/)\n";
        let h = md("x.md", t).unwrap().unwrap().body_html.html();
        assert_eq!(
            h,
            "<p><a>click</a> <a>this</a> <a href=\"https://e.org/\" rel=\"noopener noreferrer\">ok</a></p>\n"
        );
    }

    /// Broken front matter gives the file, line and reason.
    #[test]
    fn broken_front_matter() {
        let cases = [
            ("no fence", "title: x\n", 1, "no front matter"),
            (
                "unclosed",
                "---\ntitle: x\ndate: 2025-01-01\n",
                3,
                "never closed",
            ),
            ("no title", "---\ndate: 2025-01-01\n---\nb", 2, "no `title`"),
            ("no date", "---\ntitle: x\n---\nb", 2, "no `date`"),
            (
                "bad date",
                "---\ntitle: x\nsummary: s\ndate: last tuesday\n---\nb",
                4,
                "invalid `date`",
            ),
            (
                "bad yaml",
                "---\ntitle: x\ndate: [unclosed\n---\nb",
                3,
                "front matter",
            ),
            (
                "bad toml",
                "+++\ntitle = \"x\"\ndate = = 1\n+++\nb",
                3,
                "front matter",
            ),
            ("empty", "", 1, "empty file"),
        ];
        for (label, input, line, want) in cases {
            let e = md("m.md", input).unwrap_err();
            assert!(e.reason.contains(want), "{label}: {e}");
            assert_eq!(e.line, line, "{label}: {e}");
        }
    }

    /// Raw HTML the sanitiser's parser would spend quadratic time on is
    /// refused before it runs, however its tags are dressed: formatting
    /// elements reopened by every paragraph (found by the fuzzer, with a
    /// stray quote that once hid the tags after it), `/>` on HTML elements
    /// (which the parser ignores), an element with thousands of
    /// attributes; and a table whose rows the Markdown parser fills out to
    /// a wide header (7 KB made 5 MB of HTML, found by the fuzzer).
    #[test]
    fn hostile_raw_html_refused() {
        let fonts: String = (0..100).map(|i| format!("<p><font size={i}>")).collect();
        let cases = [
            (
                "font soup behind a stray quote",
                format!("<p><focal input\"\n{fonts}"),
                "nest more than 64",
            ),
            (
                "self-closed divs",
                "<div/>".repeat(100),
                "nest more than 64",
            ),
            (
                "attributes",
                format!("<div{}>x</div>", " a".repeat(200)),
                "200 attributes; at most 128",
            ),
            (
                "table rows filled out to a wide header",
                format!(
                    "{}|\n{}|\n{}",
                    "|a".repeat(500),
                    "|-".repeat(500),
                    "|x|\n".repeat(500)
                ),
                "tables have more than",
            ),
        ];
        for (label, body, want) in cases {
            let e = md(
                "x.md",
                &format!("---\ntitle: x\ndate: 2025-05-22\n---\n{body}\n"),
            )
            .unwrap_err();
            assert!(e.reason.contains(want), "{label}: {e}");
        }
    }

    /// `author` and `authors` each take a name or a list; together they
    /// give every name once, in order, the first as `author`.
    #[test]
    fn one_author_or_several() {
        let cases = [
            ("author: Ann\n", vec!["Ann"]),
            ("authors: [Ann, Bob]\n", vec!["Ann", "Bob"]),
            (
                "author: [Ann]\nauthors: [Ann, Bob, \" \"]\n",
                vec!["Ann", "Bob"],
            ),
            ("authors: Cy\n", vec!["Cy"]),
            ("", vec![]),
        ];
        for (front, want) in cases {
            let a = md(
                "x.md",
                &format!("---\ntitle: x\ndate: 2025-05-22\n{front}---\nb"),
            )
            .unwrap()
            .unwrap();
            let got: Vec<&str> = a
                .author
                .iter()
                .chain(&a.more_authors)
                .map(String::as_str)
                .collect();
            assert_eq!(got, want, "{front}");
        }
    }

    /// The picture is front matter `image` (a relative one is also a
    /// reference to a file beside the article, and it is hashed), else
    /// the body's first image (not hashed again: the body is).
    #[test]
    fn picture_from_front_matter_or_body() {
        let body = "![a](a.png) ![b](b.png)";
        let plain = md(
            "x.md",
            &format!("---\ntitle: x\ndate: 2025-05-22\n---\n{body}"),
        )
        .unwrap()
        .unwrap();
        let p = plain.picture.as_ref().unwrap();
        assert_eq!((p.src.as_str(), p.from_front_matter), ("a.png", false));
        let with = md(
            "x.md",
            &format!("---\ntitle: x\ndate: 2025-05-22\nimage: cover.jpg\n---\n{body}"),
        )
        .unwrap()
        .unwrap();
        let p = with.picture.as_ref().unwrap();
        assert_eq!((p.src.as_str(), p.from_front_matter), ("cover.jpg", true));
        assert!(with
            .local_refs
            .iter()
            .any(|r| r.url == "cover.jpg" && r.image));
        assert_ne!(with.hash, plain.hash, "a front-matter image is content");
        let far = md(
            "x.md",
            "---\ntitle: x\ndate: 2025-05-22\nimage: https://cdn.example/p.jpg\n---\nb",
        )
        .unwrap()
        .unwrap();
        assert!(far.local_refs.is_empty());
        assert_eq!(far.picture.unwrap().src, "https://cdn.example/p.jpg");
    }

    /// A body-less article is published with a warning.
    #[test]
    fn empty_body_warns() {
        let a = md("x.md", "---\ntitle: x\ndate: 2025-05-22\n---\n")
            .unwrap()
            .unwrap();
        assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
    }

    /// Front matter `id` overrides the generated id; single-string categories work.
    #[test]
    fn id_override_and_single_category() {
        let a = md(
            "x.md",
            "---\ntitle: x\ndate: 2025-05-22\nid: urn:uuid:1234\ncategories: Solo\n---\nb",
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.id, "urn:uuid:1234");
        assert_eq!(a.categories, vec!["Solo"]);
    }
}
