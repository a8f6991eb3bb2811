//! Publishing to object storage end to end: the real binary against a
//! real S3 API server the tests start — `moto_server` from the Python
//! package `moto[server]` — on a loopback port. Objects are read back
//! over plain HTTP (moto checks no signatures), and the server's own
//! request log counts the PUTs Herald sent.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::live::{gunzip, http, wait_until, Resp, TestDaemon, DEADLINE};
use crate::util::{have_tool, run_command, tree, Run, Workspace, HERALD};

const BUCKET: &str = "feeds-bucket";

/// Any value will do: moto takes every key, and Herald must find them in
/// its environment.
const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "herald-test"),
    ("AWS_SECRET_ACCESS_KEY", "herald-test-secret"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
];

/// A running `moto_server`, its request log in a file.
struct Moto {
    addr: SocketAddr,
    env: Vec<(&'static str, &'static str)>,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts `moto_server` on a free loopback port with an empty bucket
    /// [`BUCKET`]; `None` (with a printed reason) when it is not installed.
    fn start() -> Option<Moto> {
        Moto::start_env(&[])
    }

    /// As [`Moto::start`], with `moto_server` given `env`.
    fn start_env(env: &[(&'static str, &'static str)]) -> Option<Moto> {
        if !have_tool("moto_server", &["--help"], "pip install 'moto[server]'") {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut m = Moto {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            env: env.to_vec(),
            child: None,
            log: dir.path().join("moto.log"),
            _dir: dir,
        };
        m.run();
        Some(m)
    }

    /// Starts the server (again, on the same port: it comes back empty)
    /// and creates the bucket.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("moto log");
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .envs(self.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn moto_server");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(self.addr).is_err() {
            assert!(start.elapsed() < DEADLINE, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = self.request("PUT", &format!("/{BUCKET}"));
        assert_eq!(r.status, 200, "create bucket: {}", r.text());
    }

    /// Kills the server (its objects die with it).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn request(&self, method: &str, target: &str) -> Resp {
        s3_request(self.addr, method, target)
    }

    /// Every object under `prefix`: key → (ETag, size).
    fn list(&self, prefix: &str) -> BTreeMap<String, (String, u64)> {
        let r = self.request(
            "GET",
            &format!("/{BUCKET}?list-type=2&max-keys=1000&prefix={prefix}"),
        );
        assert_eq!(r.status, 200, "list: {}", r.text());
        let text = r.text();
        assert!(text.contains("<IsTruncated>false"), "one page: {text}");
        let field = |c: &str, name: &str| -> String {
            c.split(&format!("<{name}>"))
                .nth(1)
                .and_then(|s| s.split(&format!("</{name}>")).next())
                .unwrap_or_default()
                .replace("&quot;", "\"")
        };
        text.split("<Contents>")
            .skip(1)
            .map(|c| {
                let size = field(c, "Size").parse().expect("size");
                (field(c, "Key"), (field(c, "ETag"), size))
            })
            .collect()
    }

    /// GET (or HEAD) one object.
    fn object(&self, method: &str, key: &str) -> Resp {
        self.request(method, &format!("/{BUCKET}/{key}"))
    }

    /// Deletes one object, as another client of the bucket would (a 204
    /// without a length, which [`http`] does not take).
    fn delete(&self, key: &str) {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(self.addr).expect("connect to moto");
        write!(
            s,
            "DELETE /{BUCKET}/{key} HTTP/1.1\r\nHost: {}\r\nAuthorization: {SIGNATURE}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read");
        assert!(raw.starts_with("HTTP/1.1 204"), "DELETE {key}: {raw}");
    }

    /// The request lines of the log (`PUT /bucket/key`), from line `from`.
    fn requests(&self, from: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split('"').nth(1))
            .filter(|r| r.ends_with("HTTP/1.1"))
            .map(|r| r.trim_end_matches(" HTTP/1.1").to_string())
            .skip(from)
            .collect()
    }

