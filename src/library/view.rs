//! Settling the published set ([`Library::view`]): which article owns
//! each slug, ids and `updated` from the state file, future-dated
//! articles held back, the old permalinks of renamed and deleted
//! articles (and the labels ever published), and the files published
//! articles reference. Moved out of `mod.rs` as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::{instant, media, newest_first, FileEntry, Key, Library};

/// What changed in the library since its last [`Library::view`].
#[derive(Debug, Default)]
pub(super) enum Since {
    /// Nothing the view reads.
    Nothing,
    /// Articles edited in place, each with the version the last view
    /// published (the first edit's, when a file changed twice).
    Replaced(Vec<(PathBuf, Arc<Article>)>),
    /// Anything else: files added, removed or failing, slugs or dates
    /// moved, problems, referenced files, ids renamed.
    #[default]
    Any,
}

/// Articles edited in place at most, before a whole view is settled
/// again: past this, one pass is cheaper than the lookups.
const MAX_REPLACED: usize = 256;

impl Since {
    /// Notes that the article published from `p`, `old` in the last
    /// view, was replaced by a new version (to be identified).
    pub(super) fn replaced(&mut self, p: &Path, old: Arc<Article>) {
        match self {
            Since::Nothing => *self = Since::Replaced(vec![(p.to_path_buf(), old)]),
            Since::Replaced(v) if v.len() >= MAX_REPLACED => *self = Since::Any,
            Since::Replaced(v) => {
                if !v.iter().any(|(q, _)| q == p) {
                    v.push((p.to_path_buf(), old));
                }
            }
            Since::Any => {}
        }
    }

    /// `p` is among the articles replaced since the last view.
    pub(super) fn holds(&self, p: &Path) -> bool {
        matches!(self, Since::Replaced(v) if v.iter().any(|(q, _)| q == p))
    }
}

impl FileEntry {
    /// Marks the entry identified, its article carrying `id` and
    /// `updated` (the article copied only if they differ): the article.
    fn identify(&mut self, id: String, updated: DateTime<FixedOffset>) -> Option<&Arc<Article>> {
        self.identified = true;
        let a = self.article.as_mut()?;
        if a.id != id || a.updated != updated {
            let m = Arc::make_mut(a);
            m.id = id;
            m.id.shrink_to_fit();
            m.updated = updated;
        }
        self.key.id = super::id_hash(&a.id);
        Some(a)
    }
}

/// The last view, kept for the next one to start from.
#[derive(Debug)]
pub(super) struct Last {
    pub(super) view: View,
    /// Hashes of its articles' ids.
    pub(super) ids: HashSet<u64>,
}
use crate::article::Article;
use crate::parse::ParseError;

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
    /// (old slug, the article now published under another slug): its
    /// old permalinks redirect. Sorted, each old slug once.
    pub moved: Vec<(String, Arc<Article>)>,
    /// Slugs of articles no longer published: their permalinks are gone.
    /// Sorted.
    pub gone: Vec<String>,
    /// The route folder (`categories/<slug>/`, `tags/<slug>/`) of every
    /// category and tag ever published, as the state remembers them
    /// (sorted): those with no article now are gone.
    pub labels_known: Vec<String>,
    /// The files published articles reference, by the route they are
    /// published at. Sorted by route, each route once.
    pub media: Vec<(Arc<str>, Arc<crate::article::Media>)>,
}

