//! The `Article` model: what every later stage knows about one article.
//!
//! Parsers fill in everything that comes from the file; the library then
//! assigns the two fields that depend on history rather than on the file
//! (`id` and `updated`, kept stable by the state file).
//! Uses nothing else of Herald's.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};

/// One published (or publishable) article.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    /// URL segment: `/articles/<slug>/`. Unique across the site.
    pub slug: String,
    /// Stable identifier (RSS `guid`, Atom `id`, JSON Feed `id`). Empty until
    /// the library assigns it, unless the file set one in front matter.
    pub id: String,
    /// Plain-text headline (never markup).
    pub title: String,
    /// The article's own publication time.
    pub published: DateTime<FixedOffset>,
    /// Last real change of content. The parser sets it from front matter
    /// (`updated`) or to `published`; the library moves it when the content
    /// hash changes.
    pub updated: DateTime<FixedOffset>,
    /// True when `updated` came from the file itself (front matter) and must
    /// not be replaced by the library's change tracking.
    pub updated_from_file: bool,
    /// Sections of the site; each gets its own feeds.
    pub categories: Vec<String>,
    /// Free-form tags (JSON Feed `tags`, extra RSS/Atom categories).
    pub tags: Vec<String>,
    /// Plain-text summary for feed readers.
    pub summary: String,
    /// Full body as sanitised HTML (kept compressed; see [`Body`]).
    pub body_html: Body,
    /// Author name, if the file names one (else the site's author applies);
    /// the first of several.
    pub author: Option<String>,
    /// The other authors, after `author`, when the file names several
    /// (front matter `authors`).
    pub more_authors: Vec<String>,
    /// The file this article came from.
    pub source: PathBuf,
    /// Hash of the parsed content (not of the raw bytes): touching a file,
    /// re-saving it with CRLF or moving it leaves this unchanged.
    pub hash: u128,
    /// Problems worth a warning that did not stop publication.
    pub warnings: Vec<String>,
    /// Relative references of the body (`href`, `src`) that may name a
    /// file beside the article (an image of a page bundle, a PDF), in
    /// document order, each once. Derived from the body (so not hashed).
    pub local_refs: Vec<LocalRef>,
    /// The article's picture, for readers that show one: front matter
    /// `image`, else the first image of the body.
    pub picture: Option<Picture>,
}

/// An article's picture (JSON Feed `image`, RSS `enclosure` and
/// `media:content`, Atom `rel="enclosure"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// The image's URL as written (relative to the article, or absolute).
    pub src: String,
    /// From front matter `image` (hashed) rather than the body.
    pub from_front_matter: bool,
    /// Where the library published it, when it is a file beside the
    /// article: route, length in bytes and media type.
    pub published: Option<(std::sync::Arc<str>, u64, &'static str)>,
}

/// A relative reference in an article's body: a file the article links
/// to or shows, if one is there (the library looks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRef {
    /// The reference as written (character references decoded).
    pub url: String,
    /// True for an image (`<img src>`): reported if no file is there.
    pub image: bool,
}

/// A file an article references, as read by the library and published
/// beside the article's permalink.
#[derive(Debug)]
pub struct Media {
    /// The file's bytes (file-backed when large, as feeds are).
    pub bytes: bytes::Bytes,
    /// Media type (with charset for text).
    pub media_type: &'static str,
    /// Worth a gzip twin (text formats, SVG).
    pub compressible: bool,
    /// The file's modification time: its `Last-Modified`.
    pub modified: std::time::SystemTime,
    /// Hash of the bytes.
    pub hash: u128,
}

impl Article {
    /// Gives back the spare capacity of every string: a library holds
    /// every article for as long as Herald runs, and a summary built word
    /// by word keeps about as much slack as text.
    pub fn shrink_to_fit(&mut self) {
        for s in [
            &mut self.slug,
            &mut self.id,
            &mut self.title,
            &mut self.summary,
        ] {
            s.shrink_to_fit();
        }
        self.local_refs.shrink_to_fit();
        for v in [
            &mut self.categories,
            &mut self.tags,
            &mut self.warnings,
            &mut self.more_authors,
        ] {
            v.iter_mut().for_each(String::shrink_to_fit);
            v.shrink_to_fit();
        }
        if let Some(a) = &mut self.author {
            a.shrink_to_fit();
        }
        self.source.shrink_to_fit();
    }

