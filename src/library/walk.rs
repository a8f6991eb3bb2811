//! The walk of the content tree: which paths are article files, each real
//! file once, and what was skipped and why.
//!
//! Policy (README "Symlinks and special files"):
//! - Real directories are walked first, in name order; symlinks met on the
//!   way are followed afterwards, so a file reachable both directly and
//!   through a link is known by its real path.
//! - Every directory and file is identified by device and inode: a link to
//!   a directory already walked (a loop back to an ancestor, or an alias of
//!   a sibling) is skipped with one message, and a file reachable under two
//!   names (symlink or hard link) is read once.
//! - A symlink whose target lies outside the content directory is refused
//!   unless `follow_external_symlinks` is set.
//! - Only regular files are articles: FIFOs, sockets and devices with an
//!   article's name are skipped with a message (opening a FIFO would block,
//!   reading a device may never end); a directory with an article's name is
//!   walked as a directory.
//! - Dot-directories (`.git/` …) are never content.
//! - What looks like an article but cannot be one is a problem, named
//!   like a file that fails to parse (`herald check` exits 1): a name
//!   with an article's extension that is not UTF-8 (Herald could give it
//!   no slug or link), and a directory or file whose path is longer than
//!   the system lets a program open (`PATH_MAX`).

use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap as HashMap;

use crate::parse;

/// A file's identity on this machine.
pub(crate) type FileId = (u64, u64);

/// What a walk found.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// Article files, real paths first (each in name order), then those
    /// reached through symlinks.
    pub files: Vec<PathBuf>,
    /// Beside each of `files`, what the walk's own `stat` of a regular
    /// file found (`None` for one reached through a symlink): the
    /// library need not look again.
    pub stamps: Vec<Option<super::Stamp>>,
    /// One line per thing skipped, naming the path and why.
    pub skipped: Vec<String>,
    /// Articles that cannot be read, as errors (see the module doc).
    pub problems: Vec<crate::parse::ParseError>,
}

/// Longest path the system opens, bytes with the closing NUL (Linux).
pub(crate) const PATH_MAX: usize = libc::PATH_MAX as usize;

/// The problem with `path`'s name, if it has an article's extension but
/// is not UTF-8.
pub(crate) fn bad_name(path: &Path) -> Option<crate::parse::ParseError> {
    let name = path.file_name()?.as_encoded_bytes();
    if name.first().is_some_and(|b| matches!(b, b'.' | b'#'))
        || name.last() == Some(&b'~')
        || std::str::from_utf8(name).is_ok()
    {
        return None;
    }
    let article = [&b".txt"[..], b".md", b".markdown"]
        .iter()
        .any(|ext| name.ends_with(ext));
    article.then(|| {
        crate::parse::ParseError::new(
            path,
            1,
            "file name is not valid UTF-8, so it can have no slug or link: \
             rename the file (in UTF-8)",
        )
    })
}

/// The problem with `path`, `len` bytes long and past [`PATH_MAX`].
fn too_long(path: &Path, what: &str) -> crate::parse::ParseError {
    crate::parse::ParseError::new(
        path,
        1,
        format_args!(
            "{what} nested too deep: its path is {} bytes, more than the system \
             opens (PATH_MAX, {PATH_MAX}), so its articles cannot be read: move them up",
            path.as_os_str().len()
        ),
    )
}

/// How symlinks leaving the content directory are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Policy {
    /// Follow symlinks to targets outside the content directory.
    pub follow_external: bool,
    /// List every regular file, not only article files (for the
    /// fingerprint of the tree, which files articles reference are part
    /// of).
    pub all_files: bool,
}

/// What a non-directory, non-regular file is, for messages.
pub(crate) fn special_kind(t: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        None
    }
}

