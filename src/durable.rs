//! Replacing a file so that a crash leaves the old bytes or the new ones,
//! never a mix or an empty file, and the new ones are on disk before the
//! call returns: the rule DESIGN.md calls "durable before visible".
//!
//! The one way, in order: write a temp file beside the target (the same
//! directory, so the rename stays on one file system), fsync it, rename it
//! over the target, fsync the directory (without that a crash can forget
//! the rename and bring the old file back after the caller has shown the
//! new state). On any failure the temp file is removed and the target is
//! left as it was.
//!
//! For files whose loss costs something: ids and the journal's snapshot
//! (`state`), subscriptions (`syndicate::hub`), readership figures
//! (`stats`), the bucket's mark (`mirror`), the published count
//! (`daemon`). The output tree under `feeds/` is not written here: it is
//! regenerated from the content and written per page, where two fsyncs a
//! file would cost more than a crash does. Uses `std` only.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temp file `write_with` uses for `path`: hidden, beside it, with the
/// process id so two processes replacing one file (`herald serve` and
/// `herald confirm-deletes`) never write into each other's temp file.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.herald-tmp", std::process::id()))
}

/// Replaces `path` with `bytes` durably (see the module doc). Returns the
/// length written.
///
/// # Errors
/// Any step failed; `path` then holds what it held before.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<u64> {
    write_with(path, |w| w.write_all(bytes))
}

/// Replaces `path` durably with what `fill` writes into a buffered writer
/// (for documents streamed by a serialiser rather than held whole in
/// memory). Returns the length written.
///
/// # Errors
/// `fill` or any step failed; `path` then holds what it held before.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut w = BufWriter::with_capacity(64 * 1024, File::create(&tmp)?);
        fill(&mut w)?;
        w.flush()?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        let len = f.metadata()?.len();
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(path.parent().filter(|d| !d.as_os_str().is_empty()))?;
        Ok(len)
    })();
    if result.is_err() {
        // Half-written (or not a file at all): never what a later read or
        // write finds.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename or a new file in `dir` (`None`: the current directory)
/// durable.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: Option<&Path>) -> std::io::Result<()> {
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A write creates or replaces the file whole, returns its length and
    /// leaves no temp file.
    #[test]
    fn replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(write(&path, b"first").unwrap(), 5);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(write(&path, b"second, longer").unwrap(), 14);
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let n = write_with(&path, |w| {
            w.write_all(b"streamed ")?;
            w.write_all(b"in parts")
        })
        .unwrap();
        assert_eq!(n, 17);
        assert_eq!(std::fs::read(&path).unwrap(), b"streamed in parts");
        assert_eq!(names(dir.path()), ["state.json"], "no temp file left");
    }

    /// Each way a write can fail leaves the old file as it was and no temp
    /// file behind: the writer fails part way, the target cannot be
    /// replaced (a directory in its place), the directory is missing.
    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subs.json");
        write(&path, b"old").unwrap();

        let err = write_with(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("serialiser failed"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "serialiser failed");
        assert_eq!(std::fs::read(&path).unwrap(), b"old", "writer failed");
        assert_eq!(names(dir.path()), ["subs.json"], "no temp file left");

        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(write(&blocked, b"new").is_err(), "a directory in the way");
        assert!(blocked.is_dir());
        assert_eq!(names(dir.path()), ["blocked", "subs.json"]);

        let gone = dir.path().join("missing").join("f");
        assert!(write(&gone, b"new").is_err(), "no such directory");
        assert_eq!(names(dir.path()), ["blocked", "subs.json"]);
    }

    /// The temp file is hidden beside its target, for a full path and a
    /// bare file name alike (whose parent is empty: the current
    /// directory).
    #[test]
    fn temp_file_beside_the_target() {
        let t = temp_path(Path::new("/var/lib/herald/bucket.json"));
        assert_eq!(t.parent(), Some(Path::new("/var/lib/herald")));
        let name = t.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".bucket.json.") && name.ends_with(".herald-tmp"),
            "{name}"
        );
        let bare = temp_path(Path::new("bucket.json"));
        assert_eq!(bare.parent(), Some(Path::new("")));
    }
}
