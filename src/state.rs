//! The small persistent record that keeps ids and `updated` stable across
//! edits, renames and restarts: per article its id, slug, source path,
//! content hash and last real change. Written atomically (temp file, fsync,
//! rename) to `state_dir/state.json`, never into the output directory.
//! Uses nothing else of Herald's but the `Article` model.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::article::Article;

const FILE: &str = "state.json";
const VERSION: u32 = 1;

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file exists but is not a Herald state file.
    #[error("{}: not a valid state file ({source}); move it away to start afresh, which gives every article a new id", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// What Herald remembers about one article.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    slug: String,
    /// Source path relative to the content directory.
    path: String,
    /// Content hash, hex.
    hash: String,
    updated: DateTime<FixedOffset>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Disk {
    version: u32,
    /// The id authority in force when the first article was published.
    authority: Option<String>,
    /// Date (`YYYY-MM-DD`) used in feed ids, fixed at first publication.
    since: Option<String>,
    /// id → entry. A BTreeMap so the file is byte-identical for equal state.
    articles: BTreeMap<String, Entry>,
}

/// The identity record, with indexes for the lookups the library makes.
#[derive(Debug, Default)]
pub struct State {
    disk: Disk,
    by_path: HashMap<String, String>,
    by_hash: HashMap<String, Vec<String>>,
    by_slug: HashMap<String, Vec<String>>,
    dirty: bool,
}

