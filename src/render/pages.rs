//! The listings: the index (`/`) and the page of each category and tag
//! (`categories/<slug>/`, `tags/<slug>/`), each paginated through every
//! article it has, newest first, with date, category and summary.
//!
//! Archive pages are numbered from the oldest, as RFC 5005 numbers feed
//! archives: page 1 holds a listing's `page_size` oldest articles, page 2
//! the next ones, and so on; the front page holds the newest, from
//! `page_size` to twice that less one (all of them while there are fewer
//! than two pages' worth). A new article therefore changes the front page
//! and, once in `page_size` articles, adds one archive page (whose "newer"
//! link moves off the front page) — never renumbers the pages before, so
//! the cost of publishing one stays the same however long the archive.
//! Editing an article changes the page it is listed on, in each listing.

use std::fmt::Write;
use std::sync::Arc;

use super::html::{date_range, head, site_header, time, FOOT};
use super::{escape, label_route, Feed, LabelKind, Settings};
use crate::article::Article;

/// Where a page's link to newer articles goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Newer {
    /// Nowhere: this is the front page.
    Nowhere,
    /// To the listing's front page.
    Front,
    /// To this archive page.
    Page(usize),
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct ListPage<'a> {
    /// The feed whose articles it lists (the main feed's: every article).
    pub feed: &'a Feed,
    /// `None` for the listing's front page, else its archive number (1 is
    /// the oldest).
    pub number: Option<usize>,
    /// Its articles, newest first.
    pub items: Vec<&'a Arc<Article>>,
    /// The archive page with the articles just older than these.
    pub older: Option<usize>,
    /// Where the articles just newer than these are.
    pub newer: Newer,
}

impl ListPage<'_> {
    /// Its route: the feed's folder (`` for the index), then
    /// `page/<n>/` for an archive page.
    pub fn route(&self) -> String {
        page_route(self.feed, self.number)
    }

    /// Its route with a leading `/`, as the site serves it. Made for
    /// every page of every listing on every publish, so without the
    /// formatting machinery.
    pub fn route_from_root(&self) -> String {
        let mut out = String::with_capacity(self.feed.dir.len() + 16);
        out.push('/');
        push_route(&mut out, self.feed, self.number);
        out
    }
}

fn page_route(feed: &Feed, number: Option<usize>) -> String {
    let mut out = String::with_capacity(feed.dir.len() + 15);
    push_route(&mut out, feed, number);
    out
}

fn push_route(out: &mut String, feed: &Feed, number: Option<usize>) {
    out.push_str(&feed.dir);
    if let Some(mut n) = number {
        out.push_str("page/");
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend(digits[at..].iter().map(|&d| char::from(d)));
        out.push('/');
    }
}

/// Every page of every listing: for each feed (see [`super::feeds`]) its
/// front page, then its archive pages from the newest. `articles` is the
/// slice the feeds were made from; `page_size` is at least 1.
pub fn list_pages<'a>(
    articles: &'a [Arc<Article>],
    feeds: &'a [Feed],
    page_size: usize,
) -> Vec<ListPage<'a>> {
    let size = page_size.max(1);
    let mut out = Vec::new();
    for feed in feeds {
        let members = feed.members(articles);
        let n = members.len();
        // Closed pages: all but the newest one or two pages' worth.
        let closed = if n >= 2 * size { n / size - 1 } else { 0 };
        let front = n - closed * size;
        out.push(ListPage {
            feed,
            number: None,
            items: members.clone().take(front).collect(),
            older: (closed > 0).then_some(closed),
            newer: Newer::Nowhere,
        });
        let mut rest = members.skip(front);
        for k in (1..=closed).rev() {
            out.push(ListPage {
                feed,
                number: Some(k),
                items: rest.by_ref().take(size).collect(),
                older: (k > 1).then(|| k - 1),
                newer: if k == closed {
                    Newer::Front
                } else {
                    Newer::Page(k + 1)
                },
            });
        }
    }
    out
}

