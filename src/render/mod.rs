//! Renderers: published articles → the bytes of every feed and page.
//! Pure: no I/O, no clock; every date in the output comes from articles, so
//! the same content renders byte-identical files.
//!
//! `rss.rs` (RSS 2.0, `rss` crate), `atom.rs` (Atom 1.0,
//! `atom_syndication`), `json.rs` (JSON Feed 1.1, serde), `html.rs` (what
//! every page shares, article pages, the 404 page), `pages.rs` (the index
//! and the category and tag pages, paginated through the archive),
//! `archive.rs` (RFC 5005 archive pages of every feed), `opml.rs` (OPML 2.0 list of feeds), `moved.rs` (pages at old
//! permalinks: redirect, gone). Uses `article` only; the caller hands in
//! [`Settings`], the part of the config these need.

mod archive;
mod atom;
mod html;
mod json;
mod moved;
mod opml;
mod pages;
mod rss;

use std::sync::Arc;

use chrono::{DateTime, FixedOffset};

pub use crate::article::encode_segment;
use crate::article::{slugify, Article};

pub use archive::{archive_pages, closed_pages, ArchivePage, FH_NAMESPACE};
pub use atom::atom;
pub use html::{article_page, article_page_parts, not_found, Neighbours, CONTENT_SECURITY_POLICY};
pub use json::json;
pub use moved::{gone_label_page, gone_page, moved_page};
pub use opml::{opml, OPML_FORMAT};
pub use pages::{list_page, list_pages, ListPage, Newer};
pub use rss::rss;

/// Full text or summary in one kind of feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `content:encoded` / Atom `content` / `content_html` carry the article.
    Full,
    /// Only the summary; the reader follows the link.
    Summary,
}

/// What the renderers need from the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Settings {
    /// Site title.
    pub title: String,
    /// Site description.
    pub description: String,
    /// Absolute base URL ending in `/`.
    pub base_url: String,
    /// Language tag.
    pub language: String,
    /// Default author.
    pub author: String,
    /// Items of a feed's current document: at least this many (all while
    /// there are fewer), at most this many plus `archive_page_size` less
    /// one; older ones are on its archive pages.
    pub max_items: usize,
    /// Full or summary, per kind.
    pub rss_body: Body,
    /// Full or summary, per kind.
    pub atom_body: Body,
    /// Full or summary, per kind.
    pub json_body: Body,
    /// HTTP `max-age` of everything served, seconds (`Cache-Control`);
    /// the RSS `<ttl>` follows it ([`Settings::ttl_minutes`]).
    pub cache_max_age: u64,
    /// Prefix of feed ids, e.g. `tag:example.com,2025-05-22:` (stable,
    /// from the state file).
    pub feed_id_prefix: String,
    /// Value of generator elements.
    pub generator: String,
    /// WebSub hubs every feed names (W3C WebSub §4), in order; empty
    /// for none.
    pub hubs: Vec<String>,
    /// The zone pages show times in, labelled with its abbreviation.
    pub timezone: chrono_tz::Tz,
    /// Articles on one archive page of a listing (at least 1); the front
    /// page of a listing holds from this many to twice as many less one.
    pub page_size: usize,
    /// Articles on one closed archive page of a feed (RFC 5005; at least 1).
    pub archive_page_size: usize,
    /// HTTP `max-age` of the closed archive pages, seconds: they change
    /// only when an article on them does.
    pub archive_max_age: u64,
}

impl Settings {
    /// RSS `<ttl>`: the HTTP `max-age` in whole minutes, rounded up, at
    /// least 1.
    pub fn ttl_minutes(&self) -> u64 {
        self.cache_max_age.div_ceil(60).max(1)
    }

    /// Absolute URL of a site-relative route (`articles/x/`, `rss.xml`).
    pub fn url(&self, route: &str) -> String {
        format!("{}{}", self.base_url, route.trim_start_matches('/'))
    }

    /// The `Link` header a feed at `route` is served with (W3C WebSub
    /// §4): each hub with `rel="hub"`, then its own URL with
    /// `rel="self"`; `None` when there is no hub to name.
    pub fn link_header(&self, route: &str) -> Option<String> {
        if self.hubs.is_empty() {
            return None;
        }
        let mut v: Vec<String> = self
            .hubs
            .iter()
            .map(|h| format!("<{h}>; rel=\"hub\""))
            .collect();
        v.push(format!("<{}>; rel=\"self\"", self.url(route)));
        Some(v.join(", "))
    }

    /// Absolute URL of an article's page.
    pub fn article_url(&self, a: &Article) -> String {
        self.url(&article_route(&a.slug))
    }
}

/// What a label is: a section of the site or a free-form tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabelKind {
    /// A category (`categories/<slug>/`).
    Category,
    /// A tag (`tags/<slug>/`).
    Tag,
}