    /// Keys PUT since request `from`.
    fn puts(&self, from: usize) -> Vec<String> {
        let mut v: Vec<String> = self
            .requests(from)
            .iter()
            .filter_map(|r| r.strip_prefix(&format!("PUT /{BUCKET}/")))
            .map(String::from)
            .collect();
        v.sort();
        v
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A public `base_url` and the `[publish]` table for `moto`, with short
/// retries.
fn target(moto: &Moto, extra: &str) -> String {
    format!(
        "base_url = \"https://news.example.org/\"\n[publish]\nto = \"s3://{BUCKET}/site\"\nendpoint = \"{}\"\nretry_max_secs = 1\n{extra}",
        moto.endpoint()
    )
}

/// A dummy signature: moto checks none, but answers some requests 403
/// without one.
const SIGNATURE: &str = "AWS4-HMAC-SHA256 Credential=herald-test/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

/// One request to the S3 server at `addr`, signed with a dummy signature:
/// moto checks none, but answers some requests 403 without one.
fn s3_request(addr: SocketAddr, method: &str, target: &str) -> Resp {
    http(addr, method, target, &[("Authorization", SIGNATURE)])
}

/// `herald --config herald.toml <args>` with the AWS environment.
fn herald(ws: &Workspace, args: &[&str]) -> Run {
    let mut cmd = Command::new(HERALD);
    cmd.args(["--config", "herald.toml"])
        .args(args)
        .current_dir(ws.root())
        .env_remove("RUST_LOG")
        .env_remove("HERALD_CONFIG")
        .env("NO_COLOR", "1")
        .envs(AWS_ENV);
    run_command(cmd)
}

/// A tiny PNG (binary: stored as it is, never gzip-encoded).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

fn article(title: &str, day: u32, category: &str, body: &str) -> String {
    format!("---\ntitle: \"{title}\"\ndate: \"2025-05-{day:02} 10:00:00+00:00\"\ncategories: [{category}]\n---\n{body}\n")
}

/// A site of three articles in two categories, one a page bundle with a
/// picture.
fn site(ws: &Workspace) {
    ws.write(
        "content/story/index.md",
        article("The story", 3, "World", "![Chart](chart.png) and more."),
    );
    ws.write("content/story/chart.png", PNG);
    ws.write("content/alpha.md", article("Alpha", 1, "World", "First."));
    ws.write("content/beta.md", article("Beta", 2, "Sport", "Second."));
}

/// The documents of `feeds/` (not the `.gz` twins: an object is stored
/// gzip-encoded instead), by path.
fn documents(ws: &Workspace) -> BTreeMap<String, Vec<u8>> {
    tree(&ws.path("feeds"))
        .into_iter()
        .filter(|(k, _)| !k.ends_with(".gz"))
        .collect()
}

/// `herald publish` puts every document of `feeds/` in the bucket under
/// the prefix, each with its media type and charset, a Cache-Control by
/// kind (feeds and listings short, pages and their files longer) and,
/// with gzip on, `Content-Encoding: gzip` over bytes that decompress to
/// the local file exactly (a picture is stored as it is). A second run
/// sends nothing.
#[test]
fn publish_uploads_every_file_with_its_headers() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    site(&ws);
    ws.write("herald.toml", target(&moto, ""));
    herald(&ws, &["build"]).expect_code(0);
    let docs = documents(&ws);
    let run = herald(&ws, &["publish"]);
    run.expect_code(0);
    let objects = moto.list("site/");
    let keys: Vec<String> = objects.keys().cloned().collect();
    let want: Vec<String> = docs.keys().map(|k| format!("site/{k}")).collect();
    assert_eq!(keys, want, "every document of feeds/, nothing else");
    for (file, local) in &docs {
        let r = moto.object("GET", &format!("site/{file}"));
        assert_eq!(r.status, 200, "{file}");
        let body = if r.header("content-encoding") == "gzip" {
            gunzip(&r.body)
        } else {
            r.body.clone()
        };
        assert!(body == *local, "{file}: the object holds the local bytes");
        assert!(
            run.stdout.contains(&format!("upload site/{file}\n")),
            "{file} printed:\n{}",
            run.stdout
        );
    }
    // HEAD each kind.
    let cases = [
        ("rss.xml", "application/rss+xml; charset=utf-8", 300, true),
        ("atom.xml", "application/atom+xml; charset=utf-8", 300, true),
        (
            "feed.json",
            "application/feed+json; charset=utf-8",
            300,
            true,
        ),
        (
            "categories/world/rss.xml",
            "application/rss+xml; charset=utf-8",
            300,
            true,
        ),
        ("index.html", "text/html; charset=utf-8", 300, true),
        ("feeds.opml", "text/x-opml; charset=utf-8", 300, true),
        (
            "articles/story/index.html",
            "text/html; charset=utf-8",
            3600,
            true,
        ),
        ("articles/story/chart.png", "image/png", 3600, false),
    ];
    for (file, ctype, max_age, gz) in cases {
        let h = moto.object("HEAD", &format!("site/{file}"));
        assert_eq!(h.status, 200, "{file}");
        assert_eq!(h.header("content-type"), ctype, "{file}");
        assert_eq!(
            h.header("cache-control"),
            format!("public, max-age={max_age}"),
            "{file}"
        );
        assert_eq!(
            h.header("content-encoding"),
            if gz { "gzip" } else { "" },
            "{file}"
        );
    }
    // The gzip-encoded object is the `.gz` twin, byte for byte.
    assert_eq!(
        moto.object("GET", "site/rss.xml").body,
        ws.read_bytes("feeds/rss.xml.gz")
    );
    let mark = moto.requests(0).len();
    let again = herald(&ws, &["publish"]);
    again.expect_code(0);
    assert_eq!(moto.puts(mark), Vec::<String>::new(), "nothing changed");
    assert!(again.stdout.contains("0 uploaded"), "{}", again.stdout);
}

/// `herald publish --dry-run` prints what it would upload and delete and
/// changes nothing: no object written or deleted, no state file, no
/// output directory.
#[test]
fn dry_run_changes_nothing() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    site(&ws);
    std::fs::remove_dir(ws.path("state")).unwrap();
    std::fs::remove_dir(ws.path("feeds")).unwrap();
    ws.write("herald.toml", target(&moto, ""));
    moto.request("PUT", &format!("/{BUCKET}/site/stale.html"));
    let mark = moto.requests(0).len();
    let run = herald(&ws, &["publish", "--dry-run"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("would upload site/rss.xml\n")
            && run
                .stdout
                .contains("would upload site/articles/story/chart.png\n")
            && run.stdout.contains("would delete site/stale.html\n"),
        "{}",
        run.stdout
    );
    let sent = moto.requests(mark);
    assert!(
        sent.iter().all(|r| r.starts_with("GET ")),
        "only listings: {sent:?}"
    );
    assert_eq!(
        moto.list("site/").keys().collect::<Vec<_>>(),
        ["site/stale.html"]
    );
    assert!(
        !ws.exists("state") && !ws.exists("feeds"),
        "nothing written"
    );
}

/// A pass that would delete more than `max_deletes` objects deletes none,
/// says why naming the key and the target, and fails; its uploads are
/// made. After `herald confirm-deletes` the next publish makes them (and
/// the one after that sends nothing).
#[test]
fn max_deletes_guards_the_bucket() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    site(&ws);
    for i in 0..3 {
        moto.request("PUT", &format!("/{BUCKET}/site/old/{i}.html"));
    }
    moto.request("PUT", &format!("/{BUCKET}/elsewhere.html"));
    ws.write("herald.toml", target(&moto, "max_deletes = 2\n"));
    let run = herald(&ws, &["publish"]);
    run.expect_code(5);
    assert!(
        run.stderr
            .contains("refusing to delete 3 objects from s3://feeds-bucket/site")
            && run.stderr.contains("max_deletes = 2"),
        "{}",
        run.stderr
    );
    let objects = moto.list("");
    for i in 0..3 {
        assert!(objects.contains_key(&format!("site/old/{i}.html")));
    }
    assert!(objects.contains_key("site/rss.xml"), "uploads were made");
    // The operator's word: the next publish makes them.
    let confirm = herald(&ws, &["confirm-deletes"]);
    confirm.expect_code(0);
    assert!(
        confirm
            .stdout
            .contains("next pass to s3://feeds-bucket/site"),
        "{}",
        confirm.stdout
    );
    assert_eq!(moto.list("").len(), objects.len(), "nothing deleted yet");
    let run = herald(&ws, &["publish"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("delete site/old/0.html\n"),
        "{}",
        run.stdout
    );
    let objects = moto.list("");
    assert!(!objects.keys().any(|k| k.starts_with("site/old/")));
    assert!(
        objects.contains_key("elsewhere.html"),
        "outside the prefix: not Herald's"
    );
    let again = herald(&ws, &["publish"]);
    again.expect_code(0);
    assert!(again.stdout.contains("0 uploaded"), "{}", again.stdout);
    assert!(again.stdout.contains(", 0 deleted"), "{}", again.stdout);
}

/// `herald confirm-deletes` confirms the deletions a pass held back, and
/// only those: given while nothing is held it confirms nothing (a later
/// pass over `max_deletes` is still refused), and once given, a pass
/// that would also delete something else (an article removed since) is
/// still refused and the confirmation waits; the pass whose deletions
/// are among those confirmed makes them, and spends it.
#[test]
fn a_confirmation_covers_only_the_deletions_it_was_given_for() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    site(&ws);
    ws.write(
        "herald.toml",
        target(
            &moto,
            "max_deletes = 2
",
        ),
    );
    herald(&ws, &["publish"]).expect_code(0);
    // Nothing is held: there is nothing to confirm.
    let early = herald(&ws, &["confirm-deletes"]);
    early.expect_code(0);
    for i in 0..3 {
        moto.request("PUT", &format!("/{BUCKET}/site/old/{i}.html"));
    }
    let old = |moto: &Moto| count(moto, "site/old/");
    herald(&ws, &["publish"]).expect_code(5);
    assert_eq!(old(&moto), 3, "the early word confirmed nothing");
    assert!(
        early.stdout.contains("nothing to confirm"),
        "{}",
        early.stdout
    );
    // Those three confirmed; then an article goes too.
    let confirm = herald(&ws, &["confirm-deletes"]);
    confirm.expect_code(0);
    assert!(confirm.stdout.contains("3 deletions"), "{}", confirm.stdout);
    let alpha = ws.read("content/alpha.md");
    std::fs::remove_file(ws.path("content/alpha.md")).unwrap();
    let run = herald(&ws, &["publish"]);
    run.expect_code(5);
    assert!(
        run.stdout
            .contains("refused: delete site/articles/alpha/index.html\n"),
        "{}",
        run.stdout
    );
    assert_eq!(old(&moto), 3, "a pass deleting more is still held");
    assert!(moto
        .list("site/")
        .contains_key("site/articles/alpha/index.html"));
    // The article is back: what is left is what was confirmed.
    ws.write("content/alpha.md", &alpha);
    let run = herald(&ws, &["publish"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("delete site/old/0.html\n"),
        "{}",
        run.stdout
    );
    assert_eq!(old(&moto), 0, "the confirmed deletions made");
    // Spent: three more are held again.
    for i in 0..3 {
        moto.request("PUT", &format!("/{BUCKET}/site/old/{i}.html"));
    }
    herald(&ws, &["publish"]).expect_code(5);
    assert_eq!(old(&moto), 3, "the confirmation was used once");
}

/// Waits until the bucket's `key` holds bytes that (decompressed) contain
/// `needle`.
fn wait_object(moto: &Moto, key: &str, needle: &str) {
    wait_until(&format!("{key} holding {needle:?}"), || {
        let r = moto.object("GET", key);
        r.status == 200 && String::from_utf8_lossy(&gunzip(&r.body)).contains(needle)
    });
}

fn serve(ws: Workspace, moto: &Moto, extra: &str) -> TestDaemon {
    TestDaemon::start_with(ws, &format!("{}{extra}", target(moto, "")), |c| {
        c.envs(AWS_ENV);
    })
}

/// `serve` mirrors the site on start, then after one edit PUTs exactly
/// the objects whose bytes changed (counted in the server's request log
/// and checked against the ETags listed before and after) — feeds and
/// listings after the page — and after a deletion removes the article's
/// objects.
#[test]
fn serve_sends_only_what_changed() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    site(&ws);
    let mut d = serve(ws, &moto, "");
    d.wait_log("bucket updated");
    let before = moto.list("site/");
    assert_eq!(
        before.len(),
        documents(&d.ws).len(),
        "the whole site: {before:?}"
    );
    let mark = moto.requests(0).len();
    d.ws.write(
        "content/beta.md",
        article("Beta", 2, "Sport", "Second, edited."),
    );
    wait_object(&moto, "site/feed.json", "Second, edited.");
    wait_until("the bucket caught up", || {
        d.admin_get("/metrics")
            .text()
            .contains("herald_bucket_behind_routes 0\n")
    });
    let after = moto.list("site/");
    let changed: Vec<String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    let puts = moto.puts(mark);
    assert_eq!(puts, changed, "exactly the changed objects were PUT");
    // Beta's page, the main feeds and index, Sport's feeds and page;
    // nothing of the other articles or of World.
    for key in [
        "site/articles/beta/index.html",
        "site/rss.xml",
        "site/index.html",
        "site/categories/sport/feed.json",
        "site/categories/sport/index.html",
    ] {
        assert!(puts.contains(&key.to_string()), "{key} in {puts:?}");
    }
    assert!(
        !puts
            .iter()
            .any(|k| k.contains("/alpha/") || k.contains("/story/") || k.contains("/world/")),
        "{puts:?}"
    );
    assert!(
        puts.len() < before.len(),
        "{} of {}",
        puts.len(),
        before.len()
    );
    // The page went up before any feed.
    let order: Vec<String> = moto
        .requests(mark)
        .into_iter()
        .filter(|r| r.starts_with("PUT "))
        .collect();
    let page = order
        .iter()
        .position(|r| r.ends_with("/articles/beta/index.html"));
    let feed = order.iter().position(|r| r.ends_with("/rss.xml"));
    assert!(page < feed, "{order:?}");