/// Renders one listing page. `feeds` are every feed, which the index
/// lists (with their pages) under its articles.
pub fn list_page(p: &ListPage<'_>, feeds: &[Feed], s: &Settings) -> Vec<u8> {
    let mut out = String::with_capacity(2048 + p.items.len() * 600);
    let f = p.feed;
    let name = f.label.as_ref().map(|l| match l.kind {
        LabelKind::Category => l.name.clone(),
        LabelKind::Tag => format!("Tag: {}", l.name),
    });
    let heading = match (&name, p.number) {
        (Some(n), None) => n.clone(),
        (Some(n), Some(k)) => format!("{n}, page {k}"),
        (None, None) => s.title.clone(),
        (None, Some(k)) => format!("All articles, page {k}"),
    };
    let index = name.is_none() && p.number.is_none();
    let title = if index {
        s.title.clone()
    } else {
        format!("{heading} — {}", s.title)
    };
    // The index announces the site's feed and the sections' (few); a
    // label's page its own. Tags, which can be many, are announced on
    // their pages only.
    let announced: Vec<&Feed> = if index {
        feeds
            .iter()
            .filter(|g| {
                std::ptr::eq(*g, f)
                    || g.label
                        .as_ref()
                        .is_some_and(|l| l.kind == LabelKind::Category)
            })
            .collect()
    } else {
        vec![f]
    };
    head(
        &mut out,
        &title,
        s,
        announced.iter().map(|g| (g.title.as_str(), g.dir.as_str())),
    );
    // WebSub discovery (W3C WebSub §4) on the index: its hubs and its own
    // URL, before the style that closes the head.
    if let (true, false, Some(at)) = (index, s.hubs.is_empty(), out.rfind("<style>")) {
        let mut links = String::new();
        for h in &s.hubs {
            let _ = writeln!(links, "<link rel=\"hub\" href=\"{}\">", escape(h));
        }
        let _ = writeln!(links, "<link rel=\"self\" href=\"{}\">", escape(&s.url("")));
        out.insert_str(at, &links);
    }
    if index {
        let _ = write!(
            out,
            "<header>\n<h1>{}</h1>\n<p>{}</p>\n</header>\n<main>\n",
            escape(&s.title),
            escape(&s.description)
        );
    } else {
        site_header(&mut out, s);
        let _ = write!(out, "<main>\n<h1>{}</h1>\n", escape(&heading));
    }
    if let (Some(_), Some(newest), Some(oldest)) = (p.number, p.items.first(), p.items.last()) {
        out.push_str("<p class=\"meta\">");
        date_range(&mut out, oldest, newest, s);
        out.push_str("</p>\n");
    }
    let follow = name.as_deref().unwrap_or("every article");
    let _ = write!(
        out,
        "<p class=\"subscribe\">Follow {} by feed: ",
        escape(follow)
    );
    super::html::feed_links(&mut out, s, f);
    out.push_str("</p>\n");
    // On a category's own page its name would be on every entry.
    let here = f
        .label
        .as_ref()
        .filter(|l| l.kind == LabelKind::Category)
        .map(|_| f.dir.as_str());
    for a in &p.items {
        entry(&mut out, a, here, s);
    }
    nav(&mut out, p, s);
    out.push_str("</main>\n");
    if index {
        index_footer(&mut out, feeds, s);
    }
    out.push_str(FOOT);
    out.into_bytes()
}

/// One article in a listing: title, date and categories (but the one
/// whose page this is, `here`), summary.
fn entry(out: &mut String, a: &Article, here: Option<&str>, s: &Settings) {
    let _ = write!(
        out,
        "<article class=\"entry\">\n<h2><a href=\"{}\">{}</a></h2>\n<p class=\"meta\">",
        escape(&s.article_url(a)),
        escape(&a.title)
    );
    time(out, &a.published, s);
    for c in &a.categories {
        if let Some(route) =
            label_route(LabelKind::Category, c).filter(|r| Some(r.as_str()) != here)
        {
            let _ = write!(
                out,
                " · <a href=\"{}\">{}</a>",
                escape(&s.url(&route)),
                escape(c)
            );
        }
    }
    out.push_str("</p>\n");
    if !a.summary.is_empty() {
        let _ = writeln!(out, "<p>{}</p>", escape(&a.summary));
    }
    out.push_str("</article>\n");
}

