//! Syndication: WebSub (W3C Recommendation, 2018). After each publish the
//! daemon hands over the routes that changed ([`Syndicate::published`]) —
//! or, with a bucket configured, the bucket mirror does once the bucket
//! holds the new bytes (`mirror`'s `OnSynced`);
//! the feeds among them whose bytes changed are pinged to the external
//! hubs (`ping.rs`) and pushed to the subscribers of the built-in hub
//! (`hub/`). All of it runs on its own thread and runtime: nothing here
//! ever delays the publish loop or a reader, and a slow or dead hub or
//! subscriber delays no other. The request path only hands subscription
//! requests to the hub ([`Hub::intake`]), which validates them and queues
//! their verification.
//!
//! Uses `site` (the bytes to push) and `config`.
//!
//! # Layout
//!
//! - `mod.rs`: [`Syndicate`], the runtime, what a change carries.
//! - `net.rs`: the HTTP client and the callback address policy (SSRF).
//! - `ping.rs`: publish pings to external hubs.
//! - `hub/`: the built-in hub: `subscribe.rs` (requests), `verify.rs`
//!   (verification of intent), `store.rs` (subscriptions in `state_dir`),
//!   `deliver.rs` (content distribution).

mod hub;
mod net;
mod ping;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::Config;
use crate::site::{Coding, Site};

pub use hub::Hub;
pub use net::forbidden;

/// The path of the built-in hub.
pub const HUB_PATH: &str = "/websub";

/// The longest wait between two retries, however many there are.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Retries with a doubling wait.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts after the first.
    pub retries: u32,
    /// Wait before the first retry.
    pub base: Duration,
}

impl Backoff {
    /// The wait before retry `n` (1-based): `base`, doubled for each next
    /// one, at most [`MAX_BACKOFF`].
    pub fn delay(&self, n: u32) -> Duration {
        self.base
            .saturating_mul(1 << n.saturating_sub(1).min(20))
            .min(MAX_BACKOFF)
    }
}

/// A feed whose bytes changed, as pushed to subscribers.
#[derive(Debug)]
pub struct Change {
    /// Its route (`/rss.xml`).
    pub route: String,
    /// Its URL: the WebSub topic.
    pub topic: String,
    /// The new document.
    pub body: Bytes,
    /// Its media type.
    pub content_type: &'static str,
    /// Its `Link` header (hubs and self).
    pub link: Option<http::HeaderValue>,
}

/// What cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SyndicateError {
    /// The thread or runtime of the WebSub work.
    #[error("websub: cannot start its runtime: {0}")]
    Runtime(std::io::Error),
    /// The HTTP client (its TLS backend).
    #[error("websub: cannot set up the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// Pings and the built-in hub, with the thread they run on.
#[derive(Debug)]
pub struct Syndicate {
    base_url: String,
    pinger: Option<ping::Pinger>,
    hub: Option<Arc<Hub>>,
    /// Dropping it ends the runtime's thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Syndicate {
    /// Starts what `config.websub` asks for: `None` when it names no hub
    /// and the built-in hub is off. The built-in hub reports its delivery
    /// queue to `metrics` (and `/healthz`).
    ///
    /// # Errors
    /// The runtime or the HTTP client cannot be set up.
    pub fn start(
        config: &Config,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Option<Syndicate>, SyndicateError> {
        let w = &config.websub;
        if w.hubs.is_empty() && !w.builtin {
            return Ok(None);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("herald-websub-io")
            .build()
            .map_err(SyndicateError::Runtime)?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("herald-websub".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
                rt.shutdown_background();
            })
            .map_err(SyndicateError::Runtime)?;
        let agent = format!(
            "Herald/{} (WebSub; +{})",
            env!("CARGO_PKG_VERSION"),
            config.base_url
        );
        let backoff = Backoff {
            retries: w.retries,
            base: w.retry_backoff,
        };
        let pinger = if w.hubs.is_empty() {
            None
        } else {
            let client = net::client(
                w.request_timeout,
                None,
                &agent,
                1,
                std::time::Duration::from_secs(30),
            )
            .map_err(SyndicateError::Client)?;
            Some(ping::Pinger::new(&w.hubs, client, backoff, handle.clone()))
        };
        let hub = if w.builtin {
            Some(
                Hub::open(config, &agent, backoff, handle, metrics)
                    .map_err(SyndicateError::Client)?,
            )
        } else {
            None
        };
        Ok(Some(Syndicate {
            base_url: config.base_url.clone(),
            pinger,
            hub,
            _stop: stop,
        }))
    }

    /// The built-in hub, when it runs.
    pub fn hub(&self) -> Option<Arc<Hub>> {
        self.hub.clone()
    }

    /// After a publish: of the `changed` routes of `after`, the feeds
    /// whose bytes differ from `before`'s are pinged to the external hubs
    /// and pushed to the built-in hub's subscribers. With no `before` (the
    /// start-up publish, `changed` being the feeds whose bytes differ from
    /// what the last run left) every feed among `changed` is. Returns at
    /// once.
    pub fn published(&self, before: Option<&Site>, after: &Site, changed: &[String]) {
        let changes: Vec<Arc<Change>> = changed
            .iter()
            .filter_map(|route| {
                let asset = after.get(route)?;
                // Feeds only: they are the assets that carry hub links.
                asset.link.as_ref()?;
                let old = before
                    .and_then(|b| b.get(route))
                    .map(|a| a.tag(Coding::Identity));
                if old == Some(asset.tag(Coding::Identity)) {
                    return None;
                }
                Some(Arc::new(Change {
                    route: route.clone(),
                    topic: format!("{}{}", self.base_url, route.trim_start_matches('/')),
                    body: asset.body().ok()?,
                    content_type: asset.content_type,
                    link: asset.link.clone(),
                }))
            })
            .collect();
        if changes.is_empty() {
            return;
        }
        if let Some(p) = &self.pinger {
            let topics: Vec<String> = changes.iter().map(|c| c.topic.clone()).collect();
            p.ping(&topics);
        }
        if let Some(h) = &self.hub {
            h.publish(changes);
        }
    }
}
