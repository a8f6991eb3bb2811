//! The built-in hub (W3C WebSub §5–§7), at `/websub`: subscribers POST a
//! subscription request, Herald answers 202 and verifies intent with a GET
//! challenge to the callback, and only then stores the subscription
//! (`state_dir/websub.json` and its journal). Each change of a topic is
//! POSTed to its subscribers, signed when they gave a secret. Everything
//! it does on the network runs on the syndication runtime, in budgets of
//! its own: verifications (`verify_concurrency`), deliveries to
//! subscribers in good standing (`delivery_concurrency`, and
//! `waiting_deliveries` for those past `delivery_patience_ms`) and
//! deliveries to slow or failing ones (`slow_lane_concurrency`), all cut
//! to what the open-file limit leaves (see [`fd_budget`]).
//!
//! - `subscribe.rs`: the request path: read, validate, rate-limit, queue.
//! - `verify.rs`: verification of intent, then store or remove.
//! - `deliver.rs`: content distribution, with lanes and retries.
//! - `store.rs`: the subscriptions, their file and journal.

mod deliver;
mod store;
mod subscribe;
mod verify;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};

use super::{Backoff, Change};
use crate::config::{Config, WebSubConfig};
use crate::metrics::Metrics;

use store::Key;
pub use store::Subscription;

/// How often leases are checked for their end (besides at each change).
const SWEEP: Duration = Duration::from_secs(30);

/// How often the delivery queue is measured for `/healthz` and
/// `/metrics`.
const GAUGE: Duration = Duration::from_secs(1);

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

/// Callback hosts whose connections are kept open between deliveries
/// (one idle connection each, for [`POOL_IDLE`]): the first hosts seen
/// holding two subscriptions or more. Every other delivery opens a
/// connection and closes it, so idle connections never grow with the
/// number of hosts.
const POOLED_HOSTS: usize = 32;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(5);

/// File descriptors kept for everything but outgoing requests and the
/// clients (`max_connections`, `admin_max_connections`): listeners, the
/// content watcher, files being read and written, the runtime.
const FD_RESERVE: u64 = 128;

/// After a failed write of the subscriptions, the wait before the next.
const WRITE_RETRY: Duration = Duration::from_secs(10);

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

/// Verifications under way, with their counts per callback host.
#[derive(Debug, Default)]
struct Pending {
    /// By route and callback: the mode, the host, and whether it would add
    /// a subscription (a subscribe of one not stored when asked).
    map: HashMap<Key, (Mode, String, bool)>,
    /// Verifications per host, every mode.
    per_host: HashMap<String, usize>,
    /// Verifications that would add a subscription, per host and in all.
    new_per_host: HashMap<String, usize>,
    new_total: usize,
}

impl Pending {
    fn insert(&mut self, key: Key, mode: Mode, host: String, adds: bool) {
        *self.per_host.entry(host.clone()).or_insert(0) += 1;
        if adds {
            *self.new_per_host.entry(host.clone()).or_insert(0) += 1;
            self.new_total += 1;
        }
        self.map.insert(key, (mode, host, adds));
    }

    fn remove(&mut self, key: &Key) {
        let Some((_, host, adds)) = self.map.remove(key) else {
            return;
        };
        let down = |m: &mut HashMap<String, usize>| {
            if let Some(n) = m.get_mut(&host) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&host);
                }
            }
        };
        down(&mut self.per_host);
        if adds {
            down(&mut self.new_per_host);
            self.new_total -= 1;
        }
    }
}

/// How a subscription's callback has been doing.
#[derive(Debug, Default, Clone, Copy)]
struct Standing {
    /// In the slow lane: its last delivery was slow or failed.
    slow: bool,
    /// Failed attempts in a row.
    failures: u32,
    /// Its failure was logged (once per episode).
    logged: bool,
}

/// The outgoing budgets, each a share of the file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Deliveries to subscribers in good standing at once.
    pub deliveries: usize,
    /// Deliveries past their patience still waiting for an answer, at
    /// once (0: none hands its place on).
    pub waiting: usize,
    /// Deliveries to slow or failing subscribers at once.
    pub slow: usize,
    /// Verifications at once.
    pub verifications: usize,
}

/// The budgets `cfg` asks for, cut so that every outgoing connection —
/// those four, pings, and [`POOLED_HOSTS`] idle ones — fits in half of
/// what the open-file limit `nofile` leaves after the clients (`clients`)
/// and [`FD_RESERVE`]: accepting a reader always has descriptors to
/// spare, however many callback hosts there are. The waiting room is cut
/// first (to nothing, if need be: deliveries then keep their place until
/// answered or cut off, as without it), then the other three alike, each
/// at least 1.
pub fn fd_budget(cfg: &WebSubConfig, nofile: u64, clients: u64) -> Budget {
    let want = Budget {
        deliveries: cfg.delivery_concurrency,
        waiting: cfg.waiting_deliveries,
        slow: cfg.slow_lane_concurrency,
        verifications: cfg.verify_concurrency,
    };
    let spare = nofile.saturating_sub(clients + FD_RESERVE) / 2;
    let fixed = (POOLED_HOSTS + cfg.hubs.len()) as u64;
    let room = spare.saturating_sub(fixed).max(3) as usize;
    let total = want.deliveries + want.slow + want.verifications;
    if total <= room {
        return Budget {
            waiting: want.waiting.min(room - total),
            ..want
        };
    }
    let cut = |n: usize| (n * room / total).max(1);
    Budget {
        deliveries: cut(want.deliveries),
        waiting: 0,
        slow: cut(want.slow),
        verifications: cut(want.verifications),
    }
}

