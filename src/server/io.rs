//! The socket of one connection: `recv`, `writev` and `sendfile` on
//! tokio's readiness, each reported to the connection's [`Clock`], whose
//! deadline one timer enforces.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::{sleep_until, Instant, Sleep};

use super::clock::Clock;

/// A connection's socket under its [`Clock`]: every read and write is
/// reported to the clock, and while the socket is not ready, the
/// operation fails once the clock's deadline has passed (hyper then
/// closes the connection).
///
/// I/O only records time stamps; the one timer is re-armed when it fires
/// and finds the connection still within its limits, or moved earlier
/// when a request head starts before it — so a busy keep-alive connection
/// costs no timer-wheel work per request (hyper's own header-read timeout
/// arms and clears a timer for every request).
pub(super) struct IdleIo {
    /// The socket, read and written with system calls of our own (rustix,
    /// no libc wrapper) on tokio's readiness.
    inner: AsyncFd<std::net::TcpStream>,
    /// The deadlines, on the coarse clock ([`coarse_now`]).
    clock: Clock,
    timer: Pin<Box<Sleep>>,
    /// When `timer` fires, on the coarse clock: compared on every request
    /// instead of reading the precise clock.
    timer_due: Duration,
}

impl IdleIo {
    pub(super) fn new(inner: AsyncFd<std::net::TcpStream>, idle: Duration, head: Duration) -> Self {
        let now = coarse_now();
        let clock = Clock::new(now, idle, head);
        let due = clock.deadline();
        IdleIo {
            inner,
            clock,
            timer: Box::pin(sleep_until(later(Instant::now(), due.saturating_sub(now)))),
            timer_due: due,
        }
    }

    fn read_some(&mut self, got: &[u8]) {
        let now = coarse_now();
        if let Some(due) = self.clock.read(now, got) {
            if self.timer_due > due {
                self.timer
                    .as_mut()
                    .reset(later(Instant::now(), due.saturating_sub(now)));
                self.timer_due = due;
            }
        }
    }

    /// While the inner stream is pending, fails the operation once a limit
    /// is over.
    fn check<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.clock.deadline();
            let now = coarse_now();
            if due <= now {
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
            self.timer.as_mut().reset(later(Instant::now(), due - now));
            self.timer_due = due;
        }
    }
}

/// The monotonic clock at its coarse resolution (a few milliseconds): read
/// on every read and write of every connection, where the precise clock's
/// cost would show; the limits it measures are seconds long.
fn coarse_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// `t + d`, or a year from `t` when a configured limit is beyond the clock.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(365 * 86_400))
}

/// Reads as tokio's own `TcpStream` does (a short read means the socket is
/// drained, so its readiness is cleared without another `recv` just to
/// learn `EAGAIN`), with rustix's system calls: glibc's `recv` and `writev`
/// wrap each call in two atomic updates of the thread's cancellation state.
impl hyper::rt::Read for IdleIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            let mut guard = match this.inner.poll_read_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return this.check(cx),
            };
            // SAFETY: `recv` writes only the bytes it reports, and only
            // those are marked filled below.
            let spare = unsafe { buf.as_mut() };
            let want = spare.len();
            match rustix::net::recv(this.inner.get_ref(), spare, rustix::net::RecvFlags::empty()) {
                Ok(((got, _), _)) => {
                    let n = got.len();
                    if n < want {
                        guard.clear_ready();
                    }
                    drop(guard);
                    if n > 0 {
                        this.read_some(got);
                    }
                    // SAFETY: the first `n` bytes were just written.
                    unsafe { buf.advance(n) };
                    return Poll::Ready(Ok(()));
                }
                Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }
}

impl hyper::rt::Write for IdleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    /// A file-backed body goes out with `sendfile` ([`crate::sendfile`]),
    /// everything else with one `writev`.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        loop {
            let mut guard = match this.inner.poll_write_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return this.check(cx),
            };
            let socket = this.inner.get_ref();
            // A peer gone away makes `writev` fail with EPIPE: Rust's
            // runtime ignores SIGPIPE, as tokio's own writes also rely on.
            let sent = crate::sendfile::find(bufs)
                .and_then(|found| {
                    use std::os::fd::AsFd;
                    crate::sendfile::send(socket.as_fd(), bufs, found)
                })
                .unwrap_or_else(|| rustix::io::writev(socket, bufs).map_err(io::Error::from));
            match sent {
                Ok(n) => {
                    // As for reads: a short write means the buffer is full.
                    if n < total {
                        guard.clear_ready();
                    }
                    drop(guard);
                    if n > 0 {
                        this.clock.wrote(coarse_now(), bufs, n);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.inner.get_ref().shutdown(std::net::Shutdown::Write))
    }
}