impl LabelKind {
    /// The route folder its feeds and pages live under.
    pub fn folder(self) -> &'static str {
        match self {
            LabelKind::Category => "categories",
            LabelKind::Tag => "tags",
        }
    }
}

/// The category or tag a feed and its pages are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Category or tag.
    pub kind: LabelKind,
    /// The name as the first article that used it spells it.
    pub name: String,
    /// [`slugify`] of the name; names that differ only in case or
    /// punctuation share it, and with it one feed and one page.
    pub slug: String,
}

/// One feed (in three formats): the main one, a category's or a tag's.
/// Each also has HTML pages (the index, or the label's page) that list
/// every one of its articles, not only the newest.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Title shown in readers.
    pub title: String,
    /// Route prefix: `` for the main feed, `categories/<slug>/` or
    /// `tags/<slug>/` for a label's; also the route of its HTML page.
    pub dir: String,
    /// The category or tag, for their feeds.
    pub label: Option<Label>,
    /// Newest first: for a current document, those on no closed archive
    /// page (see `archive.rs`); for an archive page, its own.
    pub items: Vec<Arc<Article>>,
    /// For a label's feed, every article with the label, newest first, as
    /// indexes into the slice [`feeds`] was given (the main feed leaves
    /// it empty: its members are that whole slice).
    pub members: Vec<u32>,
    /// The items' body HTML, unpacked at most once per [`feeds`] call
    /// however many feeds and formats show an article (cells shared
    /// between feeds, one per item: [`feeds`] makes every `Feed`).
    bodies: Vec<Arc<std::sync::OnceLock<String>>>,
    /// How many closed archive pages the feed has (RFC 5005 §4).
    pub archived: usize,
    /// `None` for the current document, else the number of the archive
    /// page this document is ([`Feed::archive_page`]).
    pub page: Option<usize>,
}

/// A feed format: its file name, media type, label and renderer, so that
/// everything that goes over the formats (the site builder, autodiscovery
/// links, OPML) names them one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// RSS 2.0, `rss.xml`.
    Rss,
    /// Atom 1.0 (RFC 4287), `atom.xml`.
    Atom,
    /// JSON Feed 1.1, `feed.json`.
    Json,
}

impl Format {
    /// Every format, in the order pages list them.
    pub const ALL: [Format; 3] = [Format::Rss, Format::Atom, Format::Json];

    /// The file name of a feed in this format (`rss.xml` …).
    pub fn file(self) -> &'static str {
        match self {
            Format::Rss => "rss.xml",
            Format::Atom => "atom.xml",
            Format::Json => "feed.json",
        }
    }

    /// The media type, as autodiscovery links name it.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Rss => "application/rss+xml",
            Format::Atom => "application/atom+xml",
            Format::Json => "application/feed+json",
        }
    }

    /// The `Content-Type` it is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Rss => "application/rss+xml; charset=utf-8",
            Format::Atom => "application/atom+xml; charset=utf-8",
            Format::Json => "application/feed+json; charset=utf-8",
        }
    }

    /// Its name for people (`RSS`, `Atom`, `JSON Feed`).
    pub fn label(self) -> &'static str {
        match self {
            Format::Rss => "RSS",
            Format::Atom => "Atom",
            Format::Json => "JSON Feed",
        }
    }

    /// Renders `feed` in this format.
    pub fn render(self, feed: &Feed, s: &Settings) -> Vec<u8> {
        match self {
            Format::Rss => rss(feed, s),
            Format::Atom => atom(feed, s),
            Format::Json => json(feed, s),
        }
    }
}

impl Feed {
    /// Route of this feed in one format (`rss.xml`, `atom.xml`, `feed.json`).
    pub fn route(&self, file: &str) -> String {
        format!("{}{file}", self.dir)
    }

    /// A stable feed id: the site prefix plus the feed's path.
    pub fn id(&self, s: &Settings) -> String {
        format!(
            "{}{}",
            s.feed_id_prefix,
            if self.dir.is_empty() {
                "feed"
            } else {
                self.dir.trim_end_matches('/')
            }
        )
    }

    /// Newest `updated` among the items: the feed's own `updated` and
    /// `lastBuildDate`, so they never depend on the wall clock.
    pub fn updated(&self) -> Option<DateTime<FixedOffset>> {
        self.items.iter().map(|a| a.updated).max()
    }

    /// Where a reader of this feed goes in a browser: the index for the
    /// main feed, the label's page for a category's or tag's.
    pub fn home(&self, s: &Settings) -> String {
        s.url(&self.dir)
    }

