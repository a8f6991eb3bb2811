//! The HTTP server: hyper 1.x (HTTP/1.1 keep-alive and h2c) over the
//! current [`Site`] snapshot. A request is a hash lookup plus header
//! comparisons: everything else was computed at publish time, and nothing
//! here touches the disk — routes are keys in the snapshot, never paths.
//!
//! The pipeline of one request, in order ([`respond`]): method → route
//! normalisation → built-in route (`/healthz`) → snapshot lookup →
//! content negotiation (brotli, gzip) → conditional GET → headers; then a
//! feed's answer is counted for the readership figures (`stats`).
//! `/metrics` and `/stats` are not served here but on the admin listener
//! (`admin`). Uses `site`, `metrics` and `stats`.
//!
//! # Layout
//!
//! - `mod.rs`: [`run`], what the server shares with the daemon, its limits.
//! - `accept.rs`: the accept loop: permits, back-off, the per-address
//!   cap, worker choice.
//! - `worker.rs`: one thread per worker, its runtime and hyper builders.
//! - `drain.rs`: a worker's open connections, drained on shutdown.
//! - `forwarded.rs`: the client behind a trusted reverse proxy.
//! - `io.rs`: the socket: `recv`, `writev`, `sendfile`, under the
//!   connection's clock.
//! - `clock.rs`: a pure connection clock: the head and idle deadlines
//!   from what was read and written.
//! - `handler.rs`: [`respond`], the request pipeline (and `serve`,
//!   which hands requests to the built-in WebSub hub to it), whose stages are
//!   `route.rs` (method, path, built-in routes), `negotiate.rs` (content
//!   coding), `conditional.rs` (preconditions) and `response.rs` (building
//!   the response).

mod accept;
mod clock;
mod conditional;
mod drain;
mod forwarded;
mod handler;
mod io;
mod negotiate;
mod range;
mod response;
pub(crate) use response::text;
mod route;
mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::site::Site;

pub use crate::site::Coding;
pub use conditional::{evaluate, Precondition};
pub use forwarded::TrustedProxies;
pub use handler::{respond, respond_counted};
pub use negotiate::negotiate;

/// What the server shares with the daemon: the snapshot (swapped
/// atomically on publish) and the counters.
#[derive(Debug)]
pub struct Shared {
    /// The current snapshot; readers see the old or the new, never a mix.
    pub site: ArcSwap<Site>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The built-in WebSub hub, when it runs: requests to its path go
    /// to it.
    pub hub: Option<Arc<crate::syndicate::Hub>>,
    /// The readership counters, when counting is on: each feed answered
    /// is counted.
    pub stats: Option<Arc<crate::stats::Stats>>,
}

impl Shared {
    /// Wraps a first snapshot.
    pub fn new(site: Site) -> Shared {
        Shared {
            site: ArcSwap::from_pointee(site),
            metrics: Arc::new(Metrics::default()),
            hub: None,
            stats: None,
        }
    }
}

/// Connection limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent connections; further clients wait (accepted, up to as
    /// many again, then in the listen backlog).
    pub max_connections: usize,
    /// Open and waiting connections from one client address (an IPv6
    /// client: its /64); further ones are refused at once with a 503.
    pub max_connections_per_ip: usize,
    /// A request head must arrive within this time of its first byte (of
    /// the connection opening, for the first request), as must the whole
    /// HTTP/2 preface; see `clock.rs`.
    pub header_read_timeout: Duration,
    /// A connection idle for this long is closed: on HTTP/1 no bytes
    /// moving either way, on HTTP/2 no request being answered.
    pub idle_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// On shutdown, how long in-flight responses may take.
    pub shutdown_grace: Duration,
    /// Threads serving connections.
    pub workers: usize,
    /// Reverse proxies (`trusted_proxies`) whose forwarding headers name
    /// the client, and whose connections are not counted against
    /// `max_connections_per_ip`.
    pub trusted_proxies: TrustedProxies,
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and
/// lets open connections finish their responses for up to
/// `limits.shutdown_grace`.
///
/// This task only accepts (`accept::serve`): each connection is handed
/// to one of `limits.workers` threads, each running its own
/// single-threaded runtime
/// (as nginx's worker processes do), so a connection's requests never
/// cross threads and no worker wakes another to steal work.
pub async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut threads = Vec::new();
    let mut workers = Vec::new();
    for i in 0..limits.workers.max(1) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<accept::Accepted>();
        let shared = Arc::clone(&shared);
        let limits = limits.clone();
        let drain = Arc::new(drain::Drain::default());
        let drain2 = Arc::clone(&drain);
        let spawned = std::thread::Builder::new()
            .name(format!("herald-http-{i}"))
            .spawn(move || worker::run(rx, shared, limits, drain2));
        match spawned {
            Ok(h) => {
                threads.push(h);
                workers.push(accept::Worker { queue: tx, drain });
            }
            Err(e) => tracing::error!("cannot start HTTP worker thread {i}: {e}"),
        }
    }
    if workers.is_empty() {
        tracing::error!("no HTTP worker thread could start; not serving");
        shutdown.await;
        return;
    }
    accept::serve(listener, &limits, &shared.metrics, &workers, shutdown).await;
    drop(workers); // each worker now drains its connections and ends
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}
