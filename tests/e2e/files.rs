//! No article file can stop Herald: dates no format can show, special
//! files, huge and deeply nested files, files that become readable,
//! symlinks and loops, and what the log quotes of a bad file. The real
//! binary on real files (and, for permissions, a real unprivileged user).

use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Instant;

use crate::live::{column, TestDaemon, DEADLINE};
use crate::util::Workspace;

fn col(title: &str, day: u32) -> String {
    column(
        &format!("May {day}, 2025, noon"),
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

fn md(front: &str, body: &str) -> String {
    format!("---\n{front}\n---\n{body}\n")
}

/// Lines of `log` containing `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// The unprivileged user the permission tests run Herald as.
const NOBODY: u32 = 65534;

/// True when running as root (needed to run Herald as another user);
/// otherwise prints why the calling test is skipped.
fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping {test}: needs root to run herald as the unprivileged user nobody");
    }
    root
}

/// A workspace Herald can use as `nobody`: the tree readable by all, the
/// output and state directories owned by `nobody`.
fn ws_for_nobody(files: &[(&str, String)]) -> Workspace {
    let ws = ws_with(files);
    chmod(ws.root(), 0o755);
    chmod(&ws.path("content"), 0o755);
    for d in ["feeds", "state"] {
        std::os::unix::fs::chown(ws.path(d), Some(NOBODY), Some(NOBODY)).expect("chown");
    }
    ws
}