/// Links to the pages with newer and older articles.
fn nav(out: &mut String, p: &ListPage<'_>, s: &Settings) {
    let newer = match p.newer {
        Newer::Nowhere => None,
        Newer::Front => Some(page_route(p.feed, None)),
        Newer::Page(k) => Some(page_route(p.feed, Some(k))),
    };
    let older = p.older.map(|k| page_route(p.feed, Some(k)));
    if newer.is_none() && older.is_none() {
        return;
    }
    out.push_str("<nav class=\"pages\">");
    if let Some(r) = newer {
        let _ = write!(
            out,
            "<a rel=\"next\" href=\"{}\">← Newer articles</a>",
            escape(&s.url(&r))
        );
    }
    if let Some(r) = older {
        let _ = write!(
            out,
            "<a class=\"older\" rel=\"prev\" href=\"{}\">Older articles →</a>",
            escape(&s.url(&r))
        );
    }
    out.push_str("</nav>\n");
}

/// Under the index's articles: every category and tag with its page and
/// feeds, the main feeds and the OPML list.
fn index_footer(out: &mut String, feeds: &[Feed], s: &Settings) {
    out.push_str("<footer>\n");
    for (kind, heading) in [(LabelKind::Category, "Sections"), (LabelKind::Tag, "Tags")] {
        let mut of_kind = feeds
            .iter()
            .filter(|f| f.label.as_ref().is_some_and(|l| l.kind == kind))
            .peekable();
        if of_kind.peek().is_none() {
            continue;
        }
        let _ = write!(out, "<h2>{heading}</h2>\n<ul class=\"feeds\">\n");
        for f in of_kind {
            let name = f.label.as_ref().map_or("", |l| l.name.as_str());
            let _ = write!(
                out,
                "<li><a href=\"{}\">{}</a> <span class=\"meta\">",
                escape(&f.home(s)),
                escape(name)
            );
            super::html::feed_links(out, s, f);
            out.push_str("</span></li>\n");
        }
        out.push_str("</ul>\n");
    }
    let _ = write!(
        out,
        "<p>Every feed in one file for a feed reader: <a href=\"{}\">OPML</a> ({} feeds, one format each).</p>\n</footer>\n",
        escape(&s.url("feeds.opml")),
        feeds.len()
    );
}

#[cfg(test)]
mod tests {
    use super::super::testdata::*;
    use super::super::{feeds, Settings};
    use super::*;

    fn numbered(n: usize) -> Vec<Arc<Article>> {
        (0..n)
            .rev()
            .map(|i| {
                article(
                    &format!("a{i:03}"),
                    &format!("Article {i}"),
                    &format!("2025-01-01T{:02}:{:02}:00+00:00", i / 60, i % 60),
                    if i % 2 == 0 { "Even" } else { "Odd" },
                )
            })
            .collect()
    }

    fn plan(n: usize, size: usize) -> Vec<(String, Vec<String>, Option<usize>, Newer)> {
        let s = Settings {
            page_size: size,
            ..settings()
        };
        let arts = numbered(n);
        let f = feeds(&arts, &s);
        list_pages(&arts, &f[..1], size)
            .into_iter()
            .map(|p| {
                (
                    p.route(),
                    p.items.iter().map(|a| a.slug.clone()).collect(),
                    p.older,
                    p.newer,
                )
            })
            .collect()
    }

    /// Pages are numbered from the oldest, each full; the front page holds
    /// the rest (from one to two pages' worth); the links chain them.
    #[test]
    fn pagination_from_the_oldest() {
        let slugs = |r: std::ops::Range<usize>| -> Vec<String> {
            r.rev().map(|i| format!("a{i:03}")).collect()
        };
        assert_eq!(plan(5, 3), [("".into(), slugs(0..5), None, Newer::Nowhere)]);
        assert_eq!(
            plan(6, 3),
            [
                ("".into(), slugs(3..6), Some(1), Newer::Nowhere),
                ("page/1/".into(), slugs(0..3), None, Newer::Front),
            ]
        );
        assert_eq!(
            plan(11, 3),
            [
                ("".into(), slugs(6..11), Some(2), Newer::Nowhere),
                ("page/2/".into(), slugs(3..6), Some(1), Newer::Front),
                ("page/1/".into(), slugs(0..3), None, Newer::Page(2)),
            ]
        );
        assert_eq!(plan(0, 3), [("".into(), vec![], None, Newer::Nowhere)]);
        let routes: Vec<String> = plan(1234, 1).iter().map(|p| p.0.clone()).collect();
        assert_eq!(routes[1], "page/1233/");
        assert_eq!(routes[1233], "page/1/");
    }

