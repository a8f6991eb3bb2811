//! `Site`: the immutable snapshot readers are served from — route →
//! [`Asset`] (bytes, gzip twin, validators, media type; for feeds, the
//! index and OPML a brotli form made after publication), built from the
//! renderers' output. [`SiteBuilder`] re-renders only routes whose inputs
//! changed and keeps `Last-Modified` moving forward per route;
//! [`write_to`] mirrors a snapshot under the output directory, each file via
//! temp file + rename, only when its bytes changed, each with a `.gz` twin.
//! Besides the rendered documents, a snapshot holds the redirect pages at
//! renamed articles' old permalinks, the permalinks of articles gone
//! (410), and the files articles reference (`media.rs`).
//! Uses `render` and `article`.

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rayon::prelude::*;
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

use crate::article::Article;
use crate::render::{self, Feed, Settings};

mod media;
mod mirror;

pub use mirror::{
    atomic_write, output_fingerprint, remove_routes, write_to, WriteError, WriteReport,
};
use mirror::{gz_path, same_gzip_on_disk, write_asset};

/// One servable document, with everything a response needs precomputed.
#[derive(Debug)]
pub struct Asset {
    /// How the document and its gzip form are held.
    form: Form,
    /// Length of the document in bytes.
    pub len: usize,
    /// Length of the gzip form in bytes.
    pub gzip_len: usize,
    /// Never moves backwards for a route while Herald runs, nor across
    /// restarts (seeded from the files' mtimes).
    pub last_modified: SystemTime,
    /// 128-bit hash behind the `ETag` of the document.
    etag: u128,
    /// 128-bit hash behind the `ETag` of the gzip form.
    etag_gzip: u128,
    /// Response headers ready to copy, for the documents fetched over and
    /// over (feeds, the index, OPML): built once per publish, so a
    /// response clones a header map instead of formatting and inserting
    /// each header. Article pages, one per article and rarely fetched,
    /// build theirs per request and save ~2 KB each.
    ready: Option<Box<Ready>>,
    /// Media type with charset.
    pub content_type: &'static str,
    /// True for feeds: served with `Access-Control-Allow-Origin: *`.
    pub cors: bool,
    /// For feeds with hubs: the `Link` header naming them and the feed
    /// itself (W3C WebSub §4), on every response, 304s included.
    pub link: Option<http::HeaderValue>,
    /// True for a published file a browser could run script in when
    /// opened by itself (SVG): served with a policy that sandboxes it.
    sandboxed: bool,
    /// The brotli form, made after publication (see [`Asset::make_br`]):
    /// empty until then, `None` when brotli is not worth it for this
    /// document.
    br: std::sync::OnceLock<Option<Br>>,
}

/// A document's brotli form and its validator.
#[derive(Debug)]
pub struct Br {
    /// The compressed bytes.
    pub bytes: Bytes,
    /// Its `ETag`.
    etag: Tag,
    /// Its response headers for a 200 and a 304.
    headers: [http::HeaderMap; 2],
}

/// A content coding Herald sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// The document as it is.
    Identity,
    /// gzip.
    Gzip,
    /// brotli.
    Br,
}

/// A whole document's response headers, built once per publish.
#[derive(Debug)]
struct Ready {
    /// The `Cache-Control` value they carry.
    cache_control: http::HeaderValue,
    /// `ETag`s of the document and of its gzip form.
    tags: [Tag; 2],
    /// Headers of a 200 and of a 304, for the document and its gzip form.
    headers: [[http::HeaderMap; 2]; 2],
}

/// An `ETag` value: a 128-bit hash as 32 hex digits, quoted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tag([u8; 34]);

impl Tag {
    fn new(h: u128) -> Tag {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut b = [b'"'; 34];
        for (i, c) in b[1..33].iter_mut().enumerate() {
            *c = HEX[((h >> (4 * (31 - i))) & 0xf) as usize];
        }
        Tag(b)
    }

    /// As bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// As text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("quotes and hex digits")
    }

    fn value(&self) -> http::HeaderValue {
        http::HeaderValue::from_bytes(&self.0).expect("quoted hex is a valid header value")
    }
}

