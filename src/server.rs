//! The HTTP server: hyper 1.x (HTTP/1.1 keep-alive and h2c) over the
//! current [`Site`] snapshot. A request is a hash lookup plus header
//! comparisons: everything else was computed at publish time, and nothing
//! here touches the disk — routes are keys in the snapshot, never paths.
//!
//! The pipeline of one request, in order ([`respond`]): method → route
//! normalisation → built-in routes (`/healthz`, `/metrics`) → snapshot
//! lookup → content negotiation (brotli, gzip) → conditional GET → headers.
//! Uses `site` and `metrics`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{sleep_until, Instant, Sleep};

use crate::metrics::Metrics;
use crate::site::{Asset, Site};

/// What the server shares with the daemon: the snapshot (swapped
/// atomically on publish) and the counters.
#[derive(Debug)]
pub struct Shared {
    /// The current snapshot; readers see the old or the new, never a mix.
    pub site: ArcSwap<Site>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl Shared {
    /// Wraps a first snapshot.
    pub fn new(site: Site) -> Shared {
        Shared {
            site: ArcSwap::from_pointee(site),
            metrics: Arc::new(Metrics::default()),
        }
    }
}

/// Connection limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent connections; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// A request head must arrive within this time of its first byte (of
    /// the connection opening, for the first request).
    pub header_read_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed.
    pub idle_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// On shutdown, how long in-flight responses may take.
    pub shutdown_grace: Duration,
    /// Threads serving connections.
    pub workers: usize,
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and
/// lets open connections finish their responses for up to
/// `limits.shutdown_grace`.
///
/// This task only accepts: each connection is handed to one of
/// `limits.workers` threads ([`choose_worker`]), each running its own
/// single-threaded runtime
/// (as nginx's worker processes do), so a connection's requests never
/// cross threads and no worker wakes another to steal work.
pub async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut workers = Vec::new();
    let mut queues = Vec::new();
    // Each worker's connections, aligned with `queues`.
    let mut drains: Vec<Arc<Drain>> = Vec::new();
    for i in 0..limits.workers.max(1) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Accepted>();
        let shared = Arc::clone(&shared);
        let limits = limits.clone();
        let drain = Arc::new(Drain::default());
        let drain2 = Arc::clone(&drain);
        let spawned = std::thread::Builder::new()
            .name(format!("herald-http-{i}"))
            .spawn(move || worker(rx, shared, limits, drain2));
        match spawned {
            Ok(h) => {
                workers.push(h);
                queues.push(tx);
                drains.push(drain);
            }
            Err(e) => tracing::error!("cannot start HTTP worker thread {i}: {e}"),
        }
    }
    if queues.is_empty() {
        tracing::error!("no HTTP worker thread could start; not serving");
        shutdown.await;
        return;
    }
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    let mut next = 0;
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => p.expect("semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => { backoff = Duration::from_millis(5); s }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Leave this runtime's reactor; the worker registers it with its own.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, "connection dropped: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let cpu = rustix::net::sockopt::socket_incoming_cpu(&stream)
            .ok()
            .and_then(|c| i32::try_from(c).ok())
            .and_then(|c| usize::try_from(c).ok());
        let loads: Vec<usize> = drains.iter().map(|d| d.open()).collect();
        let to = choose_worker(cpu, &loads, &mut next);
        let slot = Slot::new(permit, &drains[to]);
        if queues[to].send((stream, peer, slot)).is_err() {
            tracing::error!("HTTP worker thread {to} stopped");
        }
    }
    drop(listener);
    drop(queues); // each worker now drains its connections and ends
    let _ = tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    })
    .await;
}

/// Which worker gets a new connection, given the CPU on which the kernel
/// last handled its packets (`SO_INCOMING_CPU`) and how many connections
/// each worker holds.
///
/// Connections that arrive on one CPU go to one worker (`cpu % workers`):
/// the scheduler then keeps that worker near those packets, and a response
/// wakes its client on the same core. Dealt in turn instead, every worker
/// talks to clients on every core, and nearly every request crosses
/// between cores twice (an inter-processor interrupt each way; measured in
/// `benches/SERVE.md`: about a third of the CPU per request). Unless that
/// worker already holds clearly more than the least loaded one: with a
/// single network queue every connection arrives on one CPU, and they are
/// then spread by count. Without a CPU: in turn.
fn choose_worker(cpu: Option<usize>, open: &[usize], next: &mut usize) -> usize {
    let n = open.len().max(1);
    let least = (0..open.len()).min_by_key(|&i| open[i]).unwrap_or(0);
    match cpu {
        Some(c) => {
            let w = c % n;
            let fair = open[least] + open[least] / 2 + 8;
            if open.get(w).is_some_and(|&o| o <= fair) {
                w
            } else {
                least
            }
        }
        None => {
            let w = *next % n;
            *next = (w + 1) % n;
            w
        }
    }
}