    /// Every article of this feed, newest first: `articles` (the slice
    /// [`feeds`] was given) for the main feed, the label's members for
    /// the others.
    pub fn members<'a>(
        &'a self,
        articles: &'a [Arc<Article>],
    ) -> impl ExactSizeIterator<Item = &'a Arc<Article>> + DoubleEndedIterator + Clone + 'a {
        let all = self.label.is_none();
        let n = if all {
            articles.len()
        } else {
            self.members.len()
        };
        (0..n).map(move |i| {
            if all {
                &articles[i]
            } else {
                &articles[self.members[i] as usize]
            }
        })
    }

    /// The body HTML of item `i` as feeds show it: every relative URL
    /// made absolute against the article's permalink (a feed reader has no
    /// page to resolve it against; the article's own page keeps them as
    /// written). Made at most once per [`feeds`] call: bodies are kept
    /// compressed, and an article sits in up to three documents of the
    /// main feed and three of each of its categories. Panics if `i` is
    /// not an index of `items`, as indexing `items` would.
    pub fn body_html(&self, i: usize, s: &Settings) -> &str {
        self.bodies[i].get_or_init(|| {
            let a = &self.items[i];
            let html = a.body_html.html();
            match url::Url::parse(&s.article_url(a)) {
                Ok(base) => {
                    let html = match crate::links::absolutize(&html, &base) {
                        std::borrow::Cow::Owned(abs) => abs,
                        std::borrow::Cow::Borrowed(_) => html,
                    };
                    match crate::links::scope_footnotes(&html, &a.slug, &base) {
                        std::borrow::Cow::Owned(scoped) => scoped,
                        std::borrow::Cow::Borrowed(_) => html,
                    }
                }
                Err(_) => html,
            }
        })
    }
}

