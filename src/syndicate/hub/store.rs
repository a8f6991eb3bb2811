//! The built-in hub's verified subscriptions, kept in
//! `state_dir/websub.json` so they survive restarts: one subscription per
//! topic and callback (a re-subscribe replaces it), written whole via a
//! temp file, fsync and rename after every change, so a crash leaves the
//! old file or the new one, never a mix. Saves run off the async threads
//! and are ordered by a generation number, so an older snapshot never
//! overwrites a newer one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The file name under `state_dir`.
pub const FILE: &str = "websub.json";

/// One verified subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The feed's route (`/rss.xml`).
    pub route: String,
    /// The topic URL the subscriber asked for.
    pub topic: String,
    /// Where the feed is POSTed.
    pub callback: String,
    /// HMAC key of `X-Hub-Signature`, when the subscriber gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// When the lease ends, Unix seconds.
    pub expires: u64,
}

impl Subscription {
    /// Its key: one subscription per route and callback.
    pub fn key(&self) -> (String, String) {
        (self.route.clone(), self.callback.clone())
    }

    /// The host of its callback (what `max_subscriptions_per_host` counts).
    pub fn host(&self) -> &str {
        crate::config::host_of(&self.callback).unwrap_or("")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    subscriptions: Vec<Subscription>,
}

/// The subscriptions, in memory and on disk.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// The generation last written.
    written: Mutex<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    subs: BTreeMap<(String, String), Subscription>,
    generation: u64,
}

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading, writing or renaming failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not a subscription list.
    #[error("{}:{line}: not a WebSub subscription list: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        line: usize,
        /// What.
        message: String,
    },
}

