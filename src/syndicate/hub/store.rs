//! The built-in hub's verified subscriptions, kept in `state_dir` so they
//! survive restarts: one subscription per topic and callback (a
//! re-subscribe replaces it).
//!
//! On disk, as `state/` keeps the articles: `websub.json`, the whole list
//! (written atomically: temp file, fsync, rename, fsync of the directory),
//! and `websub.journal`, the changes since, one JSON line per change
//! (`{"put":{…}}` or `{"del":{…}}`), appended and fsynced by a writer off
//! the request path. A change costs its own line, never a rewrite: at
//! ~10,000 subscriptions the whole file is 1.4 MB, and rewriting it on
//! every renewal took ~15 ms of CPU under the lock the request path
//! takes. The file is written whole again when the journal has grown past
//! half its size (at least [`JOURNAL_SLACK`]), and whenever an append
//! failed.
//!
//! The journal begins with the generation of the file it follows; each
//! whole write counts one up, so a journal left behind by a crash between
//! writing the file and starting a new journal is ignored, never replayed
//! over newer subscriptions. A last line cut short (a crash while
//! appending) is dropped on loading.
//!
//! In memory: the subscriptions by route and callback, and how many each
//! callback host holds, so the per-host cap costs O(1) per request.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The file name under `state_dir`.
pub const FILE: &str = "websub.json";
/// The changes since `FILE` was last written whole.
pub const JOURNAL: &str = "websub.journal";

/// Above this, and above half the file's size, the journal is folded
/// into a whole write of the file.
#[cfg(not(test))]
pub const JOURNAL_SLACK: u64 = 64 * 1024;
#[cfg(test)]
pub const JOURNAL_SLACK: u64 = 1024;

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

/// A subscription's key: its route and callback.
pub type Key = (String, String);

impl Subscription {
    /// Its key: one subscription per route and callback.
    pub fn key(&self) -> Key {
        (self.route.clone(), self.callback.clone())
    }
}

/// The host of a callback as the per-host cap counts it: a name in lower
/// case, an IP address in its canonical form without brackets, so
/// `http://[::1]/` and `http://[0:0::1]/` are one host.
pub fn host_key(callback: &str) -> String {
    match url::Url::parse(callback)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => String::new(),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    #[serde(default)]
    generation: u64,
    subscriptions: Vec<Subscription>,
}

/// One line of the journal: its header, or one change.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    put: Option<Subscription>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    del: Option<Del>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Del {
    route: String,
    callback: String,
}

/// A change not yet in the journal.
#[derive(Debug)]
enum Op {
    Put(Arc<Subscription>),
    Del(Key),
}

/// The subscriptions, in memory and on disk.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Where the files stand; held by the writer only.
    disk: Mutex<Disk>,
}

#[derive(Debug, Default)]
struct Inner {
    subs: BTreeMap<Key, Arc<Subscription>>,
    /// Subscriptions per callback host ([`host_key`]).
    hosts: HashMap<String, usize>,
    /// Changes not yet written.
    log: Vec<Op>,
    /// The next write is a whole one.
    rewrite: bool,
}

#[derive(Debug, Default)]
struct Disk {
    generation: u64,
    file_len: u64,
    /// Bytes of the journal that belong to `generation`; 0: none yet.
    journal_len: u64,
}

/// Why the files could not be read or written.
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

impl Inner {
    fn insert(&mut self, s: Arc<Subscription>) {
        if self.subs.insert(s.key(), Arc::clone(&s)).is_none() {
            *self.hosts.entry(host_key(&s.callback)).or_insert(0) += 1;
        }
    }

    fn take(&mut self, key: &Key) -> Option<Arc<Subscription>> {
        let s = self.subs.remove(key)?;
        let host = host_key(&s.callback);
        if let Some(n) = self.hosts.get_mut(&host) {
            *n -= 1;
            if *n == 0 {
                self.hosts.remove(&host);
            }
        }
        Some(s)
    }
}

