//! What readers and validators rely on beyond the text: ids valid for any
//! slug, an id authority that a first run on a loopback address cannot
//! fix for good, links that follow the address `serve` listens on, old
//! permalinks that redirect (or say the article is gone), per-entry
//! authors, and documents no validator trips on (no empty content, no
//! link without a target).

use std::process::Command;

use crate::live::{http, wait_until, TestDaemon};
use crate::util::{Workspace, HERALD};

/// `київ` percent-encoded, as it appears in URLs and new ids.
const KYIV: &str = "%D0%BA%D0%B8%D1%97%D0%B2";

fn md(title: &str, date: &str, extra: &str, body: &str) -> String {
    format!("---\ntitle: {title}\ndate: {date}\n{extra}---\n{body}\n")
}

fn site(config: &str, files: &[(&str, String)]) -> Workspace {
    let ws = Workspace::new();
    ws.write("herald.toml", config);
    for (p, text) in files {
        ws.write(&format!("content/{p}"), text);
    }
    ws
}

/// `(id, url)` of every item of the main JSON Feed.
fn json_ids(ws: &Workspace) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&ws.read("feeds/feed.json")).expect("json");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap_or("").to_string(),
                i["url"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// RFC 4151 §2.1: a tag URI is made of URI characters only (ASCII,
/// non-space, no `<>"{}|\^\``); anything else must be percent-encoded.
fn valid_tag(id: &str) -> bool {
    id.starts_with("tag:")
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\"{}|\\^`".contains(&b))
}

