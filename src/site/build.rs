//! The incremental [`SiteBuilder`]: plans the jobs of a snapshot (feeds,
//! OPML, listings, closed archive pages, article pages, redirect pages,
//! referenced files), keeps what did not change, renders the rest in
//! parallel, and retires the routes gone; in `herald serve`, takes pages
//! from disk as the manifest recorded them and hands written pages over
//! to their files. Uses the snapshot's types and `render`.

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use super::asset::{cache_control, not_found_headers, redirect_headers, round_secs, Doc};
use super::mirror::{gz_path, same_gzip_on_disk, write_asset};
use super::{
    file_of, manifest, Asset, Damage, Page, Pages, Redirect, Site, WriteError, WriteReport,
};
use crate::article::Article;
use crate::render::{self, Feed, Settings};

pub(super) type Fingerprint = u128;

/// Renders snapshots, reusing what did not change since the previous one.
#[derive(Debug, Default)]
pub struct SiteBuilder {
    /// Feeds, the index and OPML of the last build, with fingerprints.
    pub(super) docs: HashMap<Arc<str>, (Fingerprint, Arc<Asset>)>,
    /// Article pages of the last build by route (what the snapshot
    /// serves), kept from build to build: an edit changes only its own.
    pub(super) routes: Pages,
    /// Numbers the builds; an entry of `pages` not marked with the current
    /// one at the end of a build is gone.
    pub(super) generation: u64,
    /// `Last-Modified` floors per route from an earlier run (file mtimes).
    pub(super) floors: HashMap<Arc<str>, SystemTime>,
    /// Where the floors come from; read once, at the first build.
    pub(super) floor_dir: Option<PathBuf>,
    pub(super) floors_loaded: bool,
    /// The article each page was rendered from, by the address of its
    /// `Arc` (kept alive here, so the address cannot be reused): an
    /// unchanged article (same `Arc`) under unchanged settings is reused
    /// without reading the article at all, so an edit costs O(changed)
    /// renders plus a pointer lookup per article.
    pub(super) pages: HashMap<usize, PageEntry>,
    /// Listing pages (all but the index) of the last build, by route.
    pub(super) lists: HashMap<Arc<str>, ListEntry>,
    /// Routes the last build dropped.
    pub(super) removed: Vec<String>,
    /// One-shot builds (`herald build`): write article pages to this
    /// directory as they are rendered and keep none of them in memory.
    pub(super) stream_to: Option<PathBuf>,
    /// Marked after each document rendered, so re-rendering a large
    /// archive counts as progress, not as a stuck loop.
    pub(super) progress: crate::health::Progress,
    /// Redirect pages of the last build, with fingerprints.
    pub(super) redirects: HashMap<Arc<str>, (Fingerprint, Arc<Redirect>)>,
    /// What the next build serves at old permalinks
    /// ([`SiteBuilder::set_former`]).
    pub(super) moved: Vec<(String, Arc<Article>)>,
    /// Permalinks of articles gone, as of the last build.
    pub(super) gone: Arc<rustc_hash::FxHashSet<Arc<str>>>,
    pub(super) gone_slugs: Vec<String>,
    /// The route folders of every label ever published, for the next
    /// build ([`SiteBuilder::set_labels_known`]).
    pub(super) labels_known: Vec<String>,
    /// The labels the last build published, by route folder, as its
    /// snapshots share them.
    pub(super) labels: Arc<super::LabelNames>,
    /// Pages and feeds of the labels known but not published by the last
    /// build (answered 410), and the folders they were made from.
    pub(super) gone_labels: Arc<rustc_hash::FxHashSet<Arc<str>>>,
    pub(super) gone_label_dirs: Vec<String>,
    /// Files articles reference, for the next build
    /// ([`SiteBuilder::set_media`]).
    pub(super) media_in: Vec<(Arc<str>, Arc<crate::article::Media>)>,
    /// `media_in` changed since the last build.
    pub(super) media_dirty: bool,
    /// The referenced files of the last build, with fingerprints, and as
    /// a snapshot shares them.
    pub(super) media: HashMap<Arc<str>, (Fingerprint, Arc<Asset>)>,
    pub(super) media_site: Arc<HashMap<Arc<str>, Arc<Asset>>>,
    /// The settings the media assets were made with.
    pub(super) media_settings: Fingerprint,
    /// `herald serve`: the output directory whose files article, listing
    /// and archive pages are served from once written there
    /// ([`SiteBuilder::file_backed`]).
    pub(super) files: Option<PathBuf>,
    /// Write those pages as they are rendered, and keep them file-backed
    /// straight away: the first build only, before any snapshot is
    /// served (later ones are served from memory until written, see
    /// [`SiteBuilder::demote`]).
    pub(super) direct: bool,
    /// The manifest read at start: routes a first build takes from disk
    /// when what they are rendered from has not changed.
    pub(super) recorded: HashMap<Arc<str>, manifest::Record>,
    /// Routes taken from disk by the last build, by the manifest.
    pub reused: usize,
    /// Documents the last build rendered (some may have come out as they
    /// were).
    pub rendered: usize,
    /// Shared with every snapshot (see [`Damage`]).
    pub(super) damage: Arc<Damage>,
    /// What a streaming build wrote, as the manifest records it.
    pub(super) streamed_records: Vec<(Arc<str>, manifest::Record)>,
    /// Bodies as feeds show them, made by the last build.
    pub(super) feed_bodies: render::FeedBodies,
    /// Which articles each label holds, for the next build to take when
    /// only articles' texts changed.
    pub(super) label_index: render::LabelIndex,
}

