//! The scraped news column (FORMAT.md §1): date line, category, optional
//! views line, title, `image` placeholders, body paragraphs, then site
//! chrome (`Recommend` / `Latest`) that is cut off.

use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::guard::{excerpt, showable};
use super::{lines, localize, ParseCtx, ParseError};
use crate::article::{truncate_words, xml_clean, Article};

/// Longest summary taken from the first paragraph, in characters.
const SUMMARY_CHARS: usize = 300;

/// A run of non-blank lines, joined with single spaces.
struct Block {
    line: usize,
    text: String,
}

pub(super) fn parse(path: &Path, text: &str, ctx: &ParseCtx) -> Result<Article, ParseError> {
    let blocks = blocks(text);
    let mut it = blocks.into_iter().peekable();

    let date = it
        .next()
        .ok_or_else(|| ParseError::new(path, 1, "empty file: expected a date line"))?;
    let naive =
        parse_column_date(&date.text).map_err(|why| ParseError::new(path, date.line, why))?;
    let published = localize(naive, ctx.tz);
    showable(&published, ctx.tz).map_err(|why| ParseError::new(path, date.line, why))?;

    let category = it.next().ok_or_else(|| {
        ParseError::new(
            path,
            date.line,
            "file ends after the date line: expected a category",
        )
    })?;
    if is_views(&category.text) {
        return Err(ParseError::new(
            path,
            category.line,
            "views line where the category should be",
        ));
    }
    let mut after_header = category.line;
    if let Some(b) = it.next_if(|b| is_views(&b.text)) {
        after_header = b.line;
    }
    let title = it.next().filter(|b| !is_chrome(&b.text)).ok_or_else(|| {
        ParseError::new(path, after_header, "no title: file ends after the header")
    })?;
    if title.text == "image" {
        return Err(ParseError::new(
            path,
            title.line,
            "no title: `image` placeholder where the title should be",
        ));
    }

    let mut paragraphs = Vec::new();
    for b in it {
        if is_chrome(&b.text) {
            break;
        }
        if b.text != "image" {
            paragraphs.push(b.text);
        }
    }

    let mut warnings = Vec::new();
    if paragraphs.is_empty() {
        warnings.push(format!(
            "{}:{}: article has a title but no body paragraphs",
            path.display(),
            title.line
        ));
    }
    let mut body_html = String::with_capacity(paragraphs.iter().map(|p| p.len() + 8).sum());
    for p in &paragraphs {
        body_html.push_str("<p>");
        crate::escape::push_html(&mut body_html, p);
        body_html.push_str("</p>\n");
    }
    let summary = paragraphs
        .first()
        .map(|p| truncate_words(p, SUMMARY_CHARS))
        .unwrap_or_default();

    let mut a = Article {
        slug: String::new(),
        id: String::new(),
        title: title.text,
        published,
        updated: published,
        updated_from_file: false,
        categories: vec![category.text],
        tags: Vec::new(),
        summary,
        body_html: crate::article::Body::new(&body_html),
        author: None,
        more_authors: Vec::new(),
        local_refs: Vec::new(),
        picture: None,
        source: path.to_path_buf(),
        hash: 0,
        warnings,
    };
    a.hash = a.content_hash_with(&body_html);
    Ok(a)
}

/// Groups the text into blocks of non-blank lines. A line that is exactly
/// `Recommend`, `Latest` or `image` is always a block of its own, so chrome
/// and placeholders are found even without a blank line around them.
fn blocks(text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut open = false;
    for (n, raw) in lines(text) {
        let line = xml_clean(raw.trim());
        let line = line.trim();
        if line.is_empty() {
            open = false;
            continue;
        }
        let alone = matches!(line, "Recommend" | "Latest" | "image");
        match out.last_mut() {
            Some(b)
                if open
                    && !alone
                    && !matches!(b.text.as_str(), "Recommend" | "Latest" | "image") =>
            {
                b.text.push(' ');
                b.text.push_str(line);
            }
            _ => out.push(Block {
                line: n,
                text: line.to_string(),
            }),
        }
        open = !alone;
    }
    out
}

fn is_chrome(s: &str) -> bool {
    s == "Recommend" || s == "Latest"
}

/// `• views:97`, `views: 1,234`: optional bullet, digits with separators.
fn is_views(s: &str) -> bool {
    let s = s.trim_start_matches(['•', '·', '*', '-', ' ', '\t']);
    let Some(rest) = s.strip_prefix("views") else {
        return false;
    };
    let rest = rest.trim_start().strip_prefix(':').unwrap_or(rest).trim();
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '.' || c == ' ')
}