impl State {
    /// Loads `dir/state.json`; a missing file is an empty state.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(dir: &Path) -> Result<State, StateError> {
        let path = dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let disk: Disk = serde_json::from_slice(&bytes)
            .map_err(|source| StateError::Corrupt { path, source })?;
        let mut s = State {
            disk,
            ..State::default()
        };
        let ids: Vec<String> = s.disk.articles.keys().cloned().collect();
        for id in ids {
            s.index(&id);
        }
        Ok(s)
    }

    /// Writes the state if it changed since the last save: temp file in the
    /// same directory, fsync, rename, so a crash leaves the old or the new
    /// file, never a torn one.
    ///
    /// # Errors
    /// The directory cannot be created or the file cannot be written.
    pub fn save(&mut self, dir: &Path) -> Result<(), StateError> {
        if !self.dirty {
            return Ok(());
        }
        self.disk.version = VERSION;
        let path = dir.join(FILE);
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(&self.disk)
            .expect("state serialises: plain strings and dates");
        let tmp = dir.join(format!(".{FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        self.dirty = false;
        Ok(())
    }

    /// True when there are changes not yet saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    fn index(&mut self, id: &str) {
        let e = &self.disk.articles[id];
        self.by_path.insert(e.path.clone(), id.to_string());
        self.by_hash
            .entry(e.hash.clone())
            .or_default()
            .push(id.to_string());
        self.by_slug
            .entry(e.slug.clone())
            .or_default()
            .push(id.to_string());
    }

    fn unindex(&mut self, id: &str) {
        let Some(e) = self.disk.articles.get(id) else {
            return;
        };
        if self.by_path.get(&e.path).is_some_and(|i| i == id) {
            self.by_path.remove(&e.path);
        }
        if let Some(v) = self.by_hash.get_mut(&e.hash) {
            v.retain(|i| i != id);
        }
        if let Some(v) = self.by_slug.get_mut(&e.slug) {
            v.retain(|i| i != id);
        }
    }

    /// The authority for new `tag:` ids: the one recorded at first
    /// publication, so a later change of `base_url` (http → https, new
    /// host) never changes ids. An explicitly configured authority wins.
    pub fn authority(&mut self, configured: Option<&str>, default: &str) -> String {
        if let Some(a) = configured {
            return a.to_string();
        }
        if self.disk.authority.is_none() {
            self.disk.authority = Some(default.to_string());
            self.dirty = true;
        }
        self.disk.authority.clone().unwrap_or_default()
    }

    /// The date part of feed ids, fixed the first time it is asked for.
    pub fn since(&mut self, first: impl FnOnce() -> String) -> String {
        if self.disk.since.is_none() {
            self.disk.since = Some(first());
            self.dirty = true;
        }
        self.disk.since.clone().unwrap_or_default()
    }

    /// True when the source path `rel` is the path the state knows for the
    /// article that currently owns `slug` (used to settle slug conflicts in
    /// favour of the article that had the slug first).
    pub fn owns_slug(&self, rel: &str, slug: &str) -> bool {
        self.by_path
            .get(rel)
            .and_then(|id| self.disk.articles.get(id))
            .is_some_and(|e| e.slug == slug)
    }

    /// Gives `a` its stable id and `updated`, recording it. `rel` is its
    /// path relative to the content directory; `alive` says whether some
    /// other article file currently exists at a path (an entry whose file is
    /// gone may be claimed by a renamed or moved file).
    ///
    /// Lookup order: front-matter id, same path, same content at a vanished
    /// path (rename/move), same slug at a vanished path (delete and
    /// re-create). A new article gets
    /// `tag:<authority>,<published date>:<slug>`.
    pub fn identify(
        &mut self,
        a: &Article,
        rel: &str,
        authority: &str,
        now: DateTime<FixedOffset>,
        alive: impl Fn(&str) -> bool,
    ) -> (String, DateTime<FixedOffset>) {
        let hash = format!("{:032x}", a.hash);
        let vanished = |s: &State, id: &String| {
            s.disk
                .articles
                .get(id)
                .is_some_and(|e| e.path == rel || !alive(&e.path))
        };
        let found = if !a.id.is_empty() {
            Some(a.id.clone())
        } else if let Some(id) = self.by_path.get(rel) {
            Some(id.clone())
        } else if let Some(id) = self
            .by_hash
            .get(&hash)
            .and_then(|ids| ids.iter().find(|id| vanished(self, id)))
        {
            Some(id.clone())
        } else {
            self.by_slug
                .get(&a.slug)
                .and_then(|ids| ids.iter().find(|id| vanished(self, id)))
                .cloned()
        };

        let (id, mut entry) =
            match found.and_then(|id| self.disk.articles.get(&id).cloned().map(|e| (id, e))) {
                Some((id, e)) => {
                    let mut e2 = e.clone();
                    if e.hash != hash {
                        e2.hash = hash;
                        e2.updated = now.max(a.published);
                    }
                    e2.path = rel.to_string();
                    e2.slug = a.slug.clone();
                    (id, e2)
                }
                None => {
                    let id = if a.id.is_empty() {
                        self.fresh_id(a, authority)
                    } else {
                        a.id.clone()
                    };
                    (
                        id,
                        Entry {
                            slug: a.slug.clone(),
                            path: rel.to_string(),
                            hash,
                            updated: a.published,
                        },
                    )
                }
            };
        if a.updated_from_file {
            entry.updated = a.updated;
        }
        let updated = entry.updated.max(a.published);
        if self.disk.articles.get(&id) != Some(&entry) {
            // A path can belong to one article only: drop a stale claim on it.
            if let Some(old) = self.by_path.get(rel).cloned() {
                if old != id {
                    self.unindex(&old);
                    if let Some(e) = self.disk.articles.get_mut(&old) {
                        e.path.clear();
                    }
                }
            }
            self.unindex(&id);
            self.disk.articles.insert(id.clone(), entry);
            self.index(&id);
            self.dirty = true;
        }
        (id, updated)
    }

    fn fresh_id(&self, a: &Article, authority: &str) -> String {
        let base = format!(
            "tag:{authority},{}:{}",
            a.published.format("%Y-%m-%d"),
            a.slug
        );
        let mut id = base.clone();
        let mut n = 2;
        while self.disk.articles.contains_key(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(slug: &str, body: &str) -> Article {
        let published = DateTime::parse_from_rfc3339("2025-05-22T06:40:00+08:00").unwrap();
        let mut a = Article {
            slug: slug.into(),
            id: String::new(),
            title: "t".into(),
            published,
            updated: published,
            updated_from_file: false,
            categories: vec![],
            tags: vec![],
            summary: String::new(),
            body_html: body.into(),
            author: None,
            source: PathBuf::new(),
            hash: 0,
            warnings: vec![],
        };
        a.hash = a.content_hash();
        a
    }

    fn now(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    const T1: &str = "2025-06-01T00:00:00+00:00";
    const T2: &str = "2025-07-01T00:00:00+00:00";

    /// A new article gets a tag: id; an edit keeps it and moves `updated`;
    /// an unchanged re-read moves nothing.
    #[test]
    fn id_stable_updated_moves_on_change_only() {
        let mut s = State::default();
        let a = article("x", "one");
        let (id, up) = s.identify(&a, "x.txt", "example.com", now(T1), |_| true);
        assert_eq!(id, "tag:example.com,2025-05-22:x");
        assert_eq!(up, a.published);
        assert_eq!(
            s.identify(&a, "x.txt", "example.com", now(T2), |_| true),
            (id.clone(), up)
        );
        let b = article("x", "two");
        let (id2, up2) = s.identify(&b, "x.txt", "example.com", now(T2), |_| true);
        assert_eq!(id2, id);
        assert_eq!(up2, now(T2));
    }

    /// A rename (same content, new path, old path gone) keeps the id, even
    /// when the slug changes; a copy (old path still alive) does not.
    #[test]
    fn rename_keeps_id_copy_does_not() {
        let mut s = State::default();
        let a = article("x", "same");
        let (id, _) = s.identify(&a, "x.txt", "e", now(T1), |_| true);
        let moved = article("y", "same");
        let (id_moved, _) = s.identify(&moved, "sub/y.txt", "e", now(T1), |p| p != "x.txt");
        assert_eq!(id_moved, id);
        let copy = article("z", "same");
        let (id_copy, _) = s.identify(&copy, "z.txt", "e", now(T1), |_| true);
        assert_ne!(id_copy, id);
    }

    /// Save and load round-trip: ids survive a restart; the file is only
    /// rewritten when something changed.
    #[test]
    fn persists_across_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        let a = article("x", "b");
        let auth = s.authority(None, "first.example");
        let (id, up) = s.identify(&a, "x.txt", &auth, now(T1), |_| true);
        s.save(dir.path()).unwrap();
        assert!(!s.is_dirty());
        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(
            r.authority(None, "second.example"),
            "first.example",
            "authority fixed at first publication"
        );
        assert_eq!(
            r.identify(&a, "x.txt", "second.example", now(T2), |_| true),
            (id, up)
        );
        assert!(!r.is_dirty());
    }

    /// Deleting then re-creating an article with the same slug keeps its id.
    #[test]
    fn recreate_same_slug_keeps_id() {
        let mut s = State::default();
        let (id, _) = s.identify(&article("x", "v1"), "x.txt", "e", now(T1), |_| true);
        let (id2, _) = s.identify(&article("x", "v2"), "x.md", "e", now(T2), |p| p != "x.txt");
        assert_eq!(id, id2);
    }

    /// A corrupt state file is an error that says what to do, not a silent reset.
    #[test]
    fn corrupt_state_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{nope").unwrap();
        let e = State::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("state.json") && e.contains("not a valid state file"),
            "{e}"
        );
    }
}
