//! How the state is kept on disk: `state.json`, the whole record, written
//! atomically (temp file, fsync, rename, fsync of the directory), and
//! `state.journal`, the changes since, one JSON line per changed entry
//! (and per category or tag first published), appended and fsynced on
//! every save. A publish must save before it serves (an id a reader has
//! seen is on disk), and rewriting megabytes at 10,000 articles on every
//! edit put tens of milliseconds into each one; a journal line is a few
//! hundred bytes. The file is written whole again when the journal has
//! grown past half its size, when `herald build` records a build, at
//! shutdown, and whenever the journal cannot be trusted (missing, cut,
//! not a regular file).
//!
//! The journal begins with the generation of the file it follows; every
//! whole write counts one up, so a journal left behind by a crash between
//! writing the file and removing the journal is ignored rather than
//! replayed over newer entries. A last line cut short (a crash while
//! appending) is dropped on loading; any other bad line is an error.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Entry, State, StateError};

/// The whole record, in the state directory.
pub const FILE: &str = "state.json";
/// The changes since `FILE` was last written whole.
pub const JOURNAL: &str = "state.journal";
const VERSION: u32 = 1;

/// Above this, and above half the file's size, the journal is folded
/// into a whole write of the file.
#[cfg(not(test))]
const JOURNAL_SLACK: u64 = 64 * 1024;
#[cfg(test)]
const JOURNAL_SLACK: u64 = 4096;

/// Where the on-disk record stands.
#[derive(Debug, Default)]
pub(super) struct Store {
    /// The next save writes the file whole.
    pub(super) rewrite: bool,
    /// Size of the file as last read or written; 0: there is none.
    file_len: u64,
    /// Bytes of the journal that belong to the file's generation (its
    /// header and whole lines); 0 when there is none yet.
    journal_len: u64,
}

/// One line of the journal: its header, or one change.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entry: Option<Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    /// A label's route folder, first published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<Box<str>>,
}

