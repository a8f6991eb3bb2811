//! Nothing that looks like an article is skipped without a word: a file
//! name that is not UTF-8, a front-matter `id` another file holds, and an
//! article nested past the system's path limit are each a named problem
//! in `herald check` (exit 1) and in `serve`'s log.

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::live::TestDaemon;
use crate::util::Workspace;

fn md(title: &str, extra: &str) -> String {
    format!("---\ntitle: {title}\ndate: 2025-05-01\n{extra}---\nBody of {title}.\n")
}

/// Writes `content/<24 directories of 200 bytes>/deep.md`: a path past
/// PATH_MAX (4096), made one directory at a time (no single call could
/// name it).
fn write_too_deep(ws: &Workspace) -> usize {
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    let mut dir = openat(
        rustix::fs::CWD,
        ws.path("content"),
        OFlags::DIRECTORY | OFlags::RDONLY,
        Mode::empty(),
    )
    .unwrap();
    let name = "d".repeat(200);
    for _ in 0..24 {
        mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        dir = openat(
            &dir,
            name.as_str(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
    }
    let f = openat(
        &dir,
        "deep.md",
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    rustix::io::write(&f, md("Deep", "").as_bytes()).unwrap();
    ws.path("content").as_os_str().len() + 24 * 201 + 8
}

fn workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("content/good.md", md("Good", ""));
    ws.write("content/a-first.md", md("First", "id: urn:example:one\n"));
    ws.write("content/b-second.md", md("Second", "id: urn:example:one\n"));
    let latin1 = ws.path("content").join(OsStr::from_bytes(b"caf\xe9.md"));
    std::fs::write(latin1, md("Latin-1 name", "")).unwrap();
    let len = write_too_deep(&ws);
    assert!(len > 4096);
    ws
}

/// `check` names each problem and exits 1; `serve` logs each as an error
/// and publishes the rest.
#[test]
fn silent_skips_are_named_problems() {
    let ws = workspace();
    let run = ws.herald(&["check"]);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, Some(1), "{out}");
    assert!(
        out.contains("caf\u{FFFD}.md") && out.contains("not valid UTF-8"),
        "{out}"
    );
    assert!(
        out.contains("b-second.md")
            && out.contains("urn:example:one")
            && out.contains("a-first.md"),
        "{out}"
    );
    assert!(out.contains("deep.md") || out.contains("PATH_MAX"), "{out}");
    assert!(out.contains("3 files rejected"), "{out}");

    let mut d = TestDaemon::start(ws, "");
    d.poll("/feed.json", "the two good articles", |r| {
        let t = crate::live::feed_titles(&r.body);
        t.len() == 2 && t.contains(&"Good".to_string()) && t.contains(&"First".to_string())
    });
    let line = d.wait_log("not valid UTF-8");
    assert!(line.contains("ERROR"), "{line}");
    let line = d.wait_log("urn:example:one");
    assert!(
        line.contains("ERROR") && line.contains("b-second.md"),
        "{line}"
    );
    let line = d.wait_log("PATH_MAX");
    assert!(line.contains("ERROR"), "{line}");
    // While serving: a copy keeping the id of a published article.
    d.ws.write("content/c-copy.md", md("Copy", "id: urn:example:one\n"));
    let line = d.wait_log("c-copy.md");
    assert!(
        line.contains("ERROR") && line.contains("a-first.md"),
        "{line}"
    );
    let again = std::ffi::OsString::from_vec(b"na\xefve.txt".to_vec());
    std::fs::write(d.ws.path("content").join(again), "x").unwrap();
    let line = d.wait_log("na\u{FFFD}ve.txt");
    assert!(line.contains("not valid UTF-8"), "{line}");
    let t = crate::live::feed_titles(&d.get("/feed.json").body);
    assert_eq!(t.len(), 2, "{t:?}");
    d.stop();
}