#[derive(Debug, Clone)]
pub(super) struct PageEntry {
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
pub(super) struct ListEntry {
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
pub(super) struct Job<'a> {
    pub(super) route: Arc<str>,
    pub(super) fp: Fingerprint,
    pub(super) derived: SystemTime,
    pub(super) content_type: &'static str,
    pub(super) cors: bool,
    pub(super) link: Option<http::HeaderValue>,
    /// Its own `Cache-Control` (closed archive pages); `None` for the
    /// site's.
    pub(super) cache_control: Option<http::HeaderValue>,
    /// Where its bytes live once written.
    pub(super) held: Held,
    pub(super) render: Box<dyn Fn() -> Doc + Send + Sync + 'a>,
}

/// Where a route's bytes live in `herald serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    /// In memory: feeds, the index and OPML (fetched over and over),
    /// redirect pages and referenced files.
    Memory,
    /// In its files once written: an article page (headers per request).
    Page,
    /// In its files once written: a listing page (made with ready
    /// headers and its own `Cache-Control`).
    Listing,
    /// In its one file once written: a closed archive page, as a listing
    /// page but stored only gzipped (see `Form::Gzipped`).
    Archive,
    /// A file an article references: in memory (or an unlinked file), as
    /// the library read it; no manifest records it.
    Media,
}

impl Held {
    /// True for the pages served from their files once written.
    fn on_disk(self) -> bool {
        matches!(self, Held::Page | Held::Listing | Held::Archive)
    }
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

    /// The route folders (`categories/<slug>/`, `tags/<slug>/`) of every
    /// category and tag ever published: the next [`SiteBuilder::build`]
    /// answers 410 at the page and the feeds of those it publishes no
    /// feed for.
    pub fn set_labels_known(&mut self, known: &[String]) {
        if self.labels_known != known {
            self.labels_known = known.to_vec();
        }
    }