/// The built-in hub, shared by the request path and the syndication
/// runtime.
#[derive(Debug)]
pub struct Hub {
    cfg: WebSubConfig,
    base_url: String,
    /// For verifications and for hosts outside [`POOLED_HOSTS`]: a
    /// connection per request, closed after it.
    client: reqwest::Client,
    /// For the pooled hosts.
    pooled: reqwest::Client,
    backoff: Backoff,
    rt: tokio::runtime::Handle,
    store: Arc<store::Store>,
    /// Wakes the writer of the subscriptions.
    dirty: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Verifications under way.
    pending: Mutex<Pending>,
    /// Requests per client key in the current minute.
    rate: Mutex<HashMap<u128, (Instant, usize)>>,
    /// Deliveries at once to subscribers in good standing.
    permits: Arc<Semaphore>,
    /// Deliveries at once past their patience, waiting for an answer.
    waiting_permits: Arc<Semaphore>,
    /// Deliveries at once in the slow lane.
    slow_permits: Arc<Semaphore>,
    /// Verifications at once.
    verify_permits: Arc<Semaphore>,
    /// Name resolutions of the request path at once.
    resolving: Semaphore,
    /// Deliveries waiting or under way, by route and callback.
    outbox: Mutex<HashMap<Key, deliver::Slot>>,
    /// How each subscription's callback has been doing; an entry only
    /// while it is slow or failing, removed with the subscription.
    standing: Mutex<HashMap<Key, Standing>>,
    /// Callback hosts given pooled connections.
    pooled_hosts: Mutex<HashSet<String>>,
}

