//! Herald as a system service: sd_notify messages on a real
//! `NOTIFY_SOCKET`, reload on SIGHUP, graceful SIGTERM with a slow client,
//! socket activation through `LISTEN_FDS`, connection limits and timeouts,
//! HTTP/2, and log formats.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::live::{column, http, TestDaemon, DEADLINE};
use crate::util::{Workspace, HERALD};

fn ws_with_article() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "content/a.txt",
        column("May 1, 2025, 9 a.m.", "News", "A", "Body."),
    );
    ws
}

/// Reads notify datagrams until `pred` holds for the list so far.
fn recv_until(
    sock: &UnixDatagram,
    got: &mut Vec<String>,
    what: &str,
    pred: impl Fn(&[String]) -> bool,
) {
    let start = Instant::now();
    let mut buf = vec![0u8; 4096];
    while !pred(got) {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not received; got {got:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
        }
    }
}

/// The sd_notify sequence across start, SIGHUP with a good and a bad
/// config, watchdog pings and SIGTERM is exactly READY, RELOADING+MONOTONIC,
/// READY, RELOADING+MONOTONIC, READY, STOPPING (STATUS lines aside), with
/// WATCHDOG=1 pings throughout; the good config takes effect, the bad one
/// is logged with its line and key and the old one keeps running.
#[test]
fn notify_sequence_reload_and_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut d = TestDaemon::start_with(ws_with_article(), "title = \"Before\"\n", |c| {
        c.env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "400000");
    });
    let mut got = Vec::new();
    recv_until(&sock, &mut got, "READY", |g| {
        g.iter().any(|m| m.starts_with("READY=1"))
    });
    let ready = got.iter().find(|m| m.starts_with("READY=1")).unwrap();
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving 1 article on"),
        "{got:?}"
    );
    assert!(
        d.get("/rss.xml").text().contains("<title>Before</title>"),
        "READY=1 only after the first snapshot is served"
    );
    recv_until(&sock, &mut got, "two watchdog pings", |g| {
        g.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2
    });

    let cfg =
        d.ws.read("herald.toml")
            .replace("title = \"Before\"", "title = \"After\"");
    d.ws.write("herald.toml", &cfg);
    d.signal(libc::SIGHUP);
    recv_until(&sock, &mut got, "ready after reload", |g| {
        g.iter().filter(|m| m.starts_with("READY=1")).count() >= 2
    });
    d.poll("/rss.xml", "new title", |r| {
        r.text().contains("<title>After</title>")
    });

    d.ws.write("herald.toml", format!("{cfg}\nmax_itmes = 3\n"));
    d.signal(libc::SIGHUP);
    recv_until(&sock, &mut got, "ready after bad reload", |g| {
        g.iter().filter(|m| m.starts_with("READY=1")).count() >= 3
    });
    let line = d.wait_log("reload failed");
    assert!(
        line.contains("herald.toml:") && line.contains("max_itmes"),
        "{line}"
    );
    assert!(
        d.get("/rss.xml").text().contains("<title>After</title>"),
        "old config keeps running"
    );

    let log = d.stop();
    let mut sock_msgs = got;
    recv_until(&sock, &mut sock_msgs, "STOPPING", |g| {
        g.iter().any(|m| m.starts_with("STOPPING=1"))
    });
    let seq: Vec<String> = sock_msgs
        .iter()
        .filter(|m| *m != "WATCHDOG=1" && !m.starts_with("STATUS="))
        .map(|m| {
            let first = m.lines().next().unwrap_or("").to_string();
            if first == "RELOADING=1" {
                let mono = m.lines().nth(1).unwrap_or("");
                assert!(
                    mono.starts_with("MONOTONIC_USEC=") && mono[15..].parse::<u64>().is_ok(),
                    "{m:?}"
                );
            }
            first
        })
        .collect();
    assert_eq!(
        seq,
        [
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "STOPPING=1"
        ],
        "log:\n{log}"
    );
}

