//! Publish pings to external hubs (W3C WebSub §6, and the form hubs
//! accept in practice): `hub.mode=publish` with the topic URL in both
//! `hub.url` and `hub.topic`, POSTed as a form, once per changed topic
//! and hub. Asynchronous (never on the publish loop), retried with
//! backoff up to `retries` times, then dropped. A topic that changes
//! again while its ping is still on its way is pinged once more after
//! it, never queued twice, so memory is bounded by hubs × topics.
//!
//! Logging is per failure episode: one warning when a hub starts failing,
//! one line when it accepts pings again (saying how many were dropped
//! meanwhile), nothing per retry.

use super::net::why;
use super::Backoff;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Pings every external hub about changed topics.
#[derive(Debug)]
pub struct Pinger {
    hubs: Vec<Arc<HubState>>,
    client: reqwest::Client,
    backoff: Backoff,
    rt: tokio::runtime::Handle,
}

/// One external hub and what is on its way to it.
#[derive(Debug)]
struct HubState {
    url: String,
    /// Topics being pinged; `true` when it changed again meanwhile.
    pending: Mutex<HashMap<String, bool>>,
    /// Inside a failure episode (logged at its start).
    failing: AtomicBool,
    /// Pings given up since the episode began.
    dropped: AtomicU64,
}

impl Pinger {
    /// A pinger for `hubs`, its requests run on `rt`.
    pub fn new(
        hubs: &[String],
        client: reqwest::Client,
        backoff: Backoff,
        rt: tokio::runtime::Handle,
    ) -> Pinger {
        Pinger {
            hubs: hubs
                .iter()
                .map(|url| {
                    Arc::new(HubState {
                        url: url.clone(),
                        pending: Mutex::default(),
                        failing: AtomicBool::new(false),
                        dropped: AtomicU64::new(0),
                    })
                })
                .collect(),
            client,
            backoff,
            rt,
        }
    }

    /// Tells every hub that each of `topics` (absolute URLs) changed.
    /// Returns at once.
    pub fn ping(&self, topics: &[String]) {
        for hub in &self.hubs {
            for topic in topics {
                {
                    let mut pending = hub.pending.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(again) = pending.get_mut(topic) {
                        *again = true;
                        continue;
                    }
                    pending.insert(topic.clone(), false);
                }
                let (hub, topic) = (Arc::clone(hub), topic.clone());
                let (client, backoff) = (self.client.clone(), self.backoff);
                self.rt.spawn(async move {
                    loop {
                        ping_until_done(&client, &hub, &topic, backoff).await;
                        let mut pending = hub.pending.lock().unwrap_or_else(|p| p.into_inner());
                        match pending.get_mut(&topic) {
                            Some(again) if *again => *again = false,
                            _ => {
                                pending.remove(&topic);
                                break;
                            }
                        }
                    }
                });
            }
        }
    }
}

/// One ping with its retries.
async fn ping_until_done(client: &reqwest::Client, hub: &HubState, topic: &str, b: Backoff) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("hub.mode", "publish")
        .append_pair("hub.url", topic)
        .append_pair("hub.topic", topic)
        .finish();
    for attempt in 0..=b.retries {
        if attempt > 0 {
            tokio::time::sleep(b.delay(attempt)).await;
        }
        let sent = client
            .post(&hub.url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body.clone())
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("answered {}", r.status())),
            Err(e) => Some(why(&e)),
        };
        let Some(failure) = failure else {
            if hub.failing.swap(false, Ordering::Relaxed) {
                let n = hub.dropped.swap(0, Ordering::Relaxed);
                tracing::info!(
                    hub = %hub.url,
                    "websub: hub {} accepts publish pings again ({n} given up meanwhile)",
                    hub.url
                );
            }
            tracing::debug!(hub = %hub.url, topic, "websub: publish ping sent");
            return;
        };
        if !hub.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                hub = %hub.url,
                "websub: publish ping for {topic} to hub {} failed: {failure}; retrying up to {} times, no more is logged until the hub accepts one",
                hub.url,
                b.retries
            );
        } else {
            tracing::debug!(hub = %hub.url, topic, attempt, "websub: publish ping failed: {failure}");
        }
    }
    hub.dropped.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Backoff doubles from the base and stops growing at its cap.
    #[test]
    fn backoff_doubles_then_caps() {
        let b = Backoff {
            retries: 30,
            base: Duration::from_millis(100),
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(30), super::super::MAX_BACKOFF);
    }
}
