//! The empty-site guard: a publish that would drop every article, or more
//! than `max_drop` of them, is held back until the content comes back or
//! the operator confirms (SIGUSR1); ordinary starts and deletions are not.

use crate::live::{feed_titles, TestDaemon};
use crate::util::Workspace;

/// A Markdown article dated in May 2025.
fn article(i: usize) -> String {
    format!(
        "---\ntitle: Article {i}\nslug: article-{i}\ndate: 2025-05-{:02}\n---\nBody of article {i}.\n",
        i + 1
    )
}

fn write_articles(ws: &Workspace, n: usize) {
    write_articles_in(ws, "content", 0..n);
}

fn write_articles_in(ws: &Workspace, dir: &str, range: std::ops::Range<usize>) {
    for i in range {
        ws.write(&format!("{dir}/a{i:02}.md"), article(i));
    }
}

/// `rm -rf content; mkdir content` in one step as the watcher sees it (so
/// no batch of events removes only part of it): the tree moves to
/// `wiped/` and an empty directory takes its place.
fn empty_content(ws: &Workspace) {
    std::fs::rename(ws.path("content"), ws.path("wiped")).unwrap();
    std::fs::create_dir(ws.path("content")).unwrap();
}

/// The backup copied back, in one step: `wiped/` becomes `content/` again.
fn restore_content(ws: &Workspace) {
    std::fs::remove_dir(ws.path("content")).unwrap();
    std::fs::rename(ws.path("wiped"), ws.path("content")).unwrap();
}

/// Titles of the feed a reader gets now.
fn titles(d: &TestDaemon) -> Vec<String> {
    let r = d.get("/feed.json");
    assert_eq!(r.status, 200, "{}", r.text());
    feed_titles(&r.body)
}

/// An emptied content directory does not publish an empty site: the
/// publish is held with one error line, `/healthz` says why, the
/// previous feeds, permalinks and output files stay; when the files come
/// back the site is published as usual, and a wipe the operator confirms
/// with SIGUSR1 is published.
#[test]
fn an_emptied_content_directory_is_held_until_it_comes_back_or_is_confirmed() {
    let ws = Workspace::new();
    write_articles(&ws, 12);
    let mut d = TestDaemon::start(ws, "");
    d.poll("/feed.json", "12 articles", |r| {
        feed_titles(&r.body).len() == 12
    });
    let permalink = "/articles/article-0/";
    assert_eq!(d.get(permalink).status, 200, "{}", d.log());
    let feed_on_disk = d.ws.read("feeds/feed.json");
    assert_eq!(feed_titles(feed_on_disk.as_bytes()).len(), 12);

    // `rm -rf content/*`
    empty_content(&d.ws);
    let line = d.wait_log("publish held back");
    assert!(line.contains("ERROR"), "one loud line: {line}");
    assert!(
        line.contains("12 articles") && line.contains("SIGUSR1"),
        "says what and how to confirm: {line}"
    );
    let health = d.admin_get("/healthz");
    assert_eq!(health.status, 200);
    assert!(
        health.text().starts_with("degraded:") && health.text().contains("held back"),
        "{}",
        health.text()
    );
    assert_eq!(titles(&d).len(), 12, "the previous site stays served");
    assert_eq!(d.get(permalink).status, 200);
    assert_eq!(
        d.ws.read("feeds/feed.json"),
        feed_on_disk,
        "the output directory keeps the previous site"
    );
    let log = d.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("published") && l.contains("articles=0")),
        "{log}"
    );

    // The backup is copied back, one article fewer: a real deletion
    // meanwhile is published with it.
    std::fs::remove_file(d.ws.path("wiped/a11.md")).unwrap();
    restore_content(&d.ws);
    d.wait_log("content is back");
    d.poll("/feed.json", "11 articles", |r| {
        feed_titles(&r.body).len() == 11
    });
    d.admin_poll("/healthz", "ok", |r| r.text() == "ok\n");
    assert_eq!(d.get("/articles/article-11/").status, 410);

    // Emptied again, and this time meant: the operator confirms.
    empty_content(&d.ws);
    crate::live::wait_until("a second hold", || {
        d.log().matches("publish held back").count() == 2
    });
    assert_eq!(titles(&d).len(), 11);
    d.signal(libc::SIGUSR1);
    d.poll("/feed.json", "no articles", |r| {
        r.status == 200 && feed_titles(&r.body).is_empty()
    });
    assert_eq!(d.get(permalink).status, 410);
    d.admin_poll("/healthz", "ok", |r| r.text() == "ok\n");
    let log = d.stop();
    let held = log
        .lines()
        .filter(|l| l.contains("publish held back"))
        .count();
    assert_eq!(held, 2, "one line per hold:\n{log}");
    assert!(log.contains("confirmed"), "{log}");
}