/// The message for an article path that is not a regular file (`t`, the
/// type it resolves to), the same whether the walk or an event found it.
pub(crate) fn not_regular(path: &Path, t: &std::fs::FileType) -> String {
    let what = special_kind(t).unwrap_or("a directory");
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if link {
        format!(
            "{}: symlink to {what}, not a regular file: skipped",
            path.display()
        )
    } else {
        format!("{}: {what}, not a regular file: skipped", path.display())
    }
}

fn id_of(m: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// The content directory's real (canonical) path, for the outside-link
/// test; the path itself when it cannot be resolved.
pub(crate) fn real_root(root: &Path) -> PathBuf {
    std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf())
}

/// True when `target` (canonical) lies inside `real_root`.
pub(crate) fn inside(real_root: &Path, target: &Path) -> bool {
    target.starts_with(real_root)
}

/// Walks `dir` (at or below `root`). `known` holds the files already read
/// elsewhere in the library (outside `dir`), by identity: those are not
/// listed again. Directories from `root` down to `dir` count as walked, so
/// a link from inside `dir` back up to one of them is a loop.
pub(crate) fn walk(
    root: &Path,
    dir: &Path,
    policy: Policy,
    known: &HashMap<FileId, PathBuf>,
) -> Walk {
    let real_root = real_root(root);
    let mut w = Walker {
        real_root: &real_root,
        policy,
        known,
        dirs: HashMap::default(),
        seen_files: HashMap::default(),
        deferred: Vec::new(),
        out: Walk::default(),
    };
    // The ancestors of `dir` inside the root, so loops up to them show.
    let mut up = Some(dir);
    while let Some(d) = up {
        if let Ok(m) = std::fs::metadata(d) {
            w.dirs.entry(id_of(&m)).or_insert_with(|| d.to_path_buf());
        }
        if d == root {
            break;
        }
        up = d.parent().filter(|p| p.starts_with(root));
    }
    w.walk_real(dir);
    // Links last, in the order they were met; a link inside a linked
    // directory joins the end of the queue.
    let mut next = 0;
    while next < w.deferred.len() {
        let link = w.deferred[next].clone();
        next += 1;
        w.follow(&link);
    }
    w.out
}

struct Walker<'a> {
    real_root: &'a Path,
    policy: Policy,
    known: &'a HashMap<FileId, PathBuf>,
    /// Directories walked, by identity, with the path they were walked as.
    dirs: HashMap<FileId, PathBuf>,
    /// Article files listed, by identity.
    seen_files: HashMap<FileId, PathBuf>,
    /// Symlinks met, followed once the real tree is done.
    deferred: Vec<PathBuf>,
    out: Walk,
}

