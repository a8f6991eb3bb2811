//! File events → batches of changed paths.
//!
//! A raw `notify` watcher (inotify on Linux) feeds [`Pending`], which
//! decides when a batch is ready: after a quiet period with no events
//! (`debounce`), or when the oldest change has waited `settle_max`. A file
//! that was written but not yet closed is held back until its writer closes
//! it (inotify `IN_CLOSE_WRITE`) or `settle_max` passes, so a scraper
//! writing an article in several chunks never gets half of it published.
//! Queue overflow and watcher errors ask for a full rescan.
//!
//! Why not `notify-debouncer-full`: it releases each event once that event
//! is older than the window even while the same file is still being
//! written, it discards the close-after-write signal, and it stats the
//! whole tree up front to build its file-id cache.
//! Uses nothing else of Herald's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

/// What the watcher reports to the daemon loop.
#[derive(Debug)]
pub enum Change {
    /// Something happened at these paths.
    Paths(Vec<PathBuf>, Kind),
    /// Events were lost (queue overflow, watcher error): rescan everything.
    Rescan(String),
}

/// The part of an event the batching logic needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Data written; the writer may still have the file open.
    Write,
    /// The writer closed the file: its content is complete.
    CloseWrite,
    /// Created, removed, renamed, metadata: complete as it is.
    Other,
}

/// Classifies a notify event. Pure, so the table is unit-tested.
pub fn classify(kind: &EventKind) -> Option<Kind> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Kind::CloseWrite),
        EventKind::Access(_) => None,
        EventKind::Modify(ModifyKind::Data(_)) | EventKind::Modify(ModifyKind::Any) => {
            Some(Kind::Write)
        }
        EventKind::Create(_)
        | EventKind::Remove(_)
        | EventKind::Modify(_)
        | EventKind::Any
        | EventKind::Other => Some(Kind::Other),
    }
}

/// Watches the content directory recursively, plus its parent (so that the
/// directory being removed and created again is noticed).
pub struct Watcher {
    inner: RecommendedWatcher,
    root: PathBuf,
    root_watched: bool,
}

impl Watcher {
    /// Starts watching `root`; each event is handed to `on_change` (on the
    /// watcher's own thread, so it must only queue it).
    ///
    /// # Errors
    /// The watcher cannot be created (e.g. the inotify instance limit).
    pub fn new(
        root: &Path,
        on_change: impl Fn(Change) + Send + 'static,
    ) -> notify::Result<Watcher> {
        let root_abs = std::fs::canonicalize(root)
            .unwrap_or_else(|_| std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()));
        let inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let msg = match res {
                Ok(ev) if ev.need_rescan() => {
                    Change::Rescan("the kernel event queue overflowed".into())
                }
                Ok(ev) => match classify(&ev.kind) {
                    Some(k) if !ev.paths.is_empty() => Change::Paths(ev.paths, k),
                    _ => return,
                },
                Err(e) => Change::Rescan(format!("watcher error: {e}")),
            };
            on_change(msg);
        })?;
        let mut w = Watcher {
            inner,
            root: root_abs,
            root_watched: false,
        };
        if let Some(parent) = w.root.parent() {
            if let Err(e) = w.inner.watch(parent, RecursiveMode::NonRecursive) {
                tracing::warn!(path = %parent.display(), "cannot watch the content directory's parent (re-creation of the directory will be found by the verification pass): {e}");
            }
        }
        w.ensure_root();
        Ok(w)
    }

    /// The content directory as watched (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// (Re-)adds the recursive watch on the root if it is not in place.
    /// Returns true when a watch was newly added (the caller should rescan).
    pub fn ensure_root(&mut self) -> bool {
        if self.root_watched && self.root.is_dir() {
            return false;
        }
        if self.root_watched {
            let _ = self.inner.unwatch(&self.root);
            self.root_watched = false;
        }
        match self.inner.watch(&self.root, RecursiveMode::Recursive) {
            Ok(()) => {
                self.root_watched = true;
                true
            }
            // A missing root is reported by the scan that follows (fatal
            // at start, logged when it goes away later); a second line
            // about its watch would only say the same less clearly.
            Err(_) if !self.root.exists() => false,
            Err(e) => {
                tracing::warn!(path = %self.root.display(), "cannot watch content directory: {}", explain(&e));
                false
            }
        }
    }

    /// Call when the root itself was removed: its watch is gone with it.
    pub fn root_lost(&mut self) {
        self.root_watched = false;
    }
}