impl Store {
    /// Reads `dir/websub.json` (none: no subscriptions), keeping at most
    /// `max` subscriptions whose lease has not ended at `now`.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed (the store is then
    /// empty, and the file is left for the operator until the next save).
    pub fn open(dir: &Path, max: usize, now: u64) -> (Store, Option<StoreError>) {
        let path = dir.join(FILE);
        let mut inner = Inner::default();
        let err = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => Some(StoreError::Io {
                path: path.clone(),
                error,
            }),
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(f) => {
                    for s in f.subscriptions.into_iter().filter(|s| s.expires > now) {
                        if inner.subs.len() < max {
                            inner.subs.insert(s.key(), s);
                        }
                    }
                    None
                }
                Err(e) => Some(StoreError::Corrupt {
                    path: path.clone(),
                    line: e.line(),
                    message: e.to_string(),
                }),
            },
        };
        let store = Store {
            path,
            inner: Mutex::new(inner),
            written: Mutex::new(0),
        };
        (store, err)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The subscription of `route` and `callback`.
    pub fn get(&self, route: &str, callback: &str) -> Option<Subscription> {
        self.lock()
            .subs
            .get(&(route.to_string(), callback.to_string()))
            .cloned()
    }

    /// Adds or replaces (same route and callback) a subscription.
    pub fn upsert(&self, s: Subscription) {
        let mut g = self.lock();
        g.subs.insert(s.key(), s);
        g.generation += 1;
    }

    /// Removes a subscription; whether there was one.
    pub fn remove(&self, route: &str, callback: &str) -> bool {
        let mut g = self.lock();
        let gone = g
            .subs
            .remove(&(route.to_string(), callback.to_string()))
            .is_some();
        if gone {
            g.generation += 1;
        }
        gone
    }

    /// Removes the subscriptions whose lease ended by `now`; returns them.
    pub fn expire(&self, now: u64) -> Vec<Subscription> {
        let mut g = self.lock();
        let mut gone = Vec::new();
        g.subs.retain(|_, s| {
            if s.expires <= now {
                gone.push(s.clone());
            }
            s.expires > now
        });
        if !gone.is_empty() {
            g.generation += 1;
        }
        gone
    }

    /// The subscriptions of `route` whose lease runs past `now`.
    pub fn of_route(&self, route: &str, now: u64) -> Vec<Subscription> {
        let g = self.lock();
        let from = (route.to_string(), String::new());
        g.subs
            .range(from..)
            .take_while(|((r, _), _)| r == route)
            .filter(|(_, s)| s.expires > now)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// How many subscriptions there are, and how many have callbacks on
    /// `host` (other than the one of `route` and `callback`, which a
    /// re-subscribe replaces).
    pub fn counts(&self, host: &str, route: &str, callback: &str) -> (usize, usize) {
        let g = self.lock();
        let on_host = g
            .subs
            .values()
            .filter(|s| s.host() == host && !(s.route == route && s.callback == callback))
            .count();
        (g.subs.len(), on_host)
    }

    /// How many subscriptions each route has whose lease runs past `now`.
    pub fn per_route(&self, now: u64) -> BTreeMap<String, u64> {
        let g = self.lock();
        let mut m: BTreeMap<&str, u64> = BTreeMap::new();
        for s in g.subs.values().filter(|s| s.expires > now) {
            *m.entry(&s.route).or_insert(0) += 1;
        }
        m.into_iter().map(|(r, n)| (r.to_string(), n)).collect()
    }

    /// How many subscriptions there are.
    pub fn len(&self) -> usize {
        self.lock().subs.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the current subscriptions, unless a newer or the same
    /// generation is on disk already. Blocking.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self) -> Result<(), StoreError> {
        let (generation, bytes) = {
            let g = self.lock();
            let file = File {
                version: 1,
                subscriptions: g.subs.values().cloned().collect(),
            };
            let bytes = serde_json::to_vec_pretty(&file).expect("strings and numbers serialise");
            (g.generation, bytes)
        };
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if *written >= generation && generation > 0 {
            return Ok(());
        }
        let io = |error| StoreError::Io {
            path: self.path.clone(),
            error,
        };
        let tmp = self.path.with_file_name(format!(".{FILE}.herald-tmp"));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)?;
        *written = generation;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(route: &str, cb: &str, expires: u64) -> Subscription {
        Subscription {
            route: route.into(),
            topic: format!("https://news.example.org{route}"),
            callback: cb.into(),
            secret: None,
            expires,
        }
    }

    /// A re-subscribe replaces (never adds), subscriptions survive a
    /// reopen, expired ones are removed and not read back, and counts per
    /// host leave out the one being replaced.
    #[test]
    fn upsert_save_reopen_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (s, err) = Store::open(dir.path(), 100, 0);
        assert!(err.is_none() && s.is_empty());
        s.upsert(sub("/rss.xml", "https://a.example/cb", 100));
        let mut again = sub("/rss.xml", "https://a.example/cb", 200);
        again.secret = Some("k".into());
        s.upsert(again.clone());
        s.upsert(sub("/rss.xml", "https://b.example/cb", 50));
        s.upsert(sub("/atom.xml", "https://a.example/cb", 300));
        assert_eq!(s.len(), 3);
        assert_eq!(s.get("/rss.xml", "https://a.example/cb"), Some(again));
        assert_eq!(
            s.counts("a.example", "/rss.xml", "https://a.example/cb"),
            (3, 1)
        );
        assert_eq!(s.of_route("/rss.xml", 60).len(), 1, "b expired at 50");
        s.save().unwrap();
        let (r, err) = Store::open(dir.path(), 100, 60);
        assert!(err.is_none());
        assert_eq!(r.len(), 2, "the expired one is not read back");
        assert_eq!(s.expire(60).len(), 1);
        assert_eq!(s.len(), 2);
        assert!(s.remove("/atom.xml", "https://a.example/cb"));
        assert!(!s.remove("/atom.xml", "https://a.example/cb"));
    }

    /// A damaged file is an error naming the file and line, and the
    /// store starts empty.
    #[test]
    fn corrupt_file_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "{\n\"version\": 1,\n\"subscriptions\": [x]}",
        )
        .unwrap();
        let (s, err) = Store::open(dir.path(), 100, 0);
        let e = err.unwrap().to_string();
        assert!(e.contains("websub.json:3:"), "{e}");
        assert!(s.is_empty());
    }
}