    std::fs::remove_file(d.ws.path("content/alpha.md")).unwrap();
    wait_until("alpha's page removed from the bucket", || {
        !moto
            .list("site/")
            .contains_key("site/articles/alpha/index.html")
    });
    wait_object(&moto, "site/rss.xml", "Beta");
    let rss =
        String::from_utf8_lossy(&gunzip(&moto.object("GET", "site/rss.xml").body)).into_owned();
    assert!(!rss.contains("Alpha"), "{rss}");
    let log = d.stop();
    assert!(!log.contains("ERROR"), "{log}");
}

/// Killed during a publish, the bucket server comes back empty: Herald
/// logs the failure once, keeps publishing and serving locally, tells
/// `/healthz` and `/metrics` the bucket is behind, retries, and on its
/// own (no restart) fills the bucket again with the current site; then
/// says once that it works again.
#[test]
fn serve_converges_after_the_bucket_server_dies() {
    let Some(mut moto) = Moto::start() else {
        return;
    };
    let ws = Workspace::new();
    site(&ws);
    let mut d = serve(ws, &moto, "");
    d.wait_log("bucket updated");
    d.ws.write("content/gamma.md", article("Gamma", 4, "World", "Third."));
    moto.kill();
    d.wait_titles(&["Gamma", "The story", "Beta", "Alpha"]);
    d.wait_log("bucket: cannot update");
    let health = d.poll("/healthz", "healthz names the bucket", |r| {
        r.text().contains("the bucket cannot be written")
    });
    assert_eq!(health.status, 200, "still publishing: {}", health.text());
    let metrics = d.admin_get("/metrics").text();
    assert!(
        metrics.contains("herald_write_failing{sink=\"bucket\"} 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("herald_bucket_behind_seconds 0\n"),
        "{metrics}"
    );
    // A second edit while it is down.
    d.ws.write("content/delta.md", article("Delta", 5, "Sport", "Fourth."));
    d.wait_titles(&["Delta", "Gamma", "The story", "Beta", "Alpha"]);
    moto.run();
    d.wait_log("works again");
    wait_object(&moto, "site/feed.json", "Delta");
    let docs = documents(&d.ws);
    wait_until("every document back in the bucket", || {
        moto.list("site/").len() == docs.len()
    });
    for (file, local) in &docs {
        let r = moto.object("GET", &format!("site/{file}"));
        let body = if r.header("content-encoding") == "gzip" {
            gunzip(&r.body)
        } else {
            r.body
        };
        assert!(body == *local, "{file} is current");
    }
    d.poll("/healthz", "healthy again", |r| r.text() == "ok\n");
    let log = d.stop();
    assert_eq!(log.matches("bucket: cannot update").count(), 1, "{log}");
    assert_eq!(log.matches("works again").count(), 1, "{log}");
}

/// With a bucket, WebSub publish pings wait for it: when the hub is
/// pinged about a feed, the bucket already holds the feed's new bytes.
#[test]
fn pings_wait_for_the_bucket() {
    let Some(moto) = Moto::start() else { return };
    let seen = Arc::new(Mutex::new(Vec::<(String, bool)>::new()));
    let (seen2, moto_addr) = (Arc::clone(&seen), moto.addr);
    let hub = crate::websub::Recorder::start(move |g| {
        // At the moment of the ping: what does the bucket hold?
        let topic = form_urlencoded::parse(&g.body)
            .find(|(k, _)| k == "hub.topic")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let key = topic.trim_start_matches("https://news.example.org/");
        let r = s3_request(moto_addr, "GET", &format!("/{BUCKET}/site/{key}"));
        let fresh = r.status == 200 && String::from_utf8_lossy(&gunzip(&r.body)).contains("Gamma");
        seen2.lock().unwrap().push((topic, fresh));
        Some((204, Vec::new()))
    });
    let ws = Workspace::new();
    site(&ws);
    let mut d = serve(
        ws,
        &moto,
        &format!(
            "[websub]\nhubs = [\"{}\"]\nretry_backoff_ms = 50\n",
            hub.url("/hub")
        ),
    );
    d.wait_log("bucket updated");
    d.ws.write("content/gamma.md", article("Gamma", 4, "World", "Third."));
    hub.wait("pings for the main and World feeds", |g| g.len() >= 6);
    wait_until("the pings answered", || seen.lock().unwrap().len() >= 6);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 6, "{seen:?}");
    assert!(seen.iter().all(|(_, fresh)| *fresh), "{seen:?}");
    d.stop();
}