/// Turns the inotify limit errors into advice an operator can act on.
fn explain(e: &notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            format!("{e}: the inotify watch limit is reached; raise fs.inotify.max_user_watches (sysctl). Changes are still found by the periodic verification pass")
        }
        _ => e.to_string(),
    }
}

#[derive(Debug)]
struct PathState {
    first: Instant,
    open_write: bool,
}

/// Changed paths waiting for their batch.
#[derive(Debug, Default)]
pub struct Pending {
    paths: HashMap<PathBuf, PathState>,
    last_event: Option<Instant>,
    rescan: Option<String>,
}

impl Pending {
    /// Records an event seen at `now` (by the watcher; the loop may get
    /// to it later).
    pub fn add(&mut self, change: Change, now: Instant) {
        self.last_event = Some(self.last_event.map_or(now, |t| t.max(now)));
        match change {
            Change::Rescan(why) => self.rescan = Some(why),
            Change::Paths(paths, kind) => {
                for p in paths {
                    let st = self.paths.entry(p).or_insert(PathState {
                        first: now,
                        open_write: false,
                    });
                    match kind {
                        Kind::Write => st.open_write = true,
                        Kind::CloseWrite => st.open_write = false,
                        Kind::Other => {}
                    }
                }
            }
        }
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.rescan.is_none()
    }

