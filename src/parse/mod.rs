//! Parsers: one file's text → one [`Article`]. Pure: no I/O, no clock.
//!
//! `column.rs` reads the scraped news column (`.txt`), `markdown.rs` reads
//! Markdown with front matter (`.md`). [`parse`] picks by extension;
//! [`kind_of`] says which files are articles at all. Uses `article`,
//! `links` and `escape`.

mod column;
mod guard;
mod markdown;

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use crate::article::{slug_from_stem, Article};

pub use column::parse_column_date;
pub use guard::{excerpt, showable};
pub use markdown::sanitiser_warned;

/// What one article file may claim. Each bound keeps the work of reading,
/// rendering and serving one file linear in its size and small in
/// absolute terms; README "Limits" lists them with what happens when one
/// is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest article file read, in bytes (enforced by the reader, not
    /// the parsers: a larger file is never read past this).
    pub max_file_bytes: u64,
    /// Largest front matter, in bytes.
    pub max_front_matter_bytes: usize,
    /// Most categories and tags one article may list, together.
    pub max_labels: usize,
    /// Deepest nesting of front-matter lists and tables, Markdown blocks
    /// and inlines, and raw HTML elements.
    pub max_nesting: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 2 * 1024 * 1024,
            max_front_matter_bytes: 64 * 1024,
            max_labels: 50,
            max_nesting: 64,
        }
    }
}

/// Longest category or tag name, in characters: a name becomes a path
/// segment of its feeds, and a file name has at most 255 bytes.
pub const MAX_LABEL_CHARS: usize = 100;

/// What the parsers need from outside the file.
#[derive(Debug, Clone, Copy)]
pub struct ParseCtx {
    /// Time zone of dates that carry no offset (the site's `timezone`).
    pub tz: Tz,
    /// What one file may claim.
    pub limits: Limits,
}

impl ParseCtx {
    /// A context for `tz` with the default limits.
    pub fn new(tz: Tz) -> ParseCtx {
        ParseCtx {
            tz,
            limits: Limits::default(),
        }
    }
}

/// The file formats Herald reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The scraped news column (FORMAT.md §1).
    Column,
    /// Markdown with YAML or TOML front matter (FORMAT.md §2).
    Markdown,
}

/// Which article format a path holds, or `None` for files Herald ignores
/// without a word: unknown extensions, dot-files, editor swap, backup and
/// lock files (`.x.swp`, `x~`, `#x#`, `.#x`).
pub fn kind_of(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') || name.starts_with('#') || name.ends_with('~') {
        return None;
    }
    match path.extension()?.to_str()? {
        "txt" => Some(Kind::Column),
        "md" | "markdown" => Some(Kind::Markdown),
        _ => None,
    }
}

/// True for paths inside a hidden directory (`.git/`, `.cache/` …) below
/// `root`: those subtrees are never content.
pub fn in_hidden_dir(root: &Path, path: &Path) -> bool {
    path.strip_prefix(root)
        .ok()
        .and_then(Path::parent)
        .is_some_and(|p| {
            p.components()
                .any(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with('.')))
        })
}

/// A file that cannot be published, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", path.display())]
pub struct ParseError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line the problem is on (1 for whole-file problems).
    pub line: usize,
    /// What is wrong, in words an editor understands.
    pub reason: String,
}

/// Longest reason kept in a [`ParseError`], in characters: messages from
/// the YAML and TOML parsers may quote a value, and a log line never
/// carries more than a short excerpt of a file.
const MAX_REASON_CHARS: usize = 240;

impl ParseError {
    pub(crate) fn new(path: &Path, line: usize, reason: impl fmt::Display) -> Self {
        let mut reason = reason.to_string();
        if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
            reason.truncate(cut);
            reason.push('…');
        }
        ParseError {
            path: path.to_path_buf(),
            line,
            reason,
        }
    }
}