/// An article's picture as feeds announce it: its absolute URL, with
/// length and media type when it is a file Herald publishes. A relative
/// picture Herald does not publish (no such file) is not announced: a
/// reader would fetch a URL that answers 404.
pub fn picture(a: &Article, s: &Settings) -> Option<(String, Option<(u64, &'static str)>)> {
    let p = a.picture.as_ref()?;
    if let Some((route, len, ty)) = &p.published {
        return Some((s.url(route), Some((*len, ty))));
    }
    let abs = url::Url::parse(p.src.trim()).ok()?;
    matches!(abs.scheme(), "http" | "https").then(|| (abs.to_string(), None))
}

/// The route of an article page (`articles/<slug>/`).
pub fn article_route(slug: &str) -> String {
    format!("articles/{}/", encode_segment(slug))
}

/// The main feed, one feed per category and one per tag (categories,
/// then tags, each sorted by slug), each holding as its current document
/// the newest of its articles on no closed archive page (`max_items` to
/// `max_items + archive_page_size - 1`, see `archive.rs`). `articles`
/// must be newest first.
pub fn feeds(articles: &[Arc<Article>], s: &Settings) -> Vec<Feed> {
    feeds_reusing(
        articles,
        s,
        &FeedBodies::default(),
        0,
        &mut LabelIndex::default(),
    )
}

/// Which articles each category and tag holds, as the last [`feeds`]
/// found them, with the articles they were found in: the next build
/// over the same articles in the same places, each with the same
/// labels (an edit of a title or a body), takes them as they are instead
/// of reading every article's labels again (25 ms at 100,000).
#[derive(Debug, Default)]
pub struct LabelIndex {
    /// The settings the feeds were titled under.
    settings: Option<u128>,
    /// The articles, held so that their addresses stay theirs.
    articles: Vec<Arc<Article>>,
    /// Each label's feed with its members, no items yet, in `feeds`'s order.
    labels: Vec<Feed>,
}

impl LabelIndex {
    /// The label feeds found last time, if `articles` are the same ones
    /// or, where one is another, one with the same labels.
    /// The articles edited are held from then on in place of their last
    /// versions (which are not kept alive by an index of labels).
    fn reuse(&mut self, articles: &[Arc<Article>], settings: u128) -> Option<Vec<Feed>> {
        if self.settings != Some(settings) || self.articles.len() != articles.len() {
            return None;
        }
        let mut edited = Vec::new();
        for (i, (was, now)) in self.articles.iter().zip(articles).enumerate() {
            if !Arc::ptr_eq(was, now) {
                if was.categories != now.categories || was.tags != now.tags {
                    return None;
                }
                edited.push(i);
            }
        }
        for i in edited {
            self.articles[i] = Arc::clone(&articles[i]);
        }
        Some(self.labels.clone())
    }
}

/// Articles' bodies as feeds show them, made by one build for the next:
/// an edit re-renders the feeds listing the edited article, and each of
/// their other items would otherwise be unpacked and made absolute again
/// (5 ms for a feed of 50 items, most of rendering it). Holds the bodies
/// one build made, no others, so it stays the size of what an edit
/// touches.
#[derive(Debug, Default)]
pub struct FeedBodies {
    /// The settings the bodies were made under (URLs depend on them).
    settings: Option<u128>,
    /// By the article's address, with the article held so that the
    /// address stays its own.
    cells: rustc_hash::FxHashMap<usize, (Arc<Article>, Arc<std::sync::OnceLock<String>>)>,
}

impl FeedBodies {
    /// The bodies `feeds` made (those a render asked for), for the next
    /// build under the settings fingerprinted `settings`.
    pub fn made(feeds: &[Feed], settings: u128) -> FeedBodies {
        let mut cells = rustc_hash::FxHashMap::default();
        for f in feeds {
            for (a, cell) in f.items.iter().zip(&f.bodies) {
                if cell.get().is_some() {
                    cells
                        .entry(Arc::as_ptr(a) as usize)
                        .or_insert_with(|| (Arc::clone(a), Arc::clone(cell)));
                }
            }
        }
        FeedBodies {
            settings: Some(settings),
            cells,
        }
    }
}

/// [`feeds`], taking each article's body from `carried` when the last
/// build made it under the same settings (`s` fingerprinted `settings`).
pub fn feeds_reusing(
    articles: &[Arc<Article>],
    s: &Settings,
    carried: &FeedBodies,
    settings: u128,
    index: &mut LabelIndex,
) -> Vec<Feed> {
    let size = s.archive_page_size.max(1);
    let archived = closed_pages(articles.len(), s.max_items, size);
    let mut out = vec![Feed {
        title: s.title.clone(),
        dir: String::new(),
        label: None,
        items: articles[..articles.len() - archived * size].to_vec(),
        members: Vec::new(),
        bodies: Vec::new(),
        archived,
        page: None,
    }];
    let mut labels = match index.reuse(articles, settings) {
        Some(labels) => labels,
        None => {
            let labels = label_feeds(articles, s);
            *index = LabelIndex {
                settings: Some(settings),
                articles: articles.to_vec(),
                labels: labels.clone(),
            };
            labels
        }
    };
    // What is not on a closed archive page is the current document.
    for f in &mut labels {
        f.archived = closed_pages(f.members.len(), s.max_items, size);
        let current = f.members.len() - f.archived * size;
        f.items = f.members[..current]
            .iter()
            .map(|&i| Arc::clone(&articles[i as usize]))
            .collect();
    }
    out.extend(labels);
    let mut cells: rustc_hash::FxHashMap<*const Article, Arc<std::sync::OnceLock<String>>> =
        Default::default();
    for f in &mut out {
        f.bodies = f
            .items
            .iter()
            .map(|a| {
                Arc::clone(cells.entry(Arc::as_ptr(a)).or_insert_with(|| {
                    carried
                        .cells
                        .get(&(Arc::as_ptr(a) as usize))
                        .filter(|_| carried.settings == Some(settings))
                        .map(|(_, cell)| Arc::clone(cell))
                        .unwrap_or_default()
                }))
            })
            .collect();
    }
    out
}

/// Every label's feed with its members (no items yet), categories then
/// tags, each by slug. Found in chunks of the archive on the rayon pool
/// and joined in order: at 100,000 articles this pass reads every
/// article's labels, each behind its own pointers (45 ms on one core).
fn label_feeds(articles: &[Arc<Article>], s: &Settings) -> Vec<Feed> {
    let chunk = LABEL_CHUNK.max(articles.len().div_ceil(rayon::current_num_threads().max(1)));
    let found: Vec<Vec<Found<'_>>> = {
        use rayon::prelude::*;
        articles
            .par_chunks(chunk)
            .enumerate()
            .map(|(k, part)| labels_in(part, k * chunk))
            .collect()
    };
    // Joined in article order, so a label takes the spelling of the first
    // article that has it, and its members stay newest first.
    let mut labels: Vec<Feed> = Vec::new();
    let mut by_slug: rustc_hash::FxHashMap<(LabelKind, &str), usize> = Default::default();
    for part in &found {
        for f in part {
            let at = *by_slug.entry((f.kind, f.slug.as_str())).or_insert_with(|| {
                labels.push(label_feed(f.kind, f.name, f.slug.clone(), s));
                labels.len() - 1
            });
            labels[at].members.extend_from_slice(&f.members);
        }
    }
    labels.sort_unstable_by(|a, b| feed_key(a).cmp(&feed_key(b)));
    labels
}

/// Articles [`feeds`] reads the labels of in one piece, at least (in
/// tests, few: so that small archives cross pieces).
const LABEL_CHUNK: usize = if cfg!(test) { 64 } else { 8192 };

/// A label as found in a run of articles: its kind, slug and the first
/// spelling met, and the articles with it (indexes, in order).
struct Found<'a> {
    kind: LabelKind,
    slug: String,
    name: &'a str,
    members: Vec<u32>,
}

