//! The set of articles, keyed by source path, plus the files that failed and
//! why. [`Library::scan`] walks the whole content tree once (and again for
//! verification passes and rescans); [`Library::apply`] takes a batch of
//! changed paths and re-reads only files whose size, mtime or inode moved.
//! [`Library::view`] settles identities (through the state file), slug
//! conflicts and future-dated articles into the list the renderers use,
//! with the old permalinks of renamed and deleted articles and the files
//! published articles reference (`media.rs`: images, PDFs beside them).
//! Uses `parse`, `article`, `state` and `sendfile` (to hold large files).
//!
//! Reading is guarded: only regular files are read (decided before opening
//! and again from the opened descriptor, opened so it cannot block), never
//! past `max_file_bytes`; each real file is read once however many names
//! it has, and symlinks follow the policy in [`walk`]. A panic while
//! parsing one file rejects that file and nothing else.
//!
//! With a parse cache ([`Library::set_cache`], `cache.rs`), a file whose
//! stamp is the one cached is taken from the cache without being opened;
//! what is parsed is recorded there at the end of each scan and batch.

mod cache;
mod media;
mod view;
mod walk;

pub use cache::FILE as CACHE_FILE;
pub use view::View;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, Utc};
use rayon::prelude::*;

use crate::article::Article;
use crate::health::Progress;
use crate::parse::{self, ParseCtx, ParseError};
use crate::state::State;

use walk::FileId;
use walk::Policy;

/// What identifies a file version without reading it. The change time
/// moves with any change of the file's attributes (a `chmod` that makes an
/// unreadable file readable changes neither size, mtime nor inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: Option<SystemTime>,
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            mtime: meta.modified().ok(),
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The stamp of a file that could not even be looked at.
    fn none() -> Stamp {
        Stamp {
            len: 0,
            mtime: None,
            dev: 0,
            ino: 0,
            ctime: (0, 0),
        }
    }

    fn id(&self) -> Option<FileId> {
        (self.ino != 0).then_some((self.dev, self.ino))
    }
}

#[derive(Debug)]
struct FileEntry {
    stamp: Stamp,
    /// The last version that parsed (with id and `updated` once published).
    article: Option<Arc<Article>>,
    /// What [`Library::view`] reads of `article` on every publish, copied
    /// out of it (valid while `article` is set).
    key: Key,
    /// Why the current version on disk does not parse, if it does not.
    error: Option<ParseError>,
    /// `article` carries the id and `updated` the state file gave it.
    identified: bool,
    /// The last read failed for a reason outside the file's content
    /// (permissions, I/O): every scan tries again, even if the stamp
    /// did not move.
    retry: bool,
    /// The article's references to files beside it, resolved.
    refs: Vec<media::Resolved>,
}

impl FileEntry {
    fn new(stamp: Stamp) -> FileEntry {
        FileEntry {
            stamp,
            article: None,
            key: Key::default(),
            error: None,
            identified: false,
            retry: false,
            refs: Vec::new(),
        }
    }
}

/// The fields of an article that settling the published set reads for
/// every article on every publish, kept beside it: a pass over 10,000
/// articles then reads one table instead of 10,000 scattered articles.
#[derive(Debug, Clone, Copy, Default)]
struct Key {
    /// `published` as a UTC instant: seconds and nanoseconds.
    published: (i64, u32),
    /// Hash of the slug (equal slugs, equal hashes; the slugs themselves
    /// are compared when two hashes meet).
    slug: u64,
    /// The article has warnings to report.
    warned: bool,
    /// Hash of the id, once the article is identified (see
    /// `FileEntry::identified`): the view asks "is this id taken?" of
    /// hashes next to each other in memory, not of 100,000 strings each
    /// behind its own pointer.
    id: u64,
}

/// The hash [`Key::id`] holds.
fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

impl Key {
    fn of(a: &Article) -> Key {
        Key {
            published: instant(&a.published),
            slug: xxhash_rust::xxh3::xxh3_64(a.slug.as_bytes()),
            warned: !a.warnings.is_empty(),
            id: id_hash(&a.id),
        }
    }
}

fn instant(t: &DateTime<FixedOffset>) -> (i64, u32) {
    (t.timestamp(), t.timestamp_subsec_nanos())
}

/// The order of [`View::articles`]: newest first, ties by slug.
fn newest_first(a: &Article, b: &Article) -> std::cmp::Ordering {
    b.published
        .cmp(&a.published)
        .then_with(|| a.slug.cmp(&b.slug))
}

/// The content directory is gone or unreadable.
#[derive(Debug, thiserror::Error)]
#[error("{}: content directory cannot be read: {error}", path.display())]
pub struct RootError {
    /// The content directory.
    pub path: PathBuf,
    /// Why.
    pub error: std::io::Error,
}

/// All articles of one content directory.
#[derive(Debug)]
pub struct Library {
    root: PathBuf,
    ctx: ParseCtx,
    policy: Policy,
    files: HashMap<PathBuf, FileEntry>,
    /// Every directory that held a file of `files` (kept when the file
    /// goes): a path gone that is none of them was at most a file, and
    /// forgetting it costs a lookup, not a pass over every known path
    /// (20 ms at 100,000 articles, on each editor's temporary file).
    dirs: HashSet<PathBuf>,
    /// The path each known file is read as, by identity (device, inode).
    by_id: HashMap<FileId, PathBuf>,
    /// Things skipped while walking, each logged once until it goes away.
    skipped: HashSet<String>,
    /// Paths that look like articles and cannot be read (a name not in
    /// UTF-8, a path past PATH_MAX): rejected in every view while there.
    problems: std::collections::BTreeMap<PathBuf, ParseError>,
    state: State,
    authority: String,
    progress: Progress,
    /// Files articles reference, by path (as the reference names it).
    media: HashMap<PathBuf, media::MediaFile>,
    /// Largest referenced file published (`max_asset_bytes`).
    max_asset_bytes: u64,
    /// Parser output kept between runs, if the library has one.
    cache: Option<cache::Cache>,
    /// What the last scan did.
    last_scan: ScanStats,
    /// What changed since the last view (see [`Library::view`]).
    since: view::Since,
    /// The last view, for the next one to start from.
    last: Option<view::Last>,
    /// Views settled from the last one (articles edited in place only).
    views_in_place: u64,
}

/// What one [`Library::scan`] did, for the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanStats {
    /// Article files found.
    pub files: usize,
    /// Files read and parsed.
    pub parsed: usize,
    /// Files taken from the parse cache without being opened.
    pub from_cache: usize,
    /// How long the scan took (the walk, reading, parsing, loading and
    /// saving the cache).
    pub elapsed: std::time::Duration,
}

/// Largest referenced file published unless configured otherwise.
pub const MAX_ASSET_BYTES: u64 = 20 * 1024 * 1024;