impl std::ops::Deref for Tag {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<Tag> for &str {
    fn eq(&self, other: &Tag) -> bool {
        *self == other.as_str()
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn http_date_value(t: SystemTime) -> http::HeaderValue {
    http::HeaderValue::from_str(&httpdate::fmt_http_date(t))
        .expect("an HTTP date is a valid header value")
}

/// How an asset's bytes are held.
#[derive(Debug)]
enum Form {
    /// Feeds, the index, OPML: the document and its gzip form, compressed
    /// once at publish time.
    Whole { identity: Bytes, gzip: Bytes },
    /// A file an article references, as it is, with no gzip form (an
    /// image or a PDF compresses no further): `gzip_len` is its length, so
    /// gzip is never chosen, and it has no `.gz` twin on disk.
    Plain { identity: Bytes },
    /// An article page, which keeps no uncompressed copy (one per article,
    /// each rarely fetched, nearly always with gzip): its gzip form as
    /// gzip header and the deflated page head, then the
    /// article's own packed body (already raw deflate, byte-aligned), then
    /// the deflated tail and the gzip trailer. Valid as one deflate stream
    /// because each part was compressed on its own (no back-references
    /// across parts) and all but the last end in a sync flush. The body is
    /// shared with the library, so a page costs about a kilobyte.
    Spliced {
        head: Bytes,
        article: Arc<Article>,
        tail: Bytes,
    },
}

/// What a job renders.
enum Doc {
    /// A whole document.
    Whole(Vec<u8>),
    /// An article page: head, the article's body, tail.
    Page(String, Arc<Article>, String),
    /// A file an article references.
    Media(Arc<crate::article::Media>),
}

/// A page tail and its deflated form (every page has the same tail).
type DeflatedTail = Option<(String, Vec<u8>)>;

thread_local! {
    /// Page heads' compressor, and the last page tail deflated.
    static PAGE_DEFLATE: std::cell::RefCell<(flate2::Compress, DeflatedTail)> =
        std::cell::RefCell::new((flate2::Compress::new(flate2::Compression::new(2), false), None));
}

impl Asset {
    /// Builds an asset from what a job rendered (see [`Form`]).
    fn new(
        doc: Doc,
        content_type: &'static str,
        cors: bool,
        link: Option<http::HeaderValue>,
        last_modified: SystemTime,
    ) -> Asset {
        let last_modified = round_secs(last_modified);
        let sandboxed = matches!(&doc, Doc::Media(m) if m.media_type == "image/svg+xml");
        let (form, len, etag, etag_gzip, gzip_len) = match doc {
            Doc::Media(m) if m.compressible => {
                let mut gz = gzip(&m.bytes, MEDIA_GZIP_LEVEL);
                gz.shrink_to_fit();
                let (etag_gzip, gzip_len) = (xxh3_128(&gz), gz.len());
                let form = Form::Whole {
                    identity: m.bytes.clone(),
                    gzip: crate::sendfile::hold(gz),
                };
                (form, m.bytes.len(), m.hash, etag_gzip, gzip_len)
            }
            Doc::Media(m) => {
                let len = m.bytes.len();
                let form = Form::Plain {
                    identity: m.bytes.clone(),
                };
                (form, len, m.hash, m.hash, len)
            }
            Doc::Whole(mut body) => {
                let mut gz = gzip(&body, WHOLE_GZIP_LEVEL);
                gz.shrink_to_fit();
                body.shrink_to_fit();
                let (etag, etag_gzip, len, gzip_len) =
                    (xxh3_128(&body), xxh3_128(&gz), body.len(), gz.len());
                let form = Form::Whole {
                    identity: crate::sendfile::hold(body),
                    gzip: crate::sendfile::hold(gz),
                };
                (form, len, etag, etag_gzip, gzip_len)
            }
            Doc::Page(head, article, tail) => {
                let body = &article.body_html;
                let mut head_z = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
                let mut tail_z = Vec::with_capacity(tail.len() + 32);
                PAGE_DEFLATE.with_borrow_mut(|(c, last_tail)| {
                    crate::article::deflate_into(c, head.as_bytes(), &mut head_z, false);
                    // Every page has the same tail: deflate it once (each
                    // reset of the compressor clears its tables).
                    let (_, deflated) = match last_tail {
                        Some(t) if t.0 == tail => t,
                        _ => {
                            let mut z = Vec::new();
                            crate::article::deflate_into(c, tail.as_bytes(), &mut z, true);
                            last_tail.insert((tail.clone(), z))
                        }
                    };
                    tail_z.extend_from_slice(deflated);
                });
                let mut crc = crc32fast::Hasher::new();
                crc.update(head.as_bytes());
                crc.combine(&crc32fast::Hasher::new_with_initial_len(
                    body.crc(),
                    body.len() as u64,
                ));
                let mut tail_crc = crc32fast::Hasher::new();
                tail_crc.update(tail.as_bytes());
                crc.combine(&tail_crc);
                let len = head.len() + body.len() + tail.len();
                tail_z.extend_from_slice(&crc.finalize().to_le_bytes());
                tail_z.extend_from_slice(&(len as u32).to_le_bytes());
                // Validators from the parts: the identity one from the page
                // head and tail plus the body's content hash, the gzip one
                // from the exact bytes sent.
                let mut h = Xxh3::new();
                h.update(head.as_bytes());
                h.update(&article.hash.to_le_bytes());
                h.update(&body.crc().to_le_bytes());
                h.update(tail.as_bytes());
                let etag = h.digest128();
                let mut g = Xxh3::new();
                g.update(&head_z);
                g.update(body.deflated());
                g.update(&tail_z);
                let etag_gzip = g.digest128();
                let gzip_len = head_z.len() + body.deflated().len() + tail_z.len();
                head_z.shrink_to_fit();
                tail_z.shrink_to_fit();
                let form = Form::Spliced {
                    head: Bytes::from(head_z),
                    article,
                    tail: Bytes::from(tail_z),
                };
                (form, len, etag, etag_gzip, gzip_len)
            }
        };
        Asset {
            ready: None,
            etag,
            etag_gzip,
            form,
            len,
            gzip_len,
            last_modified,
            content_type,
            cors,
            link,
            sandboxed,
            br: std::sync::OnceLock::new(),
        }
    }

    /// True when the document has a gzip form (and a `.gz` twin on disk).
    pub fn has_gzip(&self) -> bool {
        !matches!(self.form, Form::Plain { .. })
    }

    /// True for feeds, the index and OPML (see [`Form::Whole`]).
    fn is_whole(&self) -> bool {
        matches!(self.form, Form::Whole { .. })
    }

    /// The brotli form, once made (see [`Asset::make_br`]).
    pub fn br(&self) -> Option<&Br> {
        self.br.get().and_then(Option::as_ref)
    }

    /// Makes the brotli form at `quality` (1–11), unless it exists already,
    /// the asset keeps no uncompressed bytes (article pages) or brotli
    /// would not beat gzip. Done after the snapshot is published, off the
    /// edit-to-served path: until then clients get gzip. Returns true when
    /// this call compressed.
    pub fn make_br(&self, quality: u32) -> bool {
        let (Form::Whole { identity: doc, .. }, Some(ready)) = (&self.form, &self.ready) else {
            return false;
        };
        if self.br.get().is_some() {
            return false;
        }
        let mut out = Vec::with_capacity(self.gzip_len);
        let params = brotli::enc::BrotliEncoderParams {
            quality: quality.clamp(1, 11) as i32,
            size_hint: doc.len(),
            ..Default::default()
        };
        // Read through the file for a file-backed document: a pass over
        // every feed must not fault them all into the daemon's RSS.
        let ok =
            brotli::BrotliCompress(&mut crate::sendfile::reader(doc), &mut out, &params).is_ok();
        let br = (ok && out.len() < self.gzip_len).then(|| {
            let etag = Tag::new(xxh3_128(&out));
            let cc = &ready.cache_control;
            let headers = [http::StatusCode::OK, http::StatusCode::NOT_MODIFIED]
                .map(|status| self.build_headers(etag, out.len(), Coding::Br, status, cc));
            Br {
                bytes: crate::sendfile::hold(out),
                etag,
                headers,
            }
        });
        self.br.set(br).is_ok()
    }

    /// The gzip form, as sent (assembled for article pages: one copy of
    /// a few kilobytes).
    pub fn gzip(&self) -> Bytes {
        match &self.form {
            Form::Whole { gzip, .. } => gzip.clone(),
            // Never sent: its `gzip_len` is its length (see [`Form::Plain`]).
            Form::Plain { identity } => identity.clone(),
            Form::Spliced {
                head,
                article,
                tail,
            } => {
                let mut out = Vec::with_capacity(self.gzip_len);
                out.extend_from_slice(head);
                out.extend_from_slice(article.body_html.deflated());
                out.extend_from_slice(tail);
                Bytes::from(out)
            }
        }
    }

    /// The uncompressed document (decompressed on demand for article
    /// pages, which keep none).
    pub fn body(&self) -> Bytes {
        match &self.form {
            Form::Whole { identity, .. } | Form::Plain { identity } => identity.clone(),
            Form::Spliced {
                head,
                article,
                tail,
            } => Bytes::from(crate::article::inflate_parts(
                &[
                    &head[10..],
                    article.body_html.deflated(),
                    &tail[..tail.len() - 8],
                ],
                self.len,
            )),
        }
    }

    /// Sets the final `Last-Modified` and, for a whole document, builds
    /// its response headers with `cache_control`.
    fn finish(mut self, lm: SystemTime, cache_control: &http::HeaderValue) -> Asset {
        self.last_modified = round_secs(lm);
        if self.is_whole() || !self.has_gzip() {
            let tags = [Tag::new(self.etag), Tag::new(self.etag_gzip)];
            let statuses = [http::StatusCode::OK, http::StatusCode::NOT_MODIFIED];
            let headers = [(Coding::Identity, self.len), (Coding::Gzip, self.gzip_len)].map(
                |(coding, len)| {
                    let tag = tags[usize::from(coding == Coding::Gzip)];
                    statuses.map(|st| self.build_headers(tag, len, coding, st, cache_control))
                },
            );
            self.ready = Some(Box::new(Ready {
                cache_control: cache_control.clone(),
                tags,
                headers,
            }));
        }
        self
    }

    /// The `Cache-Control` value this asset's ready headers carry (`None`
    /// for an article page, which takes the site's per request).
    fn ready_cache_control(&self) -> Option<&http::HeaderValue> {
        self.ready.as_ref().map(|r| &r.cache_control)
    }

    /// The strong validator (RFC 9110 §8.8.3) of the representation in
    /// `coding`, quoted: a 128-bit hash of the bytes sent, so equal ETags
    /// mean equal bytes and each coding has its own. Brotli only once made
    /// (see [`Asset::br`]); until then the document's.
    pub fn tag(&self, coding: Coding) -> Tag {
        match (coding, &self.ready, self.br()) {
            (Coding::Br, _, Some(b)) => b.etag,
            (Coding::Gzip, Some(r), _) => r.tags[1],
            (Coding::Gzip, None, _) => Tag::new(self.etag_gzip),
            (_, Some(r), _) => r.tags[0],
            _ => Tag::new(self.etag),
        }
    }

    /// The headers of a response with `status` sending this asset in
    /// `coding` (for HEAD, those of the 200). A 304 carries the `ETag`,
    /// `Cache-Control` and `Vary` its 200 would, and no other
    /// representation metadata: with an `ETag` present, RFC 9110 §15.4.5
    /// says not to send `Last-Modified` either. `cache_control` is the
    /// site's; a whole document's ready headers were built with the same.
    pub fn headers(
        &self,
        coding: Coding,
        status: http::StatusCode,
        cache_control: &http::HeaderValue,
    ) -> http::HeaderMap {
        // No brotli form (yet, or at all): the document as it is.
        let coding = match coding {
            Coding::Br if self.br().is_none() => Coding::Identity,
            c => c,
        };
        let slot = match status {
            http::StatusCode::OK => 0,
            http::StatusCode::NOT_MODIFIED => 1,
            _ => 2,
        };
        let ready = match (coding, &self.ready) {
            (Coding::Br, _) => self.br().map(|b| &b.headers),
            (c, Some(r)) => Some(&r.headers[usize::from(c == Coding::Gzip)]),
            (_, None) => None,
        };
        if let Some(maps) = ready.filter(|_| slot < 2) {
            return maps[slot].clone();
        }
        let len = match (coding, self.br()) {
            (Coding::Br, Some(b)) => b.bytes.len(),
            (Coding::Gzip, _) => self.gzip_len,
            _ => self.len,
        };
        // A document made with its own policy (an archive page) keeps it.
        let cache_control = self.ready_cache_control().unwrap_or(cache_control);
        self.build_headers(self.tag(coding), len, coding, status, cache_control)
    }

    fn build_headers(
        &self,
        tag: Tag,
        len: usize,
        coding: Coding,
        status: http::StatusCode,
        cache_control: &http::HeaderValue,
    ) -> http::HeaderMap {
        use http::header::{self, HeaderValue};
        let ok = status == http::StatusCode::OK;
        let html = ok && self.content_type.starts_with("text/html");
        // Room for every header at once, instead of growing on the way.
        let mut h = http::HeaderMap::with_capacity(match (ok, html) {
            (true, true) => 12,
            (true, false) => 10,
            _ => 6,
        });
        h.insert(header::ETAG, tag.value());
        if status != http::StatusCode::NOT_MODIFIED {
            h.insert(header::LAST_MODIFIED, http_date_value(self.last_modified));
        }
        h.insert(header::CACHE_CONTROL, cache_control.clone());
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if self.cors {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        if let Some(link) = &self.link {
            h.insert(header::LINK, link.clone());
        }
        if ok {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            match coding {
                Coding::Gzip => {
                    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                Coding::Br => {
                    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
                }
                Coding::Identity => {}
            }
            if html {
                html_security_headers(&mut h);
            }
            if self.sandboxed {
                // Opened by itself, an SVG is a document that could run
                // script on the site's origin: none may run.
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
                    ),
                );
            }
        }
        h
    }

    /// `Last-Modified` as an IMF-fixdate.
    pub fn last_modified_http(&self) -> String {
        httpdate::fmt_http_date(self.last_modified)
    }
}

/// gzip level of a whole document's twin: feeds, the index and OPML are
/// few and fetched over and over, but they are also re-compressed on every
/// edit that touches them, on the way to being served: level 3 (a 313 KB
/// feed: 0.8% larger than level 4 and 2.1% larger than level 6, in 70% and
/// 58% of their time; brotli, made after publication, is the small form).
/// Article pages are not compressed here at all (see [`Form::Spliced`]).
const WHOLE_GZIP_LEVEL: u32 = 3;

/// gzip level of a referenced file's twin (SVG, CSV …): compressed once,
/// when the file changes, not on every edit of a feed.
const MEDIA_GZIP_LEVEL: u32 = 6;

/// gzip (RFC 1952) of `b`: a fixed header without mtime or name, so output
/// is deterministic; raw deflate; CRC-32 and length. The deflate state
/// (~300 KB per level) is kept per thread and reset between documents:
/// allocating and zeroing it afresh cost more than compressing a page.
fn gzip(b: &[u8], level: u32) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    thread_local! {
        static DEFLATE: std::cell::RefCell<Vec<(u32, Compress)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    // XFL as RFC 1952 §2.3.1 and flate2's GzBuilder set it; OS 255 = unknown.
    let xfl = match level {
        9.. => 2,
        0..=1 => 4,
        _ => 0,
    };
    // Feeds and pages deflate to a quarter or less: sized for that, a
    // 300 KB feed's output stays below glibc's mmap threshold (a mapping
    // is faulted in page by page and unmapped again on every publish).
    let mut out = Vec::with_capacity(b.len() / 4 + 4096);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff]);
    DEFLATE.with_borrow_mut(|cache| {
        let at = match cache.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                cache.push((level, Compress::new(Compression::new(level), false)));
                cache.len() - 1
            }
        };
        let c = &mut cache[at].1;
        c.reset();
        loop {
            let done = c.total_in() as usize;
            let status = c
                .compress_vec(&b[done..], &mut out, FlushCompress::Finish)
                .expect("deflating a complete in-memory buffer cannot fail");
            if status == Status::StreamEnd {
                break;
            }
            out.reserve(out.capacity().max(4096));
        }
    });
    let mut crc = flate2::Crc::new();
    crc.update(b);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out
}