/// A new article with a non-ASCII slug gets a valid `tag:` id (the slug
/// percent-encoded) and percent-encoded permalinks in every format, while
/// ASCII slugs keep the ids they always had and an id already in the
/// state file (made before this rule) is kept as it is.
#[test]
fn non_ascii_slugs_give_valid_ids_and_encoded_links() {
    let ws = site(
        "base_url = \"https://news.example.org/\"\n",
        &[
            (
                "sub/київ.md",
                md("Київ", "2025-08-02T10:00:00Z", "", "Текст."),
            ),
            ("plain.md", md("Plain", "2025-08-01T10:00:00Z", "", "Text.")),
        ],
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let got = json_ids(&ws);
    assert_eq!(
        got,
        [
            (
                format!("tag:news.example.org,2025-08-02:{KYIV}"),
                format!("https://news.example.org/articles/{KYIV}/")
            ),
            (
                "tag:news.example.org,2025-08-01:plain".to_string(),
                "https://news.example.org/articles/plain/".to_string()
            ),
        ]
    );
    let atom = ws.read("feeds/atom.xml");
    for id in atom
        .split("<id>")
        .skip(1)
        .map(|s| &s[..s.find("</id>").unwrap()])
    {
        assert!(valid_tag(id), "invalid tag URI {id:?} in\n{atom}");
    }
    let rss = ws.read("feeds/rss.xml");
    assert!(
        rss.contains(&format!(
            "<link>https://news.example.org/articles/{KYIV}/</link>"
        )),
        "{rss}"
    );
    assert!(!rss.contains("київ</"), "raw slug in a link or id:\n{rss}");

    // An id handed out before (raw UTF-8, as earlier versions made it)
    // stays: readers already have it.
    let old = Workspace::new();
    old.write("herald.toml", "base_url = \"https://news.example.org/\"\n");
    old.write(
        "content/sub/київ.md",
        md("Київ", "2025-08-02T10:00:00Z", "", "Текст."),
    );
    old.write(
        "state/state.json",
        r#"{"version":1,"generation":1,"authority":"news.example.org","since":"2025-08-02","articles":{"tag:news.example.org,2025-08-02:київ":{"slug":"київ","path":"sub/київ.md","hash":"00000000000000000000000000000001","updated":"2025-08-02T10:00:00Z"}}}"#,
    );
    old.herald_cfg(&["build"]).expect_code(0);
    assert_eq!(
        json_ids(&old)[0].0,
        "tag:news.example.org,2025-08-02:київ",
        "an id readers have is never changed"
    );
}

/// Requests for a page with a non-ASCII slug succeed with upper- and
/// lower-case percent-escapes and with the raw UTF-8 path; without the
/// trailing slash they redirect to the canonical (encoded) permalink.
#[test]
fn non_ascii_permalinks_answer_every_spelling() {
    let ws = Workspace::new();
    ws.write(
        "content/sub/київ.md",
        md("Київ", "2025-08-02T10:00:00Z", "", "Текст."),
    );
    let d = TestDaemon::start(ws, "");
    let lower = KYIV.to_ascii_lowercase();
    for path in [
        format!("/articles/{KYIV}/"),
        format!("/articles/{lower}/"),
        "/articles/київ/".to_string(),
        format!("/articles/{lower}/index.html"),
    ] {
        let r = d.get(&path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.text().contains("<h1>Київ</h1>"), "{path}: {}", r.text());
    }
    for path in ["/articles/київ".to_string(), format!("/articles/{lower}")] {
        let r = d.get(&path);
        assert_eq!(r.status, 301, "{path}");
        assert_eq!(r.header("location"), format!("/articles/{KYIV}/"), "{path}");
    }
    d.stop();
}

/// An authority taken from a loopback `base_url` (the shipped default)
/// is provisional: the first build under a public `base_url` replaces
/// it (logged once) in every id, including those already handed out on
/// the loopback address; a later move to yet another host changes
/// nothing. A private-network address is provisional too; an
/// `id_authority` set on purpose is kept whatever it is.
#[test]
fn loopback_authority_is_replaced_by_the_first_public_host() {
    let files = [
        ("a.md", md("A", "2025-05-01T10:00:00Z", "", "a")),
        ("b.md", md("B", "2025-05-02T10:00:00Z", "", "b")),
    ];
    let ws = site("", &files);
    ws.herald_cfg(&["build"]).expect_code(0);
    let ids = |ws: &Workspace| json_ids(ws).into_iter().map(|x| x.0).collect::<Vec<_>>();
    assert_eq!(
        ids(&ws),
        ["tag:127.0.0.1,2025-05-02:b", "tag:127.0.0.1,2025-05-01:a"]
    );

    ws.write("herald.toml", "base_url = \"https://news.example.org/\"\n");
    let run = ws.herald_cfg(&["build"]);
    run.expect_code(0);
    let public = [
        "tag:news.example.org,2025-05-02:b",
        "tag:news.example.org,2025-05-01:a",
    ];
    assert_eq!(ids(&ws), public);
    let atom = ws.read("feeds/atom.xml");
    assert!(!atom.contains("127.0.0.1"), "{atom}");
    let said: Vec<String> = run
        .stderr
        .lines()
        .filter(|l| l.contains("127.0.0.1") && l.contains("news.example.org"))
        .map(String::from)
        .collect();
    assert_eq!(said.len(), 1, "one line says so:\n{}", run.stderr);
    let state = ws.read("state/state.json");
    assert!(
        state.contains("\"authority\": \"news.example.org\""),
        "{state}"
    );
    assert!(!state.contains("127.0.0.1"), "{state}");

    ws.write("herald.toml", "base_url = \"https://other.example/\"\n");
    let run = ws.herald_cfg(&["build"]);
    run.expect_code(0);
    assert_eq!(ids(&ws), public, "a real authority is kept for good");
    assert!(!run.stderr.contains("authority"), "{}", run.stderr);

    let lan = site("base_url = \"http://192.168.1.20:8080/\"\n", &files);
    lan.herald_cfg(&["build"]).expect_code(0);
    assert_eq!(ids(&lan)[0], "tag:192.168.1.20,2025-05-02:b");
    lan.write("herald.toml", "base_url = \"https://news.example.org/\"\n");
    lan.herald_cfg(&["build"]).expect_code(0);
    assert_eq!(ids(&lan), public);

    let chosen = site("id_authority = \"127.0.0.1\"\n", &files);
    chosen.herald_cfg(&["build"]).expect_code(0);
    chosen.write(
        "herald.toml",
        "id_authority = \"127.0.0.1\"\nbase_url = \"https://news.example.org/\"\n",
    );
    chosen.herald_cfg(&["build"]).expect_code(0);
    assert_eq!(ids(&chosen)[0], "tag:127.0.0.1,2025-05-02:b");
}

/// In `serve`, a reload that moves `base_url` from a loopback address to
/// a public host replaces the provisional authority in the ids served.
#[test]
fn provisional_authority_gives_way_on_reload() {
    let ws = Workspace::new();
    ws.write("content/a.md", md("A", "2025-05-01T10:00:00Z", "", "a"));
    let d = TestDaemon::start(ws, "base_url = \"http://127.0.0.1:8080/\"\n");
    d.poll("/feed.json", "loopback ids", |r| {
        r.text().contains("\"id\": \"tag:127.0.0.1,2025-05-01:a\"")
    });
    let config = d.ws.read("herald.toml").replace(
        "base_url = \"http://127.0.0.1:8080/\"",
        "base_url = \"https://news.example.org/\"",
    );
    d.ws.write("herald.toml", config);
    d.signal(libc::SIGHUP);
    d.poll("/feed.json", "public ids", |r| {
        r.text()
            .contains("\"id\": \"tag:news.example.org,2025-05-01:a\"")
    });
    let atom = d.get("/atom.xml").text();
    assert!(!atom.contains("127.0.0.1"), "{atom}");
    d.stop();
}

/// Without `base_url` in any config, `serve --listen` links to the
/// address it listens on: the port that port 0 picked, and the address of
/// a socket systemd passed in.
#[test]
fn base_url_follows_the_listen_address() {
    let ws = Workspace::new();
    ws.write("content/a.md", md("A", "2025-05-01T10:00:00Z", "", "a"));
    let mut cmd = Command::new(HERALD);
    // No config: the admin listener is off, or it would take the
    // default port, which a Herald running on this machine may hold.
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"]);
    let d = TestDaemon::start_cmd(ws, "", cmd);
    let rss = d.get("/rss.xml").text();
    let home = format!("http://{}/", d.addr);
    assert!(rss.contains(&format!("<link>{home}</link>")), "{rss}");
    assert!(
        rss.contains(&format!("<link>{home}articles/a/</link>")),
        "{rss}"
    );
    assert!(!rss.contains(":8080"), "{rss}");
    d.stop();

    let inherited = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = inherited.local_addr().unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&inherited);
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" serve --admin-listen off",
        HERALD,
    ]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let ws = Workspace::new();
    ws.write("content/a.md", md("A", "2025-05-01T10:00:00Z", "", "a"));
    let d = TestDaemon::start_cmd(ws, "", cmd);
    assert_eq!(d.addr, addr);
    let json = http(addr, "GET", "/feed.json", &[]).text();
    assert!(
        json.contains(&format!("\"url\": \"http://{addr}/articles/a/\"")),
        "{json}"
    );
    d.stop();
}

