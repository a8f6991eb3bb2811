//! Large response bodies held in unlinked files, so that the server sends
//! them with `sendfile(2)` instead of copying them into the socket.
//!
//! A feed is sent over and over, byte for byte the same until the next
//! publish. Written from the heap, every response copies the whole body
//! into the kernel's socket buffers; nginx serving the `.gz` twins from
//! disk (`sendfile on`) hands the kernel page-cache pages instead, and that
//! copy was most of the CPU per request between the two. Here, once
//! [`enable`]d (by `herald serve`), a body of [`MIN_LEN`] bytes or more is
//! written once into a file created with `O_TMPFILE` (it has no name, so
//! nothing else can find it; mode 0400 once written) and mapped read-only:
//! the [`Bytes`] handed around are that mapping, and the connection
//! wrapper in `server` recognises them ([`find`]) and has the kernel
//! send the file's pages. The file is never written again while it lives,
//! so pages still queued in a socket never change under it; closing it
//! (when no snapshot uses the body any more) frees it.
//!
//! These are still memory, not disk reads: the pages were written a moment
//! ago and stay in the page cache as long as they are sent. They are not
//! counted in the daemon's RSS (the mapping is not touched by sending), as
//! nginx's files are not counted in nginx's. A sealed `memfd` would be the
//! same in spirit, but its pages are small (shmem without huge pages) and
//! sending them measured no cheaper than copying; ext4 and xfs file pages
//! come in large folios. No request path ever names a file.
//!
//! When no such file can be made (`O_TMPFILE` unsupported, the descriptor
//! cap [`MAX_LIVE`]), the body stays an ordinary heap buffer and is written
//! the ordinary way. Uses nothing else of Herald.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

use arc_swap::ArcSwap;

use bytes::Bytes;

/// Bodies at least this long go to a file; a shorter copy costs less than
/// the extra system call.
pub const MIN_LEN: usize = 16 * 1024;

/// About this many file-backed bodies at most (each holds a file
/// descriptor); beyond it bodies stay on the heap.
pub const MAX_LIVE: usize = 256;

/// Cleared when `sendfile` proves unusable here (a file system or a
/// sandbox that refuses it): bodies are then written the ordinary way.
static USABLE: AtomicBool = AtomicBool::new(true);

/// The directory the unlinked files are made in; unset: heap only.
static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// From now on, bodies of [`MIN_LEN`] or more are kept in unlinked files
/// in `dir` (on the file system of `dir`, never visible in it). Returns
/// whether that works here; if not, bodies stay on the heap.
pub fn enable(dir: &std::path::Path) -> bool {
    match tmpfile(dir) {
        Ok(_) => {
            let _ = DIR.set(dir.to_path_buf());
            true
        }
        Err(e) => {
            tracing::info!(dir = %dir.display(), "large bodies stay on the heap (no O_TMPFILE: {e})");
            false
        }
    }
}

/// True once [`enable`] worked: [`hold`] may put bodies in files.
pub fn enabled() -> bool {
    DIR.get().is_some()
}

fn tmpfile(dir: &std::path::Path) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::openat(
        rustix::fs::CWD,
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?)
}

/// Address ranges of the live mappings, sorted by start, with their file:
/// read on every response with a file-backed body, by both server threads,
/// so readers take no lock (a lock's shared counter would bounce between
/// the cores); changed only when a body is made or dropped, replaced whole.
static REGIONS: LazyLock<ArcSwap<Vec<Region>>> = LazyLock::new(ArcSwap::default);

/// Replaces [`REGIONS`] with `change` applied to a copy (again to a fresh
/// copy if another change got in first).
fn change_regions(change: impl Fn(&mut Vec<Region>)) {
    REGIONS.rcu(|current| {
        let mut v = Vec::clone(current);
        change(&mut v);
        v
    });
}

#[derive(Debug, Clone, Copy)]
struct Region {
    start: usize,
    len: usize,
    fd: i32,
}

/// A read-only mapped unlinked file, never written again.
struct Mapped {
    fd: OwnedFd,
    ptr: *mut std::ffi::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and never changes; the pointer
// is only read through `as_ref` and unmapped once, on drop.
unsafe impl Send for Mapped {}
// SAFETY: as above: shared reads of immutable memory.
unsafe impl Sync for Mapped {}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // Out of the registry first, so no lookup can return this file once
        // its descriptor number is free for reuse.
        let start = self.ptr as usize;
        change_regions(|r| r.retain(|x| x.start != start));
        // SAFETY: `ptr`/`len` are the mapping made in `make`, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
        // `fd` closes itself.
    }
}