impl Store {
    /// Reads `dir/websub.json` and replays `dir/websub.journal` (neither:
    /// no subscriptions), keeping at most `max` subscriptions whose lease
    /// has not ended at `now`.
    ///
    /// # Errors
    /// A file exists but cannot be read or parsed: the store then holds
    /// what could be read (nothing, for a bad `websub.json`), and the
    /// files are left for the operator until the next whole write.
    pub fn open(dir: &Path, max: usize, now: u64) -> (Store, Option<StoreError>) {
        let path = dir.join(FILE);
        let mut inner = Inner::default();
        let mut disk = Disk::default();
        let err = match std::fs::read(&path) {
            // None yet: a journal may follow generation 0.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                replay(dir, &mut inner, &mut disk)
            }
            Err(error) => Some(StoreError::Io {
                path: path.clone(),
                error,
            }),
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(f) => {
                    disk.generation = f.generation;
                    disk.file_len = bytes.len() as u64;
                    for s in f.subscriptions {
                        inner.insert(Arc::new(s));
                    }
                    replay(dir, &mut inner, &mut disk)
                }
                Err(e) => Some(StoreError::Corrupt {
                    path: path.clone(),
                    line: e.line(),
                    message: e.to_string(),
                }),
            },
        };
        if err.is_some() {
            // Written whole at the first change, which keeps what was read.
            inner.rewrite = true;
            disk.journal_len = 0;
        }
        let ended: Vec<Key> = inner
            .subs
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in ended {
            inner.take(&k);
        }
        while inner.subs.len() > max {
            let k = inner.subs.keys().next_back().cloned().expect("not empty");
            inner.take(&k);
        }
        let store = Store {
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
            disk: Mutex::new(disk),
        };
        (store, err)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The subscription of `route` and `callback`.
    pub fn get(&self, route: &str, callback: &str) -> Option<Arc<Subscription>> {
        self.lock()
            .subs
            .get(&(route.to_string(), callback.to_string()))
            .cloned()
    }

    /// Adds or replaces (same route and callback) a subscription; whether
    /// it replaced one.
    pub fn upsert(&self, s: Subscription) -> bool {
        let s = Arc::new(s);
        let mut g = self.lock();
        let replaced = g.subs.contains_key(&s.key());
        g.insert(Arc::clone(&s));
        g.log.push(Op::Put(s));
        replaced
    }

    /// Removes a subscription; whether there was one.
    pub fn remove(&self, route: &str, callback: &str) -> bool {
        let key = (route.to_string(), callback.to_string());
        let mut g = self.lock();
        let gone = g.take(&key).is_some();
        if gone {
            g.log.push(Op::Del(key));
        }
        gone
    }

    /// Removes the subscriptions whose lease ended by `now`; returns them.
    pub fn expire(&self, now: u64) -> Vec<Arc<Subscription>> {
        let mut g = self.lock();
        let ended: Vec<Key> = g
            .subs
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut gone = Vec::with_capacity(ended.len());
        for k in ended {
            if let Some(s) = g.take(&k) {
                gone.push(s);
                g.log.push(Op::Del(k));
            }
        }
        gone
    }

    /// The subscriptions of `route` whose lease runs past `now`.
    pub fn of_route(&self, route: &str, now: u64) -> Vec<Arc<Subscription>> {
        let g = self.lock();
        let from = (route.to_string(), String::new());
        g.subs
            .range(from..)
            .take_while(|((r, _), _)| r == route)
            .filter(|(_, s)| s.expires > now)
            .map(|(_, s)| Arc::clone(s))
            .collect()
    }

    /// How many subscriptions there are, and how many have their callback
    /// on `host` (a [`host_key`]). O(1).
    pub fn counts(&self, host: &str) -> (usize, usize) {
        let g = self.lock();
        (g.subs.len(), g.hosts.get(host).copied().unwrap_or(0))
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

    /// Writes the changes made since the last call: appended to the
    /// journal and fsynced, or, when the journal has grown past its slack
    /// (or cannot be trusted), the whole list written atomically as the
    /// next generation with a new journal. Blocking; the lock the request
    /// path takes is held only to take the changes (and, for a whole
    /// write, to copy the list's pointers), never while writing.
    ///
    /// # Errors
    /// A file cannot be written; the next call then writes the list whole.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut disk = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        let (ops, rewrite) = {
            let mut g = self.lock();
            (std::mem::take(&mut g.log), std::mem::take(&mut g.rewrite))
        };
        if ops.is_empty() && !rewrite {
            return Ok(());
        }
        let result = if rewrite {
            self.write_whole(&mut disk)
        } else {
            match self.append(&mut disk, &ops) {
                Ok(()) if disk.journal_len > JOURNAL_SLACK.max(disk.file_len / 2) => {
                    self.write_whole(&mut disk)
                }
                other => other,
            }
        };
        if result.is_err() {
            // What was not written is in the list: the next write takes it
            // whole.
            self.lock().rewrite = true;
            disk.journal_len = 0;
        }
        result
    }

    /// Appends `ops` to the journal (with its header when it is new) and
    /// fsyncs it.
    fn append(&self, disk: &mut Disk, ops: &[Op]) -> Result<(), StoreError> {
        let path = self.dir.join(JOURNAL);
        let io = |error| StoreError::Io {
            path: path.clone(),
            error,
        };
        let mut buf = Vec::new();
        let mut line = |l: &Line| {
            serde_json::to_writer(&mut buf, l).expect("strings and numbers serialise");
            buf.push(b'\n');
        };
        let fresh = disk.journal_len == 0;
        if fresh {
            line(&Line {
                generation: Some(disk.generation),
                ..Line::default()
            });
        }
        for op in ops {
            match op {
                Op::Put(s) => line(&Line {
                    put: Some(Subscription::clone(s)),
                    ..Line::default()
                }),
                Op::Del((route, callback)) => line(&Line {
                    del: Some(Del {
                        route: route.clone(),
                        callback: callback.clone(),
                    }),
                    ..Line::default()
                }),
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(fresh)
            .open(&path)
            .map_err(io)?;
        if !fresh {
            // Past a line cut short by a crash, or anything appended by
            // someone else: the journal continues from what is known good.
            f.set_len(disk.journal_len).map_err(io)?;
        }
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(disk.journal_len))
            .map_err(io)?;
        f.write_all(&buf).map_err(io)?;
        f.sync_data().map_err(io)?;
        if fresh {
            crate::durable::sync_dir(Some(&self.dir)).map_err(io)?;
        }
        disk.journal_len += buf.len() as u64;
        Ok(())
    }

    /// Writes the whole list as the next generation, then a new journal
    /// that follows it.
    fn write_whole(&self, disk: &mut Disk) -> Result<(), StoreError> {
        let subs: Vec<Arc<Subscription>> = self.lock().subs.values().cloned().collect();
        let generation = disk.generation + 1;
        #[derive(Serialize)]
        struct Out<'a> {
            version: u32,
            generation: u64,
            subscriptions: Vec<&'a Subscription>,
        }
        let bytes = serde_json::to_vec_pretty(&Out {
            version: 1,
            generation,
            subscriptions: subs.iter().map(|s| &**s).collect(),
        })
        .expect("strings and numbers serialise");
        let path = self.dir.join(FILE);
        let io = |error| StoreError::Io {
            path: path.clone(),
            error,
        };
        crate::durable::write(&path, &bytes).map_err(io)?;
        disk.generation = generation;
        disk.file_len = bytes.len() as u64;
        disk.journal_len = 0;
        // The old journal (of the previous generation) is ignored from now
        // on; a new one begins with this generation.
        self.append(disk, &[])
    }
}

