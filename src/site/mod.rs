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
//!
//! # Layout
//!
//! - `mod.rs`: [`Site`], the article-page shards, [`SiteBuilder`].
//! - `asset.rs`: [`Asset`], validators, ready headers and each route's
//!   cache policy (the site's `Cache-Control`, or a route's own, as closed
//!   archive pages have).
//! - `encode.rs`: the gzip twins and the deflate state article pages share.
//! - `media.rs`: the files articles reference.
//! - `mirror.rs`: [`write_to`], pruning, atomic writes.

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use crate::article::Article;
use crate::render::{self, Feed, Settings};

mod asset;
mod encode;
mod manifest;
mod media;
mod mirror;

pub use asset::{cache_control, Asset, Br, Coding, Damaged, Redirect, Tag};
use asset::{not_found_headers, redirect_headers, round_secs, Doc};

pub use mirror::{
    atomic_write, output_fingerprint, remove_routes, write_to, WriteError, WriteReport,
};
use mirror::{gz_path, same_gzip_on_disk, write_asset};

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
    /// Where a request that found a file-backed page damaged says so.
    damage: Arc<Damage>,
}

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
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
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
    /// `herald serve`: the output directory whose files article, listing
    /// and archive pages are served from once written there
    /// ([`SiteBuilder::file_backed`]).
    files: Option<PathBuf>,
    /// Write those pages as they are rendered, and keep them file-backed
    /// straight away: the first build only, before any snapshot is
    /// served (later ones are served from memory until written, see
    /// [`SiteBuilder::demote`]).
    direct: bool,
    /// The manifest read at start: routes a first build takes from disk
    /// when what they are rendered from has not changed.
    recorded: HashMap<Arc<str>, manifest::Record>,
    /// Routes taken from disk by the last build, by the manifest.
    pub reused: usize,
    /// Documents the last build rendered (some may have come out as they
    /// were).
    pub rendered: usize,
    /// Shared with every snapshot (see [`Damage`]).
    damage: Arc<Damage>,
    /// What a streaming build wrote, as the manifest records it.
    streamed_records: Vec<(Arc<str>, manifest::Record)>,
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

impl ListEntry {
    /// True when this page showed the very same articles (the same `Arc`s,
    /// in order) with the same `shape`: it is then marked as published by
    /// build `generation` and kept as it is.
    fn keep(&mut self, shape: Fingerprint, items: &[&Arc<Article>], generation: u64) -> bool {
        let same = self.shape == shape
            && self.items.len() == items.len()
            && self.items.iter().zip(items).all(|(x, y)| Arc::ptr_eq(x, y));
        if same {
            self.seen = generation;
        }
        same
    }
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
    /// With what the manifest records of it (once written).
    Streamed(Arc<str>, Result<bool, WriteError>, Option<manifest::Record>),
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
    /// Where its bytes live once written.
    held: Held,
    render: Box<dyn Fn() -> Doc + Send + Sync + 'a>,
}