/// `body` as [`Bytes`]: in an unlinked file when enabled, it is long enough
/// and one can be made, else on the heap.
pub fn hold(body: Vec<u8>) -> Bytes {
    let Some(dir) = DIR.get() else {
        return Bytes::from(body);
    };
    if body.len() < MIN_LEN || REGIONS.load().len() >= MAX_LIVE {
        return Bytes::from(body);
    }
    match make(dir, &body) {
        Ok(s) => Bytes::from_owner(s),
        Err(e) => {
            tracing::debug!("body of {} bytes kept on the heap: {e}", body.len());
            Bytes::from(body)
        }
    }
}

fn make(dir: &std::path::Path, body: &[u8]) -> io::Result<Mapped> {
    let fd = tmpfile(dir)?;
    let mut rest = body;
    while !rest.is_empty() {
        let n = rustix::io::write(&fd, rest)?;
        rest = &rest[n..];
    }
    // Others can only reach it through /proc/<pid>/fd; not for writing.
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o400))?;
    // SAFETY: a fresh shared read-only mapping of a file we own and never
    // write or truncate again, so it stays valid and unchanged while mapped.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            body.len(),
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::SHARED,
            &fd,
            0,
        )?
    };
    // Pages come into the daemon's resident memory only as they are read,
    // one at a time: not a whole 2 MB folio mapped at once (ext4 caches
    // files in large folios, and a read fault maps all of one) nor the
    // 16 pages around the one read. Feed bodies are sent by `sendfile`
    // and read by `pread`, never through the mapping; article bodies
    // parked here (see `library/cache.rs`) are read a few kilobytes at a
    // time, scattered, and one touched body must not bring its 2 MB
    // neighbourhood into the daemon's memory.
    // SAFETY: advice on the mapping just made; it changes no contents.
    unsafe {
        let _ = rustix::mm::madvise(ptr, body.len(), rustix::mm::Advice::LinuxNoHugepage);
        let _ = rustix::mm::madvise(ptr, body.len(), rustix::mm::Advice::Random);
    }
    let mapped = Mapped {
        fd,
        ptr,
        len: body.len(),
    };
    let region = Region {
        start: ptr as usize,
        len: body.len(),
        fd: std::os::fd::AsRawFd::as_raw_fd(&mapped.fd),
    };
    change_regions(|r| {
        let at = r.partition_point(|x| x.start < region.start);
        r.insert(at, region);
    });
    Ok(mapped)
}

/// If `buf` lies inside a file-backed body, that body's file and the offset of
/// `buf` in it.
///
/// The descriptor is only valid while the [`Bytes`] that `buf` borrows
/// from is alive, which is the case for a slice being written.
pub fn lookup(buf: &[u8]) -> Option<(BorrowedFd<'_>, u64)> {
    let p = buf.as_ptr() as usize;
    // A region removed after this load cannot be `buf`'s: its mapping
    // lives as long as `buf` does, and an address range is reused only
    // after its region is gone.
    let r = REGIONS.load();
    let i = r.partition_point(|x| x.start <= p).checked_sub(1)?;
    let x = r[i];
    if p + buf.len() > x.start + x.len {
        return None;
    }
    // SAFETY: the region is registered, so its `Mapped` is alive, and it
    // stays alive while `buf` (which points into its mapping) does.
    let fd = unsafe { BorrowedFd::borrow_raw(x.fd) };
    Some((fd, (p - x.start) as u64))
}

/// A remainder of a body shorter than this is written the ordinary way.
const SENDFILE_MIN: usize = 4096;

/// Where a file-backed body sits among buffers about to be written.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    /// Index of the buffer.
    at: usize,
    file: BorrowedFd<'a>,
    offset: u64,
}

