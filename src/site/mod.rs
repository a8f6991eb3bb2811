//! `Site`: the immutable snapshot readers are served from — route →
//! [`Asset`] (bytes, gzip twin, validators, media type; for feeds, the
//! index and OPML a brotli form made after publication), built from the
//! renderers' output. [`SiteBuilder`] re-renders only routes whose inputs
//! changed and keeps `Last-Modified` moving forward per route;
//! [`write_to`] mirrors a snapshot under the output directory, each file via
//! temp file + rename, only when its bytes changed, each with a `.gz` twin.
//! Besides the rendered documents, a snapshot holds the redirect pages at
//! renamed articles' old permalinks, the permalinks of articles gone
//! and the pages and feeds of labels gone (410), and the files articles reference (`media.rs`).
//! Uses `render` and `article`.
//!
//! # Layout
//!
//! - `mod.rs`: [`Site`], the article-page shards, [`Damage`].
//! - `build.rs`: the incremental [`SiteBuilder`].
//! - `manifest.rs`: what each file of the output directory was rendered
//!   from, so that a restart takes it from disk.
//! - `asset.rs`: [`Asset`], validators, ready headers and each route's
//!   cache policy (the site's `Cache-Control`, or a route's own, as closed
//!   archive pages have).
//! - `encode.rs`: the gzip twins and the deflate state article pages share.
//! - `media.rs`: the files articles reference.
//! - `mirror.rs`: [`write_to`], pruning, atomic writes.

use rustc_hash::FxHashMap as HashMap;
use std::path::PathBuf;
use std::sync::Arc;

mod asset;
mod build;
mod encode;
mod manifest;
mod media;
mod mirror;

pub use asset::{cache_control, Asset, Br, Coding, Damaged, Redirect, Tag};
use build::Fingerprint;
pub use build::SiteBuilder;

pub use mirror::{
    atomic_write, output_fingerprint, prune_to, remove_routes, write_to, WriteError, WriteReport,
};

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
    /// The page answered with 410 there, and its headers.
    gone_page: Option<(Arc<Asset>, http::HeaderMap)>,
    /// Pages and feeds of categories and tags no article has any more
    /// (answered 410).
    gone_labels: Arc<rustc_hash::FxHashSet<Arc<str>>>,
    /// The page answered with 410 there, and its headers.
    gone_label_page: Option<(Arc<Asset>, http::HeaderMap)>,
    /// The categories and tags published, by route folder.
    labels: Arc<LabelNames>,
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
    /// Where a request that found a file-backed page damaged says so.
    damage: Arc<Damage>,
}

/// The categories and tags of a snapshot: route folder
/// (`categories/<slug>/`) → kind and name, as the first article with the
/// label spells it.
pub(crate) type LabelNames = HashMap<Arc<str>, (crate::render::LabelKind, Box<str>)>;

/// File-backed pages a request found damaged (removed, cut or rewritten
/// behind Herald's back), for the publish loop to render and write again.
/// Shared by a builder and every snapshot it makes.
#[derive(Default)]
pub struct Damage {
    routes: std::sync::Mutex<Vec<String>>,
    wake: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Damage").finish_non_exhaustive()
    }
}

/// Damaged routes remembered at most until the publish loop takes them
/// (a flood of requests for broken pages costs no more memory than this).
const MAX_DAMAGED: usize = 1024;

impl Damage {
    /// Notes that `route`'s file no longer holds its page, and wakes the
    /// publish loop.
    pub fn report(&self, route: &str) {
        {
            let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            if routes.len() >= MAX_DAMAGED || routes.iter().any(|r| r == route) {
                return;
            }
            routes.push(route.to_string());
        }
        if let Some(wake) = self.wake.get() {
            wake();
        }
    }

    /// The routes reported since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.routes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Has `wake` called on every new report (once; later calls are
    /// ignored).
    pub fn on_report(&self, wake: impl Fn() + Send + Sync + 'static) {
        let _ = self.wake.set(Box::new(wake));
    }
}

impl Site {
    /// Where requests report file-backed pages found damaged.
    pub fn damage(&self) -> &Arc<Damage> {
        &self.damage
    }

    /// This snapshot with `pages` as its article, listing and archive pages.
    fn with_pages(&self, pages: Pages) -> Site {
        Site {
            docs: self.docs.clone(),
            redirects: self.redirects.clone(),
            media: Arc::clone(&self.media),
            gone: Arc::clone(&self.gone),
            gone_page: self.gone_page.clone(),
            gone_labels: Arc::clone(&self.gone_labels),
            gone_label_page: self.gone_label_page.clone(),
            labels: Arc::clone(&self.labels),
            pages,
            not_found: self.not_found.clone(),
            not_found_headers: self.not_found_headers.clone(),
            cache_control: self.cache_control.clone(),
            articles: self.articles,
            rejected: self.rejected,
            streamed: Vec::new(),
            stream_report: WriteReport::default(),
            damage: Arc::clone(&self.damage),
        }
    }

