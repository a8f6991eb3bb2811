//! The accept loop: a connection is accepted under a permit of
//! `max_connections`, with back-off when accepting fails, and dealt to a
//! worker thread ([`choose_worker`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::drain::Drain;
use super::Limits;

/// A worker thread as the acceptor sees it: where to send its connections
/// and how many it holds.
pub(super) struct Worker {
    /// Connections dealt to it.
    pub(super) queue: tokio::sync::mpsc::UnboundedSender<Accepted>,
    /// Its open connections.
    pub(super) drain: Arc<Drain>,
}

/// Accepts on `listener` until `shutdown` resolves, dealing each
/// connection to one of `workers`.
pub(super) async fn serve(
    listener: TcpListener,
    limits: &Limits,
    workers: &[Worker],
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
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
        let loads: Vec<usize> = workers.iter().map(|w| w.drain.open()).collect();
        let to = choose_worker(cpu, &loads, &mut next);
        let slot = Slot::new(permit, &workers[to].drain);
        if workers[to].queue.send((stream, peer, slot)).is_err() {
            tracing::error!("HTTP worker thread {to} stopped");
        }
    }
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
pub(super) struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    drain: Arc<Drain>,
}

impl Slot {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, drain: &Arc<Drain>) -> Slot {
        drain.opened();
        Slot {
            _permit: permit,
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
pub(super) type Accepted = (std::net::TcpStream, std::net::SocketAddr, Slot);

#[cfg(test)]
mod tests {
    use super::*;

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