/// Dates no format can show (a negative year, an `updated` past 9999 in
/// UTC, a five-digit year) are each their file's error with file, line
/// and reason while `serve` runs: the other articles stay published, later
/// edits are still published, `/healthz` stays ok, and a restart serves
/// again; `build` reports them and exits 1 (not 101).
#[test]
fn dates_no_format_can_show_are_file_errors() {
    let ws = ws_with(&[("a.txt", col("A", 1))]);
    let mut d = TestDaemon::start(ws, "");
    d.wait_titles(&["A"]);
    d.ws.write(
        "content/neg.md",
        md("title: \"x\"\ndate: \"-0001-06-01 00:00:00+00:00\"", "b"),
    );
    d.ws.write(
        "content/late.md",
        md(
            "title: \"y\"\ndate: 2020-01-01\nupdated: 9999-12-31T23:59:59-12:00",
            "b",
        ),
    );
    d.ws.write(
        "content/far.md",
        md("title: \"z\"\ndate: \"+10000-01-01 00:00:00+00:00\"", "b"),
    );
    d.wait_log("neg.md:3: `date`");
    d.wait_log("late.md:4: `updated`");
    d.wait_log("far.md:3:");
    d.ws.write("content/b.txt", col("B", 2));
    d.wait_titles(&["B", "A"]);
    assert_eq!(d.get("/healthz").status, 200);
    let (log, ws) = d.stop_keep();
    assert!(log.contains("outside the years 0001 to 9999"), "{log}");
    assert!(!log.contains("internal error"), "{log}");

    let mut d = TestDaemon::start(ws, "");
    d.wait_titles(&["B", "A"]);
    d.wait_log("neg.md:3: `date`");
    let (_, ws) = d.stop_keep();

    let run = ws.herald_cfg(&["build"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    for f in ["neg.md:3:", "late.md:4:", "far.md:3:"] {
        assert!(run.stderr.contains(f), "{f} missing:\n{}", run.stderr);
    }
}

/// A FIFO, a socket and a symlink to a device with article names are
/// skipped with one message each and never opened for reading (a FIFO
/// would block the loop, `/dev/zero` never ends); a directory named like
/// an article is walked as a directory. `serve` keeps publishing and stops
/// on SIGTERM; `build` and `check` finish.
#[test]
fn special_files_are_skipped_not_read() {
    let ws = ws_with(&[("a.txt", col("A", 1)), ("dir.md/in.txt", col("In", 3))]);
    let mut d = TestDaemon::start(ws, "follow_external_symlinks = true\n");
    d.wait_titles(&["In", "A"]);
    let fifo = std::ffi::CString::new(
        d.ws.path("content/p.txt")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(d.ws.path("content/s.md")).unwrap();
    symlink("/dev/zero", d.ws.path("content/z.txt")).unwrap();
    d.wait_log("p.txt: a FIFO");
    d.wait_log("s.md: a socket");
    d.wait_log("z.txt: symlink to a character device");
    d.ws.write("content/b.txt", col("B", 2));
    d.wait_titles(&["In", "B", "A"]);
    let (log, ws) = d.stop_keep();
    for what in [
        "p.txt: a FIFO",
        "s.md: a socket",
        "z.txt: symlink to a character device",
    ] {
        assert_eq!(count(&log, what), 1, "{what} once:\n{log}");
    }
    assert!(
        log.contains("dir.md: a directory, not an article file"),
        "{log}"
    );

    for cmd in ["build", "check"] {
        let run = ws.herald_cfg(&[cmd]);
        assert_eq!(run.code, Some(0), "{cmd}: {run:?}");
        assert!(
            run.stderr.contains("p.txt: a FIFO"),
            "{cmd}: {}",
            run.stderr
        );
    }
}

/// A file larger than `max_file_bytes` is rejected naming its size and
/// the limit; a file within it is published.
#[test]
fn files_over_max_file_bytes_are_rejected() {
    let ws = ws_with(&[
        ("small.txt", col("Small", 1)),
        ("big.txt", col(&"word ".repeat(1000), 2)),
    ]);
    ws.write("herald.toml", "max_file_bytes = 2000\n");
    let len = std::fs::metadata(ws.path("content/big.txt")).unwrap().len();
    assert!(len > 2000);
    let run = ws.herald_cfg(&["check"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let want =
        format!("big.txt:1: file is {len} bytes; at most 2000 are read (limit `max_file_bytes`)");
    assert!(run.stdout.contains(&want), "{want}:\n{}", run.stdout);
    assert!(run.stdout.contains("1 article ok"), "{}", run.stdout);
}

/// Each pathological input class at 1 MB — thousands of categories or
/// tags, YAML flow nesting, YAML aliases, nested raw HTML, an element with
/// thousands of attributes, nested blockquotes — is
/// refused with the limit it crosses, before a parser whose cost grows
/// with it runs (the run's deadline catches one that takes its time; the
/// timings are in benches/README.md); a plain 1 MB article is published.
#[test]
fn pathological_inputs_at_one_megabyte_are_refused_by_their_limit() {
    const MB: usize = 1 << 20;
    let cats: Vec<String> = (0..MB / 12).map(|i| format!("cat{i:07}")).collect();
    let tags = cats.join(", ");
    let plain = "Some words of a long article. ".repeat(MB / 30);
    let some = cats[..15_000].join(", ");
    // Billion laughs: nine levels of anchors, each ten aliases of the one
    // before, and `tags` an alias of the last (expanded, it is 10^9 tags).
    let mut laughs = String::from(
        "title: l\ndate: 2025-05-01\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for l in 1..9 {
        let items = vec![format!("*l{}", l - 1); 10].join(", ");
        laughs.push_str(&format!("l{l}: &l{l} [{items}]\n"));
    }
    laughs.push_str("tags: *l8");
    let files = [
        (
            "cats.md",
            md(
                &format!("title: c\ndate: 2025-05-01\ncategories: [{tags}]"),
                "b",
            ),
            "limit `max_front_matter_bytes`",
        ),
        (
            "cats-15000.md",
            md(
                &format!("title: c\ndate: 2025-05-01\ncategories: [{some}]"),
                "b",
            ),
            "limit `max_labels`",
        ),
        (
            "tags.md",
            md(&format!("title: t\ndate: 2025-05-01\ntags: [{tags}]"), "b"),
            "limit `max_front_matter_bytes`",
        ),
        (
            "flow.md",
            md(
                &format!("title: f\ndate: 2025-05-01\nx: {}", "[".repeat(MB)),
                "b",
            ),
            "limit `max_front_matter_bytes`",
        ),
        (
            "flow-small.md",
            md(
                &format!("title: f\ndate: 2025-05-01\nx: {}", "[".repeat(60_000)),
                "b",
            ),
            "limit `max_nesting`",
        ),
        (
            "divs.md",
            md("title: d\ndate: 2025-05-01", &"<div>".repeat(MB / 5)),
            "raw HTML elements nest",
        ),
        (
            "quotes.md",
            md("title: q\ndate: 2025-05-01", &"> ".repeat(MB / 2)),
            "Markdown blocks and inlines nest",
        ),
        ("laughs.md", md(&laughs, "b"), "YAML alias"),
        (
            "attributes.md",
            md(
                "title: a\ndate: 2025-05-01",
                &format!("<div{}>x</div>", " a".repeat(MB / 3)),
            ),
            "attributes; at most 128",
        ),
        ("plain.md", md("title: p\ndate: 2025-05-01", &plain), ""),
    ];
    let ws = Workspace::new();
    for (name, text, _) in &files {
        ws.write(&format!("content/{name}"), text);
    }
    ws.write(
        "herald.toml",
        "max_file_bytes = 4194304\nmax_front_matter_bytes = 200000\n",
    );
    let run = ws.herald_cfg(&["check"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    for (name, _, want) in &files {
        let line = run.stdout.lines().find(|l| l.contains(&format!("{name}:")));
        match (*want, line) {
            ("", None) => {}
            ("", Some(l)) => panic!("{name} should be published: {l}"),
            (w, Some(l)) => assert!(l.contains(w), "{name}: {l}"),
            (w, None) => panic!("{name}: no rejection ({w}):\n{}", run.stdout),
        }
    }
    assert!(run.stdout.contains("1 article ok"), "{}", run.stdout);
}

/// Fifty categories and tags together are within the default limit;
/// fifty-one are refused with a message naming both counts.
#[test]
fn label_limit_is_exact() {
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ws = ws_with(&[
        (
            "ok.md",
            md(
                &format!(
                    "title: ok\ndate: 2025-05-01\ncategories: [{}]\ntags: [t]",
                    list(49)
                ),
                "b",
            ),
        ),
        (
            "over.md",
            md(
                &format!(
                    "title: over\ndate: 2025-05-01\ncategories: [{}]\ntags: [t, u]",
                    list(49)
                ),
                "b",
            ),
        ),
    ]);
    let run = ws.herald(&["check"]);
    assert!(
        run.stdout.contains(
            "over.md:4: 49 categories and 2 tags; an article may have at most 50 together"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("1 article ok, 1 file rejected"),
        "{}",
        run.stdout
    );
}

/// A file Herald cannot read (mode 000, as an editor copying with umask
/// 777 leaves it) is reported, and published as soon as a `chmod` makes it
/// readable — the attribute change alone, size, mtime and inode unchanged.
#[test]
fn a_file_that_becomes_readable_is_published() {
    if !root_or_skip("a_file_that_becomes_readable_is_published") {
        return;
    }
    let ws = ws_for_nobody(&[("b.txt", col("B", 2))]);
    let mut d = TestDaemon::start_with(ws, "", |c| {
        c.uid(NOBODY).gid(NOBODY);
    });
    d.wait_titles(&["B"]);
    let p = d.ws.path("content/a.txt");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&p)
        .unwrap();
    std::io::Write::write_all(&mut f, col("A", 1).as_bytes()).unwrap();
    drop(f);
    d.wait_log("a.txt:1: cannot read: Permission denied");
    chmod(&p, 0o644);
    d.wait_titles(&["B", "A"]);
    d.stop();
}

/// A file that could not be read and becomes readable without any event
/// inside the content directory (its target outside it changes) is
/// published by the verification pass.
#[test]
fn verification_pass_retries_unreadable_files() {
    if !root_or_skip("verification_pass_retries_unreadable_files") {
        return;
    }
    let ws = ws_for_nobody(&[("b.txt", col("B", 2))]);
    ws.write("outside/a.txt", col("A", 1));
    chmod(&ws.path("outside"), 0o755);
    chmod(&ws.path("outside/a.txt"), 0o600);
    symlink(ws.path("outside/a.txt"), ws.path("content/a.txt")).unwrap();
    let mut d = TestDaemon::start_with(
        ws,
        "follow_external_symlinks = true\nverify_interval_secs = 1\n",
        |c| {
            c.uid(NOBODY).gid(NOBODY);
        },
    );
    d.wait_titles(&["B"]);
    d.wait_log("a.txt:1: cannot read: Permission denied");
    chmod(&d.ws.path("outside/a.txt"), 0o644);
    d.wait_titles(&["B", "A"]);
    d.wait_log("verification pass found changes");
    d.stop();
}

/// A directory symlink back to an ancestor is reported once and each real
/// file is read once, under its real path — not the whole tree again per
/// alias; the report is not repeated by later verification passes, and
/// comes back if the loop is removed and made again.
#[test]
fn symlink_loops_read_each_file_once_and_are_reported_once() {
    let files: Vec<(String, String)> = (1..=20)
        .map(|i| {
            (
                format!("sub/a{i:02}.txt"),
                col(&format!("A{i:02}"), 1 + i % 28),
            )
        })
        .collect();
    let ws = Workspace::new();
    for (name, text) in &files {
        ws.write(&format!("content/{name}"), text);
    }
    symlink(ws.path("content"), ws.path("content/sub/up")).unwrap();
    symlink(ws.path("content/sub"), ws.path("content/alias")).unwrap();
    let run = ws.herald(&["check"]);
    assert!(
        run.stdout.contains("20 articles ok, 0 files rejected"),
        "{run:?}"
    );
    assert_eq!(
        count(&run.stderr, "up: same directory as"),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(
        count(&run.stderr, "alias: same directory as"),
        1,
        "{}",
        run.stderr
    );

    let d = TestDaemon::start(ws, "verify_interval_secs = 1\n");
    let feed = d.poll("/feed.json", "20 items", |r| {
        crate::live::feed_titles(&r.body).len() == 20
    });
    assert!(!feed.text().contains("/up/") && !feed.text().contains("alias"));
    let rescans = |d: &TestDaemon| {
        let m = d.admin_get("/metrics").text();
        m.lines()
            .find_map(|l| l.strip_prefix("herald_rescans_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let start = Instant::now();
    while rescans(&d) < 3 {
        assert!(
            start.elapsed() < DEADLINE,
            "no verification passes:\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(count(&d.log(), "up: same directory as"), 1, "{}", d.log());
    std::fs::remove_file(d.ws.path("content/sub/up")).unwrap();
    let before = rescans(&d);
    while rescans(&d) < before + 2 {
        assert!(start.elapsed() < DEADLINE * 2, "{}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    symlink(d.ws.path("content"), d.ws.path("content/sub/up")).unwrap();
    let start = Instant::now();
    while count(&d.log(), "up: same directory as") < 2 {
        assert!(
            start.elapsed() < DEADLINE,
            "loop not reported again:\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    d.stop();
}

/// A symlink to an article outside the content directory is refused by
/// default, with a message naming the setting that allows it.
#[test]
fn symlinks_leaving_the_content_directory_are_refused_by_default() {
    let ws = ws_with(&[("a.txt", col("A", 1))]);
    ws.write("elsewhere/e.txt", col("Elsewhere", 2));
    symlink(ws.path("elsewhere/e.txt"), ws.path("content/e.txt")).unwrap();
    let run = ws.herald(&["check"]);
    assert!(run.stdout.contains("1 article ok"), "{run:?}");
    assert!(
        run.stderr.contains("e.txt: symlink to")
            && run.stderr.contains(
                "outside the content directory: refused (set `follow_external_symlinks = true`"
            ),
        "{}",
        run.stderr
    );
}

/// Rejecting a file that is not an article (a password file behind a
/// symlink) quotes at most a short escaped excerpt of it, never its
/// lines.
#[test]
fn log_quotes_only_a_short_excerpt_of_a_bad_file() {
    let ws = ws_with(&[("a.txt", col("A", 1))]);
    let passwd = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nsecret-line:x:3:3::/home/secret:/bin/sh\n";
    ws.write("elsewhere/passwd", passwd);
    symlink(ws.path("elsewhere/passwd"), ws.path("content/passwd.txt")).unwrap();
    ws.write("herald.toml", "follow_external_symlinks = true\n");
    let run = ws.herald_cfg(&["check"]);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("passwd.txt:1:"))
        .unwrap_or_else(|| panic!("no rejection:\n{}", run.stdout));
    assert!(
        line.contains("invalid date line \"root:x:0:0:root:/root:/bin/bash daemon:x…\""),
        "{line}"
    );
    for leaked in ["nologin", "secret-line", "bin:x:2"] {
        assert!(
            !run.stdout.contains(leaked) && !run.stderr.contains(leaked),
            "{leaked} leaked:\n{run:?}"
        );
    }
}

/// Raw HTML the sanitiser has to move (content inside a table) gives one
/// warning naming the file, in `build` and in `serve`, instead of one
/// anonymous line per misplaced node.
#[test]
fn sanitiser_warnings_name_the_file_once() {
    let table = "<table><tr><td>a</td></tr>stray<div>x</div><p>y</p></table>";
    let ws = ws_with(&[("t.md", md("title: t\ndate: 2025-05-01", table))]);
    let run = ws.herald(&["build"]);
    assert_eq!(
        count(&run.stderr, "t.md:5: raw HTML puts content inside a table"),
        1,
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("foster parenting"), "{}", run.stderr);
    let mut d = TestDaemon::start(ws, "");
    d.wait_log("t.md:5: raw HTML puts content inside a table");
    d.ws.write("content/b.txt", col("B", 2));
    d.wait_titles(&["B", "t"]);
    let log = d.stop();
    assert_eq!(
        count(&log, "raw HTML puts content inside a table"),
        1,
        "{log}"
    );
    assert!(!log.contains("foster parenting"), "{log}");
}