/// A connection's place: its permit under `max_connections` and its count
/// among its worker's open connections (taken when it is dealt, so the
/// next choice sees it), both given back when it ends.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    drain: Arc<Drain>,
}

impl Slot {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, drain: &Arc<Drain>) -> Slot {
        drain.open.fetch_add(1, Ordering::SeqCst);
        Slot {
            _permit: permit,
            drain: Arc::clone(drain),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.drain.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.drain.idle.notify_one();
        }
    }
}

/// An accepted connection on its way to a worker thread.
type Accepted = (std::net::TcpStream, std::net::SocketAddr, Slot);

/// One HTTP worker thread: serves the connections it is dealt until the
/// acceptor hangs up, then drains them for up to `shutdown_grace`.
fn worker(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
    shared: Arc<Shared>,
    limits: Limits,
    drain: Arc<Drain>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start an HTTP worker runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // No hyper timer for HTTP/1: `IdleIo` keeps the header-read limit.
        builder
            .http1()
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(128)
            .keep_alive_interval(Some(limits.idle_timeout / 2))
            .keep_alive_timeout(limits.header_read_timeout);
        while let Some((stream, peer, slot)) = queue.recv().await {
            // SAFETY: the stream owns its descriptor and the `AsyncFd` owns
            // the stream until both are dropped together.
            let stream = match unsafe { AsyncFd::register(stream) } {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, "connection dropped: {e}");
                    continue;
                }
            };
            let io = IdleIo::new(stream, limits.idle_timeout, limits.header_read_timeout);
            let shared2 = Arc::clone(&shared);
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = respond(&req, &shared2.site.load(), &shared2.metrics);
                std::future::ready(Ok::<_, Infallible>(resp))
            });
            let conn = builder.serve_connection(io, svc).into_owned();
            let fut = Drain::watch(&drain, conn);
            let metrics = Arc::clone(&shared.metrics);
            metrics
                .connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                if let Err(e) = fut.await {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                metrics
                    .connections
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                drop(slot);
            });
        }
        tokio::select! {
            () = drain.stop() => tracing::debug!("all connections closed"),
            () = tokio::time::sleep(limits.shutdown_grace) => tracing::warn!("shutdown grace of {:?} over; closing remaining connections", limits.shutdown_grace),
        }
    });
}

/// One worker's open connections: counted for the acceptor's choice
/// ([`choose_worker`]), and told to finish their responses and close when
/// the server stops. What `hyper_util`'s `GracefulShutdown` does,
/// without its watch channel, which every connection polled on every
/// wake-up — once per request: here a connection registers its task's
/// waker when it first runs (again only if the task's waker changes) and
/// otherwise reads one flag.
#[derive(Default)]
struct Drain {
    stopping: AtomicBool,
    /// Open connections (their [`Slot`]s); `idle` is notified when the
    /// last one ends.
    open: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Wakers of the connections' tasks, by connection number.
    wakers: std::sync::Mutex<(u64, HashMap<u64, Waker>)>,
}

impl Drain {
    fn wakers(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Waker>)> {
        self.wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Open connections.
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Wraps a connection so that [`Drain::stop`] reaches it.
    fn watch<C>(drain: &Arc<Drain>, conn: C) -> Draining<C> {
        let id = {
            let mut w = drain.wakers();
            w.0 += 1;
            w.0
        };
        Draining {
            conn: Box::pin(conn),
            drain: Arc::clone(drain),
            id,
            registered: None,
            told: false,
        }
    }

    /// Tells every connection to finish, then waits until all have.
    async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self.wakers().1.drain().map(|(_, w)| w).collect();
        for w in wakers {
            w.wake();
        }
        while self.open.load(Ordering::SeqCst) > 0 {
            self.idle.notified().await;
        }
    }
}

