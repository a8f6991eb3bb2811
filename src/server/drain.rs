//! Graceful drain: a worker's open connections are told to finish their
//! responses and close when the server stops.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use hyper_util::server::graceful::GracefulConnection;

/// One worker's open connections: counted for the acceptor's choice
/// (`accept::choose_worker`), and told to finish their responses and close
/// when the server stops. What `hyper_util`'s `GracefulShutdown` does,
/// without its watch channel, which every connection polled on every
/// wake-up — once per request: here a connection registers its task's
/// waker when it first runs (again only if the task's waker changes) and
/// otherwise reads one flag.
#[derive(Default)]
pub(super) struct Drain {
    stopping: AtomicBool,
    /// Open connections (their [`super::accept::Slot`]s); `idle` is
    /// notified when the last one ends.
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
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a connection dealt to this worker.
    pub(super) fn opened(&self) {
        self.open.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a connection gone; the last one wakes [`Drain::stop`].
    pub(super) fn closed(&self) {
        if self.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_one();
        }
    }

    /// Wraps a connection so that [`Drain::stop`] reaches it.
    pub(super) fn watch<C>(drain: &Arc<Drain>, conn: C) -> Draining<C> {
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
    pub(super) async fn stop(&self) {
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
pub(super) struct Draining<C> {
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