/// A renamed article's old permalinks answer 301 to the current one (no
/// chains, with or without the trailing slash or `index.html`), and
/// `feeds/` holds a redirect page at each old path; a deleted article's
/// permalink answers 410 and its files go. The state remembers this
/// across restarts, and at most `max_former_slugs` old slugs per article.
#[test]
fn renamed_articles_redirect_and_deleted_ones_are_gone() {
    let ws = Workspace::new();
    let text = md("Story", "2025-05-01T10:00:00Z", "", "The story.");
    ws.write("content/first.md", &text);
    ws.write(
        "content/other.md",
        md("Other", "2025-05-02T10:00:00Z", "", "o"),
    );
    let d = TestDaemon::start(ws, "max_former_slugs = 2\n");
    d.poll("/articles/first/", "first page", |r| r.status == 200);
    std::fs::rename(
        d.ws.path("content/first.md"),
        d.ws.path("content/second.md"),
    )
    .unwrap();
    d.poll("/articles/second/", "renamed page", |r| r.status == 200);
    let to = |slug: &str| format!("https://news.example.org/articles/{slug}/");
    for path in [
        "/articles/first/",
        "/articles/first",
        "/articles/first/index.html",
    ] {
        let r = d.get(path);
        assert_eq!(
            (r.status, r.header("location")),
            (301, to("second").as_str()),
            "{path}"
        );
    }
    let page = wait_file(&d.ws, "feeds/articles/first/index.html", |p| {
        p.contains("canonical")
    });
    assert!(
        page.contains(&format!(
            "<link rel=\"canonical\" href=\"{}\">",
            to("second")
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "<meta http-equiv=\"refresh\" content=\"0; url={}\">",
            to("second")
        )),
        "{page}"
    );
    assert!(d.ws.exists("feeds/articles/first/index.html.gz"));

    std::fs::rename(
        d.ws.path("content/second.md"),
        d.ws.path("content/third.md"),
    )
    .unwrap();
    d.poll("/articles/third/", "renamed again", |r| r.status == 200);
    d.poll("/articles/second/", "second redirects", |r| r.status == 301);
    for slug in ["first", "second"] {
        let r = d.get(&format!("/articles/{slug}/"));
        assert_eq!(
            (r.status, r.header("location")),
            (301, to("third").as_str()),
            "{slug}"
        );
        wait_file(&d.ws, &format!("feeds/articles/{slug}/index.html"), |p| {
            p.contains(&to("third"))
        });
    }

    std::fs::remove_file(d.ws.path("content/other.md")).unwrap();
    d.poll("/articles/other/", "gone", |r| r.status == 410);
    wait_until("the page of a deleted article removed", || {
        !d.ws.exists("feeds/articles/other/index.html")
    });
    assert_eq!(d.get("/articles/never-was/").status, 404);

    let (_, ws) = d.stop_keep();
    let d = TestDaemon::start(ws, "max_former_slugs = 2\n");
    assert_eq!(d.get("/articles/first/").status, 301, "remembered");
    assert_eq!(d.get("/articles/other/").status, 410, "remembered");
    std::fs::rename(
        d.ws.path("content/third.md"),
        d.ws.path("content/fourth.md"),
    )
    .unwrap();
    d.poll("/articles/third/", "third redirects", |r| r.status == 301);
    assert_eq!(d.get("/articles/second/").status, 301);
    assert_eq!(
        d.get("/articles/first/").status,
        404,
        "the oldest of three former slugs is forgotten"
    );
    wait_until("the forgotten redirect page removed", || {
        !d.ws.exists("feeds/articles/first/index.html")
    });
    d.stop();
}