    /// Computes [`Article::hash`] from every field a reader can see except
    /// the slug: the same text under a new file name is the same article
    /// (FORMAT.md §3), which is how renames and moves keep their id.
    pub fn content_hash(&self) -> u128 {
        self.content_hash_with(&self.body_html.html())
    }

    /// [`Article::content_hash`] given the body's HTML, for a parser that
    /// still holds it (saves unpacking what was just packed).
    pub fn content_hash_with(&self, body_html: &str) -> u128 {
        debug_assert_eq!(self.body_html, body_html);
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut field = |s: &str| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field(&self.title);
        field(&self.published.to_rfc3339());
        for c in &self.categories {
            field(c);
        }
        field("\u{0}tags");
        for t in &self.tags {
            field(t);
        }
        field(&self.summary);
        field(body_html);
        field(self.author.as_deref().unwrap_or(""));
        // Only when there are several: an article with no author or one
        // hashes as it always did (a new hash would move its `updated`).
        if !self.more_authors.is_empty() {
            field("\u{0}authors");
            for a in &self.more_authors {
                field(a);
            }
        }
        // Likewise only when set: a front-matter `image` is content; the
        // body's first image is hashed with the body.
        if let Some(p) = self.picture.as_ref().filter(|p| p.from_front_matter) {
            field("\u{0}image");
            field(&p.src);
        }
        h.digest128()
    }

    /// The article's authors in order, or `default` (the site's author)
    /// when it names none: what every entry shows.
    pub fn authors_or<'a>(&'a self, default: &'a str) -> Vec<&'a str> {
        match &self.author {
            None => vec![default],
            Some(first) => std::iter::once(first.as_str())
                .chain(self.more_authors.iter().map(String::as_str))
                .collect(),
        }
    }

    /// Every category and tag once, categories first: what RSS and Atom
    /// list as `<category>` and JSON Feed as `tags`.
    /// Linear in the number of labels (a set of those seen, not a search
    /// of the list for each).
    pub fn labels(&self) -> Vec<&str> {
        let all = self.categories.iter().chain(self.tags.iter());
        let mut seen: rustc_hash::FxHashSet<&str> = rustc_hash::FxHashSet::with_capacity_and_hasher(
            self.categories.len() + self.tags.len(),
            Default::default(),
        );
        all.map(String::as_str).filter(|l| seen.insert(l)).collect()
    }
}

/// An article body: sanitised HTML, kept deflate-compressed in memory.
///
/// A daemon holds every article for as long as it runs, but the full body
/// is needed only when a page or a feed that shows it is rendered; packed,
/// a body takes about a third of the memory. The packed form is a raw
/// deflate stream ended with a sync flush (byte-aligned, not final), so it
/// can be spliced verbatim into the gzip stream of the article's page: the
/// page's gzip twin then costs only its header and footer (see
/// `site::Asset`). Compression uses level 2 (zlib-rs's level 1 "quick"
/// strategy leaves bodies ~25% larger: 9 MB more per 10,000 articles held
/// for the daemon's life, for ~30% more CPU when packing), with state
/// reused per thread.
///
/// The packed bytes of the articles read back from the parse cache leave
/// the heap too: they are moved into unlinked files mapped read-only
/// ([`Body::moved_to`], `library/cache.rs`), so a daemon's resident memory
/// holds only the bodies it has rendered lately, in the page cache.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Body {
    packed: bytes::Bytes,
    len: usize,
    crc: u32,
}

thread_local! {
    static DEFLATE: std::cell::RefCell<flate2::Compress> =
        std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::new(2), false));
    static INFLATE: std::cell::RefCell<flate2::Decompress> =
        std::cell::RefCell::new(flate2::Decompress::new(false));
}