/// Applies the journal's changes, if it follows the file's generation.
fn replay(dir: &Path, inner: &mut Inner, disk: &mut Disk) -> Option<StoreError> {
    let path = dir.join(JOURNAL);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => return Some(StoreError::Io { path, error }),
    };
    let mut whole = 0u64;
    for (n, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if !line.ends_with(b"\n") {
            // Cut short by a crash while appending: never acknowledged.
            break;
        }
        let parsed: Line = match serde_json::from_slice(line) {
            Ok(l) => l,
            Err(e) => {
                return Some(StoreError::Corrupt {
                    path,
                    line: n + 1,
                    message: e.to_string(),
                })
            }
        };
        if n == 0 {
            if parsed.generation != Some(disk.generation) {
                // Left by a crash before a newer whole write: stale.
                return None;
            }
        } else if let Some(s) = parsed.put {
            inner.insert(Arc::new(s));
        } else if let Some(d) = parsed.del {
            inner.take(&(d.route, d.callback));
        }
        whole += line.len() as u64;
    }
    disk.journal_len = whole;
    None
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
    /// reopen (from the journal, then from a whole write), expired ones
    /// are removed and not read back, and counts per host are kept.
    #[test]
    fn upsert_flush_reopen_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (s, err) = Store::open(dir.path(), 100, 0);
        assert!(err.is_none() && s.is_empty());
        assert!(!s.upsert(sub("/rss.xml", "https://a.example/cb", 100)));
        let mut again = sub("/rss.xml", "https://a.example/cb", 200);
        again.secret = Some("k".into());
        assert!(s.upsert(again.clone()));
        s.upsert(sub("/rss.xml", "https://b.example/cb", 50));
        s.upsert(sub("/atom.xml", "https://A.example/cb", 300));
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.get("/rss.xml", "https://a.example/cb").as_deref(),
            Some(&again)
        );
        assert_eq!(s.counts("a.example"), (3, 2));
        assert_eq!(s.of_route("/rss.xml", 60).len(), 1, "b expired at 50");
        s.flush().unwrap();
        assert!(!dir.path().join(FILE).exists(), "only the journal so far");
        let (r, err) = Store::open(dir.path(), 100, 60);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(r.len(), 2, "the expired one is not read back");
        assert_eq!(
            r.get("/rss.xml", "https://a.example/cb").as_deref(),
            Some(&again)
        );
        assert_eq!(s.expire(60).len(), 1);
        assert_eq!(s.len(), 2);
        assert!(s.remove("/atom.xml", "https://A.example/cb"));
        assert!(!s.remove("/atom.xml", "https://A.example/cb"));
        assert_eq!(s.counts("a.example"), (1, 1));
        // Enough changes to pass the slack: written whole.
        for i in 0..20 {
            s.upsert(sub("/rss.xml", &format!("https://c.example/{i}"), 500));
        }
        s.flush().unwrap();
        assert!(dir.path().join(FILE).exists());
        s.upsert(sub("/rss.xml", "https://d.example/x", 500));
        s.flush().unwrap();
        let (r, err) = Store::open(dir.path(), 100, 60);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(r.len(), 22);
        assert_eq!(r.counts("c.example"), (22, 20));
    }

    /// A journal of an older generation (a crash between the whole write
    /// and the new journal) is not replayed; a last line cut short is
    /// dropped.
    #[test]
    fn stale_journal_and_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            r#"{"version":1,"generation":3,"subscriptions":[]}"#,
        )
        .unwrap();
        let put = r#"{"put":{"route":"/a","topic":"t","callback":"http://x/","expires":99}}"#;
        std::fs::write(
            dir.path().join(JOURNAL),
            format!("{{\"generation\":2}}\n{put}\n"),
        )
        .unwrap();
        let (s, err) = Store::open(dir.path(), 100, 0);
        assert!(err.is_none() && s.is_empty(), "stale journal ignored");
        std::fs::write(
            dir.path().join(JOURNAL),
            format!("{{\"generation\":3}}\n{put}\n{{\"del\":{{\"rou"),
        )
        .unwrap();
        let (s, err) = Store::open(dir.path(), 100, 0);
        assert!(err.is_none());
        assert_eq!(s.len(), 1, "the cut delete is dropped");
        s.upsert(sub("/b", "http://y/", 99));
        s.flush().unwrap();
        let (r, _) = Store::open(dir.path(), 100, 0);
        assert_eq!(r.len(), 2, "appended after the last whole line");
    }

    /// IPv6 literals count as one host however they are written.
    #[test]
    fn host_keys() {
        assert_eq!(host_key("http://[::1]:8080/x"), "::1");
        assert_eq!(host_key("http://[0:0::1]/x"), "::1");
        assert_eq!(host_key("http://Example.ORG/x"), "example.org");
        assert_eq!(host_key("http://127.0.0.1/x"), "127.0.0.1");
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
