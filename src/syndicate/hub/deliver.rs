//! Content distribution (W3C WebSub §7): each change of a topic is POSTed
//! to each of its subscribers with the feed's `Content-Type`, the `Link`
//! header (hubs and self) and, for subscribers that gave a secret,
//! `X-Hub-Signature: sha256=<HMAC-SHA256 of the body>`.
//!
//! Each subscription has one slot: the newest body not yet delivered. A
//! task per busy slot delivers it, retrying with backoff up to `retries`
//! times (a newer body replaces the one being retried), then drops it,
//! logged once per failure episode of that subscriber. At most
//! `delivery_concurrency` requests run at once, and a retry waits without
//! holding one, so a dead callback holds a request slot for at most
//! `request_timeout_secs` at a time and never delays another subscriber's
//! delivery more than that. Memory: one body per topic, shared, plus one
//! slot per subscription.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{unix_now, Hub};
use crate::syndicate::net::{literal_forbidden, why};
use crate::syndicate::Change;

/// The delivery state of one subscription: the newest change not yet
/// taken by its delivering task (the slot exists while a task runs).
#[derive(Debug, Default)]
pub(super) struct Slot {
    next: Option<Arc<Change>>,
}

/// Queues `change` for every current subscriber of its topic.
pub(super) fn enqueue(hub: &Arc<Hub>, change: Arc<Change>) {
    for sub in hub.store.of_route(&change.route, unix_now()) {
        let key = sub.key();
        let mut outbox = hub.outbox.lock().unwrap_or_else(|p| p.into_inner());
        match outbox.get_mut(&key) {
            // A task is on it: it takes the newest next.
            Some(slot) => slot.next = Some(Arc::clone(&change)),
            None => {
                outbox.insert(
                    key.clone(),
                    Slot {
                        next: Some(Arc::clone(&change)),
                    },
                );
                hub.rt.spawn(run(Arc::clone(hub), key));
            }
        }
    }
}

/// Delivers what arrives in one subscription's slot until it is empty.
async fn run(hub: Arc<Hub>, key: (String, String)) {
    loop {
        let change = {
            let mut outbox = hub.outbox.lock().unwrap_or_else(|p| p.into_inner());
            match outbox.get_mut(&key).and_then(|s| s.next.take()) {
                Some(c) => c,
                None => {
                    outbox.remove(&key);
                    return;
                }
            }
        };
        deliver(&hub, &key, change).await;
    }
}

/// How one attempt ended.
enum Outcome {
    Delivered,
    /// 410 Gone: the subscriber ended the subscription (§7).
    Gone,
    /// The callback may not be reached (its address); not retried.
    Refused(String),
    Failed(String),
}

/// One change to one subscriber, with its retries.
async fn deliver(hub: &Arc<Hub>, key: &(String, String), change: Arc<Change>) {
    let (route, callback) = key;
    let b = hub.backoff;
    let mut last = String::new();
    for attempt in 0..=b.retries {
        if attempt > 0 {
            tokio::time::sleep(b.delay(attempt)).await;
            let newer = hub
                .outbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(key)
                .is_some_and(|s| s.next.is_some());
            if newer {
                // Sending the old body again is pointless: the newer one
                // goes next, with its own retries.
                return;
            }
        }
        // Unsubscribed or expired meanwhile: nothing to deliver.
        let Some(sub) = hub
            .store
            .get(route, callback)
            .filter(|s| s.expires > unix_now())
        else {
            return;
        };
        let Ok(_permit) = Arc::clone(&hub.permits).acquire_owned().await else {
            return;
        };
        match post(hub, &sub, &change).await {
            Outcome::Delivered => {
                let was = hub
                    .failing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(key);
                if was {
                    tracing::info!("websub: deliveries to {callback} work again");
                }
                tracing::debug!(topic = %change.topic, callback, "websub: delivered");
                return;
            }
            Outcome::Gone => {
                if hub.store.remove(route, callback) {
                    hub.save();
                }
                tracing::info!(
                    "websub: {callback} answered 410 Gone; its subscription to {} is removed",
                    change.topic
                );
                return;
            }
            Outcome::Refused(w) => {
                last = w;
                break;
            }
            Outcome::Failed(w) => last = w,
        }
    }
    let news = hub
        .failing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.clone());
    if news {
        tracing::warn!(
            "websub: gave up delivering {} to {callback}: {last}; further failures of this subscriber are not logged until a delivery works",
            change.topic
        );
    }
}

/// One POST of `change` to `sub`.
async fn post(hub: &Hub, sub: &super::Subscription, change: &Change) -> Outcome {
    let url = match url::Url::parse(&sub.callback) {
        Ok(u) => u,
        Err(e) => return Outcome::Refused(format!("not a URL: {e}")),
    };
    if let Some(w) = literal_forbidden(&url, hub.cfg.allow_private_callbacks) {
        return Outcome::Refused(format!("callback refused: {w}"));
    }
    let mut req = hub
        .client
        .post(url)
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