/// Makes a rename or a new file in `dir` durable.
/// A journal append written but not yet on disk
/// ([`State::save_unsynced`]).
#[derive(Debug)]
#[must_use = "an unsynced append is not saved until synced"]
pub struct Unsynced {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl Unsynced {
    /// fsyncs the append.
    ///
    /// # Errors
    /// The sync failed: the append may not be on disk.
    pub fn sync(self) -> Result<(), StateError> {
        self.file.sync_data().map_err(|error| StateError::Io {
            path: self.path,
            error,
        })
    }
}

/// Reads a whole file, which must be a regular file (else an
/// `InvalidInput` error): opened non-blocking and checked on the
/// descriptor, so a FIFO or a device in the state directory cannot hang
/// Herald's start.
fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl State {
    /// Loads `dir/state.json` and replays its journal; a missing file is an
    /// empty state.
    ///
    /// # Errors
    /// The file or the journal exists but cannot be read or parsed.
    pub fn load(dir: &Path) -> Result<State, StateError> {
        let path = dir.join(FILE);
        let mut s = State::default();
        match read_regular(&path) {
            Ok(bytes) => {
                s.disk = serde_json::from_slice(&bytes)
                    .map_err(|error| StateError::Corrupt { path, error })?;
                s.store.file_len = bytes.len() as u64;
                s.replay(dir)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(StateError::Io { path, error }),
        }
        let ids: Vec<Arc<str>> = s.disk.articles.keys().cloned().collect();
        for id in ids {
            s.index(&id);
        }
        Ok(s)
    }

    /// Applies the journal's changes, if it follows this generation.
    fn replay(&mut self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(JOURNAL);
        let bytes = match read_regular(&path) {
            Ok(b) => b,
            // Not a file of ours (a FIFO would block the start forever):
            // the next save moves it out of the way.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
                ) =>
            {
                return Ok(())
            }
            Err(error) => return Err(StateError::Io { path, error }),
        };
        let mut whole = 0;
        for (n, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            if !line.ends_with(b"\n") {
                break; // cut short by a crash: that save never finished
            }
            let parsed: Line =
                serde_json::from_slice(line).map_err(|error| StateError::CorruptJournal {
                    path: path.clone(),
                    line: n + 1,
                    error,
                })?;
            if n == 0 {
                if parsed.generation != Some(self.disk.generation) {
                    return Ok(()); // from before the file was last written
                }
            } else {
                if let (Some(id), Some(entry)) = (parsed.id, parsed.entry) {
                    self.disk.articles.insert(id, entry);
                }
                if let Some(a) = parsed.authority {
                    self.disk.authority = Some(a);
                }
                if let Some(since) = parsed.since {
                    self.disk.since = Some(since);
                }
                if let Some(label) = parsed.label {
                    self.disk.labels.insert(label);
                }
            }
            whole += line.len() as u64;
        }
        self.store.journal_len = whole;
        Ok(())
    }

    /// Saves what changed since the last save, if anything: appended to
    /// the journal and fsynced, or the whole file written atomically (see
    /// the module doc for when). Either way it is on disk when this
    /// returns `Ok`, and a crash at any moment leaves the state as of this
    /// save or the one before.
    ///
    /// # Errors
    /// The directory cannot be created or nothing can be written.
    pub fn save(&mut self, dir: &Path) -> Result<(), StateError> {
        match self.save_unsynced(dir)? {
            Some(pending) => pending.sync().inspect_err(|_| self.sync_failed()),
            None => Ok(()),
        }
    }

    /// [`State::save`], except that an append to the journal is written
    /// but not yet fsynced: the caller syncs it with [`Unsynced::sync`]
    /// (while it renders, say) and shows nothing of this state before
    /// that returned `Ok` — or calls [`State::sync_failed`]. The whole
    /// file, when written, is on disk when this returns, as with `save`.
    ///
    /// # Errors
    /// As [`State::save`].
    pub fn save_unsynced(&mut self, dir: &Path) -> Result<Option<Unsynced>, StateError> {
        if !self.dirty {
            return Ok(None);
        }
        std::fs::create_dir_all(dir).map_err(|error| StateError::Io {
            path: dir.join(FILE),
            error,
        })?;
        let whole = self.store.rewrite
            || self.store.file_len == 0
            || self.store.journal_len > JOURNAL_SLACK.max(self.store.file_len / 2);
        let mut pending = None;
        if whole {
            self.write_file(dir)?;
        } else {
            match self.append(dir)? {
                Some(p) => pending = p,
                None => self.write_file(dir)?,
            }
        }
        self.dirty = false;
        self.changed.clear();
        self.meta_changed = false;
        self.unsaved_new.clear();
        self.new_labels.clear();
        Ok(pending)
    }

    /// An append [`State::save_unsynced`] left unsynced could not be
    /// synced: what it held may not be on disk, so the next save writes
    /// the file whole.
    pub fn sync_failed(&mut self) {
        self.store.rewrite = true;
        self.dirty = true;
    }

    /// Writes the file whole if the journal holds anything (or something
    /// is unsaved), so the next start reads one file (at shutdown).
    ///
    /// # Errors
    /// As [`State::save`].
    pub fn compact(&mut self, dir: &Path) -> Result<(), StateError> {
        if self.store.journal_len > 0 || self.dirty {
            self.store.rewrite = true;
            self.dirty = true;
        }
        self.save(dir)
    }

    /// Appends the changes to the journal, returning it to be synced (or
    /// `Some(None)` when it was synced here: a new journal, whose directory
    /// entry is synced too). `Ok(None)`: the journal is not what this
    /// state last wrote (gone, cut, not a regular file): write the file
    /// whole instead.
    fn append(&mut self, dir: &Path) -> Result<Option<Option<Unsynced>>, StateError> {
        let path = dir.join(JOURNAL);
        let mut buf = Vec::with_capacity(256 * (self.changed.len() + 2));
        let mut line = |l: &Line| {
            // Serialising plain strings and numbers into memory cannot fail.
            let _ = serde_json::to_writer(&mut buf, l);
            buf.push(b'\n');
        };
        if self.store.journal_len == 0 {
            line(&Line {
                generation: Some(self.disk.generation),
                ..Line::default()
            });
        }
        if self.meta_changed {
            line(&Line {
                authority: self.disk.authority.clone(),
                since: self.disk.since.clone(),
                ..Line::default()
            });
        }
        let mut ids: Vec<&Arc<str>> = self.changed.iter().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(e) = self.disk.articles.get(id) {
                line(&Line {
                    id: Some(Arc::clone(id)),
                    entry: Some(e.clone()),
                    ..Line::default()
                });
            }
        }
        for label in &self.new_labels {
            line(&Line {
                label: Some(label.clone()),
                ..Line::default()
            });
        }
        let io = |error| StateError::Io {
            path: path.clone(),
            error,
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let meta = f.metadata().map_err(io)?;
        if !meta.is_file() || meta.len() < self.store.journal_len {
            drop(f);
            if !meta.is_file() {
                // Never ours: out of the way of the next append.
                let _ = std::fs::remove_file(&path);
            }
            return Ok(None);
        }
        let at = self.store.journal_len;
        // Past `at` is what a failed append left, if anything.
        f.set_len(at).map_err(io)?;
        f.write_all_at(&buf, at).map_err(io)?;
        if at == 0 {
            f.sync_data().map_err(io)?;
            crate::durable::sync_dir(Some(dir)).map_err(io)?;
            self.store.journal_len = buf.len() as u64;
            return Ok(Some(None));
        }
        self.store.journal_len = at + buf.len() as u64;
        Ok(Some(Some(Unsynced { file: f, path })))
    }

    /// Writes the file whole ([`crate::durable`]: temp file, fsync,
    /// rename, fsync of the directory) as the next generation, and drops
    /// the journal.
    fn write_file(&mut self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(FILE);
        self.disk.version = VERSION;
        self.disk.generation += 1;
        // Streamed through a small buffer: the file is megabytes at 10,000
        // articles, so a whole copy in memory would be allocated and
        // faulted in each time.
        let written = crate::durable::write_with(&path, |f| {
            serde_json::to_writer_pretty(f, &self.disk).map_err(|e| {
                std::io::Error::new(e.io_error_kind().unwrap_or(std::io::ErrorKind::Other), e)
            })
        });
        match written {
            Ok(len) => {
                self.store.file_len = len;
                self.store.journal_len = 0;
                self.store.rewrite = false;
                // Stale now (its generation is behind); removed to free the
                // space, and so that a FIFO or such cannot block an append.
                let _ = std::fs::remove_file(dir.join(JOURNAL));
                Ok(())
            }
            Err(error) => {
                self.disk.generation -= 1;
                Err(StateError::Io { path, error })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{article, now, T1, T2};
    use super::*;
    use crate::article::Article;
    use rustc_hash::FxHashSet as HashSet;

    /// Identifies `set` (path, article) in `s` at `at`.
    fn ids(s: &mut State, set: &[(&str, &Article)], at: &str) -> Vec<(String, String)> {
        let items: Vec<(String, &Article)> = set.iter().map(|(p, a)| (p.to_string(), *a)).collect();
        s.identify_all(&items, &|_| false, "e.example", now(at))
            .into_iter()
            .map(|x| {
                let (id, updated) = x.expect("new ids allowed");
                (id, updated.to_rfc3339())
            })
            .collect()
    }

    /// The first save writes the file; later ones append the changed
    /// entries to the journal and leave the file as it was; loading
    /// replays them; shutdown's compaction folds them into the file.
    /// A FIFO where the journal or the state file goes never hangs the
    /// load (a FIFO is opened non-blocking and refused): a journal that is
    /// not a file is ignored, a state file that is not one is an error
    /// naming it.
    #[test]
    fn special_files_never_hang_the_load() {
        let d = tempfile::tempdir().unwrap();
        let fifo = |p: &Path| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: mkfifo with a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        };
        std::fs::write(d.path().join(FILE), b"{\"version\":1,\"articles\":{}}").unwrap();
        fifo(&d.path().join(JOURNAL));
        assert!(State::load(d.path()).is_ok());
        std::fs::remove_file(d.path().join(FILE)).unwrap();
        fifo(&d.path().join(FILE));
        let e = State::load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("state.json") && e.contains("not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn journal_then_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        s.authority(None, "e.example");
        let (a, b) = (article("a", "one"), article("b", "two"));
        ids(&mut s, &[("a.txt", &a)], T1);
        s.save(dir.path()).unwrap();
        assert!(!dir.path().join(JOURNAL).exists());
        let file = std::fs::read(dir.path().join(FILE)).unwrap();

        let a2 = article("a", "one, edited");
        let want = ids(&mut s, &[("a.txt", &a2), ("b.txt", &b)], T2);
        s.save(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join(FILE)).unwrap(), file);
        let journal = std::fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert_eq!(
            journal.lines().count(),
            3,
            "header and two entries:\n{journal}"
        );
        assert!(journal.starts_with("{\"generation\":1}\n"), "{journal}");

        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(ids(&mut r, &[("a.txt", &a2), ("b.txt", &b)], T2), want);
        assert!(!r.is_dirty(), "nothing new after the replay");
        assert_eq!(r.authority(None, "other.example"), "e.example");
        r.compact(dir.path()).unwrap();
        assert!(!dir.path().join(JOURNAL).exists());
        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(r.disk.generation, 2);
        assert_eq!(ids(&mut r, &[("a.txt", &a2), ("b.txt", &b)], T2), want);
    }

    /// An append left unsynced is in the journal once synced; the first
    /// append of a journal is synced at once (with its directory); after
    /// a failed sync the next save writes the file whole, holding what
    /// the unsynced append held.
    #[test]
    fn unsynced_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        s.authority(None, "e.example");
        let (a, b, c) = (article("a", "one"), article("b", "two"), article("c", "3"));
        ids(&mut s, &[("a.txt", &a)], T1);
        assert!(
            s.save_unsynced(dir.path()).unwrap().is_none(),
            "the file, whole"
        );
        ids(&mut s, &[("a.txt", &a), ("b.txt", &b)], T1);
        assert!(
            s.save_unsynced(dir.path()).unwrap().is_none(),
            "a new journal"
        );
        let want = ids(&mut s, &[("a.txt", &a), ("b.txt", &b), ("c.txt", &c)], T2);
        let pending = s.save_unsynced(dir.path()).unwrap().expect("an append");
        assert!(!s.is_dirty());
        pending.sync().unwrap();
        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(
            ids(&mut r, &[("a.txt", &a), ("b.txt", &b), ("c.txt", &c)], T2),
            want
        );

        let c2 = article("c", "3, edited");
        let want = ids(&mut s, &[("a.txt", &a), ("b.txt", &b), ("c.txt", &c2)], T2);
        let generation = s.disk.generation;
        drop(s.save_unsynced(dir.path()).unwrap().expect("an append"));
        s.sync_failed();
        assert!(s.is_dirty());
        assert!(
            s.save_unsynced(dir.path()).unwrap().is_none(),
            "written whole"
        );
        assert_eq!(s.disk.generation, generation + 1);
        assert!(!dir.path().join(JOURNAL).exists());
        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(
            ids(&mut r, &[("a.txt", &a), ("b.txt", &b), ("c.txt", &c2)], T2),
            want
        );
    }

    /// Labels are recorded once each: in the file when it is written
    /// whole, as one journal line each when first published after that;
    /// a label already known makes nothing to save; all of them are
    /// there after a load, and after compaction.
    #[test]
    fn labels_journaled_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        s.authority(None, "e.example");
        assert!(s.note_labels(["categories/world/", "tags/t/"]));
        s.save(dir.path()).unwrap();
        assert!(!s.note_labels(["tags/t/"]), "known: nothing to save");
        assert!(!s.is_dirty());
        assert!(s.note_labels(["tags/t/", "tags/%C3%A9/"]));
        s.save(dir.path()).unwrap();
        let journal = std::fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert_eq!(
            journal, "{\"generation\":1}\n{\"label\":\"tags/%C3%A9/\"}\n",
            "only the new one"
        );
        let want = ["categories/world/", "tags/%C3%A9/", "tags/t/"];
        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(r.labels().collect::<Vec<_>>(), want);
        assert!(!r.is_dirty());
        r.compact(dir.path()).unwrap();
        let r = State::load(dir.path()).unwrap();
        assert_eq!(r.labels().collect::<Vec<_>>(), want);
    }

    /// A last line cut short by a crash is dropped, and the next append
    /// writes over it; a bad line before the last is an error naming the
    /// journal and the line; a journal of an older generation (a crash
    /// between writing the file and removing it) is not replayed.
    #[test]
    fn cut_bad_and_stale_journals() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join(JOURNAL);
        let mut s = State::default();
        let (a, b, c) = (article("a", "one"), article("b", "two"), article("c", "3"));
        ids(&mut s, &[("a.txt", &a)], T1);
        s.save(dir.path()).unwrap();
        let with_b = ids(&mut s, &[("a.txt", &a), ("b.txt", &b)], T1);
        s.save(dir.path()).unwrap();
        let good = std::fs::read(&j).unwrap();

        let mut cut = good.clone();
        cut.extend_from_slice(b"{\"id\":\"tag:e.example,2025-05-22:c\",\"en");
        std::fs::write(&j, &cut).unwrap();
        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(r.store.journal_len, good.len() as u64);
        assert_eq!(ids(&mut r, &[("a.txt", &a), ("b.txt", &b)], T1), with_b);
        let all = ids(&mut r, &[("a.txt", &a), ("b.txt", &b), ("c.txt", &c)], T1);
        r.save(dir.path()).unwrap();
        let mut again = State::load(dir.path()).unwrap();
        assert_eq!(
            ids(
                &mut again,
                &[("a.txt", &a), ("b.txt", &b), ("c.txt", &c)],
                T1
            ),
            all
        );

        let mut bad = good.clone();
        bad.extend_from_slice(b"nonsense\n{\"since\":\"2025-01-01\"}\n");
        std::fs::write(&j, &bad).unwrap();
        let e = State::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("state.journal:3: not a valid state journal line"),
            "{e}"
        );