/// With no credentials anywhere (no AWS variables, no shared credentials
/// file), `herald publish` fails with one message that says so and what
/// to set, rather than only the metadata service's error.
#[test]
fn missing_credentials_are_named() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    site(&ws);
    ws.write("herald.toml", target(&moto, "request_timeout_secs = 2\n"));
    let mut cmd = Command::new(HERALD);
    cmd.args(["--config", "herald.toml", "publish"])
        .current_dir(ws.root())
        .env("NO_COLOR", "1")
        .env("HOME", ws.root())
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("AWS_PROFILE");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let run = run_command(cmd);
    run.expect_code(5);
    assert!(
        run.stderr.contains("no AWS credentials were found")
            && run.stderr.contains("AWS_ACCESS_KEY_ID"),
        "{}",
        run.stderr
    );
    assert!(moto.list("").is_empty(), "nothing stored");
}

/// With `gzip = false` every object holds the document as it is, with no
/// `Content-Encoding`.
#[test]
fn gzip_off_stores_documents_as_they_are() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    site(&ws);
    ws.write("herald.toml", target(&moto, "gzip = false\n"));
    herald(&ws, &["build"]).expect_code(0);
    herald(&ws, &["publish"]).expect_code(0);
    for (file, local) in documents(&ws) {
        let r = moto.object("GET", &format!("site/{file}"));
        assert_eq!(r.status, 200, "{file}");
        assert_eq!(r.header("content-encoding"), "", "{file}");
        assert!(r.body == local, "{file}: the local bytes");
    }
}

