//! The object-storage mirror of a snapshot: every file the output
//! directory holds, as objects in an S3 (or S3-compatible) bucket behind
//! a CDN, with the headers a CDN and a reader need. It shares the disk
//! mirror's "changed/removed" contract ([`Mirror::apply`]): after each
//! publish it is handed the routes that changed and those that are gone,
//! and sends only those. On start (and after any failure, when what the
//! bucket holds is no longer known) it lists the bucket once and compares
//! sizes and MD5s with the snapshot instead.
//!
//! Order within one pass: new article pages, the files they reference,
//! redirect and archive pages first; then feeds, the index, listing pages
//! and OPML; deletions last — a reader of the bucket never meets a feed
//! linking to a page not yet there. A pass that would delete more than
//! `max_deletes` objects, or leave the bucket more than `max_deletes`
//! below its high-water mark ([`Guard`]), deletes none and says so (a
//! wrong prefix, an emptied content directory or deletions made a few at
//! a time must not wipe a bucket); `serve` keeps those objects until their
//! routes come back or the operator confirms those deletions (a
//! confirmation covers the keys held back when it was given, nothing
//! else).
//!
//! `herald serve` runs it in the background ([`Mirror`]): its own thread
//! and runtime, a queue that coalesces publishes (the latest snapshot and
//! the set of routes touched since the last pass: bounded by the site),
//! retries with a doubling wait, one log line when the bucket starts
//! failing and one when it works again. Local publishing and serving
//! never wait for it. `herald publish` runs one pass ([`publish_once`]).
//!
//! Uses `site`, `config`, `health` and `metrics`.
//!
//! # Layout
//!
//! - `mod.rs`: kinds and their cache policy, the plan of a pass, the
//!   background mirror, the one-shot publish.
//! - `guard.rs`: the bucket's high-water mark, kept in `state/`.
//! - `s3.rs`: the bucket: list, PUT with headers, bulk delete.

mod guard;
mod s3;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use rayon::prelude::*;

use crate::config::PublishConfig;
use crate::health::Sink;
use crate::metrics::Metrics;
use crate::site::{file_of, Asset, Site};

pub use guard::{Guard, FILE as GUARD_FILE};
pub use s3::{Bucket, BucketError, Remote};

/// What a route is, for its cache policy and its place in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A feed (`rss.xml`, `atom.xml`, `feed.json`, at the root or a
    /// category's): changes with every article.
    Feed,
    /// The index, a listing page (`/page/2/`, a category's or tag's) or
    /// the OPML list: changes with every article.
    Listing,
    /// An article page, or the redirect page at a renamed article's old
    /// permalink.
    Page,
    /// A file an article references (an image, a PDF).
    Media,
    /// An RFC 5005 archive page (`/archive/atom/3.xml`, also under a
    /// category's or tag's folder): closed, it changes only when an
    /// article on it is edited or removed, or, the newest one, once when
    /// the next page closes.
    Archive,
}