impl Library {
    /// Settles the published set as of `now`: the owner of each slug (the
    /// one the state file already knows, else the earliest published, then
    /// path order), stable ids and `updated` from the state file, articles
    /// dated after `now` held back.
    ///
    /// When all that changed since the last view is articles edited in
    /// place (same file, slug and date, no error, no warning, no files
    /// referenced), the last view is taken and only those articles are
    /// identified and put where they were: an edit then costs what it
    /// touches, not a pass over every article (75-80 ms at 100,000).
    /// Anything else settles the whole set again.
    pub fn view(&mut self, now: DateTime<Utc>) -> View {
        // Ids the state renamed (a provisional authority gave way to a
        // real one): the articles holding them take the new ones.
        let rekeyed = self.state.take_rekeyed();
        if !rekeyed.is_empty() {
            self.since = Since::Any;
            for f in self.files.values_mut() {
                if let Some(a) = f.article.as_mut() {
                    if let Some(new) = rekeyed.get(a.id.as_str()) {
                        Arc::make_mut(a).id = new.to_string();
                        f.key.id = super::id_hash(new);
                    }
                }
            }
        }
        let since = std::mem::replace(&mut self.since, Since::Any);
        if let Some(view) = self.view_replaced(since, now) {
            self.since = Since::Nothing;
            self.views_in_place += 1;
            return view;
        }
        let view = self.view_full(now);
        self.last = Some(Last {
            ids: view
                .articles
                .iter()
                .map(|a| super::id_hash(&a.id))
                .collect(),
            view: view.clone(),
        });
        self.since = Since::Nothing;
        view
    }

    /// The last view with the articles of `since` (edited in place)
    /// identified and put where their last versions stood; `None` when
    /// anything else changed, or one of them no longer fits in place
    /// (each has then been identified at most, as the whole view would).
    fn view_replaced(&mut self, since: Since, now: DateTime<Utc>) -> Option<View> {
        let replaced = match since {
            Since::Nothing => Vec::new(),
            Since::Replaced(r) => r,
            Since::Any => return None,
        };
        let last = self.last.as_mut()?;
        if last.view.held_back > 0 || last.view.next_release.is_some_and(|t| t <= now) {
            return None;
        }
        let now_fixed: DateTime<FixedOffset> = now.fixed_offset();
        let now_key = instant(&now_fixed);
        let mut slots = Vec::with_capacity(replaced.len());
        for (p, old) in &replaced {
            let f = self.files.get(p)?;
            let a = f.article.as_ref()?;
            let fits = f.error.is_none()
                && !f.identified
                && f.refs.is_empty()
                && f.key.published <= now_key
                && !f.key.warned
                && a.id.is_empty()
                && a.slug == old.slug
                && a.published == old.published
                && old.warnings.is_empty();
            if !fits {
                return None;
            }
            let i = last
                .view
                .articles
                .binary_search_by(|x| newest_first(x, old))
                .ok()
                .filter(|&i| Arc::ptr_eq(&last.view.articles[i], old))?;
            slots.push(i);
        }
        if !replaced.is_empty() {
            let rel = |p: &Path| {
                p.strip_prefix(&self.root)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .into_owned()
            };
            let refs: Vec<(String, &Article)> = replaced
                .iter()
                .filter_map(|(p, _)| {
                    let a = self.files.get(p)?.article.as_deref()?;
                    Some((rel(p), a))
                })
                .collect();
            let olds: Vec<&str> = replaced.iter().map(|(_, o)| o.id.as_str()).collect();
            let (ids, articles) = (&last.ids, &last.view.articles);
            // Held by another published article: the hashes meeting, the
            // ids are compared.
            let taken = |id: &str| {
                !olds.contains(&id)
                    && ids.contains(&super::id_hash(id))
                    && articles
                        .iter()
                        .any(|o| o.id == id && !olds.contains(&o.id.as_str()))
            };
            let identities = self
                .state
                .identify_all(&refs, &taken, &self.authority, now_fixed);
            let mut placed = Vec::with_capacity(replaced.len());
            for (((p, old), identity), slot) in replaced.iter().zip(identities).zip(slots) {
                // Left out for now (no new id may be made up): the whole
                // view counts it.
                let (id, updated) = identity?;
                let a = self.files.get_mut(p)?.identify(id, updated)?;
                placed.push((slot, super::id_hash(&old.id), Arc::clone(a)));
            }
            for (slot, old_id, a) in placed {
                last.ids.remove(&old_id);
                last.ids.insert(super::id_hash(&a.id));
                last.view.articles[slot] = a;
            }
        }
        let mut view = last.view.clone();
        view.moved.clear();
        view.gone.clear();
        self.settle_former(&mut view);
        view.labels_known = self.state.labels().map(String::from).collect();
        if let Some(last) = self.last.as_mut() {
            last.view.moved.clone_from(&view.moved);
            last.view.gone.clone_from(&view.gone);
            last.view.labels_known.clone_from(&view.labels_known);
        }
        Some(view)
    }

