//! The small persistent record that keeps ids and `updated` stable across
//! edits, renames and restarts: per article its id, slug (and the slugs
//! it had before, whose permalinks redirect), source path, content hash
//! and last real change, and how it matches articles to their ids; the
//! categories and tags ever published (one gone is answered 410); and
//! the id authority, provisional while it is no public host. Kept in `state_dir` (`store`: `state.json`, written whole
//! and atomically, plus a journal of the changes since), never in the
//! output directory. Uses nothing else of Herald's but the `Article` model.

mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smallvec::SmallVec;
use std::path::PathBuf;
use xxhash_rust::xxh3::xxh3_64;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::article::Article;

pub use store::{Unsynced, FILE, JOURNAL};

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file exists but is not a Herald state file.
    #[error("{}: not a valid state file ({error}); move it away to start afresh, which gives every article a new id", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Why.
        error: serde_json::Error,
    },
    /// A line of the journal (not the last, which may be cut short by a
    /// crash) is not a change Herald wrote.
    #[error("{}:{line}: not a valid state journal line ({error}); move the state directory away to start afresh, which gives every article a new id", path.display())]
    CorruptJournal {
        /// The journal.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        error: serde_json::Error,
    },
}

/// What Herald remembers about one article.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    slug: Box<str>,
    /// Slugs the article had before, oldest first, at most
    /// [`State::set_max_former_slugs`]: their permalinks redirect to the
    /// current one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    former: Vec<Box<str>>,
    /// Source path relative to the content directory.
    path: Box<str>,
    /// Content hash ([`Article::hash`]), written as 32 hex digits.
    #[serde(with = "hex128")]
    hash: u128,
    updated: DateTime<FixedOffset>,
}

/// A `u128` as 32 lowercase hex digits in the state file.
mod hex128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        u128::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}

/// Ids under one index key; nearly always exactly one, kept inline.
type Ids = SmallVec<[Arc<str>; 1]>;

/// Index key of a path or slug.
fn key(s: &str) -> u64 {
    xxh3_64(s.as_bytes())
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Disk {
    version: u32,
    /// Counts whole writes of the file; the journal of the changes since
    /// carries the same number, so one left from before is ignored.
    #[serde(default)]
    generation: u64,
    /// The id authority in force when the first article was published.
    authority: Option<String>,
    /// Date (`YYYY-MM-DD`) used in feed ids, fixed at first publication.
    since: Option<String>,
    /// id → entry. A BTreeMap so the file is byte-identical for equal state.
    /// Ids are shared with the indexes, not copied.
    articles: BTreeMap<Arc<str>, Entry>,
    /// What the last clean `herald build` saw and wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_build: Option<BuildRecord>,
    /// The route folder (`categories/<slug>/`, `tags/<slug>/`) of every
    /// category and tag ever published: one with no article any more is
    /// gone (410), not unknown (404).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    labels: BTreeSet<Box<str>>,
}

/// Fingerprints of a clean build: content tree, settings, output tree,
/// and when the next held-back article is due. A build that finds all of
/// them unchanged (and nothing due) has nothing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// [`crate::library::tree_fingerprint`] before the build, hex.
    pub content: String,
    /// Hash of the settings and Herald's version, hex.
    pub settings: String,
    /// Fingerprint of the output tree after the build, hex.
    pub output: String,
    /// Articles published.
    pub articles: usize,
    /// The next future-dated article's time, if any.
    pub next_release: Option<DateTime<FixedOffset>>,
    /// Warnings of that build, repeated when it is skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The identity record, with indexes for the lookups the library makes.
///
/// The indexes are keyed by hashes of paths and slugs, not copies of them,
/// and hold the ids the map holds (shared): a library of 100,000 articles
/// keeps one copy of each string. A lookup checks the entry itself, so a
/// hash collision can never match the wrong article.
#[derive(Debug, Default)]
pub struct State {
    disk: Disk,
    by_path: HashMap<u64, Ids>,
    by_hash: HashMap<u128, Ids>,
    by_slug: HashMap<u64, Ids>,
    dirty: bool,
    /// Ids whose entries changed since the last save (for the journal).
    changed: HashSet<Arc<str>>,
    /// `authority` or `since` changed since the last save.
    meta_changed: bool,
    /// How the state is kept on disk.
    store: store::Store,
    /// Ids made up (not taken from front matter) since the last save
    /// that worked: not on disk yet.
    unsaved_new: Vec<Arc<str>>,
    /// No new id is made up (see [`State::withdraw_unsaved_ids`]).
    hold_new: bool,
    /// Ids replaced since the library last asked (old → new), when a
    /// provisional authority gave way to a real one
    /// ([`State::authority`]).
    rekeyed: HashMap<Arc<str>, Arc<str>>,
    /// Ids of the entries with former slugs.
    with_former: HashSet<Arc<str>>,
    /// Most former slugs kept per article (`None`: the default).
    max_former: Option<usize>,
    /// Labels first recorded since the last save (for the journal).
    new_labels: Vec<Box<str>>,
}

/// Former slugs kept per article unless configured otherwise
/// (`max_former_slugs`).
pub const MAX_FORMER_SLUGS: usize = 10;

/// The permalinks of articles no longer at them, as
/// [`State::former_permalinks`] finds them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Former {
    /// (old slug, current slug) of articles published under a new slug.
    pub moved: Vec<(String, String)>,
    /// Slugs (current and former) of articles no longer published.
    pub gone: Vec<String>,
}