impl Walker<'_> {
    /// Walks a directory and its real subdirectories (depth first, names
    /// in byte order), deferring symlinks.
    fn walk_real(&mut self, dir: &Path) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                    self.out.problems.push(too_long(&d, "directory"));
                    continue;
                }
                Err(e) => {
                    self.skip(&d, format_args!("directory cannot be read: {e}"));
                    continue;
                }
            };
            let mut names: Vec<(std::ffi::OsString, std::fs::DirEntry)> = entries
                .filter_map(Result::ok)
                .map(|e| (e.file_name(), e))
                .collect();
            names.sort_unstable_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
            let mut subdirs = Vec::new();
            for (name, entry) in names {
                if name.as_encoded_bytes().first() == Some(&b'.') {
                    continue;
                }
                let path = entry.path();
                let Ok(t) = entry.file_type() else {
                    continue;
                };
                if !t.is_dir() {
                    if let Some(p) = bad_name(&path) {
                        self.out.problems.push(p);
                        continue;
                    }
                }
                if t.is_symlink() {
                    self.deferred.push(path);
                } else if t.is_dir() {
                    let id = match entry.metadata() {
                        Ok(m) => id_of(&m),
                        Err(e) => {
                            self.skip(&path, format_args!("directory cannot be read: {e}"));
                            continue;
                        }
                    };
                    if self.enter_dir(&path, id) {
                        subdirs.push(path);
                    }
                } else if self.policy.all_files || parse::kind_of(&path).is_some() {
                    if t.is_file() && path.as_os_str().len() >= PATH_MAX {
                        self.out.problems.push(too_long(&path, "file"));
                    } else if t.is_file() {
                        // A file's device is its directory's (only a bind
                        // mount could differ, and then its inode alone
                        // still tells it from its neighbours).
                        let (id, stamp) = match entry.metadata() {
                            Ok(m) => (id_of(&m), Some(super::Stamp::of(&m))),
                            Err(_) => ((0, std::os::unix::fs::DirEntryExt::ino(&entry)), None),
                        };
                        self.add_file(path, id, stamp);
                    } else if special_kind(&t).is_some() {
                        self.out.skipped.push(not_regular(&path, &t));
                    }
                }
            }
            // Popped in reverse, so the first name is walked first.
            stack.extend(subdirs.into_iter().rev());
        }
    }

    /// Records a directory about to be walked; false when it was walked
    /// already (under another name).
    fn enter_dir(&mut self, path: &Path, id: FileId) -> bool {
        if let Some(first) = self.dirs.get(&id) {
            let first = first.clone();
            self.skip(
                path,
                format_args!(
                    "same directory as {}, which is read already (a symlink loop or an alias): skipped",
                    first.display()
                ),
            );
            return false;
        }
        if parse::kind_of(path).is_some() {
            self.skip(
                path,
                format_args!("a directory, not an article file; the files in it are read as usual"),
            );
        }
        self.dirs.insert(id, path.to_path_buf());
        true
    }

    fn add_file(&mut self, path: PathBuf, id: FileId, stamp: Option<super::Stamp>) {
        if let Some(first) = self.known.get(&id).filter(|p| **p != path) {
            let first = first.clone();
            self.skip(
                &path,
                format_args!(
                    "same file as {} (a symlink or hard link): read once, as that",
                    first.display()
                ),
            );
            return;
        }
        if let Some(first) = self.seen_files.get(&id) {
            let first = first.clone();
            self.skip(
                &path,
                format_args!(
                    "same file as {} (a symlink or hard link): read once, as that",
                    first.display()
                ),
            );
            return;
        }
        self.seen_files.insert(id, path.clone());
        self.out.files.push(path);
        self.out.stamps.push(stamp);
    }

    /// Follows one symlink met during the walk.
    fn follow(&mut self, link: &Path) {
        let is_article = self.policy.all_files || parse::kind_of(link).is_some();
        let meta = match std::fs::metadata(link) {
            Ok(m) => m,
            Err(e) => {
                if is_article {
                    self.skip(link, format_args!("symlink cannot be followed: {e}"));
                }
                return;
            }
        };
        let t = meta.file_type();
        if !t.is_dir() && !is_article {
            return;
        }
        if !self.policy.follow_external {
            match std::fs::canonicalize(link) {
                Ok(target) if inside(self.real_root, &target) => {}
                Ok(target) => {
                    self.skip(
                        link,
                        format_args!(
                            "symlink to {}, outside the content directory: refused (set `follow_external_symlinks = true` to read it)",
                            target.display()
                        ),
                    );
                    return;
                }
                Err(e) => {
                    self.skip(link, format_args!("symlink cannot be resolved: {e}"));
                    return;
                }
            }
        }
        if t.is_dir() {
            if self.enter_dir(link, id_of(&meta)) {
                self.walk_real(link);
            }
        } else if t.is_file() {
            self.add_file(link.to_path_buf(), id_of(&meta), None);
        } else if let Some(what) = special_kind(&t) {
            self.skip(
                link,
                format_args!("symlink to {what}, not a regular file: skipped"),
            );
        }
    }

    fn skip(&mut self, path: &Path, why: std::fmt::Arguments<'_>) {
        self.out.skipped.push(format!("{}: {why}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn names(root: &Path, w: &Walk) -> Vec<String> {
        w.files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn run(root: &Path, policy: Policy) -> Walk {
        walk(root, root, policy, &HashMap::default())
    }

    /// Real files in name order; dot-directories and unknown extensions
    /// left out; a FIFO and a directory named like articles reported.
    #[test]
    fn real_tree_and_special_files() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("b/.git")).unwrap();
        fs::create_dir_all(r.join("dir.md")).unwrap();
        fs::write(r.join("b/z.txt"), "x").unwrap();
        fs::write(r.join("b/.git/x.txt"), "x").unwrap();
        fs::write(r.join("a.md"), "x").unwrap();
        fs::write(r.join("dir.md/in.md"), "x").unwrap();
        fs::write(r.join("notes.rst"), "x").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("p.txt"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let w = run(r, Policy::default());
        assert_eq!(names(r, &w), ["a.md", "b/z.txt", "dir.md/in.md"]);
        let skipped = w.skipped.join("\n");
        assert!(skipped.contains("p.txt: a FIFO"), "{skipped}");
        assert!(skipped.contains("dir.md: a directory"), "{skipped}");
        assert_eq!(w.skipped.len(), 2, "{skipped}");
    }

    /// A link back to an ancestor is one message, not a second copy of the
    /// tree; a link to a sibling directory keeps the files under their real
    /// path; a hard link and a file symlink are read once.
    #[test]
    fn loops_aliases_and_links_read_each_file_once() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("sub/deeper")).unwrap();
        fs::create_dir_all(r.join("z")).unwrap();
        fs::write(r.join("sub/deeper/x.md"), "x").unwrap();
        fs::write(r.join("z/y.md"), "y").unwrap();
        symlink(r, r.join("sub/deeper/up")).unwrap();
        symlink(r.join("z"), r.join("a-alias")).unwrap();
        symlink(r.join("z/y.md"), r.join("link.md")).unwrap();
        fs::hard_link(r.join("z/y.md"), r.join("z/hard.md")).unwrap();
        let w = run(r, Policy::default());
        assert_eq!(names(r, &w), ["sub/deeper/x.md", "z/hard.md"]);
        let skipped = w.skipped.join("\n");
        for want in [
            "a-alias: same directory",
            "link.md: same file",
            "up: same directory",
            "y.md: same file",
        ] {
            assert!(skipped.contains(want), "missing {want:?} in\n{skipped}");
        }
    }

    /// Links leaving the content directory are refused by default and
    /// followed when the policy allows; a broken link is reported.
    #[test]
    fn external_links_follow_the_policy() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("content");
        fs::create_dir_all(&r).unwrap();
        fs::create_dir_all(d.path().join("outside")).unwrap();
        fs::write(d.path().join("outside/o.md"), "o").unwrap();
        symlink(d.path().join("outside/o.md"), r.join("file.md")).unwrap();
        symlink(d.path().join("outside"), r.join("dir")).unwrap();
        symlink("/dev/zero", r.join("zero.txt")).unwrap();
        symlink(d.path().join("gone.md"), r.join("broken.md")).unwrap();
        let w = run(&r, Policy::default());
        assert!(w.files.is_empty(), "{:?}", w.files);
        let skipped = w.skipped.join("\n");
        for want in [
            "file.md: symlink to",
            "dir: symlink to",
            "zero.txt: symlink to /dev/zero",
            "broken.md: symlink cannot be followed",
        ] {
            assert!(skipped.contains(want), "missing {want:?} in\n{skipped}");
        }
        assert!(
            skipped.contains("outside the content directory: refused"),
            "{skipped}"
        );

        let w = run(
            &r,
            Policy {
                follow_external: true,
                all_files: false,
            },
        );
        assert_eq!(names(&r, &w), ["dir/o.md"]);
        let skipped = w.skipped.join("\n");
        assert!(skipped.contains("file.md: same file"), "{skipped}");
        assert!(
            skipped.contains("zero.txt: symlink to a character device"),
            "{skipped}"
        );
    }
}