fn round_secs(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The `Cache-Control` header for a `max-age`.
pub fn cache_control(max_age: u64) -> http::HeaderValue {
    http::HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .expect("digits and ASCII are a valid header value")
}

/// Adds the headers every HTML document carries: the pages'
/// Content-Security-Policy ([`render::CONTENT_SECURITY_POLICY`]), which
/// also forbids framing (`frame-ancestors`), `X-Frame-Options` for
/// browsers older than that, and a Referrer-Policy under which another
/// site learns at most which site a reader came from, never the page,
/// and nothing over a downgrade to http.
fn html_security_headers(h: &mut http::HeaderMap) {
    use http::header::{self, HeaderValue};
    // Made once, at compile time: the policy is a few hundred bytes that
    // `from_static` would check on every article page served.
    let csp = const { HeaderValue::from_static(render::CONTENT_SECURITY_POLICY) };
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
}

/// The headers of the 404 page (`len` bytes), built once per publish:
/// never cached without asking again, not sniffed, and an HTML page's
/// security headers like every other.
fn not_found_headers(len: usize) -> http::HeaderMap {
    use http::header::{self, HeaderValue};
    let mut h = http::HeaderMap::with_capacity(7);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    html_security_headers(&mut h);
    h
}

/// The answer at an old permalink of a renamed article: 301 to the new
/// one, with a small page that says so (also written under the output
/// directory, where it refreshes to the new permalink).
#[derive(Debug)]
pub struct Redirect {
    /// The page.
    pub asset: Arc<Asset>,
    /// Headers of the 301: `Location` (the new permalink, absolute), the
    /// page's type and length, caching, and an HTML page's security
    /// headers.
    pub headers: http::HeaderMap,
}

/// The headers of the 301 at an old permalink.
fn redirect_headers(to: &str, len: usize, cache_control: &http::HeaderValue) -> http::HeaderMap {
    use http::header::{self, HeaderValue};
    let mut h = http::HeaderMap::with_capacity(8);
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, cache_control.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    html_security_headers(&mut h);
    h
}

/// An immutable snapshot of everything Herald serves.
#[derive(Debug)]
pub struct Site {
    /// Feeds, the index and OPML.
    docs: HashMap<Arc<str>, Arc<Asset>>,
    /// Old permalinks of renamed articles.
    redirects: HashMap<Arc<str>, Arc<Redirect>>,
    /// Files articles reference, by route; shared with the builder and
    /// the snapshots before while none changes.
    media: Arc<HashMap<Arc<str>, Arc<Asset>>>,
    /// Permalinks of articles no longer published (answered 410).
    gone: Arc<rustc_hash::FxHashSet<Arc<str>>>,
    /// The page answered with 410, and its headers.
    gone_page: Option<(Arc<Asset>, http::HeaderMap)>,
    /// Article pages, shared shard by shard with the builder and the
    /// snapshots before.
    pages: Pages,
    not_found: Option<Arc<Asset>>,
    /// The 404 page's response headers.
    not_found_headers: http::HeaderMap,
    /// `Cache-Control` of every route (from `Settings::cache_max_age`).
    pub cache_control: http::HeaderValue,
    /// Articles published in this snapshot.
    pub articles: usize,
    /// Files left out of this snapshot because they failed.
    pub rejected: usize,
    /// Routes a streaming build wrote straight to disk and did not keep.
    streamed: Vec<String>,
    /// What writing the streamed routes did.
    stream_report: WriteReport,
}

impl Site {
    /// Routes a streaming build wrote straight to disk (not served from
    /// this snapshot).
    pub fn streamed(&self) -> &[String] {
        &self.streamed
    }

    /// What writing the streamed routes did (taken once).
    pub fn take_stream_report(&mut self) -> WriteReport {
        std::mem::take(&mut self.stream_report)
    }

    /// The asset for a route (`/`, `/rss.xml`, `/articles/<slug>/` …).
    pub fn get(&self, route: &str) -> Option<&Arc<Asset>> {
        self.docs
            .get(route)
            .or_else(|| self.pages.get(route).map(|p| &p.asset))
            .or_else(|| self.media.get(route))
    }

    /// Where the article once at `route` went, if it was renamed.
    pub fn moved(&self, route: &str) -> Option<&Redirect> {
        self.redirects.get(route).map(|r| &**r)
    }

    /// True when `route` is the permalink of an article no longer
    /// published.
    pub fn is_gone(&self, route: &str) -> bool {
        self.gone.contains(route)
    }

    /// The page answered with 410, with its headers.
    pub fn gone_page(&self) -> Option<&(Arc<Asset>, http::HeaderMap)> {
        self.gone_page.as_ref()
    }

    /// The document behind a file of the output directory: what
    /// [`Site::get`] serves, and the redirect pages at old permalinks.
    pub fn file(&self, route: &str) -> Option<&Arc<Asset>> {
        self.get(route)
            .or_else(|| self.redirects.get(route).map(|r| &r.asset))
    }

    /// The 404 page.
    pub fn not_found(&self) -> Option<&Arc<Asset>> {
        self.not_found.as_ref()
    }

    /// The 404 page's response headers (for HEAD too).
    pub fn not_found_headers(&self) -> &http::HeaderMap {
        &self.not_found_headers
    }

    /// The assets of `routes` (every route when `None`) that could get a
    /// brotli form and have none yet: feeds, the index and OPML. Held
    /// weakly, so a document replaced before its turn is skipped.
    pub fn wanting_br(&self, routes: Option<&[String]>) -> Vec<std::sync::Weak<Asset>> {
        let wants = |a: &&Arc<Asset>| a.is_whole() && a.br.get().is_none();
        match routes {
            Some(list) => list
                .iter()
                .filter_map(|r| self.docs.get(r.as_str()))
                .filter(wants)
                .map(Arc::downgrade)
                .collect(),
            None => self
                .docs
                .values()
                .filter(wants)
                .map(Arc::downgrade)
                .collect(),
        }
    }

    /// Every route with a file in the output directory, with its asset
    /// (what [`Site::file`] finds).
    pub fn routes(&self) -> impl Iterator<Item = (&str, &Arc<Asset>)> {
        self.docs
            .iter()
            .map(|(r, a)| (&**r, a))
            .chain(self.pages.iter().map(|(r, p)| (&**r, &p.asset)))
            .chain(self.redirects.iter().map(|(r, d)| (&**r, &d.asset)))
            .chain(self.media.iter().map(|(r, a)| (&**r, a)))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.docs.len() + self.pages.len() + self.redirects.len() + self.media.len()
    }

    /// True when nothing is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Shards of the article pages map ([`Pages`]).
const PAGE_SHARDS: usize = 64;

/// An article page in [`Pages`]: its asset and what it was rendered from.
#[derive(Debug, Clone)]
struct Page {
    fp: Fingerprint,
    asset: Arc<Asset>,
}

/// Article pages by route, split into [`PAGE_SHARDS`] maps each behind an
/// `Arc`. A snapshot shares every shard with the one before except those
/// a publish changed (copied on write), so publishing an edit copies one
/// shard (a sixty-fourth of the pages), not every route; a lookup is
/// one more hash than a single map.
#[derive(Debug, Clone)]
struct Pages {
    shards: Vec<Arc<HashMap<Arc<str>, Page>>>,
}

impl Default for Pages {
    fn default() -> Pages {
        Pages {
            shards: (0..PAGE_SHARDS).map(|_| Arc::default()).collect(),
        }
    }
}

impl Pages {
    fn shard(route: &str) -> usize {
        use std::hash::BuildHasher;
        (rustc_hash::FxBuildHasher.hash_one(route) >> 32) as usize % PAGE_SHARDS
    }

    fn get(&self, route: &str) -> Option<&Page> {
        self.shards[Pages::shard(route)].get(route)
    }

    fn insert(&mut self, route: Arc<str>, page: Page) {
        let i = Pages::shard(&route);
        Arc::make_mut(&mut self.shards[i]).insert(route, page);
    }

    fn remove(&mut self, route: &str) -> bool {
        let i = Pages::shard(route);
        if !self.shards[i].contains_key(route) {
            return false;
        }
        Arc::make_mut(&mut self.shards[i]).remove(route).is_some()
    }

    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Page)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }
}

