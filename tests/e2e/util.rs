//! Shared helpers for the end-to-end tests: a temporary workspace with
//! `content/`, `feeds/` and `state/`, the real `herald` binary run inside
//! it with a deadline, fixture copying, and readers for what it wrote.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The binary under test.
pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// Longest a single `herald build`/`check` (or external tool) may take.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// `tests/fixtures/` of this checkout.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A temporary directory laid out the way Herald's defaults expect:
/// `content/`, `feeds/`, `state/` side by side. Removed on drop.
pub struct Workspace {
    dir: tempfile::TempDir,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything printed to stdout.
    pub stdout: String,
    /// Everything printed to stderr, colour codes removed.
    pub stderr: String,
}

impl Workspace {
    /// A fresh workspace with empty `content/`, `feeds/` and `state/`.
    pub fn new() -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("herald-e2e-")
            .tempdir()
            .expect("create temp dir");
        for d in ["content", "feeds", "state"] {
            fs::create_dir(dir.path().join(d)).expect("create workspace dir");
        }
        Workspace { dir }
    }

    /// The workspace root (the binary's working directory).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `root/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Writes `rel` (relative to the root), creating parent directories.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent dir");
        }
        fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Copies `tests/fixtures/<fixture>` (a file or a directory tree) to
    /// `root/<to>`.
    pub fn copy_fixture(&self, fixture: &str, to: &str) {
        copy_tree(&fixtures().join(fixture), &self.path(to));
    }

    /// Reads `rel` as UTF-8 text.
    pub fn read(&self, rel: &str) -> String {
        let p = self.path(rel);
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// Reads `rel` as bytes.
    pub fn read_bytes(&self, rel: &str) -> Vec<u8> {
        let p = self.path(rel);
        fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// True when `rel` exists.
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// Runs `herald <args>` in the workspace root with a clean environment
    /// (no `RUST_LOG`, `HERALD_CONFIG`, `JOURNAL_STREAM`; colours off) and a
    /// deadline; the test fails if the binary hangs.
    pub fn herald(&self, args: &[&str]) -> Run {
        run_in(self.root(), args)
    }

    /// `herald --config herald.toml <args>`: the workspace's config file.
    pub fn herald_cfg(&self, args: &[&str]) -> Run {
        let mut all = vec!["--config", "herald.toml"];
        all.extend_from_slice(args);
        self.herald(&all)
    }
}

/// Runs the binary in `cwd`; see [`Workspace::herald`].
pub fn run_in(cwd: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(HERALD);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("HERALD_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .env("NO_COLOR", "1");
    run_command(cmd)
}

/// Runs any command to completion with no input and a deadline, capturing
/// both streams; the test fails if it hangs.
pub fn run_command(mut cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    let out_dir = tempfile::tempdir().expect("temp dir for output");
    let out_path = out_dir.path().join("stdout");
    let err_path = out_dir.path().join("stderr");
    // Files rather than pipes: nothing can block on a full pipe buffer.
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for child") {
            break s;
        }
        if started.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&fs::read(&out_path).expect("read stdout")).into_owned(),
        stderr: strip_ansi(&String::from_utf8_lossy(
            &fs::read(&err_path).expect("read stderr"),
        )),
    }
}

impl Run {
    /// Panics with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The messages of the log lines at `level` (`ERROR`, `WARN`, `INFO`),
    /// without timestamp and level, in order.
    pub fn log(&self, level: &str) -> Vec<String> {
        let tag = format!(" {level} ");
        self.stderr
            .lines()
            .filter_map(|l| {
                let l = format!(" {}", l.trim_start());
                l.find(&tag).map(|i| l[i + tag.len()..].to_string())
            })
            .collect()
    }

    /// The value of `key=value` in the `build finished` log line.
    pub fn build_field(&self, key: &str) -> String {
        let line = self
            .log("INFO")
            .into_iter()
            .find(|l| l.starts_with("build finished"))
            .unwrap_or_else(|| panic!("no `build finished` line in\n{}", self.stderr));
        let prefix = format!("{key}=");
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
    }
}

/// Removes terminal colour sequences (`ESC [ … m`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Copies a file or a directory tree, keeping every file's bytes.
pub fn copy_tree(from: &Path, to: &Path) {
    let meta = fs::metadata(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if meta.is_dir() {
        fs::create_dir_all(to).expect("create dir");
        for entry in fs::read_dir(from).expect("read fixture dir") {
            let entry = entry.expect("fixture dir entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).expect("create parent dir");
        }
        fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// Every file below `dir` (relative path → bytes).
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut |rel, p| {
        // Gone between listing and reading: removed by a publish under
        // way (a removed page, a temp file renamed into place).
        match fs::read(p) {
            Ok(b) => {
                out.insert(rel, b);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", p.display()),
        }
    });
    out
}

/// Every file below `dir` (relative path → inode and mtime): a file that
/// was rewritten (even with the same bytes, via temp + rename) changes.
pub fn stamps(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut |rel, p| {
        // A file gone between listing and stat was a temp file of a write
        // under way (renamed into place): not a file of the output.
        let m = match fs::metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => panic!("{}: {e}", p.display()),
        };
        out.insert(rel, (m.ino(), m.modified().expect("mtime")));
    });
    out
}

fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(String, &Path)) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        // A directory below the root removed while it is walked (the
        // files of a removed page go, then their directory).
        Err(e) if dir != root && e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(root, &p, f);
        } else {
            let rel = p
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            f(rel, &p);
        }
    }
}

/// A newsboat with a home of its own (`urls`, an empty `config`, its
/// `cache.db`, its own XDG directories), so no setting of the machine's
/// user and no other test's cache can change what it does. newsboat keys
/// articles by guid across every feed of one cache: feeds checked apart
/// each need their own.
pub struct Newsboat {
    /// The home directory, removed when dropped.
    pub home: tempfile::TempDir,
}

impl Newsboat {
    /// A home whose `urls` file holds `urls`.
    pub fn new(urls: &str) -> Newsboat {
        let home = tempfile::tempdir().expect("newsboat home");
        fs::write(home.path().join("urls"), urls).expect("urls");
        fs::write(home.path().join("config"), "").expect("config");
        Newsboat { home }
    }

    /// Its `urls` file (what `-i` imports into).
    pub fn urls(&self) -> PathBuf {
        self.home.path().join("urls")
    }

    /// Its SQLite cache.
    pub fn cache(&self) -> PathBuf {
        self.home.path().join("cache.db")
    }

    /// Runs `newsboat` with `args` on this home.
    pub fn run(&self, args: &[&str]) -> Run {
        let h = self.home.path();
        let mut cmd = Command::new("newsboat");
        cmd.arg("-u")
            .arg(self.urls())
            .arg("-C")
            .arg(h.join("config"))
            .arg("-c")
            .arg(self.cache())
            .args(args)
            .env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join("xdg-config"))
            .env("XDG_DATA_HOME", h.join("xdg-data"))
            .env("XDG_CACHE_HOME", h.join("xdg-cache"))
            .env("no_proxy", "127.0.0.1");
        run_command(cmd)
    }
}

/// Whether an external program can be run. When it cannot: under CI
/// (`CI` set) the test fails with what to install; elsewhere it prints a
/// skip note and the caller returns, so `cargo test` passes on a bare
/// machine.
pub fn have_tool(program: &str, probe: &[&str], install: &str) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = format!("`{program}` is not available: install it with `{install}`");
        if std::env::var_os("CI").is_some() {
            panic!("{msg} (CI is set, so this check may not be skipped)");
        }
        eprintln!("SKIPPED: {msg}");
    }
    ok
}