/// Outcome of reading one file.
enum Read {
    Parsed(Stamp, Option<Box<Article>>),
    /// The file is not an article (its content is at fault).
    Failed(Stamp, ParseError),
    /// The file could not be read (permissions, I/O): tried again later.
    Unreadable(Stamp, ParseError),
    /// Not a regular file after all (replaced since the walk).
    Skipped(String),
}

impl Library {
    /// An empty library over `root`; call [`Library::scan`] to fill it.
    pub fn new(root: PathBuf, ctx: ParseCtx, state: State, authority: String) -> Library {
        Library {
            root,
            ctx,
            policy: Policy::default(),
            files: HashMap::default(),
            dirs: HashSet::default(),
            by_id: HashMap::default(),
            skipped: HashSet::default(),
            problems: Default::default(),
            state,
            authority,
            progress: Progress::default(),
            media: HashMap::default(),
            max_asset_bytes: MAX_ASSET_BYTES,
            cache: None,
            last_scan: ScanStats::default(),
            since: view::Since::Any,
            last: None,
            views_in_place: 0,
        }
    }

    /// Keeps the parser's output of every file in the file at `path`
    /// (`state_dir/articles.cache`) between runs: the next scan takes
    /// unchanged files from there, and each scan and batch records what
    /// it parsed. The file is read by the next scan; a cache that cannot
    /// be read or written is logged once and the library works without it.
    pub fn set_cache(&mut self, path: PathBuf) {
        let key = cache::key(&self.root, &self.ctx);
        self.cache = Some(cache::Cache::new(path, self.root.clone(), key));
    }

    /// Reads the parse cache, the first time only; damage is logged.
    fn load_cache(&mut self) {
        if let Some(Err(e)) = self.cache.as_mut().map(cache::Cache::load) {
            tracing::warn!("{e}");
        }
    }

    /// What the last [`Library::scan`] did.
    pub fn last_scan(&self) -> ScanStats {
        self.last_scan
    }

    /// Publishes referenced files of at most `n` bytes; a change applies
    /// from the next scan.
    pub fn set_max_asset_bytes(&mut self, n: u64) {
        if self.max_asset_bytes != n {
            self.since = view::Since::Any;
            self.max_asset_bytes = n;
            self.media.clear();
        }
    }

    /// Has `beat` called after each file is read and parsed (from the
    /// threads that read them), so that a long scan can be told from a
    /// stuck one.
    pub fn on_progress(&mut self, beat: impl Fn() + Send + Sync + 'static) {
        self.progress = Progress::new(beat);
    }