        // The file written whole (generation 2); the old journal put back.
        std::fs::write(&j, &good).unwrap();
        let mut r = State::load(dir.path()).unwrap();
        let b2 = article("b", "two, edited");
        let newest = ids(&mut r, &[("a.txt", &a), ("b.txt", &b2)], T2);
        r.compact(dir.path()).unwrap();
        std::fs::write(&j, &good).unwrap();
        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(
            ids(&mut r, &[("a.txt", &a), ("b.txt", &b2)], T2),
            newest,
            "the stale journal's older b is not replayed"
        );
    }

    /// A journal that grew past half the file is folded into the file.
    #[test]
    fn long_journal_is_folded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        let a = article("a", "v0");
        ids(&mut s, &[("a.txt", &a)], T1);
        s.save(dir.path()).unwrap();
        let mut generations = HashSet::default();
        for i in 0..60 {
            let a = article("a", &format!("v{i} {}", "x".repeat(200)));
            ids(&mut s, &[("a.txt", &a)], T2);
            s.save(dir.path()).unwrap();
            generations.insert(s.disk.generation);
            assert!(s.store.journal_len <= JOURNAL_SLACK + 1024);
        }
        assert!(generations.len() > 1, "folded at least once");
        let last = ids(&mut s, &[("a.txt", &article("a", "final"))], T2);
        s.save(dir.path()).unwrap();
        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(ids(&mut r, &[("a.txt", &article("a", "final"))], T2), last);
    }
}