/// Checks raw bytes are text: valid UTF-8 without NUL bytes. Errors name the
/// line of the first offending byte.
///
/// # Errors
/// Binary content or invalid UTF-8.
pub fn decode<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, ParseError> {
    let line_of = |at: usize| bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    if let Some(at) = memchr_nul(bytes) {
        return Err(ParseError::new(
            path,
            line_of(at),
            "binary file (NUL byte), not an article",
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        ParseError::new(
            path,
            line_of(e.valid_up_to()),
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })
}

fn memchr_nul(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == 0)
}

/// Parses one article file. `Ok(None)` means the file is valid but not to be
/// published (a Markdown draft).
///
/// # Errors
/// A [`ParseError`] naming the file, line and reason.
pub fn parse(path: &Path, text: &str, ctx: &ParseCtx) -> Result<Option<Article>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut article = match kind_of(path) {
        Some(Kind::Column) => column::parse(path, text, ctx).map(Some)?,
        Some(Kind::Markdown) => match markdown::parse(path, text, ctx)? {
            Some(a) => Some(a),
            None => return Ok(None),
        },
        None => {
            return Err(ParseError::new(
                path,
                1,
                "not an article file (unknown extension)",
            ))
        }
    };
    if let Some(a) = article.as_mut() {
        if a.slug.is_empty() {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            // A page bundle (`story/index.md` with its images beside it)
            // is named by its folder, as in Hugo.
            let stem = match stem {
                "index" => path
                    .parent()
                    .and_then(Path::file_name)
                    .and_then(|s| s.to_str())
                    .unwrap_or(stem),
                _ => stem,
            };
            a.slug = slug_from_stem(stem);
        }
        if a.slug.is_empty() {
            a.slug = crate::article::slugify(&a.title);
        }
        if a.slug.is_empty() {
            return Err(ParseError::new(
                path,
                1,
                "cannot make a slug from the file name or title",
            ));
        }
        a.shrink_to_fit();
    }
    Ok(article)
}

/// Resolves a local wall-clock time in `tz`. In the hour a DST change
/// repeats, the earlier instant wins; in the hour it skips, the time is read
/// as if the clock had not jumped yet (one hour later in the new offset),
/// which is what a person writing that time meant.
pub(crate) fn localize(naive: NaiveDateTime, tz: Tz) -> DateTime<FixedOffset> {
    let resolved = match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(a, _) => a,
        LocalResult::None => {
            let later = naive
                .checked_add_signed(chrono::Duration::hours(1))
                .map(|l| tz.from_local_datetime(&l));
            match later {
                Some(LocalResult::Single(t) | LocalResult::Ambiguous(t, _)) => t,
                _ => tz.from_utc_datetime(&naive),
            }
        }
    };
    resolved.fixed_offset()
}