/// A category or tag whose last article goes answers 410, like the
/// permalink of a deleted article, at its page and its three feeds (with
/// or without the trailing slash, in any spelling of the path), and its
/// files go; a label that never existed stays 404. The state remembers
/// the labels across restarts, and a label used again serves 200 again.
#[test]
fn labels_whose_last_article_went_are_gone() {
    let ws = Workspace::new();
    ws.write(
        "content/kept.md",
        md(
            "Kept",
            "2025-05-01T10:00:00Z",
            "categories: [World]\ntags: [kept]\n",
            "k",
        ),
    );
    ws.write(
        "content/solo.md",
        md(
            "Solo",
            "2025-05-02T10:00:00Z",
            "categories: [Київ]\ntags: [\"Élections 2025\"]\n",
            "s",
        ),
    );
    let d = TestDaemon::start(ws, "");
    let cat = format!("/categories/{KYIV}/");
    let tag = "/tags/%C3%A9lections-2025/";
    let routes = |dir: &str| {
        ["", "rss.xml", "atom.xml", "feed.json"]
            .into_iter()
            .map(|f| format!("{dir}{f}"))
            .collect::<Vec<_>>()
    };
    for r in routes(&cat).iter().chain(&routes(tag)) {
        assert_eq!(d.get(r).status, 200, "{r} before the delete");
    }
    std::fs::remove_file(d.ws.path("content/solo.md")).unwrap();
    d.poll(&cat, "the category gone", |r| r.status == 410);
    let gone = |d: &TestDaemon, when: &str| {
        for r in routes(&cat).iter().chain(&routes(tag)) {
            let resp = d.get(r);
            assert_eq!(resp.status, 410, "{r} {when}: {}", resp.text());
            assert_eq!(resp.header("content-type"), "text/html; charset=utf-8");
            assert!(resp.text().contains("Gone"), "{r}: {}", resp.text());
        }
        for r in [
            cat.trim_end_matches('/'),
            "/categories/київ/atom.xml",
            "/tags/%c3%a9lections-2025/feed.json",
        ] {
            assert_eq!(d.get(r).status, 410, "{r} {when}");
        }
        for r in ["/tags/never/", "/tags/never/rss.xml", "/categories/nope/"] {
            assert_eq!(d.get(r).status, 404, "{r} {when}: never was");
        }
        for r in routes("/categories/world/")
            .iter()
            .chain(&routes("/tags/kept/"))
        {
            assert_eq!(d.get(r).status, 200, "{r} {when}: still used");
        }
    };
    gone(&d, "after the delete");
    wait_until("the gone labels' files removed", || {
        !d.ws.exists(&format!("feeds/categories/{KYIV}/rss.xml"))
            && !d.ws.exists("feeds/tags/%C3%A9lections-2025/index.html")
    });

    let (_, ws) = d.stop_keep();
    let d = TestDaemon::start(ws, "");
    gone(&d, "after a restart");

    // Used again (another spelling of the same tag): published again.
    d.ws.write(
        "content/again.md",
        md(
            "Again",
            "2025-05-03T10:00:00Z",
            "tags: [\"élections 2025\"]\n",
            "a",
        ),
    );
    d.poll(tag, "the tag back", |r| r.status == 200);
    for r in routes(tag) {
        assert_eq!(d.get(&r).status, 200, "{r} back");
    }
    assert_eq!(d.get(&cat).status, 410, "the category is still gone");
    let (_, ws) = d.stop_keep();
    let d = TestDaemon::start(ws, "");
    assert_eq!(d.get(&format!("{tag}atom.xml")).status, 200);
    assert_eq!(d.get(&format!("{cat}rss.xml")).status, 410);
    d.stop();
}