impl State {
    /// Forgets the ids made up since the last save that worked (they
    /// could not be kept: a reader shown one would see another after a
    /// restart) and makes up none until [`State::allow_new_ids`]: an
    /// article that would need one is left without (see
    /// [`State::identify_all`]). Returns the ids forgotten.
    pub fn withdraw_unsaved_ids(&mut self) -> HashSet<Arc<str>> {
        self.hold_new = true;
        let ids: HashSet<Arc<str>> = self.unsaved_new.drain(..).collect();
        for id in &ids {
            self.unindex(id);
            self.disk.articles.remove(id);
            self.changed.remove(id);
        }
        ids
    }

    /// New ids may be made up again (to be saved before they are shown).
    pub fn allow_new_ids(&mut self) {
        self.hold_new = false;
    }

    /// The record of the last clean build.
    pub fn last_build(&self) -> Option<&BuildRecord> {
        self.disk.last_build.as_ref()
    }

    /// Records (or clears) the last clean build.
    pub fn set_last_build(&mut self, record: Option<BuildRecord>) {
        if self.disk.last_build != record {
            self.disk.last_build = record;
            self.dirty = true;
            // Not journaled: builds are rare and write the file whole.
            self.store.rewrite = true;
        }
    }

    /// True when there are changes not yet saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The route folders of every category and tag ever published
    /// (`categories/<slug>/`), sorted.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.disk.labels.iter().map(|l| &**l)
    }

    /// Records the route folders of the labels published now; returns
    /// whether any was new (the state then needs saving). Labels are
    /// never forgotten, as the slugs of deleted articles are not.
    pub fn note_labels<'a>(&mut self, published: impl IntoIterator<Item = &'a str>) -> bool {
        let before = self.new_labels.len();
        for l in published {
            if !self.disk.labels.contains(l) {
                self.disk.labels.insert(l.into());
                self.new_labels.push(l.into());
            }
        }
        let new = self.new_labels.len() > before;
        self.dirty |= new;
        new
    }

    /// Keeps at most `n` former slugs per article (the oldest are
    /// forgotten first, when an article next changes slug).
    pub fn set_max_former_slugs(&mut self, n: usize) {
        self.max_former = Some(n);
    }

    fn max_former(&self) -> usize {
        self.max_former.unwrap_or(MAX_FORMER_SLUGS)
    }

    /// Where the permalinks the state knows of, other than those of the
    /// `published` articles' current slugs, now lead: the former slugs
    /// of published articles (at most the configured number each, the
    /// newest) to the current ones, and every slug of an article no
    /// longer published nowhere. `published` answers for an id whether
    /// it is published; `count` is how many are (when every entry is
    /// published, only entries with former slugs are looked at).
    pub fn former_permalinks(&self, count: usize, published: impl Fn(&str) -> bool) -> Former {
        let mut out = Former::default();
        let max = self.max_former();
        let moved = |e: &Entry, out: &mut Former| {
            let keep = e.former.len().saturating_sub(max);
            for old in &e.former[keep..] {
                out.moved.push((old.to_string(), e.slug.to_string()));
            }
        };
        if self.disk.articles.len() <= count {
            for id in &self.with_former {
                if let Some(e) = self.disk.articles.get(&**id) {
                    moved(e, &mut out);
                }
            }
        } else {
            for (id, e) in &self.disk.articles {
                if published(id) {
                    if !e.former.is_empty() {
                        moved(e, &mut out);
                    }
                } else {
                    out.gone.push(e.slug.to_string());
                    let keep = e.former.len().saturating_sub(max);
                    out.gone
                        .extend(e.former[keep..].iter().map(|s| s.to_string()));
                }
            }
        }
        out
    }

    fn index(&mut self, id: &Arc<str>) {
        let e = &self.disk.articles[id];
        if !e.former.is_empty() {
            self.with_former.insert(Arc::clone(id));
        }
        let (p, h, s) = (key(&e.path), e.hash, key(&e.slug));
        self.by_path.entry(p).or_default().push(Arc::clone(id));
        self.by_hash.entry(h).or_default().push(Arc::clone(id));
        self.by_slug.entry(s).or_default().push(Arc::clone(id));
    }

    fn unindex(&mut self, id: &str) {
        let Some(e) = self.disk.articles.get(id) else {
            return;
        };
        fn drop_from<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Ids>, k: K, id: &str) {
            if let Some(v) = m.get_mut(&k) {
                v.retain(|i| &**i != id);
                if v.is_empty() {
                    m.remove(&k);
                }
            }
        }
        let (p, h, s) = (key(&e.path), e.hash, key(&e.slug));
        self.with_former.remove(id);
        drop_from(&mut self.by_path, p, id);
        drop_from(&mut self.by_hash, h, id);
        drop_from(&mut self.by_slug, s, id);
    }

    /// Ids of the entries whose `field` is `value`, found through `index`
    /// (keyed by [`key`]), oldest indexed first.
    fn matching<'a>(
        &'a self,
        index: &'a HashMap<u64, Ids>,
        field: fn(&Entry) -> &str,
        value: &'a str,
    ) -> impl DoubleEndedIterator<Item = &'a Arc<str>> + 'a {
        index
            .get(&key(value))
            .into_iter()
            .flatten()
            .filter(move |id| {
                self.disk
                    .articles
                    .get(&***id)
                    .is_some_and(|e| field(e) == value)
            })
    }

    /// Ids of the entries whose source path is `rel`.
    fn with_path<'a>(&'a self, rel: &'a str) -> impl DoubleEndedIterator<Item = &'a Arc<str>> + 'a {
        self.matching(&self.by_path, |e| &e.path, rel)
    }

    /// Ids of the entries whose slug is `slug`.
    fn with_slug<'a>(
        &'a self,
        slug: &'a str,
    ) -> impl DoubleEndedIterator<Item = &'a Arc<str>> + 'a {
        self.matching(&self.by_slug, |e| &e.slug, slug)
    }

    /// The authority for new `tag:` ids: the one recorded at first
    /// publication, so a later change of `base_url` (http → https, new
    /// host) never changes ids. An explicitly configured authority wins.
    ///
    /// A recorded authority that is no public host ([`provisional`]: the
    /// shipped `base_url` 127.0.0.1, `localhost`, a private address) is
    /// provisional: the first time `default` is a real host, it replaces
    /// the recorded one (logged), and so it does in every id made with
    /// it. Those ids were only ever shown on a loopback or private
    /// address, never to the readers of the public site, and two sites
    /// first tried out this way must not share ids (readers merge items
    /// by id). The ids replaced are handed to the library by
    /// [`State::take_rekeyed`].
    pub fn authority(&mut self, configured: Option<&str>, default: &str) -> String {
        if let Some(a) = configured {
            return a.to_string();
        }
        match self.disk.authority.clone() {
            None => {
                self.disk.authority = Some(default.to_string());
                self.dirty = true;
                self.meta_changed = true;
            }
            Some(old) if provisional(&old) && !provisional(default) => {
                self.replace_authority(&old, default);
            }
            Some(_) => {}
        }
        self.disk.authority.clone().unwrap_or_default()
    }

    /// Replaces the provisional authority `old` by `new`, in the record
    /// and in every id made with it (`tag:<old>,…` → `tag:<new>,…`).
    fn replace_authority(&mut self, old: &str, new: &str) {
        let prefix = format!("tag:{old},");
        let ids: Vec<Arc<str>> = self
            .disk
            .articles
            .keys()
            .filter(|id| id.starts_with(&prefix))
            .cloned()
            .collect();
        for id in &ids {
            let base = format!("tag:{new},{}", &id[prefix.len()..]);
            let mut fresh = base.clone();
            let mut n = 2;
            while self.disk.articles.contains_key(fresh.as_str()) {
                fresh = format!("{base}-{n}");
                n += 1;
            }
            let fresh: Arc<str> = Arc::from(fresh);
            if let Some(e) = self.disk.articles.remove(id) {
                self.disk.articles.insert(Arc::clone(&fresh), e);
            }
            self.changed.remove(id);
            self.changed.insert(Arc::clone(&fresh));
            for u in &mut self.unsaved_new {
                if u == id {
                    *u = Arc::clone(&fresh);
                }
            }
            // Chained: an id replaced before the library saw the first
            // replacement maps from what the library holds.
            let from = self
                .rekeyed
                .iter()
                .find(|(_, to)| ***to == **id)
                .map(|(k, _)| Arc::clone(k))
                .unwrap_or_else(|| Arc::clone(id));
            self.rekeyed.insert(from, fresh);
        }
        self.by_path.clear();
        self.by_hash.clear();
        self.by_slug.clear();
        self.with_former.clear();
        let all: Vec<Arc<str>> = self.disk.articles.keys().cloned().collect();
        for id in &all {
            self.index(id);
        }
        tracing::info!(
            "id authority {old} was provisional (not a public host): ids now use {new}, the host of base_url; {} ids given out under {old}, shown only on that address, now use it too",
            ids.len()
        );
        self.disk.authority = Some(new.to_string());
        self.dirty = true;
        self.meta_changed = true;
        // The journal cannot say that an id is gone: written whole.
        self.store.rewrite = true;
    }

    /// The ids replaced since the last call, old → new (see
    /// [`State::authority`]): the library renames the articles it holds.
    pub fn take_rekeyed(&mut self) -> HashMap<Arc<str>, Arc<str>> {
        std::mem::take(&mut self.rekeyed)
    }

    /// The date part of feed ids, fixed the first time it is asked for.
    pub fn since(&mut self, first: impl FnOnce() -> String) -> String {
        if self.disk.since.is_none() {
            self.disk.since = Some(first());
            self.dirty = true;
            self.meta_changed = true;
        }
        self.disk.since.clone().unwrap_or_default()
    }

    /// True when the source path `rel` is the path the state knows for the
    /// article that currently owns `slug` (used to settle slug conflicts in
    /// favour of the article that had the slug first).
    pub fn owns_slug(&self, rel: &str, slug: &str) -> bool {
        self.with_path(rel)
            .next_back()
            .and_then(|id| self.disk.articles.get(id))
            .is_some_and(|e| &*e.slug == slug)
    }

    /// Gives every published article its stable id and `updated`, and
    /// records them. `items` holds each article with its path relative to
    /// the content directory.
    ///
    /// Matching is global, strongest evidence first, and an entry is
    /// claimed by one article only:
    /// 1. the front-matter `id`;
    /// 2. same path and same content (nothing happened);
    /// 3. same content (a rename or move, even if a new file now sits at
    ///    the old path);
    /// 4. same path (an edit in place);
    /// 5. same slug (deleted and written again, perhaps as `.md`).
    ///
    /// Anything else is new and gets `tag:<authority>,<published date>:<slug>`
    /// — or `None` while new ids are withheld
    /// ([`State::withdraw_unsaved_ids`]).
    /// `updated` moves to `now` when a known article's content hash changed.
    /// `taken` tells the ids already in use by articles not in `items`.
    pub fn identify_all(
        &mut self,
        items: &[(String, &Article)],
        taken: &dyn Fn(&str) -> bool,
        authority: &str,
        now: DateTime<FixedOffset>,
    ) -> Vec<Option<(String, DateTime<FixedOffset>)>> {
        let mut found: Vec<Option<Arc<str>>> = vec![None; items.len()];
        // Entries held by articles identified earlier and unchanged since.
        let mut claimed: HashSet<Arc<str>> = HashSet::default();
        let free = |id: &str, claimed: &HashSet<Arc<str>>| !claimed.contains(id) && !taken(id);
        let claim =
            |found: &mut Option<Arc<str>>, id: &Arc<str>, claimed: &mut HashSet<Arc<str>>| {
                if found.is_none() && free(id, claimed) {
                    claimed.insert(Arc::clone(id));
                    *found = Some(Arc::clone(id));
                }
            };
        for (i, (_, a)) in items.iter().enumerate() {
            if !a.id.is_empty() {
                let id = self
                    .disk
                    .articles
                    .get_key_value(a.id.as_str())
                    .map_or_else(|| Arc::from(a.id.as_str()), |(k, _)| Arc::clone(k));
                claim(&mut found[i], &id, &mut claimed);
            }
        }
        for (i, (rel, a)) in items.iter().enumerate() {
            let same = self
                .with_path(rel)
                .find(|id| self.disk.articles[&***id].hash == a.hash);
            if let Some(id) = same {
                claim(&mut found[i], id, &mut claimed);
            }
        }
        for (i, (_, a)) in items.iter().enumerate() {
            if found[i].is_none() {
                let id = self
                    .by_hash
                    .get(&a.hash)
                    .and_then(|ids| ids.iter().find(|id| free(id, &claimed)));
                if let Some(id) = id {
                    claim(&mut found[i], id, &mut claimed);
                }
            }
        }
        for (i, (rel, _)) in items.iter().enumerate() {
            if let Some(id) = self.with_path(rel).next_back() {
                claim(&mut found[i], id, &mut claimed);
            }
        }
        for (i, (_, a)) in items.iter().enumerate() {
            if found[i].is_none() {
                if let Some(id) = self.with_slug(&a.slug).find(|id| free(id, &claimed)) {
                    claim(&mut found[i], id, &mut claimed);
                }
            }
        }

        let mut out = Vec::with_capacity(items.len());
        for (i, (rel, a)) in items.iter().enumerate() {
            let known = found[i]
                .as_ref()
                .and_then(|id| self.disk.articles.get_key_value(&**id))
                .map(|(id, e)| (Arc::clone(id), e.clone()));
            let (id, mut entry) = match known {
                Some((id, mut e)) => {
                    if e.hash != a.hash {
                        e.hash = a.hash;
                        e.updated = edit_time(now, e.updated).max(a.published);
                    }
                    if *e.path != **rel {
                        e.path = rel.as_str().into();
                    }
                    if *e.slug != *a.slug {
                        // The old permalink redirects to the new one; a
                        // slug the article takes back is current again.
                        let old = std::mem::replace(&mut e.slug, a.slug.as_str().into());
                        e.former.retain(|s| **s != *old && **s != *a.slug);
                        e.former.push(old);
                        let over = e.former.len().saturating_sub(self.max_former());
                        e.former.drain(..over);
                    }
                    (id, e)
                }
                None => {
                    let id = match &found[i] {
                        Some(explicit) => Arc::clone(explicit),
                        None if self.hold_new => {
                            out.push(None);
                            continue;
                        }
                        None => {
                            let id: Arc<str> = Arc::from(self.fresh_id(a, authority));
                            self.unsaved_new.push(Arc::clone(&id));
                            id
                        }
                    };
                    let entry = Entry {
                        slug: a.slug.as_str().into(),
                        former: Vec::new(),
                        path: rel.as_str().into(),
                        hash: a.hash,
                        updated: a.published,
                    };
                    (id, entry)
                }
            };
            if a.updated_from_file {
                entry.updated = a.updated;
            }
            let updated = entry.updated.max(a.published);
            if self.disk.articles.get(&id) != Some(&entry) {
                self.unindex(&id);
                self.disk.articles.insert(Arc::clone(&id), entry);
                self.index(&id);
                self.dirty = true;
                self.changed.insert(Arc::clone(&id));
            }
            out.push(Some((id.to_string(), updated)));
        }
        out
    }

    /// A new id: `tag:<authority>,<published date>:<slug>`, the slug
    /// percent-encoded (RFC 4151 allows URI characters only; an ASCII
    /// slug is unchanged), with `-2`, `-3` … if taken. Ids made before
    /// slugs were encoded stay as they are in the state.
    fn fresh_id(&self, a: &Article, authority: &str) -> String {
        let base = format!(
            "tag:{authority},{}:{}",
            a.published.format("%Y-%m-%d"),
            crate::article::encode_segment(&a.slug)
        );
        let mut id = base.clone();
        let mut n = 2;
        while self.disk.articles.contains_key(id.as_str()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    }
}