/// Splits text into lines with their 1-based numbers, without line endings
/// or trailing white space (handles LF and CRLF).
pub(crate) fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only `.txt` and `.md` files are articles; editor litter is ignored.
    #[test]
    fn which_files_are_articles() {
        let cases = [
            ("a.txt", Some(Kind::Column)),
            ("dir/b.md", Some(Kind::Markdown)),
            ("c.markdown", Some(Kind::Markdown)),
            (".hidden.txt", None),
            (".a.txt.swp", None),
            ("a.txt~", None),
            ("#a.txt#", None),
            (".#a.txt", None),
            ("a.txt.tmp", None),
            ("4913", None),
            ("image.png", None),
            ("README", None),
        ];
        for (p, want) in cases {
            assert_eq!(kind_of(Path::new(p)), want, "{p}");
        }
    }

    /// Files below dot-directories are never content.
    #[test]
    fn hidden_directories() {
        let root = Path::new("/c");
        assert!(in_hidden_dir(root, Path::new("/c/.git/x.txt")));
        assert!(in_hidden_dir(root, Path::new("/c/a/.cache/b/x.md")));
        assert!(!in_hidden_dir(root, Path::new("/c/a/x.md")));
        assert!(!in_hidden_dir(root, Path::new("/c/x.md")));
    }

    /// Invalid UTF-8 and binary files are rejected with the right line.
    #[test]
    fn decode_errors_name_the_line() {
        let p = Path::new("x.txt");
        let e = decode(p, b"ok\nok\n\xff\xfe").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("UTF-8"), "{e}");
        let e = decode(p, b"line\n\0\0\0").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("binary"), "{e}");
        assert_eq!(decode(p, "é".as_bytes()).unwrap(), "é");
    }

    /// Both parsers record the content hash of what they parsed, computed
    /// from the HTML they still hold: equal to hashing the packed body,
    /// the formula the state file's hashes were made with.
    #[test]
    fn parsers_record_the_content_hash() {
        let ctx = ParseCtx::new(chrono_tz::UTC);
        let files = [
            (
                "a.txt",
                "May 16, 2025, 9 a.m.\n\nWorld\n\nA title\n\nOne & two.\n\nThree.\n",
            ),
            (
                "b.md",
                "---\ntitle: B\ndate: 2025-05-16T09:00:00Z\n---\nSome *text* & more.\n",
            ),
        ];
        for (name, text) in files {
            let a = parse(Path::new(name), text, &ctx).unwrap().unwrap();
            assert_ne!(a.hash, 0, "{name}");
            assert_eq!(a.hash, a.content_hash(), "{name}");
            let mut b = a.clone();
            b.body_html = crate::article::Body::new("<p>other</p>");
            assert_ne!(b.content_hash(), a.hash, "{name}: the body counts");
        }
    }

    /// The content hash of articles is what earlier versions computed (a
    /// new hash moves `updated` for every article on upgrade): pinned for
    /// the fixtures and for bodies with an author, relative links and
    /// images, raw HTML through the sanitiser, and none of these.
    #[test]
    fn content_hashes_are_pinned() {
        let ctx = ParseCtx::new("Asia/Shanghai".parse().unwrap());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/content");
        let pinned = [
            (
                "2025-05-22-thousand-for-thousand.txt",
                0x58ffda83b49052404c4b2239b3fdf28d_u128,
            ),
            (
                "columns/2024-03-01-march-morning.txt",
                0xb6d6f873812ff4797e3449bb09d94b63,
            ),
            (
                "columns/2025-06-03-title-only.txt",
                0xa46426cab9a409ea6c67fc18c10e0b13,
            ),
            (
                "markdown/2025-05-25-toml-notes.md",
                0xb00935b57eac7d0b939b2e8025292bd7,
            ),
            // Has a footnote: re-pinned when footnotes took GitHub's
            // shape (numbered list at the end, `fn-N` ids), which changed
            // the body readers get, and so its `updated`, once.
            (
                "markdown/ceasefire-talks.md",
                0x5b72fdaf22303624d49d6551612576e7,
            ),
        ];
        for (name, want) in pinned {
            let p = dir.join(name);
            let text = std::fs::read_to_string(&p).unwrap();
            let a = parse(&p, &text, &ctx).unwrap().unwrap();
            assert_eq!(a.hash, want, "{name}: {:032x}", a.hash);
        }
        let texts = [
            (
                "with an author, links, images and raw HTML",
                "---\ntitle: R\ndate: 2025-05-22\nauthor: Ann\n---\n![Chart](chart.png) [notes](../kyiv-notes/) [x](#top) <img src=\"img/a.png\"> [abs](https://e.org/x)\n\n```\n<img src=\"chart.png\">\n```\n",
                0x742fc62714c23c52a2d45ec1961c2bcf_u128,
            ),
            (
                "plain",
                "---\ntitle: N\ndate: 2025-05-22\n---\nSome *text* & more.\n",
                0x10585698b598438d00686a4da136defe,
            ),
        ];
        for (label, text, want) in texts {
            let a = parse(Path::new("x.md"), text, &ctx).unwrap().unwrap();
            assert_eq!(a.hash, want, "{label}: {:032x}", a.hash);
        }
    }

    /// An `index.md` takes its folder's name as its slug (a page bundle);
    /// front matter `slug` still wins.
    #[test]
    fn page_bundles_are_named_by_their_folder() {
        let ctx = ParseCtx::new(chrono_tz::UTC);
        let text = "---\ntitle: S\ndate: 2025-05-02\n---\nb\n";
        let a = parse(
            Path::new("/c/2025/05/2025-05-02-the-story/index.md"),
            text,
            &ctx,
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.slug, "the-story");
        let named = "---\ntitle: S\ndate: 2025-05-02\nslug: chosen\n---\nb\n";
        let b = parse(Path::new("/c/x/index.md"), named, &ctx)
            .unwrap()
            .unwrap();
        assert_eq!(b.slug, "chosen");
    }

    /// A DST gap and a DST overlap resolve to the documented instants.
    #[test]
    fn localize_dst_edges() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let gap = NaiveDateTime::parse_from_str("2025-03-30 02:30", "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(localize(gap, tz).to_rfc3339(), "2025-03-30T03:30:00+02:00");
        let overlap = NaiveDateTime::parse_from_str("2025-10-26 02:30", "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(
            localize(overlap, tz).to_rfc3339(),
            "2025-10-26T02:30:00+02:00"
        );
    }
}