/// Credentials the bucket refuses: `serve` logs it once, on one line,
/// with the S3 error code and what to check; `/healthz` says the bucket
/// cannot be written while local publishing goes on.
#[test]
fn refused_credentials_are_logged_once_and_clearly() {
    // Past the first request (the test's bucket), moto checks keys: it
    // knows none of Herald's.
    let Some(moto) = Moto::start_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]) else {
        return;
    };
    let ws = Workspace::new();
    site(&ws);
    let mut d = serve(ws, &moto, "");
    d.wait_log("bucket: cannot update");
    d.ws.write("content/gamma.md", article("Gamma", 4, "World", "Third."));
    d.wait_titles(&["Gamma", "The story", "Beta", "Alpha"]);
    let health = d.poll("/healthz", "healthz names the bucket", |r| {
        r.text().contains("the bucket cannot be written")
    });
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(
        health.text().contains("InvalidAccessKeyId"),
        "{}",
        health.text()
    );
    // Retried (1 s apart) and still refused: no more lines.
    wait_until("three attempts", || {
        moto.requests(0)
            .iter()
            .filter(|r| r.starts_with(&format!("GET /{BUCKET}?list-type=2")))
            .count()
            >= 3
    });
    assert!(d
        .admin_get("/metrics")
        .text()
        .contains("herald_write_failing{sink=\"bucket\"} 1\n"));
    let log = d.stop();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("bucket: cannot update"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("InvalidAccessKeyId")
            && lines[0].contains("check the AWS credentials")
            && !lines[0].contains("<?xml"),
        "{}",
        lines[0]
    );
}