    /// Follows symlinks to targets outside the content directory (refused
    /// by default); a change applies from the next scan.
    pub fn set_follow_external_symlinks(&mut self, follow: bool) {
        if self.policy.follow_external != follow {
            self.policy.follow_external = follow;
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.since = view::Since::Any;
        self.files.clear();
        self.dirs.clear();
        self.by_id.clear();
        self.media.clear();
    }

    /// The content directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The identity record (to save it, or read feed ids from it).
    pub fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// Number of article files known (published or not).
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no article file is known.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// How many articles a view as of `now` would publish, counted
    /// without settling one: files with a parsed article dated `now` or
    /// earlier. Two files claiming one slug count twice, so this may
    /// exceed the settled count by the conflicts; the publish guard
    /// (`max_drop`) compares it with what is served before rendering.
    pub fn publishable(&self, now: DateTime<Utc>) -> usize {
        let now = instant(&now.fixed_offset());
        self.files
            .values()
            .filter(|f| f.article.is_some() && f.key.published <= now)
            .count()
    }

    /// Changes the parse settings (time zone) after a config reload; every
    /// file is re-read on the next scan.
    pub fn set_ctx(&mut self, ctx: ParseCtx, authority: String) {
        if ctx.tz != self.ctx.tz || ctx.limits != self.ctx.limits {
            self.clear();
        }
        self.ctx = ctx;
        self.since = view::Since::Any;
        if let Some(c) = &mut self.cache {
            c.rekey(cache::key(&self.root, &self.ctx));
        }
        self.authority = authority;
    }

    /// Walks the whole tree: new and changed files are parsed (in
    /// parallel), vanished ones dropped. Stat-only for unchanged files, so it
    /// doubles as the periodic verification pass. Returns whether anything
    /// changed.
    ///
    /// # Errors
    /// The content directory itself is missing or unreadable; the library
    /// is left as it was, so the last good feeds stay up.
    pub fn scan(&mut self) -> Result<bool, RootError> {
        std::fs::metadata(&self.root)
            .and_then(|m| {
                if m.is_dir() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("not a directory"))
                }
            })
            .map_err(|error| RootError {
                path: self.root.clone(),
                error,
            })?;
        let started = std::time::Instant::now();
        self.last_scan = ScanStats::default();
        self.load_cache();
        let root = self.root.clone();
        let articles = self.sync_subtree(&root);
        if let Some(c) = &mut self.cache {
            // The whole tree was seen: records of files gone, changed or
            // failing are dead from here.
            let files = &self.files;
            c.retain(|p, stamp| {
                files
                    .get(p)
                    .is_some_and(|f| f.stamp == stamp && f.error.is_none())
            });
            c.flush();
        }
        // Every referenced file looked at again; unreferenced ones dropped.
        let media = self.sync_media(None);
        self.last_scan.files = self.files.len();
        self.last_scan.elapsed = started.elapsed();
        tracing::debug!(
            files = self.last_scan.files,
            parsed = self.last_scan.parsed,
            from_cache = self.last_scan.from_cache,
            ms = (self.last_scan.elapsed.as_secs_f64() * 10_000.0).round() / 10.0,
            "scan"
        );
        Ok(self.refresh_pictures() | media | articles)
    }

    /// Applies a batch of changed paths (files or directories, existing or
    /// not). Returns whether anything changed.
    ///
    /// # Errors
    /// As [`Library::scan`].
    pub fn apply(&mut self, paths: &[PathBuf]) -> Result<bool, RootError> {
        std::fs::metadata(&self.root).map_err(|error| RootError {
            path: self.root.clone(),
            error,
        })?;
        self.load_cache();
        let mut changed = false;
        let mut done: HashSet<&Path> = HashSet::default();
        let mut files = Vec::new();
        // Paths that may be (or hold) files articles reference.
        let mut touched: Vec<&Path> = Vec::new();
        for p in paths {
            if !p.starts_with(&self.root) || !done.insert(p) {
                continue;
            }
            if p != &self.root && parse::in_hidden_dir(&self.root, p) {
                continue;
            }
            changed |= match std::fs::metadata(p) {
                Ok(m) if m.is_dir() => {
                    touched.push(p);
                    self.sync_subtree(p)
                }
                // A new article the walk would name as a problem.
                Ok(m) if !m.is_dir() && walk::bad_name(p).is_some() => {
                    let e = walk::bad_name(p).expect("checked in the guard");
                    self.since = view::Since::Any;
                    self.problems.insert(p.clone(), e).is_none()
                }
                Ok(m) if parse::kind_of(p).is_some() => match self.admit(p, &m) {
                    Admit::File(path) => {
                        files.push(path);
                        false
                    }
                    Admit::Rescan(dir) => self.sync_subtree(&dir),
                    Admit::No => self.forget_under(p),
                },
                Ok(_) => {
                    touched.push(p);
                    false
                }
                Err(_) => {
                    touched.push(p);
                    self.forget_under(p)
                }
            };
        }
        if !files.is_empty() {
            changed |= self.sync_files(files.into_iter().map(|p| (p, None)).collect());
        }
        if let Some(c) = &mut self.cache {
            c.flush();
        }
        if !touched.is_empty() && !self.media.is_empty() {
            let again: Vec<PathBuf> = self
                .media
                .keys()
                .filter(|m| touched.iter().any(|t| m.starts_with(t)))
                .cloned()
                .collect();
            changed |= self.sync_media(Some(again));
            changed |= self.refresh_pictures();
        }
        Ok(changed)
    }

    /// Decides what an event at an existing article path means: the file
    /// at `p`, the same file under the name it is known by, a part of the
    /// tree to walk again (a new file reached through a symlink, which the
    /// walk's policy decides), or nothing (a special file).
    fn admit(&mut self, p: &Path, meta: &std::fs::Metadata) -> Admit {
        if !meta.is_file() {
            self.note_skipped(vec![walk::not_regular(p, &meta.file_type())]);
            return Admit::No;
        }
        let st = Stamp::of(meta);
        if let Some(known) = st.id().and_then(|id| self.by_id.get(&id)) {
            if known == p {
                return Admit::File(p.to_path_buf());
            }
            // Known under another name: that name, while it still is
            // this file; otherwise the file moved and `p` is its name.
            let still = std::fs::metadata(known).is_ok_and(|m| Stamp::of(&m).id() == st.id());
            if still {
                return Admit::File(known.clone());
            }
        }
        let linked = std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
            || p.parent().is_some_and(|dir| {
                walk::real_root(dir)
                    != walk::real_root(&self.root)
                        .join(dir.strip_prefix(&self.root).unwrap_or(Path::new("")))
            });
        if linked {
            Admit::Rescan(self.root.clone())
        } else {
            Admit::File(p.to_path_buf())
        }
    }

    /// Logs the walk's new findings once; with `full`, forgets the ones
    /// not found again (so they are logged again if they come back).
    fn note_skipped(&mut self, found: Vec<String>) {
        for line in &found {
            if !self.skipped.contains(line) {
                tracing::warn!("{line}");
            }
        }
        self.skipped.extend(found);
    }

    /// Drops every entry at or below `p` (a deleted file or directory).
    fn forget_under(&mut self, p: &Path) -> bool {
        let gone = self.forget_under_quietly(p);
        if gone {
            self.since = view::Since::Any;
        }
        gone
    }

    fn forget_under_quietly(&mut self, p: &Path) -> bool {
        let under = Under::new(p);
        let problems = self.problems.len();
        self.problems.retain(|k, _| !under.holds(k));
        let problems_gone = problems != self.problems.len();
        if !self.dirs.contains(p) {
            // A file, or nothing the library knows.
            if let Some(c) = &mut self.cache {
                c.forget(p);
            }
            return self.remove_entry(p).is_some() || problems_gone;
        }
        if let Some(c) = &mut self.cache {
            c.forget_under(&under);
        }
        let before = self.files.len();
        let by_id = &mut self.by_id;
        self.files.retain(|k, f| {
            let keep = !under.holds(k);
            if !keep {
                if let Some(id) = f.stamp.id() {
                    by_id.remove(&id);
                }
            }
            keep
        });
        before != self.files.len() || problems_gone
    }

    /// Re-walks `dir`: drops entries below it that are gone, parses new and
    /// changed files.
    fn sync_subtree(&mut self, dir: &Path) -> bool {
        let under = Under::new(dir);
        let outside: HashMap<FileId, PathBuf> = self
            .by_id
            .iter()
            .filter(|(_, p)| !under.holds(p))
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        let walk::Walk {
            files: seen,
            stamps,
            skipped,
            problems,
        } = walk::walk(&self.root, dir, self.policy, &outside);
        let problems_before = self.problems.len();
        self.problems.retain(|p, _| !under.holds(p));
        let mut problems_changed = self.problems.len() != problems_before;
        for e in problems {
            problems_changed |= self.problems.insert(e.path.clone(), e).is_none();
        }
        if dir == self.root {
            self.skipped.retain(|l| skipped.contains(l));
        }
        self.note_skipped(skipped);
        let seen_set: HashSet<&PathBuf> = seen.iter().collect();
        let before = self.files.len();
        let by_id = &mut self.by_id;
        self.files.retain(|k, f| {
            let keep = !under.holds(k) || seen_set.contains(k);
            if !keep {
                if let Some(id) = f.stamp.id() {
                    by_id.remove(&id);
                }
            }
            keep
        });
        let removed = before != self.files.len();
        if removed || problems_changed {
            self.since = view::Since::Any;
        }
        let seen = seen.into_iter().zip(stamps).collect();
        self.sync_files(seen) | removed | problems_changed
    }

    /// Stats each file (unless the walk just did: a regular file with its
    /// stamp); reads and parses (in parallel) the ones whose stamp moved,
    /// or whose last read failed for a reason outside its content. A file
    /// that fails to parse keeps its last good version.
    fn sync_files(&mut self, paths: Vec<(PathBuf, Option<Stamp>)>) -> bool {
        // Stat calls in parallel: at start, one per article (100,000).
        let files = &self.files;
        let stale: Vec<(PathBuf, Option<Stamp>)> = paths
            .into_par_iter()
            .filter_map(|(p, walked)| {
                // Only a regular file may be taken from the cache.
                let (st, cachable) = match walked {
                    Some(st) => (Some(st), true),
                    None => {
                        let meta = std::fs::metadata(&p).ok();
                        let st = meta.as_ref().map(Stamp::of);
                        (st, meta.is_some_and(|m| m.is_file()))
                    }
                };
                let stale = match (st, files.get(&p)) {
                    (Some(st), Some(f)) => f.retry || st != f.stamp,
                    _ => true,
                };
                stale.then(|| (p, st.filter(|_| cachable)))
            })
            .collect();
        if stale.is_empty() {
            return false;
        }
        // Files whose stamp is the cached one are not opened; the cache
        // has what the parser made of them.
        let mut results: Vec<(PathBuf, Read, bool)> = Vec::new();
        let stale: Vec<PathBuf> = match &mut self.cache {
            None => stale.into_iter().map(|(p, _)| p).collect(),
            Some(c) => stale
                .into_iter()
                .filter_map(
                    |(p, st)| match st.and_then(|st| Some((st, c.take(&p, st)?))) {
                        Some((st, parsed)) => {
                            results.push((p, Read::Parsed(st, parsed), true));
                            None
                        }
                        None => Some(p),
                    },
                )
                .collect(),
        };
        let ctx = self.ctx;
        let progress = &self.progress;
        self.last_scan.from_cache += results.len();
        self.last_scan.parsed += stale.len();
        results.par_extend(stale.into_par_iter().map(|p| {
            let r = read_one(&p, &ctx);
            progress.beat();
            (p, r, false)
        }));
        let mut changed = false;
        let mut new_media: Vec<PathBuf> = Vec::new();
        for (p, r, cached) in results {
            if let Some(c) = self.cache.as_mut().filter(|_| !cached) {
                match &r {
                    Read::Parsed(stamp, a) => c.record(&p, *stamp, a.as_deref()),
                    _ => c.forget(&p),
                }
            }
            match r {
                Read::Parsed(stamp, None) => {
                    let was = self
                        .remove_entry(&p)
                        .is_some_and(|f| f.article.is_some() || f.error.is_some());
                    if was {
                        self.since = view::Since::Any;
                    }
                    changed |= was;
                    // A draft is remembered only by its stamp so it is not re-read.
                    self.insert_entry(p, FileEntry::new(stamp));
                }
                Read::Parsed(stamp, Some(a)) => {
                    let same = self.files.get(&p).is_some_and(|f| {
                        // The hash leaves out the slug (renames keep ids)
                        // and the front-matter date of change.
                        f.error.is_none()
                            && f.article.as_ref().is_some_and(|old| {
                                old.hash == a.hash
                                    && old.slug == a.slug
                                    && old.updated_from_file == a.updated_from_file
                                    && (!a.updated_from_file || old.updated == a.updated)
                            })
                    });
                    if same {
                        if let Some(f) = self.files.get_mut(&p) {
                            f.stamp = stamp;
                            f.retry = false;
                        }
                    } else {
                        let mut entry = FileEntry::new(stamp);
                        entry.key = Key::of(&a);
                        entry.refs = a
                            .local_refs
                            .iter()
                            .map(|r| media::resolve(&self.root, &p, &a.slug, r))
                            .collect();
                        for r in &entry.refs {
                            if let media::Target::File { path, .. } = &r.target {
                                if !self.media.contains_key(path) {
                                    new_media.push(path.clone());
                                }
                            }
                        }
                        // The version the last view published, if this is
                        // an edit in place the next view can settle alone.
                        let old = self
                            .files
                            .get(&p)
                            .filter(|f| f.error.is_none() && f.identified && f.refs.is_empty())
                            .and_then(|f| f.article.clone())
                            .filter(|_| entry.refs.is_empty());
                        // (An article edited again before a view is
                        // still the one the last view published.)
                        let again = entry.refs.is_empty()
                            && self.since.holds(&p)
                            && self.files.get(&p).is_some_and(|f| {
                                f.error.is_none() && !f.identified && f.refs.is_empty()
                            });
                        match old {
                            Some(old) => self.since.replaced(&p, old),
                            None if again => {}
                            None => self.since = view::Since::Any,
                        }
                        entry.article = Some(Arc::from(a));
                        self.insert_entry(p, entry);
                        changed = true;
                    }
                }
                Read::Failed(stamp, e) => changed |= self.record_failure(p, stamp, e, false),
                Read::Unreadable(stamp, e) => changed |= self.record_failure(p, stamp, e, true),
                Read::Skipped(line) => {
                    self.note_skipped(vec![line]);
                    changed |= self.forget_under(&p);
                }
            }
        }
        if !new_media.is_empty() {
            new_media.sort_unstable();
            new_media.dedup();
            self.sync_media(Some(new_media));
        }
        self.refresh_pictures() | changed
    }

    /// Tells each article whose picture is a file beside it where that
    /// file is published, its length and type (for enclosures), or that
    /// it is not. Returns whether any article changed.
    fn refresh_pictures(&mut self) -> bool {
        let changed = self.refresh_pictures_quietly();
        if changed {
            self.since = view::Since::Any;
        }
        changed
    }

    fn refresh_pictures_quietly(&mut self) -> bool {
        let media = &self.media;
        let mut changed = false;
        for f in self.files.values_mut() {
            if f.refs.is_empty() {
                continue;
            }
            let Some(a) = f.article.as_mut() else {
                continue;
            };
            let Some(pic) = &a.picture else {
                continue;
            };
            let now = f
                .refs
                .iter()
                .find(|r| r.url == pic.src)
                .and_then(|r| match &r.target {
                    media::Target::File { path, route } => Some((path, route)),
                    _ => None,
                })
                .and_then(|(path, route)| match media.get(path).map(|m| &m.state) {
                    Some(media::State::Ready(m)) => {
                        Some((Arc::clone(route), m.bytes.len() as u64, m.media_type))
                    }
                    _ => None,
                });
            if pic.published != now {
                if let Some(p) = Arc::make_mut(a).picture.as_mut() {
                    p.published = now;
                }
                changed = true;
            }
        }
        changed
    }

    /// Looks (again) at files articles reference: those in `paths`, or
    /// with `None` every one any article references (and forgets the
    /// others). A file is read only when its stamp moved, and a file
    /// already read under another name is not read again. Returns
    /// whether what is known of any changed.
    fn sync_media(&mut self, paths: Option<Vec<PathBuf>>) -> bool {
        let wanted: Vec<PathBuf> = match paths {
            Some(p) => p,
            None => {
                let all: HashSet<&PathBuf> = self
                    .files
                    .values()
                    .flat_map(|f| &f.refs)
                    .filter_map(|r| match &r.target {
                        media::Target::File { path, .. } => Some(path),
                        _ => None,
                    })
                    .collect();
                self.media.retain(|p, _| all.contains(p));
                all.into_iter().cloned().collect()
            }
        };
        if wanted.is_empty() {
            return false;
        }
        let real_root = walk::real_root(&self.root);
        let mut by_id: HashMap<FileId, media::MediaFile> = self
            .media
            .values()
            .filter(|m| matches!(m.state, media::State::Ready(_)))
            .filter_map(|m| m.stamp.id().map(|id| (id, m.clone())))
            .collect();
        let (root, media, follow, max) = (
            &self.root,
            &self.media,
            self.policy.follow_external,
            self.max_asset_bytes,
        );
        let progress = &self.progress;
        // One name per real file is read (in parallel); its other names
        // then find it read.
        let mut first_of: HashSet<FileId> = HashSet::default();
        let (leaders, others): (Vec<PathBuf>, Vec<PathBuf>) = wanted.into_iter().partition(|p| {
            match std::fs::metadata(p).ok().and_then(|m| Stamp::of(&m).id()) {
                Some(id) => first_of.insert(id),
                None => true,
            }
        });
        let look = |p: PathBuf, by_id: &HashMap<FileId, media::MediaFile>| {
            let seen = |st: &Stamp| {
                st.id()
                    .and_then(|id| by_id.get(&id))
                    .filter(|m| m.stamp == *st)
                    .cloned()
            };
            let m = media::look(&p, &real_root, root, follow, max, media.get(&p), seen);
            progress.beat();
            (p, m)
        };
        let mut results: Vec<(PathBuf, media::MediaFile)> =
            leaders.into_par_iter().map(|p| look(p, &by_id)).collect();
        for (_, m) in &results {
            if let (media::State::Ready(_), Some(id)) = (&m.state, m.stamp.id()) {
                by_id.insert(id, m.clone());
            }
        }
        for p in others {
            results.push(look(p, &by_id));
        }
        let mut changed = false;
        for (p, m) in results {
            let same = self
                .media
                .get(&p)
                .is_some_and(|old| match (&old.state, &m.state) {
                    (media::State::Ready(a), media::State::Ready(b)) => Arc::ptr_eq(a, b),
                    (media::State::Missing, media::State::Missing)
                    | (media::State::Folder, media::State::Folder) => true,
                    (media::State::Refused(a), media::State::Refused(b)) => a == b,
                    _ => false,
                });
            changed |= !same;
            self.media.insert(p, m);
        }
        if changed {
            self.since = view::Since::Any;
        }
        changed
    }

    /// Records why the file at `p` did not read or parse (its last good
    /// article stays); `retry` for failures outside its content. Returns
    /// whether the reported error changed.
    fn record_failure(&mut self, p: PathBuf, stamp: Stamp, e: ParseError, retry: bool) -> bool {
        self.since = view::Since::Any;
        let mut entry = self
            .remove_entry(&p)
            .unwrap_or_else(|| FileEntry::new(stamp));
        entry.stamp = stamp;
        entry.retry = retry;
        let changed = entry.error.as_ref() != Some(&e);
        entry.error = Some(e);
        self.insert_entry(p, entry);
        changed
    }

    fn insert_entry(&mut self, p: PathBuf, entry: FileEntry) {
        if let Some(id) = entry.stamp.id() {
            self.by_id.insert(id, p.clone());
        }
        let mut up = p.parent();
        while let Some(dir) = up {
            if self.dirs.contains(dir) || !self.dirs.insert(dir.to_path_buf()) {
                break;
            }
            up = dir.parent();
        }
        self.files.insert(p, entry);
    }

    fn remove_entry(&mut self, p: &Path) -> Option<FileEntry> {
        let old = self.files.remove(p)?;
        if let Some(id) = old.stamp.id() {
            if self.by_id.get(&id).is_some_and(|q| q == p) {
                self.by_id.remove(&id);
            }
        }
        Some(old)
    }

    /// Rejects the file at `path` with `reason` (after its article was
    /// found to break rendering): its article leaves the published set
    /// until the file changes.
    pub fn reject(&mut self, path: &Path, reason: String) {
        self.since = view::Since::Any;
        if let Some(f) = self.files.get_mut(path) {
            f.article = None;
            f.identified = false;
            f.key = Key::default();
            f.error = Some(ParseError::new(path, 1, reason));
        }
    }

    /// Keeps at most `n` former slugs per article (`max_former_slugs`).
    pub fn set_max_former_slugs(&mut self, n: usize) {
        self.since = view::Since::Any;
        self.state.set_max_former_slugs(n);
    }
}