    /// A new article changes the front page only, or adds one archive
    /// page and changes the one before it (its "newer" link); every
    /// other page keeps exactly its articles and links.
    #[test]
    fn a_new_article_leaves_older_pages_alone() {
        for n in 1..40 {
            let before = plan(n, 4);
            let after = plan(n + 1, 4);
            let changed = after.iter().filter(|p| !before.contains(p)).count();
            let added = after.len() - before.len();
            assert!(added <= 1, "{n}");
            assert!(changed <= 1 + 2 * added, "{n}: {changed} pages changed");
        }
    }

    /// A label's listing has only its members; a page shows each
    /// article's date in the configured zone, labelled, its category
    /// links and summary, and links its neighbours.
    #[test]
    fn label_pages_and_entries() {
        let s = Settings {
            page_size: 2,
            ..settings()
        };
        let arts = numbered(9);
        let f = feeds(&arts, &s);
        let pages = list_pages(&arts, &f, 2);
        let even: Vec<&ListPage> = pages
            .iter()
            .filter(|p| p.feed.dir == "categories/even/")
            .collect();
        let routes: Vec<String> = even.iter().map(|p| p.route()).collect();
        assert_eq!(
            routes,
            ["categories/even/", "categories/even/page/1/"],
            "five articles, pages of two"
        );
        let html = String::from_utf8(list_page(even[1], &f, &s)).unwrap();
        assert!(html.contains("<h1>Even, page 1</h1>"), "{html}");
        assert!(
            html.contains("<a href=\"https://news.example.org/articles/a002/\">Article 2</a>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<time datetime=\"2025-01-01T08:02:00+08:00\">1 Jan 2025, 08:02 CST</time>"
            ),
            "{html}"
        );
        assert!(html.contains("<p>Summary of Article 2</p>"), "{html}");
        assert!(
            html.contains("<a rel=\"next\" href=\"https://news.example.org/categories/even/\">"),
            "{html}"
        );
        assert!(!html.contains("rel=\"prev\""), "{html}");
        assert!(
            !html.contains("a001"),
            "odd articles are not listed: {html}"
        );
        assert_eq!(html.matches("<link rel=\"alternate\"").count(), 3);
    }

    /// The index lists every category and tag with its page and feeds,
    /// and names its WebSub hubs and itself in its head.
    #[test]
    fn index_lists_every_label() {
        let s = settings();
        let arts = articles();
        let f = feeds(&arts, &s);
        let pages = list_pages(&arts, &f, s.page_size);
        let h = String::from_utf8(list_page(&pages[0], &f, &s)).unwrap();
        for href in [
            "https://news.example.org/categories/world-news/",
            "https://news.example.org/categories/world-news/atom.xml",
            "https://news.example.org/tags/tag-one/",
            "https://news.example.org/tags/tag-one/feed.json",
            "https://news.example.org/feeds.opml",
        ] {
            assert!(h.contains(&format!("href=\"{href}\"")), "{href}: {h}");
        }
        assert!(h.contains("A &amp; B &lt;script&gt;"), "{h}");
        assert!(!h.contains("<script>"));
        assert_eq!(
            h.matches("<link rel=\"alternate\"").count(),
            9,
            "the main and the two category feeds, not the tag's"
        );
        let head = &h[..h.find("</head>").unwrap()];
        for want in [
            "<link rel=\"hub\" href=\"https://news.example.org/websub\">",
            "<link rel=\"hub\" href=\"https://hub.example/\">",
            "<link rel=\"self\" href=\"https://news.example.org/\">",
        ] {
            assert!(head.contains(want), "WebSub discovery: {want} in\n{head}");
        }
    }
}
