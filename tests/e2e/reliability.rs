//! The publish loop tells the truth and what is served is what is kept:
//! `/healthz` and the systemd watchdog when the loop is stuck or dead,
//! SIGTERM with a stuck loop, ids durable before they are served, new
//! articles held back while the state cannot be written, and the output
//! mirror on another file system, full, then healed.
//!
//! Stalls are real: a FIFO where the state journal goes blocks
//! the loop in `open(2)` (a hung network mount in miniature). File
//! systems are real too: tests that need a second mount (a tmpfs) or an
//! immutable directory run as root and are skipped with a note otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::live::{column, feed_titles, gunzip, TestDaemon, DEADLINE};
use crate::util::Workspace;

fn col(title: &str, day: u32) -> String {
    column(
        &format!("May {day}, 2025, 9 a.m."),
        "News",
        title,
        &format!("Body of {title}."),
    )
}

fn ws_with(files: &[(&str, String)]) -> Workspace {
    let ws = Workspace::new();
    for (name, text) in files {
        ws.write(&format!("content/{name}"), text);
    }
    ws
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Prints why a test is skipped; returns false so callers can `return`.
fn skip(why: &str) -> bool {
    eprintln!("SKIPPED: {why}");
    false
}

/// A FIFO at `path`: opening it for writing blocks until a reader comes.
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// Opens the FIFO at `path` for reading (which lets a writer blocked in
/// `open` go on), reads it to the end in a thread and returns the bytes.
fn drain_fifo(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        if let Ok(mut f) = fs::File::open(&path) {
            let _ = f.read_to_end(&mut got);
        }
        got
    })
}

/// A unix datagram socket standing in for systemd's `NOTIFY_SOCKET`.
struct Notify {
    _dir: tempfile::TempDir,
    path: PathBuf,
    sock: UnixDatagram,
}

impl Notify {
    fn new() -> Notify {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Notify {
            _dir: dir,
            path,
            sock,
        }
    }

    /// Messages received within `within`.
    fn recv_for(&self, within: Duration) -> Vec<String> {
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while start.elapsed() < within {
            if let Ok(n) = self.sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
            }
        }
        got
    }

    /// Waits (with the deadline) until a message equal to `msg` arrives.
    fn wait_for(&self, msg: &str) {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            assert!(start.elapsed() < DEADLINE, "no {msg:?} within {DEADLINE:?}");
            if let Ok(n) = self.sock.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).trim_end() == msg {
                    return;
                }
            }
        }
    }

    /// Throws away everything queued.
    fn drain(&self) {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        while self.sock.recv(&mut buf).is_ok() {}
        self.sock.set_nonblocking(false).unwrap();
    }
}

/// Starts the daemon with `NOTIFY_SOCKET` and a 300 ms watchdog (pings
/// every 150 ms) and the given extra environment.
fn start_watched(ws: Workspace, config: &str, n: &Notify, env: &[(&str, &str)]) -> TestDaemon {
    TestDaemon::start_with(ws, config, |c| {
        c.env("NOTIFY_SOCKET", &n.path)
            .env("WATCHDOG_USEC", "300000");
        for (k, v) in env {
            c.env(k, v);
        }
    })
}

/// When an edit's publish blocks (the state journal is a FIFO,
/// as a hung mount would block), `/healthz` answers 503 naming the step
/// within `publish_stall_secs` and `WATCHDOG=1` stops; once the loop can
/// go on, `/healthz` is 200 again, the pings resume and the edit is
/// served.
#[test]
fn stuck_loop_fails_healthz_and_stops_the_watchdog() {
    let n = Notify::new();
    let mut d = start_watched(
        ws_with(&[("a.txt", col("A", 1))]),
        "publish_stall_secs = 1\nwrite_retry_secs = 1\n",
        &n,
        &[],
    );
    n.wait_for("WATCHDOG=1");
    let ok = d.get("/healthz");
    assert_eq!((ok.status, ok.text().as_str()), (200, "ok\n"));
    assert_eq!(ok.header("cache-control"), "no-store");

    let fifo = d.ws.path("state/state.journal");
    mkfifo(&fifo);
    d.ws.write("content/a.txt", col("A edited", 1));
    let stuck = d.poll("/healthz", "503 while the loop is stuck", |r| {
        r.status == 503
    });
    assert!(
        stuck.text().contains("stuck") && stuck.text().contains("saving the state"),
        "{}",
        stuck.text()
    );
    assert_eq!(stuck.header("cache-control"), "no-store");
    n.drain();
    let pings: Vec<String> = n
        .recv_for(Duration::from_millis(900))
        .into_iter()
        .filter(|m| m == "WATCHDOG=1")
        .collect();
    assert!(pings.is_empty(), "watchdog still pinged while stuck");
    d.wait_log("publishing is stuck");

    let reader = drain_fifo(&fifo);
    d.poll("/healthz", "200 once the loop goes on", |r| r.status == 200);
    n.wait_for("WATCHDOG=1");
    d.wait_titles(&["A edited"]);
    d.wait_log("publishing goes on");
    reader.join().unwrap();
    d.poll("/healthz", "ok once the state is saved", |r| {
        r.text() == "ok\n"
    });
    d.stop();
}