/// A fingerprint of the content tree from a stat-only walk: every file's
/// path, size, mtime and inode (article files and the files they may
/// reference). Equal fingerprints mean no file was added, removed, renamed
/// or written (the same test the daemon uses to decide what to re-read).
///
/// # Errors
/// The content directory is missing or unreadable.
pub fn tree_fingerprint(root: &Path, follow_external_symlinks: bool) -> Result<u128, RootError> {
    std::fs::metadata(root).map_err(|error| RootError {
        path: root.to_path_buf(),
        error,
    })?;
    let policy = Policy {
        follow_external: follow_external_symlinks,
        all_files: true,
    };
    let mut files = walk::walk(root, root, policy, &HashMap::default()).files;
    files.sort_unstable_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in &files {
        h.update(
            p.strip_prefix(root)
                .unwrap_or(p)
                .as_os_str()
                .as_encoded_bytes(),
        );
        if let Ok(m) = std::fs::metadata(p) {
            let st = Stamp::of(&m);
            h.update(&st.len.to_le_bytes());
            h.update(&st.ino.to_le_bytes());
            let t = st
                .mtime
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            h.update(&t.as_nanos().to_le_bytes());
        }
    }
    Ok(h.digest128())
}

/// How the message of a read that failed for reasons outside the file's
/// content starts (such files are tried again by every scan).
const UNREADABLE: &str = "cannot read: ";

