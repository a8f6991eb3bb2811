//! Process-wide tuning done once at start: the allocator and the
//! open-file limit.

/// Raises the soft limit on open files to the hard limit (as Go's runtime
/// does): each connection and each file-backed body holds a descriptor,
/// and the usual soft limit of 1024 is below `max_connections`' default.
pub(super) fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::debug!("cannot raise the open-file limit: {e}");
        }
    }
}

/// Gives large freed blocks back to the system at once. glibc's malloc
/// serves blocks of 128 KiB and more with their own `mmap` — until the first
/// such block is freed: it then raises that threshold (up to 32 MiB) and
/// the trim threshold with it, so later big buffers come from the heap and
/// stay resident after they are freed. In a thread's arena the top of the
/// heap is never trimmed at all. The brotli encoder's ~12 MB of working
/// memory stayed in the daemon's RSS that way. Fixing the threshold at
/// glibc's default turns that adjustment off: measured at 10,000 articles,
/// `herald serve` 78 MB after an edit instead of 82 (94 with brotli), and
/// `herald build` 68 MB peak instead of 74, at the same speed. Call first
/// thing in `main`, before any thread is started.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