/// True for an id authority no public site has: `localhost` and names
/// under `.localhost`, `.local`, `.internal`, `.home.arpa` or `.lan`, a
/// name without a dot, and loopback, unspecified, private (RFC 1918, RFC
/// 4193), shared (RFC 6598) and link-local addresses. Such an authority is
/// only provisional (see [`State::authority`]).
pub fn provisional(host: &str) -> bool {
    use std::net::IpAddr;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            let [x, y, ..] = a.octets();
            a.is_loopback()
                || a.is_unspecified()
                || a.is_private()
                || a.is_link_local()
                || (x == 100 && (64..128).contains(&y))
        }
        Ok(IpAddr::V6(a)) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return provisional(&v4.to_string());
            }
            let first = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            !name.contains('.')
                || [".localhost", ".local", ".internal", ".home.arpa", ".lan"]
                    .iter()
                    .any(|s| name.ends_with(s))
        }
    }
}

/// When an edit made at `now` is said to have happened: the whole
/// second, as feeds usually give times, unless the previous edit fell in
/// that same second; then to the millisecond (and at least 1 ms later), so
/// that a reader comparing `updated` still sees the second edit.
fn edit_time(now: DateTime<FixedOffset>, before: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    use chrono::{DurationRound, SubsecRound};
    let whole = now.trunc_subsecs(0);
    if whole > before {
        return whole;
    }
    let ms = chrono::TimeDelta::milliseconds(1);
    now.duration_trunc(ms).unwrap_or(now).max(before + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An edit's time is a whole second, unless the edit before it fell
    /// in that second: then milliseconds, always later than before.
    #[test]
    fn edit_times_are_whole_seconds_unless_too_close() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        let cases = [
            (
                "later second",
                "2025-05-02T10:00:01.678Z",
                "2025-05-02T10:00:00Z",
                "2025-05-02T10:00:01+00:00",
            ),
            (
                "same second",
                "2025-05-02T10:00:00.678912Z",
                "2025-05-02T10:00:00Z",
                "2025-05-02T10:00:00.678+00:00",
            ),
            (
                "same millisecond",
                "2025-05-02T10:00:00.678912Z",
                "2025-05-02T10:00:00.678Z",
                "2025-05-02T10:00:00.679+00:00",
            ),
        ];
        for (label, now, before, want) in cases {
            assert_eq!(edit_time(t(now), t(before)).to_rfc3339(), want, "{label}");
        }
    }

    pub(super) fn article(slug: &str, body: &str) -> Article {
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
            body_html: crate::article::Body::new(body),
            author: None,
            more_authors: vec![],
            local_refs: vec![],
            picture: None,
            source: PathBuf::new(),
            hash: 0,
            warnings: vec![],
        };
        a.hash = a.content_hash();
        a
    }

    pub(super) fn now(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    pub(super) const T1: &str = "2025-06-01T00:00:00+00:00";
    pub(super) const T2: &str = "2025-07-01T00:00:00+00:00";

    /// Identifies the whole current set of articles (path, article).
    fn ids(
        s: &mut State,
        set: &[(&str, &Article)],
        at: &str,
    ) -> Vec<(String, DateTime<FixedOffset>)> {
        let items: Vec<(String, &Article)> = set.iter().map(|(p, a)| (p.to_string(), *a)).collect();
        s.identify_all(&items, &|_| false, "e.example", now(at))
            .into_iter()
            .map(|x| x.expect("new ids allowed"))
            .collect()
    }

    /// A new article gets a tag: id; an edit keeps it and moves `updated`;
    /// an unchanged re-read moves nothing.
    #[test]
    fn id_stable_updated_moves_on_change_only() {
        let mut s = State::default();
        let a = article("x", "one");
        let first = ids(&mut s, &[("x.txt", &a)], T1);
        assert_eq!(
            first[0],
            ("tag:e.example,2025-05-22:x".to_string(), a.published)
        );
        s.dirty = false;
        assert_eq!(ids(&mut s, &[("x.txt", &a)], T2), first);
        assert!(!s.is_dirty(), "an unchanged re-read writes nothing");
        let b = article("x", "two");
        let edited = ids(&mut s, &[("x.txt", &b)], T2);
        assert_eq!(edited[0], (first[0].0.clone(), now(T2)));
    }

    /// A rename keeps the id, even when the slug changes; a copy beside the
    /// original gets its own.
    #[test]
    fn rename_keeps_id_copy_does_not() {
        let mut s = State::default();
        let a = article("x", "same");
        let id = ids(&mut s, &[("x.txt", &a)], T1)[0].0.clone();
        let moved = article("y", "same");
        assert_eq!(ids(&mut s, &[("sub/y.txt", &moved)], T1)[0].0, id);
        let copy = article("z", "same");
        let both = ids(&mut s, &[("sub/y.txt", &moved), ("z.txt", &copy)], T1);
        assert_eq!(both[0].0, id);
        assert_ne!(both[1].0, id);
    }

    /// An article moved away while a new file takes its old path: the moved
    /// article keeps its id (same content), the newcomer gets a fresh one.
    #[test]
    fn move_and_new_file_at_old_path() {
        let mut s = State::default();
        let x = article("latest", "story x");
        let id_x = ids(&mut s, &[("latest.txt", &x)], T1)[0].0.clone();
        let x_moved = article("story-x", "story x");
        let mut y = article("latest", "story y");
        y.published = now("2025-05-23T00:00:00+00:00");
        let got = ids(&mut s, &[("latest.txt", &y), ("story-x.txt", &x_moved)], T2);
        assert_eq!(got[1].0, id_x);
        assert_eq!(got[0].0, "tag:e.example,2025-05-23:latest");
    }

    /// Save and load round-trip: ids survive a restart; the authority is the
    /// one recorded first.
    #[test]
    fn persists_across_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        let a = article("x", "b");
        let auth = s.authority(None, "first.example");
        let items = [("x.txt".to_string(), &a)];
        let first = s.identify_all(&items, &|_| false, &auth, now(T1));
        s.save(dir.path()).unwrap();
        assert!(!s.is_dirty());
        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(
            r.authority(None, "second.example"),
            "first.example",
            "authority fixed at first publication"
        );
        assert_eq!(
            r.identify_all(&items, &|_| false, "second.example", now(T2)),
            first
        );
        assert!(!r.is_dirty());
    }

    /// A new id holds the slug percent-encoded (an ASCII slug as it is);
    /// an id stored before that rule, with the raw slug, is kept.
    #[test]
    fn ids_encode_the_slug_and_old_ids_stay() {
        let mut s = State::default();
        let k = article("київ", "k");
        let got = ids(&mut s, &[("k.txt", &k)], T1);
        assert_eq!(
            got[0].0,
            "tag:e.example,2025-05-22:%D0%BA%D0%B8%D1%97%D0%B2"
        );
        let mut old = State::default();
        let raw: Arc<str> = Arc::from("tag:e.example,2025-05-22:київ");
        old.disk.articles.insert(
            Arc::clone(&raw),
            Entry {
                slug: "київ".into(),
                former: vec![],
                path: "k.txt".into(),
                hash: 7,
                updated: now(T1),
            },
        );
        old.index(&raw);
        assert_eq!(ids(&mut old, &[("k.txt", &k)], T2)[0].0, &*raw);
    }

    /// Loopback, private and local names are provisional authorities;
    /// public names and addresses are not.
    #[test]
    fn provisional_authorities() {
        for host in [
            "127.0.0.1",
            "127.3.4.5",
            "localhost",
            "LOCALHOST",
            "a.localhost",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.20",
            "169.254.0.1",
            "100.64.0.1",
            "::1",
            "[::1]",
            "::",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "printer.local",
            "db.internal",
            "nas.home.arpa",
            "box.lan",
            "myhost",
        ] {
            assert!(provisional(host), "{host} is provisional");
        }
        for host in [
            "news.example.org",
            "example.com.",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "local.example.org",
        ] {
            assert!(!provisional(host), "{host} is public");
        }
    }

    /// A provisional authority gives way, once, to the first public one,
    /// in the record and in every id made with it (front-matter ids and
    /// the rest of each id untouched); the library learns the renames; a
    /// later public host changes nothing, and a configured authority is
    /// never replaced.
    #[test]
    fn provisional_authority_is_replaced_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        let auth = s.authority(None, "127.0.0.1");
        let (a, b) = (article("a", "one"), article("b", "two"));
        let mut c = article("c", "three");
        c.id = "urn:x:c".into();
        let items = [
            ("a.txt".to_string(), &a),
            ("b.txt".to_string(), &b),
            ("c.txt".to_string(), &c),
        ];
        s.identify_all(&items, &|_| false, &auth, now(T1));
        s.save(dir.path()).unwrap();
        assert_eq!(
            s.authority(None, "192.168.1.2"),
            "127.0.0.1",
            "still no public host"
        );
        assert!(s.take_rekeyed().is_empty());

        assert_eq!(s.authority(None, "news.example.org"), "news.example.org");
        let renamed = s.take_rekeyed();
        assert_eq!(renamed.len(), 2);
        assert_eq!(
            &*renamed["tag:127.0.0.1,2025-05-22:a"],
            "tag:news.example.org,2025-05-22:a"
        );
        let got = s.identify_all(&items, &|_| false, "news.example.org", now(T2));
        let got: Vec<String> = got.into_iter().map(|x| x.unwrap().0).collect();
        assert_eq!(
            got,
            [
                "tag:news.example.org,2025-05-22:a",
                "tag:news.example.org,2025-05-22:b",
                "urn:x:c"
            ]
        );
        s.save(dir.path()).unwrap();
        let mut r = State::load(dir.path()).unwrap();
        assert_eq!(r.authority(None, "other.example"), "news.example.org");
        assert!(r.take_rekeyed().is_empty());
        assert!(!r.disk.articles.keys().any(|id| id.contains("127.0.0.1")));
        assert_eq!(
            State::default().authority(Some("127.0.0.1"), "news.example.org"),
            "127.0.0.1"
        );
    }

    /// A renamed article's old slugs are remembered, newest last and at
    /// most the configured number, and lead to its current slug; taking a
    /// slug back makes it current again; every slug of an article no
    /// longer published is gone; and all of it survives a restart.
    #[test]
    fn former_slugs_moved_and_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        s.set_max_former_slugs(2);
        let body = "same text";
        for slug in ["a", "b", "c", "d"] {
            ids(
                &mut s,
                &[(&format!("{slug}.txt"), &article(slug, body))],
                T1,
            );
        }
        let other = article("o", "other text");
        ids(
            &mut s,
            &[("d.txt", &article("d", body)), ("o.txt", &other)],
            T1,
        );
        let all = |_: &str| true;
        let f = s.former_permalinks(2, all);
        assert_eq!(
            f.moved,
            [("b".into(), "d".into()), ("c".into(), "d".into())],
            "a is forgotten"
        );
        assert!(f.gone.is_empty());
        ids(
            &mut s,
            &[("b.txt", &article("b", body)), ("o.txt", &other)],
            T1,
        );
        assert_eq!(
            s.former_permalinks(2, all).moved,
            [("c".into(), "b".into()), ("d".into(), "b".into())]
        );
        s.save(dir.path()).unwrap();
        let mut r = State::load(dir.path()).unwrap();
        r.set_max_former_slugs(2);
        let o_id = "tag:e.example,2025-05-22:o";
        let f = r.former_permalinks(1, |id| id == o_id);
        assert!(f.moved.is_empty());
        let mut gone = f.gone;
        gone.sort();
        assert_eq!(gone, ["b", "c", "d"]);
    }

    /// Deleting then re-creating an article with the same slug keeps its id.
    #[test]
    fn recreate_same_slug_keeps_id() {
        let mut s = State::default();
        let id = ids(&mut s, &[("x.txt", &article("x", "v1"))], T1)[0]
            .0
            .clone();
        ids(&mut s, &[], T1);
        assert_eq!(ids(&mut s, &[("x.md", &article("x", "v2"))], T2)[0].0, id);
    }

    /// While new ids are withheld, an article that would need one gets
    /// none (and nothing is recorded for it), a known article is matched
    /// and updated as usual, and a front-matter id is taken; ids made up
    /// since the last save are forgotten when withdrawn (and the same one
    /// is made again later), saved ones are not.
    #[test]
    fn withheld_new_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        let a = article("a", "one");
        let first = ids(&mut s, &[("a.txt", &a)], T1);
        s.save(dir.path()).unwrap();
        assert!(s.withdraw_unsaved_ids().is_empty(), "saved ids stay");

        let a2 = article("a", "one, edited");
        let b = article("b", "two");
        let mut c = article("c", "three");
        c.id = "urn:example:c".into();
        let items: Vec<(String, &Article)> = [("a.txt", &a2), ("b.txt", &b), ("c.txt", &c)]
            .iter()
            .map(|(p, x)| (p.to_string(), *x))
            .collect();
        let got = s.identify_all(&items, &|_| false, "e.example", now(T2));
        assert_eq!(got[0], Some((first[0].0.clone(), now(T2))), "known, edited");
        assert_eq!(got[1], None, "would need a new id");
        assert_eq!(
            got[2].as_ref().map(|x| x.0.as_str()),
            Some("urn:example:c"),
            "front-matter id"
        );

        s.allow_new_ids();
        let b_id = ids(&mut s, &[("b.txt", &b)], T2)[0].0.clone();
        let gone = s.withdraw_unsaved_ids();
        assert_eq!(gone.len(), 1);
        assert!(gone.contains(b_id.as_str()));
        assert!(!s.disk.articles.contains_key(b_id.as_str()));
        assert!(s.with_slug("b").next().is_none(), "unindexed");
        s.allow_new_ids();
        assert_eq!(ids(&mut s, &[("b.txt", &b)], T2)[0].0, b_id, "made again");
        s.save(dir.path()).unwrap();
        assert!(s.withdraw_unsaved_ids().is_empty());
        assert_eq!(
            State::load(dir.path()).unwrap().disk.articles.len(),
            3,
            "a, b and c on disk"
        );
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

    /// The file keeps its format (hashes as 32 hex digits, entries by id),
    /// and what is loaded back identifies the same articles by path, by
    /// content and by slug.
    #[test]
    fn file_format_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        let (a, b) = (article("x", "one"), article("y", "two"));
        let first = ids(&mut s, &[("x.txt", &a), ("y.txt", &b)], T1);
        s.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        let hex = format!("\"hash\": \"{:032x}\"", a.hash);
        assert!(text.contains(&hex), "{text}");
        assert!(text.contains(&format!("\"{}\": {{", first[0].0)), "{text}");
        let mut r = State::load(dir.path()).unwrap();
        // y moved (same content), x edited in place, a third re-created by slug.
        let x2 = article("x", "one, edited");
        let later = ids(&mut r, &[("x.txt", &x2), ("sub/y.txt", &b)], T2);
        assert_eq!(later[0].0, first[0].0);
        assert_eq!(later[1].0, first[1].0);
        assert!(r.owns_slug("sub/y.txt", "y") && !r.owns_slug("y.txt", "y"));
    }
}
