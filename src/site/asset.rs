//! [`Asset`]: one servable document with everything a response needs
//! precomputed — its bytes and gzip form (`encode.rs`), strong validators,
//! `Last-Modified`, and the ready response headers with the route's own
//! cache policy (`Cache-Control` of the site, or of the route, as closed
//! archive pages have); the headers of the 404, 410 and 301 answers.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

use super::encode::{
    cut_marker, gzip, gzip_cut, Cuts, CUT_MIN_LEN, MEDIA_GZIP_LEVEL, PAGE_DEFLATE, WHOLE_GZIP_LEVEL,
};
use crate::article::Article;
use crate::render;

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
    pub(super) etag: u128,
    /// 128-bit hash behind the `ETag` of the gzip form.
    pub(super) etag_gzip: u128,
    /// Response headers ready to copy, for the documents fetched over and
    /// over (feeds, the index, OPML): built once per publish, so a
    /// response clones a header map instead of formatting and inserting
    /// each header. Article pages, one per article and rarely fetched,
    /// build theirs per request and save ~2 KB each.
    pub(super) ready: Option<Box<Ready>>,
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
    /// Boxed: only feeds, the index and OPML ever have one, and inline it
    /// would make every asset (one or more per article) ~260 bytes larger.
    pub(super) br: std::sync::OnceLock<Option<Box<Br>>>,
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
pub(super) struct Ready {
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
    pub(super) fn new(h: u128) -> Tag {
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

pub(super) fn http_date_value(t: SystemTime) -> http::HeaderValue {
    http::HeaderValue::from_str(&httpdate::fmt_http_date(t))
        .expect("an HTTP date is a valid header value")
}

/// How an asset's bytes are held.
#[derive(Debug)]
pub(super) enum Form {
    /// Feeds, the index, OPML: the document and its gzip form, compressed
    /// once at publish time; a feed's gzip form in pieces, with where it
    /// was cut, so its next version reuses the pieces that did not change
    /// (see `encode::gzip_cut`).
    Whole {
        identity: Bytes,
        gzip: Bytes,
        /// Set when compressed; for a feed read from disk at start,
        /// after publication (see [`Asset::make_cuts`]).
        cuts: std::sync::OnceLock<Box<Cuts>>,
    },
    /// A file an article references, as it is, with no gzip form (an
    /// image or a PDF compresses no further): `gzip_len` is its length, so
    /// gzip is never chosen, and it has no `.gz` twin on disk.
    Plain { identity: Bytes },
    /// A closed archive page: only its gzip form, in memory and on disk
    /// (no uncompressed file beside its `.gz`). There are many (three
    /// formats of every page of every feed: the whole history, several
    /// times over), each rarely fetched and then nearly always with gzip,
    /// so the few requests without it pay an inflate instead of every
    /// page storing its uncompressed bytes (four to five times its gzip
    /// form) for good.
    Gzipped { gzip: Bytes },
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
    /// A page whose bytes live only in the output directory (article,
    /// listing and closed archive pages once written there, and each such
    /// page a restart found there as the manifest recorded it): its `.gz`
    /// twin is read per request and checked against its ETag before a
    /// byte is sent, the document inflated from it for the few requests
    /// without gzip. Memory holds the page's validators, not its bytes,
    /// so the daemon's size follows the live documents, not the archive.
    /// Read on the connection's thread: a page-cached file of a few
    /// kilobytes reads in microseconds, less than a hop to another thread.
    File {
        /// The `.gz` twin.
        gz: Box<std::path::Path>,
        /// The `Cache-Control` its headers carry when it had ready headers
        /// (a listing or archive page); `None`: the site's.
        cache_control: Option<http::HeaderValue>,
        /// False for a closed archive page, whose `.gz` is its only file
        /// (see [`Form::Gzipped`]).
        plain: bool,
    },
}

/// A file-backed document whose file no longer holds its bytes (removed,
/// truncated or rewritten behind Herald's back): never sent; the route is
/// rendered and written again.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct Damaged {
    /// The file.
    pub path: std::path::PathBuf,
    /// What was wrong with it.
    pub why: String,
}

/// What a job renders.
pub(super) enum Doc {
    /// A whole document.
    Whole(Vec<u8>),
    /// A whole document kept only gzipped (see [`Form::Gzipped`]).
    Gzipped(Vec<u8>),
    /// An article page: head, the article's body, tail.
    Page(String, Arc<Article>, String),
    /// A file an article references.
    Media(Arc<crate::article::Media>),
}

impl Asset {
    /// Builds an asset from what a job rendered (see [`Form`]).
    pub(super) fn new(
        doc: Doc,
        content_type: &'static str,
        cors: bool,
        link: Option<http::HeaderValue>,
        last_modified: SystemTime,
    ) -> Asset {
        Asset::after(None, doc, content_type, cors, link, last_modified)
    }