/// Raw-deflates `input` with `compress` (reset first), appending to `out`
/// and ending with a sync flush (`finish == false`) or the final block.
pub(crate) fn deflate_into(
    compress: &mut flate2::Compress,
    input: &[u8],
    out: &mut Vec<u8>,
    finish: bool,
) {
    deflate_after(compress, &[], input, out, finish);
}

/// [`deflate_into`], the compressor primed with `dict` after the reset:
/// the bytes that precede `input` where its output is spliced, so that
/// it may refer back to them.
pub(crate) fn deflate_after(
    compress: &mut flate2::Compress,
    dict: &[u8],
    input: &[u8],
    out: &mut Vec<u8>,
    finish: bool,
) {
    compress.reset();
    if !dict.is_empty() {
        compress
            .set_dictionary(dict)
            .expect("a raw deflate stream takes a dictionary before any input");
    }
    let flush = if finish {
        flate2::FlushCompress::Finish
    } else {
        flate2::FlushCompress::Sync
    };
    loop {
        out.reserve(input.len() / 2 + 1024);
        let done = compress.total_in() as usize;
        let st = compress
            .compress_vec(&input[done..], out, flush)
            .expect("deflating an in-memory buffer cannot fail");
        let all_in = compress.total_in() as usize == input.len();
        // Output space left over means the flush completed.
        if st == flate2::Status::StreamEnd || (!finish && all_in && out.len() < out.capacity()) {
            break;
        }
    }
}

/// Inflates `len` bytes from raw deflate data given in consecutive
/// `parts` (the pieces of one stream), with an inflate state kept per
/// thread: a fresh one is allocated and zeroed each time otherwise.
///
/// # Panics
/// If the parts hold fewer than `len` bytes: only Herald's own deflate
/// output is ever inflated here.
pub(crate) fn inflate_parts(parts: &[&[u8]], len: usize) -> Vec<u8> {
    try_inflate_parts(parts, len).expect("deflate data shorter than its recorded length")
}

/// [`inflate_parts`], or `None` when the parts are not a deflate stream
/// of at least `len` bytes (only `len` are kept: never more allocated).
pub(crate) fn try_inflate_parts(parts: &[&[u8]], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    if len == 0 {
        return Some(out);
    }
    INFLATE.with_borrow_mut(|d| {
        d.reset(false);
        for part in parts {
            let start = d.total_in();
            while out.len() < len && ((d.total_in() - start) as usize) < part.len() {
                let done = (d.total_in() - start) as usize;
                let before = (out.len(), d.total_in());
                d.decompress_vec(&part[done..], &mut out, flate2::FlushDecompress::Sync)
                    .ok()?;
                if (out.len(), d.total_in()) == before {
                    return None;
                }
            }
        }
        Some(())
    })?;
    (out.len() == len).then_some(out)
}

impl Body {
    /// Packs `html`.
    pub fn new(html: &str) -> Body {
        if html.is_empty() {
            return Body::default();
        }
        let mut out = Vec::with_capacity(html.len() / 2 + 64);
        DEFLATE.with_borrow_mut(|c| deflate_into(c, html.as_bytes(), &mut out, false));
        let mut crc = crc32fast::Hasher::new();
        crc.update(html.as_bytes());
        Body {
            packed: bytes::Bytes::from(out.into_boxed_slice()),
            len: html.len(),
            crc: crc.finalize(),
        }
    }

    /// A body from its parts as [`Body::deflated`], [`Body::len`] and
    /// [`Body::crc`] gave them (read back from the parse cache, whose
    /// records carry a CRC-32 of all their bytes). Not inflated here: at
    /// start that was a fifth of the CPU of reading the cache (100,000
    /// bodies). [`Body::html`] checks length, CRC and UTF-8 whenever it
    /// inflates, and a body that fails is published empty with an error
    /// logged, never a panic. `None` for parts that cannot be a body (a
    /// length with no bytes, or bytes with none).
    pub(crate) fn from_packed(packed: bytes::Bytes, len: usize, crc: u32) -> Option<Body> {
        if len == 0 {
            return (packed.is_empty() && crc == 0).then(Body::default);
        }
        // Every packed body ends with a sync flush's empty stored block.
        (packed.ends_with(&[0, 0, 0xFF, 0xFF])).then_some(Body { packed, len, crc })
    }