impl Hub {
    /// Opens the hub: reads the stored subscriptions (a damaged file is
    /// logged, and the hub starts with what could be read) and starts the
    /// lease sweeper, the writer of the subscriptions and the queue gauge
    /// on `rt`.
    ///
    /// # Errors
    /// The HTTP clients cannot be set up.
    pub fn open(
        config: &Config,
        agent: &str,
        backoff: Backoff,
        rt: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Hub>, reqwest::Error> {
        let cfg = config.websub.clone();
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let clients = (config.max_connections + config.admin_max_connections) as u64;
        let budget = fd_budget(&cfg, nofile, clients);
        if budget.deliveries < cfg.delivery_concurrency
            || budget.waiting < cfg.waiting_deliveries
            || budget.slow < cfg.slow_lane_concurrency
            || budget.verifications < cfg.verify_concurrency
        {
            tracing::warn!(
                "websub: the open-file limit ({nofile}) leaves room for {} deliveries, {} waiting deliveries, {} slow-lane deliveries and {} verifications at once (of {}, {}, {} and {} configured), so that readers always have descriptors; raise LimitNOFILE or lower max_connections",
                budget.deliveries,
                budget.waiting,
                budget.slow,
                budget.verifications,
                cfg.delivery_concurrency,
                cfg.waiting_deliveries,
                cfg.slow_lane_concurrency,
                cfg.verify_concurrency
            );
        }
        if cfg.allow_private_callbacks {
            tracing::warn!(
                "websub: allow_private_callbacks is on: anyone who can reach /websub can make Herald send requests to loopback and private addresses (link-local and metadata addresses stay refused); meant for tests and closed networks only"
            );
        }
        let guard = Some(cfg.allow_private_callbacks);
        let client = super::net::client(cfg.request_timeout, guard, agent, 0, POOL_IDLE)?;
        let pooled = super::net::client(cfg.request_timeout, guard, agent, 1, POOL_IDLE)?;
        let (store, err) = store::Store::open(&config.state_dir, cfg.max_subscriptions, unix_now());
        if let Some(e) = err {
            tracing::error!("websub: {e}; starting with the subscriptions that could be read");
        }
        if !store.is_empty() {
            tracing::info!(
                "websub: {} subscriptions read from {}",
                store.len(),
                config.state_dir.join(store::FILE).display()
            );
        }
        let hub = Arc::new(Hub {
            permits: Arc::new(Semaphore::new(budget.deliveries)),
            waiting_permits: Arc::new(Semaphore::new(budget.waiting)),
            slow_permits: Arc::new(Semaphore::new(budget.slow)),
            verify_permits: Arc::new(Semaphore::new(budget.verifications)),
            resolving: Semaphore::new(MAX_RESOLVING),
            cfg,
            base_url: config.base_url.clone(),
            client,
            pooled,
            backoff,
            rt,
            store: Arc::new(store),
            dirty: Arc::new(Notify::new()),
            metrics,
            pending: Mutex::default(),
            rate: Mutex::default(),
            outbox: Mutex::default(),
            standing: Mutex::default(),
            pooled_hosts: Mutex::default(),
        });
        let weak = Arc::downgrade(&hub);
        hub.rt.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP).await;
                let Some(hub) = weak.upgrade() else { break };
                hub.sweep();
            }
        });
        let weak = Arc::downgrade(&hub);
        hub.rt.spawn(async move {
            loop {
                tokio::time::sleep(GAUGE).await;
                let Some(hub) = weak.upgrade() else { break };
                hub.gauge();
            }
        });
        let (dirty, store) = (Arc::clone(&hub.dirty), Arc::clone(&hub.store));
        hub.rt.spawn(async move {
            // Logged once when saving starts failing, once when it works.
            let mut failing = false;
            loop {
                dirty.notified().await;
                let store = Arc::clone(&store);
                match tokio::task::spawn_blocking(move || store.flush()).await {
                    Ok(Err(e)) => {
                        if !failing {
                            tracing::error!(
                                "websub: cannot save the subscriptions: {e}; trying again every {} s (not logged again until it works)",
                                WRITE_RETRY.as_secs()
                            );
                        }
                        failing = true;
                        tokio::time::sleep(WRITE_RETRY).await;
                        dirty.notify_one();
                    }
                    Ok(Ok(())) if failing => {
                        failing = false;
                        tracing::info!("websub: the subscriptions are saved again");
                    }
                    _ => {}
                }
            }
        });
        Ok(hub)
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
            self.forget(&s.key());
        }
        if !gone.is_empty() {
            self.save();
        }
    }

    /// Wakes the writer of the subscriptions (a journal line per change,
    /// off the async threads). Returns at once.
    fn save(&self) {
        self.dirty.notify_one();
    }

    /// Forgets what was known of a subscription that ended: its standing,
    /// and its host's pooled connections when it held the last one.
    fn forget(&self, key: &Key) {
        self.standing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        let host = store::host_key(&key.1);
        if self.store.counts(&host).1 == 0 {
            self.pooled_hosts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&host);
        }
    }

    /// Measures the delivery queue and the callbacks remembered as slow or
    /// failing for `/metrics` and `/healthz`.
    fn gauge(&self) {
        let (depth, oldest) = deliver::queue(self);
        for lane in 0..2 {
            self.metrics.websub_queue[lane]
                .store(depth[lane] as u64, std::sync::atomic::Ordering::Relaxed);
            self.metrics.websub_oldest_ms[lane].store(
                oldest[lane].as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let slow = self
            .standing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        self.metrics
            .websub_slow_callbacks
            .store(slow as u64, std::sync::atomic::Ordering::Relaxed);
        let behind = (oldest[0] >= self.cfg.delivery_lag).then(|| (depth[0], oldest[0].as_secs()));
        self.metrics.health.set_websub_behind(behind);
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

impl Drop for Hub {
    /// Writes what the writer had not yet written (at shutdown).
    fn drop(&mut self) {
        if let Err(e) = self.store.flush() {
            tracing::error!("websub: cannot save the subscriptions: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budgets are kept while the open-file limit has room for them,
    /// and cut (each at least 1) when it has not.
    #[test]
    fn budgets_fit_the_open_file_limit() {
        let cfg = WebSubConfig::default();
        let full = Budget {
            deliveries: 32,
            waiting: 1024,
            slow: 4,
            verifications: 8,
        };
        // 8192 (the shipped unit) with 1024 + 8 clients: plenty
        // ((8192 - 1160) / 2 - 32 = 3484 >= 1068).
        assert_eq!(fd_budget(&cfg, 8192, 1032), full);
        assert_eq!(fd_budget(&cfg, u64::MAX, 1032), full);
        // 1400: (1400 - 1032 - 128) / 2 = 120, less 32 idle: 88 >= 44;
        // the waiting room gets the other 44.
        assert_eq!(
            fd_budget(&cfg, 1400, 1032),
            Budget {
                waiting: 44,
                ..full
            }
        );
        // 1300: (1300 - 1160) / 2 = 70, less 32: 38 < 44, cut, no room
        // for waiting.
        let b = fd_budget(&cfg, 1300, 1032);
        assert!(b.deliveries + b.slow + b.verifications <= 38, "{b:?}");
        assert!(b.deliveries >= 1 && b.slow >= 1 && b.verifications >= 1);
        assert_eq!(b.waiting, 0);
        // No room at all: one of each still.
        assert_eq!(
            fd_budget(&cfg, 256, 1032),
            Budget {
                deliveries: 2,
                waiting: 0,
                slow: 1,
                verifications: 1
            }
        );
    }
}