/// SIGHUP with a new `cache_max_age` changes `Cache-Control` on every
/// route, on 200s and 304s alike — also when the RSS `<ttl>` (whole
/// minutes) stays the same, so that no document's bytes change.
#[test]
fn reload_changes_cache_control() {
    let d = TestDaemon::start(ws_with_article(), "cache_max_age = 300\n");
    let before = d.get("/rss.xml");
    assert_eq!(before.header("cache-control"), "public, max-age=300");
    assert!(before.text().contains("<ttl>5</ttl>"), "{}", before.text());
    let feed: serde_json::Value = serde_json::from_slice(&d.get("/feed.json").body).unwrap();
    let url = feed["items"][0]["url"].as_str().unwrap().to_string();
    let page = &url["https://news.example.org".len()..];
    assert_eq!(d.get(page).header("cache-control"), "public, max-age=300");

    let cfg =
        d.ws.read("herald.toml")
            .replace("cache_max_age = 300", "cache_max_age = 290");
    d.ws.write("herald.toml", &cfg);
    d.signal(libc::SIGHUP);
    let after = d.poll("/rss.xml", "the new max-age", |r| {
        r.header("cache-control") == "public, max-age=290"
    });
    assert_eq!(after.body, before.body, "same <ttl>, same feed");
    assert_eq!(after.header("etag"), before.header("etag"));
    for path in [
        "/",
        "/atom.xml",
        "/feed.json",
        "/feeds.opml",
        "/categories/news/rss.xml",
        page,
    ] {
        for enc in ["gzip", "identity"] {
            let r = d.request("GET", path, &[("accept-encoding", enc)]);
            assert_eq!(r.status, 200, "{path} {enc}");
            assert_eq!(
                r.header("cache-control"),
                "public, max-age=290",
                "{path} {enc}"
            );
            let etag = r.header("etag").to_string();
            let nm = d.request(
                "GET",
                path,
                &[("accept-encoding", enc), ("if-none-match", &etag)],
            );
            assert_eq!(nm.status, 304, "{path} {enc}");
            assert_eq!(
                nm.header("cache-control"),
                "public, max-age=290",
                "{path} {enc}"
            );
            assert_eq!(nm.header("etag"), etag, "{path} {enc}");
        }
    }
    d.stop();
}

/// Without NOTIFY_SOCKET nothing is attempted (no warnings about it).
#[test]
fn no_notify_socket_no_noise() {
    let d = TestDaemon::start(ws_with_article(), "");
    let log = d.stop();
    assert!(!log.contains("sd_notify"), "{log}");
}

/// A slow client downloading a large feed when SIGTERM arrives still gets
/// the whole body, a client idle on a keep-alive connection is closed at
/// once, and the daemon then exits 0.
#[test]
fn slow_client_finishes_during_shutdown() {
    let ws = Workspace::new();
    let para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(40);
    for i in 0..50 {
        let body = vec![para.as_str(); 20].join("\n\n");
        ws.write(
            &format!("content/big{i}.txt"),
            column(
                &format!("May {}, 2025, 9 a.m.", 1 + i % 28),
                "News",
                &format!("Big {i}"),
                &body,
            ),
        );
    }
    let d = TestDaemon::start(ws, "");
    let full_len: usize = d.get("/rss.xml").header("content-length").parse().unwrap();
    assert!(full_len > 1_500_000, "feed is large: {full_len}");

    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(b"GET /rss.xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 16 * 1024];
    let n = s.read(&mut first).unwrap();
    assert!(n > 0);
    // A second client, idle on a keep-alive connection after one request.
    let mut idle = TcpStream::connect(d.addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok\n") {
        let n = idle.read(&mut buf).unwrap();
        assert!(n > 0, "keep-alive connection closed early");
        got.extend_from_slice(&buf[..n]);
    }
    d.signal(libc::SIGTERM);
    // Read slowly: ~1.5 MB at 64 KiB per 40 ms takes about a second.
    let mut raw = first[..n].to_vec();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        std::thread::sleep(Duration::from_millis(40));
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("connection cut during shutdown: {e}"),
        }
    }
    let r = crate::live::parse_response(&raw, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), full_len, "whole body received");
    assert!(r.text().trim_end().ends_with("</rss>"));
    // The idle connection was closed at once, not left to the end of the
    // 5 s grace period.
    idle.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(
        idle.read(&mut buf)
            .expect("idle connection closed by shutdown"),
        0
    );
    let (code, log) = d.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("grace"), "{log}");
}