    /// The same body with its packed bytes now read from `packed` (the
    /// same bytes, elsewhere: an unlinked mapped file, see
    /// `library/cache.rs`); the old copy is freed with its last user.
    pub(crate) fn moved_to(&mut self, packed: bytes::Bytes) {
        // Not compared in release builds: reading the new copy would bring
        // every page of it into memory, which is what the move avoids.
        debug_assert_eq!(packed, self.packed);
        self.packed = packed;
    }

    /// The HTML. A body parked in a mapped file (see [`Body::moved_to`])
    /// is read from the file (`pread`), not through the mapping, so that
    /// rendering it leaves no pages of it in the daemon's memory.
    pub fn html(&self) -> String {
        let copy;
        let packed: &[u8] = if crate::sendfile::lookup(&self.packed).is_some() {
            let mut v = Vec::with_capacity(self.packed.len());
            match std::io::Read::read_to_end(&mut crate::sendfile::reader(&self.packed), &mut v) {
                Ok(_) => {
                    copy = v;
                    &copy
                }
                // Through the mapping after all: the same bytes.
                Err(_) => &self.packed,
            }
        } else {
            &self.packed
        };
        let html = try_inflate_parts(&[packed], self.len)
            .filter(|h| crc32fast::hash(h) == self.crc)
            .and_then(|h| String::from_utf8(h).ok());
        html.unwrap_or_else(|| {
            tracing::error!(
                crc = self.crc,
                len = self.len,
                "an article body read back from the parse cache does not unpack to what its record claims; \
                 it is published empty until its file changes (delete articles.cache in state_dir to parse every file again)"
            );
            String::new()
        })
    }

    /// The packed form: raw deflate blocks ending in a sync flush.
    pub fn deflated(&self) -> &[u8] {
        &self.packed
    }

    /// CRC-32 (gzip's) of the HTML.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Length of the HTML in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an article without body text.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held in memory.
    pub fn packed_len(&self) -> usize {
        self.packed.len()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.html(), f)
    }
}

impl PartialEq<&str> for Body {
    fn eq(&self, other: &&str) -> bool {
        self.len == other.len() && self.html() == *other
    }
}

/// Longest slug, in bytes of its percent-encoded form: a slug is the name
/// of a directory under `feeds/`, and file systems allow 255 bytes.
pub const MAX_SLUG_BYTES: usize = 240;

/// Folds a name into a URL slug: lower-case, every run of characters that
/// are not ASCII letters or digits becomes one `-`, no `-` at either end.
/// Non-ASCII letters are kept as they are (lower-cased) so that titles in
/// other scripts still give readable, distinct slugs. A slug is cut at a
/// character boundary where its percent-encoded form would pass
/// [`MAX_SLUG_BYTES`] (a non-ASCII byte is encoded in three).
pub fn slugify(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_SLUG_BYTES));
    let mut encoded = 0;
    let mut dash = false;
    for c in name.chars() {
        if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                let cost = if l.is_ascii() { 1 } else { 3 * l.len_utf8() } + usize::from(dash);
                if encoded + cost > MAX_SLUG_BYTES {
                    return out;
                }
                if dash && !out.is_empty() {
                    out.push('-');
                }
                dash = false;
                encoded += cost;
                out.push(l);
            }
        } else {
            dash = !out.is_empty();
        }
    }
    out
}

