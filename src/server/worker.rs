//! One HTTP worker thread: its own single-threaded runtime, the hyper
//! connection builders, and the connections dealt to it.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::io::unix::AsyncFd;

use super::accept::Accepted;
use super::drain::Drain;
use super::handler::serve;
use super::io::IdleIo;
use super::{Limits, Shared};

/// One HTTP worker thread: serves the connections it is dealt until the
/// acceptor hangs up, then drains them for up to `shutdown_grace`.
pub(super) fn run(
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
            // hyper's smallest (below it panics); the config never goes
            // lower, so the limit is what it says on HTTP/1 as on HTTP/2.
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(128)
            // PINGs find peers gone without a word (no answer within the
            // timeout); answered ones keep nothing open (see `clock.rs`).
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
            let proxies = limits.trusted_proxies.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = Arc::clone(&shared2);
                // Behind a trusted reverse proxy, the client it names.
                let client = proxies.client(peer.ip(), req.headers());
                async move { Ok::<_, Infallible>(serve(req, &shared, client).await) }
            });
            let conn = builder.serve_connection(io, svc).into_owned();
            let fut = Drain::watch(&drain, conn);
            let metrics = Arc::clone(&shared.metrics);
            metrics
                .connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                if let Err(e) = fut.await {
                    if let Some(status) = answered_by_hyper(&*e) {
                        // Before any route was read: class "other".
                        metrics.request(super::route::class_of(""), status);
                    }
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

/// The status hyper sent on its own before an HTTP/1 connection ended
/// with `e`, so `/metrics` counts it too: a request head it could not
/// parse (400), one over `max_buf_size` (431) or a URI over hyper's own
/// limit (414). Hyper's `on_error` writes those answers and then returns
/// the parse error from the connection; the two kinds `is_parse_too_large`
/// covers are told apart by their message. Other parse errors (an HTTP/2
/// preface, hyper's internal ones) get no answer.
fn answered_by_hyper(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            let text = h.to_string();
            return if h.is_parse_too_large() {
                Some(if text.starts_with("URI too long") {
                    414
                } else {
                    431
                })
            } else if h.is_parse()
                && !h.is_parse_status()
                && !h.is_parse_version_h2()
                && !text.starts_with("internal error")
            {
                Some(400)
            } else {
                None
            };
        }
        cur = c.source();
    }
    None
}
