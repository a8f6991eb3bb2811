//! How far the bucket may shrink: `max_deletes` bounds both the deletions
//! of one pass and how many objects fewer than its high-water mark the
//! bucket may hold, so deletions made a few at a time (each pass within
//! the limit) cannot empty it either. The mark is the most objects the
//! bucket held under the prefix at the end of a pass since the operator
//! last confirmed a smaller site (`herald confirm-deletes`). It is kept
//! in `state/bucket.json`, so neither a restart nor a second process
//! (`herald publish`) starts the count again; a confirmation written
//! there is acted on by the next pass of whichever process lists the
//! bucket first (a running `serve` within a second). Uses `config`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::PublishConfig;

/// The name of the guard's file in the state directory.
pub const FILE: &str = "bucket.json";

/// `state/bucket.json` as written.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Saved {
    /// The target the mark belongs to (another target starts afresh).
    to: String,
    /// Most objects the bucket held.
    peak: usize,
    /// The operator confirmed a smaller site (`herald confirm-deletes`):
    /// the next pass that lists the whole bucket makes every deletion and
    /// sets the mark to what is left.
    #[serde(default)]
    confirm: bool,
}

/// The bucket's high-water mark and what may be deleted against it. The
/// file is the truth, read again before each use: a second process (or
/// the operator) may have changed it.
#[derive(Debug)]
pub struct Guard {
    /// Where the mark is kept; `None`: in memory only.
    path: Option<PathBuf>,
    /// Never write the file (a dry run).
    read_only: bool,
    to: String,
    max: usize,
    /// `None` until the bucket has been listed once (or a mark was read).
    peak: Option<usize>,
    confirm: bool,
}

impl Guard {
    /// The guard of `cfg`'s target, with the mark kept in `state_dir`
    /// (`None`: in memory only). A missing or unreadable file, or one of
    /// another target, starts with no mark.
    pub fn open(state_dir: Option<&Path>, cfg: &PublishConfig) -> Guard {
        let mut g = Guard {
            path: state_dir.map(|d| d.join(FILE)),
            read_only: false,
            to: cfg.to.clone(),
            max: cfg.max_deletes,
            peak: None,
            confirm: false,
        };
        g.refresh();
        g
    }

    /// The same guard, its file never written (a dry run).
    pub fn read_only(mut self) -> Guard {
        self.read_only = true;
        self
    }

    fn read(&self) -> Option<Saved> {
        let text = std::fs::read(self.path.as_ref()?).ok()?;
        let s: Saved = match serde_json::from_slice(&text) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "bucket: ignoring {}: {e}",
                    self.path.as_deref().unwrap_or(Path::new(FILE)).display()
                );
                return None;
            }
        };
        (s.to == self.to).then_some(s)
    }

    /// Takes what the file says, when it says anything.
    fn refresh(&mut self) {
        if let Some(s) = self.read() {
            self.peak = Some(s.peak);
            self.confirm = s.confirm;
        }
    }

    fn save(&self) -> std::io::Result<()> {
        let Some(path) = self.path.as_ref().filter(|_| !self.read_only) else {
            return Ok(());
        };
        let saved = Saved {
            to: self.to.clone(),
            peak: self.peak.unwrap_or(0),
            confirm: self.confirm,
        };
        let body = serde_json::to_vec(&saved).expect("plain data serialises");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, path))
    }

    fn save_or_warn(&self) {
        if let Err(e) = self.save() {
            tracing::warn!(
                "bucket: cannot save {} ({e}); the bucket's high-water mark is kept in memory only",
                self.path.as_deref().unwrap_or(Path::new(FILE)).display()
            );
        }
    }

    /// The most objects the bucket held (0 before it was first listed).
    pub fn peak(&self) -> usize {
        self.peak.unwrap_or(0)
    }

    /// Whether a pass may delete `deletes` objects and leave the bucket
    /// holding `after`: at most `max_deletes` at once, and never more than
    /// `max_deletes` below the mark.
    pub fn allows(&self, deletes: usize, after: usize) -> bool {
        // A bucket emptied from outside is below its mark, and may still
        // be filled again.
        deletes == 0 || (deletes <= self.max && after.saturating_add(self.max) >= self.peak())
    }

    /// The bucket holds `n` objects: the mark (as the file has it now)
    /// rises to it, and is saved.
    pub fn saw(&mut self, n: usize) {
        self.refresh();
        if self.peak.is_none_or(|p| n > p) {
            self.peak = Some(n);
            self.save_or_warn();
        }
    }

    /// Whether the operator has confirmed a smaller site and no pass has
    /// acted on it yet (the file is read again).
    pub fn confirmation_pending(&mut self) -> bool {
        self.refresh();
        self.confirm
    }

    /// The operator's word (`herald confirm-deletes`): the next pass that
    /// lists the whole bucket, in whichever process, makes every deletion.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn request_confirmation(&mut self) -> std::io::Result<()> {
        self.refresh();
        self.confirm = true;
        self.save()
    }

    /// A confirmed pass is done: the bucket's `n` objects are the mark
    /// from now on, for this process and any other.
    pub fn confirmed(&mut self, n: usize) {
        self.peak = Some(n);
        self.confirm = false;
        self.save_or_warn();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max: usize) -> PublishConfig {
        let mut c = PublishConfig::for_target("s3://bucket/site").unwrap();
        c.max_deletes = max;
        c
    }

    /// Deletions are bounded per pass and against the mark; the mark only
    /// rises, survives a new guard (a restart), belongs to its target; a
    /// confirmation waits in the file for the next confirmed pass, which
    /// lowers the mark for every guard of the target.
    #[test]
    fn marks() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = Guard::open(Some(dir.path()), &cfg(5));
        assert!(g.allows(5, 0), "no mark yet");
        assert!(!g.allows(6, 100), "more than max_deletes at once");
        g.saw(100);
        assert!(g.allows(5, 95));
        assert!(!g.allows(1, 94), "6 below the mark");
        assert!(g.allows(0, 3), "nothing deleted: always");
        g.saw(97);
        assert_eq!(g.peak(), 100, "the mark only rises");

        let mut again = Guard::open(Some(dir.path()), &cfg(5));
        assert_eq!(again.peak(), 100, "kept across a restart");
        let other = Guard::open(Some(dir.path()), &cfg_to("s3://other"));
        assert_eq!(other.peak(), 0, "another target's mark is not this one's");

        assert!(!g.confirmation_pending());
        again.request_confirmation().unwrap();
        assert!(g.confirmation_pending(), "seen by the other guard");
        g.confirmed(40);
        assert!(!again.confirmation_pending(), "acted on once");
        assert_eq!(again.peak(), 40);
        again.saw(41);
        g.saw(3);
        assert_eq!(g.peak(), 41, "the file is the truth");

        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert_eq!(
            Guard::open(Some(dir.path()), &cfg(5)).peak(),
            0,
            "unreadable"
        );
        let mem = Guard::open(None, &cfg(5));
        assert_eq!(mem.peak(), 0);

        let dir = tempfile::tempdir().unwrap();
        Guard::open(Some(dir.path()), &cfg(5)).saw(10);
        let mut dry = Guard::open(Some(dir.path()), &cfg(5)).read_only();
        assert_eq!(dry.peak(), 10, "a dry run reads the mark");
        dry.saw(20);
        assert_eq!(
            Guard::open(Some(dir.path()), &cfg(5)).peak(),
            10,
            "and never writes it"
        );
    }

    fn cfg_to(to: &str) -> PublishConfig {
        PublishConfig::for_target(to).unwrap()
    }
}