/// The file under the output directory that mirrors a route.
pub fn file_of(route: &str) -> PathBuf {
    let rel = route.trim_start_matches('/');
    let decoded = percent_decode(rel);
    if decoded.is_empty() || decoded.ends_with('/') {
        PathBuf::from(format!("{decoded}index.html"))
    } else {
        PathBuf::from(decoded)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What one piece of output was rendered from; equal fingerprints mean
/// equal bytes, so the previous asset is reused without rendering.
type Fingerprint = u128;

/// Renders snapshots, reusing what did not change since the previous one.
#[derive(Debug, Default)]
pub struct SiteBuilder {
    /// Feeds, the index and OPML of the last build, with fingerprints.
    docs: HashMap<Arc<str>, (Fingerprint, Arc<Asset>)>,
    /// Article pages of the last build by route (what the snapshot
    /// serves), kept from build to build: an edit changes only its own.
    routes: Pages,
    /// Numbers the builds; an entry of `pages` not marked with the current
    /// one at the end of a build is gone.
    generation: u64,
    /// `Last-Modified` floors per route from an earlier run (file mtimes).
    floors: HashMap<Arc<str>, SystemTime>,
    /// Where the floors come from; read once, at the first build.
    floor_dir: Option<PathBuf>,
    floors_loaded: bool,
    /// The article each page was rendered from, by the address of its
    /// `Arc` (kept alive here, so the address cannot be reused): an
    /// unchanged article (same `Arc`) under unchanged settings is reused
    /// without reading the article at all, so an edit costs O(changed)
    /// renders plus a pointer lookup per article.
    pages: HashMap<usize, PageEntry>,
    /// Listing pages (all but the index) of the last build, by route.
    lists: HashMap<Arc<str>, ListEntry>,
    /// Routes the last build dropped.
    removed: Vec<String>,
    /// One-shot builds (`herald build`): write article pages to this
    /// directory as they are rendered and keep none of them in memory.
    stream_to: Option<PathBuf>,
    /// Marked after each document rendered, so re-rendering a large
    /// archive counts as progress, not as a stuck loop.
    progress: crate::health::Progress,
    /// Redirect pages of the last build, with fingerprints.
    redirects: HashMap<Arc<str>, (Fingerprint, Arc<Redirect>)>,
    /// What the next build serves at old permalinks
    /// ([`SiteBuilder::set_former`]).
    moved: Vec<(String, Arc<Article>)>,
    /// Permalinks of articles gone, as of the last build.
    gone: Arc<rustc_hash::FxHashSet<Arc<str>>>,
    gone_slugs: Vec<String>,
    /// Files articles reference, for the next build
    /// ([`SiteBuilder::set_media`]).
    media_in: Vec<(Arc<str>, Arc<crate::article::Media>)>,
    /// `media_in` changed since the last build.
    media_dirty: bool,
    /// The referenced files of the last build, with fingerprints, and as
    /// a snapshot shares them.
    media: HashMap<Arc<str>, (Fingerprint, Arc<Asset>)>,
    media_site: Arc<HashMap<Arc<str>, Arc<Asset>>>,
    /// The settings the media assets were made with.
    media_settings: Fingerprint,
}

#[derive(Debug, Clone)]
struct PageEntry {
    /// Held so that the key (its address) stays this article's.
    _article: Arc<Article>,
    /// The neighbours its page links to, held for the same reason.
    older: Option<Arc<Article>>,
    newer: Option<Arc<Article>>,
    settings_fp: Fingerprint,
    route: Arc<str>,
    /// The last build that published it ([`SiteBuilder::generation`]).
    seen: u64,
}

/// A listing page of the last build: what it shows besides its articles
/// (settings, route, links, its label), and the articles themselves,
/// held so that their addresses stay theirs (see [`SiteBuilder::build`]).
#[derive(Debug)]
struct ListEntry {
    shape: Fingerprint,
    items: Vec<Arc<Article>>,
    /// The last build that published it ([`SiteBuilder::generation`]).
    seen: u64,
}

/// True when both are the same article (`Arc`), or both are absent.
fn same_arc(kept: Option<&Arc<Article>>, now: Option<&Arc<Article>>) -> bool {
    match (kept, now) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        (None, None) => true,
        _ => false,
    }
}

/// What a listing shows of an article: its link, title, date,
/// categories and summary (not its body, which only its page shows).
fn fp_listed(h: &mut Xxh3, a: &Article) {
    for field in [a.slug.as_str(), a.title.as_str(), a.summary.as_str()] {
        h.update(&(field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    h.update(&a.published.timestamp().to_le_bytes());
    h.update(&a.published.offset().local_minus_utc().to_le_bytes());
    for c in &a.categories {
        h.update(&(c.len() as u64).to_le_bytes());
        h.update(c.as_bytes());
    }
}

/// What became of one job.
enum Rendered {
    /// In memory: route, fingerprint, asset, and whether it is new.
    Kept(Arc<str>, Fingerprint, Arc<Asset>, bool),
    /// Written to the output directory (or found identical there) and dropped.
    Streamed(Arc<str>, Result<bool, WriteError>),
}

/// A piece of work: route, fingerprint, and how to render it.
struct Job<'a> {
    route: Arc<str>,
    fp: Fingerprint,
    derived: SystemTime,
    content_type: &'static str,
    cors: bool,
    link: Option<http::HeaderValue>,
    /// Its own `Cache-Control` (closed archive pages); `None` for the
    /// site's.
    cache_control: Option<http::HeaderValue>,
    render: Box<dyn Fn() -> Doc + Send + Sync + 'a>,
}

fn fp_article(h: &mut Xxh3, a: &Article) {
    h.update(a.slug.as_bytes());
    h.update(a.id.as_bytes());
    h.update(&a.hash.to_le_bytes());
    h.update(&a.updated.timestamp().to_le_bytes());
    h.update(&a.updated.offset().local_minus_utc().to_le_bytes());
    // Where the picture is published and its length show in feeds.
    if let Some(p) = &a.picture {
        h.update(p.src.as_bytes());
        if let Some((route, len, _)) = &p.published {
            h.update(route.as_bytes());
            h.update(&len.to_le_bytes());
        }
    }
}

fn to_system(t: Option<chrono::DateTime<chrono::FixedOffset>>) -> SystemTime {
    t.map_or(UNIX_EPOCH, |t| {
        UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    })
}

impl SiteBuilder {
    /// A builder for a one-shot build into `dir`: floors as
    /// [`SiteBuilder::with_floors_from`], and every document is written
    /// (when its bytes changed) as soon as it is rendered and then dropped,
    /// so memory does not grow with the archive. The returned [`Site`]
    /// lists them in [`Site::streamed`]; [`write_to`] then only prunes.
    pub fn streaming_to(dir: &Path) -> SiteBuilder {
        SiteBuilder {
            stream_to: Some(dir.to_path_buf()),
            ..SiteBuilder::with_floors_from(dir)
        }
    }

    /// A builder that takes `Last-Modified` floors from the files already
    /// under `dir`, so that a restart never moves them backwards.
    pub fn with_floors_from(dir: &Path) -> SiteBuilder {
        SiteBuilder {
            floor_dir: Some(dir.to_path_buf()),
            ..SiteBuilder::default()
        }
    }

    /// Has `beat` called after each document is rendered (from the threads
    /// that render them).
    pub fn on_progress(&mut self, beat: impl Fn() + Send + Sync + 'static) {
        self.progress = crate::health::Progress::new(beat);
    }

    /// What the next [`SiteBuilder::build`] answers at the permalinks of
    /// articles that are no longer there: `moved` holds (old slug, the
    /// article now published under another slug), redirected; `gone`
    /// the slugs of articles no longer published, answered 410. Neither
    /// may hold a slug published now.
    pub fn set_former(&mut self, moved: &[(String, Arc<Article>)], gone: &[String]) {
        if self.moved.len() != moved.len()
            || self
                .moved
                .iter()
                .zip(moved)
                .any(|(a, b)| a.0 != b.0 || !Arc::ptr_eq(&a.1, &b.1))
        {
            self.moved = moved.to_vec();
        }
        if self.gone_slugs != gone {
            self.gone_slugs = gone.to_vec();
            self.gone = Arc::new(
                gone.iter()
                    .map(|s| Arc::from(format!("/{}", render::article_route(s))))
                    .collect(),
            );
        }
    }

    /// Routes present before the last [`SiteBuilder::build`] and gone
    /// after it (their files should be removed with [`remove_routes`]).
    pub fn removed(&self) -> &[String] {
        &self.removed
    }

    /// Builds the snapshot for `articles` (newest first). `now` is used only
    /// when a route's bytes changed but its content dates did not move
    /// forward (an article deleted or back-dated): `Last-Modified` then
    /// becomes `now`, so clients holding the old date revalidate.
    /// Returns the site and the routes whose assets are new.
    pub fn build(
        &mut self,
        articles: &[Arc<Article>],
        rejected: usize,
        s: &Settings,
        now: SystemTime,
    ) -> (Site, Vec<String>) {
        let mut sh = Xxh3::new();
        std::hash::Hash::hash(s, &mut sh);
        let settings_fp = sh.digest128();
        let cache_control = cache_control(s.cache_max_age);
        let feeds = render::feeds(articles, s);
        let list_pages = render::list_pages(articles, &feeds, s.page_size);
        let archive_pages = render::archive_pages(articles, &feeds, s);
        let mut jobs: Vec<Job<'_>> = Vec::with_capacity(articles.len() + feeds.len() * 3 + 3);

        // Feeds: three formats per feed.
        for f in &feeds {
            let mut h = Xxh3::new();
            h.update(&settings_fp.to_le_bytes());
            h.update(f.title.as_bytes());
            h.update(f.dir.as_bytes());
            // Its `prev-archive` link names the newest closed page.
            h.update(&f.archived.to_le_bytes());
            for a in &f.items {
                fp_article(&mut h, a);
            }
            let fp = h.digest128();
            let derived = to_system(f.updated());
            for format in render::Format::ALL {
                let mut h = Xxh3::new();
                h.update(&fp.to_le_bytes());
                h.update(format.file().as_bytes());
                let link = s
                    .link_header(&f.route(format.file()))
                    .and_then(|v| http::HeaderValue::from_str(&v).ok());
                jobs.push(Job {
                    route: format!("/{}", f.route(format.file())).into(),
                    fp: h.digest128(),
                    derived,
                    content_type: format.content_type(),
                    cors: true,
                    link,
                    cache_control: None,
                    render: Box::new(move || Doc::Whole(format.render(f, s))),
                });
            }
        }
        let feeds_ref = &feeds;
        let mut oh = Xxh3::new();
        oh.update(&settings_fp.to_le_bytes());
        for f in &feeds {
            oh.update(f.dir.as_bytes());
            oh.update(f.title.as_bytes());
        }
        jobs.push(Job {
            route: "/feeds.opml".into(),
            fp: oh.digest128(),
            derived: to_system(feeds.iter().filter_map(Feed::updated).min()),
            content_type: "text/x-opml; charset=utf-8",
            cors: true,
            link: None,
            cache_control: None,
            render: Box::new(move || Doc::Whole(render::opml(feeds_ref, s))),
        });

        self.generation += 1;
        let generation = self.generation;

        // Listings: the index and each category's and tag's pages, paged
        // from the oldest (see `render::list_pages`), so one new article
        // changes a front page per listing and, once in `page_size`, adds
        // an archive page and changes the one before it (its link).
        // A page showing the very same articles (the same `Arc`s, held by
        // its entry so their addresses stay theirs) with the same links
        // is only marked as still published, like an article page; the
        // index always goes through its job (it is a whole document, kept
        // with the feeds), where a fingerprint of what it shows decides.
        let mut everything = Xxh3::new();
        for f in &feeds {
            everything.update(f.title.as_bytes());
            everything.update(f.dir.as_bytes());
            if let Some(l) = &f.label {
                everything.update(l.name.as_bytes());
            }
        }
        let everything = everything.digest128();
        let mut listed: HashMap<Arc<str>, (Fingerprint, &[&Arc<Article>])> = HashMap::default();
        for p in &list_pages {
            let route: Arc<str> = p.route_from_root().into();
            let mut h = Xxh3::new();
            h.update(&settings_fp.to_le_bytes());
            h.update(route.as_bytes());
            h.update(p.feed.title.as_bytes());
            if let Some(l) = &p.feed.label {
                h.update(l.name.as_bytes());
            }
            h.update(&p.older.unwrap_or(0).to_le_bytes());
            let newer = match p.newer {
                render::Newer::Nowhere => 0,
                render::Newer::Front => 1,
                render::Newer::Page(k) => k + 2,
            };
            h.update(&newer.to_le_bytes());
            if &*route == "/" {
                h.update(&everything.to_le_bytes());
            } else if let Some(e) = self.lists.get_mut(&route) {
                let same = e.shape == h.digest128()
                    && e.items.len() == p.items.len()
                    && e.items.iter().zip(&p.items).all(|(x, y)| Arc::ptr_eq(x, y));
                if same {
                    e.seen = generation;
                    continue;
                }
            }
            let shape = h.digest128();
            for a in &p.items {
                fp_listed(&mut h, a);
            }
            listed.insert(Arc::clone(&route), (shape, &p.items));
            jobs.push(Job {
                route,
                fp: h.digest128(),
                derived: to_system(p.items.iter().map(|a| a.updated).max()),
                content_type: "text/html; charset=utf-8",
                cors: false,
                link: None,
                cache_control: None,
                render: Box::new(move || Doc::Whole(render::list_page(p, feeds_ref, s))),
            });
        }

        // Closed archive pages of every feed (RFC 5005), in every format,
        // kept like listing pages: a page showing the very same articles
        // (same `Arc`s) with the same links is only marked as still
        // published, so one new article costs the current documents and,
        // once in `archive_page_size`, a new page and its older
        // neighbour's `next-archive` link — not a pass over the archive.
        let archive_cc = self::cache_control(s.archive_max_age);
        for p in &archive_pages {
            let mut shape = Xxh3::new();
            shape.update(&settings_fp.to_le_bytes());
            shape.update(p.feed.title.as_bytes());
            if let Some(l) = &p.feed.label {
                shape.update(l.name.as_bytes());
            }
            shape.update(&[u8::from(p.is_newest())]);
            for format in render::Format::ALL {
                let route: Arc<str> = format!("/{}", p.feed.archive_route(format, p.number)).into();
                let mut h = shape.clone();
                h.update(route.as_bytes());
                if let Some(e) = self.lists.get_mut(&route) {
                    let same = e.shape == h.digest128()
                        && e.items.len() == p.items.len()
                        && e.items.iter().zip(&p.items).all(|(x, y)| Arc::ptr_eq(x, y));
                    if same {
                        e.seen = generation;
                        continue;
                    }
                }
                let shape = h.digest128();
                for a in &p.items {
                    fp_article(&mut h, a);
                }
                listed.insert(Arc::clone(&route), (shape, &p.items));
                jobs.push(Job {
                    route,
                    fp: h.digest128(),
                    derived: to_system(p.items.iter().map(|a| a.updated).max()),
                    content_type: format.content_type(),
                    cors: true,
                    // No WebSub topic: no hub to name, nothing pinged.
                    link: None,
                    cache_control: Some(archive_cc.clone()),
                    render: Box::new(move || Doc::Whole(format.render(&p.doc(), s))),
                });
            }
        }

        // Article pages: each is made from its article, its neighbours
        // (linked from it) and the settings. A page whose article and
        // neighbours are the same `Arc`s as last time, under the same
        // settings, is only marked as still published: an edit costs its
        // own page and its neighbours', not a pass over every article's
        // fields.
        let mut page_articles: HashMap<Arc<str>, PageEntry> = HashMap::default();
        for (i, a) in articles.iter().enumerate() {
            let older = articles.get(i + 1);
            let newer = i.checked_sub(1).and_then(|i| articles.get(i));
            if let Some(p) = self.pages.get_mut(&(Arc::as_ptr(a) as usize)) {
                if p.settings_fp == settings_fp
                    && same_arc(p.older.as_ref(), older)
                    && same_arc(p.newer.as_ref(), newer)
                {
                    p.seen = generation;
                    continue;
                }
            }
            let mut h = Xxh3::new();
            h.update(&settings_fp.to_le_bytes());
            fp_article(&mut h, a);
            for n in [older, newer] {
                match n {
                    Some(n) => {
                        h.update(n.slug.as_bytes());
                        h.update(&(n.title.len() as u64).to_le_bytes());
                        h.update(n.title.as_bytes());
                    }
                    None => h.update(&[0xff]),
                }
            }
            let (a2, older2, newer2) = (Arc::clone(a), older.cloned(), newer.cloned());
            let route: Arc<str> = format!("/{}", render::article_route(&a.slug)).into();
            page_articles.insert(
                Arc::clone(&route),
                PageEntry {
                    _article: Arc::clone(a),
                    older: older.cloned(),
                    newer: newer.cloned(),
                    settings_fp,
                    route: Arc::clone(&route),
                    seen: generation,
                },
            );
            jobs.push(Job {
                route,
                fp: h.digest128(),
                derived: to_system(Some(a.updated)),
                content_type: "text/html; charset=utf-8",
                cors: false,
                link: None,
                cache_control: None,
                render: Box::new(move || {
                    let near = render::Neighbours {
                        older: older2.as_deref(),
                        newer: newer2.as_deref(),
                    };
                    let (head, tail) = render::article_page_parts(&a2, near, s);
                    Doc::Page(head, Arc::clone(&a2), tail)
                }),
            });
        }

        // Redirect pages at the old permalinks of renamed articles.
        let mut redirect_to: HashMap<Arc<str>, String> = HashMap::default();
        for (old, a) in &self.moved {
            let route: Arc<str> = format!("/{}", render::article_route(old)).into();
            let to = s.article_url(a);
            let mut h = Xxh3::new();
            h.update(&settings_fp.to_le_bytes());
            h.update(b"moved");
            h.update(route.as_bytes());
            h.update(a.title.as_bytes());
            fp_article(&mut h, a);
            let a2 = Arc::clone(a);
            let to2 = to.clone();
            redirect_to.insert(Arc::clone(&route), to);
            jobs.push(Job {
                route,
                fp: h.digest128(),
                derived: to_system(Some(a.updated)),
                content_type: "text/html; charset=utf-8",
                cors: false,
                link: None,
                cache_control: None,
                render: Box::new(move || Doc::Whole(render::moved_page(&a2.title, &to2, s))),
            });
        }

        // Referenced files, only when the list or the settings changed.
        let media_again = self.media_dirty || self.media_settings != settings_fp;
        let media_routes = if media_again {
            self.media_jobs(settings_fp, &mut jobs)
        } else {
            Default::default()
        };

        if let (Some(dir), false) = (&self.floor_dir, self.floors_loaded) {
            self.floors_loaded = true;
            self.floors = jobs
                .par_iter()
                .filter_map(|j| {
                    std::fs::metadata(dir.join(file_of(&j.route)))
                        .and_then(|m| m.modified())
                        .ok()
                        .map(|t| (Arc::clone(&j.route), t))
                })
                .collect();
            self.floors.retain(|_, t| *t > UNIX_EPOCH);
        }

        let (docs, routes, redirects, media) =
            (&self.docs, &self.routes, &self.redirects, &self.media);
        let prev = |route: &str| -> Option<(Fingerprint, &Arc<Asset>)> {
            docs.get(route)
                .map(|(fp, a)| (*fp, a))
                .or_else(|| routes.get(route).map(|p| (p.fp, &p.asset)))
                .or_else(|| redirects.get(route).map(|(fp, r)| (*fp, &r.asset)))
                .or_else(|| media.get(route).map(|(fp, a)| (*fp, a)))
        };
        let floors = &self.floors;
        let floor_dir = self.floor_dir.as_deref();
        let stream_to = self.stream_to.as_deref();
        let run = |j: Job<'_>| -> Rendered {
            let before = prev(&j.route);
            if let Some((fp, asset)) = before {
                if fp == j.fp {
                    return Rendered::Kept(j.route, j.fp, Arc::clone(asset), false);
                }
            }
            // Rendered with a provisional date; the real one depends on
            // whether the bytes changed.
            let cc = j.cache_control.as_ref().unwrap_or(&cache_control);
            let fresh = Asset::new((j.render)(), j.content_type, j.cors, j.link, j.derived);
            let fresh_cc = fresh.is_whole().then_some(cc);
            let prev_lm = before
                .map(|(_, a)| a.last_modified)
                .or_else(|| floors.get(&j.route).copied());
            let mut same_on_disk = false;
            let lm = match prev_lm {
                Some(prev) if round_secs(j.derived) <= prev => {
                    let same = match before {
                        Some((_, a)) => a.etag == fresh.etag,
                        None => floor_dir.is_some_and(|d| same_gzip_on_disk(d, &j.route, &fresh)),
                    };
                    same_on_disk = same && before.is_none();
                    if same {
                        prev
                    } else {
                        now.max(prev + Duration::from_secs(1))
                    }
                }
                _ => j.derived,
            };
            if let Some((_, a)) = before {
                if a.etag == fresh.etag
                    && a.last_modified == round_secs(lm)
                    && a.ready_cache_control() == fresh_cc
                {
                    return Rendered::Kept(j.route, j.fp, Arc::clone(a), false);
                }
            }
            if let Some(dir) = stream_to {
                let gz_there = || std::fs::metadata(gz_path(&dir.join(file_of(&j.route)))).is_ok();
                if same_on_disk && gz_there() {
                    return Rendered::Streamed(j.route, Ok(false));
                }
                let asset = fresh.finish(lm, cc);
                let written = write_asset(dir, &j.route, &asset);
                return Rendered::Streamed(j.route, written);
            }
            let asset = Arc::new(fresh.finish(lm, cc));
            Rendered::Kept(j.route, j.fp, asset, true)
        };
        // Streaming, article pages go first: a reader of the directory
        // never finds a feed or the index linking to a page not yet there.
        let (first, then): (Vec<Job<'_>>, Vec<Job<'_>>) = if stream_to.is_some() {
            jobs.into_iter()
                .partition(|j| j.route.starts_with("/articles/"))
        } else {
            (jobs, Vec::new())
        };
        let progress = &self.progress;
        let run = |j: Job<'_>| {
            let r = run(j);
            progress.beat();
            r
        };
        let mut results: Vec<Rendered> = first.into_par_iter().map(&run).collect();
        results.extend(then.into_par_iter().map(&run).collect::<Vec<_>>());

        let mut changed = Vec::new();
        let mut streamed = Vec::new();
        let mut stream_report = WriteReport::default();
        let mut new_docs = HashMap::with_capacity_and_hasher(self.docs.len(), Default::default());
        let mut new_redirects: HashMap<Arc<str>, (Fingerprint, Arc<Redirect>)> = HashMap::default();
        let mut new_media: HashMap<Arc<str>, (Fingerprint, Arc<Asset>)> = HashMap::default();
        for r in results {
            let (route, fp, asset, fresh) = match r {
                Rendered::Kept(route, fp, asset, fresh) => (route, fp, asset, fresh),
                Rendered::Streamed(route, result) => {
                    match result {
                        Ok(true) => stream_report.written += 1,
                        Ok(false) => {}
                        Err(e) => stream_report.errors.push(e),
                    }
                    streamed.push(route.to_string());
                    continue;
                }
            };
            if fresh {
                changed.push(route.to_string());
            }
            if media_routes.contains(&route) {
                new_media.insert(route, (fp, asset));
                continue;
            }
            if let Some(to) = redirect_to.get(&route) {
                let redirect = match self.redirects.get(&route) {
                    Some((_, r)) if Arc::ptr_eq(&r.asset, &asset) => Arc::clone(r),
                    _ => Arc::new(Redirect {
                        headers: redirect_headers(to, asset.len, &cache_control),
                        asset,
                    }),
                };
                new_redirects.insert(route, (fp, redirect));
                continue;
            }
            if let Some((shape, items)) = listed.get(&route).filter(|_| &*route != "/") {
                self.lists.insert(
                    Arc::clone(&route),
                    ListEntry {
                        shape: *shape,
                        items: items.iter().map(|a| Arc::clone(a)).collect(),
                        seen: generation,
                    },
                );
            } else if let Some(entry) = page_articles.get(&route) {
                self.pages
                    .insert(Arc::as_ptr(&entry._article) as usize, entry.clone());
            } else {
                new_docs.insert(route, (fp, asset));
                continue;
            }
            let same = self
                .routes
                .get(&route)
                .is_some_and(|p| p.fp == fp && Arc::ptr_eq(&p.asset, &asset));
            if !same {
                self.routes.insert(route, Page { fp, asset });
            }
        }
        // Feeds gone (a category's last article went), then pages of
        // articles gone — not those replaced by a new version, whose page
        // has just been stored under the same route.
        let mut removed: Vec<String> = self
            .docs
            .keys()
            .filter(|r| !new_docs.contains_key(*r))
            .map(|r| r.to_string())
            .collect();
        let mut gone = Vec::new();
        self.pages.retain(|_, p| {
            if p.seen != generation {
                gone.push(Arc::clone(&p.route));
            }
            p.seen == generation
        });
        for route in gone {
            // A page whose route now holds a redirect page is replaced,
            // not removed.
            if !page_articles.contains_key(&route)
                && self.routes.remove(&route)
                && !redirect_to.contains_key(&route)
            {
                removed.push(route.to_string());
            }
        }
        // Listing pages no longer produced (a label gone, fewer pages).
        self.lists.retain(|route, e| {
            if e.seen != generation && self.routes.remove(route) {
                removed.push(route.to_string());
            }
            e.seen == generation
        });
        // Redirect pages no longer wanted, unless a page took the route.
        for route in self.redirects.keys() {
            if !redirect_to.contains_key(route) && self.routes.get(route).is_none() {
                removed.push(route.to_string());
            }
        }
        if media_again {
            for route in self.media.keys() {
                if !media_routes.contains(route) {
                    removed.push(route.to_string());
                }
            }
            self.media_site = Arc::new(
                new_media
                    .iter()
                    .map(|(r, (_, a))| (Arc::clone(r), Arc::clone(a)))
                    .collect(),
            );
            self.media = new_media;
            self.media_dirty = false;
            self.media_settings = settings_fp;
        }
        removed.sort();
        self.removed = removed;
        self.docs = new_docs;
        self.redirects = new_redirects;
        // Floors matter only for routes the builder does not know yet;
        // after the first build it knows them all.
        self.floors = HashMap::default();
        let not_found = Arc::new(Asset::new(
            Doc::Whole(render::not_found(s)),
            "text/html; charset=utf-8",
            false,
            None,
            UNIX_EPOCH,
        ));
        let gone_page = Asset::new(
            Doc::Whole(render::gone_page(s)),
            "text/html; charset=utf-8",
            false,
            None,
            UNIX_EPOCH,
        );
        let gone_headers = not_found_headers(gone_page.len);
        changed.sort();
        (
            Site {
                docs: self
                    .docs
                    .iter()
                    .map(|(r, (_, a))| (Arc::clone(r), Arc::clone(a)))
                    .collect(),
                redirects: self
                    .redirects
                    .iter()
                    .map(|(r, (_, d))| (Arc::clone(r), Arc::clone(d)))
                    .collect(),
                gone: Arc::clone(&self.gone),
                media: Arc::clone(&self.media_site),
                gone_page: Some((Arc::new(gone_page), gone_headers)),
                pages: self.routes.clone(),
                not_found_headers: not_found_headers(not_found.len),
                not_found: Some(not_found),
                cache_control,
                articles: articles.len(),
                rejected,
                streamed,
                stream_report,
            },
            changed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{article, articles, settings};

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A feed's ready headers are those a response would be built with
    /// (after its final `Last-Modified` was set), a page builds the same
    /// set per request (and an HTML page's security headers), and brotli asked of a document without a brotli
    /// form gives the document as it is.
    #[test]
    fn ready_headers_match_built_ones() {
        use http::StatusCode;
        let (site, _) = SiteBuilder::default().build(&articles(), 0, &settings(), t(1_750_000_000));
        let cc = &site.cache_control;
        assert_eq!(cc, "public, max-age=300");
        let feed = site.get("/rss.xml").unwrap();
        let page = site.get("/articles/plain/").unwrap();
        assert!(feed.ready.is_some() && page.ready.is_none());
        for coding in [Coding::Identity, Coding::Gzip] {
            for status in [StatusCode::OK, StatusCode::NOT_MODIFIED] {
                let (tag, len) = match coding {
                    Coding::Gzip => (Tag::new(feed.etag_gzip), feed.gzip_len),
                    _ => (Tag::new(feed.etag), feed.len),
                };
                let ready = feed.headers(coding, status, cc);
                assert_eq!(ready, feed.build_headers(tag, len, coding, status, cc));
                let names =
                    |h: &http::HeaderMap| h.keys().map(|k| k.to_string()).collect::<Vec<_>>();
                let mut want = names(&ready);
                want.retain(|n| n != "access-control-allow-origin" && n != "link");
                if status == StatusCode::OK {
                    want.extend(
                        [
                            "content-security-policy",
                            "x-frame-options",
                            "referrer-policy",
                        ]
                        .map(String::from),
                    );
                }
                assert_eq!(
                    names(&page.headers(coding, status, cc)),
                    want,
                    "{coding:?} {status}"
                );
            }
        }
        assert_eq!(
            feed.headers(Coding::Br, StatusCode::OK, cc),
            feed.headers(Coding::Identity, StatusCode::OK, cc)
        );
        let h = feed.headers(Coding::Identity, StatusCode::OK, cc);
        assert_eq!(
            h["last-modified"],
            httpdate::fmt_http_date(feed.last_modified)
        );
        assert!(!h.contains_key("content-encoding"));
        let failed = feed.headers(Coding::Gzip, StatusCode::PRECONDITION_FAILED, cc);
        assert!(failed.contains_key("last-modified") && !failed.contains_key("content-length"));
    }

    /// HTML documents — the index (ready headers), an article page (built
    /// per request), the 404 page — carry the pages' CSP, no framing, a
    /// Referrer-Policy and `nosniff` on what they send; feeds do not
    /// carry the HTML ones, and a 304 repeats none of them.
    #[test]
    fn html_security_headers() {
        use http::StatusCode;
        let (site, _) = SiteBuilder::default().build(&articles(), 0, &settings(), t(1_750_000_000));
        let cc = &site.cache_control;
        let html = |h: &http::HeaderMap, what: &str| {
            assert_eq!(
                h["content-security-policy"],
                render::CONTENT_SECURITY_POLICY,
                "{what}"
            );
            assert_eq!(h["x-frame-options"], "DENY", "{what}");
            assert_eq!(
                h["referrer-policy"], "strict-origin-when-cross-origin",
                "{what}"
            );
            assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        };
        for route in ["/", "/articles/plain/"] {
            let a = site.get(route).unwrap();
            for coding in [Coding::Identity, Coding::Gzip] {
                html(&a.headers(coding, StatusCode::OK, cc), route);
                let h = a.headers(coding, StatusCode::NOT_MODIFIED, cc);
                assert!(!h.contains_key("content-security-policy"), "{route} 304");
            }
        }
        let nf = site.not_found_headers();
        html(nf, "404");
        assert_eq!(nf["content-type"], "text/html; charset=utf-8");
        assert_eq!(nf["cache-control"], "no-cache");
        assert_eq!(
            nf["content-length"],
            site.not_found().unwrap().len.to_string()
        );
        let feed = site
            .get("/atom.xml")
            .unwrap()
            .headers(Coding::Gzip, StatusCode::OK, cc);
        assert_eq!(feed["x-content-type-options"], "nosniff");
        assert!(!feed.contains_key("content-security-policy"));
        assert!(!feed.contains_key("x-frame-options"));
    }

    /// An ETag is the 128-bit hash as 32 hex digits, quoted.
    #[test]
    fn tag_is_quoted_hex() {
        let h = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        assert_eq!(Tag::new(h).as_str(), format!("\"{h:032x}\""));
        assert_eq!(Tag::new(1).as_str(), format!("\"{:032x}\"", 1));
    }

    /// Routes map to files under the output directory.
    #[test]
    fn routes_to_files() {
        assert_eq!(file_of("/"), PathBuf::from("index.html"));
        assert_eq!(file_of("/rss.xml"), PathBuf::from("rss.xml"));
        assert_eq!(
            file_of("/articles/%C3%BCber/"),
            PathBuf::from("articles/über/index.html")
        );
        assert_eq!(
            file_of("/categories/world/atom.xml"),
            PathBuf::from("categories/world/atom.xml")
        );
    }

    /// Every route of DESIGN.md is present with the right media type, and
    /// the gzip twin decompresses to the body.
    #[test]
    fn snapshot_routes() {
        let s = settings();
        let (site, changed) = SiteBuilder::default().build(&articles(), 0, &s, t(0));
        for (route, ct) in [
            ("/rss.xml", "application/rss+xml; charset=utf-8"),
            ("/atom.xml", "application/atom+xml; charset=utf-8"),
            ("/feed.json", "application/feed+json; charset=utf-8"),
            (
                "/categories/world-news/rss.xml",
                "application/rss+xml; charset=utf-8",
            ),
            ("/", "text/html; charset=utf-8"),
            ("/articles/plain/", "text/html; charset=utf-8"),
            ("/feeds.opml", "text/x-opml; charset=utf-8"),
        ] {
            let a = site.get(route).unwrap_or_else(|| panic!("{route} missing"));
            assert_eq!(a.content_type, ct, "{route}");
            let gz = a.gzip();
            let mut d = flate2::read::GzDecoder::new(&gz[..]);
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut d, &mut out).unwrap();
            assert_eq!(out, a.body(), "{route}");
            assert_ne!(a.tag(Coding::Identity), a.tag(Coding::Gzip));
        }
        assert_eq!(changed.len(), site.len());
    }

    /// The per-thread deflate state is reset between documents: a large
    /// document (several output buffer growths) followed by small ones at
    /// both levels all give valid gzip members of exactly their input.
    #[test]
    fn gzip_state_reused() {
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        let docs: [&[u8]; 4] = [&big, b"<p>small</p>", b"", &big[..1000]];
        for level in [1, 6, 1] {
            for d in docs {
                let z = gzip(d, level);
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[..]), &mut out)
                    .unwrap();
                assert_eq!(out, d, "level {level}, {} bytes", d.len());
            }
        }
    }

    /// An article page's spliced gzip (page head, the article's packed body,
    /// tail) is one valid gzip member whose content, CRC and length match
    /// the page rendered whole.
    #[test]
    fn spliced_page_gzip_is_the_whole_page() {
        let s = settings();
        let arts = articles();
        let (site, _) = SiteBuilder::default().build(&arts, 0, &s, t(0));
        for (i, a) in arts.iter().enumerate() {
            let asset = site
                .get(&format!("/{}", render::article_route(&a.slug)))
                .unwrap();
            let near = render::Neighbours {
                older: arts.get(i + 1).map(|a| &**a),
                newer: i.checked_sub(1).map(|i| &*arts[i]),
            };
            let whole = render::article_page(a, near, &s);
            let gz = asset.gzip();
            assert_eq!(gz.len(), asset.gzip_len);
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out)
                .expect("valid gzip: CRC and length checked by the decoder");
            assert_eq!(out, whole, "{}", a.slug);
            assert_eq!(asset.len, whole.len());
            let mut multi = flate2::read::MultiGzDecoder::new(&gz[..]);
            let mut again = Vec::new();
            std::io::Read::read_to_end(&mut multi, &mut again).unwrap();
            assert_eq!(again, whole, "a single member, nothing after it");
        }
    }

    /// A rebuild with the same input renders nothing; an edit re-renders only
    /// the routes that show that article.
    #[test]
    fn incremental_rebuild() {
        let s = settings();
        let mut b = SiteBuilder::default();
        let mut arts = articles();
        b.build(&arts, 0, &s, t(0));
        let (_, changed) = b.build(&arts, 0, &s, t(0));
        assert!(changed.is_empty(), "{changed:?}");
        let mut edited = (*arts[2]).clone();
        edited.hash = 99;
        edited.body_html = crate::article::Body::new("<p>new</p>");
        arts[2] = Arc::new(edited);
        let (_, changed) = b.build(&arts, 0, &s, t(0));
        assert_eq!(
            changed,
            vec![
                "/articles/other/",
                "/atom.xml",
                "/categories/world-news/atom.xml",
                "/categories/world-news/feed.json",
                "/categories/world-news/rss.xml",
                "/feed.json",
                "/rss.xml",
                "/tags/tag-one/atom.xml",
                "/tags/tag-one/feed.json",
                "/tags/tag-one/rss.xml"
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
        );
    }

    /// Article pages are kept from build to build: an unchanged article's
    /// page is the very same asset, an earlier snapshot keeps serving what
    /// it had (pages are shared copy-on-write, never changed under it), a
    /// deleted article's page is gone and reported, and a new slug moves
    /// the page.
    #[test]
    fn pages_kept_across_builds_snapshots_unchanged() {
        let s = settings();
        let mut b = SiteBuilder::default();
        let mut arts = articles();
        let (first, _) = b.build(&arts, 0, &s, t(0));
        let page = |site: &Site, slug: &str| site.get(&format!("/articles/{slug}/")).cloned();
        let old_other = page(&first, "other").unwrap();

        let mut edited = (*arts[2]).clone();
        edited.hash = 99;
        edited.body_html = crate::article::Body::new("<p>new</p>");
        arts[2] = Arc::new(edited);
        let (second, _) = b.build(&arts, 0, &s, t(0));
        assert!(Arc::ptr_eq(
            &page(&first, "plain").unwrap(),
            &page(&second, "plain").unwrap()
        ));
        let new_other = page(&second, "other").unwrap();
        assert!(!Arc::ptr_eq(&old_other, &new_other));
        assert!(Arc::ptr_eq(&page(&first, "other").unwrap(), &old_other));
        assert_eq!(first.len(), second.len());
        assert!(b.removed().is_empty(), "{:?}", b.removed());

        // Deleted, and with it its category's only article.
        let (third, _) = b.build(&arts[..2], 0, &s, t(0));
        assert!(page(&third, "other").is_none());
        assert_eq!(
            b.removed(),
            [
                "/articles/other/",
                "/categories/world-news/",
                "/categories/world-news/atom.xml",
                "/categories/world-news/feed.json",
                "/categories/world-news/rss.xml"
            ]
        );
        assert!(page(&second, "other").is_some());

        // Renamed: the same article under a new slug.
        let mut moved = (*arts[1]).clone();
        moved.slug = "plain-renamed".into();
        let arts = vec![Arc::clone(&arts[0]), Arc::new(moved)];
        let (fourth, changed) = b.build(&arts, 0, &s, t(0));
        assert!(page(&fourth, "plain").is_none());
        assert!(page(&fourth, "plain-renamed").is_some());
        assert!(changed.contains(&"/articles/plain-renamed/".to_string()));
        assert_eq!(b.removed(), ["/articles/plain/"]);
        assert_eq!(
            fourth
                .routes()
                .filter(|(r, _)| r.starts_with("/articles/"))
                .count(),
            2
        );
    }

    /// `n` articles, newest first, one an hour, in three categories.
    fn archive(n: usize) -> Vec<Arc<Article>> {
        (0..n)
            .rev()
            .map(|i| {
                article(
                    &format!("a{i:04}"),
                    &format!("Article {i}"),
                    &format!("2025-01-{:02}T{:02}:00:00+00:00", 1 + i / 24, i % 24),
                    ["Red", "Green", "Blue"][i % 3],
                )
            })
            .collect()
    }

    /// One new article re-renders the same few routes however long the
    /// archive (its page, its neighbour's, the feeds and front pages it is
    /// in and, once in `page_size`, a new archive page per listing and the
    /// one before it); every other listing page is the very same asset as
    /// before.
    #[test]
    fn a_new_article_renders_a_bounded_set() {
        let s = Settings {
            page_size: 3,
            ..settings()
        };
        let mut counts = Vec::new();
        for n in [60, 61, 62, 600, 601, 602] {
            let arts = archive(n + 1);
            let mut b = SiteBuilder::default();
            let (before, _) = b.build(&arts[1..], 0, &s, t(0));
            let (after, changed) = b.build(&arts, 0, &s, t(0));
            for route in [
                "/page/1/",
                "/categories/red/page/1/",
                "/tags/tag-one/page/2/",
            ] {
                assert!(
                    Arc::ptr_eq(before.get(route).unwrap(), after.get(route).unwrap()),
                    "{n}: {route} re-rendered"
                );
            }
            let lists = changed
                .iter()
                .filter(|r| !r.starts_with("/articles/") && r.ends_with('/'))
                .count();
            // Three listings (all, its category, its tag), each its front
            // page, or that and a new archive page and the one before it.
            assert!(lists <= 3 * 3, "{n}: {changed:?}");
            assert!(b.removed().is_empty(), "{:?}", b.removed());
            counts.push(changed.len());
        }
        assert_eq!(
            counts[..3],
            counts[3..],
            "independent of the archive's length"
        );
    }

    /// Archive pages of every feed (RFC 5005): one new article re-renders
    /// no closed page (the very same asset, bytes and ETag) unless a page
    /// closes, and then only the new page and its older neighbour (its
    /// `next-archive` link, RSS and Atom), in each feed it is in;
    /// however long the archive. They are served with their own long
    /// `max-age`, on 304s too, and are no WebSub topic (no `Link`).
    #[test]
    fn archive_pages_stay_put() {
        let s = Settings {
            max_items: 4,
            archive_page_size: 3,
            archive_max_age: 7200,
            ..settings()
        };
        let archived = |changed: &[String]| -> Vec<String> {
            changed
                .iter()
                .filter(|r| r.contains("/archive/"))
                .cloned()
                .collect()
        };
        let mut counts = Vec::new();
        // 61 + 1 closes no page of the main feed ((62 - 4) / 3 = 19 and 1
        // over); 60 + 1 closes its page 19.
        for n in [61, 60, 241, 240] {
            let arts = archive(n + 1);
            let mut b = SiteBuilder::default();
            let (before, _) = b.build(&arts[1..], 0, &s, t(0));
            let (after, changed) = b.build(&arts, 0, &s, t(0));
            for route in [
                "/archive/atom/1.xml",
                "/archive/rss/5.xml",
                "/archive/json/10.json",
                "/categories/red/archive/atom/2.xml",
                "/tags/tag-one/archive/rss/3.xml",
            ] {
                assert!(
                    Arc::ptr_eq(before.get(route).unwrap(), after.get(route).unwrap()),
                    "{n}: {route} re-rendered"
                );
            }
            let pages = archived(&changed);
            if (n + 1 - 4) % 3 != 0 {
                // Neither the main feed nor its tag closes a page; its
                // category (every third article) may.
                assert!(
                    pages.iter().all(|r| r.starts_with("/categories/")),
                    "{n}: {pages:?}"
                );
            } else {
                // The new page in every format; the one before it in RSS
                // and Atom (`next-archive`), not in JSON Feed, whose pages
                // link only to older ones.
                let k = (n + 1 - 4) / 3;
                for route in [
                    format!("/archive/rss/{k}.xml"),
                    format!("/archive/atom/{k}.xml"),
                    format!("/archive/json/{k}.json"),
                    format!("/archive/rss/{}.xml", k - 1),
                    format!("/archive/atom/{}.xml", k - 1),
                ] {
                    assert!(pages.contains(&route), "{n}: {route} in {pages:?}");
                }
                assert!(!pages.contains(&format!("/archive/json/{}.json", k - 1)));
            }
            assert!(pages.len() <= 3 * 5, "{n}: {pages:?}");
            assert!(b.removed().is_empty(), "{:?}", b.removed());
            counts.push(changed.len());
            let page = after.get("/archive/atom/1.xml").unwrap();
            assert!(page.link.is_none());
            for status in [http::StatusCode::OK, http::StatusCode::NOT_MODIFIED] {
                let h = page.headers(Coding::Gzip, status, &after.cache_control);
                assert_eq!(h[http::header::CACHE_CONTROL], "public, max-age=7200");
            }
            let feed = after.get("/atom.xml").unwrap();
            let h = feed.headers(Coding::Identity, http::StatusCode::OK, &after.cache_control);
            assert_eq!(h[http::header::CACHE_CONTROL], "public, max-age=300");
        }
        assert_eq!(
            counts[..2],
            counts[2..],
            "independent of the archive's length"
        );
    }

    /// Removing the oldest article shifts every closed page: they are
    /// re-rendered, and a page no longer needed is removed.
    #[test]
    fn archive_pages_follow_a_removal() {
        let s = Settings {
            max_items: 4,
            archive_page_size: 3,
            ..settings()
        };
        let arts = archive(10);
        let mut b = SiteBuilder::default();
        let (site, _) = b.build(&arts, 0, &s, t(0));
        assert!(site.get("/archive/rss/2.xml").is_some());
        let (site, changed) = b.build(&arts[..9], 0, &s, t(0));
        assert!(site.get("/archive/rss/2.xml").is_none());
        assert!(changed.contains(&"/archive/rss/1.xml".to_string()));
        assert!(
            b.removed().contains(&"/archive/rss/2.xml".to_string()),
            "{:?}",
            b.removed()
        );
    }

    /// Editing what a listing shows of an article (its title) re-renders
    /// the one page it is listed on in each listing, its own page and its
    /// neighbours' (which name it); editing only its body, its page alone
    /// among the pages.
    #[test]
    fn an_edit_renders_the_pages_that_show_it() {
        let s = Settings {
            page_size: 3,
            ..settings()
        };
        let mut arts = archive(30);
        let mut b = SiteBuilder::default();
        b.build(&arts, 0, &s, t(0));
        // Article 10: main page 4 (articles 9–11), Green page 2 (10, 13,
        // 16 of 1, 4, … 28), tag page 4.
        let at = arts.iter().position(|a| a.slug == "a0010").unwrap();
        let mut edited = (*arts[at]).clone();
        edited.title = "Article ten, retitled".into();
        edited.hash = 77;
        arts[at] = Arc::new(edited);
        let (_, changed) = b.build(&arts, 0, &s, t(0));
        let pages: Vec<&str> = changed
            .iter()
            .map(String::as_str)
            .filter(|r| r.ends_with('/'))
            .collect();
        assert_eq!(
            pages,
            [
                "/articles/a0009/",
                "/articles/a0010/",
                "/articles/a0011/",
                "/categories/green/page/2/",
                "/page/4/",
                "/tags/tag-one/page/4/"
            ]
        );
        let mut edited = (*arts[at]).clone();
        edited.body_html = crate::article::Body::new("<p>Other words.</p>");
        edited.hash = 78;
        arts[at] = Arc::new(edited);
        let (_, changed) = b.build(&arts, 0, &s, t(0));
        let pages: Vec<&str> = changed
            .iter()
            .map(String::as_str)
            .filter(|r| r.ends_with('/'))
            .collect();
        assert_eq!(pages, ["/articles/a0010/"]);
    }

    /// An old permalink holds a redirect page (a file of the output, not
    /// a page served): it replaces the article's page without the route
    /// being reported removed, is removed when no longer wanted, and a
    /// page published at that slug again wins. Gone permalinks are known.
    #[test]
    fn redirects_and_gone_permalinks() {
        let s = settings();
        let mut b = SiteBuilder::default();
        let arts = articles();
        b.build(&arts, 0, &s, t(0));
        let mut renamed = (*arts[1]).clone();
        renamed.slug = "plain-2".into();
        let now = vec![
            Arc::clone(&arts[0]),
            Arc::new(renamed),
            Arc::clone(&arts[2]),
        ];
        b.set_former(
            &[("plain".into(), Arc::clone(&now[1]))],
            &["old-gone".into()],
        );
        let (site, changed) = b.build(&now, 0, &s, t(0));
        let m = site.moved("/articles/plain/").expect("a redirect");
        assert_eq!(
            m.headers["location"],
            "https://news.example.org/articles/plain-2/"
        );
        assert!(site.get("/articles/plain/").is_none(), "not a page");
        assert!(site.file("/articles/plain/").is_some(), "but a file");
        assert!(site.routes().any(|(r, _)| r == "/articles/plain/"));
        assert!(changed.contains(&"/articles/plain/".to_string()));
        assert!(b.removed().is_empty(), "{:?}", b.removed());
        assert!(site.is_gone("/articles/old-gone/") && !site.is_gone("/articles/plain/"));
        let body = String::from_utf8(m.asset.body().to_vec()).unwrap();
        assert!(
            body.contains("url=https://news.example.org/articles/plain-2/"),
            "{body}"
        );

        let (again, changed) = b.build(&now, 0, &s, t(0));
        assert!(changed.is_empty(), "{changed:?}");
        assert!(Arc::ptr_eq(
            &again.moved("/articles/plain/").unwrap().asset,
            &m.asset
        ));

        b.set_former(&[], &[]);
        let (site, _) = b.build(&now, 0, &s, t(0));
        assert!(site.moved("/articles/plain/").is_none());
        assert_eq!(b.removed(), ["/articles/plain/"]);

        b.set_former(&[("plain".into(), Arc::clone(&now[1]))], &[]);
        b.build(&now, 0, &s, t(0));
        b.set_former(&[], &[]);
        let (site, _) = b.build(&arts, 0, &s, t(0));
        assert!(site.get("/articles/plain/").is_some());
        assert_eq!(
            b.removed(),
            ["/articles/plain-2/"],
            "the page took its route back"
        );
    }

    /// A referenced file is served as it is (no gzip form for an image,
    /// one for SVG, which is also sandboxed), listed among the routes with
    /// a file, reused while unchanged, and reported removed when gone.
    #[test]
    fn referenced_files_are_assets() {
        let s = settings();
        let media = |bytes: &'static [u8], ty, compressible| {
            Arc::new(crate::article::Media {
                bytes: Bytes::from_static(bytes),
                media_type: ty,
                compressible,
                modified: t(1_700_000_000),
                hash: xxh3_128(bytes),
            })
        };
        let png = media(b"\x89PNG....", "image/png", false);
        let svg = media(
            b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
            "image/svg+xml",
            true,
        );
        let mut b = SiteBuilder::default();
        b.set_media(&[
            ("/articles/plain/a.png".into(), Arc::clone(&png)),
            ("/articles/plain/m.svg".into(), Arc::clone(&svg)),
        ]);
        let (site, changed) = b.build(&articles(), 0, &s, t(0));
        assert!(changed.contains(&"/articles/plain/a.png".to_string()));
        let cc = &site.cache_control;
        let a = site.get("/articles/plain/a.png").unwrap();
        assert!(!a.has_gzip());
        assert_eq!(a.body(), &b"\x89PNG...."[..]);
        assert_eq!(a.last_modified, t(1_700_000_000));
        let h = a.headers(Coding::Identity, http::StatusCode::OK, cc);
        assert_eq!(h["content-type"], "image/png");
        assert!(!h.contains_key("content-security-policy"));
        let m = site.get("/articles/plain/m.svg").unwrap();
        assert!(m.has_gzip() && m.gzip_len > 0);
        let h = m.headers(Coding::Gzip, http::StatusCode::OK, cc);
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .ends_with("sandbox"));
        assert!(site.routes().any(|(r, _)| r == "/articles/plain/m.svg"));

        let (again, changed) = b.build(&articles(), 0, &s, t(0));
        assert!(changed.is_empty(), "{changed:?}");
        assert!(Arc::ptr_eq(again.get("/articles/plain/a.png").unwrap(), a));
        b.set_media(&[("/articles/plain/m.svg".into(), svg)]);
        let (gone, _) = b.build(&articles(), 0, &s, t(0));
        assert!(gone.get("/articles/plain/a.png").is_none());
        assert_eq!(b.removed(), ["/articles/plain/a.png"]);
    }

    /// Deleting the newest article changes the feed but must not move its
    /// Last-Modified backwards: it becomes `now`.
    #[test]
    fn last_modified_never_moves_back() {
        let s = settings();
        let mut b = SiteBuilder::default();
        let arts = articles();
        let (site, _) = b.build(&arts, 0, &s, t(0));
        let before = site.get("/rss.xml").unwrap().last_modified;
        let now = before + Duration::from_secs(3600);
        let (site, _) = b.build(&arts[1..], 0, &s, now);
        assert_eq!(site.get("/rss.xml").unwrap().last_modified, now);
    }
}
