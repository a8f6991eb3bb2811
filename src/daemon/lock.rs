//! The state directory's lock: `serve`, `build` and `publish` each hold
//! an exclusive `flock(2)` on `state_dir/lock` while they run, so two
//! Heralds (a second `serve`, or a `publish` beside a running `serve`)
//! never write the same state file, manifest or bucket record. The kernel
//! releases it when the process ends, however it ends. The file stays,
//! empty and never rewritten (a run that finds nothing to do changes
//! nothing in `state_dir`); the holder is named in the error from
//! `/proc/locks`, when this user may see it.

use std::os::fd::AsRawFd;
use std::path::Path;

/// The lock's file in `state_dir`.
pub const LOCK_FILE: &str = "lock";

/// Held while alive; dropping it (or exiting) releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

/// Takes the lock on `state_dir` (creating the directory and the file if
/// need be), or says who holds it.
///
/// # Errors
///
/// Another process holds the lock, or the file cannot be opened.
pub(super) fn lock_state(state_dir: &Path) -> anyhow::Result<StateLock> {
    let path = state_dir.join(LOCK_FILE);
    let open = || -> std::io::Result<std::fs::File> {
        std::fs::create_dir_all(state_dir)?;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
    };
    let file = open()
        .map_err(|e| anyhow::anyhow!("cannot open the state lock {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            anyhow::bail!(
                "the state directory {} is in use by another Herald ({}): two must not write the same state; stop that one, or give this one its own --state (and --output)",
                state_dir.display(),
                holder(&file).unwrap_or_else(|| "pid unknown".into())
            );
        }
        anyhow::bail!("cannot lock {}: {e}", path.display());
    }
    Ok(StateLock { _file: file })
}

/// "pid N (command line)" of the process holding a `flock` on `file`,
/// from `/proc/locks` (`1: FLOCK ADVISORY WRITE <pid> <maj:min:inode> 0 EOF`).
fn holder(file: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let ino = file.metadata().ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let pid: u32 = f.get(4)?.parse().ok()?;
        let lock_ino: u64 = f.get(5)?.rsplit(':').next()?.parse().ok()?;
        (lock_ino == ino).then(|| super::ports::describe(pid))
    })
}