/// A connection under a [`Drain`].
struct Draining<C> {
    conn: Pin<Box<C>>,
    drain: Arc<Drain>,
    id: u64,
    /// The waker last registered with the drain.
    registered: Option<Waker>,
    /// `graceful_shutdown` was called.
    told: bool,
}

impl<C: GracefulConnection> Future for Draining<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        if !this.told {
            if !this
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                this.drain.wakers().1.insert(this.id, cx.waker().clone());
                this.registered = Some(cx.waker().clone());
            }
            // Read after registering: a stop that took the wakers before
            // this registration had already set the flag.
            if this.drain.stopping.load(Ordering::SeqCst) {
                this.told = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

impl<C> Drop for Draining<C> {
    fn drop(&mut self) {
        if self.registered.is_some() {
            self.drain.wakers().1.remove(&self.id);
        }
    }
}

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
struct IdleIo {
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
    fn new(inner: AsyncFd<std::net::TcpStream>, idle: Duration, head: Duration) -> Self {
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

/// Route classes for metrics (indexes into `metrics::ROUTE_CLASSES`).
fn class_of(route: &str) -> usize {
    match route {
        "/rss.xml" | "/atom.xml" | "/feed.json" => 0,
        "/" => 2,
        "/feeds.opml" => 4,
        "/healthz" => 5,
        "/metrics" => 6,
        r if r.starts_with("/categories/") => 1,
        r if r.starts_with("/articles/") => 3,
        _ => 7,
    }
}

/// Answers one request from a snapshot. Never fails: every internal state
/// maps to a status code here.
pub fn respond<B>(req: &Request<B>, site: &Site, metrics: &Metrics) -> Response<Full<Bytes>> {
    let raw = req.uri().path();
    let path = raw
        .strip_suffix("index.html")
        .filter(|p| p.ends_with('/'))
        .unwrap_or(raw);
    let resp = route(req, raw, path, site, metrics);
    metrics.request(class_of(path), resp.status().as_u16());
    resp
}

/// `raw` is the request's path, `path` the route it names (`/x/index.html`
/// is `/x/`).
fn route<B>(
    req: &Request<B>,
    raw: &str,
    path: &str,
    site: &Site,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: use GET or HEAD\n",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    if refused(raw) {
        return not_found(site, head);
    }
    match path {
        "/healthz" => {
            // 503 while the publish loop is stuck or dead, so that a
            // monitor restarts Herald; 200 "degraded: …" for what a
            // restart would not fix (a full disk).
            let (status, text) = metrics.health.report();
            let mut r = plain(StatusCode::OK, "");
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if !head {
                *r.body_mut() = Full::new(Bytes::from(text));
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
        "/metrics" => {
            let mut body = metrics.render();
            let _ = std::fmt::Write::write_fmt(
                &mut body,
                format_args!(
                    "# TYPE herald_site_routes gauge\nherald_site_routes {}\n",
                    site.len()
                ),
            );
            let mut r = Response::new(Full::new(if head {
                Bytes::new()
            } else {
                Bytes::from(body)
            }));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
        _ => {}
    }
    let Some(asset) = site.get(path) else {
        let with_slash = format!("{path}/");
        if site.get(&with_slash).is_some() {
            let mut r = plain(StatusCode::MOVED_PERMANENTLY, "");
            if let Ok(v) = HeaderValue::from_str(&with_slash) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        return not_found(site, head);
    };
    serve_asset(req.headers(), asset, head, &site.cache_control)
}

/// Paths refused outright, so that no alias of a route is ever served:
/// `..`, `//`, a backslash, a NUL, or a percent-encoded dot, slash,
/// backslash or NUL. Routes are map keys, so none of these could reach
/// the disk anyway. One pass over the bytes: this runs for every request.
fn refused(path: &str) -> bool {
    let b = path.as_bytes();
    b.iter().enumerate().any(|(i, &c)| match c {
        b'\\' | 0 => true,
        b'.' => b.get(i + 1) == Some(&b'.'),
        b'/' => b.get(i + 1) == Some(&b'/'),
        b'%' => matches!(
            (b.get(i + 1), b.get(i + 2).map(u8::to_ascii_lowercase)),
            (Some(b'2'), Some(b'e' | b'f')) | (Some(b'5'), Some(b'c')) | (Some(b'0'), Some(b'0'))
        ),
        _ => false,
    })
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn not_found(site: &Site, head: bool) -> Response<Full<Bytes>> {
    let body = site
        .not_found()
        .map_or_else(|| Bytes::from_static(b"not found\n"), |a| a.body());
    let len = body.len();
    let mut r = Response::new(Full::new(if head { Bytes::new() } else { body }));
    *r.status_mut() = StatusCode::NOT_FOUND;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub use crate::site::Coding;

/// Picks the coding for a response from `Accept-Encoding` (RFC 9110
/// §12.5.3): of gzip and (when `have_br`) brotli, the one with the higher
/// q-value above 0 (brotli on a tie, being smaller); a coding the header
/// does not name takes the q of `*`, if any. Neither acceptable (or no
/// header): identity.
pub fn negotiate(headers: &HeaderMap, have_br: bool) -> Coding {
    let (mut gzip, mut br, mut star) = (None::<f32>, None::<f32>, None::<f32>);
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        for item in v.as_bytes().split(|&b| b == b',') {
            let (coding, params) = match item.iter().position(|&b| b == b';') {
                Some(i) => (&item[..i], &item[i + 1..]),
                None => (item, &[][..]),
            };
            let coding = coding.trim_ascii();
            let slot =
                if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                    &mut gzip
                } else if coding.eq_ignore_ascii_case(b"br") {
                    &mut br
                } else if coding == b"*" {
                    &mut star
                } else {
                    continue;
                };
            // The first mention of a coding counts.
            slot.get_or_insert_with(|| q_value(params));
        }
    }
    let gzip = gzip.or(star).unwrap_or(0.0);
    let br = if have_br {
        br.or(star).unwrap_or(0.0)
    } else {
        0.0
    };
    if br > 0.0 && br >= gzip {
        Coding::Br
    } else if gzip > 0.0 {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// The `q` of an `Accept-Encoding` item's parameters (`;q=0.5`), 1 when
/// absent or unreadable.
fn q_value(params: &[u8]) -> f32 {
    params
        .split(|&b| b == b';')
        .filter_map(|p| {
            let p = p.trim_ascii();
            p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q="))
        })
        .filter_map(|q| {
            std::str::from_utf8(q.trim_ascii())
                .ok()?
                .parse::<f32>()
                .ok()
        })
        .next()
        .unwrap_or(1.0)
}

/// Opaque tag without the weak prefix, for weak comparison (RFC 9110 §8.8.3.2).
fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// Does an `If-None-Match` / `If-Match` list match `etag`? `weak` selects
/// the comparison function.
fn list_matches(
    headers: &HeaderMap,
    name: header::HeaderName,
    etag: &[u8],
    weak: bool,
) -> Option<bool> {
    let mut present = false;
    for v in headers.get_all(&name) {
        present = true;
        // A client revalidating sends back exactly the tag it was given.
        if v.as_bytes() == etag {
            return Some(true);
        }
        for tag in v.as_bytes().split(|&b| b == b',') {
            let tag = tag.trim_ascii();
            let hit = tag == b"*"
                || if weak {
                    opaque(tag) == opaque(etag)
                } else {
                    !tag.starts_with(b"W/") && tag == etag
                };
            if hit {
                return Some(true);
            }
        }
    }
    present.then_some(false)
}

fn http_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
}

/// The outcome of evaluating preconditions.
#[derive(Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Send the representation.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates conditional request headers for a GET/HEAD in the order of
/// RFC 9110 §13.2.2:
/// 1. `If-Match` (strong comparison) — false → 412;
/// 2. else `If-Unmodified-Since` — modified after → 412;
/// 3. `If-None-Match` (weak comparison, `*` matches) — match → 304;
/// 4. else `If-Modified-Since` — not modified since → 304.
///
/// `etag` must be the validator of the representation about to be sent
/// (each content coding has its own), so a cached gzip body is never
/// confirmed for a client now asking for identity, or the reverse.
pub fn evaluate(headers: &HeaderMap, etag: &[u8], last_modified: SystemTime) -> Precondition {
    match list_matches(headers, header::IF_MATCH, etag, false) {
        Some(false) => return Precondition::Failed,
        Some(true) => {}
        None => {
            if let Some(since) = http_date(headers, header::IF_UNMODIFIED_SINCE) {
                if last_modified > since {
                    return Precondition::Failed;
                }
            }
        }
    }
    match list_matches(headers, header::IF_NONE_MATCH, etag, true) {
        Some(true) => return Precondition::NotModified,
        Some(false) => return Precondition::Proceed,
        None => {}
    }
    if let Some(since) = http_date(headers, header::IF_MODIFIED_SINCE) {
        if last_modified <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

fn serve_asset(
    headers: &HeaderMap,
    asset: &Asset,
    head: bool,
    cache_control: &HeaderValue,
) -> Response<Full<Bytes>> {
    let br = asset.br();
    let coding = match negotiate(headers, br.is_some()) {
        // An article page's gzip form is only ever larger for a tiny page.
        Coding::Gzip if asset.gzip_len >= asset.len => Coding::Identity,
        c => c,
    };
    let status = match evaluate(headers, asset.tag(coding).as_bytes(), asset.last_modified) {
        Precondition::Proceed => StatusCode::OK,
        Precondition::NotModified => StatusCode::NOT_MODIFIED,
        Precondition::Failed => StatusCode::PRECONDITION_FAILED,
    };
    let send_body = status == StatusCode::OK && !head;
    let mut r = Response::new(Full::new(match (send_body, coding, br) {
        (false, ..) => Bytes::new(),
        (true, Coding::Br, Some(b)) => b.bytes.clone(),
        (true, Coding::Gzip, _) => asset.gzip(),
        (true, ..) => asset.body(),
    }));
    *r.status_mut() = status;
    *r.headers_mut() = asset.headers(coding, status, cache_control);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{articles, settings};
    use crate::site::SiteBuilder;
    use http_body_util::BodyExt;

    fn site() -> Site {
        SiteBuilder::default()
            .build(&articles(), 0, &settings(), SystemTime::UNIX_EPOCH)
            .0
    }

    fn get(
        site: &Site,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response<Full<Bytes>> {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        respond(&b.body(()).unwrap(), site, &Metrics::default())
    }

    fn body(r: Response<Full<Bytes>>) -> Bytes {
        futures_lite_block(r.into_body().collect())
            .expect("Full bodies cannot fail")
            .to_bytes()
    }

    fn futures_lite_block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn hv<'a>(r: &'a Response<Full<Bytes>>, name: &str) -> &'a str {
        r.headers().get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// A feed GET carries type, length, validators, caching and CORS headers.
    #[test]
    fn feed_headers() {
        let s = site();
        let r = get(&s, "GET", "/rss.xml", &[]);
        assert_eq!(r.status(), 200);
        assert_eq!(hv(&r, "content-type"), "application/rss+xml; charset=utf-8");
        assert_eq!(
            hv(&r, "etag"),
            s.get("/rss.xml").unwrap().tag(Coding::Identity)
        );
        assert_eq!(hv(&r, "cache-control"), "public, max-age=300");
        assert_eq!(hv(&r, "vary"), "Accept-Encoding");
        assert_eq!(hv(&r, "access-control-allow-origin"), "*");
        assert_eq!(hv(&r, "last-modified"), "Fri, 23 May 2025 02:00:00 GMT");
        let len: usize = hv(&r, "content-length").parse().unwrap();
        assert_eq!(body(r).len(), len);
    }

    /// Each media type is right, with charset.
    #[test]
    fn media_types() {
        let s = site();
        for (p, ct) in [
            ("/atom.xml", "application/atom+xml; charset=utf-8"),
            ("/feed.json", "application/feed+json; charset=utf-8"),
            ("/feeds.opml", "text/x-opml; charset=utf-8"),
            ("/", "text/html; charset=utf-8"),
            ("/index.html", "text/html; charset=utf-8"),
            ("/articles/plain/", "text/html; charset=utf-8"),
            ("/articles/plain/index.html", "text/html; charset=utf-8"),
            (
                "/categories/world-news/feed.json",
                "application/feed+json; charset=utf-8",
            ),
        ] {
            let r = get(&s, "GET", p, &[]);
            assert_eq!(r.status(), 200, "{p}");
            assert_eq!(hv(&r, "content-type"), ct, "{p}");
        }
        assert_eq!(
            hv(&get(&s, "GET", "/", &[]), "access-control-allow-origin"),
            "",
            "CORS only on feeds"
        );
    }

    /// gzip is chosen by Accept-Encoding with q-values, has its own ETag, and
    /// decompresses to the identity body.
    #[test]
    fn gzip_negotiation() {
        let s = site();
        let a = s.get("/atom.xml").unwrap();
        for (ae, gz) in [
            ("gzip", true),
            ("gzip, deflate, br", true),
            ("br;q=1.0, gzip;q=0.5", true),
            ("gzip;q=0", false),
            ("GZIP;Q=0.001", true),
            ("*", true),
            ("*;q=0", false),
            ("identity", false),
            ("deflate", false),
            ("x-gzip", true),
            ("*, gzip;q=0", false),
        ] {
            let r = get(&s, "GET", "/atom.xml", &[("accept-encoding", ae)]);
            assert_eq!(hv(&r, "content-encoding") == "gzip", gz, "{ae}");
            assert_eq!(
                hv(&r, "etag"),
                a.tag(if gz { Coding::Gzip } else { Coding::Identity }),
                "{ae}"
            );
        }
        let r = get(&s, "GET", "/atom.xml", &[("accept-encoding", "gzip")]);
        let b = body(r);
        let mut d = flate2::read::GzDecoder::new(&b[..]);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut out).unwrap();
        assert_eq!(out, a.body());
    }

    /// Once a feed's brotli form is made, clients that accept br get it,
    /// with its own ETag, decompressing to the document; q-values decide
    /// between br and gzip (br on a tie); article pages never get one.
    #[test]
    fn brotli_negotiation() {
        let s = site();
        let a = s.get("/atom.xml").unwrap();
        let r = get(&s, "GET", "/atom.xml", &[("accept-encoding", "br")]);
        assert_eq!(hv(&r, "content-encoding"), "", "no brotli form yet");
        assert!(a.make_br(5));
        assert!(!a.make_br(5), "made once");
        let br = a.br().expect("brotli beats gzip on a feed");
        assert!(br.bytes.len() < a.gzip_len);
        for (ae, want) in [
            ("br", "br"),
            ("gzip, deflate, br", "br"),
            ("br;q=0.5, gzip", "gzip"),
            ("gzip;q=0.5, br;q=0.5", "br"),
            ("br;q=0", ""),
            ("br;q=0, gzip", "gzip"),
            ("*", "br"),
            ("*, br;q=0", "gzip"),
            ("*, gzip;q=0", "br"),
            ("BR;Q=0.2, gzip;q=0.1", "br"),
            ("identity", ""),
        ] {
            let r = get(&s, "GET", "/atom.xml", &[("accept-encoding", ae)]);
            assert_eq!(hv(&r, "content-encoding"), want, "{ae}");
            let tag = match want {
                "br" => a.tag(Coding::Br),
                "gzip" => a.tag(Coding::Gzip),
                _ => a.tag(Coding::Identity),
            };
            assert_eq!(hv(&r, "etag"), tag, "{ae}");
            assert_eq!(hv(&r, "vary"), "Accept-Encoding", "{ae}");
        }
        let r = get(&s, "GET", "/atom.xml", &[("accept-encoding", "br")]);
        assert_eq!(hv(&r, "content-length"), br.bytes.len().to_string());
        let z = body(r);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut brotli::Decompressor::new(&z[..], 4096), &mut out).unwrap();
        assert_eq!(out, a.body());
        // Its ETag validates the brotli form only.
        let br_tag = a.tag(Coding::Br).to_string();
        let r = get(
            &s,
            "GET",
            "/atom.xml",
            &[("accept-encoding", "br"), ("if-none-match", &br_tag)],
        );
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(hv(&r, "etag"), br_tag);
        let r = get(
            &s,
            "GET",
            "/atom.xml",
            &[("accept-encoding", "gzip"), ("if-none-match", &br_tag)],
        );
        assert_eq!(r.status(), StatusCode::OK);
        // Article pages keep no uncompressed copy to make one from.
        let page = s.get("/articles/plain/").unwrap();
        assert!(!page.make_br(5));
        let r = get(
            &s,
            "GET",
            "/articles/plain/",
            &[("accept-encoding", "br, gzip")],
        );
        assert_eq!(hv(&r, "content-encoding"), "gzip");
        assert_eq!(
            s.wanting_br(None).len(),
            s.routes()
                .filter(|(r, _)| !r.starts_with("/articles/"))
                .count()
                - 1,
            "every feed, the index and OPML but the one made"
        );
    }

    /// Article pages are kept gzip-only in memory; a client without gzip
    /// still gets the exact page, with the identity ETag and length.
    #[test]
    fn article_page_identity_from_gzip() {
        let s = site();
        let a = s.get("/articles/plain/").unwrap();
        let r = get(&s, "GET", "/articles/plain/", &[]);
        assert_eq!(hv(&r, "etag"), a.tag(Coding::Identity));
        assert_eq!(hv(&r, "content-length"), a.len.to_string());
        let b = body(r);
        assert!(String::from_utf8_lossy(&b).contains("<h1>Plain title</h1>"));
        let z = body(get(
            &s,
            "GET",
            "/articles/plain/",
            &[("accept-encoding", "gzip")],
        ));
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[..]), &mut out).unwrap();
        assert_eq!(out, b);
    }

    /// Conditional GET per RFC 9110 §13.2.2: If-None-Match wins over
    /// If-Modified-Since, lists and `*` and weak tags match, and an ETag of
    /// the other encoding never produces a 304.
    #[test]
    fn conditional_get() {
        let s = site();
        let a = s.get("/rss.xml").unwrap();
        let lm = a.last_modified_http();
        let lm = lm.as_str();
        let (etag, etag_gz) = (
            a.tag(Coding::Identity).to_string(),
            a.tag(Coding::Gzip).to_string(),
        );
        let old = "Thu, 01 Jan 2015 00:00:00 GMT";
        let weak = format!("W/{}", etag.as_str());
        let list = format!("\"x\", {}", etag.as_str());
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);
        let cases: Vec<Case<'_>> = vec![
            ("inm exact", vec![("if-none-match", etag.as_str())], 304),
            ("inm weak", vec![("if-none-match", &weak)], 304),
            ("inm list", vec![("if-none-match", &list)], 304),
            ("inm star", vec![("if-none-match", "*")], 304),
            ("inm other", vec![("if-none-match", "\"nope\"")], 200),
            (
                "inm beats ims",
                vec![("if-none-match", "\"nope\""), ("if-modified-since", lm)],
                200,
            ),
            ("ims equal", vec![("if-modified-since", lm)], 304),
            ("ims older", vec![("if-modified-since", old)], 200),
            ("ims garbage", vec![("if-modified-since", "yesterday")], 200),
            (
                "gzip etag on identity request",
                vec![("if-none-match", etag_gz.as_str())],
                200,
            ),
            (
                "identity etag on gzip request",
                vec![
                    ("if-none-match", etag.as_str()),
                    ("accept-encoding", "gzip"),
                ],
                200,
            ),
            (
                "gzip etag on gzip request",
                vec![
                    ("if-none-match", etag_gz.as_str()),
                    ("accept-encoding", "gzip"),
                ],
                304,
            ),
            ("if-match fails", vec![("if-match", "\"nope\"")], 412),
            ("if-match ok", vec![("if-match", etag.as_str())], 200),
            ("ius older", vec![("if-unmodified-since", old)], 412),
        ];
        for (label, h, want) in cases {
            let r = get(&s, "GET", "/rss.xml", &h);
            assert_eq!(r.status(), want, "{label}");
            if want == 304 {
                assert!(!hv(&r, "etag").is_empty(), "{label}: 304 repeats ETag");
                assert_eq!(hv(&r, "cache-control"), "public, max-age=300", "{label}");
                assert_eq!(hv(&r, "vary"), "Accept-Encoding", "{label}");
                assert_eq!(
                    hv(&r, "last-modified"),
                    "",
                    "{label}: 304 omits Last-Modified"
                );
                assert_eq!(
                    hv(&r, "content-type"),
                    "",
                    "{label}: 304 has no content headers"
                );
                assert!(body(r).is_empty(), "{label}: 304 has no body");
            }
        }
    }

    /// HEAD gives GET's headers and no body; other methods get 405 + Allow.
    #[test]
    fn head_and_methods() {
        let s = site();
        let g = get(&s, "GET", "/feed.json", &[]);
        let h = get(&s, "HEAD", "/feed.json", &[]);
        assert_eq!(h.status(), 200);
        assert_eq!(hv(&h, "content-length"), hv(&g, "content-length"));
        assert_eq!(hv(&h, "etag"), hv(&g, "etag"));
        assert!(body(h).is_empty());
        for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            let r = get(&s, m, "/feed.json", &[]);
            assert_eq!(r.status(), 405, "{m}");
            assert_eq!(hv(&r, "allow"), "GET, HEAD");
        }
    }

    /// Unknown routes and traversal attempts get the 404 page; a missing
    /// trailing slash on an article redirects.
    #[test]
    fn not_found_and_traversal() {
        let s = site();
        for p in [
            "/nope",
            "/../etc/passwd",
            "/articles/../rss.xml",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/articles/%2E%2E/x",
            "/..%5c..%5cwindows",
            "/articles\\plain",
            "/rss.xml%00",
            "//etc/passwd",
            "/Cargo.toml",
        ] {
            let r = get(&s, "GET", p, &[]);
            assert_eq!(r.status(), 404, "{p}");
            assert_eq!(hv(&r, "content-type"), "text/html; charset=utf-8");
            assert!(
                String::from_utf8_lossy(&body(r)).contains("Not found"),
                "{p}"
            );
        }
        let r = get(&s, "GET", "/articles/plain", &[]);
        assert_eq!(r.status(), 301);
        assert_eq!(hv(&r, "location"), "/articles/plain/");
    }

    /// Path shapes refused before any lookup, and ordinary paths that pass.
    #[test]
    fn refused_paths() {
        for p in [
            "/..", "/a/../b", "//x", "/a//b", "/a\\b", "/a\0", "/%2e%2e/", "/%2E", "/x%2fy",
            "/x%2F", "/x%5c", "/x%5C", "/x%00", "/..%5c..",
        ] {
            assert!(refused(p), "{p:?} must be refused");
        }
        for p in [
            "/",
            "/rss.xml",
            "/articles/a.b/",
            "/categories/world-news/atom.xml",
            "/a%20b",
            "/.well-known",
            "/a.",
            "/x%2",
            "/x%",
            "/x%25",
            "/x%3f",
        ] {
            assert!(!refused(p), "{p:?} must pass");
        }
    }

    /// Connections arriving on one CPU share a worker; one queue for all
    /// traffic still spreads them by count; no CPU: in turn.
    #[test]
    fn worker_choice() {
        let mut next = 0;
        assert_eq!(choose_worker(Some(0), &[0, 0], &mut next), 0);
        assert_eq!(choose_worker(Some(3), &[5, 0], &mut next), 1);
        assert_eq!(choose_worker(Some(2), &[8, 0], &mut next), 0);
        assert_eq!(
            choose_worker(Some(2), &[9, 0], &mut next),
            1,
            "clearly busier"
        );
        assert_eq!(choose_worker(Some(0), &[38, 20], &mut next), 0);
        assert_eq!(choose_worker(Some(0), &[39, 20], &mut next), 1);
        // Every connection on CPU 0: both workers get a share.
        let mut open = [0usize; 2];
        for _ in 0..1000 {
            open[choose_worker(Some(0), &open, &mut next)] += 1;
        }
        assert!(open[1] >= 350 && open[0] <= 650, "{open:?}");
        assert_eq!(next, 0, "in turn only without a CPU");
        let turns: Vec<usize> = (0..5)
            .map(|_| choose_worker(None, &[7, 0, 0], &mut next))
            .collect();
        assert_eq!(turns, [0, 1, 2, 0, 1]);
        assert_eq!(choose_worker(Some(5), &[0], &mut next), 0, "one worker");
    }

    /// /healthz and /metrics answer; metrics count requests by class and status.
    #[test]
    fn health_and_metrics() {
        let s = site();
        let m = Metrics::default();
        let req = |p: &str| Request::builder().uri(p).body(()).unwrap();
        assert_eq!(respond(&req("/healthz"), &s, &m).status(), 200);
        respond(&req("/rss.xml"), &s, &m);
        respond(&req("/nope"), &s, &m);
        let t = String::from_utf8(body(respond(&req("/metrics"), &s, &m)).to_vec()).unwrap();
        assert!(
            t.contains("herald_http_requests_total{route=\"feed\",status=\"200\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("herald_http_requests_total{route=\"other\",status=\"404\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("herald_http_requests_total{route=\"health\",status=\"200\"} 1"),
            "{t}"
        );
    }
}