/// SIGTERM stops the process even while the publish loop is blocked: the
/// server drains, the loop is waited for only as long as it could still
/// be making progress, and the exit is logged.
#[test]
fn sigterm_stops_a_stuck_loop() {
    let d = TestDaemon::start(
        ws_with(&[("a.txt", col("A", 1))]),
        "publish_stall_secs = 1\n",
    );
    let fifo = d.ws.path("state/state.journal");
    mkfifo(&fifo);
    d.ws.write("content/b.txt", col("B", 2));
    d.poll("/healthz", "503 while the loop is stuck", |r| {
        r.status == 503
    });
    d.signal(libc::SIGTERM);
    let (code, log) = d.wait_exit();
    assert_eq!(code, Some(5), "exit code after an unclean stop:\n{log}");
    assert!(
        log.contains("the publish loop did not stop"),
        "no line saying why:\n{log}"
    );
}

/// A panic in the publish loop outside article parsing and rendering
/// (forced with the test-only failpoint) leaves the server up with
/// `/healthz` 503 "dead" and no more watchdog pings; SIGTERM then exits
/// with the runtime failure code.
#[test]
fn dead_loop_fails_healthz_and_stops_the_watchdog() {
    let n = Notify::new();
    let d = start_watched(
        ws_with(&[("a.txt", col("A", 1))]),
        "",
        &n,
        &[("HERALD_FAILPOINT", "publish-panic")],
    );
    n.wait_for("WATCHDOG=1");
    assert_eq!(d.get("/healthz").status, 200);
    d.ws.write("content/a.txt", col("A edited", 1));
    let dead = d.poll("/healthz", "503 once the loop is dead", |r| r.status == 503);
    assert!(
        dead.text().contains("dead") && dead.text().contains("panicked"),
        "{}",
        dead.text()
    );
    n.drain();
    assert!(
        !n.recv_for(Duration::from_millis(900))
            .iter()
            .any(|m| m == "WATCHDOG=1"),
        "watchdog still pinged with the loop dead"
    );
    assert_eq!(d.get("/rss.xml").status, 200, "still serving");
    d.signal(libc::SIGTERM);
    let (code, log) = d.wait_exit();
    assert_eq!(code, Some(5), "{log}");
}

/// The ids of the items of `/feed.json`, by title.
fn ids_by_title(body: &[u8]) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["title"].as_str().unwrap_or("").to_string(),
                        i["id"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// GET `/feed.json` over one keep-alive connection, as fast as it goes,
/// until `ok` holds for the body; returns it.
fn spin_feed(d: &TestDaemon, ok: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let start = Instant::now();
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "feed never matched:\n{}",
            d.log()
        );
        s.write_all(b"GET /feed.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut raw = Vec::new();
        let body = loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed");
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("content-length");
                if raw.len() >= end + 4 + len {
                    break raw[end + 4..end + 4 + len].to_vec();
                }
            }
        };
        if ok(&body) {
            return body;
        }
    }
}

/// Killed with SIGKILL the moment 50 new articles are served, then
/// restarted after every one of their files was renamed, Herald gives
/// each the id it had been served with: ids are on disk before any
/// response shows them. Repeated, to land in the moment after a publish.
#[test]
fn ids_survive_kill_right_after_they_are_served() {
    for round in 0..3 {
        let d = TestDaemon::start(ws_with(&[("old.txt", col("Old", 1))]), "max_items = 100\n");
        d.wait_titles(&["Old"]);
        for i in 0..50 {
            d.ws.write(&format!("content/n{i}.txt"), col(&format!("New {i}"), 2));
        }
        let body = spin_feed(&d, |b| feed_titles(b).len() == 51);
        let served = ids_by_title(&body);
        let ws = d.kill();
        for i in 0..50 {
            fs::rename(
                ws.path(&format!("content/n{i}.txt")),
                ws.path(&format!("content/renamed{i}.txt")),
            )
            .unwrap();
        }
        let d = TestDaemon::start(ws, "max_items = 100\n");
        let body = spin_feed(&d, |b| feed_titles(b).len() == 51);
        let again = ids_by_title(&body);
        assert_eq!(again, served, "round {round}: ids changed across kill -9");
        d.stop();
    }
}