/// `serve` keeps to `max_deletes` as `herald publish` does: its first
/// pass uploads the site, deletes none of the objects no route has when
/// they are too many, says so once, and `/healthz` keeps saying it.
#[test]
fn serve_keeps_to_max_deletes() {
    let Some(moto) = Moto::start() else { return };
    for i in 0..3 {
        moto.request("PUT", &format!("/{BUCKET}/site/old/{i}.html"));
    }
    let ws = Workspace::new();
    site(&ws);
    let mut d = serve(ws, &moto, "max_deletes = 2\n");
    d.wait_log("bucket updated");
    let health = d.get("/healthz");
    assert_eq!(health.status, 200);
    assert!(
        health
            .text()
            .contains("the bucket keeps 3 objects whose deletion max_deletes refused"),
        "{}",
        health.text()
    );
    let objects = moto.list("site/");
    assert!(objects.contains_key("site/rss.xml"));
    assert_eq!(
        objects
            .keys()
            .filter(|k| k.starts_with("site/old/"))
            .count(),
        3
    );
    d.ws.write("content/gamma.md", article("Gamma", 4, "World", "Third."));
    wait_object(&moto, "site/feed.json", "Gamma");
    assert!(d.get("/healthz").text().contains("max_deletes refused"));
    let log = d.stop();
    assert_eq!(
        log.matches("refusing to delete 3 objects").count(),
        1,
        "{log}"
    );
}

/// An emptied content directory deletes nothing from the bucket: the
/// publish is held (`max_drop`), and when the files come back only what
/// changed meanwhile is sent.
#[test]
fn an_emptied_content_directory_leaves_the_bucket_alone() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    site(&ws);
    let mut d = serve(ws, &moto, "");
    d.wait_log("bucket updated");
    let before = moto.list("site/");
    let mark = moto.requests(0).len();
    // `rm -rf content; mkdir content`, in one step as the watcher sees it.
    std::fs::rename(d.ws.path("content"), d.ws.path("wiped")).unwrap();
    std::fs::create_dir(d.ws.path("content")).unwrap();
    d.wait_log("publish held back");
    assert_eq!(d.get("/articles/alpha/").status, 200);
    // The backup comes back, with one edit.
    std::fs::remove_dir(d.ws.path("content")).unwrap();
    std::fs::rename(d.ws.path("wiped"), d.ws.path("content")).unwrap();
    d.ws.write(
        "content/alpha.md",
        article("Alpha", 1, "World", "First, restored."),
    );
    wait_object(&moto, "site/feed.json", "First, restored.");
    let requests = moto.requests(mark);
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("DELETE") || r.starts_with("POST")),
        "nothing deleted: {requests:?}"
    );
    let after = moto.list("site/");
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert!(!d.log().contains("articles=0"), "{}", d.log());
    d.stop();
}