/// Reads one article file, guarded: only a regular file is opened, opened
/// non-blocking (a FIFO swapped in after the check still cannot hang the
/// loop) and checked again through the descriptor; at most
/// `max_file_bytes` are read; a panic in the parser rejects the file.
fn read_one(p: &Path, ctx: &ParseCtx) -> Read {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt;
    let unreadable = |stamp, e: std::io::Error| {
        Read::Unreadable(stamp, ParseError::new(p, 1, format!("{UNREADABLE}{e}")))
    };
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => return unreadable(Stamp::none(), e),
    };
    let not_regular = |m: &std::fs::Metadata| Read::Skipped(walk::not_regular(p, &m.file_type()));
    if !meta.is_file() {
        return not_regular(&meta);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(p);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => return unreadable(Stamp::of(&meta), e),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return unreadable(Stamp::of(&meta), e),
    };
    if !meta.is_file() {
        return not_regular(&meta);
    }
    let stamp = Stamp::of(&meta);
    let max = ctx.limits.max_file_bytes;
    let too_big = |len: u64| {
        Read::Failed(
            stamp,
            ParseError::new(
                p,
                1,
                format!("file is {len} bytes; at most {max} are read (limit `max_file_bytes`)"),
            ),
        )
    };
    if meta.len() > max {
        return too_big(meta.len());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    if let Err(e) = (&mut file).take(max + 1).read_to_end(&mut bytes) {
        return unreadable(stamp, e);
    }
    if bytes.len() as u64 > max {
        return too_big(bytes.len() as u64);
    }
    drop(file);
    // The stamp of what was read: if the file changed while reading, the
    // next event (or verification pass) sees a newer stamp and reads again.
    let parsed = std::panic::catch_unwind(|| {
        parse::decode(p, &bytes).and_then(|text| parse::parse(p, text, ctx))
    });
    match parsed {
        Ok(Ok(a)) => Read::Parsed(stamp, a.map(Box::new)),
        Ok(Err(e)) => Read::Failed(stamp, e),
        Err(panic) => {
            let why = panic_message(panic.as_ref());
            Read::Failed(
                stamp,
                ParseError::new(
                    p,
                    1,
                    format!("Herald failed on this file (a bug; please report it): {why}"),
                ),
            )
        }
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// What an event at an article path means ([`Library::admit`]).
enum Admit {
    /// Read (or stat) this path.
    File(PathBuf),
    /// Walk this directory again.
    Rescan(PathBuf),
    /// Nothing to read there.
    No,
}

/// A directory (or file) and the question "is this path it or below
/// it?", asked of every path the library knows when a file or directory
/// goes: `Path::starts_with` walks both paths component by component, and
/// a deleted editor's temporary file cost 20 ms at 10,000 articles that
/// way. The library's paths are all joined from its root, so they are in
/// normal form; `dir` is brought to it once, and then a byte prefix ending
/// at a separator is the same question.
pub(crate) struct Under(Vec<u8>);

impl Under {
    pub(crate) fn new(dir: &Path) -> Under {
        use std::os::unix::ffi::OsStrExt;
        let normal: PathBuf = dir.components().collect();
        Under(normal.as_os_str().as_bytes().to_vec())
    }

    /// True when `path` is the directory or below it.
    pub(crate) fn holds(&self, path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let (p, d) = (path.as_os_str().as_bytes(), &self.0[..]);
        p.starts_with(d) && (p.len() == d.len() || p[d.len()] == b'/' || d.ends_with(b"/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use std::fs;

    /// `Under` answers as `Path::starts_with` for the library's paths, a
    /// sibling sharing a prefix (`b` and `bc`) is not below, and the
    /// directory is taken in normal form.
    #[test]
    fn under_is_starts_with() {
        let known = [
            "/c/2025/05/a.md",
            "/c/2025/05",
            "/c/2025/050/a.md",
            "/c/2025/0",
            "/c/2024/05/b.md",
            "/c",
            "/cc/a.md",
        ];
        for dir in [
            "/c/2025/05",
            "/c/2025/05/a.md",
            "/c",
            "/",
            "/c/2025",
            "/c/2025/0",
        ] {
            let under = Under::new(Path::new(dir));
            for k in known {
                assert_eq!(
                    under.holds(Path::new(k)),
                    Path::new(k).starts_with(dir),
                    "{k} under {dir}"
                );
            }
        }
        let odd = Under::new(Path::new("/c//2025/./05/"));
        assert!(odd.holds(Path::new("/c/2025/05/a.md")));
        assert!(!odd.holds(Path::new("/c/2025/050/a.md")));
    }

    fn lib(dir: &Path) -> Library {
        Library::new(
            dir.to_path_buf(),
            ParseCtx::new(chrono_tz::UTC),
            State::default(),
            "example.com".into(),
        )
    }

    fn col(title: &str, date: &str) -> String {
        format!("{date}\n\nNews\n\n{title}\n\nBody of {title}.\n")
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A broken file is reported while every other article is published.
    #[test]
    fn broken_file_does_not_stop_others() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a.txt"), col("A", "May 1, 2025, noon")).unwrap();
        fs::write(d.path().join("b.txt"), "garbage").unwrap();
        fs::write(
            d.path().join("c.md"),
            "---\ntitle: C\ndate: 2025-05-02\n---\nc",
        )
        .unwrap();
        fs::write(d.path().join(".hidden.txt"), "garbage").unwrap();
        fs::write(d.path().join("notes.rst"), "garbage").unwrap();
        let mut l = lib(d.path());
        assert!(l.scan().unwrap());
        let v = l.view(now());
        let titles: Vec<&str> = v.articles.iter().map(|a| a.title.as_str()).collect();
        assert_eq!(titles, ["C", "A"]);
        assert_eq!(v.rejected.len(), 1);
        assert!(
            v.rejected[0].to_string().contains("b.txt:1: invalid date"),
            "{}",
            v.rejected[0]
        );
    }

    /// Two files claiming one slug: the later one is an error naming both.
    #[test]
    fn slug_conflict_names_both() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("2025-05-01-same.txt"),
            col("First", "May 1, 2025, noon"),
        )
        .unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(
            d.path().join("sub/same.txt"),
            col("Second", "May 2, 2025, noon"),
        )
        .unwrap();
        let mut l = lib(d.path());
        l.scan().unwrap();
        let v = l.view(now());
        assert_eq!(v.articles.len(), 1);
        assert_eq!(v.articles[0].title, "First");
        let msg = v.rejected[0].to_string();
        assert!(
            msg.contains("sub/same.txt") && msg.contains("2025-05-01-same.txt"),
            "{msg}"
        );
    }

    /// Published articles come newest first, ties by slug, whether they
    /// were settled before (sorted by their kept keys) or are new or
    /// edited (matched, then merged in): the same order as sorting them
    /// all afresh. A conflict decided once stays decided.
    #[test]
    fn order_of_kept_and_new_articles() {
        let d = tempfile::tempdir().unwrap();
        let w = |name: &str, title: &str, date: &str| {
            fs::write(d.path().join(name), col(title, date)).unwrap();
        };
        w("b.txt", "B", "May 2, 2025, noon");
        w("a.txt", "A", "May 2, 2025, noon");
        w("c.txt", "C", "May 1, 2025, 9 a.m.");
        w("d.txt", "D", "May 3, 2025, midnight");
        let mut l = lib(d.path());
        l.scan().unwrap();
        let slugs = |v: &View| {
            v.articles
                .iter()
                .map(|a| a.slug.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(slugs(&l.view(now())), ["d", "a", "b", "c"]);

        // An edit, a new article tied with two kept ones, one between.
        w("c.txt", "C2", "May 1, 2025, 9 a.m.");
        w("ab.txt", "AB", "May 2, 2025, noon");
        w("e.txt", "E", "May 2, 2025, 1 p.m.");
        let paths: Vec<PathBuf> = ["c.txt", "ab.txt", "e.txt"]
            .iter()
            .map(|n| d.path().join(n))
            .collect();
        l.apply(&paths).unwrap();
        let v = l.view(now());
        assert_eq!(slugs(&v), ["d", "e", "a", "ab", "b", "c"]);
        assert_eq!(v.articles[5].title, "C2");
        let mut resorted = v.articles.clone();
        resorted.sort_by(|x, y| {
            y.published
                .cmp(&x.published)
                .then_with(|| x.slug.cmp(&y.slug))
        });
        assert!(resorted
            .iter()
            .zip(&v.articles)
            .all(|(x, y)| Arc::ptr_eq(x, y)));

        // A second claim on a kept slug loses, view after view.
        fs::create_dir(d.path().join("sub")).unwrap();
        w("sub/a.txt", "A again", "Apr. 1, 2025, noon");
        l.apply(&[d.path().join("sub")]).unwrap();
        for _ in 0..2 {
            let v = l.view(now());
            assert_eq!(
                v.articles.iter().find(|a| a.slug == "a").unwrap().title,
                "A"
            );
            assert_eq!(v.rejected.len(), 1, "{:?}", v.rejected);
            assert!(v.rejected[0].to_string().contains("sub/a.txt"));
        }
    }

    /// When the ids of new articles cannot be saved, they are taken back
    /// and the articles left out of the view (counted), while an edit of
    /// a known article is published; allowed again, they appear with the
    /// id they were first given.
    #[test]
    fn new_articles_held_back_until_ids_can_be_saved() {
        let d = tempfile::tempdir().unwrap();
        let st = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a.txt"), col("A", "May 1, 2025, noon")).unwrap();
        let mut l = lib(d.path());
        l.scan().unwrap();
        let a_id = l.view(now()).articles[0].id.clone();
        l.state_mut().save(st.path()).unwrap();

        fs::write(d.path().join("a.txt"), col("A2", "May 1, 2025, noon")).unwrap();
        fs::write(d.path().join("b.txt"), col("B", "May 2, 2025, noon")).unwrap();
        l.scan().unwrap();
        let titles = |v: &View| {
            v.articles
                .iter()
                .map(|a| a.title.clone())
                .collect::<Vec<_>>()
        };
        let v = l.view(now());
        assert_eq!(titles(&v), ["B", "A2"]);
        let b_id = v.articles[0].id.clone();
        drop(v);
        assert_eq!(l.hold_new_articles(), 1, "the save failed: b is taken back");
        for _ in 0..2 {
            let v = l.view(now());
            assert_eq!(titles(&v), ["A2"]);
            assert_eq!(v.articles[0].id, a_id);
            assert_eq!(v.held_back, 1);
        }
        l.state_mut().allow_new_ids();
        let v = l.view(now());
        assert_eq!(titles(&v), ["B", "A2"]);
        assert_eq!(v.articles[0].id, b_id);
        assert_eq!(v.held_back, 0);
    }

    /// Files articles reference are published by route, each real file
    /// read once under whatever names; an edited file is read again on
    /// its event; a file no published article references is not listed.
    #[test]
    fn referenced_files() {
        let d = tempfile::tempdir().unwrap();
        let md = |refs: &str| format!("---\ntitle: T\ndate: 2025-05-01\n---\n{refs}\n");
        fs::create_dir_all(d.path().join("story")).unwrap();
        fs::write(
            d.path().join("story/index.md"),
            md("![a](a.png) ![b](b.png)"),
        )
        .unwrap();
        fs::write(d.path().join("story/a.png"), b"one").unwrap();
        fs::hard_link(d.path().join("story/a.png"), d.path().join("story/b.png")).unwrap();
        fs::write(d.path().join("story/stray.png"), b"x").unwrap();
        let mut l = lib(d.path());
        l.scan().unwrap();
        let v = l.view(now());
        let routes: Vec<&str> = v.media.iter().map(|(r, _)| &**r).collect();
        assert_eq!(routes, ["/articles/story/a.png", "/articles/story/b.png"]);
        assert!(Arc::ptr_eq(&v.media[0].1, &v.media[1].1), "read once");
        assert_eq!(&v.media[0].1.bytes[..], b"one");
        assert_eq!(v.media[0].1.media_type, "image/png");

        fs::remove_file(d.path().join("story/b.png")).unwrap();
        fs::write(d.path().join("story/b.png"), b"two!").unwrap();
        assert!(l.apply(&[d.path().join("story/b.png")]).unwrap());
        let v = l.view(now());
        assert_eq!(&v.media[1].1.bytes[..], b"two!");
        assert_eq!(v.warnings, Vec::<String>::new());
        fs::remove_file(d.path().join("story/b.png")).unwrap();
        assert!(l.apply(&[d.path().join("story/b.png")]).unwrap());
        let v = l.view(now());
        assert_eq!(v.media.len(), 1);
        assert!(
            v.warnings[0].ends_with("b.png: no such file in the content directory"),
            "{:?}",
            v.warnings
        );
    }

    /// Future-dated articles are held back and their time is reported.
    #[test]
    fn future_held_back() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("f.txt"), col("F", "Jan. 2, 2026, noon")).unwrap();
        let mut l = lib(d.path());
        l.scan().unwrap();
        let v = l.view(now());
        assert!(v.articles.is_empty());
        assert_eq!(
            v.next_release.unwrap().to_rfc3339(),
            "2026-01-02T12:00:00+00:00"
        );
        let later = DateTime::parse_from_rfc3339("2026-01-02T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(l.view(later).articles.len(), 1);
    }

    /// Everything a view holds, as text, for comparing two views.
    fn summary(v: &View) -> Vec<String> {
        let mut out: Vec<String> = v
            .articles
            .iter()
            .map(|a| {
                format!(
                    "{} {} {:?} {} {} {:?} {:?} {}",
                    a.slug,
                    a.id,
                    a.title,
                    a.published.to_rfc3339(),
                    a.updated.to_rfc3339(),
                    a.categories,
                    a.tags,
                    a.body_html.html()
                )
            })
            .collect();
        out.extend(v.rejected.iter().map(|e| format!("rejected {e}")));
        out.extend(v.warnings.iter().map(|w| format!("warning {w}")));
        out.extend(v.moved.iter().map(|(o, a)| format!("moved {o} {}", a.slug)));
        out.extend(v.gone.iter().map(|g| format!("gone {g}")));
        out.extend(v.labels_known.iter().map(|l| format!("label {l}")));
        out.extend(v.media.iter().map(|(r, _)| format!("media {r}")));
        out.push(format!("next {:?} held {}", v.next_release, v.held_back));
        out
    }

    /// Articles edited in place are settled from the last view (only they
    /// are identified); whatever changed, the view is the one settling
    /// every article again gives, edit after edit: titles, bodies, labels,
    /// two files at once, a file edited twice, then a date, a slug, a
    /// file gone, one new, one broken, a future article coming due.
    #[test]
    fn edits_in_place_settle_as_the_whole_view_would() {
        let d = tempfile::tempdir().unwrap();
        let w = |name: &str, text: String| fs::write(d.path().join(name), text).unwrap();
        let md = |title: &str, date: &str, slug: &str, tags: &str, body: &str| {
            format!(
                "---\ntitle: {title}\ndate: {date}\nslug: {slug}\ncategories: [News]\ntags: [{tags}]\n---\n{body}\n"
            )
        };
        for i in 0..30 {
            w(
                &format!("a{i}.md"),
                md(
                    &format!("A{i}"),
                    &format!("2025-05-{:02}T10:00:00Z", 1 + i % 9),
                    &format!("a{i}"),
                    "x",
                    "body",
                ),
            );
        }
        w("c.txt", col("Column", "May 3, 2025, noon"));
        w(
            "f.md",
            md("Future", "2026-01-02T00:00:00Z", "f", "y", "soon"),
        );
        w(
            "i.md",
            "---\ntitle: I\ndate: 2025-04-01\nid: urn:x:i\n---\ni\n".into(),
        );
        let mut l = lib(d.path());
        l.scan().unwrap();
        let mut now = now();
        l.view(now);
        let check = |l: &mut Library, paths: &[&str], now: DateTime<Utc>, in_place: bool| {
            let paths: Vec<PathBuf> = paths.iter().map(|n| d.path().join(n)).collect();
            l.apply(&paths).unwrap();
            let before = l.views_in_place;
            let v = l.view(now);
            assert_eq!(l.views_in_place - before, u64::from(in_place), "{paths:?}");
            l.since = view::Since::Any;
            let whole = l.view(now);
            assert_eq!(summary(&v), summary(&whole), "{paths:?}");
            v
        };
        // A title, then a body and a tag: in place.
        w(
            "a3.md",
            md("A3 again", "2025-05-04T10:00:00Z", "a3", "x", "body"),
        );
        let v = check(&mut l, &["a3.md"], now, true);
        assert!(v.articles.iter().any(|a| a.title == "A3 again"));
        w(
            "a4.md",
            md(
                "A4",
                "2025-05-05T10:00:00Z",
                "a4",
                "x, new-tag",
                "more body",
            ),
        );
        let v = check(&mut l, &["a4.md"], now, true);
        let a4 = v.articles.iter().find(|a| a.slug == "a4").unwrap();
        assert_eq!(a4.tags, ["x", "new-tag"]);
        // Two files in one batch, and one file written twice before a view.
        w(
            "a5.md",
            md("A5 b", "2025-05-06T10:00:00Z", "a5", "x", "body"),
        );
        w("c.txt", col("Column b", "May 3, 2025, noon"));
        check(&mut l, &["a5.md", "c.txt"], now, true);
        w(
            "a6.md",
            md("A6 b", "2025-05-07T10:00:00Z", "a6", "x", "body"),
        );
        l.apply(&[d.path().join("a6.md")]).unwrap();
        w(
            "a6.md",
            md("A6 c", "2025-05-07T10:00:00Z", "a6", "x", "body"),
        );
        let v = check(&mut l, &["a6.md"], now, true);
        assert!(v.articles.iter().any(|a| a.title == "A6 c"));
        // The one with a front-matter id is settled whole.
        w(
            "i.md",
            "---\ntitle: I2\ndate: 2025-04-01\nid: urn:x:i\n---\ni\n".into(),
        );
        check(&mut l, &["i.md"], now, false);
        // A new date, a new slug: the order moves, settled whole.
        w("a7.md", md("A7", "2025-06-01T10:00:00Z", "a7", "x", "body"));
        let v = check(&mut l, &["a7.md"], now, false);
        assert_eq!(v.articles[0].slug, "a7");
        w(
            "a8.md",
            md("A8", "2025-05-09T10:00:00Z", "a8-renamed", "x", "body"),
        );
        let v = check(&mut l, &["a8.md"], now, false);
        assert!(v.moved.iter().any(|(o, _)| o == "a8"), "{:?}", v.moved);
        // An edit after those is in place again, the moved slug kept.
        w(
            "a8.md",
            md("A8 b", "2025-05-09T10:00:00Z", "a8-renamed", "x", "body"),
        );
        let v = check(&mut l, &["a8.md"], now, true);
        assert!(v.moved.iter().any(|(o, _)| o == "a8"), "{:?}", v.moved);
        // Gone, new, broken.
        fs::remove_file(d.path().join("a9.md")).unwrap();
        let v = check(&mut l, &["a9.md"], now, false);
        assert!(v.gone.iter().any(|g| g == "a9"), "{:?}", v.gone);
        w("n.md", md("New", "2025-05-02T11:00:00Z", "n", "z", "new"));
        check(&mut l, &["n.md"], now, false);
        w("a10.md", "---\ntitle: [unclosed\n---\n".into());
        let v = check(&mut l, &["a10.md"], now, false);
        assert_eq!(v.rejected.len(), 1);
        // An edit once the future article is due: settled whole, with it.
        now = DateTime::parse_from_rfc3339("2026-01-03T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        w(
            "a11.md",
            md("A11 b", "2025-05-03T10:00:00Z", "a11", "x", "body"),
        );
        let v = check(&mut l, &["a11.md"], now, false);
        assert_eq!(v.articles[0].slug, "f");
        // And in place after that.
        w(
            "a12.md",
            md("A12 b", "2025-05-04T10:00:00Z", "a12", "x", "body"),
        );
        check(&mut l, &["a12.md"], now, true);
    }

    /// A failed re-parse keeps the last good version published and reports
    /// the error; an unchanged file is not re-read.
    #[test]
    fn incremental_keeps_last_good() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.txt");
        fs::write(&p, col("A", "May 1, 2025, noon")).unwrap();
        let mut l = lib(d.path());
        l.scan().unwrap();
        assert!(
            !l.apply(std::slice::from_ref(&p)).unwrap(),
            "unchanged file is not a change"
        );
        fs::write(&p, "May 1, 2025, noon\n\nNe").unwrap();
        assert!(l.apply(std::slice::from_ref(&p)).unwrap());
        let v = l.view(now());
        assert_eq!(v.articles[0].title, "A");
        assert_eq!(v.rejected.len(), 1);
        fs::write(&p, col("A2", "May 1, 2025, noon")).unwrap();
        assert!(l.apply(std::slice::from_ref(&p)).unwrap());
        let v = l.view(now());
        assert_eq!(v.articles[0].title, "A2");
        assert!(v.rejected.is_empty());
    }

    /// Deleting a directory drops every article under it.
    #[test]
    fn directory_removal() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/a.txt"), col("A", "May 1, 2025, noon")).unwrap();
        fs::write(d.path().join("b.txt"), col("B", "May 1, 2025, noon")).unwrap();
        let mut l = lib(d.path());
        l.scan().unwrap();
        fs::remove_dir_all(d.path().join("sub")).unwrap();
        assert!(l.apply(&[d.path().join("sub")]).unwrap());
        let v = l.view(now());
        assert_eq!(v.articles.len(), 1);
        assert_eq!(v.articles[0].title, "B");
    }

    /// A missing content directory is an error and leaves the library as it was.
    #[test]
    fn missing_root_keeps_articles() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("c");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("a.txt"), col("A", "May 1, 2025, noon")).unwrap();
        let mut l = Library::new(
            root.clone(),
            ParseCtx::new(chrono_tz::UTC),
            State::default(),
            "e".into(),
        );
        l.scan().unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert!(l.scan().is_err());
        assert_eq!(l.view(now()).articles.len(), 1);
    }
}