/// `<dir>archive/{rss,atom,json}/<n>.{xml,json}`, `<dir>` the root or a
/// category's or tag's folder (an article's files are never archive
/// pages, whatever their names).
fn is_archive_page(route: &str) -> bool {
    if route.starts_with("/articles/") {
        return false;
    }
    let mut parts = route.rsplit('/');
    let (Some(file), Some(format), Some("archive")) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let ext = match format {
        "rss" | "atom" => ".xml",
        "json" => ".json",
        _ => return false,
    };
    file.strip_suffix(ext)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Kind {
    /// The kind of the document at `route`.
    pub fn of(route: &str) -> Kind {
        if is_archive_page(route) {
            return Kind::Archive;
        }
        let last = route.rsplit('/').next().unwrap_or("");
        if matches!(last, "rss.xml" | "atom.xml" | "feed.json") {
            return Kind::Feed;
        }
        if route == "/" || route == "/feeds.opml" {
            return Kind::Listing;
        }
        if let Some(rest) = route.strip_prefix("/articles/") {
            // `/articles/<slug>/` is the page; below it, its files.
            return match rest.split_once('/') {
                Some((_, "")) | None => Kind::Page,
                Some(_) => Kind::Media,
            };
        }
        if route.ends_with('/') {
            Kind::Listing
        } else {
            Kind::Media
        }
    }

    /// The `Cache-Control` its objects carry: feeds and listings short
    /// (they change with every article), pages and their files longer,
    /// archive pages longest (not `immutable`: an edit to an article on
    /// one changes it).
    pub fn cache_control(self, cfg: &PublishConfig) -> String {
        match self {
            Kind::Feed | Kind::Listing => format!("public, max-age={}", cfg.cache_feeds),
            Kind::Page | Kind::Media => format!("public, max-age={}", cfg.cache_pages),
            Kind::Archive => format!("public, max-age={}", cfg.cache_archive),
        }
    }

    /// Its phase in a pass: what others link to goes first.
    fn phase(self) -> u8 {
        match self {
            Kind::Page | Kind::Media | Kind::Archive => 0,
            Kind::Feed | Kind::Listing => 1,
        }
    }
}

/// The body an object of `asset` holds: the gzip form when `gzip` is on
/// and the document has one (then sent with `Content-Encoding: gzip`).
/// `None` for a file-backed page whose file was damaged behind Herald's
/// back: the object is left as it is until the page is written again.
fn body_of(asset: &Asset, gzip: bool) -> Option<(Bytes, bool)> {
    let body = if gzip && asset.has_gzip() {
        asset.gzip().map(|b| (b, true))
    } else {
        asset.body().map(|b| (b, false))
    };
    match body {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!("publish: not uploading {e}");
            None
        }
    }
}

/// One object to PUT. Its body is made again when it is sent, so a pass
/// holds at most `concurrency` bodies at once.
#[derive(Debug, Clone)]
struct Put {
    route: String,
    key: String,
    kind: Kind,
    size: u64,
}

/// What one pass does.
#[derive(Debug, Default)]
pub struct Plan {
    puts: Vec<Put>,
    /// Keys to delete, sorted.
    pub deletes: Vec<String>,
}

impl Plan {
    /// Keys to PUT, in the order of their phases.
    pub fn put_keys(&self) -> impl Iterator<Item = &str> {
        self.puts.iter().map(|p| p.key.as_str())
    }

    /// Whether the pass does nothing.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// Plans a pass for `site` against what the bucket holds (`remote`):
/// `only` the routes a publish touched, or every route (`None`), whose
/// objects are then compared by size and MD5 and the objects of no route
/// deleted. A touched route the site no longer has is deleted if the
/// bucket holds it, and so is each `held` key (a deletion refused before)
/// the bucket still holds and no touched route has taken back.
pub fn plan(
    bucket: &Bucket,
    cfg: &PublishConfig,
    site: &Site,
    only: Option<&HashSet<String>>,
    remote: &HashMap<String, Remote>,
    held: &HashSet<String>,
) -> Plan {
    let candidates: Vec<(String, Option<&Arc<Asset>>)> = match only {
        Some(routes) => routes.iter().map(|r| (r.clone(), site.file(r))).collect(),
        None => site
            .routes()
            .map(|(r, a)| (r.to_string(), Some(a)))
            .collect(),
    };
    let checked: Vec<(String, String, Option<Put>)> = candidates
        .par_iter()
        .filter_map(|(route, asset)| {
            let file = file_of(route);
            let Some(key) = bucket.key(&file.to_string_lossy()) else {
                tracing::warn!(
                    "bucket: not uploading {}: no object key may have that name",
                    file.display()
                );
                return None;
            };
            Some((route, asset, key))
        })
        .map(|(route, asset, key)| {
            let Some(asset) = asset else {
                return (route.clone(), key, None);
            };
            let Some((body, _)) = body_of(asset, cfg.gzip) else {
                return (route.clone(), key, None);
            };
            let size = body.len() as u64;
            let same = remote
                .get(&key)
                .is_some_and(|r| r.size == size && r.md5 == Some(Md5::digest(&body).into()));
            let put = (!same).then(|| Put {
                route: route.clone(),
                key: key.clone(),
                kind: Kind::of(route),
                size,
            });
            (route.clone(), key, put)
        })
        .collect();
    let mut p = Plan::default();
    let mut local = HashSet::with_capacity(checked.len());
    for (route, key, put) in checked {
        match put {
            Some(put) => {
                local.insert(key);
                p.puts.push(put);
            }
            None if site.file(&route).is_some() => {
                local.insert(key);
            }
            None if remote.contains_key(&key) => p.deletes.push(key),
            None => {}
        }
    }
    if only.is_none() {
        p.deletes
            .extend(remote.keys().filter(|k| !local.contains(*k)).cloned());
    } else {
        p.deletes.extend(
            held.iter()
                .filter(|k| remote.contains_key(*k) && !local.contains(*k))
                .cloned(),
        );
    }
    p.puts
        .sort_by(|a, b| (a.kind.phase(), &a.key).cmp(&(b.kind.phase(), &b.key)));
    p.deletes.sort_unstable();
    p.deletes.dedup();
    p
}

/// An object stored, with the MD5 of its body.
type Stored<'a> = (&'a Put, [u8; 16]);