/// The labels of `part`, whose first article is article `first`, in the
/// order they are first met. Few distinct names, many articles: each
/// name is slugified once, then costs one hash lookup per article.
fn labels_in(part: &[Arc<Article>], first: usize) -> Vec<Found<'_>> {
    let mut labels: Vec<Found<'_>> = Vec::new();
    let mut by_name: rustc_hash::FxHashMap<(LabelKind, &str), Option<usize>> = Default::default();
    let mut by_slug: rustc_hash::FxHashMap<(LabelKind, String), usize> = Default::default();
    for (i, a) in part.iter().enumerate() {
        let i = (first + i) as u32;
        let named = named_labels(a);
        for (kind, name) in named {
            let at = *by_name.entry((kind, name.as_str())).or_insert_with(|| {
                let slug = slugify(name);
                if slug.is_empty() {
                    return None;
                }
                // Names that differ only in case or punctuation share a feed.
                Some(*by_slug.entry((kind, slug.clone())).or_insert_with(|| {
                    labels.push(Found {
                        kind,
                        slug,
                        name,
                        members: Vec::new(),
                    });
                    labels.len() - 1
                }))
            });
            let Some(f) = at.map(|at| &mut labels[at]) else {
                continue;
            };
            // An article naming one label twice (two spellings) is listed once.
            if f.members.last() == Some(&i) {
                continue;
            }
            f.members.push(i);
        }
    }
    labels
}

fn label_feed(kind: LabelKind, name: &str, slug: String, s: &Settings) -> Feed {
    Feed {
        title: label_title(kind, name, s),
        dir: format!("{}/{}/", kind.folder(), encode_segment(&slug)),
        label: Some(Label {
            kind,
            name: name.to_string(),
            slug,
        }),
        items: Vec::new(),
        members: Vec::new(),
        bodies: Vec::new(),
        archived: 0,
        page: None,
    }
}

/// How [`feeds`] orders the label feeds (the main feed, with no label,
/// comes first).
fn feed_key(f: &Feed) -> Option<(LabelKind, &str)> {
    f.label.as_ref().map(|l| (l.kind, l.slug.as_str()))
}

/// An article's labels as written: its categories, then its tags, each
/// with its kind.
fn named_labels(a: &Article) -> impl Iterator<Item = (LabelKind, &String)> {
    a.categories
        .iter()
        .map(|c| (LabelKind::Category, c))
        .chain(a.tags.iter().map(|t| (LabelKind::Tag, t)))
}

/// The categories and tags of an article that have pages and feeds:
/// kind, the article's own spelling and the route folder
/// (`categories/<slug>/`), each label once (two spellings of one name are
/// one label), categories first. What the article's page links to and
/// announces, from the article alone.
pub fn labels_of(a: &Article) -> Vec<(LabelKind, &str, String)> {
    let mut out: Vec<(LabelKind, &str, String)> = Vec::new();
    let named = named_labels(a);
    for (kind, name) in named {
        if let Some(dir) = label_route(kind, name) {
            if !out.iter().any(|(k, _, d)| *k == kind && *d == dir) {
                out.push((kind, name.as_str(), dir));
            }
        }
    }
    out
}

/// The title of a label's feeds: `Site — Name`, `Site — Tag: name`.
pub(crate) fn label_title(kind: LabelKind, name: &str, s: &Settings) -> String {
    match kind {
        LabelKind::Category => format!("{} — {name}", s.title),
        LabelKind::Tag => format!("{} — Tag: {name}", s.title),
    }
}

/// The route of a label's page (`categories/<slug>/`, `tags/<slug>/`).
pub fn label_route(kind: LabelKind, name: &str) -> Option<String> {
    let slug = slugify(name);
    (!slug.is_empty()).then(|| format!("{}/{}/", kind.folder(), encode_segment(&slug)))
}

/// Escapes text for HTML and XML content and attribute values (see
/// [`crate::escape::html`]).
pub fn escape(s: &str) -> String {
    crate::escape::html(s)
}

#[cfg(test)]
pub(crate) mod testdata {
    //! Articles with every awkward feature, shared by the renderer tests.
    use super::*;
    use std::path::PathBuf;

    pub fn settings() -> Settings {
        Settings {
            title: "Herald & Co <test>".into(),
            description: "All the \"news\"".into(),
            base_url: "https://news.example.org/".into(),
            language: "en".into(),
            author: "Desk".into(),
            max_items: 50,
            rss_body: Body::Full,
            atom_body: Body::Full,
            json_body: Body::Full,
            cache_max_age: 300,
            feed_id_prefix: "tag:news.example.org,2025-05-22:".into(),
            generator: "Herald test".into(),
            hubs: vec![
                "https://news.example.org/websub".into(),
                "https://hub.example/".into(),
            ],
            timezone: chrono_tz::Tz::Asia__Shanghai,
            page_size: 20,
            archive_page_size: 50,
            archive_max_age: 86400,
        }
    }

