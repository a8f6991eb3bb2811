//! How far the bucket may shrink: `max_deletes` bounds both the deletions
//! of one pass and how many objects fewer than its high-water mark the
//! bucket may hold, so deletions made a few at a time (each pass within
//! the limit) cannot empty it either. The mark is the most objects the
//! bucket held under the prefix at the end of a pass since the operator
//! last confirmed a smaller site (`herald publish --confirm-deletes`).
//! It is kept in `state/bucket.json`, so neither a restart nor a second
//! process (`herald publish` beside `serve`) starts the count again; a
//! confirmation written there is seen by a running `serve`. Uses `config`.

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
    /// Confirmations made so far: a change tells a running `serve`.
    confirmed: u64,
}

/// The bucket's high-water mark and what may be deleted against it.
#[derive(Debug)]
pub struct Guard {
    /// Where the mark is kept; `None`: in memory only.
    path: Option<PathBuf>,
    to: String,
    max: usize,
    /// `None` until the bucket has been listed once (or a mark was read).
    peak: Option<usize>,
    confirmed: u64,
}

impl Guard {
    /// The guard of `cfg`'s target, with the mark kept in `state_dir`
    /// (`None`: in memory only). A missing or unreadable file, or one of
    /// another target, starts with no mark.
    pub fn open(state_dir: Option<&Path>, cfg: &PublishConfig) -> Guard {
        let mut g = Guard {
            path: state_dir.map(|d| d.join(FILE)),
            to: cfg.to.clone(),
            max: cfg.max_deletes,
            peak: None,
            confirmed: 0,
        };
        if let Some(s) = g.read() {
            g.peak = Some(s.peak);
            g.confirmed = s.confirmed;
        }
        g
    }

    /// The same guard, its mark never written (a dry run).
    pub fn read_only(mut self) -> Guard {
        self.path = None;
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

    fn save(&self) {
        let Some(path) = &self.path else { return };
        let saved = Saved {
            to: self.to.clone(),
            peak: self.peak.unwrap_or(0),
            confirmed: self.confirmed,
        };
        let body = serde_json::to_vec(&saved).expect("plain data serialises");
        let tmp = path.with_extension("json.tmp");
        let r = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = r {
            tracing::warn!(
                "bucket: cannot save {} ({e}); the bucket's high-water mark is kept in memory only",
                path.display()
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

    /// The bucket holds `n` objects: the mark rises to it (and is saved).
    pub fn saw(&mut self, n: usize) {
        if self.peak.is_none_or(|p| n > p) {
            // Another process may have confirmed meanwhile: its mark wins.
            self.refresh();
            if self.peak.is_none_or(|p| n > p) {
                self.peak = Some(n);
                self.save();
            }
        }
    }

    /// The operator confirmed the bucket's size: `n` objects is the mark
    /// from now on, for this process and any other.
    pub fn confirm(&mut self, n: usize) {
        self.refresh();
        self.peak = Some(n);
        self.confirmed += 1;
        self.save();
    }

    /// Reads the file again; `true` when another process confirmed a size
    /// since (its mark is taken).
    pub fn refresh(&mut self) -> bool {
        match self.read() {
            Some(s) if s.confirmed != self.confirmed => {
                self.peak = Some(s.peak);
                self.confirmed = s.confirmed;
                true
            }
            _ => false,
        }
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
    /// rises, survives a new guard (a restart), belongs to its target, and
    /// a confirmation lowers it for every guard of the target.
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

        again.confirm(40);
        assert!(g.refresh(), "the other guard sees the confirmation");
        assert_eq!(g.peak(), 40);
        assert!(!g.refresh(), "once");
        assert!(g.allows(5, 35));
        g.saw(41);
        assert_eq!(Guard::open(Some(dir.path()), &cfg(5)).peak(), 41);

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