/// A tmpfs mounted for one test on a directory of its own (root only),
/// unmounted and removed when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount(8) syntax, e.g. `"1m"`); `None`
    /// (with a printed reason) when not root or the mount fails.
    fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            skip("needs root to mount a tmpfs");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("herald-tmpfs-")
            .tempdir()
            .unwrap();
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let target = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let data = c(&format!("size={size},mode=0755"));
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c("tmpfs").as_ptr(),
                target.as_ptr(),
                c("tmpfs").as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            skip(&format!(
                "cannot mount a tmpfs: {}",
                std::io::Error::last_os_error()
            ));
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with one file until it is full.
    fn fill(&self) -> PathBuf {
        let p = self.path().join("filler");
        let mut f = fs::File::create(&p).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid path; lazy so a daemon still holding it cannot
        // keep the mount.
        unsafe {
            libc::umount2(target.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// The routes of a workspace whose articles are all in category "News"
/// (fewer than two pages' worth: no archive pages).
fn routes_for(slugs: &[&str]) -> Vec<String> {
    let mut r: Vec<String> = [
        "/",
        "/rss.xml",
        "/atom.xml",
        "/feed.json",
        "/feeds.opml",
        "/categories/news/",
        "/categories/news/rss.xml",
        "/categories/news/atom.xml",
        "/categories/news/feed.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    r.extend(slugs.iter().map(|s| format!("/articles/{s}/")));
    r.sort();
    r
}

/// Whether `dir` holds exactly the files of `routes`, each byte for byte
/// what is served (identity), each with a `.gz` twin of the same bytes,
/// and nothing else; `Err` says what differs.
fn mirror_matches(d: &TestDaemon, dir: &Path, routes: &[String]) -> Result<(), String> {
    let files = crate::util::tree(dir);
    let mut found = Vec::new();
    for (rel, bytes) in &files {
        if rel == "filler" {
            continue;
        }
        if let Some(plain) = rel.strip_suffix(".gz") {
            let Some(p) = files.get(plain) else {
                return Err(format!("{rel} has no plain twin"));
            };
            if gunzip(bytes) != *p {
                return Err(format!("{rel} is not {plain} gzipped"));
            }
            continue;
        }
        let route = format!("/{}", rel.strip_suffix("index.html").unwrap_or(rel));
        let served = d.request("GET", &route, &[("accept-encoding", "identity")]);
        if served.status != 200 || served.body != *bytes {
            return Err(format!(
                "{rel}: {} bytes on disk, {} {} bytes served",
                bytes.len(),
                served.status,
                served.body.len()
            ));
        }
        if !files.contains_key(&format!("{rel}.gz")) {
            return Err(format!("{rel} has no .gz twin"));
        }
        found.push(route);
    }
    found.sort();
    if found != routes {
        return Err(format!("files for {found:?}, routes {routes:?}"));
    }
    Ok(())
}

/// Waits until [`mirror_matches`] holds.
fn wait_mirror(d: &TestDaemon, dir: &Path, routes: &[String]) {
    let start = Instant::now();
    loop {
        match mirror_matches(d, dir, routes) {
            Ok(()) => return,
            Err(e) => assert!(
                start.elapsed() < DEADLINE,
                "output never matched what is served: {e}\nlog:\n{}",
                d.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With `output_dir` on another file system than `state_dir` (where the
/// large bodies live), every file reaches the disk, feeds of 16 KB and
/// more included, byte for byte what is served.
#[test]
fn output_on_another_file_system() {
    let Some(out) = Tmpfs::mount("64m") else {
        return;
    };
    let para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(10);
    let ws = Workspace::new();
    let slugs: Vec<String> = (0..30).map(|i| format!("big{i}")).collect();
    for (i, s) in slugs.iter().enumerate() {
        ws.write(
            &format!("content/{s}.txt"),
            column(
                &format!("May {}, 2025, 9 a.m.", 1 + i % 28),
                "News",
                &format!("Big {i}"),
                &[para.as_str(); 4].join("\n\n"),
            ),
        );
    }
    let d = TestDaemon::start(ws, &format!("output_dir = {:?}\n", out.path()));
    let rss = d.get("/rss.xml");
    assert!(rss.body.len() >= 16 * 1024, "{} bytes", rss.body.len());
    let slugs: Vec<&str> = slugs.iter().map(String::as_str).collect();
    wait_mirror(&d, out.path(), &routes_for(&slugs));
    let log = d.stop();
    assert!(!log.contains("cannot write"), "{log}");
}

/// Output on a small file system that is full at start: the error is
/// logged once, however many publishes fail; once space is freed, the
/// next edit brings every file under the output directory in line with
/// what is served (pages never written included) and one line says
/// writing works again.
#[test]
fn full_output_disk_heals() {
    let Some(out) = Tmpfs::mount("1m") else {
        return;
    };
    let filler = out.fill();
    let names = ["a", "b", "c", "d", "e", "f"];
    let ws = Workspace::new();
    for (i, n) in names.iter().enumerate() {
        ws.write(
            &format!("content/{n}.txt"),
            col(&format!("T{n}"), 1 + i as u32),
        );
    }
    let mut d = TestDaemon::start(
        ws,
        &format!("output_dir = {:?}\nwrite_retry_secs = 3600\n", out.path()),
    );
    d.wait_log("cannot write");
    d.ws.write("content/a.txt", col("Ta edited", 1));
    d.poll("/feed.json", "the edit", |r| {
        feed_titles(&r.body).contains(&"Ta edited".to_string())
    });
    fs::remove_file(&filler).unwrap();
    d.ws.write("content/b.txt", col("Tb edited", 2));
    wait_mirror(&d, out.path(), &routes_for(&names));
    let log = d.stop();
    assert_eq!(
        log.matches("cannot write").count(),
        1,
        "one error line while full:\n{log}"
    );
    assert_eq!(
        log.matches("writing the output directory works again")
            .count(),
        1,
        "one line when it heals:\n{log}"
    );
}

/// Sets the immutable attribute on a directory (nothing can be created,
/// renamed or removed in it, even by root) until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Option<Immutable> {
        if !is_root() {
            skip("needs root to make a directory immutable (chattr +i)");
            return None;
        }
        match Command::new("chattr").arg("+i").arg(dir).status() {
            Ok(s) if s.success() => Some(Immutable(dir.to_path_buf())),
            other => {
                skip(&format!("chattr +i {} failed: {other:?}", dir.display()));
                None
            }
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// While the state file cannot be written, a new article is held back
/// (it would need an id that could not be kept) — logged once, reported
/// by `/healthz` (200, degraded) and `/metrics` — while an edit of a known
/// article is served. Once the state can be written again, the held-back
/// article appears within `write_retry_secs` without another edit, and
/// its id is the one on disk.
#[test]
fn read_only_state_holds_back_new_articles() {
    if !is_root() {
        skip("needs root to make the state directory immutable (chattr +i)");
        return;
    }
    let d = TestDaemon::start(ws_with(&[("a.txt", col("A", 1))]), "write_retry_secs = 1\n");
    d.wait_titles(&["A"]);
    let Some(guard) = Immutable::set(&d.ws.path("state")) else {
        return;
    };
    d.ws.write("content/b.txt", col("B", 2));
    d.ws.write("content/a.txt", col("A edited", 1));
    let r = d.poll("/feed.json", "the edit", |r| {
        feed_titles(&r.body).contains(&"A edited".to_string())
    });
    assert_eq!(feed_titles(&r.body), ["A edited"], "B is held back");
    let h = d.get("/healthz");
    assert_eq!(h.status, 200, "{}", h.text());
    assert!(
        h.text().contains("degraded") && h.text().contains("1 new article held back"),
        "{}",
        h.text()
    );
    let m = d.admin_get("/metrics").text();
    assert!(m.contains("herald_articles_held_back 1\n"), "{m}");
    assert!(
        m.contains("herald_write_failing{sink=\"state\"} 1\n"),
        "{m}"
    );

    drop(guard);
    let body = d
        .poll("/feed.json", "the held-back article", |r| {
            feed_titles(&r.body) == ["B", "A edited"]
        })
        .body;
    d.poll("/healthz", "ok", |r| r.text() == "ok\n");
    let log = d.log();
    assert_eq!(log.matches("held back").count(), 1, "{log}");
    assert_eq!(
        log.matches("saving the state works again").count(),
        1,
        "{log}"
    );
    let served = ids_by_title(&body);
    let ws = d.kill();
    let d = TestDaemon::start(ws, "");
    let again = ids_by_title(&spin_feed(&d, |b| feed_titles(b).len() == 2));
    assert_eq!(again, served, "ids on disk are the ones served");
    d.stop();
}