/// What one pass did.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects stored.
    pub uploaded: usize,
    /// Bytes stored.
    pub bytes: u64,
    /// Objects deleted.
    pub deleted: usize,
    /// Deletions refused by `max_deletes` (none made).
    pub refused: usize,
    /// The keys of those deletions.
    pub kept: Vec<String>,
    /// Objects the bucket holds under the prefix after the pass.
    pub objects: usize,
    /// The most it held since the operator last confirmed a smaller site.
    pub peak: usize,
    /// The deletions were the operator's confirmed ones, made whatever
    /// `max_deletes` says.
    pub confirmed: bool,
}

/// Carries out `plan`: each phase's PUTs, `concurrency` at once, then the
/// deletions, unless `guard` refuses them (more than `max_deletes` at once
/// or below the bucket's high-water mark) and the operator has not
/// confirmed every one of them ([`Guard::covers`]); refused ones are
/// recorded as held for `herald confirm-deletes`. `remote` follows every
/// request that worked. The first failure ends the pass after its phase
/// (so no feed goes up before the pages it links to).
///
/// # Errors
/// A request failed (after the client's own quick retries).
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    bucket: &Bucket,
    cfg: &PublishConfig,
    site: &Site,
    plan: Plan,
    remote: &mut HashMap<String, Remote>,
    guard: &mut Guard,
    sent: &AtomicU64,
) -> Result<Report, BucketError> {
    let mut report = Report::default();
    guard.saw(remote.len());
    for phase in 0..2u8 {
        let puts: Vec<&Put> = plan
            .puts
            .iter()
            .filter(|p| p.kind.phase() == phase)
            .collect();
        let results: Vec<Result<Option<Stored<'_>>, BucketError>> =
            futures::stream::iter(puts.into_iter().map(|put| async move {
                // The route is in the snapshot: the plan was made from it.
                let Some(asset) = site.file(&put.route) else {
                    return Ok(None);
                };
                let Some((body, gzip)) = body_of(asset, cfg.gzip) else {
                    return Ok(None);
                };
                let md5: [u8; 16] = Md5::digest(&body).into();
                bucket
                    .put(
                        &put.key,
                        body,
                        asset.content_type,
                        put.kind.cache_control(cfg),
                        gzip,
                    )
                    .await?;
                sent.fetch_add(1, Relaxed);
                Ok(Some((put, md5)))
            }))
            .buffer_unordered(cfg.concurrency)
            .collect()
            .await;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(None) => {}
                Ok(Some((put, md5))) => {
                    report.uploaded += 1;
                    report.bytes += put.size;
                    remote.insert(
                        put.key.clone(),
                        Remote {
                            size: put.size,
                            md5: Some(md5),
                        },
                    );
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    let present = plan
        .deletes
        .iter()
        .filter(|k| remote.contains_key(*k))
        .count();
    let after = remote.len() - present;
    let confirmed = guard.covers(&plan.deletes);
    if !confirmed && !guard.allows(plan.deletes.len(), after) {
        report.refused = plan.deletes.len();
        report.kept = plan.deletes;
    } else if !plan.deletes.is_empty() {
        let done = bucket.delete(&plan.deletes).await?;
        report.deleted = done.len();
        for k in &done {
            remote.remove(k);
        }
    }
    if confirmed {
        guard.confirmed(remote.len());
    } else {
        guard.hold(&report.kept);
        guard.saw(remote.len());
    }
    report.confirmed = confirmed;
    report.objects = remote.len();
    report.peak = guard.peak();
    Ok(report)
}

/// The line said when a pass refuses its deletions: `n` of them, the
/// bucket left holding `objects` of the `peak` it held at most.
fn refused_line(cfg: &PublishConfig, n: usize, objects: usize, peak: usize) -> String {
    let after = objects.saturating_sub(n);
    let why = if n > cfg.max_deletes {
        format!("more than max_deletes = {} at once", cfg.max_deletes)
    } else {
        format!(
            "it would hold {after} objects, {} fewer than the {peak} it held, and max_deletes = {}",
            peak.saturating_sub(after),
            cfg.max_deletes
        )
    };
    format!(
        "bucket: refusing to delete {n} objects from {} ({why}); nothing was deleted. Check publish.to and the content directory; if the site really shrank, run `herald confirm-deletes`",
        cfg.to
    )
}

/// What `/healthz` says while deletions are held back.
fn held_note(cfg: &PublishConfig, n: usize, objects: usize, peak: usize) -> String {
    format!(
        "the bucket keeps {n} objects whose deletion max_deletes refused: it holds {objects} of the {peak} it held (max_deletes = {}); if the site really shrank, run `herald confirm-deletes`",
        cfg.max_deletes
    )
}

/// What `herald publish` could not do.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A request to the bucket failed.
    #[error("{}", .0.line())]
    Bucket(#[from] BucketError),
    /// The pass would have deleted more than `max_deletes` objects.
    #[error("{0}")]
    Refused(String),
    /// The runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// `herald publish`: one pass mirroring `site` to the target, printing
/// each object it uploads and deletes (`say`); with `dry_run`, only the
/// listing is requested and nothing changes. The bucket's high-water mark
/// is kept in `state_dir` ([`Guard`]); when the operator has confirmed
/// (`herald confirm-deletes`) every deletion this pass would make, they
/// are made whatever `max_deletes` says, and the bucket's new size
/// becomes the mark. Refused deletions are recorded for that command.
///
/// # Errors
/// A request failed, or the deletions were refused (the uploads were
/// made).
pub fn publish_once(
    cfg: &PublishConfig,
    site: &Site,
    state_dir: Option<&std::path::Path>,
    dry_run: bool,
    say: &mut dyn FnMut(String),
) -> Result<Report, PublishError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PublishError::Runtime)?;
    rt.block_on(async {
        let bucket = Bucket::open(cfg)?;
        let mut remote = bucket.list().await?;
        let plan = plan(&bucket, cfg, site, None, &remote, &HashSet::new());
        let verb = if dry_run { "would " } else { "" };
        for k in plan.put_keys() {
            say(format!("{verb}upload {k}"));
        }
        // A dry run writes nothing, not even the mark.
        let mut guard = Guard::open(state_dir, cfg);
        if dry_run {
            guard = guard.read_only();
        }
        let confirm = guard.covers(&plan.deletes);
        guard.saw(remote.len());
        let mut after = remote.len();
        for p in &plan.puts {
            after += usize::from(!remote.contains_key(&p.key));
        }
        let peak = guard.peak().max(after);
        after -= plan.deletes.len();
        let refused = !confirm && !guard.allows(plan.deletes.len(), after);
        for k in &plan.deletes {
            if refused {
                say(format!("refused: delete {k}"));
            } else {
                say(format!("{verb}delete {k}"));
            }
        }
        let objects = after + plan.deletes.len();
        if dry_run {
            let n = plan.deletes.len();
            let report = Report {
                uploaded: plan.puts.len(),
                bytes: plan.puts.iter().map(|p| p.size).sum(),
                deleted: if refused { 0 } else { n },
                refused: if refused { n } else { 0 },
                kept: Vec::new(),
                objects: if refused { objects } else { after },
                peak,
                confirmed: confirm,
            };
            return if refused {
                Err(PublishError::Refused(refused_line(cfg, n, objects, peak)))
            } else {
                Ok(report)
            };
        }
        let report = execute(
            &bucket,
            cfg,
            site,
            plan,
            &mut remote,
            &mut guard,
            &AtomicU64::new(0),
        )
        .await?;
        if report.refused > 0 {
            return Err(PublishError::Refused(refused_line(
                cfg,
                report.refused,
                report.objects,
                report.peak,
            )));
        }
        Ok(report)
    })
}

/// Told after each pass that brought the bucket in line with a snapshot:
/// the snapshot the bucket held before, the one it holds now, and the
/// routes that changed in between (what WebSub pings wait for).
pub type OnSynced = Box<dyn FnMut(Option<&Site>, &Site, &[String]) + Send>;

/// What the publish loop hands over, coalesced.
#[derive(Default)]
struct Queue {
    /// The newest snapshot not yet mirrored.
    site: Option<Arc<Site>>,
    /// Routes changed or removed since the last pass that worked.
    dirty: HashSet<String>,
    /// When the oldest publish not yet in the bucket was made.
    since: Option<Instant>,
    stop: bool,
}

struct Inner {
    queue: Mutex<Queue>,
    wake: tokio::sync::Notify,
}

impl Inner {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Plain data: usable after a panic elsewhere.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The background mirror of `herald serve`.
pub struct Mirror {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mirror")
    }
}

impl Mirror {
    /// Starts mirroring to `cfg`'s target, beginning with a full pass for
    /// `first` (what the bucket holds is unknown), the bucket's
    /// high-water mark kept in `state_dir` ([`Guard`]). `on_synced` is told of
    /// each pass that worked: of the routes it changed, and for the first
    /// one of `first_changed` (the feeds the start-up publish changed
    /// since the last run), with no earlier snapshot.
    ///
    /// # Errors
    /// The client cannot be configured, or the thread cannot start.
    pub fn start(
        cfg: PublishConfig,
        state_dir: &std::path::Path,
        first: Arc<Site>,
        first_changed: Vec<String>,
        metrics: Arc<Metrics>,
        on_synced: Option<OnSynced>,
    ) -> Result<Mirror, PublishError> {
        let bucket = Bucket::open(&cfg)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PublishError::Runtime)?;
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue {
                site: Some(Arc::clone(&first)),
                dirty: first_changed.into_iter().collect(),
                since: Some(Instant::now()),
                ..Queue::default()
            }),
            wake: tokio::sync::Notify::new(),
        });
        let guard = Guard::open(Some(state_dir), &cfg);
        let worker = Worker {
            inner: Arc::clone(&inner),
            bucket,
            cfg,
            metrics,
            synced: first,
            first: true,
            on_synced,
            guard,
            held: HashSet::new(),
            tried: None,
            next_repair: None,
        };
        std::thread::Builder::new()
            .name("herald-bucket".into())
            .spawn(move || rt.block_on(worker.run()))
            .map_err(PublishError::Runtime)?;
        Ok(Mirror { inner })
    }

    /// After a publish: `site` is the new snapshot, `changed` the routes
    /// whose documents are new, `removed` those gone. Returns at once.
    pub fn apply(&self, site: Arc<Site>, changed: &[String], removed: &[String]) {
        let mut q = self.inner.queue();
        q.site = Some(site);
        q.dirty.extend(changed.iter().chain(removed).cloned());
        q.since.get_or_insert_with(Instant::now);
        drop(q);
        self.inner.wake.notify_one();
    }
}