    /// Settles the whole published set (see [`Library::view`]).
    fn view_full(&mut self, now: DateTime<Utc>) -> View {
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
        let mut claimed: HashSet<u64> =
            HashSet::with_capacity_and_hasher(claims.len(), Default::default());
        // Sorted by the keys, newest first, before the articles are
        // gathered in that order.
        let mut owned: Vec<(Key, &Arc<Article>)> = Vec::with_capacity(claims.len());
        // Articles that reference files (few): their files are published.
        let mut with_refs: Vec<PathBuf> = Vec::new();
        for (i, (p, f, a)) in claims.iter().enumerate() {
            if !losers.is_empty() && losers.contains(&i) {
                continue;
            }
            if !f.refs.is_empty() {
                with_refs.push((*p).clone());
            }
            if f.identified {
                claimed.insert(f.key.id);
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
        // A front-matter id another article holds (one identified already,
        // or an earlier file in path order) leaves the later file out,
        // named, rather than giving it another id without a word.
        let mut duplicates: Vec<ParseError> = Vec::new();
        if !fresh.is_empty() {
            let mut first: HashMap<&str, &Path> = HashMap::default();
            for p in &fresh {
                let Some(a) = self.files.get(p).and_then(|f| f.article.as_deref()) else {
                    continue;
                };
                if a.id.is_empty() {
                    continue;
                }
                // The hashes meeting, the strings are compared.
                let owner = claimed
                    .contains(&super::id_hash(&a.id))
                    .then(|| {
                        claims
                            .iter()
                            .find(|(_, f, o)| f.identified && o.id == a.id)
                            .map(|(q, _, _)| q.as_path())
                    })
                    .flatten()
                    .or_else(|| first.get(a.id.as_str()).copied());
                match owner {
                    Some(owner) => duplicates.push(ParseError::new(
                        p,
                        1,
                        format!(
                            "id {:?} (front matter) is already used by {}; give one of them another id",
                            a.id,
                            owner.display()
                        ),
                    )),
                    None => {
                        first.insert(a.id.as_str(), p.as_path());
                    }
                }
            }
        }
        if !duplicates.is_empty() {
            fresh.retain(|p| !duplicates.iter().any(|e| &e.path == p));
            view.rejected.append(&mut duplicates);
        }
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
            // Held by an identified article: the hashes meeting, the ids
            // are compared.
            let taken = |id: &str| {
                claimed.contains(&super::id_hash(id))
                    && claims.iter().any(|(_, f, o)| f.identified && o.id == id)
            };
            let identities = self
                .state
                .identify_all(&refs, &taken, &self.authority, now_fixed);
            drop(claimed);
            drop(claims);
            let mut matched = Vec::with_capacity(fresh.len());
            for (p, identity) in fresh.iter().zip(identities) {
                let Some((id, updated)) = identity else {
                    // Stays unidentified: matched again next time.
                    view.held_back += 1;
                    continue;
                };
                let Some(a) = self.files.get_mut(p).and_then(|f| f.identify(id, updated)) else {
                    continue;
                };
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
        view.rejected.extend(self.problems.values().cloned());
        view.rejected.sort_by(|a, b| {
            bytes(&a.path)
                .cmp(&bytes(&b.path))
                .then_with(|| a.reason.cmp(&b.reason))
        });
        if !with_refs.is_empty() {
            self.settle_media(&with_refs, &mut view);
        }
        view.warnings.sort();
        self.settle_former(&mut view);
        view.labels_known = self.state.labels().map(String::from).collect();
        view
    }

    /// Fills in [`View::moved`] and [`View::gone`] from the state: the
    /// old slugs of published articles and every slug of articles no
    /// longer published, less the slugs published now (a page wins) and
    /// with a slug both moved and gone counted as moved. Only a site with
    /// renamed or deleted articles pays for more than a comparison.
    fn settle_former(&self, view: &mut View) {
        let published: std::cell::OnceCell<HashSet<&str>> = std::cell::OnceCell::new();
        let ids = || -> HashSet<&str> { view.articles.iter().map(|a| a.id.as_str()).collect() };
        let crate::state::Former {
            mut moved,
            mut gone,
        } = self.state.former_permalinks(view.articles.len(), |id| {
            published.get_or_init(ids).contains(id)
        });
        if moved.is_empty() && gone.is_empty() {
            return;
        }
        let live: HashMap<&str, &Arc<Article>> =
            view.articles.iter().map(|a| (a.slug.as_str(), a)).collect();
        moved.retain(|(old, _)| !live.contains_key(old.as_str()));
        moved.sort();
        moved.dedup_by(|b, a| a.0 == b.0);
        {
            let moved_from: HashSet<&str> = moved.iter().map(|(old, _)| old.as_str()).collect();
            gone.retain(|s| !live.contains_key(s.as_str()) && !moved_from.contains(s.as_str()));
        }
        gone.sort();
        gone.dedup();
        let moved: Vec<(String, Arc<Article>)> = moved
            .into_iter()
            .filter_map(|(old, now)| live.get(now.as_str()).map(|a| (old, Arc::clone(a))))
            .collect();
        drop(live);
        view.moved = moved;
        view.gone = gone;
    }

    /// The files the published articles among `with_refs` reference, by
    /// route, into [`View::media`]; why the others are not published,
    /// into its warnings. Two different files claiming one route: the
    /// first by route, then article path, wins.
    fn settle_media(&self, with_refs: &[PathBuf], view: &mut View) {
        let mut found: Vec<(&Arc<str>, &Arc<crate::article::Media>, &Path, &str)> = Vec::new();
        for p in with_refs {
            let Some(f) = self.files.get(p).filter(|f| f.identified) else {
                continue;
            };
            for r in &f.refs {
                let why = match &r.target {
                    media::Target::None => None,
                    media::Target::Refused(why) => Some(why.as_str()),
                    media::Target::File { path, route } => {
                        match self.media.get(path).map(|m| &m.state) {
                            Some(media::State::Ready(m)) => {
                                found.push((route, m, p, &r.url));
                                None
                            }
                            Some(media::State::Refused(why)) => Some(why.as_str()),
                            Some(media::State::Folder) => None,
                            Some(media::State::Missing) | None => {
                                r.image.then_some("no such file in the content directory")
                            }
                        }
                    }
                };
                if let Some(why) = why {
                    view.warnings
                        .push(format!("{}: {}: {why}", p.display(), r.url));
                }
            }
        }
        let bytes = |p: &Path| p.as_os_str().as_encoded_bytes().to_vec();
        found.sort_by(|a, b| a.0.cmp(b.0).then_with(|| bytes(a.2).cmp(&bytes(b.2))));
        let mut out: Vec<(Arc<str>, Arc<crate::article::Media>)> = Vec::with_capacity(found.len());
        let mut first: Option<(&Arc<str>, &Arc<crate::article::Media>, &Path)> = None;
        for (route, m, source, url) in found {
            match first {
                Some((r, held, by)) if r == route => {
                    if held.hash != m.hash {
                        view.warnings.push(format!(
                            "{}: {url}: {route} is already published from another file (referenced by {}): not published",
                            source.display(),
                            by.display()
                        ));
                    }
                }
                _ => {
                    first = Some((route, m, source));
                    out.push((Arc::clone(route), Arc::clone(m)));
                }
            }
        }
        view.media = out;
    }

    /// Takes back the ids made up since the state file was last saved
    /// (it could not be: a reader shown one of them would see another
    /// after a restart) and, until [`State::allow_new_ids`], leaves out of
    /// [`Library::view`] every article that would need a new id, counted
    /// in [`View::held_back`]; articles already identified stay. Returns
    /// how many were taken back (settle the view again if any).
    pub fn hold_new_articles(&mut self) -> usize {
        self.since = Since::Any;
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
}
