//! Verification of intent (W3C WebSub §5.3): a GET to the callback with
//! `hub.mode`, `hub.topic`, an unguessable `hub.challenge` and, when
//! subscribing, `hub.lease_seconds`. Only a 2xx whose body is exactly
//! the challenge confirms; then the subscription is stored (or removed)
//! and saved. Anything else stores nothing.

use std::sync::Arc;

use super::store::Subscription;
use super::{unix_now, Hub, Intent, Mode};
use crate::syndicate::net::{literal_forbidden, why};

/// Most bytes of a callback's answer read (a challenge is 48).
const MAX_ANSWER: usize = 1024;

/// Verifies `intent` and applies it; logs the outcome. The outcome is
/// stored and the verification leaves the pending ones under the pending
/// lock, so the per-host counts never see it twice or not at all.
pub(super) async fn run(hub: Arc<Hub>, intent: Intent) {
    let callback = intent.callback.as_str().to_string();
    let outcome = challenge(&hub, &intent).await;
    let key = (intent.route.clone(), callback.clone());
    let mut pending = hub.pending.lock().unwrap_or_else(|p| p.into_inner());
    match (outcome, intent.mode) {
        (Ok(()), Mode::Subscribe) => {
            let replaced = hub.store.upsert(Subscription {
                route: intent.route.clone(),
                topic: intent.topic.clone(),
                callback: callback.clone(),
                secret: intent.secret.clone(),
                expires: unix_now() + intent.lease,
            });
            pending.remove(&key);
            drop(pending);
            hub.save();
            tracing::info!(
                "websub: {} {callback} to {} (lease {} s)",
                if replaced { "renewed" } else { "subscribed" },
                intent.topic,
                intent.lease
            );
        }
        (Ok(()), Mode::Unsubscribe) => {
            let removed = hub.store.remove(&intent.route, &callback);
            pending.remove(&key);
            drop(pending);
            if removed {
                hub.forget(&key);
                hub.save();
            }
            tracing::info!("websub: unsubscribed {callback} from {}", intent.topic);
        }
        (Err(why), mode) => {
            pending.remove(&key);
            drop(pending);
            tracing::info!(
                "websub: {} request of {callback} for {} not verified: {why}; nothing changed",
                mode.as_str(),
                intent.topic
            );
        }
    }
}

/// The GET challenge; `Err` says why the intent is not confirmed.
async fn challenge(hub: &Hub, intent: &Intent) -> Result<(), String> {
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(|e| format!("no random challenge: {e}"))?;
    let challenge: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut url = intent.callback.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("hub.mode", intent.mode.as_str())
            .append_pair("hub.topic", &intent.topic)
            .append_pair("hub.challenge", &challenge);
        if intent.mode == Mode::Subscribe {
            q.append_pair("hub.lease_seconds", &intent.lease.to_string());
        }
    }
    if let Some(w) = literal_forbidden(&url, hub.cfg.allow_private_callbacks) {
        return Err(format!("callback refused: {w}"));
    }
    let _permit = Arc::clone(&hub.verify_permits)
        .acquire_owned()
        .await
        .map_err(|_| "the hub is stopping".to_string())?;
    let mut resp = hub.client.get(url).send().await.map_err(|e| why(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("the callback answered {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| why(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err("the callback's answer is not the challenge (too long)".into());
        }
    }
    if body != challenge.as_bytes() {
        return Err("the callback did not echo hub.challenge".into());
    }
    Ok(())
}
