//! Ports and a second instance: every listener is bound before anything
//! is written, a port in use is reported with its likely owner and the
//! key or flag to change, and `--admin-listen` sets the admin address.

use std::collections::BTreeMap;
use std::path::Path;

use crate::live::{column, http, TestDaemon};
use crate::util::{tree, Run, Workspace};

fn ws_with_article() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "content/a.txt",
        column("May 1, 2025, 9 a.m.", "News", "A", "Body."),
    );
    ws
}

/// Every file and directory below `dir`: its kind, size, mode, inode,
/// mtime and ctime, and a file's bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("dir entry").path();
            let m = std::fs::symlink_metadata(&p).expect("stat");
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            out.insert(
                rel,
                format!(
                    "dir={} size={} mode={:o} ino={} mtime={}.{} ctime={}.{}",
                    m.is_dir(),
                    m.size(),
                    m.mode(),
                    m.ino(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec()
                ),
            );
            if m.is_dir() {
                todo.push(p);
            }
        }
    }
    for (rel, bytes) in tree(dir) {
        let h = blake3_like(&bytes);
        out.entry(rel)
            .and_modify(|s| s.push_str(&format!(" hash={h}")));
    }
    out
}

/// A content hash good enough to tell two versions of a file apart.
fn blake3_like(bytes: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A second `serve` on the same directories whose admin port is the
/// running one's exits 4 before it writes anything: `feeds/` and
/// `state/` stay byte for byte (and stat for stat) as they were, and the
/// error names the running Herald's pid and the key and flag to change.
#[test]
fn second_instance_fails_before_writing() {
    let ws = ws_with_article();
    // New content the running daemon has not published yet would be
    // published by a second instance that got as far as its first
    // publish; the running one sees it only after its debounce, which a
    // long `debounce_ms` puts off past the test.
    let first = TestDaemon::start(ws, "debounce_ms = 600000\nsettle_max_ms = 600000\n");
    let admin = first.admin.expect("the admin listener runs");
    first.ws.write(
        "content/b.txt",
        column("May 2, 2025, 9 a.m.", "News", "B", "Second."),
    );
    let feeds = first.ws.path("feeds");
    let state = first.ws.path("state");
    let before = (snapshot(&feeds), snapshot(&state));
    assert!(!before.0.is_empty() && !before.1.is_empty());

    // The same config, but for the admin address: the running one's.
    let config: String = first
        .ws
        .read("herald.toml")
        .lines()
        .filter(|l| !l.starts_with("admin_listen"))
        .map(|l| format!("{l}\n"))
        .collect();
    first.ws.write(
        "second.toml",
        format!("{config}admin_listen = \"{admin}\"\n"),
    );
    let run = first.ws.herald(&[
        "--config",
        "second.toml",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    // Refused with exit 4 and nothing written; the error names the
    // address, its key, the holder's pid and the flag to change.
    let refused = |run: &Run, taken: &str, key: &str, flag: &str| {
        assert_eq!(run.code, Some(4), "{}", run.stderr);
        let after = (snapshot(&feeds), snapshot(&state));
        assert_eq!(before.0, after.0, "feeds/ changed:\n{}", run.stderr);
        assert_eq!(before.1, after.1, "state/ changed:\n{}", run.stderr);
        let err = &run.stderr;
        assert!(
            err.contains(&format!("cannot listen on {taken} ({key})")),
            "{err}"
        );
        assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
        assert!(err.contains(flag), "{err}");
    };
    refused(&run, &admin.to_string(), "admin_listen", "--admin-listen");
    assert!(run.stderr.contains("herald"), "{}", run.stderr);

    // The public port taken: the same, naming `listen` and `--listen`.
    let public = first.addr;
    let run = first.ws.herald(&[
        "--config",
        "herald.toml",
        "serve",
        "--listen",
        &public.to_string(),
        "--admin-listen",
        "off",
    ]);
    refused(&run, &public.to_string(), "listen", "--listen");
    assert_eq!(first.get("/feed.json").status, 200);
    first.stop();
}

/// A port held by something Herald cannot see into (another user's
/// process, or this test's own socket) is said to be held by another
/// process; the error still names the key and the flag.
#[test]
fn port_in_use_without_a_known_owner() {
    let ws = ws_with_article();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    ws.write("herald.toml", "listen = \"127.0.0.1:0\"\n");
    let run = ws.herald_cfg(&["serve", "--admin-listen", &addr.to_string()]);
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    let err = &run.stderr;
    assert!(
        err.contains(&format!("cannot listen on {addr} (admin_listen)")),
        "{err}"
    );
    // This test process holds it: its own pid, or "another process".
    let me = format!("pid {}", std::process::id());
    assert!(
        err.contains(&me) || err.contains("another process"),
        "{err}"
    );
    for dir in ["feeds", "state"] {
        let left = tree(&ws.path(dir));
        assert!(left.is_empty(), "{dir}: {:?}\n{err}", left.keys());
    }
}

/// `--admin-listen` sets the admin address (`off` turns it off) over the
/// config file's `admin_listen`.
#[test]
fn admin_listen_flag() {
    let d = TestDaemon::start_with(ws_with_article(), "admin_listen = \"off\"\n", |c| {
        c.args(["--admin-listen", "127.0.0.1:0"]);
    });
    let admin = d.admin.expect("--admin-listen turns the admin listener on");
    assert_eq!(http(admin, "GET", "/metrics", &[]).status, 200);
    d.stop();

    let d = TestDaemon::start_with(ws_with_article(), "", |c| {
        c.args(["--admin-listen", "off"]);
    });
    assert!(d.admin.is_none(), "{}", d.log());
    assert!(!d.log().contains("admin interface"), "{}", d.log());
    d.stop();
}

/// Two Heralds never write one state directory: a second `serve` on free
/// ports, or a `build`, beside a running `serve` on the same `state_dir`
/// exits 5 naming the running one's pid and leaves `feeds/` and `state/`
/// as they were; once that one has stopped, the lock is free again.
#[test]
fn one_herald_per_state_directory() {
    let ws = ws_with_article();
    let first = TestDaemon::start(ws, "debounce_ms = 600000\nsettle_max_ms = 600000\n");
    first.ws.write(
        "content/b.txt",
        column("May 2, 2025, 9 a.m.", "News", "B", "Second."),
    );
    let feeds = first.ws.path("feeds");
    let state = first.ws.path("state");
    let before = (snapshot(&feeds), snapshot(&state));
    let pid = format!("pid {}", first.pid());
    for args in [
        &[
            "--config",
            "herald.toml",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
        ][..],
        &["--config", "herald.toml", "build"][..],
    ] {
        let run = first.ws.herald(args);
        assert_eq!(run.code, Some(5), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("is in use by another Herald"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains(&pid), "{}", run.stderr);
        let after = (snapshot(&feeds), snapshot(&state));
        assert_eq!(
            before.0, after.0,
            "{args:?}: feeds/ changed:\n{}",
            run.stderr
        );
        assert_eq!(
            before.1, after.1,
            "{args:?}: state/ changed:\n{}",
            run.stderr
        );
    }
    let (_, ws) = first.stop_keep();
    ws.herald_cfg(&["build"]).expect_code(0);
    assert!(ws.read("feeds/feed.json").contains("Second."));
}