    /// The route folders of the categories and tags the last
    /// [`SiteBuilder::build`] published, in no particular order: what the
    /// state records as ever published.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.labels.keys().map(|l| &**l)
    }

    /// Settles, from the label feeds of this build, the labels published
    /// (with their names) and the pages and feeds of known labels that
    /// are gone. Costs a lookup per label when neither changed.
    fn settle_labels(&mut self, feeds: &[Feed]) {
        let live = feeds
            .iter()
            .filter_map(|f| f.label.as_ref().map(|l| (f.dir.as_str(), l)));
        let same = live.clone().count() == self.labels.len()
            && live.clone().all(|(dir, l)| {
                self.labels
                    .get(dir)
                    .is_some_and(|(kind, name)| *kind == l.kind && **name == l.name)
            });
        if !same {
            self.labels = Arc::new(
                live.map(|(dir, l)| (Arc::from(dir), (l.kind, Box::from(l.name.as_str()))))
                    .collect(),
            );
        }
        let gone = self
            .labels_known
            .iter()
            .filter(|l| !self.labels.contains_key(l.as_str()));
        if !gone.clone().eq(self.gone_label_dirs.iter()) {
            self.gone_label_dirs = gone.cloned().collect();
            self.gone_labels = Arc::new(
                self.gone_label_dirs
                    .iter()
                    .flat_map(|dir| {
                        std::iter::once(String::new())
                            .chain(render::Format::ALL.iter().map(|f| f.file().to_string()))
                            .map(move |file| Arc::from(format!("/{dir}{file}")))
                    })
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
        let feeds = render::feeds_reusing(
            articles,
            s,
            &self.feed_bodies,
            settings_fp,
            &mut self.label_index,
        );
        self.settle_labels(&feeds);
        let list_pages = render::list_pages(articles, &feeds, s.page_size);
        let archive_pages = render::archive_pages(articles, &feeds, s);
        let mut jobs: Vec<Job<'_>> = Vec::with_capacity(articles.len() + feeds.len() * 3 + 3);

        // The plan: every document of the site as a job, those whose
        // inputs are the very same as last time already kept.
        Self::plan_feeds(&feeds, s, settings_fp, &mut jobs);
        self.generation += 1;
        let generation = self.generation;
        let mut listed: HashMap<Arc<str>, (Fingerprint, &[&Arc<Article>])> = HashMap::default();
        self.plan_listings(&list_pages, &feeds, s, settings_fp, &mut listed, &mut jobs);
        self.plan_archives(&archive_pages, s, settings_fp, &mut listed, &mut jobs);
        let page_articles = self.plan_pages(articles, s, settings_fp, &mut jobs);
        let redirect_to = self.plan_redirects(s, settings_fp, &mut jobs);
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
                    None => {
                        let file = dir.join(file_of(&j.route));
                        // A closed archive page has only its `.gz`.
                        let file = if j.held == Held::Archive {
                            gz_path(&file)
                        } else {
                            file
                        };
                        std::fs::metadata(file)
                    }
                    .and_then(|m| m.modified())
                    .ok()
                    .map(|t| (Arc::clone(&j.route), t)),
                })
                .collect();
            self.floors.retain(|_, t| *t > UNIX_EPOCH);
        }

        let (results, reused, rendered) = self.render_jobs(jobs, &cache_control, now);
        self.reused = reused;
        self.rendered = rendered;
        // A one-shot build has no next build to carry bodies to.
        if self.stream_to.is_none() {
            self.feed_bodies = render::FeedBodies::made(&feeds, settings_fp);
        }
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
        let gone_label_page = Asset::new(
            Doc::Whole(render::gone_label_page(s)),
            "text/html; charset=utf-8",
            false,
            None,
            UNIX_EPOCH,
        );
        let gone_label_headers = not_found_headers(gone_label_page.len);
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
                gone_labels: Arc::clone(&self.gone_labels),
                labels: Arc::clone(&self.labels),
                gone_label_page: Some((Arc::new(gone_label_page), gone_label_headers)),
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

    /// Runs the plan in parallel: each job is kept (its inputs unchanged
    /// since the last build, or its files as the manifest recorded them),
    /// or rendered, dated and, when streaming or in the first build of
    /// `serve`, written. Article pages go first when writing. Returns the
    /// results, and how many were taken from disk and how many rendered.
    fn render_jobs<'a>(
        &self,
        jobs: Vec<Job<'a>>,
        cache_control: &http::HeaderValue,
        now: SystemTime,
    ) -> (Vec<Rendered>, usize, usize) {
        let cache_control = cache_control.clone();
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
            let fresh = Asset::after(
                before.map(|(_, a)| &**a),
                (j.render)(),
                j.content_type,
                j.cors,
                j.link,
                j.derived,
            );
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
                let record =
                    (asset.has_gzip() && j.held != Held::Media).then(|| asset.record(j.fp));
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
                if j.held.on_disk() {
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
        (results, reused.into_inner(), rendered.into_inner())
    }

    /// Plans the feeds, three formats each, and OPML.
    fn plan_feeds<'a>(
        feeds: &'a [Feed],
        s: &'a Settings,
        settings_fp: Fingerprint,
        jobs: &mut Vec<Job<'a>>,
    ) {
        // Feeds: three formats per feed.
        for f in feeds {
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
        let feeds_ref = feeds;
        let mut oh = Xxh3::new();
        oh.update(&settings_fp.to_le_bytes());
        for f in feeds {
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
    }

    /// Plans the listing pages: the index and each category's and tag's
    /// pages; a page that shows the very same articles is kept.
    fn plan_listings<'a>(
        &mut self,
        list_pages: &'a [render::ListPage<'a>],
        feeds: &'a [Feed],
        s: &'a Settings,
        settings_fp: Fingerprint,
        listed: &mut HashMap<Arc<str>, (Fingerprint, &'a [&'a Arc<Article>])>,
        jobs: &mut Vec<Job<'a>>,
    ) {
        let generation = self.generation;
        let feeds_ref = feeds;
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
        for f in feeds {
            everything.update(f.title.as_bytes());
            everything.update(f.dir.as_bytes());
            if let Some(l) = &f.label {
                everything.update(l.name.as_bytes());
            }
        }
        let everything = everything.digest128();
        for p in list_pages {
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
    }

    /// Plans the closed archive pages of every feed, in every format; a
    /// page that shows the very same articles is kept.
    fn plan_archives<'a>(
        &mut self,
        archive_pages: &'a [render::ArchivePage<'a>],
        s: &'a Settings,
        settings_fp: Fingerprint,
        listed: &mut HashMap<Arc<str>, (Fingerprint, &'a [&'a Arc<Article>])>,
        jobs: &mut Vec<Job<'a>>,
    ) {
        let generation = self.generation;
        // Closed archive pages of every feed (RFC 5005), in every format,
        // kept like listing pages: a page showing the very same articles
        // (same `Arc`s) with the same links is only marked as still
        // published, so one new article costs the current documents and,
        // once in `archive_page_size`, a new page and its older
        // neighbour's `next-archive` link — not a pass over the archive.
        let archive_cc = self::cache_control(s.archive_max_age);
        for p in archive_pages {
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
                    held: Held::Archive,
                    render: {
                        let doc = Arc::clone(&doc);
                        Box::new(move || {
                            Doc::Gzipped(format.render(doc.get_or_init(|| p.doc()), s))
                        })
                    },
                });
            }
        }
    }

    /// Plans the article pages; a page whose article and neighbours are
    /// the very same is kept. Returns the pages planned, by route.
    fn plan_pages<'a>(
        &mut self,
        articles: &'a [Arc<Article>],
        s: &'a Settings,
        settings_fp: Fingerprint,
        jobs: &mut Vec<Job<'a>>,
    ) -> HashMap<Arc<str>, PageEntry> {
        let generation = self.generation;
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
        page_articles
    }

    /// Plans the redirect pages at renamed articles' old permalinks.
    /// Returns where each goes, by route.
    fn plan_redirects<'a>(
        &self,
        s: &'a Settings,
        settings_fp: Fingerprint,
        jobs: &mut Vec<Job<'a>>,
    ) -> HashMap<Arc<str>, String> {
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
        redirect_to
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
        let gone: rustc_hash::FxHashSet<&str> = routes.iter().map(String::as_str).collect();
        self.pages.retain(|_, p| !gone.contains(&*p.route));
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
        // In route order, so that the same site makes the same file.
        let mut all: Vec<(&str, manifest::Record)> = docs.chain(pages).chain(streamed).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        manifest::save(&manifest::path_in(state_dir), dir, all.into_iter())
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
    // A closed archive page has no uncompressed file.
    let plain = j.held != Held::Archive;
    if (plain && !as_recorded(&path, r.len)) || !as_recorded(&gz, r.gzip_len) {
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
            (None, true),
        )),
        Held::Listing | Held::Archive => Some(Asset::recorded(
            &gz,
            r,
            j.content_type,
            j.cors,
            j.link.clone(),
            (Some(cc.clone()), plain),
        )),
        Held::Memory => Asset::reloaded(&path, &gz, r, j.content_type, j.cors, j.link.clone())
            .map(|a| a.finish(UNIX_EPOCH + Duration::from_secs(r.modified), cc)),
        // Made from the library's copy of the file, never from disk.
        Held::Media => None,
    }
}