/// Parses Django's default `DATETIME_FORMAT` (`N j, Y, P`): AP-style month
/// (`Jan.` … `Sept.` … `Dec.`, full names and three-letter forms are also
/// taken), day without leading zero, four-digit year, then a time such as
/// `6:40 a.m.`, `9 a.m.`, `noon` or `midnight`. A date without a time means
/// midnight.
///
/// # Errors
/// A sentence saying what part of the line is wrong.
pub fn parse_column_date(s: &str) -> Result<NaiveDateTime, String> {
    let bad = |what: &str| {
        format!(
            "invalid date line {}: {what} (expected e.g. \"May 22, 2025, 6:40 a.m.\")",
            excerpt(s)
        )
    };
    let mut parts = s.splitn(3, ',').map(str::trim);
    let month_day = parts.next().unwrap_or("");
    let year = parts.next().ok_or_else(|| bad("no year"))?;
    let time = parts.next();

    let (month, day) = month_day
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad("no day"))?;
    let month = month_number(month).ok_or_else(|| bad("unknown month"))?;
    let day: u32 = digits(day.trim()).ok_or_else(|| bad("day is not a number"))?;
    let year: i32 = digits(year).ok_or_else(|| bad("year is not a number"))?;
    if !(1000..=9999).contains(&year) {
        return Err(bad("year out of range"));
    }
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or_else(|| bad("no such day"))?;
    let time = match time {
        None => NaiveTime::MIN,
        Some(t) => parse_time(t).ok_or_else(|| bad("unreadable time"))?,
    };
    Ok(date.and_time(time))
}

fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month_number(m: &str) -> Option<u32> {
    let m = m.trim_end_matches('.').to_ascii_lowercase();
    const NAMES: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    if m.len() < 3 {
        return None;
    }
    let n = NAMES
        .iter()
        .position(|full| *full == m || (m.len() <= 4 && full.starts_with(&m)))?;
    Some(n as u32 + 1)
}

