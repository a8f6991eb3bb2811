//! A running `herald serve` for end-to-end tests: the real binary on a temp
//! workspace and a free port, its log captured, a minimal HTTP/1.1 client,
//! bounded polling, and a checked graceful shutdown.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{Workspace, HERALD};

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Config for tests: short timers so changes show quickly.
pub const FAST_CONFIG: &str = "base_url = \"https://news.example.org/\"\ndebounce_ms = 30\nsettle_max_ms = 1500\nverify_interval_secs = 3600\nshutdown_grace_secs = 5\n";

/// The daemon under test.
pub struct TestDaemon {
    pub ws: Workspace,
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The admin listener's address (`/metrics`, `/stats`), when it runs.
    pub admin: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// First header of that name (case-insensitive), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TestDaemon {
    /// Starts `herald --config herald.toml serve` in `ws` (writing
    /// [`FAST_CONFIG`] plus `extra_config` as herald.toml) and waits for the
    /// listening line.
    pub fn start(ws: Workspace, extra_config: &str) -> TestDaemon {
        Self::start_with(ws, extra_config, |_| {})
    }

    /// As [`TestDaemon::start`], with a hook to adjust the command.
    pub fn start_with(
        ws: Workspace,
        extra_config: &str,
        adjust: impl FnOnce(&mut Command),
    ) -> TestDaemon {
        let mut cmd = Command::new(HERALD);
        cmd.args(["--config", "herald.toml", "serve"]);
        adjust(&mut cmd);
        Self::start_cmd(ws, extra_config, cmd)
    }