/// With LISTEN_FDS=1 and LISTEN_PID set to the daemon's pid, Herald serves
/// on the inherited fd 3 instead of binding `listen` (here a port that is
/// taken, so binding would fail).
#[test]
fn socket_activation_uses_fd_3() {
    let inherited = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = inherited.local_addr().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&inherited);
    let mut cmd = Command::new("sh");
    // `exec` keeps the shell's pid, so LISTEN_PID=$$ is the daemon's pid.
    cmd.args([
        "-c",
        "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" --config herald.toml serve",
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
    let d = TestDaemon::start_cmd(
        ws_with_article(),
        &format!("listen = \"{taken_addr}\"\n"),
        cmd,
    );
    assert_eq!(d.addr, addr, "serves on the inherited socket");
    assert_eq!(http(addr, "GET", "/healthz", &[]).text(), "ok\n");
    drop(taken);
    d.stop();
}

/// A client that never finishes its request head is disconnected after
/// `header_read_timeout_secs` (slowloris), while normal requests go on.
#[test]
fn header_read_timeout_closes_slowloris() {
    let d = TestDaemon::start(ws_with_article(), "header_read_timeout_secs = 1\n");
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /rss.xml HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap_or(0);
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        n == 0 || text.starts_with("HTTP/1.1 408"),
        "connection closed, got {text:?}"
    );
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert_eq!(d.get("/healthz").status, 200);
    d.stop();
}

/// Waits until the server closes `s` (read returns 0 or fails hard), at
/// most `limit`, trickling one byte of `trickle` every 200 ms if given.
/// Returns how long that took.
fn closed_within(s: &mut TcpStream, limit: Duration, trickle: Option<&[u8]>) -> Duration {
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1024];
    let mut i = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(
                    text.starts_with("HTTP/1.1 408"),
                    "unexpected answer {text:?}"
                );
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return started.elapsed(),
        }
        assert!(started.elapsed() < limit, "still open after {limit:?}");
        if let Some(t) = trickle {
            if s.write_all(&t[i % t.len()..i % t.len() + 1]).is_err() {
                return started.elapsed();
            }
            i += 1;
        }
    }
}

/// A client that connects and sends nothing is disconnected after
/// `header_read_timeout_secs`, like one that stops mid-head.
#[test]
fn silent_connection_closed() {
    let d = TestDaemon::start(ws_with_article(), "header_read_timeout_secs = 1\n");
    let mut s = TcpStream::connect(d.addr).unwrap();
    let waited = closed_within(&mut s, Duration::from_secs(5), None);
    assert!(
        waited >= Duration::from_millis(800),
        "closed after {waited:?}"
    );
    d.stop();
}

