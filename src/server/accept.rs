//! The accept loop: a connection is accepted, counted against its
//! client's share (`max_connections_per_ip`, refused at once beyond it),
//! given a permit of `max_connections` (waiting for one, in arrival
//! order, when all are taken) and dealt to a worker thread
//! ([`choose_worker`]); accept errors back off.
//!
//! Accept first, then wait for a permit — not the other way round. With a
//! permit taken before `accept()`, a server whose slots are all taken
//! stops accepting: one address that holds its share keeps connecting,
//! its connections pile up in the listen backlog, shared by every client,
//! where nothing can look at their address, and once a slot frees each is
//! accepted only to be refused, while the others' connections queue behind
//! them or find the backlog full. Accepted at once, a connection over its
//! address's share is refused at once whether or not slots are free, and
//! only connections within their share wait — in a queue of up to
//! `max_connections` of them, served oldest first; when that is full too,
//! the backlog holds the rest, as before.

use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::drain::Drain;
use super::Limits;
use crate::metrics::Metrics;

/// A worker thread as the acceptor sees it: where to send its connections
/// and how many it holds.
pub(super) struct Worker {
    /// Connections dealt to it.
    pub(super) queue: tokio::sync::mpsc::UnboundedSender<Accepted>,
    /// Its open connections.
    pub(super) drain: Arc<Drain>,
}

/// An accepted connection waiting for a permit, holding its place in its
/// address's share.
type Waiting = (std::net::TcpStream, SocketAddr, Place);

/// Accepts on `listener` until `shutdown` resolves, dealing each
/// connection to one of `workers`.
pub(super) async fn serve(
    listener: TcpListener,
    limits: &Limits,
    metrics: &Metrics,
    workers: &[Worker],
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let shares = Arc::new(Shares::new(
        limits.max_connections_per_ip,
        limits.trusted_proxies.clone(),
    ));
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut refusals = Refusals::default();
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    let mut next = 0;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // The oldest waiting connection first, before accepting more.
            p = Arc::clone(&permits).acquire_owned(), if !waiting.is_empty() => {
                let permit = p.expect("semaphore is never closed");
                if let Some(w) = waiting.pop_front() {
                    deal(w, permit, workers, &mut next);
                }
            }
            r = listener.accept(), if waiting.len() < limits.max_connections => {
                let (stream, peer) = match r {
                    Ok(s) => { backoff = Duration::from_millis(5); s }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                // Leave this runtime's reactor; the worker registers it
                // with its own.
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, "connection dropped: {e}");
                        continue;
                    }
                };
                let Some(place) = Shares::take(&shares, peer.ip()) else {
                    refuse(stream);
                    metrics.refused_connections.fetch_add(1, Ordering::Relaxed);
                    // A 503 sent, before any request: route class "other".
                    metrics.request(super::route::class_of(""), 503);
                    refusals.count(peer, limits.max_connections_per_ip);
                    continue;
                };
                let permit = if waiting.is_empty() {
                    Arc::clone(&permits).try_acquire_owned().ok()
                } else {
                    None
                };
                match permit {
                    Some(permit) => deal((stream, peer, place), permit, workers, &mut next),
                    None => waiting.push_back((stream, peer, place)),
                }
            }
        }
    }
}

/// Hands a connection with its permit to a worker.
fn deal(
    (stream, peer, place): Waiting,
    permit: OwnedSemaphorePermit,
    workers: &[Worker],
    next: &mut usize,
) {
    let _ = stream.set_nodelay(true);
    let cpu = rustix::net::sockopt::socket_incoming_cpu(&stream)
        .ok()
        .and_then(|c| i32::try_from(c).ok())
        .and_then(|c| usize::try_from(c).ok());
    let loads: Vec<usize> = workers.iter().map(|w| w.drain.open()).collect();
    let to = choose_worker(cpu, &loads, next);
    let slot = Slot::new(permit, place, &workers[to].drain);
    if workers[to].queue.send((stream, peer, slot)).is_err() {
        tracing::error!("HTTP worker thread {to} stopped");
    }
}

/// What a connection over its address's share is told before it is
/// closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 39\r\n\
Connection: close\r\n\
\r\n\
too many connections from this address\n";

/// Refuses a connection at once: one write of [`REFUSED`] (a new
/// socket's buffer takes it whole), one read of whatever request already
/// arrived (closing on unread bytes would send a reset, and a client may
/// then drop the answer unread), then close. Both calls are non-blocking
/// (tokio hands the socket over so): nothing waits on the client.
fn refuse(stream: std::net::TcpStream) {
    use std::io::{Read, Write};
    let _ = (&stream).write(REFUSED);
    let _ = (&stream).read(&mut [0u8; 2048]);
}