impl Drop for Mirror {
    /// Ends the thread at its next wait; a pass under way is dropped with
    /// the runtime (the next start lists the bucket and converges).
    fn drop(&mut self) {
        self.inner.queue().stop = true;
        self.inner.wake.notify_one();
    }
}

struct Worker {
    inner: Arc<Inner>,
    bucket: Bucket,
    cfg: PublishConfig,
    metrics: Arc<Metrics>,
    /// The snapshot the bucket holds (as of the last pass that worked).
    synced: Arc<Site>,
    /// No pass has worked yet.
    first: bool,
    on_synced: Option<OnSynced>,
    guard: Guard,
    /// Keys whose deletion the guard refused, still in the bucket.
    held: HashSet<String>,
    /// The confirmation ([`Guard::pending`]) a full pass was last made
    /// for: one that did not cover that pass's deletions waits for a pass
    /// whose deletions it covers, without a listing every poll.
    tried: Option<u64>,
    /// When the next pass that lists the whole bucket is due.
    next_repair: Option<tokio::time::Instant>,
}

/// Why the worker wakes.
enum Wake {
    /// A publish: the snapshot, the routes touched and when the oldest of
    /// its publishes was made.
    Publish(Arc<Site>, HashSet<String>, Option<Instant>),
    /// Time to list the whole bucket and repair what drifted, or the
    /// operator confirmed held deletions.
    Repair,
    Stop,
}