/// `6:40 a.m.`, `11 p.m.`, `noon`, `midnight` (also `am`/`AM` spellings).
fn parse_time(t: &str) -> Option<NaiveTime> {
    let lower = t.trim().to_ascii_lowercase();
    match lower.as_str() {
        "noon" => return NaiveTime::from_hms_opt(12, 0, 0),
        "midnight" => return Some(NaiveTime::MIN),
        _ => {}
    }
    let compact: String = lower
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '.')
        .collect();
    let (clock, pm) = if let Some(c) = compact.strip_suffix("am") {
        (c, false)
    } else if let Some(c) = compact.strip_suffix("pm") {
        (c, true)
    } else {
        return None;
    };
    let (h, m) = match clock.split_once(':') {
        Some((h, m)) if m.len() == 2 => (digits::<u32>(h)?, digits::<u32>(m)?),
        Some(_) => return None,
        None => (digits::<u32>(clock)?, 0),
    };
    if !(1..=12).contains(&h) {
        return None;
    }
    let h24 = match (h, pm) {
        (12, false) => 0,
        (12, true) => 12,
        (h, false) => h,
        (h, true) => h + 12,
    };
    NaiveTime::from_hms_opt(h24, m, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse as parse_any, ParseCtx};

    fn ctx() -> ParseCtx {
        ParseCtx::new(chrono_tz::UTC)
    }

    fn at(s: &str) -> String {
        parse_column_date(s)
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|e| e)
    }

    /// Every Django date form FORMAT.md lists parses to the right instant.
    #[test]
    fn every_date_form() {
        let cases = [
            ("sample", "May 22, 2025, 6:40 a.m.", "2025-05-22 06:40"),
            ("Jan.", "Jan. 3, 2024, 11:05 p.m.", "2024-01-03 23:05"),
            ("Feb.", "Feb. 29, 2024, 1:15 p.m.", "2024-02-29 13:15"),
            ("March", "March 1, 2023, 9 a.m.", "2023-03-01 09:00"),
            ("April", "April 30, 2023, 10 p.m.", "2023-04-30 22:00"),
            ("June", "June 5, 2025, noon", "2025-06-05 12:00"),
            ("July", "July 4, 2025, midnight", "2025-07-04 00:00"),
            ("Aug.", "Aug. 9, 2025, 12:05 a.m.", "2025-08-09 00:05"),
            ("Sept.", "Sept. 11, 2025, 12:30 p.m.", "2025-09-11 12:30"),
            ("Oct.", "Oct. 12, 2025, 7:07 a.m.", "2025-10-12 07:07"),
            ("Nov.", "Nov. 27, 2026, 3 p.m.", "2026-11-27 15:00"),
            ("Dec.", "Dec. 31, 1999, 11:59 p.m.", "1999-12-31 23:59"),
            (
                "full month name",
                "September 1, 2025, 8 a.m.",
                "2025-09-01 08:00",
            ),
            ("three-letter", "Sep 1, 2025, 8 a.m.", "2025-09-01 08:00"),
            ("no time", "May 22, 2025", "2025-05-22 00:00"),
            (
                "12 a.m. is midnight",
                "May 1, 2025, 12 a.m.",
                "2025-05-01 00:00",
            ),
            (
                "12 p.m. is noon",
                "May 1, 2025, 12 p.m.",
                "2025-05-01 12:00",
            ),
            ("tight spacing", "May 1,2025,6:40a.m.", "2025-05-01 06:40"),
        ];
        for (label, input, want) in cases {
            assert_eq!(at(input), want, "{label}: {input}");
        }
    }

    /// Garbage dates are errors that say what is wrong.
    #[test]
    fn bad_dates() {
        let cases = [
            ("word", "yesterday", "no year"),
            ("month", "Foo 22, 2025, 6:40 a.m.", "unknown month"),
            ("day 32", "May 32, 2025, 6:40 a.m.", "no such day"),
            ("Feb 30", "Feb. 30, 2025", "no such day"),
            ("hour 13", "May 2, 2025, 13 p.m.", "unreadable time"),
            ("minutes 60", "May 2, 2025, 6:60 a.m.", "unreadable time"),
            ("no meridiem", "May 2, 2025, 6:40", "unreadable time"),
            ("year", "May 2, 25, noon", "year out of range"),
            ("sign", "May -2, 2025, noon", "day is not a number"),
        ];
        for (label, input, want) in cases {
            let e = parse_column_date(input).unwrap_err();
            assert!(e.contains(want), "{label}: {e}");
        }
    }

    fn sample() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/content/2025-05-22-thousand-for-thousand.txt"
        ))
        .expect("sample column is shipped in content/")
    }

    /// The real sample column parses into the fields FORMAT.md describes,
    /// with the Recommend teaser cut off.
    #[test]
    fn real_sample() {
        let a = parse_any(
            Path::new("2025-05-22-thousand-for-thousand.txt"),
            &sample(),
            &ctx(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.slug, "thousand-for-thousand");
        assert_eq!(a.published.to_rfc3339(), "2025-05-22T06:40:00+00:00");
        assert_eq!(a.categories, vec!["Columns and Opinions"]);
        assert!(
            a.title
                .starts_with("What impact will the \"thousand people"),
            "{}",
            a.title
        );
        assert_eq!(a.body_html.html().matches("<p>").count(), 5);
        assert!(a.body_html.html().starts_with("<p>On May 16 local time"));
        assert!(a
            .body_html
            .html()
            .contains("&quot;Thousand for Thousand&quot;"));
        assert!(
            !a.body_html.html().contains("Sharp Turn"),
            "Recommend teaser leaked into the body"
        );
        assert!(!a.body_html.html().contains("views"));
        assert!(!a.body_html.html().contains("<p>image</p>"));
        assert!(a.summary.starts_with("On May 16 local time") && a.summary.ends_with('…'));
        assert!(a.warnings.is_empty());
    }

    /// BOM, CRLF, trailing white space and tabs do not change the article.
    #[test]
    fn bom_crlf_whitespace() {
        let plain = sample();
        let messy: String = format!("\u{feff}{}", plain.replace('\n', " \t\r\n"));
        let p = Path::new("x.txt");
        let a = parse_any(p, &plain, &ctx()).unwrap().unwrap();
        let b = parse_any(p, &messy, &ctx()).unwrap().unwrap();
        assert_eq!(a, b);
    }

    fn col(body: &str) -> Result<Article, ParseError> {
        parse_any(Path::new("c.txt"), body, &ctx()).map(|a| a.expect("columns are never drafts"))
    }

    /// Chrome is cut only at a line that is exactly the word; paragraphs that
    /// begin with it stay.
    #[test]
    fn chrome_only_exact_line() {
        let a = col("May 1, 2025, noon\n\nNews\n\nTitle\n\nLatest figures show growth.\n\nRecommend me a book.\n\nRecommend\n\nTeaser\n\nLatest").unwrap();
        assert_eq!(
            a.body_html,
            "<p>Latest figures show growth.</p>\n<p>Recommend me a book.</p>\n"
        );
        let b = col("May 1, 2025, noon\n\nNews\n\nTitle\n\nBody\nLatest\nmore").unwrap();
        assert_eq!(
            b.body_html, "<p>Body</p>\n",
            "chrome line inside a block still cuts"
        );
    }

    /// Views line variants are recognised and never become the title.
    #[test]
    fn views_line_variants() {
        for v in ["  • views:97", "• views: 1,234", "views:0", "\t•views:12"] {
            let a = col(&format!(
                "May 1, 2025, noon\n\nNews\n\n{v}\n\nThe Title\n\nBody"
            ))
            .unwrap();
            assert_eq!(a.title, "The Title", "{v:?}");
        }
        let a = col("May 1, 2025, noon\n\nNews\n\nThe Title\n\nBody").unwrap();
        assert_eq!(a.title, "The Title", "views line is optional");
    }

    /// Any number of image placeholders is skipped, also between paragraphs.
    #[test]
    fn image_placeholders() {
        let a =
            col("May 1, 2025, noon\n\nNews\n\nT\n\nimage\n\nimage\nimage\n\nOne\n\nimage\n\nTwo")
                .unwrap();
        assert_eq!(a.body_html, "<p>One</p>\n<p>Two</p>\n");
    }

    /// A title without body is published with a warning, and the Recommend
    /// teaser after it never becomes the body.
    #[test]
    fn no_body_warns() {
        let a = col("May 1, 2025, noon\n\nNews\n\nLonely title\n\nRecommend\n\nTeaser title\n\nTeaser text\n\nLatest").unwrap();
        assert_eq!(a.title, "Lonely title");
        assert_eq!(a.body_html, "");
        assert_eq!(a.warnings.len(), 1);
        assert!(
            a.warnings[0].contains("c.txt:5") && a.warnings[0].contains("no body"),
            "{:?}",
            a.warnings
        );
    }

    /// Text is text: markup characters are escaped, forbidden XML characters dropped.
    #[test]
    fn text_is_text() {
        let a = col("May 1, 2025, noon\n\nA & B\n\n<script>alert(1)</script> & \"q\"\n\nx ]]> y <b>\u{1}\u{7}z").unwrap();
        assert_eq!(a.title, "<script>alert(1)</script> & \"q\"");
        assert_eq!(a.categories, vec!["A & B"]);
        assert_eq!(a.body_html, "<p>x ]]&gt; y &lt;b&gt;z</p>\n");
    }

    /// Broken files give one error naming the line and the reason.
    #[test]
    fn broken_files() {
        let cases = [
            ("empty", "", 1, "empty file"),
            ("only blanks", "\n\n  \n", 1, "empty file"),
            (
                "garbage date",
                "hello world\n\nNews\n\nT\n\nB",
                1,
                "invalid date",
            ),
            (
                "date after blank lines",
                "\n\nMay 40, 2025\n\nNews\n\nT",
                3,
                "no such day",
            ),
            (
                "no category",
                "May 1, 2025, noon\n",
                1,
                "expected a category",
            ),
            (
                "no title",
                "May 1, 2025, noon\n\nNews\n\n• views:3\n",
                5,
                "no title",
            ),
            (
                "chrome as title",
                "May 1, 2025, noon\n\nNews\n\nLatest",
                3,
                "no title",
            ),
        ];
        for (label, input, line, want) in cases {
            let e = col(input).unwrap_err();
            assert_eq!(e.line, line, "{label}: {e}");
            assert!(e.reason.contains(want), "{label}: {e}");
            assert!(
                e.to_string().starts_with(&format!("c.txt:{line}: ")),
                "{label}: {e}"
            );
        }
    }

    /// The time zone of the config applies to the date line.
    #[test]
    fn timezone_applies() {
        let ctx = ParseCtx::new("Asia/Shanghai".parse().unwrap());
        let a = parse_any(
            Path::new("c.txt"),
            "May 22, 2025, 6:40 a.m.\n\nN\n\nT\n\nB",
            &ctx,
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.published.to_rfc3339(), "2025-05-22T06:40:00+08:00");
    }
}