/// Refusals, logged at most once a minute (a flood must not flood the
/// log): how many since the last line, and the last address.
#[derive(Default)]
struct Refusals {
    since: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn count(&mut self, peer: SocketAddr, share: usize) {
        self.unlogged += 1;
        tracing::debug!(%peer, "connection refused: its address holds {share} already");
        if self
            .since
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        tracing::warn!(
            "refused {} connection(s) from addresses holding max_connections_per_ip = {share} already (the last from {})",
            self.unlogged,
            peer.ip()
        );
        self.since = Some(Instant::now());
        self.unlogged = 0;
    }
}

/// Open (and waiting) connections per client address, each address up to
/// its share.
struct Shares {
    share: usize,
    /// Reverse proxies carry many clients: their connections are not
    /// counted (the proxy limits each client).
    exempt: super::forwarded::TrustedProxies,
    open: Mutex<FxHashMap<u128, usize>>,
}

impl Shares {
    fn new(share: usize, exempt: super::forwarded::TrustedProxies) -> Shares {
        Shares {
            share,
            exempt,
            open: Mutex::new(FxHashMap::default()),
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, FxHashMap<u128, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection from `ip`; `None` when its address
    /// holds its share already.
    fn take(shares: &Arc<Shares>, ip: IpAddr) -> Option<Place> {
        if shares.exempt.trusts(ip) {
            return Some(Place {
                shares: Arc::clone(shares),
                key: None,
            });
        }
        let key = client_key(ip);
        let mut open = shares.open();
        let n = open.entry(key).or_insert(0);
        if *n >= shares.share {
            return None;
        }
        *n += 1;
        Some(Place {
            shares: Arc::clone(shares),
            key: Some(key),
        })
    }
}

/// One connection counted in its address's share, until dropped.
pub(super) struct Place {
    shares: Arc<Shares>,
    /// `None`: not counted (a trusted proxy).
    key: Option<u128>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        let mut open = self.shares.open();
        if let Some(n) = open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

/// The key a client is counted under: an IPv4 address as itself, also
/// when it arrives IPv4-mapped on an IPv6 socket (`::ffff:a.b.c.d`); an
/// IPv6 address by its /64 network, since one host (a phone, a home
/// network) holds a whole /64 and may use any address in it (temporary
/// addresses, RFC 8981) — the /64 is what an IPv4 address is to a home
/// behind NAT. Keys of the two kinds never meet: an IPv6 key has its low
/// 64 bits zero, an IPv4 one (mapped) has `ffff` there.
pub(super) fn client_key(ip: IpAddr) -> u128 {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return u128::from(v6) & !u128::from(u64::MAX),
        },
    };
    u128::from(v4.to_ipv6_mapped())
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

/// A connection's place: its permit under `max_connections`, its place in
/// its address's share and its count among its worker's open connections
/// (taken when it is dealt, so the next choice sees it), all given back
/// when it ends.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    _place: Place,
    drain: Arc<Drain>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, place: Place, drain: &Arc<Drain>) -> Slot {
        drain.opened();
        Slot {
            _permit: permit,
            _place: place,
            drain: Arc::clone(drain),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.drain.closed();
    }
}

/// An accepted connection on its way to a worker thread.
pub(super) type Accepted = (std::net::TcpStream, SocketAddr, Slot);

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses are counted as their clients: IPv4 as itself, also
    /// IPv4-mapped; IPv6 by its /64; the two kinds never share a key.
    #[test]
    fn client_keys() {
        let key = |s: &str| client_key(s.parse().unwrap());
        for (label, a, b, same) in [
            (
                "IPv4-mapped is its IPv4",
                "192.0.2.7",
                "::ffff:192.0.2.7",
                true,
            ),
            ("two IPv4 addresses", "192.0.2.7", "192.0.2.8", false),
            (
                "one /64",
                "2001:db8:1:2::1",
                "2001:db8:1:2:ffff:1:2:3",
                true,
            ),
            ("two /64s", "2001:db8:1:2::1", "2001:db8:1:3::1", false),
            ("IPv4 and the /64 it would fall in", "0.0.0.1", "::1", false),
            ("IPv4-compatible is IPv6", "192.0.2.7", "::192.0.2.7", false),
        ] {
            assert_eq!(key(a) == key(b), same, "{label}");
        }
    }

    /// An address gets its share and no more; a place given back is free
    /// again, and an address holding none leaves no entry.
    #[test]
    fn shares() {
        let shares = Arc::new(Shares::new(2, Default::default()));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = Shares::take(&shares, ip("127.0.0.1")).expect("first");
        let a2 = Shares::take(&shares, ip("::ffff:127.0.0.1")).expect("second");
        assert!(Shares::take(&shares, ip("127.0.0.1")).is_none(), "third");
        let b = Shares::take(&shares, ip("127.0.0.2")).expect("another address");
        drop(a1);
        let a3 = Shares::take(&shares, ip("127.0.0.1")).expect("freed");
        drop((a2, a3, b));
        assert!(shares.open().is_empty());
    }

    /// The refusal is a whole HTTP/1.1 response whose length is right.
    #[test]
    fn refusal_is_well_formed() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{text:?}"
        );
        assert!(head.contains("\r\nConnection: close"));
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
}