    /// Runs `cmd` (which must end up exec'ing `herald --config herald.toml
    /// serve`) in the workspace, with a clean environment, stderr captured.
    pub fn start_cmd(ws: Workspace, extra_config: &str, mut cmd: Command) -> TestDaemon {
        // Keys the test sets itself win over the defaults here (the whole
        // key: setting `admin_listen` keeps the default `listen`). The
        // admin listener on a free port too, so tests run side by side.
        let key = |l: &str| l.split('=').next().map(str::trim).unwrap_or("").to_string();
        let defaults: String =
            format!("{FAST_CONFIG}listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n")
                .lines()
                .filter(|l| {
                    !extra_config
                        .lines()
                        .any(|e| e.contains('=') && key(e) == key(l))
                })
                .map(|l| format!("{l}\n"))
                .collect();
        ws.write("herald.toml", format!("{defaults}{extra_config}"));
        cmd.current_dir(ws.root())
            .env_remove("RUST_LOG")
            .env_remove("HERALD_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // A test that sets NOTIFY_SOCKET itself keeps it; otherwise one
        // inherited from the environment must not reach the daemon.
        if !cmd.get_envs().any(|(k, _)| k == "NOTIFY_SOCKET") {
            cmd.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC");
        }
        let mut child = cmd.spawn().expect("spawn herald serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut d = TestDaemon {
            ws,
            child: Some(child),
            addr: "127.0.0.1:1".parse().unwrap(),
            admin: None,
            log,
        };
        let line = d.wait_log("listening on http://");
        let addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .expect("address in log line");
        d.addr = addr.parse().expect("socket address");
        // Logged before the public address, when it runs.
        d.admin = d
            .log()
            .split("admin interface on http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok());
        d
    }

    /// GET from the admin listener.
    pub fn admin_get(&self, path: &str) -> Resp {
        http(
            self.admin.expect("the admin listener runs"),
            "GET",
            path,
            &[],
        )
    }

    /// Polls `path` on the admin listener until `ok(response)` holds.
    pub fn admin_poll(&self, path: &str, what: &str, ok: impl Fn(&Resp) -> bool) -> Resp {
        let start = Instant::now();
        loop {
            let r = self.admin_get(path);
            if ok(&r) {
                return r;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "admin {path}: {what} not seen within {DEADLINE:?}; last body:\n{}\nlog:\n{}",
                r.text(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`; returns that line.
    pub fn wait_log(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.log().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "herald exited ({st}) before logging {needle:?}:\n{}",
                        self.log()
                    );
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no log line with {needle:?} within {DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// GET (or another method) with extra headers.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        http(self.addr, method, path, headers)
    }

    /// GET.
    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[])
    }

    /// Polls `path` until `ok(response)` holds; returns that response.
    pub fn poll(&self, path: &str, what: &str, ok: impl Fn(&Resp) -> bool) -> Resp {
        self.poll_with(path, &[], what, ok)
    }

    /// [`TestDaemon::poll`] with request headers.
    pub fn poll_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        what: &str,
        ok: impl Fn(&Resp) -> bool,
    ) -> Resp {
        let start = Instant::now();
        loop {
            let r = self.request("GET", path, headers);
            if ok(&r) {
                return r;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{path}: {what} not seen within {DEADLINE:?}; last body:\n{}\nlog:\n{}",
                r.text(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `/feed.json` until its item titles equal `titles` (newest first).
    pub fn wait_titles(&self, titles: &[&str]) -> serde_json::Value {
        let want: Vec<String> = titles.iter().map(|s| s.to_string()).collect();
        let r = self.poll("/feed.json", &format!("titles {want:?}"), |r| {
            r.status == 200 && feed_titles(&r.body) == want
        });
        serde_json::from_slice(&r.body).expect("feed.json is JSON")
    }

    /// [`TestDaemon::stop`], handing back the workspace (to start again
    /// on the same files, state and output).
    pub fn stop_keep(mut self) -> (String, Workspace) {
        let ws = std::mem::replace(&mut self.ws, Workspace::new());
        (self.stop(), ws)
    }

    /// SIGTERM and wait for exit; asserts exit code 0 within the deadline.
    pub fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "herald did not stop after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // Let the log reader drain.
        std::thread::sleep(Duration::from_millis(50));
        let log = self.log();
        assert_eq!(
            status.code(),
            Some(0),
            "graceful shutdown exit code; log:\n{log}"
        );
        assert!(log.contains("stopped"), "no 'stopped' line:\n{log}");
        log
    }

    /// Waits for the process to exit by itself; returns its exit code.
    pub fn wait_exit(mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                std::thread::sleep(Duration::from_millis(50));
                return (s.code(), self.log());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "herald did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl TestDaemon {
    /// Kills the daemon at once (SIGKILL: no shutdown, nothing saved) and
    /// hands back its workspace, to start another daemon on the same files.
    pub fn kill(mut self) -> Workspace {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::mem::replace(&mut self.ws, Workspace::new())
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits, polling, until `ok` holds; fails the test after [`DEADLINE`]
/// (for what the daemon does after serving, such as writing `feeds/`).
pub fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Titles of a JSON Feed document's items, in order (empty if unparseable).
pub fn feed_titles(body: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v["items"].as_array().map_or_else(Vec::new, |items| {
        items
            .iter()
            .map(|i| i["title"].as_str().unwrap_or("").to_string())
            .collect()
    })
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_response(&raw, method == "HEAD")
}

/// Parses a whole HTTP/1.1 response (Content-Length bodies only: Herald
/// always sends one).
pub fn parse_response(raw: &[u8], head: bool) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head_text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let body = raw[split + 4..].to_vec();
    let r = Resp {
        status,
        headers,
        body,
    };
    if !head && status != 304 {
        let len: usize = r.header("content-length").parse().expect("content-length");
        assert_eq!(r.body.len(), len, "body length matches Content-Length");
    }
    r
}

/// Gunzips a body.
pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// Decompresses a brotli body.
pub fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

/// A scraped column with a date line, a category, a title and one paragraph.
pub fn column(date: &str, category: &str, title: &str, body: &str) -> String {
    format!("{date}\n\n{category}\n\n  • views:12\n\n{title}\n\nimage\n\n{body}\n\nRecommend\n\nTeaser\n\nLatest")
}

/// GET `path` over HTTP/2 with prior knowledge (h2c): status, content
/// type and body.
pub fn h2_get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri(format!("http://{addr}{path}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, ct, body)
    })
}