    /// [`Asset::new`] for the next version of `before`: a large feed's
    /// gzip form reuses the pieces of `before`'s that did not change.
    pub(super) fn after(
        before: Option<&Asset>,
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
                    cuts: std::sync::OnceLock::new(),
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
                let (mut gz, cuts) = match cut_marker(content_type) {
                    Some(marker) if body.len() >= CUT_MIN_LEN => {
                        let before = before.and_then(|a| match &a.form {
                            Form::Whole { gzip, cuts, .. } => cuts.get().map(|c| (&gzip[..], &**c)),
                            _ => None,
                        });
                        let (gz, cuts) = gzip_cut(&body, marker, before);
                        (gz, std::sync::OnceLock::from(Box::new(cuts)))
                    }
                    _ => (gzip(&body, WHOLE_GZIP_LEVEL), std::sync::OnceLock::new()),
                };
                gz.shrink_to_fit();
                body.shrink_to_fit();
                let (etag, etag_gzip, len, gzip_len) =
                    (xxh3_128(&body), xxh3_128(&gz), body.len(), gz.len());
                let form = Form::Whole {
                    identity: crate::sendfile::hold(body),
                    gzip: crate::sendfile::hold(gz),
                    cuts,
                };
                (form, len, etag, etag_gzip, gzip_len)
            }
            Doc::Gzipped(body) => {
                let mut gz = gzip(&body, WHOLE_GZIP_LEVEL);
                gz.shrink_to_fit();
                let (etag, etag_gzip, len, gzip_len) =
                    (xxh3_128(&body), xxh3_128(&gz), body.len(), gz.len());
                let form = Form::Gzipped {
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

    /// True for documents made whole at publish time, with ready
    /// headers: feeds, the index, OPML ([`Form::Whole`]) and archive pages
    /// ([`Form::Gzipped`]).
    pub(super) fn is_whole(&self) -> bool {
        matches!(self.form, Form::Whole { .. } | Form::Gzipped { .. })
    }

    /// For a large feed read from disk at start, whose pieces no record
    /// holds (see `encode::gzip_cut`): cuts it again and, when that gives
    /// the very gzip bytes held (the same binary wrote them), keeps where
    /// the pieces are, so that the feed's next version copies them
    /// instead of compressing every piece. Run after publication, off
    /// the edit path, with the brotli forms. Returns true when it did.
    pub fn make_cuts(&self) -> bool {
        let Form::Whole {
            identity,
            gzip,
            cuts,
        } = &self.form
        else {
            return false;
        };
        let Some(marker) = cut_marker(self.content_type).filter(|_| self.len >= CUT_MIN_LEN) else {
            return false;
        };
        if cuts.get().is_some() {
            return false;
        }
        // Read through the file for a file-backed document, as `make_br`.
        let read = |b: &Bytes| {
            let mut v = Vec::with_capacity(b.len());
            std::io::Read::read_to_end(&mut crate::sendfile::reader(b), &mut v).map(|_| v)
        };
        let (Ok(doc), Ok(held)) = (read(identity), read(gzip)) else {
            return false;
        };
        let (again, found) = gzip_cut(&doc, marker, None);
        again == held && cuts.set(Box::new(found)).is_ok()
    }

    /// The brotli form, once made (see [`Asset::make_br`]).
    pub fn br(&self) -> Option<&Br> {
        self.br.get().and_then(Option::as_deref)
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
        self.br.set(br.map(Box::new)).is_ok()
    }

    /// The gzip form, as sent (assembled for article pages: one copy of
    /// a few kilobytes; read and checked for a file-backed page).
    ///
    /// # Errors
    /// A file-backed page whose `.gz` twin no longer holds its bytes.
    pub fn gzip(&self) -> Result<Bytes, Damaged> {
        Ok(match &self.form {
            Form::Whole { gzip, .. } | Form::Gzipped { gzip } => gzip.clone(),
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
            Form::File { gz, .. } => read_checked(gz, self.gzip_len, self.etag_gzip)?,
        })
    }

    /// The uncompressed document (decompressed on demand for the pages
    /// that keep none).
    ///
    /// # Errors
    /// As [`Asset::gzip`].
    pub fn body(&self) -> Result<Bytes, Damaged> {
        Ok(match &self.form {
            Form::Whole { identity, .. } | Form::Plain { identity } => identity.clone(),
            // Herald's own gzip: a 10-byte header, raw deflate, an 8-byte
            // trailer (see `encode::gzip`).
            Form::Gzipped { gzip } => Bytes::from(crate::article::inflate_parts(
                &[&gzip[10..gzip.len() - 8]],
                self.len,
            )),
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
            // Checked against its ETag first, so it is Herald's own gzip.
            Form::File { .. } => {
                let gzip = self.gzip()?;
                Bytes::from(crate::article::inflate_parts(
                    &[&gzip[10..gzip.len() - 8]],
                    self.len,
                ))
            }
        })
    }

    /// True when the output directory holds only the document's `.gz`
    /// file, no uncompressed one (closed archive pages, see
    /// [`Form::Gzipped`]).
    pub(super) fn gzip_only_on_disk(&self) -> bool {
        match &self.form {
            Form::Gzipped { .. } => true,
            Form::File { plain, .. } => !plain,
            _ => false,
        }
    }

    /// The `.gz` twin a file-backed page is read from.
    pub(super) fn file(&self) -> Option<&std::path::Path> {
        match &self.form {
            Form::File { gz, .. } => Some(gz),
            _ => None,
        }
    }

    /// True when the bytes are held in memory (not [`Form::File`]).
    pub(super) fn in_memory(&self) -> bool {
        !matches!(self.form, Form::File { .. })
    }

    /// The same document, file-backed: its bytes are in `gz` (the `.gz`
    /// twin just written, or found on disk as recorded) and leave memory.
    /// Only for documents with a gzip form.
    pub(super) fn to_file(&self, gz: &std::path::Path) -> Asset {
        debug_assert!(self.has_gzip());
        Asset {
            form: Form::File {
                gz: gz.into(),
                cache_control: self.ready_cache_control().cloned(),
                plain: !self.gzip_only_on_disk(),
            },
            len: self.len,
            gzip_len: self.gzip_len,
            last_modified: self.last_modified,
            etag: self.etag,
            etag_gzip: self.etag_gzip,
            ready: None,
            content_type: self.content_type,
            cors: self.cors,
            link: self.link.clone(),
            sandboxed: self.sandboxed,
            br: std::sync::OnceLock::new(),
        }
    }

    /// A file-backed page as a manifest recorded it (see
    /// `manifest.rs`): `gz` holds its gzip form. `cache_control` and
    /// `plain` as in [`Form::File`].
    pub(super) fn recorded(
        gz: &std::path::Path,
        r: &super::manifest::Record,
        content_type: &'static str,
        cors: bool,
        link: Option<http::HeaderValue>,
        (cache_control, plain): (Option<http::HeaderValue>, bool),
    ) -> Asset {
        let form = Form::File {
            gz: gz.into(),
            cache_control,
            plain,
        };
        Asset::from_record(form, r, content_type, cors, link)
    }

    /// A whole document (a feed, the index, OPML) from its two files as a
    /// manifest recorded them: both read and checked against the
    /// recorded validators, or `None`.
    pub(super) fn reloaded(
        identity: &std::path::Path,
        gz: &std::path::Path,
        r: &super::manifest::Record,
        content_type: &'static str,
        cors: bool,
        link: Option<http::HeaderValue>,
    ) -> Option<Asset> {
        let body = read_checked(identity, r.len as usize, r.etag).ok()?;
        let gzip = read_checked(gz, r.gzip_len as usize, r.etag_gzip).ok()?;
        let form = Form::Whole {
            identity: crate::sendfile::hold(body.to_vec()),
            gzip: crate::sendfile::hold(gzip.to_vec()),
            cuts: std::sync::OnceLock::new(),
        };
        Some(Asset::from_record(form, r, content_type, cors, link))
    }

    /// An asset held as `form` with the validators and date of record `r`.
    fn from_record(
        form: Form,
        r: &super::manifest::Record,
        content_type: &'static str,
        cors: bool,
        link: Option<http::HeaderValue>,
    ) -> Asset {
        Asset {
            form,
            len: r.len as usize,
            gzip_len: r.gzip_len as usize,
            last_modified: UNIX_EPOCH + Duration::from_secs(r.modified),
            etag: r.etag,
            etag_gzip: r.etag_gzip,
            ready: None,
            content_type,
            cors,
            link,
            sandboxed: false,
            br: std::sync::OnceLock::new(),
        }
    }

    /// What a manifest records of this asset, rendered from `fp`.
    pub(super) fn record(&self, fp: u128) -> super::manifest::Record {
        super::manifest::Record {
            fp,
            etag: self.etag,
            etag_gzip: self.etag_gzip,
            len: self.len as u64,
            gzip_len: self.gzip_len as u64,
            modified: self
                .last_modified
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// Sets the final `Last-Modified` and, for a whole document, builds
    /// its response headers with `cache_control`.
    pub(super) fn finish(mut self, lm: SystemTime, cache_control: &http::HeaderValue) -> Asset {
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
    pub(super) fn ready_cache_control(&self) -> Option<&http::HeaderValue> {
        match &self.form {
            Form::File { cache_control, .. } => cache_control.as_ref(),
            _ => self.ready.as_ref().map(|r| &r.cache_control),
        }
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

    pub(super) fn build_headers(
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
            (true, true) => 13,
            (true, false) => 11,
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
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
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

/// The file at `path`, when it is `len` bytes whose hash is `hash`
/// (read through a descriptor opened without following a symbolic link,
/// and at most `len + 1` bytes of it).
fn read_checked(path: &std::path::Path, len: usize, hash: u128) -> Result<Bytes, Damaged> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let damaged = |why: String| Damaged {
        path: path.to_path_buf(),
        why,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| damaged(e.to_string()))?;
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| damaged(e.to_string()))?;
    if buf.len() != len {
        return Err(damaged(format!("{} bytes, {len} expected", buf.len())));
    }
    if xxh3_128(&buf) != hash {
        return Err(damaged("its bytes changed".into()));
    }
    Ok(Bytes::from(buf))
}

pub(super) fn round_secs(t: SystemTime) -> SystemTime {
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
pub(super) fn html_security_headers(h: &mut http::HeaderMap) {
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
pub(super) fn not_found_headers(len: usize) -> http::HeaderMap {
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
pub(super) fn redirect_headers(
    to: &str,
    len: usize,
    cache_control: &http::HeaderValue,
) -> http::HeaderMap {
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
