//! Content distribution (W3C WebSub §7): each change of a topic is POSTed
//! to each of its subscribers with the feed's `Content-Type`, the `Link`
//! header (hubs and self) and, for subscribers that gave a secret,
//! `X-Hub-Signature: sha256=<HMAC-SHA256 of the body>`.
//!
//! Each subscription has one slot: the newest body not yet delivered. A
//! task per busy slot delivers it, retrying with backoff up to `retries`
//! times (a newer body replaces the one being retried), then drops it,
//! logged once per failure episode of that subscriber.
//!
//! Two lanes, each with its own budget of requests at once, so a slow or
//! dead callback never stands in a healthy one's way:
//!
//! - **normal** (`delivery_concurrency`): subscribers in good standing. A
//!   request there not answered within `delivery_patience_ms` hands its
//!   place to the next delivery and waits on in the waiting room
//!   (`waiting_deliveries` places; when it is full, it keeps its place).
//!   Either way it is cut off after `slow_delivery_secs`; its subscriber
//!   moves to the slow lane and the delivery goes on there at once (no
//!   retry is spent). Any failure moves it too.
//! - **slow** (`slow_lane_concurrency`): the full `request_timeout_secs`
//!   for a subscriber that was merely slow, halved after each failure in a
//!   row (at least 1 s), with the usual backoff between retries. A
//!   delivery answered within `slow_delivery_secs` brings it back.
//!
//! So on a change, a healthy subscriber waits `delivery_patience_ms` per
//! `delivery_concurrency` callbacks ahead of it that hang and are not yet
//! known to be slow (1,000 of them, defaults: about 3 s), as long as the
//! waiting room has places (`slow_delivery_secs` per `delivery_concurrency`
//! when it is full), and not at all for known ones. The patience is no
//! deadline: a callback answering after it but within
//! `slow_delivery_secs` stays in good standing. A retry waits without
//! holding a request slot.
//! Memory: one body per topic, shared, plus one slot per subscription
//! with a change under way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::OwnedSemaphorePermit;

use super::store::{host_key, Key};
use super::{unix_now, Hub, Standing, POOLED_HOSTS};
use crate::syndicate::net::{literal_forbidden, why};
use crate::syndicate::Change;

/// Shortest timeout in the slow lane, however many failures.
const MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The delivery state of one subscription while it has a change to
/// deliver (the slot exists while a task runs).
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// The newest change not yet taken by the task, and when the oldest
    /// change it stands for was queued.
    next: Option<(Arc<Change>, Instant)>,
    /// When the change being delivered now was queued.
    current: Option<Instant>,
}

/// Queues `change` for every current subscriber of its topic.
pub(super) fn enqueue(hub: &Arc<Hub>, change: Arc<Change>) {
    let now = Instant::now();
    for sub in hub.store.of_route(&change.route, unix_now()) {
        let key = sub.key();
        let mut outbox = hub.outbox.lock().unwrap_or_else(|p| p.into_inner());
        match outbox.get_mut(&key) {
            // A task is on it: it takes the newest next; the subscriber
            // has been waiting since the older one.
            Some(slot) => {
                let since = slot.next.as_ref().map_or(now, |(_, t)| *t);
                slot.next = Some((Arc::clone(&change), since));
            }
            None => {
                outbox.insert(
                    key.clone(),
                    Slot {
                        next: Some((Arc::clone(&change), now)),
                        current: None,
                    },
                );
                hub.rt.spawn(run(Arc::clone(hub), key));
            }
        }
    }
}

/// The queue per lane (normal, slow): subscriptions with a change waiting
/// or under way, and how long the oldest has waited.
pub(super) fn queue(hub: &Hub) -> ([usize; 2], [Duration; 2]) {
    let now = Instant::now();
    let standing = hub.standing.lock().unwrap_or_else(|p| p.into_inner());
    let outbox = hub.outbox.lock().unwrap_or_else(|p| p.into_inner());
    let mut depth = [0; 2];
    let mut oldest = [Duration::ZERO; 2];
    for (key, slot) in outbox.iter() {
        let since = match (slot.current, slot.next.as_ref().map(|(_, t)| *t)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => continue,
        };
        let lane = usize::from(standing.get(key).is_some_and(|s| s.slow));
        depth[lane] += 1;
        oldest[lane] = oldest[lane].max(now.saturating_duration_since(since));
    }
    (depth, oldest)
}

