//! The publish loop tells the truth and what is served is what is kept:
//! the output mirror on another file system.
//!
//! File systems are real: tests that need a second mount (a tmpfs) run as
//! root and are skipped with a note otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::live::{column, gunzip, TestDaemon, DEADLINE};
use crate::util::Workspace;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Prints why a test is skipped; returns false so callers can `return`.
fn skip(why: &str) -> bool {
    eprintln!("SKIPPED: {why}");
    false
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

/// The routes of a workspace whose articles are all in category "News".
fn routes_for(slugs: &[&str]) -> Vec<String> {
    let mut r: Vec<String> = [
        "/",
        "/rss.xml",
        "/atom.xml",
        "/feed.json",
        "/feeds.opml",
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