/// How often, while deletions are held, the worker looks for the
/// operator's confirmation (a few bytes read from `state/bucket.json`).
const CONFIRM_POLL: Duration = Duration::from_secs(1);

impl Worker {
    /// Waits for the next thing to do.
    async fn next(&mut self) -> Wake {
        loop {
            {
                let mut q = self.inner.queue();
                if q.stop {
                    return Wake::Stop;
                }
                if let Some(site) = q.site.take() {
                    return Wake::Publish(site, std::mem::take(&mut q.dirty), q.since.take());
                }
            }
            let now = tokio::time::Instant::now();
            if self.next_repair.is_some_and(|t| t <= now) {
                return Wake::Repair;
            }
            if !self.held.is_empty() {
                match self.guard.pending() {
                    None => self.tried = None,
                    pending if pending != self.tried => return Wake::Repair,
                    Some(_) => {}
                }
            }
            let mut until = self.next_repair;
            if !self.held.is_empty() {
                let poll = now + CONFIRM_POLL;
                until = Some(until.map_or(poll, |t| t.min(poll)));
            }
            match until {
                Some(t) => {
                    let _ = tokio::time::timeout_at(t, self.inner.wake.notified()).await;
                }
                None => self.inner.wake.notified().await,
            }
        }
    }

    /// Publishes how far the bucket is behind: the routes waiting (in
    /// the queue, and `in_flight` in the pass under way) and since when.
    fn behind(&self, in_flight: usize, in_flight_since: Option<Instant>) {
        let q = self.inner.queue();
        self.metrics.health.set_bucket_behind(
            q.dirty.len() + in_flight,
            earliest(q.since, in_flight_since),
        );
    }

