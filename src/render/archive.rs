//! Full history (RFC 5005 §4, archived feeds): every feed is a current
//! document plus closed archive pages, so a reader can fetch every article
//! ever published, not only the newest.
//!
//! Pages are numbered from the oldest: page 1 holds a feed's
//! `archive_page_size` oldest articles, page 2 the next ones, and so on.
//! The current document (`rss.xml`, `atom.xml`, `feed.json`) holds every
//! article not on a closed page: from `max_items` to `max_items +
//! archive_page_size - 1` of the newest (all of them while there are
//! fewer). A page closes when the current document would hold more, so a
//! new article changes the current document and, once in
//! `archive_page_size` articles, adds a page (and gives the page before
//! it its `next-archive` link) — it never moves an article between closed
//! pages. A closed page changes only when an article on it is edited or
//! removed, or one is back-dated into it (which shifts the pages after
//! it). Walking `prev-archive` from the current document reaches every
//! article exactly once, newest to oldest.
//!
//! Routes: `<feed dir>archive/rss/<n>.xml`, `…/atom/<n>.xml` and
//! `…/json/<n>.json` (JSON Feed pages through `next_url`). Archive pages
//! are no WebSub topics: they name no hub. Pure, like every renderer.

use std::sync::Arc;

use super::{Feed, Format, Settings};
use crate::article::Article;

/// The feed-history namespace (RFC 5005 §2).
pub const FH_NAMESPACE: &str = "http://purl.org/syndication/history/1.0";

/// How many closed archive pages a feed of `n` articles has: all but the
/// newest `max_items` to `max_items + size - 1` are on them (see the
/// module doc). `size` is at least 1.
pub fn closed_pages(n: usize, max_items: usize, size: usize) -> usize {
    let size = size.max(1);
    n.saturating_sub(max_items) / size
}

impl Format {
    /// The folder of this format's archive pages (`rss`, `atom`, `json`).
    fn archive_folder(self) -> &'static str {
        match self {
            Format::Rss => "rss",
            Format::Atom => "atom",
            Format::Json => "json",
        }
    }

    /// The extension of this format's archive pages.
    fn archive_ext(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Rss | Format::Atom => "xml",
        }
    }
}

impl Feed {
    /// Route of archive page `k` of this feed in `format`
    /// (`archive/atom/3.xml`, `categories/x/archive/json/1.json`).
    pub fn archive_route(&self, format: Format, k: usize) -> String {
        format!(
            "{}archive/{}/{k}.{}",
            self.dir,
            format.archive_folder(),
            format.archive_ext()
        )
    }

    /// Route of this document in `format`: the feed's own file for the
    /// current document, its archive page's otherwise.
    pub fn doc_route(&self, format: Format) -> String {
        match self.page {
            None => self.route(format.file()),
            Some(k) => self.archive_route(format, k),
        }
    }

    /// True for a closed archive page (RFC 5005 `fh:archive`).
    pub fn is_archive(&self) -> bool {
        self.page.is_some()
    }

    /// The history links of this document in `format` (RFC 5005 §4), as
    /// (relation, absolute URL): `current` and `prev-archive` for a
    /// current document with closed pages (none without), and `current`,
    /// `prev-archive` (not on page 1) and `next-archive` (not on the
    /// newest page, whose next is the current document) for a page.
    pub fn history_links(&self, format: Format, s: &Settings) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(3);
        let newest = self.archived;
        match self.page {
            None if newest == 0 => {}
            None => {
                out.push(("current", s.url(&self.route(format.file()))));
                out.push(("prev-archive", s.url(&self.archive_route(format, newest))));
            }
            Some(k) => {
                out.push(("current", s.url(&self.route(format.file()))));
                if k > 1 {
                    out.push(("prev-archive", s.url(&self.archive_route(format, k - 1))));
                }
                if k < newest {
                    out.push(("next-archive", s.url(&self.archive_route(format, k + 1))));
                }
            }
        }
        out
    }

    /// The JSON Feed `next_url` of this document: the page with the
    /// articles just older than these, if any.
    pub fn next_url(&self, s: &Settings) -> Option<String> {
        let older = match self.page {
            None => self.archived,
            Some(k) => k - 1,
        };
        (older > 0).then(|| s.url(&self.archive_route(Format::Json, older)))
    }

    /// Archive page `k` of this feed as a document of its own: the same
    /// title, id and home, holding `items` (newest first).
    pub fn archive_page(&self, k: usize, items: Vec<Arc<Article>>) -> Feed {
        Feed {
            title: self.title.clone(),
            dir: self.dir.clone(),
            label: self.label.clone(),
            bodies: items.iter().map(|_| Arc::default()).collect(),
            items,
            members: Vec::new(),
            archived: self.archived,
            page: Some(k),
        }
    }
}