/// Delivers what arrives in one subscription's slot until it is empty.
async fn run(hub: Arc<Hub>, key: Key) {
    loop {
        let change = {
            let mut outbox = hub.outbox.lock().unwrap_or_else(|p| p.into_inner());
            let Some(slot) = outbox.get_mut(&key) else {
                return;
            };
            match slot.next.take() {
                Some((c, since)) => {
                    slot.current = Some(since);
                    c
                }
                None => {
                    outbox.remove(&key);
                    return;
                }
            }
        };
        deliver(&hub, &key, change).await;
        if let Some(slot) = hub
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&key)
        {
            slot.current = None;
        }
    }
}

/// How one attempt ended.
enum Outcome {
    Delivered,
    /// 410 Gone: the subscriber ended the subscription (§7).
    Gone,
    /// The callback may not be reached (its address); not retried.
    Refused(String),
    /// No answer within the attempt's timeout.
    TimedOut(String),
    Failed(String),
}

impl Hub {
    /// How `key`'s callback has been doing (good standing: the default).
    fn standing_of(&self, key: &Key) -> Standing {
        self.standing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    /// Changes `key`'s standing; an entry back in good standing is dropped.
    fn set_standing(&self, key: &Key, f: impl FnOnce(&mut Standing)) -> Standing {
        let mut all = self.standing.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = all.get(key).copied().unwrap_or_default();
        f(&mut s);
        if s.slow || s.failures > 0 || s.logged {
            all.insert(key.clone(), s);
        } else {
            all.remove(key);
        }
        s
    }

    /// The client for `callback`: the pooled one for the first
    /// [`POOLED_HOSTS`] hosts seen holding two subscriptions or more.
    fn client_for(&self, callback: &str) -> &reqwest::Client {
        let host = host_key(callback);
        let mut pooled = self.pooled_hosts.lock().unwrap_or_else(|p| p.into_inner());
        if pooled.contains(&host) {
            return &self.pooled;
        }
        if pooled.len() < POOLED_HOSTS && self.store.counts(&host).1 >= 2 {
            pooled.insert(host);
            return &self.pooled;
        }
        &self.client
    }
}

/// One change to one subscriber, with its retries.
async fn deliver(hub: &Arc<Hub>, key: &Key, change: Arc<Change>) {
    let (route, callback) = key;
    let b = hub.backoff;
    let slow_after = hub.cfg.slow_delivery.min(hub.cfg.request_timeout);
    let mut attempt = 0;
    let mut moved = false;
    let last = loop {
        // Unsubscribed or expired meanwhile: nothing to deliver.
        let Some(sub) = hub
            .store
            .get(route, callback)
            .filter(|s| s.expires > unix_now())
        else {
            return;
        };
        let standing = hub.standing_of(key);
        let (permits, timeout) = if standing.slow {
            let t = hub.cfg.request_timeout / (1 << standing.failures.min(6));
            (&hub.slow_permits, t.max(MIN_TIMEOUT))
        } else {
            (&hub.permits, slow_after)
        };
        let Ok(permit) = Arc::clone(permits).acquire_owned().await else {
            return;
        };
        let started = Instant::now();
        let request = post(hub, &sub, &change, timeout);
        let outcome = if standing.slow {
            let o = request.await;
            drop(permit);
            o
        } else {
            patiently(hub, permit, request).await
        };
        match outcome {
            Outcome::Delivered => {
                let quick = started.elapsed() < slow_after;
                let before = hub.standing_of(key);
                hub.set_standing(key, |s| {
                    *s = Standing {
                        slow: !quick,
                        ..Standing::default()
                    }
                });
                if before.logged {
                    tracing::info!("websub: deliveries to {callback} work again");
                }
                tracing::debug!(topic = %change.topic, callback, "websub: delivered");
                return;
            }
            Outcome::Gone => {
                if hub.store.remove(route, callback) {
                    hub.forget(key);
                    hub.save();
                }
                tracing::info!(
                    "websub: {callback} answered 410 Gone; its subscription to {} is removed",
                    change.topic
                );
                return;
            }
            Outcome::Refused(w) => break w,
            Outcome::TimedOut(_) if !standing.slow && !moved => {
                // Cut off in the normal lane: the same delivery goes on in
                // the slow lane now, without spending a retry.
                moved = true;
                hub.set_standing(key, |s| s.slow = true);
                tracing::info!(
                    "websub: {callback} did not answer within {} s; its deliveries go to the slow lane until it answers quickly",
                    slow_after.as_secs_f64()
                );
                continue;
            }
            Outcome::TimedOut(w) | Outcome::Failed(w) => {
                hub.set_standing(key, |s| {
                    s.slow = true;
                    s.failures = s.failures.saturating_add(1);
                });
                attempt += 1;
                if attempt > b.retries {
                    break w;
                }
            }
        }
        tokio::time::sleep(b.delay(attempt)).await;
        let newer = hub
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .is_some_and(|s| s.next.is_some());
        if newer {
            // Sending the old body again is pointless: the newer one goes
            // next, with its own retries.
            return;
        }
    };
    let before = hub.standing_of(key);
    if !before.logged && hub.store.get(route, callback).is_some() {
        hub.set_standing(key, |s| s.logged = true);
        tracing::warn!(
            "websub: gave up delivering {} to {callback}: {last}; further failures of this subscriber are not logged until a delivery works",
            change.topic
        );
    }
}

/// Awaits `request` holding `place` (in the normal lane) for at most
/// `delivery_patience`; then, when the waiting room has a place, the lane's
/// place goes to the next delivery and the request waits on in the room.
/// Connections at once stay within the two budgets.
async fn patiently(
    hub: &Hub,
    place: OwnedSemaphorePermit,
    request: impl std::future::Future<Output = Outcome>,
) -> Outcome {
    tokio::pin!(request);
    tokio::select! {
        o = &mut request => return o,
        () = tokio::time::sleep(hub.cfg.delivery_patience) => {}
    }
    let place = match Arc::clone(&hub.waiting_permits).try_acquire_owned() {
        Ok(room) => {
            drop(place);
            room
        }
        Err(_) => place,
    };
    let o = request.await;
    drop(place);
    o
}

/// One POST of `change` to `sub`, given `timeout`.
async fn post(hub: &Hub, sub: &super::Subscription, change: &Change, timeout: Duration) -> Outcome {
    let url = match url::Url::parse(&sub.callback) {
        Ok(u) => u,
        Err(e) => return Outcome::Refused(format!("not a URL: {e}")),
    };
    if let Some(w) = literal_forbidden(&url, hub.cfg.allow_private_callbacks) {
        return Outcome::Refused(format!("callback refused: {w}"));
    }
    let mut req = hub
        .client_for(&sub.callback)
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, change.content_type)
        .body(change.body.clone());
    if let Some(link) = &change.link {
        req = req.header(reqwest::header::LINK, link.clone());
    }
    if let Some(secret) = &sub.secret {
        req = req.header("X-Hub-Signature", signature(secret, &change.body));
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) if r.status() == reqwest::StatusCode::GONE => Outcome::Gone,
        Ok(r) => Outcome::Failed(format!("the callback answered {}", r.status())),
        Err(e) if is_refused_address(&e) => Outcome::Refused(why(&e)),
        Err(e) if e.is_timeout() => Outcome::TimedOut(format!("no answer within {timeout:?}")),
        Err(e) => Outcome::Failed(why(&e)),
    }
}

/// Whether a request failed because the resolver refused every address.
fn is_refused_address(e: &reqwest::Error) -> bool {
    why(e).contains("resolves only to forbidden addresses")
}

/// `sha256=<hex HMAC-SHA256 of body keyed by secret>` (WebSub §8).
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    /// The signature is HMAC-SHA256 in lowercase hex (RFC 4231 test
    /// case 2: key "Jefe").
    #[test]
    fn hmac_sha256_signature() {
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