    /// When the next batch may be ready (for the loop's sleep): the end of
    /// the quiet period if anything could be taken then, else the moment
    /// the oldest held (still open) file reaches `settle_max`. Never a
    /// moment at which [`Pending::take_ready`] would take nothing, so the
    /// loop cannot spin.
    pub fn deadline(&self, debounce: Duration, settle_max: Duration) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        let cap = self.paths.values().map(|s| s.first + settle_max).min();
        let any_ready = self.rescan.is_some() || self.paths.values().any(|s| !s.open_write);
        let quiet = if any_ready {
            self.last_event.map(|t| t + debounce)
        } else {
            None
        };
        [quiet, cap].into_iter().flatten().min()
    }

    /// Takes the batch that is ready at `now`: every path, once no event
    /// came for `debounce` or the oldest waited `settle_max` — except files
    /// still open for writing, which wait for their close up to
    /// `settle_max`. Returns the paths and, if events were lost, why a full
    /// rescan is needed.
    pub fn take_ready(
        &mut self,
        now: Instant,
        debounce: Duration,
        settle_max: Duration,
    ) -> (Vec<PathBuf>, Option<String>) {
        let quiet = self
            .last_event
            .is_none_or(|t| now.duration_since(t) >= debounce);
        let overdue = self
            .paths
            .values()
            .any(|s| now.duration_since(s.first) >= settle_max);
        if !(quiet || overdue) {
            return (Vec::new(), None);
        }
        let mut ready = Vec::new();
        self.paths.retain(|p, s| {
            let take = !s.open_write || now.duration_since(s.first) >= settle_max;
            if take {
                ready.push(p.clone());
            }
            !take
        });
        ready.sort();
        (ready, self.rescan.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};

    /// Event kinds map to the batching classes; reads are ignored.
    #[test]
    fn classification() {
        let cases = [
            (EventKind::Create(CreateKind::File), Some(Kind::Other)),
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                Some(Kind::Write),
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                Some(Kind::Other),
            ),
            (EventKind::Remove(RemoveKind::Folder), Some(Kind::Other)),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                Some(Kind::CloseWrite),
            ),
            (EventKind::Access(AccessKind::Open(AccessMode::Any)), None),
            (EventKind::Access(AccessKind::Close(AccessMode::Read)), None),
        ];
        for (k, want) in cases {
            assert_eq!(classify(&k), want, "{k:?}");
        }
    }

    fn paths(p: &[&str], k: Kind) -> Change {
        Change::Paths(p.iter().map(PathBuf::from).collect(), k)
    }

    const D: Duration = Duration::from_millis(50);
    const S: Duration = Duration::from_millis(2000);

    /// A burst of events becomes one batch once the tree is quiet.
    #[test]
    fn burst_is_one_batch() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        for i in 0..5000u64 {
            p.add(
                paths(&[&format!("f{i}.txt")], Kind::Other),
                t0 + Duration::from_micros(i * 100),
            );
        }
        let last = t0 + Duration::from_micros(4999 * 100);
        assert!(
            p.take_ready(last + Duration::from_millis(10), D, S)
                .0
                .is_empty(),
            "not quiet yet"
        );
        assert_eq!(p.deadline(D, S), Some(last + D));
        let (batch, rescan) = p.take_ready(last + D, D, S);
        assert_eq!(batch.len(), 5000);
        assert!(rescan.is_none());
        assert!(p.is_empty());
    }

    /// A file written but not closed waits for its close, or for settle_max.
    #[test]
    fn open_file_waits_for_close() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.add(paths(&["a.txt"], Kind::Write), t0);
        p.add(paths(&["b.txt"], Kind::Other), t0);
        let (batch, _) = p.take_ready(t0 + D, D, S);
        assert_eq!(batch, vec![PathBuf::from("b.txt")], "a.txt still open");
        assert_eq!(
            p.deadline(D, S),
            Some(t0 + S),
            "nothing to take before settle_max: no busy loop"
        );
        p.add(
            paths(&["a.txt"], Kind::CloseWrite),
            t0 + Duration::from_millis(300),
        );
        let (batch, _) = p.take_ready(t0 + Duration::from_millis(350), D, S);
        assert_eq!(batch, vec![PathBuf::from("a.txt")]);

        p.add(paths(&["c.txt"], Kind::Write), t0);
        assert!(p
            .take_ready(t0 + Duration::from_millis(500), D, S)
            .0
            .is_empty());
        assert_eq!(
            p.take_ready(t0 + S, D, S).0,
            vec![PathBuf::from("c.txt")],
            "settle_max caps the wait"
        );
    }

    /// A never-ending trickle of events still yields a batch at settle_max.
    #[test]
    fn trickle_is_capped() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        let mut t = t0;
        while t < t0 + S {
            p.add(paths(&["x.txt"], Kind::Other), t);
            t += Duration::from_millis(10);
            if t < t0 + S {
                assert!(p.take_ready(t, D, S).0.is_empty());
            }
        }
        assert_eq!(p.take_ready(t0 + S, D, S).0.len(), 1);
    }

    /// The quiet period counts from the time an event carries (the
    /// daemon stamps it when the watcher sees it): an event taken in only
    /// after a publish longer than the debounce is ready at once, and a
    /// stamp older than the newest never moves the period back.
    #[test]
    fn quiet_counts_from_when_seen() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.add(paths(&["a.txt"], Kind::CloseWrite), t0);
        let busy_until = t0 + D + Duration::from_millis(5);
        assert_eq!(p.deadline(D, S), Some(t0 + D));
        assert_eq!(
            p.take_ready(busy_until, D, S).0,
            vec![PathBuf::from("a.txt")]
        );

        p.add(
            paths(&["b.txt"], Kind::Other),
            t0 + Duration::from_millis(20),
        );
        p.add(
            paths(&["c.txt"], Kind::Other),
            t0 + Duration::from_millis(10),
        );
        assert_eq!(p.deadline(D, S), Some(t0 + Duration::from_millis(20) + D));
    }

    /// Overflow asks for a rescan.
    #[test]
    fn overflow_rescans() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.add(Change::Rescan("overflow".into()), t0);
        assert!(!p.is_empty());
        assert_eq!(p.take_ready(t0 + D, D, S).1.as_deref(), Some("overflow"));
    }
}