/// Percent-encodes a path segment: every byte but ASCII letters, digits
/// and `-._~` (RFC 3986 unreserved) as `%XX`, upper-case hex. Slugs may
/// hold non-ASCII letters; encoded, they fit in a URL path and in a `tag:`
/// URI (RFC 4151 allows only URI characters). An ASCII slug is its own
/// encoding.
pub fn encode_segment(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The slug of a file name (without extension): [`slugify`] after dropping
/// a leading `YYYY-MM-DD-` date.
pub fn slug_from_stem(stem: &str) -> String {
    let b = stem.as_bytes();
    let dated = b.len() > 11
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && b[10] == b'-';
    slugify(if dated { &stem[11..] } else { stem })
}

/// Removes the characters XML 1.0 forbids (C0 controls other than tab,
/// newline and carriage return; U+FFFE, U+FFFF; lone surrogates cannot occur
/// in a Rust string). Neither the `rss` nor the `atom_syndication` crate
/// strips them, and one such character makes a whole feed unparseable.
pub fn xml_clean(s: &str) -> std::borrow::Cow<'_, str> {
    fn bad(c: char) -> bool {
        matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
    }
    // Every forbidden character starts with a byte below 0x20 or with
    // 0xEF (U+FFFE and U+FFFF are EF BF BE / EF BF BF): a byte scan, which
    // the compiler vectorises, clears nearly all text at once.
    let suspect = |b: &u8| (*b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || *b == 0xEF;
    let flagged = s
        .as_bytes()
        .chunks(64)
        .any(|c| c.iter().fold(false, |acc, b| acc | suspect(b)));
    if flagged && s.chars().any(bad) {
        std::borrow::Cow::Owned(s.chars().filter(|&c| !bad(c)).collect())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Shortens plain text to at most `max` characters at a word boundary,
/// adding `…` when it cut.
pub fn truncate_words(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    let at = cut.rfind(char::is_whitespace).filter(|&i| i > max / 2);
    let mut s = match at {
        Some(i) => cut[..i].trim_end().to_string(),
        None => cut,
    };
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slugs follow FORMAT.md §3: lower case, non-alphanumerics folded to `-`,
    /// leading date dropped.
    #[test]
    fn slug_rules() {
        let cases = [
            (
                "dated name",
                "2025-05-22-thousand-for-thousand",
                "thousand-for-thousand",
            ),
            ("plain", "Hello World", "hello-world"),
            ("punctuation runs", "a  --__b!!c", "a-b-c"),
            ("edges", "--Edge Case--", "edge-case"),
            ("date only is kept", "2025-05-22", "2025-05-22"),
            ("not a date", "2025-5-22-x", "2025-5-22-x"),
            ("unicode letters", "Über Straße", "über-straße"),
        ];
        for (label, input, want) in cases {
            assert_eq!(slug_from_stem(input), want, "{label}");
        }
        for (label, name) in [("ascii", "word "), ("cyrillic", "київ ")] {
            let slug = slugify(&name.repeat(100));
            let encoded = encode_segment(&slug).len();
            assert!(
                (MAX_SLUG_BYTES - 6..=MAX_SLUG_BYTES).contains(&encoded) && !slug.ends_with('-'),
                "{label}: {encoded} {slug}"
            );
        }
    }

    /// Characters XML 1.0 forbids are removed, everything else kept.
    #[test]
    fn xml_clean_strips_forbidden() {
        assert_eq!(xml_clean("a\u{1}b\u{8}c\td\ne\u{FFFF}"), "abc\td\ne");
        assert!(matches!(
            xml_clean("fine & <ok>"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    /// A packed body gives back exactly its HTML, large or empty, and is
    /// smaller than the HTML it holds.
    #[test]
    fn body_round_trip() {
        let big = "<p>Some paragraph text, repeated. ü</p>\n".repeat(2000);
        for html in ["", "<p>x</p>", big.as_str()] {
            let b = Body::new(html);
            assert_eq!(b.html(), html);
            assert_eq!(b.len(), html.len());
        }
        assert!(Body::new(&big).packed_len() < big.len() / 4);
    }

    /// Truncation cuts at a word boundary and marks the cut.
    #[test]
    fn truncation() {
        assert_eq!(truncate_words("short", 10), "short");
        assert_eq!(truncate_words("one two three four", 12), "one two…");
    }
}