/// One closed archive page of a feed (in every format).
#[derive(Debug, Clone)]
pub struct ArchivePage<'a> {
    /// The feed it is a page of.
    pub feed: &'a Feed,
    /// Its number (1 is the oldest).
    pub number: usize,
    /// Its articles, newest first.
    pub items: Vec<&'a Arc<Article>>,
}

impl ArchivePage<'_> {
    /// True for the newest closed page: the only one with no
    /// `next-archive` link.
    pub fn is_newest(&self) -> bool {
        self.number == self.feed.archived
    }

    /// The page as a document to render (see [`Feed::archive_page`]).
    pub fn doc(&self) -> Feed {
        self.feed.archive_page(
            self.number,
            self.items.iter().map(|a| Arc::clone(a)).collect(),
        )
    }
}

/// Every closed archive page of every feed (see [`super::feeds`]), newest
/// first per feed. `articles` is the slice the feeds were made from.
pub fn archive_pages<'a>(
    articles: &'a [Arc<Article>],
    feeds: &'a [Feed],
    s: &Settings,
) -> Vec<ArchivePage<'a>> {
    let size = s.archive_page_size.max(1);
    let mut out = Vec::new();
    for feed in feeds {
        if feed.archived == 0 {
            continue;
        }
        let members = feed.members(articles);
        let n = members.len();
        let mut rest = members.skip(n - feed.archived * size);
        for k in (1..=feed.archived).rev() {
            out.push(ArchivePage {
                feed,
                number: k,
                items: rest.by_ref().take(size).collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::super::{atom, feeds, json, rss};
    use super::*;

    /// The current document holds `max_items` to `max_items + size - 1`
    /// of the newest; every older article is on a closed page.
    #[test]
    fn split_table() {
        for (label, n, max, size, closed) in [
            ("empty", 0, 5, 3, 0),
            ("fewer than max_items", 4, 5, 3, 0),
            ("one short of a page", 7, 5, 3, 0),
            ("exactly a page more", 8, 5, 3, 1),
            ("page and a half", 12, 5, 3, 2),
            ("size one", 9, 5, 1, 4),
            ("size zero taken as one", 9, 5, 0, 4),
        ] {
            assert_eq!(closed_pages(n, max, size), closed, "{label}");
            let current = n - closed * size.max(1);
            assert!(
                closed == 0 || (max..max + size.max(1)).contains(&current),
                "{label}: {current}"
            );
        }
    }

    fn many(n: usize) -> Vec<Arc<Article>> {
        (0..n)
            .rev()
            .map(|i| {
                article(
                    &format!("a{i}"),
                    &format!("A{i}"),
                    &format!("2025-01-01T00:{:02}:{:02}+00:00", i / 60, i % 60),
                    if i % 2 == 0 { "Even" } else { "Odd" },
                )
            })
            .collect()
    }

    /// Pages cover every article once, oldest on page 1, and each label's
    /// feed is paged over its own articles.
    #[test]
    fn pages_cover_every_article_once() {
        let mut s = settings();
        s.max_items = 3;
        s.archive_page_size = 2;
        let arts = many(10);
        let f = feeds(&arts, &s);
        assert_eq!(f[0].archived, 3);
        let main: Vec<&str> = f[0].items.iter().map(|a| a.slug.as_str()).collect();
        assert_eq!(main, ["a9", "a8", "a7", "a6"]);
        let pages = archive_pages(&arts, &f, &s);
        let of_main: Vec<(usize, Vec<&str>)> = pages
            .iter()
            .filter(|p| p.feed.label.is_none())
            .map(|p| (p.number, p.items.iter().map(|a| a.slug.as_str()).collect()))
            .collect();
        assert_eq!(
            of_main,
            [
                (3, vec!["a5", "a4"]),
                (2, vec!["a3", "a2"]),
                (1, vec!["a1", "a0"])
            ]
        );
        let even = f
            .iter()
            .position(|g| g.dir == "categories/even/")
            .expect("a feed for Even");
        assert_eq!(f[even].archived, 1, "5 articles: 3 current, 1 page of 2");
        let last: Vec<&str> = pages
            .iter()
            .filter(|p| std::ptr::eq(p.feed, &f[even]))
            .flat_map(|p| p.items.iter().map(|a| a.slug.as_str()))
            .collect();
        assert_eq!(last, ["a2", "a0"]);
    }

    /// The current document names its newest page; a page names the
    /// current document and its neighbours, carries `fh:archive` and no
    /// hub; JSON Feed pages through `next_url`.
    #[test]
    fn links_in_every_format() {
        let mut s = settings();
        s.max_items = 3;
        s.archive_page_size = 2;
        let arts = many(10);
        let f = feeds(&arts, &s);
        let base = "https://news.example.org/";
        let cur = String::from_utf8(atom(&f[0], &s)).unwrap();
        for want in [
            format!("<link href=\"{base}atom.xml\" rel=\"current\""),
            format!("<link href=\"{base}archive/atom/3.xml\" rel=\"prev-archive\""),
        ] {
            assert!(cur.contains(&want), "{want} in {cur}");
        }
        assert!(!cur.contains("fh:archive"), "{cur}");
        let pages = archive_pages(&arts, &f, &s);
        let p2 = pages
            .iter()
            .find(|p| p.feed.label.is_none() && p.number == 2)
            .unwrap()
            .doc();
        let a = String::from_utf8(atom(&p2, &s)).unwrap();
        for want in [
            format!("xmlns:fh=\"{FH_NAMESPACE}\""),
            "<fh:archive".to_string(),
            format!("<link href=\"{base}archive/atom/2.xml\" rel=\"self\""),
            format!("<link href=\"{base}atom.xml\" rel=\"current\""),
            format!("<link href=\"{base}archive/atom/1.xml\" rel=\"prev-archive\""),
            format!("<link href=\"{base}archive/atom/3.xml\" rel=\"next-archive\""),
            "<id>tag:news.example.org,2025-05-22:feed</id>".to_string(),
        ] {
            assert!(a.contains(&want), "{want} in {a}");
        }
        assert!(!a.contains("rel=\"hub\""), "{a}");
        let r = String::from_utf8(rss(&p2, &s)).unwrap();
        for want in [
            format!("xmlns:fh=\"{FH_NAMESPACE}\""),
            "<fh:archive".to_string(),
            format!("<atom:link href=\"{base}archive/rss/2.xml\" rel=\"self\""),
            format!("<atom:link href=\"{base}rss.xml\" rel=\"current\""),
            format!("<atom:link href=\"{base}archive/rss/1.xml\" rel=\"prev-archive\""),
            format!("<atom:link href=\"{base}archive/rss/3.xml\" rel=\"next-archive\""),
        ] {
            assert!(r.contains(&want), "{want} in {r}");
        }
        assert!(!r.contains("rel=\"hub\""), "{r}");
        let v: serde_json::Value = serde_json::from_slice(&json(&f[0], &s)).unwrap();
        assert_eq!(v["next_url"], format!("{base}archive/json/3.json"));
        let v: serde_json::Value = serde_json::from_slice(&json(&p2, &s)).unwrap();
        assert_eq!(v["next_url"], format!("{base}archive/json/1.json"));
        assert_eq!(v["feed_url"], format!("{base}feed.json"));
        assert!(v.get("hubs").is_none(), "{v}");
        let p1 = pages
            .iter()
            .find(|p| p.feed.label.is_none() && p.number == 1)
            .unwrap()
            .doc();
        let v: serde_json::Value = serde_json::from_slice(&json(&p1, &s)).unwrap();
        assert!(v.get("next_url").is_none(), "{v}");
        let newest = pages
            .iter()
            .find(|p| p.feed.label.is_none() && p.number == 3)
            .unwrap();
        assert!(newest.is_newest());
        let a = String::from_utf8(atom(&newest.doc(), &s)).unwrap();
        assert!(!a.contains("next-archive"), "{a}");
    }

    /// A feed with no closed page has no history links.
    #[test]
    fn small_feed_has_no_history() {
        let s = settings();
        let f = feeds(&articles(), &s);
        let a = String::from_utf8(atom(&f[0], &s)).unwrap();
        assert!(
            !a.contains("rel=\"current\"") && !a.contains("archive"),
            "{a}"
        );
        let v: serde_json::Value = serde_json::from_slice(&json(&f[0], &s)).unwrap();
        assert!(v.get("next_url").is_none());
    }
}