/// Every URL `https://news.example.org/…` in `text`, as written.
fn site_urls(text: &str) -> Vec<String> {
    let base = "https://news.example.org/";
    text.split(base)
        .skip(1)
        .map(|rest| {
            let end = rest.find(['"', '<', '\'', ' ', '\n']).unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .collect()
}

/// Objects of a category, a tag and an article whose names are not ASCII
/// are stored under the names of their files (`site/tags/élections/…`),
/// so the bucket serves each URL the feeds and the OPML list link to
/// (`/tags/%C3%A9lections/rss.xml`, percent-encoded once) with the local
/// bytes; a second `herald publish` with nothing changed sends no PUT and
/// no DELETE.
#[test]
fn non_ascii_names_are_stored_as_their_files_are_named() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    ws.write(
        "content/été.md",
        "---\ntitle: \"Été\"\ndate: \"2025-05-01 10:00:00+00:00\"\ncategories: [Économie]\ntags: [élections]\n---\nUn été.\n",
    );
    ws.write("content/beta.md", article("Beta", 2, "Sport", "Second."));
    ws.write("herald.toml", target(&moto, ""));
    herald(&ws, &["build"]).expect_code(0);
    herald(&ws, &["publish"]).expect_code(0);
    let docs = documents(&ws);
    let mut urls: Vec<String> = ["rss.xml", "feeds.opml", "categories/économie/atom.xml"]
        .iter()
        .flat_map(|f| site_urls(&ws.read(&format!("feeds/{f}"))))
        .collect();
    urls.sort();
    urls.dedup();
    for want in [
        "articles/%C3%A9t%C3%A9/",
        "categories/%C3%A9conomie/atom.xml",
        "tags/%C3%A9lections/atom.xml",
    ] {
        assert!(urls.iter().any(|u| u == want), "{want} in {urls:?}");
    }
    for url in &urls {
        let object = if url.is_empty() || url.ends_with('/') {
            format!("{url}index.html")
        } else {
            url.clone()
        };
        let r = moto.object("GET", &format!("site/{object}"));
        assert_eq!(r.status, 200, "GET /{url} from the bucket: {}", r.text());
        let file = percent_encoding::percent_decode_str(&object)
            .decode_utf8()
            .expect("UTF-8")
            .into_owned();
        let local = docs.get(&file).unwrap_or_else(|| panic!("feeds/{file}"));
        assert!(gunzip(&r.body) == *local, "/{url} holds feeds/{file}");
    }
    let keys: Vec<String> = moto.list("site/").into_keys().collect();
    assert!(
        keys.contains(&"site/tags/élections/rss.xml".to_string()),
        "{keys:?}"
    );
    let mark = moto.requests(0).len();
    let again = herald(&ws, &["publish"]);
    again.expect_code(0);
    let sent: Vec<String> = moto
        .requests(mark)
        .into_iter()
        .filter(|r| r.starts_with("PUT ") || r.starts_with("DELETE ") || r.starts_with("POST "))
        .collect();
    assert_eq!(
        sent,
        Vec::<String>::new(),
        "nothing changed: {}",
        again.stdout
    );
    assert!(
        again.stdout.contains("0 uploaded") && again.stdout.contains("0 deleted"),
        "{}",
        again.stdout
    );
}

/// With a bucket configured, `herald publish` (dry run too) and `herald
/// serve` refuse to start without a `base_url`, or with a loopback one:
/// exit 78 and one line saying to set it; nothing reaches the bucket.
#[test]
fn publishing_needs_a_public_base_url() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    site(&ws);
    let cases = [
        ("missing", String::new()),
        (
            "127.0.0.1",
            "base_url = \"http://127.0.0.1:8092/\"\n".to_string(),
        ),
        (
            "localhost",
            "base_url = \"http://localhost:8080/\"\n".to_string(),
        ),
        (
            "::1",
            "base_url = \"http://[::1]:8080/site/\"\n".to_string(),
        ),
    ];
    for (label, base) in &cases {
        ws.write(
            "herald.toml",
            format!(
                "{base}listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}",
                target(&moto, "").replace("base_url = \"https://news.example.org/\"\n", "")
            ),
        );
        for args in [&["publish"][..], &["publish", "--dry-run"], &["serve"]] {
            let mut cmd = Command::new(HERALD);
            cmd.args(["--config", "herald.toml"])
                .args(args)
                .current_dir(ws.root())
                .env_remove("RUST_LOG")
                .env_remove("HERALD_CONFIG")
                .env("NO_COLOR", "1")
                .envs(AWS_ENV);
            let run = run_command(cmd);
            run.expect_code(78);
            let lines: Vec<&str> = run.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{label} {args:?}: {}", run.stderr);
            assert!(
                lines[0].contains("set base_url") && lines[0].contains("[publish]"),
                "{label} {args:?}: {}",
                lines[0]
            );
        }
    }
    assert!(moto.list("").is_empty(), "nothing stored");
    assert!(!ws.exists("feeds/rss.xml"), "nothing written");
}

/// The bucket's objects under the prefix whose key contains `part`.
fn count(moto: &Moto, part: &str) -> usize {
    moto.list("site/")
        .keys()
        .filter(|k| k.contains(part))
        .count()
}

/// `max_deletes` bounds how far the bucket shrinks over an episode, not
/// per pass: deleting articles a few at a time (each pass within the
/// limit) stops deleting once the bucket would hold `max_deletes` fewer
/// objects than it did at most, and `/healthz` names what is kept, the
/// count the bucket holds and how to confirm. Articles that come back
/// take their objects off that list (`/healthz` ok again). Deleted again,
/// they are held again, until `herald confirm-deletes`: `serve` then
/// deletes them within a second, says ok, takes the smaller bucket as
/// the new measure and deletes within the limit again.
#[test]
fn max_deletes_bounds_a_run_of_small_deletions() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    for i in 0..12 {
        ws.write(
            &format!("content/a{i:02}.md"),
            article(&format!("A{i:02}"), i + 1, "World", "Text."),
        );
    }
    let mut d = serve(ws, &moto, "max_deletes = 5\n");
    d.wait_log("bucket updated");
    let peak = moto.list("site/").len();
    let page = |i: u32| format!("site/articles/a{i:02}/index.html");
    let remove = |d: &TestDaemon, ids: &[u32]| {
        for i in ids {
            std::fs::remove_file(d.ws.path(&format!("content/a{i:02}.md"))).unwrap();
        }
    };
    let caught_up = |d: &TestDaemon| {
        wait_until("the bucket caught up", || {
            d.admin_get("/metrics")
                .text()
                .contains("herald_bucket_behind_routes 0\n")
        })
    };
    // Three pages, within the limit: deleted.
    remove(&d, &[0, 1, 2]);
    wait_until("three pages deleted", || count(&moto, "/a0") == 7);
    assert_eq!(d.get("/healthz").text(), "ok\n");
    // Three more: 6 fewer than the bucket held, more than 5.
    remove(&d, &[3, 4, 5]);
    wait_until("the feed without A05", || {
        let r = moto.object("GET", "site/feed.json");
        !String::from_utf8_lossy(&gunzip(&r.body)).contains("A05")
    });
    caught_up(&d);
    let health = d.poll("/healthz", "the kept objects named", |r| {
        r.text().contains("max_deletes")
    });
    assert_eq!(health.status, 200, "{}", health.text());
    let text = health.text();
    assert!(
        text.contains("keeps 3 objects")
            && text.contains(&format!("of the {peak} it held"))
            && text.contains("herald confirm-deletes"),
        "{text}"
    );
    for i in 3..6 {
        assert!(
            moto.list("site/").contains_key(&page(i)),
            "{} kept",
            page(i)
        );
    }
    assert!(moto.list("site/").len() + 5 >= peak);
    // They come back: nothing is held any more.
    for i in 3..6 {
        d.ws.write(
            &format!("content/a{i:02}.md"),
            article(&format!("A{i:02}"), i + 1, "World", "Text."),
        );
    }
    wait_object(&moto, "site/feed.json", "A05");
    caught_up(&d);
    d.poll("/healthz", "ok once the articles are back", |r| {
        r.text() == "ok\n"
    });
    // Gone again, and confirmed by the operator.
    remove(&d, &[3, 4, 5]);
    d.poll("/healthz", "held again", |r| {
        r.text().contains("keeps 3 objects")
    });
    herald(&d.ws, &["confirm-deletes"]).expect_code(0);
    d.poll("/healthz", "ok after the confirmation", |r| {
        r.text() == "ok\n"
    });
    for i in 3..6 {
        assert!(
            !moto.list("site/").contains_key(&page(i)),
            "{} deleted",
            page(i)
        );
    }
    // The smaller bucket is the measure now: three more go at once.
    remove(&d, &[6, 7, 8]);
    wait_until("three more pages deleted", || count(&moto, "/a0") == 1);
    assert_eq!(d.get("/healthz").text(), "ok\n");
    let log = d.stop();
    assert_eq!(log.matches("refusing to delete").count(), 2, "{log}");
}

