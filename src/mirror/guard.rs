//! How far the bucket may shrink: `max_deletes` bounds both the deletions
//! of one pass and how many objects fewer than its high-water mark the
//! bucket may hold, so deletions made a few at a time (each pass within
//! the limit) cannot empty it either. The mark is the most objects the
//! bucket held under the prefix at the end of a pass since the operator
//! last confirmed a smaller site (`herald confirm-deletes`). It is kept
//! in `state/bucket.json`, so neither a restart nor a second process
//! (`herald publish`) starts the count again.
//!
//! A confirmation is the operator's word on the deletions a pass held
//! back, and on nothing else: a refused pass writes its keys to the file
//! (`held`), `confirm-deletes` copies them (`confirmed`), and only a pass
//! whose deletions are all among them, in whichever process, makes them
//! whatever `max_deletes` says and spends it. A pass that would delete
//! anything else is guarded as before and the confirmation waits; a pass
//! that holds nothing back clears both (what was confirmed is no longer
//! to be deleted). The keys are in the file so a second process can check
//! them: its size follows the deletions held back, not the site. Uses
//! `config`.

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
    /// The keys whose deletion the last pass refused, sorted (empty: none
    /// held back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    held: Vec<String>,
    /// The held keys the operator confirmed (`herald confirm-deletes`),
    /// sorted: a pass whose deletions are all among them makes them and
    /// sets the mark to what is left. (A file of an older Herald may say
    /// `"confirm": true` instead; that word named no deletions and is not
    /// taken.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    confirmed: Vec<String>,
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
    /// As in [`Saved`].
    held: Vec<String>,
    /// As in [`Saved`].
    confirmed: Vec<String>,
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
            held: Vec::new(),
            confirmed: Vec::new(),
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
        if let Some(mut s) = self.read() {
            self.peak = Some(s.peak);
            // Sorted as written; sorted again in case a hand edited it, as
            // `covers` searches them.
            for keys in [&mut s.held, &mut s.confirmed] {
                keys.sort_unstable();
                keys.dedup();
            }
            self.held = s.held;
            self.confirmed = s.confirmed;
        }
    }

    fn save(&self) -> std::io::Result<()> {
        let Some(path) = self.path.as_ref().filter(|_| !self.read_only) else {
            return Ok(());
        };
        let saved = Saved {
            to: self.to.clone(),
            peak: self.peak.unwrap_or(0),
            held: self.held.clone(),
            confirmed: self.confirmed.clone(),
        };
        let body = serde_json::to_vec(&saved).expect("plain data serialises");
        // Durable: a crash must not leave an empty file, which would be
        // read as no mark at all (and no held deletions to confirm).
        crate::durable::write(path, &body).map(drop)
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

    /// A pass refused to delete `keys` (sorted), or, `keys` empty, held
    /// nothing back: the file says so for `herald confirm-deletes`. A pass
    /// that holds nothing back also withdraws a confirmation (what it named
    /// is no longer to be deleted).
    pub fn hold(&mut self, keys: &[String]) {
        self.refresh();
        let withdraw = keys.is_empty() && !self.confirmed.is_empty();
        if self.held != keys || withdraw {
            self.held = keys.to_vec();
            if keys.is_empty() {
                self.confirmed.clear();
            }
            self.save_or_warn();
        }
    }

    /// A fingerprint of the operator's confirmation waiting for a pass
    /// (the file is read again); `None` when there is none. Equal
    /// fingerprints: the same keys confirmed.
    pub fn pending(&mut self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        self.refresh();
        if self.confirmed.is_empty() {
            return None;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.confirmed.hash(&mut h);
        Some(h.finish())
    }

    /// Whether the operator confirmed every one of `deletes` (the file is
    /// read again): a pass deleting them may go below the mark. Never for
    /// a pass that deletes nothing.
    pub fn covers(&mut self, deletes: &[String]) -> bool {
        self.refresh();
        !deletes.is_empty()
            && deletes
                .iter()
                .all(|k| self.confirmed.binary_search(k).is_ok())
    }

    /// The operator's word (`herald confirm-deletes`) on the deletions the
    /// last pass held back, in whichever process: a later pass whose
    /// deletions are all among them makes them. Returns how many keys it
    /// confirms; 0 when none are held (nothing is written).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn request_confirmation(&mut self) -> std::io::Result<usize> {
        self.refresh();
        if self.held.is_empty() {
            return Ok(0);
        }
        self.confirmed = self.held.clone();
        self.save()?;
        Ok(self.confirmed.len())
    }

    /// A confirmed pass is done: the bucket's `n` objects are the mark
    /// from now on, for this process and any other, and nothing is held or
    /// confirmed.
    pub fn confirmed(&mut self, n: usize) {
        self.peak = Some(n);
        self.held.clear();
        self.confirmed.clear();
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
    /// confirmation waits in the file for the confirmed pass, which lowers
    /// the mark for every guard of the target.
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

        assert!(g.pending().is_none());
        g.hold(&keys(&["a", "b"]));
        assert_eq!(again.request_confirmation().unwrap(), 2);
        assert!(g.pending().is_some(), "seen by the other guard");
        g.confirmed(40);
        assert!(again.pending().is_none(), "acted on once");
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

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    /// A confirmation covers the deletions held back when it was given, or
    /// some of them, and nothing else; given with nothing held it
    /// confirms nothing; a later refusal with other keys leaves it as it
    /// was; a pass that holds nothing back withdraws it.
    #[test]
    fn confirmations() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = Guard::open(Some(dir.path()), &cfg(2));
        let mut op = Guard::open(Some(dir.path()), &cfg(2));
        assert_eq!(op.request_confirmation().unwrap(), 0, "nothing held");
        assert!(!g.covers(&keys(&["a"])));
        assert!(!dir.path().join(FILE).exists(), "nothing written");

        g.hold(&keys(&["a", "b", "c"]));
        assert_eq!(op.request_confirmation().unwrap(), 3);
        let fp = g.pending();
        let cases: [(&str, &[&str], bool); 5] = [
            ("the same set", &["a", "b", "c"], true),
            ("a subset", &["a", "c"], true),
            ("one more", &["a", "b", "c", "d"], false),
            ("another", &["d"], false),
            ("nothing to delete", &[], false),
        ];
        for (label, deletes, want) in cases {
            assert_eq!(g.covers(&keys(deletes)), want, "{label}");
        }
        g.hold(&keys(&["a", "b", "c", "d"]));
        assert_eq!(
            g.pending(),
            fp,
            "a refusal of more keeps what was confirmed"
        );
        assert!(!g.covers(&keys(&["a", "b", "c", "d"])));
        assert_eq!(op.request_confirmation().unwrap(), 4, "confirmed again");
        assert_ne!(g.pending(), fp, "another confirmation");
        assert!(g.covers(&keys(&["a", "b", "c", "d"])));

        g.hold(&[]);
        assert!(g.pending().is_none(), "withdrawn when nothing is held");
        assert!(!op.covers(&keys(&["a"])));
        assert_eq!(op.request_confirmation().unwrap(), 0);

        // A file of an older Herald: its bare word is not taken.
        std::fs::write(
            dir.path().join(FILE),
            r#"{"to":"s3://bucket/site","peak":7,"confirm":true}"#,
        )
        .unwrap();
        let mut old = Guard::open(Some(dir.path()), &cfg(2));
        assert_eq!(old.peak(), 7);
        assert!(old.pending().is_none());
    }

    fn cfg_to(to: &str) -> PublishConfig {
        PublishConfig::for_target(to).unwrap()
    }
}