/// The first of `bufs` that is (part of) a file-backed body, if `sendfile`
/// is in use at all.
pub fn find<'a>(bufs: &'a [io::IoSlice<'_>]) -> Option<Found<'a>> {
    if !enabled() || !USABLE.load(Ordering::Relaxed) {
        return None;
    }
    bufs.iter()
        .enumerate()
        .filter(|(_, b)| b.len() >= SENDFILE_MIN)
        .find_map(|(at, b)| lookup(b).map(|(file, offset)| Found { at, file, offset }))
}

/// Writes `bufs` in order to `socket`, sending the file-backed body `found`
/// among them with `sendfile`: the buffers before it with one `sendmsg`
/// flagged `MSG_MORE` (so the response head and body leave in full
/// packets), then the file's pages. Returns the bytes written, like
/// `writev`; `None` when `sendfile` turned out to be refused here and
/// nothing was written (write them the ordinary way).
pub fn send(
    socket: BorrowedFd<'_>,
    bufs: &[io::IoSlice<'_>],
    found: Found<'_>,
) -> Option<io::Result<usize>> {
    let head = &bufs[..found.at];
    let head_len: usize = head.iter().map(|b| b.len()).sum();
    let mut sent = 0;
    if head_len > 0 {
        use rustix::net::SendFlags;
        let flags = SendFlags::MORE | SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
        match rustix::net::sendmsg(socket, head, &mut Default::default(), flags) {
            Ok(n) if n < head_len => return Some(Ok(n)),
            Ok(n) => sent = n,
            Err(e) => return Some(Err(e.into())),
        }
    }
    let mut off = found.offset;
    let len = bufs[found.at].len();
    match rustix::fs::sendfile(socket, found.file, Some(&mut off), len) {
        Ok(n) => Some(Ok(sent + n)),
        // Not writable now, or the peer is gone: report what went out
        // (the head), or the error when nothing did.
        Err(e)
            if [
                rustix::io::Errno::AGAIN,
                rustix::io::Errno::INTR,
                rustix::io::Errno::PIPE,
                rustix::io::Errno::CONNRESET,
            ]
            .contains(&e) =>
        {
            Some(if sent > 0 { Ok(sent) } else { Err(e.into()) })
        }
        Err(e) => {
            // Refused for this kind of file or by a sandbox: stop trying.
            if USABLE.swap(false, Ordering::Relaxed) {
                tracing::warn!("sendfile refused ({e}); sending bodies by copying");
            }
            (sent > 0).then_some(Ok(sent))
        }
    }
}

/// Writes `bytes` to `out`: a file-backed body is copied by the kernel
/// (`copy_file_range`), so mirroring it to `feeds/` does not fault its
/// pages into this process; anything else is written as usual. Where the
/// kernel will not copy between the two files — `out` on another file
/// system than the bodies (`EXDEV`), a kernel or file system without the
/// call (`ENOSYS`, `EOPNOTSUPP`, `EINVAL`) — the rest is written from the
/// mapping instead.
pub fn write_all(out: &mut std::fs::File, bytes: &[u8]) -> io::Result<()> {
    use rustix::io::Errno;
    if let Some((file, mut off)) = lookup(bytes) {
        let mut left = bytes.len();
        while left > 0 {
            match rustix::fs::copy_file_range(file, Some(&mut off), &*out, None, left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => left -= n,
                Err(Errno::INTR) => {}
                // Nothing of this call was copied; `out`'s position is
                // where the copied part ends.
                Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL) => {
                    return io::Write::write_all(out, &bytes[bytes.len() - left..]);
                }
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(());
    }
    io::Write::write_all(out, bytes)
}

/// `a == b`, where `a` may be a file-backed body: it is then read through
/// its file ([`reader`]) rather than its mapping.
pub fn equals(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if lookup(a).is_none() {
        return a == b;
    }
    let mut r = reader(a);
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0;
    while done < b.len() {
        match io::Read::read(&mut r, &mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) if buf[..n] != b[done..done + n] => return false,
            Ok(n) => done += n,
        }
    }
    true
}

/// A reader of `buf`; for a file-backed body it reads through the file
/// rather than the mapping (for the same reason as [`write_all`]).
pub fn reader(buf: &[u8]) -> Reader<'_> {
    Reader {
        file: lookup(buf),
        buf,
        at: 0,
    }
}

/// See [`reader`].
pub struct Reader<'a> {
    buf: &'a [u8],
    file: Option<(BorrowedFd<'a>, u64)>,
    at: usize,
}

impl io::Read for Reader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let want = out.len().min(self.buf.len() - self.at);
        if want == 0 {
            return Ok(0);
        }
        let n = match self.file {
            Some((fd, off)) => rustix::io::pread(fd, &mut out[..want], off + self.at as u64)?,
            None => {
                out[..want].copy_from_slice(&self.buf[self.at..self.at + want]);
                want
            }
        };
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() {
        assert!(
            enable(&std::env::temp_dir()),
            "O_TMPFILE works in the temp dir"
        );
    }

    #[test]
    fn small_bodies_stay_on_the_heap() {
        on();
        let b = hold(b"short".to_vec());
        assert_eq!(&b[..], b"short");
        assert!(lookup(&b).is_none());
    }

    #[test]
    fn large_bodies_read_back_and_are_found() {
        on();
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let b = hold(body.clone());
        assert_eq!(&b[..], &body[..]);
        let (fd, off) = lookup(&b[1000..5000]).expect("a file-backed body is registered");
        assert_eq!(off, 1000);
        // The file holds the same bytes, has no name and is read-only.
        let mut back = vec![0u8; 4000];
        rustix::io::pread(fd, &mut back, 1000).unwrap();
        assert_eq!(&back[..], &body[1000..5000]);
        let st = rustix::fs::fstat(fd).unwrap();
        assert_eq!(st.st_nlink, 0, "unlinked");
        assert_eq!(st.st_mode & 0o777, 0o400);
        // A slice reaching past the body is not taken for it.
        let outside = unsafe { std::slice::from_raw_parts(b.as_ptr(), b.len() + 1) };
        assert!(lookup(outside).is_none());
        let addr = b.as_ptr() as usize;
        drop(b);
        let gone = REGIONS.load().iter().any(|r| r.start == addr);
        assert!(!gone, "unregistered on drop");
    }

    #[test]
    fn copies_and_compares_through_the_file() {
        on();
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 239) as u8).collect();
        let b = hold(body.clone());
        assert!(lookup(&b).is_some());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut f = std::fs::File::create(&path).unwrap();
        write_all(&mut f, &b[100..]).unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), &body[100..]);
        assert!(equals(&b, &body));
        let mut other = body.clone();
        other[150_000] ^= 1;
        assert!(!equals(&b, &other));
        assert!(!equals(&b, &body[1..]));
        // Read back through the file, in odd-sized pieces, from an offset.
        for (from, piece) in [(0, 4096), (7, 1000), (100_001, 65_536)] {
            let mut r = reader(&b[from..]);
            let mut got = Vec::new();
            let mut buf = vec![0u8; piece];
            loop {
                let n = std::io::Read::read(&mut r, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, &body[from..], "from {from}, pieces of {piece}");
        }
        let heap = vec![5u8; 100];
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut reader(&heap), &mut got).unwrap();
        assert_eq!(got, heap);
    }

    /// A file-backed body copied to a file on another file system (where
    /// `copy_file_range` answers `EXDEV`) arrives whole, from any offset.
    #[test]
    fn copies_across_file_systems() {
        use std::os::unix::fs::MetadataExt;
        on();
        let other = std::path::Path::new("/dev/shm");
        let dev = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.dev());
        match (dev(&std::env::temp_dir()), dev(other)) {
            (Ok(a), Ok(b)) if a != b => {}
            _ => {
                eprintln!("SKIPPED: /dev/shm is not a file system of its own here");
                return;
            }
        }
        let body: Vec<u8> = (0..150_000u32).map(|i| (i % 233) as u8).collect();
        let b = hold(body.clone());
        assert!(lookup(&b).is_some());
        let dir = tempfile::tempdir_in(other).unwrap();
        for from in [0, 4095, 100_000] {
            let path = dir.path().join(format!("out{from}"));
            let mut f = std::fs::File::create(&path).unwrap();
            write_all(&mut f, &b[from..]).unwrap();
            drop(f);
            assert_eq!(std::fs::read(&path).unwrap(), &body[from..], "from {from}");
        }
    }

    #[test]
    fn sendfile_writes_head_then_body() {
        use std::io::Read;
        on();
        let body: Vec<u8> = (0..64_000u32).map(|i| (i % 241) as u8).collect();
        let b = hold(body.clone());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut c = c;
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            got
        });
        let head = b"HEAD:";
        let want = head.len() + b.len();
        let mut done = 0;
        let mut sendfile_calls = 0;
        while done < want {
            // What is left, as hyper passes it after a partial write.
            let bufs: Vec<io::IoSlice<'_>> = if done < head.len() {
                vec![io::IoSlice::new(&head[done..]), io::IoSlice::new(&b)]
            } else {
                vec![io::IoSlice::new(&b[done - head.len()..])]
            };
            done += match find(&bufs) {
                Some(f) => {
                    sendfile_calls += 1;
                    send(std::os::fd::AsFd::as_fd(&s), &bufs, f)
                        .expect("sendfile works on a TCP socket")
                        .unwrap()
                }
                None => std::io::Write::write_vectored(&mut &s, &bufs).unwrap(),
            };
        }
        assert!(sendfile_calls > 0);
        drop(s);
        let got = reader.join().unwrap();
        assert_eq!(&got[..head.len()], head);
        assert_eq!(&got[head.len()..], &body[..]);
    }
}
