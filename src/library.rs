//! The set of articles, keyed by source path, plus the files that failed and
//! why. [`Library::scan`] walks the whole content tree once (and again for
//! verification passes and rescans); [`Library::apply`] takes a batch of
//! changed paths and re-reads only files whose size, mtime or inode moved.
//! [`Library::view`] settles identities (through the state file), slug
//! conflicts and future-dated articles into the list the renderers use.
//! Uses `parse`, `article` and `state`.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, Utc};
use rayon::prelude::*;

use crate::article::Article;
use crate::parse::{self, ParseCtx, ParseError};
use crate::state::State;

/// What identifies a file version without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: Option<SystemTime>,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let ino = 0;
        Stamp {
            len: meta.len(),
            mtime: meta.modified().ok(),
            ino,
        }
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
}

impl Key {
    fn of(a: &Article) -> Key {
        Key {
            published: instant(&a.published),
            slug: xxhash_rust::xxh3::xxh3_64(a.slug.as_bytes()),
            warned: !a.warnings.is_empty(),
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

/// What the renderers see: the published articles and what was left out.
#[derive(Debug, Default, Clone)]
pub struct View {
    /// Published articles, newest first (ties by slug).
    pub articles: Vec<Arc<Article>>,
    /// Files left out (parse errors, slug conflicts), sorted by path.
    pub rejected: Vec<ParseError>,
    /// Published with a warning (e.g. no body).
    pub warnings: Vec<String>,
    /// When the next held-back, future-dated article is due.
    pub next_release: Option<DateTime<Utc>>,
    /// New articles left out because no id may be made up for them now
    /// ([`Library::hold_new_articles`]).
    pub held_back: usize,
}

/// All articles of one content directory.
#[derive(Debug)]
pub struct Library {
    root: PathBuf,
    ctx: ParseCtx,
    files: HashMap<PathBuf, FileEntry>,
    state: State,
    authority: String,
    progress: Progress,
}

/// Called after each file read (see [`Library::on_progress`]).
#[derive(Clone, Default)]
struct Progress(Option<Arc<dyn Fn() + Send + Sync>>);

impl Progress {
    fn beat(&self) {
        if let Some(f) = &self.0 {
            f();
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(set)"
        } else {
            "Progress(none)"
        })
    }
}

/// Outcome of reading one file.
enum Read {
    Parsed(Stamp, Option<Box<Article>>),
    Failed(Stamp, ParseError),
}

impl Library {
    /// An empty library over `root`; call [`Library::scan`] to fill it.
    pub fn new(root: PathBuf, ctx: ParseCtx, state: State, authority: String) -> Library {
        Library {
            root,
            ctx,
            files: HashMap::default(),
            state,
            authority,
            progress: Progress::default(),
        }
    }

    /// Has `beat` called after each file is read and parsed (from the
    /// threads that read them), so that a long scan can be told from a
    /// stuck one.
    pub fn on_progress(&mut self, beat: impl Fn() + Send + Sync + 'static) {
        self.progress = Progress(Some(Arc::new(beat)));
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

    /// Changes the parse settings (time zone) after a config reload; every
    /// file is re-read on the next scan.
    pub fn set_ctx(&mut self, ctx: ParseCtx, authority: String) {
        if ctx.tz != self.ctx.tz {
            self.files.clear();
        }
        self.ctx = ctx;
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
        let root = self.root.clone();
        Ok(self.sync_subtree(&root))
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
        let mut changed = false;
        let mut done: HashSet<&Path> = HashSet::default();
        for p in paths {
            if !p.starts_with(&self.root) || !done.insert(p) {
                continue;
            }
            changed |= match std::fs::metadata(p) {
                Ok(m) if m.is_dir() => self.sync_subtree(p),
                Ok(_) if parse::kind_of(p).is_some() && !parse::in_hidden_dir(&self.root, p) => {
                    self.sync_files(vec![p.clone()])
                }
                Ok(_) => false,
                Err(_) => self.forget_under(p),
            };
        }
        Ok(changed)
    }

    /// Drops every entry at or below `p` (a deleted file or directory).
    fn forget_under(&mut self, p: &Path) -> bool {
        let before = self.files.len();
        self.files.retain(|k, _| !k.starts_with(p));
        before != self.files.len()
    }

    /// Re-walks `dir`: drops entries below it that are gone, parses new and
    /// changed files.
    fn sync_subtree(&mut self, dir: &Path) -> bool {
        let seen = article_files(&self.root, dir);
        let seen_set: HashSet<&PathBuf> = seen.iter().collect();
        let before = self.files.len();
        self.files
            .retain(|k, _| !k.starts_with(dir) || seen_set.contains(k));
        let removed = before != self.files.len();
        self.sync_files(seen) | removed
    }

    /// Stats each file; reads and parses (in parallel) the ones whose stamp
    /// moved. A file that fails keeps its last good version.
    fn sync_files(&mut self, paths: Vec<PathBuf>) -> bool {
        let stale: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| match (std::fs::metadata(p), self.files.get(p)) {
                (Ok(m), Some(f)) => Stamp::of(&m) != f.stamp,
                _ => true,
            })
            .collect();
        if stale.is_empty() {
            return false;
        }
        let ctx = self.ctx;
        let progress = &self.progress;
        let results: Vec<(PathBuf, Read)> = stale
            .into_par_iter()
            .map(|p| {
                let r = read_one(&p, &ctx);
                progress.beat();
                (p, r)
            })
            .collect();
        let mut changed = false;
        for (p, r) in results {
            match r {
                Read::Parsed(stamp, None) => {
                    changed |= self
                        .files
                        .remove(&p)
                        .is_some_and(|f| f.article.is_some() || f.error.is_some());
                    // A draft is remembered only by its stamp so it is not re-read.
                    self.files.insert(
                        p,
                        FileEntry {
                            stamp,
                            article: None,
                            key: Key::default(),
                            error: None,
                            identified: false,
                        },
                    );
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
                        }
                    } else {
                        self.files.insert(
                            p,
                            FileEntry {
                                stamp,
                                key: Key::of(&a),
                                article: Some(Arc::from(a)),
                                error: None,
                                identified: false,
                            },
                        );
                        changed = true;
                    }
                }
                Read::Failed(stamp, e) => {
                    let entry = self.files.entry(p).or_insert(FileEntry {
                        stamp,
                        article: None,
                        key: Key::default(),
                        error: None,
                        identified: false,
                    });
                    entry.stamp = stamp;
                    if entry.error.as_ref() != Some(&e) {
                        entry.error = Some(e);
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    /// Takes back the ids made up since the state file was last saved
    /// (it could not be: a reader shown one of them would see another
    /// after a restart) and, until [`State::allow_new_ids`], leaves out of
    /// [`Library::view`] every article that would need a new id, counted
    /// in [`View::held_back`]; articles already identified stay. Returns
    /// how many were taken back (settle the view again if any).
    pub fn hold_new_articles(&mut self) -> usize {
        let ids = self.state.withdraw_unsaved_ids();
        if ids.is_empty() {
            return 0;
        }
        let mut n = 0;
        for f in self.files.values_mut() {
            let Some(a) = f.article.as_mut() else {
                continue;
            };
            if f.identified && ids.contains(a.id.as_str()) {
                f.identified = false;
                // A made-up id, never one from front matter: without it
                // the article is matched afresh, not as an explicit id.
                Arc::make_mut(a).id = String::new();
                n += 1;
            }
        }
        n
    }

    /// Settles the published set as of `now`: the owner of each slug (the
    /// one the state file already knows, else the earliest published, then
    /// path order), stable ids and `updated` from the state file, articles
    /// dated after `now` held back.
    pub fn view(&mut self, now: DateTime<Utc>) -> View {
        let now_fixed: DateTime<FixedOffset> = now.fixed_offset();
        let mut view = View::default();
        let bytes = |p: &Path| p.as_os_str().as_encoded_bytes().to_vec();
        let rel = |root: &Path, p: &Path| {
            p.strip_prefix(root)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };

        // One pass over the files, reading only their keys and allocating
        // nothing per article: each published article's claim on its
        // slug, the first claim of a slug by index, a slug claimed twice or
        // more in `conflicts`. The whole view is settled on every publish,
        // so this pass is the part of an edit that grows with the archive.
        let now_key = instant(&now_fixed);
        let mut claims: Vec<(&PathBuf, &FileEntry, &Arc<Article>)> =
            Vec::with_capacity(self.files.len());
        let mut first: HashMap<u64, usize> =
            HashMap::with_capacity_and_hasher(self.files.len(), Default::default());
        // Slugs whose hash another slug already has (practically never).
        let mut first_by_name: HashMap<&str, usize> = HashMap::default();
        let mut conflicts: HashMap<&str, Vec<usize>> = HashMap::default();
        for (p, f) in &self.files {
            if let Some(e) = &f.error {
                view.rejected.push(e.clone());
            }
            let Some(a) = &f.article else {
                continue;
            };
            if f.key.published > now_key {
                let due = a.published.with_timezone(&Utc);
                view.next_release = Some(view.next_release.map_or(due, |d| d.min(due)));
                continue;
            }
            let taken = match first.entry(f.key.slug) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(claims.len());
                    None
                }
                std::collections::hash_map::Entry::Occupied(o)
                    if claims[*o.get()].2.slug == a.slug =>
                {
                    Some(*o.get())
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    match first_by_name.entry(a.slug.as_str()) {
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(claims.len());
                            None
                        }
                        std::collections::hash_map::Entry::Occupied(o) => Some(*o.get()),
                    }
                }
            };
            if let Some(held) = taken {
                conflicts
                    .entry(a.slug.as_str())
                    .or_insert_with(|| vec![held])
                    .push(claims.len());
            }
            claims.push((p, f, a));
        }
        // Slugs claimed more than once: the owner is the one the state file
        // already knows, else the earliest published, then path byte order
        // (not `Path`'s component order, which costs far more).
        let mut losers: HashSet<usize> = HashSet::default();
        for (slug, mut ix) in conflicts {
            ix.sort_by(|&x, &y| {
                let (a, b) = (&claims[x], &claims[y]);
                a.1.key
                    .published
                    .cmp(&b.1.key.published)
                    .then_with(|| bytes(a.0).cmp(&bytes(b.0)))
            });
            let owner = ix
                .iter()
                .position(|&i| self.state.owns_slug(&rel(&self.root, claims[i].0), slug))
                .unwrap_or(0);
            let owner_path = claims[ix[owner]].0;
            for (k, &i) in ix.iter().enumerate() {
                if k != owner {
                    losers.insert(i);
                    view.rejected.push(ParseError::new(
                        claims[i].0,
                        1,
                        format!("slug {slug:?} is already used by {}; rename one of the files or set `slug`", owner_path.display()),
                    ));
                }
            }
        }

        // Articles identified before and unchanged since keep their ids and
        // hold their state entries; only new and changed ones are matched.
        let mut fresh: Vec<PathBuf> = Vec::new();
        let mut claimed: HashSet<&str> =
            HashSet::with_capacity_and_hasher(claims.len(), Default::default());
        // Sorted by the keys, newest first, before the articles are
        // gathered in that order.
        let mut owned: Vec<(Key, &Arc<Article>)> = Vec::with_capacity(claims.len());
        for (i, (p, f, a)) in claims.iter().enumerate() {
            if !losers.is_empty() && losers.contains(&i) {
                continue;
            }
            if f.identified {
                claimed.insert(a.id.as_str());
                if f.key.warned {
                    view.warnings.extend(a.warnings.iter().cloned());
                }
                owned.push((f.key, a));
            } else {
                fresh.push((*p).clone());
            }
        }
        // As `newest_first`, with the instants from the keys.
        owned.sort_unstable_by(|(kx, x), (ky, y)| {
            ky.published
                .cmp(&kx.published)
                .then_with(|| x.slug.cmp(&y.slug))
        });
        view.articles = owned.into_iter().map(|(_, a)| Arc::clone(a)).collect();
        fresh.sort_unstable_by_key(|p| bytes(p));
        if !fresh.is_empty() {
            // Borrowed, not cloned: an extra `Arc` would make the
            // `make_mut` below copy every article it updates.
            let refs: Vec<(String, &Article)> = fresh
                .iter()
                .filter_map(|p| {
                    self.files
                        .get(p)
                        .and_then(|f| f.article.as_deref())
                        .map(|a| (rel(&self.root, p), a))
                })
                .collect();
            let identities = self
                .state
                .identify_all(&refs, &claimed, &self.authority, now_fixed);
            drop(claimed);
            drop(claims);
            let mut matched = Vec::with_capacity(fresh.len());
            for (p, identity) in fresh.iter().zip(identities) {
                let Some((id, updated)) = identity else {
                    // Stays unidentified: matched again next time.
                    view.held_back += 1;
                    continue;
                };
                let Some(f) = self.files.get_mut(p) else {
                    continue;
                };
                f.identified = true;
                let Some(a) = f.article.as_mut() else {
                    continue;
                };
                if a.id != id || a.updated != updated {
                    let m = Arc::make_mut(a);
                    m.id = id;
                    m.id.shrink_to_fit();
                    m.updated = updated;
                }
                view.warnings.extend(a.warnings.iter().cloned());
                matched.push(Arc::clone(a));
            }
            // Merged into the sorted ones (all of them, on a first scan).
            matched.sort_unstable_by(|x, y| newest_first(x, y));
            let kept = std::mem::take(&mut view.articles);
            view.articles.reserve(kept.len() + matched.len());
            let (mut kept, mut matched) =
                (kept.into_iter().peekable(), matched.into_iter().peekable());
            while let Some(next) = match (kept.peek(), matched.peek()) {
                (Some(k), Some(m)) if newest_first(m, k).is_lt() => matched.next(),
                (Some(_), _) => kept.next(),
                (None, _) => matched.next(),
            } {
                view.articles.push(next);
            }
        }
        view.rejected.sort_by(|a, b| {
            bytes(&a.path)
                .cmp(&bytes(&b.path))
                .then_with(|| a.reason.cmp(&b.reason))
        });
        view.warnings.sort();
        view
    }
}

/// Every article file at or below `dir` (following symlinks, skipping
/// dot-directories and files Herald ignores). Walk errors are logged and
/// the rest of the walk goes on.
fn article_files(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut seen = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || !e.file_name().to_str().is_some_and(|n| n.starts_with('.'))
        });
    for entry in walker {
        match entry {
            Ok(e) if !e.file_type().is_dir() && parse::kind_of(e.path()).is_some() => {
                if !parse::in_hidden_dir(root, e.path()) {
                    seen.push(e.into_path());
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(path = %err.path().unwrap_or(dir).display(), "skipped while walking content: {err}")
            }
        }
    }
    seen
}

/// A fingerprint of the content tree from a stat-only walk: every article
/// file's path, size, mtime and inode. Equal fingerprints mean no file was
/// added, removed, renamed or written (the same test the daemon uses to
/// decide what to re-read).
///
/// # Errors
/// The content directory is missing or unreadable.
pub fn tree_fingerprint(root: &Path) -> Result<u128, RootError> {
    std::fs::metadata(root).map_err(|error| RootError {
        path: root.to_path_buf(),
        error,
    })?;
    let mut files = article_files(root, root);
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

fn read_one(p: &Path, ctx: &ParseCtx) -> Read {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => {
            return Read::Failed(
                Stamp {
                    len: 0,
                    mtime: None,
                    ino: 0,
                },
                ParseError::new(p, 1, format!("cannot read: {e}")),
            )
        }
    };
    let stamp = Stamp::of(&meta);
    let bytes = match std::fs::read(p) {
        Ok(b) => b,
        Err(e) => return Read::Failed(stamp, ParseError::new(p, 1, format!("cannot read: {e}"))),
    };
    // The stamp of what was read: if the file changed while reading, the
    // next event (or verification pass) sees a newer stamp and reads again.
    let result = parse::decode(p, &bytes).and_then(|text| parse::parse(p, text, ctx));
    match result {
        Ok(a) => Read::Parsed(stamp, a.map(Box::new)),
        Err(e) => Read::Failed(stamp, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn lib(dir: &Path) -> Library {
        Library::new(
            dir.to_path_buf(),
            ParseCtx { tz: chrono_tz::UTC },
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
            ParseCtx { tz: chrono_tz::UTC },
            State::default(),
            "e".into(),
        );
        l.scan().unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert!(l.scan().is_err());
        assert_eq!(l.view(now()).articles.len(), 1);
    }
}