    /// How many of the routes are file-backed pages (their bytes on disk,
    /// not in memory).
    pub fn file_backed(&self) -> usize {
        self.pages
            .iter()
            .filter(|(_, p)| !p.asset.in_memory())
            .count()
    }

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
    /// published, or the page or a feed of a category or tag that no
    /// article has any more.
    pub fn is_gone(&self, route: &str) -> bool {
        self.gone.contains(route) || self.gone_labels.contains(route)
    }

    /// The page answered with 410 at `route`, with its headers, when
    /// [`Site::is_gone`] holds for it.
    pub fn gone_page(&self, route: &str) -> Option<&(Arc<Asset>, http::HeaderMap)> {
        if self.gone.contains(route) {
            self.gone_page.as_ref()
        } else if self.gone_labels.contains(route) {
            self.gone_label_page.as_ref()
        } else {
            None
        }
    }

    /// The category or tag whose page or feed `route` is
    /// (`/categories/<slug>/atom.xml`): `"category"` or `"tag"`, and its
    /// name as the first article with it spells it. `None` for any other
    /// route, and for a label not published now.
    pub fn label_of(&self, route: &str) -> Option<(&'static str, &str)> {
        let rest = route.strip_prefix('/')?;
        let folder = rest.find('/')?;
        let slug = rest[folder + 1..].find('/')?;
        let (kind, name) = self.labels.get(&rest[..folder + slug + 2])?;
        let kind = match kind {
            crate::render::LabelKind::Category => "category",
            crate::render::LabelKind::Tag => "tag",
        };
        Some((kind, name))
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

    /// The routes held in memory (the feeds' current documents, the index
    /// and OPML) and their assets: a few, however large the archive.
    pub fn docs(&self) -> impl Iterator<Item = (&str, &Arc<Asset>)> {
        self.docs.iter().map(|(r, a)| (&**r, a))
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
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// What one piece of output was rendered from; equal fingerprints mean
/// equal bytes, so the previous asset is reused without rendering.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::article::Article;
    use crate::render::testdata::{article, articles, settings};
    use crate::render::{self, Settings};
    use bytes::Bytes;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use xxhash_rust::xxh3::xxh3_128;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A large feed read back from its files (as a restart does) learns
    /// where its gzip form's pieces are from the bytes themselves, and
    /// its next version is what compressing it afresh gives; a gzip form
    /// another binary wrote (deflated whole) is left alone.
    #[test]
    fn reloaded_feed_learns_its_cuts() {
        use super::asset::Doc;
        let item = |i: usize, t: &str| {
            let words: String = (0..400)
                .map(|w| format!("w{} ", (w * 7 + i * 13) % 300))
                .collect();
            format!("<item><title>{t} {i}</title><description>{words}</description></item>\n")
        };
        let feed = |edited: usize| {
            let mut d = String::from("<rss><channel>\n");
            for i in 0..40 {
                d.push_str(&item(i, if i == edited { "edited" } else { "title" }));
            }
            d.push_str("</channel></rss>\n");
            d.into_bytes()
        };
        let ct = "application/rss+xml; charset=utf-8";
        let first = Asset::new(Doc::Whole(feed(99)), ct, true, None, t(1));
        assert!(first.len >= 32 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let (plain, gz) = (dir.path().join("rss.xml"), dir.path().join("rss.xml.gz"));
        std::fs::write(&plain, first.body().unwrap()).unwrap();
        std::fs::write(&gz, first.gzip().unwrap()).unwrap();
        let record = first.record(7);
        let again = Asset::reloaded(&plain, &gz, &record, ct, true, None).unwrap();
        assert!(again.make_cuts(), "cut again, the same bytes");
        assert!(!again.make_cuts(), "once");
        let next = Asset::after(Some(&again), Doc::Whole(feed(3)), ct, true, None, t(2));
        let fresh = Asset::new(Doc::Whole(feed(3)), ct, true, None, t(2));
        assert_eq!(next.gzip().unwrap(), fresh.gzip().unwrap());

        // Deflated whole, as an older binary wrote it: no pieces to learn.
        std::fs::write(&gz, super::encode::gzip(&feed(99), 3)).unwrap();
        let mut other = first.record(7);
        let held = std::fs::read(&gz).unwrap();
        other.gzip_len = held.len() as u64;
        other.etag_gzip = xxh3_128(&held);
        let old = Asset::reloaded(&plain, &gz, &other, ct, true, None).unwrap();
        assert!(!old.make_cuts());
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

    /// An asset, one or more per article, stays small: what a file-backed
    /// page costs in memory is about this, plus its path and route.
    #[test]
    fn asset_is_small() {
        let size = std::mem::size_of::<Asset>();
        assert!(size <= 240, "Asset is {size} bytes");
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
            let gz = a.gzip().unwrap();
            let mut d = flate2::read::GzDecoder::new(&gz[..]);
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut d, &mut out).unwrap();
            assert_eq!(out, a.body().unwrap(), "{route}");
            assert_ne!(a.tag(Coding::Identity), a.tag(Coding::Gzip));
        }
        assert_eq!(changed.len(), site.len());
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
            let gz = asset.gzip().unwrap();
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
    /// `max-age`, on 304s and 412s too, are kept gzipped only (the
    /// document inflated on demand, its ETag that of its bytes), and are
    /// no WebSub topic (no `Link`).
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
            for status in [
                http::StatusCode::OK,
                http::StatusCode::NOT_MODIFIED,
                http::StatusCode::PRECONDITION_FAILED,
            ] {
                for coding in [Coding::Identity, Coding::Gzip] {
                    let h = page.headers(coding, status, &after.cache_control);
                    assert_eq!(h[http::header::CACHE_CONTROL], "public, max-age=7200");
                }
            }
            // Kept gzipped only: the document is its gzip form inflated.
            let body = page.body().unwrap();
            assert_eq!(body.len(), page.len);
            assert!(body.starts_with(b"<?xml") && body.ends_with(b"</feed>\n"));
            let mut out = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(&page.gzip().unwrap()[..]),
                &mut out,
            )
            .unwrap();
            assert_eq!(out, body);
            assert_eq!(page.tag(Coding::Identity), Tag::new(xxh3_128(&body)));
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

    /// The page and the three feeds of a label known but published no
    /// more are gone, with their own 410 page; a label published is not,
    /// and is among the builder's labels, named; one published again is
    /// gone no more.
    #[test]
    fn labels_known_and_gone() {
        let s = settings();
        let mut b = SiteBuilder::default();
        let arts = articles();
        b.set_labels_known(&["tags/gone-tag/".into(), "tags/tag-one/".into()]);
        b.set_former(&[], &["old".into()]);
        let (site, _) = b.build(&arts, 0, &s, t(0));
        assert!(b.labels().any(|l| l == "tags/tag-one/"));
        assert!(b.labels().all(|l| l != "tags/gone-tag/"));
        for route in [
            "/tags/gone-tag/",
            "/tags/gone-tag/rss.xml",
            "/tags/gone-tag/atom.xml",
            "/tags/gone-tag/feed.json",
        ] {
            assert!(site.is_gone(route), "{route}");
            let (page, _) = site.gone_page(route).expect("a 410 page");
            let body = String::from_utf8(page.body().unwrap().to_vec()).unwrap();
            assert!(body.contains("category or tag"), "{body}");
        }
        for route in [
            "/tags/tag-one/",
            "/tags/tag-one/rss.xml",
            "/tags/gone-tag/page/2/",
        ] {
            assert!(!site.is_gone(route), "{route}");
        }
        assert_eq!(
            site.label_of("/tags/tag-one/atom.xml"),
            Some(("tag", "tag one"))
        );
        assert_eq!(site.label_of("/tags/tag-one/"), Some(("tag", "tag one")));
        for route in [
            "/rss.xml",
            "/tags/gone-tag/rss.xml",
            "/tags/",
            "/articles/old/",
        ] {
            assert_eq!(site.label_of(route), None, "{route}");
        }
        let (page, _) = site.gone_page("/articles/old/").expect("a 410 page");
        let body = String::from_utf8(page.body().unwrap().to_vec()).unwrap();
        assert!(body.contains("This article has been removed."), "{body}");

        let mut tagged = (*arts[0]).clone();
        tagged.tags.push("Gone tag".into());
        let now = vec![Arc::new(tagged), Arc::clone(&arts[1]), Arc::clone(&arts[2])];
        let (site, _) = b.build(&now, 0, &s, t(0));
        assert!(site.get("/tags/gone-tag/rss.xml").is_some());
        assert!(!site.is_gone("/tags/gone-tag/rss.xml"));
        assert!(b.labels().any(|l| l == "tags/gone-tag/"));
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
        let body = String::from_utf8(m.asset.body().unwrap().to_vec()).unwrap();
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
        assert_eq!(a.body().unwrap(), &b"\x89PNG...."[..]);
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
