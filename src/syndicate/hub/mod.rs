//! The built-in hub (W3C WebSub §5–§7), at `/websub`: subscribers POST a
//! subscription request, Herald answers 202 and verifies intent with a GET
//! challenge to the callback, and only then stores the subscription
//! (`state_dir/websub.json`). Each change of a topic is POSTed to its
//! subscribers, signed when they gave a secret. Everything it does on the
//! network runs on the syndication runtime, at most
//! `delivery_concurrency` requests at once.
//!
//! - `subscribe.rs`: the request path: read, validate, rate-limit, queue.
//! - `verify.rs`: verification of intent, then store or remove.
//! - `deliver.rs`: content distribution, with retries.
//! - `store.rs`: the subscriptions and their file.

mod deliver;
mod store;
mod subscribe;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use super::{Backoff, Change};
use crate::config::{Config, WebSubConfig};

pub use store::Subscription;

/// How often leases are checked for their end (besides at each change).
const SWEEP: Duration = Duration::from_secs(30);

/// Verifications under way, at most (beyond it, requests get 503).
const MAX_PENDING: usize = 1024;

/// Callback names being resolved for the request path at once (each
/// resolution holds a thread of the resolver's pool for up to
/// `request_timeout_secs`; beyond it, requests get 503).
const MAX_RESOLVING: usize = 64;

/// Client addresses remembered for the request rate (beyond it, the
/// oldest minute is forgotten first; a full table of current clients
/// refuses new ones).
const MAX_CLIENTS: usize = 65_536;

/// Now, in Unix seconds.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a subscriber asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `hub.mode=subscribe`.
    Subscribe,
    /// `hub.mode=unsubscribe`.
    Unsubscribe,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Subscribe => "subscribe",
            Mode::Unsubscribe => "unsubscribe",
        }
    }
}

/// A request accepted for verification.
#[derive(Debug, Clone)]
pub struct Intent {
    mode: Mode,
    route: String,
    topic: String,
    callback: url::Url,
    lease: u64,
    secret: Option<String>,
}

/// The built-in hub, shared by the request path and the syndication
/// runtime.
#[derive(Debug)]
pub struct Hub {
    cfg: WebSubConfig,
    base_url: String,
    client: reqwest::Client,
    backoff: Backoff,
    rt: tokio::runtime::Handle,
    store: Arc<store::Store>,
    /// Verifications under way, by route and callback.
    pending: Mutex<HashMap<(String, String), Mode>>,
    /// Requests per client key in the current minute.
    rate: Mutex<HashMap<u128, (Instant, usize)>>,
    /// Outgoing requests at once.
    permits: Arc<Semaphore>,
    /// Name resolutions of the request path at once.
    resolving: Semaphore,
    /// Deliveries waiting or under way, by route and callback.
    outbox: Mutex<HashMap<(String, String), deliver::Slot>>,
    /// Subscriptions whose last delivery was dropped (logged once).
    failing: Mutex<std::collections::HashSet<(String, String)>>,
}

impl Hub {
    /// Opens the hub: reads the stored subscriptions (a damaged file is
    /// logged, and the hub starts with none) and starts the lease sweeper
    /// on `rt`.
    pub fn open(
        config: &Config,
        client: reqwest::Client,
        backoff: Backoff,
        rt: tokio::runtime::Handle,
    ) -> Arc<Hub> {
        let cfg = config.websub.clone();
        let (store, err) = store::Store::open(&config.state_dir, cfg.max_subscriptions, unix_now());
        if let Some(e) = err {
            tracing::error!("websub: {e}; starting with no subscriptions");
        }
        if !store.is_empty() {
            tracing::info!(
                "websub: {} subscriptions read from {}",
                store.len(),
                config.state_dir.join(store::FILE).display()
            );
        }
        let hub = Arc::new(Hub {
            permits: Arc::new(Semaphore::new(cfg.delivery_concurrency)),
            resolving: Semaphore::new(MAX_RESOLVING),
            cfg,
            base_url: config.base_url.clone(),
            client,
            backoff,
            rt,
            store: Arc::new(store),
            pending: Mutex::default(),
            rate: Mutex::default(),
            outbox: Mutex::default(),
            failing: Mutex::default(),
        });
        let weak = Arc::downgrade(&hub);
        hub.rt.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP).await;
                let Some(hub) = weak.upgrade() else { break };
                hub.sweep();
            }
        });
        hub
    }

    /// The hub's own URL.
    pub fn url(&self) -> String {
        format!("{}{}", self.base_url, &super::HUB_PATH[1..])
    }

    /// Verified subscriptions now.
    pub fn subscriptions(&self) -> usize {
        self.store.len()
    }

    /// Verified subscriptions whose lease runs, per feed route (for the
    /// readership figures).
    pub fn subscriptions_per_route(&self) -> std::collections::BTreeMap<String, u64> {
        self.store.per_route(unix_now())
    }

    /// Removes subscriptions whose lease has ended, and saves if any did.
    fn sweep(self: &Arc<Self>) {
        let gone = self.store.expire(unix_now());
        for s in &gone {
            tracing::info!(
                "websub: lease of {} on {} ended; subscription removed",
                s.callback,
                s.topic
            );
        }
        if !gone.is_empty() {
            self.save();
        }
    }

    /// Saves the subscriptions off the async threads; a failure is logged.
    fn save(&self) {
        let store = Arc::clone(&self.store);
        self.rt.spawn_blocking(move || {
            if let Err(e) = store.save() {
                tracing::error!("websub: cannot save the subscriptions: {e}");
            }
        });
    }

    /// Pushes `changes` to their subscribers. Returns at once.
    pub fn publish(self: &Arc<Self>, changes: Vec<Arc<Change>>) {
        self.sweep();
        for c in changes {
            deliver::enqueue(self, c);
        }
    }

    /// Counts a request of client `key`; false when it is over the rate.
    fn within_rate(&self, key: u128) -> bool {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        if rate.len() >= MAX_CLIENTS && !rate.contains_key(&key) {
            rate.retain(|_, (since, _)| now.duration_since(*since) < minute);
            if rate.len() >= MAX_CLIENTS {
                return false;
            }
        }
        let (since, n) = rate.entry(key).or_insert((now, 0));
        if now.duration_since(*since) >= minute {
            *since = now;
            *n = 0;
        }
        *n += 1;
        *n <= self.cfg.requests_per_minute
    }
}