/// Waits (with a deadline) until the file `rel` exists and its text
/// passes `ok`; returns the text.
fn wait_file(ws: &Workspace, rel: &str, ok: impl Fn(&str) -> bool) -> String {
    let text = || std::fs::read_to_string(ws.path(rel)).unwrap_or_default();
    wait_until(rel, || ok(&text()));
    text()
}

/// `herald build` writes the redirect page at a renamed article's old
/// path and removes a deleted article's page, as `serve` does.
#[test]
fn build_writes_redirect_pages() {
    let ws = site(
        "base_url = \"https://news.example.org/\"\n",
        &[
            ("old.md", md("Story", "2025-05-01T10:00:00Z", "", "s")),
            ("del.md", md("Deleted", "2025-05-02T10:00:00Z", "", "d")),
        ],
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    std::fs::rename(ws.path("content/old.md"), ws.path("content/new.md")).unwrap();
    std::fs::remove_file(ws.path("content/del.md")).unwrap();
    ws.herald_cfg(&["build"]).expect_code(0);
    let page = ws.read("feeds/articles/old/index.html");
    assert!(
        page.contains("<link rel=\"canonical\" href=\"https://news.example.org/articles/new/\">"),
        "{page}"
    );
    assert!(ws.exists("feeds/articles/old/index.html.gz"));
    assert!(ws.exists("feeds/articles/new/index.html"));
    assert!(!ws.exists("feeds/articles/del"));
}

/// Every entry names its authors in every format: front matter `author`
/// or `authors`, else the site's `author`.
#[test]
fn every_entry_names_its_authors() {
    let ws = site(
        "base_url = \"https://news.example.org/\"\nauthor = \"The Desk\"\n",
        &[
            (
                "one.md",
                md("One", "2025-05-03T10:00:00Z", "author: Ann\n", "1"),
            ),
            (
                "two.md",
                md("Two", "2025-05-02T10:00:00Z", "authors: [Ann, Bob]\n", "2"),
            ),
            ("none.md", md("None", "2025-05-01T10:00:00Z", "", "0")),
        ],
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let want = [vec!["Ann"], vec!["Ann", "Bob"], vec!["The Desk"]];
    for file in ["rss.xml", "atom.xml", "feed.json"] {
        let f = feed_rs::parser::parse(ws.read_bytes(&format!("feeds/{file}")).as_slice())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let got: Vec<Vec<String>> = f
            .entries
            .iter()
            .map(|e| e.authors.iter().map(|p| p.name.clone()).collect())
            .collect();
        assert_eq!(got, want, "{file}");
    }
    let atom = ws.read("feeds/atom.xml");
    assert_eq!(
        atom.matches("<author>").count(),
        1 + 4,
        "feed + entries:\n{atom}"
    );
}

/// A title-only article has no empty `<content>` (W3C: NotBlank), and a
/// link whose target the sanitiser removed keeps its text but no
/// attributes that need a target (Nu checker: `rel` without `href`).
#[test]
fn no_empty_content_and_no_link_without_target() {
    let ws = site(
        "base_url = \"https://news.example.org/\"\n",
        &[
            ("empty.md", md("Only a title", "2025-05-02T10:00:00Z", "", "")),
            (
                "js.md",
                md(
                    "Script links",
                    "2025-05-01T10:00:00Z",
                    "",
                    "[click](javascript:alert(1)) and <a href=\"javascript:alert(2)\" rel=\"noopener\">this</a> and [fine](https://example.org/)",
                ),
            ),
        ],
    );
    ws.herald_cfg(&["build"]).expect_code(0);
    let atom = ws.read("feeds/atom.xml");
    assert!(
        !atom.contains("<content type=\"html\"></content>"),
        "{atom}"
    );
    assert!(!atom.contains("<content type=\"html\"/>"), "{atom}");
    assert_eq!(atom.matches("<content").count(), 1, "{atom}");
    let rss = ws.read("feeds/rss.xml");
    assert_eq!(rss.matches("<content:encoded>").count(), 1, "{rss}");
    let page = ws.read("feeds/articles/js/index.html");
    assert!(
        page.contains("<a>click</a> and <a>this</a> and <a href=\"https://example.org/\" rel=\"noopener noreferrer\">fine</a>"),
        "{page}"
    );
}