    pub fn article(slug: &str, title: &str, published: &str, category: &str) -> Arc<Article> {
        let p = DateTime::parse_from_rfc3339(published).unwrap();
        Arc::new(Article {
            slug: slug.into(),
            id: format!("tag:news.example.org,{}:{slug}", p.format("%Y-%m-%d")),
            title: title.into(),
            published: p,
            updated: p,
            updated_from_file: false,
            categories: vec![category.into()],
            tags: vec!["tag one".into()],
            summary: format!("Summary of {title}"),
            body_html: crate::article::Body::new(&format!(
                "<p>Body of {} ]]&gt; end</p>\n",
                escape(title)
            )),
            author: None,
            more_authors: vec![],
            local_refs: vec![],
            picture: None,
            source: PathBuf::from(format!("{slug}.txt")),
            hash: 1,
            warnings: vec![],
        })
    }

    /// Newest first: a hostile title, a plain one, another category.
    pub fn articles() -> Vec<Arc<Article>> {
        vec![
            article(
                "hostile",
                "A & B <script>alert(1)</script> \"q\" ]]>",
                "2025-05-23T10:00:00+08:00",
                "Columns and Opinions",
            ),
            article(
                "plain",
                "Plain title",
                "2025-05-22T06:40:00+08:00",
                "Columns and Opinions",
            ),
            article(
                "other",
                "Über news",
                "2025-05-01T00:00:00+00:00",
                "World News",
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::testdata::*;
    use super::*;

    /// The RSS `<ttl>` is the `max-age` in whole minutes, rounded up, never 0.
    #[test]
    fn ttl_follows_max_age() {
        let mut s = settings();
        let ttl = |s: &mut Settings, secs| {
            s.cache_max_age = secs;
            s.ttl_minutes()
        };
        assert_eq!(ttl(&mut s, 300), 5);
        assert_eq!(ttl(&mut s, 290), 5);
        assert_eq!(ttl(&mut s, 301), 6);
        assert_eq!(ttl(&mut s, 0), 1);
    }

    /// The main feed holds the newest `max_items` (the third article is on
    /// an archive page of one); each category and each
    /// tag gets its own, tags after categories; every label feed knows all
    /// its members, and its page is its home.
    #[test]
    fn feed_plan() {
        let mut s = settings();
        s.max_items = 2;
        s.archive_page_size = 1;
        let f = feeds(&articles(), &s);
        let summary: Vec<(String, Vec<&str>)> = f
            .iter()
            .map(|f| {
                (
                    f.dir.clone(),
                    f.items.iter().map(|a| a.slug.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("".to_string(), vec!["hostile", "plain"]),
                (
                    "categories/columns-and-opinions/".to_string(),
                    vec!["hostile", "plain"]
                ),
                ("categories/world-news/".to_string(), vec!["other"]),
                ("tags/tag-one/".to_string(), vec!["hostile", "plain"]),
            ]
        );
        assert_eq!(
            f[1].id(&s),
            "tag:news.example.org,2025-05-22:categories/columns-and-opinions"
        );
        assert_eq!(f[3].title, "Herald & Co <test> — Tag: tag one");
        assert_eq!(f[3].members, [0, 1, 2], "every member, past max_items");
        let arts = articles();
        let all: Vec<&str> = f[0].members(&arts).map(|a| a.slug.as_str()).collect();
        assert_eq!(all, ["hostile", "plain", "other"]);
        assert_eq!(f[0].home(&s), "https://news.example.org/");
        assert_eq!(
            f[2].home(&s),
            "https://news.example.org/categories/world-news/"
        );
    }

    /// An article's labels are its categories, then its tags, each once
    /// whatever the spelling, none without a slug.
    /// The labels of an archive larger than one chunk of [`feeds`]'s
    /// label pass come out as one pass over it would find them: every
    /// article listed once per label, in order, and each label spelled as
    /// the first article with it spells it.
    #[test]
    fn labels_across_chunks() {
        let s = settings();
        let n = LABEL_CHUNK * 4 + 100;
        let late = n / 2 + 7;
        let all: Vec<Arc<Article>> = (0..n)
            .map(|i| {
                let mut a = (*article(&format!("a{i}"), "t", "2025-01-01T00:00:00Z", "x")).clone();
                a.categories = match i % 3 {
                    0 => vec!["World News".into()],
                    1 => vec!["world news".into(), "WORLD NEWS".into()],
                    _ => vec![],
                };
                a.tags = if i >= late && i % 5 == 0 {
                    vec!["Late one".into()]
                } else {
                    vec![]
                };
                Arc::new(a)
            })
            .collect();
        let fs = feeds(&all, &s);
        let label = |slug: &str| {
            fs.iter()
                .find(|f| f.label.as_ref().is_some_and(|l| l.slug == slug))
        };
        let world = label("world-news").expect("the category");
        assert_eq!(world.label.as_ref().unwrap().name, "World News");
        let want: Vec<u32> = (0..n as u32).filter(|i| i % 3 != 2).collect();
        assert_eq!(world.members, want);
        let tag = label("late-one").expect("the tag");
        assert_eq!(tag.label.as_ref().unwrap().name, "Late one");
        let want: Vec<u32> = (late as u32..n as u32).filter(|i| i % 5 == 0).collect();
        assert_eq!(tag.members, want);
        assert_eq!(fs.len(), 3, "the main feed and two labels");
    }

    /// Feeds built with a label index kept from build to build are the
    /// feeds built afresh: after an edit that keeps every article's
    /// labels (taken from the index), after one that changes a tag or a
    /// spelling, and after one that changes the set of articles (both
    /// found again).
    #[test]
    fn label_index_gives_the_feeds_afresh() {
        let s = settings();
        let shape = |fs: &[Feed]| -> Vec<String> {
            fs.iter()
                .map(|f| {
                    let items: Vec<String> = f
                        .items
                        .iter()
                        .map(|a| format!("{}:{}", a.slug, a.title))
                        .collect();
                    format!(
                        "{} {} {:?} {} {:?}",
                        f.dir, f.title, f.members, f.archived, items
                    )
                })
                .collect()
        };
        let mut all: Vec<Arc<Article>> = (0..300)
            .map(|i| {
                let mut a = (*article(&format!("a{i}"), "t", "2025-01-01T00:00:00Z", "x")).clone();
                a.categories = vec![["World", "Local", "Sport"][i % 3].into()];
                a.tags = if i % 7 == 0 {
                    vec!["Seven".into()]
                } else {
                    vec![]
                };
                Arc::new(a)
            })
            .collect();
        let mut index = LabelIndex::default();
        let build = |all: &[Arc<Article>], index: &mut LabelIndex| {
            let fs = feeds_reusing(all, &s, &FeedBodies::default(), 1, index);
            assert_eq!(shape(&fs), shape(&feeds(all, &s)));
            fs
        };
        build(&all, &mut index);
        let held =
            |index: &LabelIndex, i: usize, a: &Arc<Article>| Arc::ptr_eq(&index.articles[i], a);
        // A new title: the index is taken, and holds the new version.
        let mut a = (*all[3]).clone();
        a.title = "edited".into();
        all[3] = Arc::new(a);
        let fs = build(&all, &mut index);
        assert!(
            held(&index, 3, &all[3]),
            "the index holds the edited article"
        );
        assert!(fs
            .iter()
            .any(|f| f.items.iter().any(|a| a.title == "edited")));
        // A tag added, then a category respelled: found again.
        let mut a = (*all[4]).clone();
        a.tags = vec!["Seven".into()];
        all[4] = Arc::new(a);
        let fs = build(&all, &mut index);
        let seven = fs.iter().find(|f| f.dir == "tags/seven/").unwrap();
        assert!(seven.members.contains(&4));
        let mut a = (*all[0]).clone();
        a.categories = vec!["WORLD".into()];
        all[0] = Arc::new(a);
        let fs = build(&all, &mut index);
        assert!(
            fs.iter().any(|f| f.title.contains("WORLD")),
            "{:?}",
            shape(&fs)
        );
        // One article fewer.
        all.remove(10);
        build(&all, &mut index);
        assert_eq!(index.articles.len(), all.len());
    }

    #[test]
    fn labels_of_an_article() {
        let mut a = (*articles()[2]).clone();
        a.categories = vec!["world NEWS".into(), "World News".into(), "Über".into()];
        a.tags = vec!["Tag One".into(), "".into(), "world news".into()];
        let got = labels_of(&a);
        assert_eq!(
            got,
            [
                (
                    LabelKind::Category,
                    "world NEWS",
                    "categories/world-news/".to_string()
                ),
                (
                    LabelKind::Category,
                    "Über",
                    "categories/%C3%BCber/".to_string()
                ),
                (LabelKind::Tag, "Tag One", "tags/tag-one/".to_string()),
                (LabelKind::Tag, "world news", "tags/world-news/".to_string()),
            ]
        );
    }

    /// A title-only article (no body, no summary) gets no empty element
    /// in any format: no Atom `<content>`, its title as `<summary>` (every
    /// entry carries text), no RSS `content:encoded`/`description`; JSON
    /// Feed carries the required `content_text`, empty.
    #[test]
    fn title_only_article_has_no_empty_elements() {
        let s = settings();
        let mut a = (*article("bare", "Bare", "2025-05-23T10:00:00+08:00", "News")).clone();
        a.body_html = crate::article::Body::new("");
        a.summary = String::new();
        let f = feeds(&[Arc::new(a)], &s);
        let atom = String::from_utf8(atom(&f[0], &s)).unwrap();
        assert!(!atom.contains("<content"), "{atom}");
        assert!(atom.contains("<summary>Bare</summary>"), "{atom}");
        let rss = String::from_utf8(rss(&f[0], &s)).unwrap();
        assert!(
            !rss.contains("content:encoded>") && !rss.contains("<description></"),
            "{rss}"
        );
        assert!(!rss.contains("<description><![CDATA[]]>"), "{rss}");
        let v: serde_json::Value = serde_json::from_slice(&json(&f[0], &s)).unwrap();
        assert_eq!(v["items"][0]["content_text"], "");
        assert!(v["items"][0].get("content_html").is_none());
    }

    /// Every entry names its authors in every format: its own, in order,
    /// or the site's author.
    #[test]
    fn entries_name_their_authors() {
        let s = settings();
        let mut two = (*article("two", "Two", "2025-05-23T10:00:00+08:00", "News")).clone();
        two.author = Some("Ann".into());
        two.more_authors = vec!["Bob".into()];
        let none = article("none", "None", "2025-05-22T10:00:00+08:00", "News");
        let f = feeds(&[Arc::new(two), none], &s);
        let atom = String::from_utf8(atom(&f[0], &s)).unwrap();
        assert_eq!(atom.matches("<author>").count(), 1 + 3, "{atom}");
        let rss = String::from_utf8(rss(&f[0], &s)).unwrap();
        for want in [
            "<dc:creator>Ann</dc:creator>",
            "<dc:creator>Bob</dc:creator>",
            "<dc:creator>Desk</dc:creator>",
        ] {
            assert!(rss.contains(want), "{want} in {rss}");
        }
        let v: serde_json::Value = serde_json::from_slice(&json(&f[0], &s)).unwrap();
        assert_eq!(
            v["items"][0]["authors"],
            serde_json::json!([{"name": "Ann"}, {"name": "Bob"}])
        );
        assert_eq!(
            v["items"][1]["authors"],
            serde_json::json!([{"name": "Desk"}])
        );
    }

    /// A published picture is announced with length and type in every
    /// format; one elsewhere on the web by its URL only; a relative one
    /// Herald does not publish not at all.
    #[test]
    fn pictures_in_every_format() {
        let s = settings();
        let mut a = (*article("p", "P", "2025-05-23T10:00:00+08:00", "News")).clone();
        a.picture = Some(crate::article::Picture {
            src: "chart.png".into(),
            from_front_matter: false,
            published: Some(("/articles/p/chart.png".into(), 67, "image/png")),
        });
        let mut b = (*article("q", "Q", "2025-05-22T10:00:00+08:00", "News")).clone();
        b.picture = Some(crate::article::Picture {
            src: "https://cdn.example/q.jpg".into(),
            from_front_matter: true,
            published: None,
        });
        let mut c = (*article("r", "R", "2025-05-21T10:00:00+08:00", "News")).clone();
        c.picture = Some(crate::article::Picture {
            src: "missing.png".into(),
            from_front_matter: false,
            published: None,
        });
        let f = feeds(&[Arc::new(a), Arc::new(b), Arc::new(c)], &s);
        let url = "https://news.example.org/articles/p/chart.png";
        let rss = String::from_utf8(rss(&f[0], &s)).unwrap();
        assert!(
            rss.contains(&format!(
                "<enclosure url=\"{url}\" length=\"67\" type=\"image/png\"/>"
            )),
            "{rss}"
        );
        assert!(rss.contains("url=\"https://cdn.example/q.jpg\""), "{rss}");
        assert_eq!(rss.matches("<media:content").count(), 2, "{rss}");
        let atom = String::from_utf8(atom(&f[0], &s)).unwrap();
        assert!(
            atom.contains(&format!(
                "<link href=\"{url}\" rel=\"enclosure\" type=\"image/png\" length=\"67\"/>"
            )),
            "{atom}"
        );
        assert_eq!(atom.matches("rel=\"enclosure\"").count(), 2, "{atom}");
        let v: serde_json::Value = serde_json::from_slice(&json(&f[0], &s)).unwrap();
        assert_eq!(v["items"][0]["image"], url);
        assert_eq!(v["items"][1]["image"], "https://cdn.example/q.jpg");
        assert!(v["items"][2].get("image").is_none());
    }

    /// Non-ASCII slugs are percent-encoded in routes.
    #[test]
    fn routes_encode() {
        assert_eq!(article_route("über-x"), "articles/%C3%BCber-x/");
    }
}
