//! The socket of one connection: `recv`, `writev` and `sendfile` on
//! tokio's readiness, and the connection's clocks (idle and request head).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::{sleep_until, Instant, Sleep};

/// Wraps a stream with the connection's two clocks:
///
/// - idle: a connection on which no byte moves in either direction for
///   `idle` is closed (dead peers, idle keep-alive and HTTP/2 connections);
/// - head: once a client starts a request (its first bytes after our last
///   response, or the connection opening), the response must begin within
///   `head` — a slow-loris client trickling a request head is cut off
///   however steadily it trickles.
///
/// I/O only records time stamps; the one timer is re-armed when it fires
/// and finds the connection still within both limits, or moved earlier
/// when a request head starts before it — so a busy keep-alive connection
/// costs no timer-wheel work per request (hyper's own header-read timeout
/// arms and clears a timer for every request).
pub(super) struct IdleIo {
    /// The socket, read and written with system calls of our own (rustix,
    /// no libc wrapper) on tokio's readiness.
    inner: AsyncFd<std::net::TcpStream>,
    idle: Duration,
    /// The head limit; `None` on HTTP/2 (see [`IdleIo::sniff`]).
    head: Option<Duration>,
    /// Last byte moved, on the coarse clock ([`coarse_now`]).
    last: Duration,
    /// When the request head now being read began; `None` once we answer.
    head_since: Option<Duration>,
    /// The first bytes were looked at (HTTP/1 or HTTP/2).
    sniffed: bool,
    timer: Pin<Box<Sleep>>,
    /// When `timer` fires, on the coarse clock: compared on every request
    /// instead of reading the precise clock.
    timer_due: Duration,
}

impl IdleIo {
    pub(super) fn new(inner: AsyncFd<std::net::TcpStream>, idle: Duration, head: Duration) -> Self {
        let now = coarse_now();
        let first = idle.min(head);
        IdleIo {
            inner,
            idle,
            head: Some(head),
            last: now,
            head_since: Some(now),
            sniffed: false,
            timer: Box::pin(sleep_until(later(Instant::now(), first))),
            timer_due: now.saturating_add(first),
        }
    }

    /// HTTP/2 multiplexes requests and pings both ways on an idle
    /// connection, so the head clock is for HTTP/1 only: a connection
    /// opening with the HTTP/2 preface has only the idle clock.
    fn sniff(&mut self, first: &[u8]) {
        const PREFACE: &[u8] = b"PRI * HTTP/2.0";
        self.sniffed = true;
        let n = first.len().min(PREFACE.len());
        if first[..n] == PREFACE[..n] {
            self.head = None;
            self.head_since = None;
        }
    }

    fn read_some(&mut self) {
        let now = coarse_now();
        self.last = now;
        if let (None, Some(head)) = (self.head_since, self.head) {
            self.head_since = Some(now);
            let due = now.saturating_add(head);
            if self.timer_due > due {
                self.timer.as_mut().reset(later(Instant::now(), head));
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
            let idle_due = self.last.saturating_add(self.idle);
            let head_due = self
                .head_since
                .zip(self.head)
                .map(|(h, d)| h.saturating_add(d));
            let due = head_due.map_or(idle_due, |h| h.min(idle_due));
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
                        if !this.sniffed {
                            this.sniff(got);
                        }
                        this.read_some();
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
                        this.last = coarse_now();
                        this.head_since = None;
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