/// What drifts in the bucket behind Herald's back is repaired by the
/// periodic re-list (`repair_interval_secs`) with no publish and no
/// restart: every object deleted from outside is sent again, one
/// overwritten gets the local bytes back, a stray one is deleted; the
/// log says what was repaired.
#[test]
fn drift_in_the_bucket_is_repaired() {
    let Some(moto) = Moto::start() else { return };
    let ws = Workspace::new();
    site(&ws);
    let mut d = serve(ws, &moto, "repair_interval_secs = 2\n");
    d.wait_log("bucket updated");
    let docs = documents(&d.ws);
    assert_eq!(moto.list("site/").len(), docs.len());
    // Emptied from outside, but for one object overwritten, and a stray.
    for key in moto.list("site/").keys() {
        if key != "site/rss.xml" {
            moto.delete(key);
        }
    }
    moto.request("PUT", &format!("/{BUCKET}/site/rss.xml"));
    moto.request("PUT", &format!("/{BUCKET}/site/stray.html"));
    assert_eq!(moto.list("site/").len(), 2);
    wait_until("every document back in the bucket", || {
        let now = moto.list("site/");
        now.len() == docs.len() && docs.keys().all(|k| now.contains_key(&format!("site/{k}")))
    });
    for (file, local) in &docs {
        let r = moto.object("GET", &format!("site/{file}"));
        let body = if r.header("content-encoding") == "gzip" {
            gunzip(&r.body)
        } else {
            r.body
        };
        assert!(body == *local, "{file} holds the local bytes");
    }
    assert_eq!(d.get("/healthz").text(), "ok\n");
    let log = d.stop();
    assert!(
        log.lines().any(|l| l.contains("bucket updated")
            && l.contains("deleted=1")
            && l.contains("full=true")
            && l.contains(&format!("uploaded={}", docs.len()))),
        "{log}"
    );
}

/// With the bucket's server dropping every connection, `serve` logs the
/// failure once for the whole episode: none of the S3 client's own
/// per-retry lines ("Encountered transport error … backing off"), however
/// many attempts are made.
#[test]
fn a_bucket_down_is_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            // Accepted and dropped: a transport error for the client.
            drop(conn);
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let ws = Workspace::new();
    site(&ws);
    let mut d = TestDaemon::start_with(
        ws,
        &format!("[publish]\nto = \"s3://{BUCKET}/site\"\nendpoint = \"http://{addr}\"\nretry_max_secs = 1\n"),
        |c| {
            c.envs(AWS_ENV);
        },
    );
    d.wait_log("bucket: cannot update");
    d.ws.write("content/gamma.md", article("Gamma", 4, "World", "Third."));
    d.wait_titles(&["Gamma", "The story", "Beta", "Alpha"]);
    // Several passes, each with the client's own retries.
    wait_until("40 connections to the bucket", || {
        accepted.load(std::sync::atomic::Ordering::Relaxed) >= 40
    });
    let health = d.get("/healthz").text();
    assert!(health.contains("the bucket cannot be written"), "{health}");
    let log = d.stop();
    assert_eq!(log.matches("bucket: cannot update").count(), 1, "{log}");
    let noise: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("transport error") || l.contains("backing off"))
        .collect();
    assert!(
        noise.is_empty(),
        "{} lines of retries:\n{}",
        noise.len(),
        noise.join("\n")
    );
}