/// A slow-loris client that keeps trickling bytes of a never-ending head
/// (so the connection is never idle) is cut off after
/// `header_read_timeout_secs` all the same.
#[test]
fn trickling_head_cut_off() {
    let d = TestDaemon::start(
        ws_with_article(),
        "header_read_timeout_secs = 1\nidle_timeout_secs = 60\n",
    );
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(b"GET /rss.xml HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let waited = closed_within(&mut s, Duration::from_secs(6), Some(b"abcdefgh"));
    assert!(
        waited >= Duration::from_millis(800),
        "closed after {waited:?}"
    );
    assert_eq!(d.get("/healthz").status, 200);
    d.stop();
}

/// Between requests a keep-alive connection may wait longer than
/// `header_read_timeout_secs` (up to `idle_timeout_secs`): the limit counts
/// from a request's first byte, not from the previous response.
#[test]
fn keep_alive_outlasts_header_read_timeout() {
    let d = TestDaemon::start(
        ws_with_article(),
        "header_read_timeout_secs = 1\nidle_timeout_secs = 30\n",
    );
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let ask = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 4096];
    for round in 0..2 {
        if round == 1 {
            std::thread::sleep(Duration::from_millis(2500));
        }
        s.write_all(ask).unwrap();
        let n = s.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("ok\n"),
            "round {round}: {text:?}"
        );
    }
    d.stop();
}

/// At `max_connections` open connections, the next client waits until one
/// closes; then it is served.
#[test]
fn connection_cap() {
    let d = TestDaemon::start(ws_with_article(), "max_connections = 2\n");
    let hold1 = TcpStream::connect(d.addr).unwrap();
    let hold2 = TcpStream::connect(d.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(d.addr).unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(
        third.read(&mut buf).is_err(),
        "third connection served beyond the cap"
    );
    drop(hold1);
    third.set_read_timeout(Some(DEADLINE)).unwrap();
    let n = third.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(hold2);
    d.stop();
}

/// HTTP/2 with prior knowledge (h2c) is served, with the same headers.
#[test]
fn http2_prior_knowledge() {
    let d = TestDaemon::start(ws_with_article(), "");
    let (status, ct, body) = crate::live::h2_get(d.addr, "/atom.xml");
    assert_eq!(status, 200);
    assert_eq!(ct, "application/atom+xml; charset=utf-8");
    assert_eq!(body, d.get("/atom.xml").body);
    d.stop();
}

fn build_with_env(env: &[(&str, &str)], args: &[&str]) -> String {
    let ws = ws_with_article();
    let mut cmd = Command::new(HERALD);
    cmd.args(args)
        .arg("build")
        .current_dir(ws.root())
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Under journald (JOURNAL_STREAM set) lines carry syslog priorities and no
/// timestamps; `--log-format json` gives one JSON object per line.
#[test]
fn log_formats() {
    let j = build_with_env(&[("JOURNAL_STREAM", "8:1234")], &[]);
    let line = j
        .lines()
        .find(|l| l.contains("build finished"))
        .unwrap_or_else(|| panic!("{j}"));
    assert!(line.starts_with("<6>build finished"), "{line:?}");
    assert!(
        !line.contains("2026-") && !line.contains("Z "),
        "no timestamp: {line:?}"
    );
    let js = build_with_env(&[], &["--log-format", "json"]);
    let line = js
        .lines()
        .find(|l| l.contains("build finished"))
        .unwrap_or_else(|| panic!("{js}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["message"], "build finished");
}

/// `serve` exits with documented codes: 4 when the address cannot be bound,
/// 3 when the content directory is missing, 78 for a bad config.
#[test]
fn fatal_exit_codes() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ws = ws_with_article();
    ws.write(
        "herald.toml",
        format!(
            "listen = \"{}\"\nadmin_listen = \"off\"\n",
            taken.local_addr().unwrap()
        ),
    );
    let r = ws.herald_cfg(&["serve"]);
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert!(r.stderr.contains("cannot listen on"), "{}", r.stderr);

    ws.write(
        "herald.toml",
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"off\"\ncontent_dir = \"missing\"\n",
    );
    let r = ws.herald_cfg(&["serve"]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("missing: content directory cannot be read"),
        "{}",
        r.stderr
    );

    ws.write("herald.toml", "listen = 8080\n");
    let r = ws.herald_cfg(&["serve"]);
    assert_eq!(r.code, Some(78), "{}", r.stderr);
    assert!(r.stderr.contains("herald.toml:1: listen"), "{}", r.stderr);
}