/// What is not a wipe is published at once: a start on an empty content
/// directory, its first articles, deleting a few of them at a time while
/// fewer than half of what was published within the hour go, and most of
/// a small site (at most 10 articles) short of all of it.
#[test]
fn an_empty_start_and_ordinary_deletions_are_not_held() {
    let ws = Workspace::new();
    let d = TestDaemon::start(ws, "");
    d.poll("/feed.json", "an empty feed", |r| {
        r.status == 200 && feed_titles(&r.body).is_empty()
    });
    write_articles(&d.ws, 12);
    d.poll("/feed.json", "12 articles", |r| {
        feed_titles(&r.body).len() == 12
    });
    for i in 0..3 {
        std::fs::remove_file(d.ws.path(&format!("content/a{i:02}.md"))).unwrap();
    }
    d.poll("/feed.json", "9 articles", |r| {
        feed_titles(&r.body).len() == 9
    });
    // 2 more: 5 of the 12 published a moment ago, less than half.
    for i in 3..5 {
        std::fs::remove_file(d.ws.path(&format!("content/a{i:02}.md"))).unwrap();
    }
    d.poll("/feed.json", "7 articles", |r| {
        feed_titles(&r.body).len() == 7
    });
    // 4 more: 9 of 12 gone, but on a site this small (at most 10 articles
    // removed) only emptying it is held.
    for i in 5..9 {
        std::fs::remove_file(d.ws.path(&format!("content/a{i:02}.md"))).unwrap();
    }
    d.poll("/feed.json", "3 articles", |r| {
        feed_titles(&r.body).len() == 3
    });
    d.admin_poll("/healthz", "ok", |r| r.text() == "ok\n");
    let log = d.stop();
    assert!(!log.contains("held back"), "{log}");
}

/// Deleting most of the content in pieces (each batch less than half of
/// what is published at that moment) is held as soon as more than half of
/// what was published within the hour would be gone.
#[test]
fn a_wipe_in_pieces_is_held_too() {
    let ws = Workspace::new();
    write_articles_in(&ws, "content/p1", 0..10);
    write_articles_in(&ws, "content/p2", 10..16);
    write_articles_in(&ws, "content", 16..30);
    let mut d = TestDaemon::start(ws, "");
    d.poll("/feed.json", "30 articles", |r| {
        feed_titles(&r.body).len() == 30
    });
    std::fs::rename(d.ws.path("content/p1"), d.ws.path("p1")).unwrap();
    d.poll("/feed.json", "20 articles", |r| {
        feed_titles(&r.body).len() == 20
    });
    // 6 of 20 is less than half; 16 of 30 is not.
    std::fs::rename(d.ws.path("content/p2"), d.ws.path("p2")).unwrap();
    let line = d.wait_log("publish held back");
    assert!(line.contains("16 of 30"), "{line}");
    assert_eq!(titles(&d).len(), 20);
    d.stop();
}

/// A start on an emptied content directory does not publish the empty
/// site: `serve` exits 6 with one line saying how many articles the last
/// run published and how to go on, leaving the output directory as it
/// was; with the content back it starts as usual, a small drop at start
/// is published, and after `herald confirm-drop` the emptied site is
/// published.
#[test]
fn a_start_on_an_emptied_content_directory_is_refused_until_confirmed() {
    let ws = Workspace::new();
    write_articles(&ws, 12);
    let d = TestDaemon::start(ws, "");
    d.poll("/feed.json", "12 articles", |r| {
        feed_titles(&r.body).len() == 12
    });
    let (_, ws) = d.stop_keep();

    empty_content(&ws);
    let before = crate::util::tree(&ws.path("feeds"));
    let stamps = crate::util::stamps(&ws.path("feeds"));
    let run = ws.herald_cfg(&["serve"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    let err = &run.stderr;
    assert!(
        err.contains("all 12 articles the last run published would be removed"),
        "{err}"
    );
    assert!(err.contains("herald confirm-drop"), "{err}");
    assert_eq!(before, crate::util::tree(&ws.path("feeds")), "{err}");
    assert_eq!(stamps, crate::util::stamps(&ws.path("feeds")), "{err}");

    // The content back: a start as usual; two fewer: a small drop, published.
    restore_content(&ws);
    std::fs::remove_file(ws.path("content/a00.md")).unwrap();
    std::fs::remove_file(ws.path("content/a01.md")).unwrap();
    let d = TestDaemon::start(ws, "");
    assert_eq!(titles(&d).len(), 10, "{}", d.log());
    let (_, ws) = d.stop_keep();

    // Emptied again, and confirmed: the empty site is published.
    empty_content(&ws);
    let run = ws.herald_cfg(&["confirm-drop"]);
    run.expect_code(0);
    assert!(run.stdout.contains("10 articles"), "{}", run.stdout);
    let d = TestDaemon::start(ws, "");
    assert!(titles(&d).is_empty(), "{}", d.log());
    assert_eq!(d.get("/articles/article-5/").status, 410);
    d.stop();
}