/// Where a route's bytes live in `herald serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// In memory: feeds, the index and OPML (fetched over and over),
    /// redirect pages and referenced files.
    Memory,
    /// In its files once written: an article page (headers per request).
    Page,
    /// In its files once written: a listing or closed archive page (made
    /// with ready headers and its own `Cache-Control`).
    Listing,
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
                    held: Held::Memory,
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
            held: Held::Memory,
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
            } else if self
                .lists
                .get_mut(&route)
                .is_some_and(|e| e.keep(h.digest128(), &p.items, generation))
            {
                continue;
            }
            let shape = h.digest128();
            for a in &p.items {
                fp_listed(&mut h, a);
            }
            listed.insert(Arc::clone(&route), (shape, &p.items));
            let held = if &*route == "/" {
                Held::Memory
            } else {
                Held::Listing
            };
            jobs.push(Job {
                route,
                fp: h.digest128(),
                derived: to_system(p.items.iter().map(|a| a.updated).max()),
                content_type: "text/html; charset=utf-8",
                cors: false,
                link: None,
                cache_control: None,
                held,
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
            // Made once for the formats rendered, so that they share its
            // items' bodies, unpacked and made absolute once.
            let doc: Arc<std::sync::OnceLock<Feed>> = Arc::default();
            for format in render::Format::ALL {
                let route: Arc<str> = format!("/{}", p.feed.archive_route(format, p.number)).into();
                let mut h = shape.clone();
                h.update(route.as_bytes());
                if self
                    .lists
                    .get_mut(&route)
                    .is_some_and(|e| e.keep(h.digest128(), &p.items, generation))
                {
                    continue;
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
                    held: Held::Listing,
                    render: {
                        let doc = Arc::clone(&doc);
                        Box::new(move || {
                            Doc::Gzipped(format.render(doc.get_or_init(|| p.doc()), s))
                        })
                    },
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
                held: Held::Page,
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
                held: Held::Memory,
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
            // A route the manifest names has its date there: no stat.
            let recorded = &self.recorded;
            self.floors = jobs
                .par_iter()
                .filter_map(|j| match recorded.get(&j.route) {
                    Some(r) => Some((
                        Arc::clone(&j.route),
                        UNIX_EPOCH + Duration::from_secs(r.modified),
                    )),
                    None => std::fs::metadata(dir.join(file_of(&j.route)))
                        .and_then(|m| m.modified())
                        .ok()
                        .map(|t| (Arc::clone(&j.route), t)),
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
        let recorded = &self.recorded;
        let files = self.files.as_deref();
        let direct = files.filter(|_| self.direct);
        let reused = std::sync::atomic::AtomicUsize::new(0);
        let rendered = std::sync::atomic::AtomicUsize::new(0);
        let run = |j: Job<'_>| -> Rendered {
            let before = prev(&j.route);
            if let Some((fp, asset)) = before {
                if fp == j.fp {
                    return Rendered::Kept(j.route, j.fp, Arc::clone(asset), false);
                }
            }
            // Rendered from the same inputs before Herald stopped, and its
            // files still as the manifest recorded them: taken from disk.
            if let (None, Some(dir)) = (before, files) {
                let found = recorded
                    .get(&j.route)
                    .filter(|r| r.fp == j.fp)
                    .and_then(|r| recorded_asset(dir, &j, r, &cache_control));
                if let Some(asset) = found {
                    reused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Rendered::Kept(j.route, j.fp, Arc::new(asset), false);
                }
            }
            // Rendered with a provisional date; the real one depends on
            // whether the bytes changed.
            let cc = j.cache_control.as_ref().unwrap_or(&cache_control);
            rendered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                let asset = fresh.finish(lm, cc);
                let record = asset.has_gzip().then(|| asset.record(j.fp));
                if same_on_disk && gz_there() {
                    return Rendered::Streamed(j.route, Ok(false), record);
                }
                let written = write_asset(dir, &j.route, &asset);
                let record = record.filter(|_| written.is_ok());
                return Rendered::Streamed(j.route, written, record);
            }
            let asset = fresh.finish(lm, cc);
            if let Some(dir) = direct {
                // Nothing is served yet: a page is written now (unless its
                // files hold it already) and kept as its file. If it cannot
                // be written, it is served from memory and the output
                // directory's retries write it. New is what was written.
                if j.held != Held::Memory {
                    if let Ok(written) = write_asset(dir, &j.route, &asset) {
                        let gz = gz_path(&dir.join(file_of(&j.route)));
                        let file = Arc::new(asset.to_file(&gz));
                        return Rendered::Kept(j.route, j.fp, file, written);
                    }
                } else if same_on_disk {
                    return Rendered::Kept(j.route, j.fp, Arc::new(asset), false);
                }
            }
            Rendered::Kept(j.route, j.fp, Arc::new(asset), true)
        };
        // Streaming, article pages go first: a reader of the directory
        // never finds a feed or the index linking to a page not yet there.
        let (first, then): (Vec<Job<'_>>, Vec<Job<'_>>) = if stream_to.is_some() || direct.is_some()
        {
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
        self.reused = reused.into_inner();
        self.rendered = rendered.into_inner();
        // The manifest serves the first build only; the direct writes too.
        self.recorded = HashMap::default();
        self.direct = false;

        let mut changed = Vec::new();
        let mut streamed = Vec::new();
        let mut stream_report = WriteReport::default();
        let mut new_docs = HashMap::with_capacity_and_hasher(self.docs.len(), Default::default());
        let mut new_redirects: HashMap<Arc<str>, (Fingerprint, Arc<Redirect>)> = HashMap::default();
        let mut new_media: HashMap<Arc<str>, (Fingerprint, Arc<Asset>)> = HashMap::default();
        for r in results {
            let (route, fp, asset, fresh) = match r {
                Rendered::Kept(route, fp, asset, fresh) => (route, fp, asset, fresh),
                Rendered::Streamed(route, result, record) => {
                    if let Some(r) = record {
                        self.streamed_records.push((Arc::clone(&route), r));
                    }
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
                damage: Arc::clone(&self.damage),
            },
            changed,
        )
    }

    /// Serves article, listing and closed archive pages from their files
    /// under `dir` once written there, and takes from the manifest in
    /// `state_dir` the pages whose inputs did not change while Herald was
    /// stopped (see `manifest.rs`). The first build writes the pages it
    /// renders as it goes; later ones hand them to [`SiteBuilder::demote`]
    /// once the output directory holds them.
    pub fn file_backed(mut self, dir: &Path, state_dir: &Path) -> SiteBuilder {
        self.recorded = manifest::load(&manifest::path_in(state_dir), dir);
        self.files = Some(dir.to_path_buf());
        self.direct = true;
        self
    }

    /// The snapshot `site` (this builder's last) with the pages among
    /// `routes` that are held in memory made file-backed, now that the
    /// output directory holds their bytes; `None` when there were none.
    pub fn demote(&mut self, site: &Site, routes: Option<&[String]>) -> Option<Site> {
        let dir = self.files.as_deref()?;
        let mut any = false;
        let all: Vec<String>;
        let routes = match routes {
            Some(r) => r,
            None => {
                all = self
                    .routes
                    .iter()
                    .filter(|(_, p)| p.asset.in_memory())
                    .map(|(r, _)| r.to_string())
                    .collect();
                &all
            }
        };
        for route in routes {
            let Some(page) = self.routes.get(route) else {
                continue;
            };
            if !page.asset.in_memory() || !page.asset.has_gzip() {
                continue;
            }
            let gz = gz_path(&dir.join(file_of(route)));
            let page = Page {
                fp: page.fp,
                asset: Arc::new(page.asset.to_file(&gz)),
            };
            self.routes.insert(Arc::from(route.as_str()), page);
            any = true;
        }
        any.then(|| site.with_pages(self.routes.clone()))
    }

    /// Where requests report damaged pages; shared with every snapshot.
    pub fn damage(&self) -> &Arc<Damage> {
        &self.damage
    }

    /// Reports damage to `damage` (shared with an earlier builder).
    pub fn with_damage(mut self, damage: Arc<Damage>) -> SiteBuilder {
        self.damage = damage;
        self
    }

    /// Forgets what the last build made of `routes`, so the next one
    /// renders them again (their files were found damaged).
    pub fn forget(&mut self, routes: &[String]) {
        for route in routes {
            self.routes.remove(route);
            self.lists.remove(route.as_str());
            self.docs.remove(route.as_str());
        }
        self.pages
            .retain(|_, p| !routes.iter().any(|r| *r == *p.route));
    }

    /// Saves what the output directory holds, route by route, as the
    /// manifest in `state_dir` (see `manifest.rs`). Only for a builder
    /// whose last snapshot was written whole.
    ///
    /// # Errors
    /// The manifest cannot be written.
    pub fn save_manifest(&self, state_dir: &Path) -> std::io::Result<usize> {
        let Some(dir) = self.files.as_ref().or(self.stream_to.as_ref()) else {
            return Ok(0);
        };
        let streamed = self.streamed_records.iter().map(|(r, m)| (&**r, *m));
        let docs = self
            .docs
            .iter()
            .filter(|(_, (_, a))| a.has_gzip())
            .map(|(r, (fp, a))| (&**r, a.record(*fp)));
        let pages = self
            .routes
            .iter()
            .filter(|(_, p)| p.asset.has_gzip())
            .map(|(r, p)| (&**r, p.asset.record(p.fp)));
        manifest::save(
            &manifest::path_in(state_dir),
            dir,
            docs.chain(pages).chain(streamed),
        )
    }
}

/// The asset of job `j` from its files under `dir`, when they are as the
/// manifest's record `r` says (size and date; a whole document's bytes
/// are read and checked, a page's when it is sent); `None` otherwise.
fn recorded_asset(
    dir: &Path,
    j: &Job<'_>,
    r: &manifest::Record,
    site_cc: &http::HeaderValue,
) -> Option<Asset> {
    let path = dir.join(file_of(&j.route));
    let gz = gz_path(&path);
    let as_recorded = |p: &Path, len: u64| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            m.is_file()
                && m.len() == len
                && m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    == Some(r.modified)
        })
    };
    if !as_recorded(&path, r.len) || !as_recorded(&gz, r.gzip_len) {
        return None;
    }
    let cc = j.cache_control.as_ref().unwrap_or(site_cc);
    match j.held {
        Held::Page => Some(Asset::recorded(
            &gz,
            r,
            j.content_type,
            j.cors,
            j.link.clone(),
            None,
        )),
        Held::Listing => Some(Asset::recorded(
            &gz,
            r,
            j.content_type,
            j.cors,
            j.link.clone(),
            Some(cc.clone()),
        )),
        Held::Memory => Asset::reloaded(&path, &gz, r, j.content_type, j.cors, j.link.clone())
            .map(|a| a.finish(UNIX_EPOCH + Duration::from_secs(r.modified), cc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{article, articles, settings};
    use bytes::Bytes;
    use xxhash_rust::xxh3::xxh3_128;

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