    async fn run(mut self) {
        // What the bucket holds; `None` until listed, and again after a
        // failure (a request may have landed or not; the server may have
        // lost everything) and when a repair is due.
        let mut remote: Option<HashMap<String, Remote>> = None;
        let mut failing: Option<bool> = None;
        let mut failures: u32 = 0;
        let metrics = Arc::clone(&self.metrics);
        let health = &metrics.health;
        loop {
            let (site, dirty, since) = match self.next().await {
                Wake::Stop => return,
                Wake::Publish(site, dirty, since) => (site, dirty, since),
                Wake::Repair => {
                    remote = None;
                    (Arc::clone(&self.synced), HashSet::new(), None)
                }
            };
            let pending = self.guard.pending();
            if pending.is_none() {
                // Spent or withdrawn (here or by `herald publish`): the same
                // keys confirmed again are a new word.
                self.tried = None;
            } else if pending != self.tried {
                // The operator confirmed the deletions held back: a full
                // pass finds what this snapshot would delete, and makes it
                // if that is among them (`execute` asks the guard), taking
                // the bucket's new size as the mark.
                self.tried = pending;
                remote = None;
            }
            self.behind(dirty.len(), since);
            let started = Instant::now();
            let full = remote.is_none();
            if full {
                self.next_repair = self
                    .cfg
                    .repair_interval
                    .map(|d| tokio::time::Instant::now() + d);
            }
            let result = async {
                let mut r = match remote.take() {
                    Some(r) => r,
                    None => self.bucket.list().await?,
                };
                let plan = plan(
                    &self.bucket,
                    &self.cfg,
                    &site,
                    (!full).then_some(&dirty),
                    &r,
                    &self.held,
                );
                let out = execute(
                    &self.bucket,
                    &self.cfg,
                    &site,
                    plan,
                    &mut r,
                    &mut self.guard,
                    &self.metrics.bucket_puts,
                )
                .await;
                if out.is_ok() {
                    remote = Some(r);
                }
                out
            }
            .await;
            match result {
                Ok(report) => {
                    failures = 0;
                    if report.confirmed {
                        tracing::info!(
                            target = %self.cfg.to,
                            deleted = report.deleted,
                            objects = report.objects,
                            "bucket: deletions confirmed by the operator made; the bucket's mark is now {} objects",
                            report.objects
                        );
                    }
                    self.metrics
                        .bucket_deletes
                        .fetch_add(report.deleted as u64, Relaxed);
                    if failing.take().is_some() {
                        tracing::info!(
                            target = %self.cfg.to,
                            "bucket: writing {} works again", self.cfg.to
                        );
                        health.set_failing(Sink::Bucket, None);
                    }
                    // Refused deletions stay held (and said in `/healthz`,
                    // with what the bucket holds now) until their routes
                    // come back, a later pass may make them, or the
                    // operator confirms; said in the log once.
                    if report.refused > 0 {
                        if self.held.is_empty() {
                            tracing::error!(
                                "{}",
                                refused_line(
                                    &self.cfg,
                                    report.refused,
                                    report.objects,
                                    report.peak
                                )
                            );
                        }
                        self.held = report.kept.iter().cloned().collect();
                        health.set_bucket_refused(Some(held_note(
                            &self.cfg,
                            report.refused,
                            report.objects,
                            report.peak,
                        )));
                    } else {
                        self.held.clear();
                        health.set_bucket_refused(None);
                    }
                    if report.uploaded + report.deleted > 0 || (full && self.first) {
                        tracing::info!(
                            target = %self.cfg.to,
                            uploaded = report.uploaded,
                            deleted = report.deleted,
                            bytes = report.bytes,
                            objects = report.objects,
                            full,
                            ms = (started.elapsed().as_secs_f64() * 1000.0).round(),
                            "bucket updated"
                        );
                    } else if full {
                        tracing::debug!(
                            target = %self.cfg.to,
                            objects = report.objects,
                            ms = (started.elapsed().as_secs_f64() * 1000.0).round(),
                            "bucket listed and compared: nothing drifted"
                        );
                    }
                    self.behind(0, None);
                    let changed: Vec<String> = dirty.into_iter().collect();
                    if let Some(hook) = self.on_synced.as_mut() {
                        if !changed.is_empty() {
                            // The first pass's routes are those the
                            // start-up publish changed since the last run.
                            let before = (!self.first).then_some(&*self.synced);
                            hook(before, &site, &changed);
                        }
                    }
                    self.synced = site;
                    self.first = false;
                }
                Err(e) => {
                    // Everything goes back into the queue (a newer snapshot
                    // wins), and the next pass starts with a listing.
                    {
                        let mut q = self.inner.queue();
                        q.dirty.extend(dirty);
                        q.site.get_or_insert(site);
                        q.since = earliest(q.since, since);
                    }
                    self.behind(0, None);
                    let denied = e.is_denied();
                    let line = e.line();
                    if failing != Some(denied) {
                        tracing::error!(
                            target = %self.cfg.to,
                            "bucket: cannot update {}: {line}; local publishing and serving go on; retrying with backoff, no more is logged until it works",
                            self.cfg.to
                        );
                    } else {
                        tracing::debug!("bucket: still failing: {line}");
                    }
                    failing = Some(denied);
                    health.set_failing(Sink::Bucket, Some(line));
                    failures = failures.saturating_add(1);
                    let wait = retry_wait(failures, self.cfg.retry_max);
                    // New publishes join the queue meanwhile; only a stop
                    // cuts the wait short.
                    let until = tokio::time::Instant::now() + wait;
                    loop {
                        if self.inner.queue().stop {
                            return;
                        }
                        if tokio::time::timeout_at(until, self.inner.wake.notified())
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// The earlier of two instants, either of which may be missing.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The wait after the `n`th failure in a row: 1 s doubled each time, at
/// most `max`.
fn retry_wait(n: u32, max: Duration) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of route gets its cache policy and its phase: what feeds
    /// link to goes first.
    #[test]
    fn kinds() {
        let cases = [
            ("/rss.xml", Kind::Feed),
            ("/feed.json", Kind::Feed),
            ("/categories/world/atom.xml", Kind::Feed),
            ("/", Kind::Listing),
            ("/feeds.opml", Kind::Listing),
            ("/page/2/", Kind::Listing),
            ("/categories/world/", Kind::Listing),
            ("/tags/rust/", Kind::Listing),
            ("/articles/hello/", Kind::Page),
            ("/articles/hello/photo.jpg", Kind::Media),
            ("/articles/hello/sub/doc.pdf", Kind::Media),
            ("/archive/rss/1.xml", Kind::Archive),
            ("/archive/json/12.json", Kind::Archive),
            ("/categories/world/archive/atom/3.xml", Kind::Archive),
            ("/tags/rust/archive/rss/1.xml", Kind::Archive),
            ("/articles/archive/", Kind::Page),
            ("/articles/hello/archive/rss/1.xml", Kind::Media),
            ("/archive/rss/notes.xml", Kind::Media),
        ];
        for (route, kind) in cases {
            assert_eq!(Kind::of(route), kind, "{route}");
        }
        let cfg = PublishConfig::for_target("s3://bucket").unwrap();
        assert_eq!(Kind::Feed.cache_control(&cfg), "public, max-age=300");
        assert_eq!(Kind::Page.cache_control(&cfg), "public, max-age=3600");
        assert_eq!(Kind::Archive.cache_control(&cfg), "public, max-age=86400");
        assert!(Kind::Page.phase() < Kind::Feed.phase());
        assert!(Kind::Media.phase() < Kind::Listing.phase());
    }

    /// A full plan against an empty bucket PUTs every route, pages and
    /// their files before feeds and listings; against a bucket that holds
    /// exactly the site it does nothing but delete what is no route's; an
    /// incremental plan PUTs the touched routes that changed and deletes
    /// the touched routes gone that the bucket holds.
    #[test]
    fn plans() {
        use crate::render::testdata::{articles, settings};
        use crate::site::SiteBuilder;
        let mut cfg = PublishConfig::for_target("s3://bucket/pre").unwrap();
        cfg.endpoint = Some("http://127.0.0.1:9".into());
        let bucket = Bucket::open(&cfg).unwrap();
        let arts = articles();
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (site, _) = SiteBuilder::default().build(&arts, 0, &settings(), t);

        let empty = HashMap::new();
        let p = plan(&bucket, &cfg, &site, None, &empty, &HashSet::new());
        assert_eq!(p.puts.len(), site.len());
        assert!(p.deletes.is_empty());
        let first_list = p.puts.iter().position(|x| x.kind.phase() == 1).unwrap();
        assert!(p.puts[..first_list].iter().all(|x| x.kind.phase() == 0));
        assert!(p.puts[first_list..].iter().all(|x| x.kind.phase() == 1));
        assert!(p.put_keys().any(|k| k == "pre/rss.xml"));
        assert!(p.put_keys().any(|k| k == "pre/index.html"));

        // What the bucket would list after that plan, and one stray key.
        let mut remote: HashMap<String, Remote> = site
            .routes()
            .map(|(r, a)| {
                let (body, _) = body_of(a, cfg.gzip).unwrap();
                let key = bucket.key(&file_of(r).to_string_lossy()).unwrap();
                let md5 = Some(Md5::digest(&body).into());
                (
                    key,
                    Remote {
                        size: body.len() as u64,
                        md5,
                    },
                )
            })
            .collect();
        remote.insert("pre/stray.html".into(), Remote { size: 1, md5: None });
        let p = plan(&bucket, &cfg, &site, None, &remote, &HashSet::new());
        assert_eq!(p.put_keys().count(), 0);
        assert_eq!(p.deletes, ["pre/stray.html"]);

        // A changed object (another size) and a route gone.
        remote.insert("pre/rss.xml".into(), Remote { size: 3, md5: None });
        remote.insert(
            "pre/articles/gone/index.html".into(),
            Remote { size: 3, md5: None },
        );
        let touched: HashSet<String> = [
            "/rss.xml",
            "/atom.xml",
            "/articles/gone/",
            "/articles/never/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = plan(
            &bucket,
            &cfg,
            &site,
            Some(&touched),
            &remote,
            &HashSet::new(),
        );
        assert_eq!(p.put_keys().collect::<Vec<_>>(), ["pre/rss.xml"]);
        assert_eq!(p.deletes, ["pre/articles/gone/index.html"]);
    }

    /// The wait between attempts doubles from a second to its cap.
    #[test]
    fn retry_waits() {
        let max = Duration::from_secs(60);
        let waits: Vec<u64> = (1..=8).map(|n| retry_wait(n, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_wait(u32::MAX, max), max);
    }
}
