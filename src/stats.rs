//! Who reads the feeds, per feed and per UTC day: the subscribers each
//! aggregator reports in its `User-Agent` (the latest figure of the day
//! per aggregator, feed and reporting address; an aggregator's figure is
//! the largest of its addresses', so one address never replaces
//! another's), only from a `User-Agent` that names a known aggregator
//! ([`KNOWN`]) — figures under any other name are kept apart, labelled
//! unrecognised, and no total counts them — the distinct clients that poll directly
//! (estimated with a HyperLogLog sketch over a keyed hash of the client
//! address: no address is stored, and the key is random per day and
//! forgotten with it), and the verified WebSub subscriptions of the
//! built-in hub (handed in by the daemon).
//!
//! Counting happens on the request path ([`Stats::count`]): a lookup of
//! the route among today's feeds, then either one scan of the
//! `User-Agent` or a hash and one register update — no allocation and no
//! lock, except the first time an aggregator name is seen on a feed in a
//! day. Everything else ([`Stats::roll`], [`Stats::save`],
//! [`Stats::report`]) runs off the request path. Kept in
//! `state_dir/stats.json`, written whole via a temp file and a rename;
//! bounded whatever clients send: counts above `max_reported_subscribers`
//! are ignored, at most `max_aggregators_per_feed` names per feed and day
//! are kept, and `days` days. Uses nothing else of Herald's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;

/// The file name under `state_dir`.
pub const FILE: &str = "stats.json";

/// Index bits of a sketch: 2^14 registers, 16 KiB per feed polled in a
/// day, a standard error of 1.04/√16384 ≈ 0.8 %.
const P: u32 = 14;
const M: usize = 1 << P;

/// Seconds in a day: days are UTC days since the Unix epoch.
const DAY: u64 = 86_400;

/// The limits on what is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Days of history kept, today included.
    pub days: usize,
    /// Aggregator names kept per feed and day; further names are ignored
    /// that day (those already kept keep updating).
    pub max_aggregators_per_feed: usize,
    /// Larger reported subscriber counts are ignored as absurd.
    pub max_reported_subscribers: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            days: 90,
            max_aggregators_per_feed: 32,
            max_reported_subscribers: 10_000_000,
        }
    }
}

/// A HyperLogLog sketch (Flajolet et al., 2007) of 64-bit hashes, with
/// linear counting for small cardinalities; registers are atomics so that
/// server threads add to it without a lock.
#[derive(Debug)]
struct Sketch {
    regs: Box<[AtomicU8]>,
}

impl Sketch {
    fn new() -> Sketch {
        Sketch {
            regs: (0..M).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    /// Adds one hash. A register is written only when it grows, so a
    /// client seen before costs one load.
    fn add(&self, h: u64) {
        let idx = (h >> (64 - P)) as usize;
        // The sentinel bit bounds the rank at 64 - P + 1.
        let rank = ((h << P) | (1 << (P - 1))).leading_zeros() as u8 + 1;
        let r = &self.regs[idx];
        if r.load(Relaxed) < rank {
            r.fetch_max(rank, Relaxed);
        }
    }

    /// The estimated number of distinct hashes added.
    fn estimate(&self) -> u64 {
        let m = M as f64;
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for r in self.regs.iter() {
            let v = r.load(Relaxed);
            if v == 0 {
                zeros += 1;
            }
            sum += 2f64.powi(-i32::from(v));
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        // 64-bit hashes need no large-range correction.
        let e = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        e.round() as u64
    }

    /// The non-zero registers, 6 hex digits each (index, rank).
    fn encode(&self) -> String {
        let mut s = String::new();
        for (i, r) in self.regs.iter().enumerate() {
            let v = r.load(Relaxed);
            if v > 0 {
                s.push_str(&format!("{i:04x}{v:02x}"));
            }
        }
        s
    }

    /// Reads [`Sketch::encode`]'s form; `None` if it is not that.
    fn decode(s: &str) -> Option<Sketch> {
        let k = Sketch::new();
        let b = s.as_bytes();
        if !b.len().is_multiple_of(6) || !b.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        for c in b.chunks(6) {
            let c = std::str::from_utf8(c).ok()?;
            let i = usize::from_str_radix(&c[..4], 16).ok()?;
            let v = u8::from_str_radix(&c[4..], 16).ok()?;
            if i >= M || v > (64 - P + 1) as u8 {
                return None;
            }
            k.regs[i].store(v, Relaxed);
        }
        Some(k)
    }
}

/// Addresses whose figures are kept per known aggregator, feed and day;
/// further addresses are ignored that day (those kept keep updating).
pub const MAX_REPORTERS: usize = 8;

/// One feed's counters for today.
#[derive(Debug, Default)]
struct FeedToday {
    /// Made when the feed is first polled directly today.
    pollers: OnceLock<Sketch>,
    /// The latest figure of each known aggregator today, per reporting
    /// client address (0: restored from the file, address unknown).
    aggregators: Mutex<Vec<(&'static str, u128, u64)>>,
    /// The latest figure under each name that is no known aggregator.
    unrecognised: Mutex<Vec<(Box<str>, u64)>>,
}

impl FeedToday {
    /// A known aggregator (`name`, one of [`KNOWN`]'s) reports `n` from
    /// `client`: that address's figure, never another's.
    fn report(&self, name: &'static str, client: u128, n: u64) {
        let mut a = self.aggregators.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = a.iter_mut().find(|(k, c, _)| *k == name && *c == client) {
            e.2 = n;
        } else if a.iter().filter(|(k, _, _)| *k == name).count() < MAX_REPORTERS {
            a.push((name, client, n));
        }
    }

    /// A name no known aggregator uses reports `n`.
    fn report_unrecognised(&self, name: &str, n: u64, max_names: usize) {
        let mut a = self.unrecognised.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = a.iter_mut().find(|(k, _)| &**k == name) {
            e.1 = n;
        } else if a.len() < max_names {
            a.push((name.into(), n));
        }
    }

    /// A figure read back from the file, by name.
    fn restore(&self, name: &str, n: u64, max_names: usize) {
        match KNOWN.iter().find(|(_, k)| *k == name) {
            Some((_, k)) => self.report(k, 0, n),
            None => self.report_unrecognised(name, n, max_names),
        }
    }

    /// Each known aggregator's figure: the largest of its addresses'.
    fn figures(&self) -> BTreeMap<String, u64> {
        let a = self.aggregators.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for (k, _, n) in a.iter() {
            let e = out.entry(k.to_string()).or_insert(0);
            *e = (*e).max(*n);
        }
        out
    }

    fn unrecognised(&self) -> BTreeMap<String, u64> {
        let a = self.unrecognised.lock().unwrap_or_else(|p| p.into_inner());
        a.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }
}

/// Today's counters: swapped whole at the day's end and when the set of
/// feeds changes, so a request reads them without a lock.
#[derive(Debug)]
struct Live {
    day: u64,
    key: [u64; 2],
    hasher: SipHasher13,
    /// Distinct direct pollers of any feed.
    all: Arc<Sketch>,
    feeds: FxHashMap<Box<str>, Arc<FeedToday>>,
}

impl Live {
    fn fresh(day: u64) -> Live {
        let mut k = [0u8; 16];
        if let Err(e) = getrandom::fill(&mut k) {
            // Without randomness the day's key would be guessable; the
            // clock's nanoseconds are the best there is then.
            tracing::warn!("stats: no random key for the day ({e}); using the clock");
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            k = t.to_le_bytes();
        }
        let key = [
            u64::from_le_bytes(k[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(k[8..].try_into().expect("8 bytes")),
        ];
        Live::with_key(day, key, Arc::new(Sketch::new()))
    }

    fn with_key(day: u64, key: [u64; 2], all: Arc<Sketch>) -> Live {
        Live {
            day,
            key,
            hasher: SipHasher13::new_with_keys(key[0], key[1]),
            all,
            feeds: FxHashMap::default(),
        }
    }
}

/// What one feed had on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedDay {
    /// Subscribers reported by each known aggregator (its latest figure
    /// that day; from several addresses, the largest).
    #[serde(default)]
    pub aggregators: BTreeMap<String, u64>,
    /// Figures claimed under names no known aggregator uses: shown apart,
    /// counted in no total.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unrecognised_aggregators: BTreeMap<String, u64>,
    /// Distinct clients that polled the feed themselves (estimate).
    #[serde(default)]
    pub direct_pollers: u64,
    /// Verified WebSub subscriptions of the built-in hub.
    #[serde(default)]
    pub websub: u64,
}

impl FeedDay {
    /// Sum of the aggregators' figures.
    pub fn aggregator_subscribers(&self) -> u64 {
        self.aggregators.values().sum()
    }
}

/// What every feed had on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    /// Distinct clients that polled any feed themselves (estimate).
    #[serde(default)]
    pub direct_pollers: u64,
    /// Per feed route.
    #[serde(default)]
    pub feeds: BTreeMap<String, FeedDay>,
}

impl Day {
    /// Sum over feeds of the aggregators' figures.
    pub fn aggregator_subscribers(&self) -> u64 {
        self.feeds
            .values()
            .map(FeedDay::aggregator_subscribers)
            .sum()
    }

    /// Sum over feeds of the WebSub subscriptions.
    pub fn websub(&self) -> u64 {
        self.feeds.values().map(|f| f.websub).sum()
    }
}

/// The file as written.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    #[serde(default)]
    today: Option<TodayFile>,
    /// Past days by date (`2026-12-03`).
    #[serde(default)]
    days: BTreeMap<String, Day>,
}

/// Today's counters as written, so that a restart neither loses nor
/// double-counts today's pollers.
#[derive(Debug, Serialize, Deserialize)]
struct TodayFile {
    day: String,
    /// The day's hash key (hex): forgotten with the day.
    key: String,
    all: String,
    #[serde(default)]
    feeds: BTreeMap<String, TodayFeedFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TodayFeedFile {
    #[serde(default)]
    pollers: String,
    #[serde(default)]
    aggregators: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    unrecognised: BTreeMap<String, u64>,
    #[serde(default)]
    websub: u64,
}

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Reading, writing or renaming failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not Herald's readership record.
    #[error("{}:{line}: not a readership record: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        line: usize,
        /// What.
        message: String,
    },
}

/// The readership counters: today's live ones and the past days.
#[derive(Debug)]
pub struct Stats {
    path: PathBuf,
    limits: Limits,
    live: ArcSwap<Live>,
    /// Past days, by day number, and today's WebSub figures; also held
    /// while `live` is replaced, so that no two replacements interleave.
    book: Mutex<Book>,
    /// Serialises writers of the file.
    writing: Mutex<()>,
}

#[derive(Debug, Default)]
struct Book {
    days: BTreeMap<u64, Day>,
    websub: BTreeMap<String, u64>,
}

/// The day number of a Unix time.
pub fn day_of(unix_secs: u64) -> u64 {
    unix_secs / DAY
}

/// `2026-12-03` for a day number.
pub fn date_of(day: u64) -> String {
    chrono::DateTime::from_timestamp((day * DAY) as i64, 0)
        .map_or_else(|| day.to_string(), |t| t.format("%Y-%m-%d").to_string())
}

fn day_from_date(s: &str) -> Option<u64> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let secs = d.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    u64::try_from(secs).ok().map(day_of)
}

impl Stats {
    /// Reads `dir/stats.json` (none: nothing counted yet) for the day of
    /// `now` (Unix seconds): today's counters carry on if the file was
    /// written today; an earlier day's become history; days beyond
    /// `limits.days` are dropped.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed: counting starts
    /// afresh and the file is left for the operator until the next save.
    pub fn open(dir: &Path, limits: Limits, now: u64) -> (Stats, Option<StatsError>) {
        let path = dir.join(FILE);
        let today = day_of(now);
        let mut book = Book::default();
        let mut live = Live::fresh(today);
        let err = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => Some(StatsError::Io {
                path: path.clone(),
                error,
            }),
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(f) => {
                    for (date, day) in f.days {
                        if let Some(n) = day_from_date(&date).filter(|n| *n < today) {
                            book.days.insert(n, clamp_day(day, &limits));
                        }
                    }
                    if let Some(t) = f.today {
                        restore_today(t, today, &limits, &mut live, &mut book);
                    }
                    None
                }
                Err(e) => Some(StatsError::Corrupt {
                    path: path.clone(),
                    line: e.line(),
                    message: e.to_string(),
                }),
            },
        };
        let stats = Stats {
            path,
            limits,
            live: ArcSwap::from_pointee(live),
            book: Mutex::new(book),
            writing: Mutex::new(()),
        };
        stats.prune(today);
        (stats, err)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limits it keeps to.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Counts one answered request (200 or 304) for `route`: a feed's,
    /// or nothing happens. A `User-Agent` that reports subscribers sets
    /// that aggregator's figure (an absurd one is ignored); any other
    /// client is a direct poller, counted once a day however often it
    /// polls. `client` identifies the client's address (an IPv6 client:
    /// its /64); only a keyed hash of it reaches the sketch.
    pub fn count(&self, route: &str, user_agent: Option<&[u8]>, client: u128) {
        // Every feed's route ends so (`rss.xml`, `atom.xml`, `feed.json`):
        // pages and files cost this comparison only.
        if !(route.ends_with(".xml") || route.ends_with(".json")) {
            return;
        }
        let live = self.live.load();
        let Some(feed) = live.feeds.get(route) else {
            return;
        };
        if let Some((ua, (name, n))) = user_agent.and_then(|ua| Some((ua, reported(ua)?))) {
            if n <= self.limits.max_reported_subscribers {
                match known_name(ua) {
                    Some(k) => feed.report(k, client, n),
                    None => feed.report_unrecognised(name, n, self.limits.max_aggregators_per_feed),
                }
            }
            // An aggregator's fetch stands for its subscribers, not for
            // a reader polling by themselves.
            return;
        }
        let h = live.hasher.hash(&client.to_le_bytes());
        feed.pollers.get_or_init(Sketch::new).add(h);
        live.all.add(h);
    }

    /// Sets the feeds counted: the routes of the published feeds. Their
    /// counters today carry on; a route no longer published is no longer
    /// counted (what it had on past days stays).
    pub fn set_feeds<'a>(&self, routes: impl IntoIterator<Item = &'a str>) {
        let routes: Vec<&str> = routes.into_iter().collect();
        let _book = self.book();
        let old = self.live.load_full();
        // The same feeds (each route once): nothing to make.
        if routes.len() == old.feeds.len() && routes.iter().all(|r| old.feeds.contains_key(*r)) {
            return;
        }
        let mut live = Live::with_key(old.day, old.key, Arc::clone(&old.all));
        for r in routes {
            let f = old.feeds.get(r).cloned().unwrap_or_default();
            live.feeds.insert(r.into(), f);
        }
        if live.feeds.len() == old.feeds.len()
            && live.feeds.keys().all(|k| old.feeds.contains_key(k))
        {
            return;
        }
        self.live.store(Arc::new(live));
    }

    /// Sets today's WebSub subscription counts, per feed route.
    pub fn set_websub(&self, counts: BTreeMap<String, u64>) {
        self.book().websub = counts;
    }

    /// Starts a new day if the day of `now` (Unix seconds) is not
    /// today's: today's figures become history under a fresh key, and
    /// days beyond the limit are dropped. Whether it did.
    pub fn roll(&self, now: u64) -> bool {
        let day = day_of(now);
        let mut book = self.book();
        let old = self.live.load_full();
        if day <= old.day {
            return false;
        }
        let mut live = Live::fresh(day);
        for r in old.feeds.keys() {
            live.feeds.insert(r.clone(), Arc::default());
        }
        self.live.store(Arc::new(live));
        let today = today_of(&old, &book.websub);
        book.days.insert(old.day, today);
        drop(book);
        self.prune(day);
        true
    }

    fn prune(&self, today: u64) {
        let keep = self.limits.days.max(1) as u64;
        let mut book = self.book();
        book.days.retain(|d, _| d + keep > today);
    }

    /// Every day kept, today first, as dates and figures.
    pub fn report(&self) -> Vec<(String, Day)> {
        let book = self.book();
        let live = self.live.load();
        let mut v = vec![(date_of(live.day), today_of(&live, &book.websub))];
        v.extend(
            book.days
                .iter()
                .rev()
                .filter(|(d, _)| **d < live.day)
                .map(|(d, day)| (date_of(*d), day.clone())),
        );
        v
    }

    /// Writes everything to `state_dir/stats.json` via a temp file,
    /// fsync and rename, so a crash leaves the old file or the new one.
    /// Blocking.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self) -> Result<(), StatsError> {
        let bytes = {
            let book = self.book();
            let live = self.live.load();
            let file = File {
                version: 1,
                today: Some(TodayFile {
                    day: date_of(live.day),
                    key: format!("{:016x}{:016x}", live.key[0], live.key[1]),
                    all: live.all.encode(),
                    feeds: live
                        .feeds
                        .iter()
                        .map(|(r, f)| {
                            let t = TodayFeedFile {
                                pollers: f.pollers.get().map(Sketch::encode).unwrap_or_default(),
                                aggregators: f.figures(),
                                unrecognised: f.unrecognised(),
                                websub: book.websub.get(&**r).copied().unwrap_or(0),
                            };
                            (r.to_string(), t)
                        })
                        .collect(),
                }),
                days: book
                    .days
                    .iter()
                    .map(|(d, day)| (date_of(*d), day.clone()))
                    .collect(),
            };
            serde_json::to_vec(&file).expect("strings and numbers serialise")
        };
        let _w = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let io = |error| StatsError::Io {
            path: self.path.clone(),
            error,
        };
        // Durable, directory included: a figure an admin page has shown
        // must not come back older after a crash.
        crate::durable::write(&self.path, &bytes).map_err(io)?;
        Ok(())
    }
}

/// Today's figures from the live counters.
fn today_of(live: &Live, websub: &BTreeMap<String, u64>) -> Day {
    let mut feeds: BTreeMap<String, FeedDay> = live
        .feeds
        .iter()
        .map(|(r, f)| {
            let d = FeedDay {
                aggregators: f.figures(),
                unrecognised_aggregators: f.unrecognised(),
                direct_pollers: f.pollers.get().map_or(0, Sketch::estimate),
                websub: websub.get(&**r).copied().unwrap_or(0),
            };
            (r.to_string(), d)
        })
        .collect();
    // WebSub topics the site no longer lists still have subscribers.
    for (r, n) in websub {
        feeds.entry(r.clone()).or_default().websub = *n;
    }
    Day {
        direct_pollers: live.all.estimate(),
        feeds,
    }
}

/// A day read from the file, cut to the limits.
fn clamp_day(mut day: Day, limits: &Limits) -> Day {
    for f in day.feeds.values_mut() {
        f.aggregators
            .retain(|_, n| *n <= limits.max_reported_subscribers);
        while f.aggregators.len() > limits.max_aggregators_per_feed {
            f.aggregators.pop_last();
        }
        f.unrecognised_aggregators
            .retain(|_, n| *n <= limits.max_reported_subscribers);
        while f.unrecognised_aggregators.len() > limits.max_aggregators_per_feed {
            f.unrecognised_aggregators.pop_last();
        }
    }
    day
}

/// Takes today's counters from the file when it was written today, else
/// makes that day history.
fn restore_today(t: TodayFile, today: u64, limits: &Limits, live: &mut Live, book: &mut Book) {
    let Some(day) = day_from_date(&t.day) else {
        return;
    };
    let key = (t.key.len() == 32)
        .then(|| {
            Some([
                // `get`: a damaged file may hold other characters.
                u64::from_str_radix(t.key.get(..16)?, 16).ok()?,
                u64::from_str_radix(t.key.get(16..)?, 16).ok()?,
            ])
        })
        .flatten();
    let all = Sketch::decode(&t.all);
    let mut feeds = FxHashMap::default();
    let mut websub = BTreeMap::new();
    for (r, f) in t.feeds {
        let ft = FeedToday::default();
        if let Some(s) = Sketch::decode(&f.pollers).filter(|_| !f.pollers.is_empty()) {
            let _ = ft.pollers.set(s);
        }
        for (name, n) in f.aggregators.into_iter().chain(f.unrecognised) {
            if n <= limits.max_reported_subscribers {
                ft.restore(&name, n, limits.max_aggregators_per_feed);
            }
        }
        if f.websub > 0 {
            websub.insert(r.clone(), f.websub);
        }
        feeds.insert(r.into_boxed_str(), Arc::new(ft));
    }
    let (Some(key), Some(all)) = (key, all) else {
        return;
    };
    let mut restored = Live::with_key(day, key, Arc::new(all));
    restored.feeds = feeds;
    if day == today {
        *live = restored;
        book.websub = websub;
    } else if day < today {
        book.days.insert(day, today_of(&restored, &websub));
    }
}

/// The aggregator and subscriber count a `User-Agent` reports, if it
/// reports one: a run of digits (commas may group them) followed by
/// "subscriber" or "reader" (the first letter in either case, after at
/// most two spaces), as Feedly, Inoreader, NewsBlur, The Old Reader,
/// Feedbin and others write it. Only the first such figure counts. A
/// `User-Agent` with neither word (a browser's, a feed reader's) costs
/// two vectorised searches.
pub fn reported(ua: &[u8]) -> Option<(&str, u64)> {
    // Nearly every User-Agent has neither word: two vectorised searches
    // say so before any parsing.
    static WORDS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 2]> =
        std::sync::LazyLock::new(|| {
            [
                memchr::memmem::Finder::new(b"ubscriber"),
                memchr::memmem::Finder::new(b"eader"),
            ]
        });
    if WORDS.iter().all(|w| w.find(ua).is_none()) {
        return None;
    }
    let mut i = 0;
    while i < ua.len() {
        if !ua[i].is_ascii_digit() || (i > 0 && ua[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let start = i;
        while i < ua.len() && (ua[i].is_ascii_digit() || (ua[i] == b',' && digit3(&ua[i + 1..]))) {
            i += 1;
        }
        let digits = &ua[start..i];
        let mut j = i;
        while j < ua.len() && j - i < 2 && ua[j] == b' ' {
            j += 1;
        }
        let rest = &ua[j..];
        if starts_with_first_either_case(rest, b"subscriber")
            || starts_with_first_either_case(rest, b"reader")
        {
            let mut n: u64 = 0;
            for &d in digits.iter().filter(|d| d.is_ascii_digit()) {
                // Saturates: an overlong figure is then absurd, and ignored.
                n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
            }
            return Some((aggregator_name(ua), n));
        }
    }
    None
}

fn digit3(b: &[u8]) -> bool {
    b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit)
}

/// `b` starts with `word` (lower case), its first letter in either case.
fn starts_with_first_either_case(b: &[u8], word: &[u8]) -> bool {
    b.len() >= word.len() && b[0].to_ascii_lowercase() == word[0] && b[1..word.len()] == word[1..]
}

fn starts_with_ignore_case(b: &[u8], prefix: &[u8]) -> bool {
    b.len() >= prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Aggregators known by a word in their `User-Agent`, and the name they
/// are shown under: those of `tests/fixtures/user_agents.tsv`. Only these
/// count as aggregators; a figure under any other name is unrecognised.
const KNOWN: [(&[u8], &str); 12] = [
    (b"feedly", "Feedly"),
    (b"inoreader", "Inoreader"),
    (b"newsblur", "NewsBlur"),
    (b"theoldreader", "The Old Reader"),
    (b"feedbin", "Feedbin"),
    (b"feedfetcher-google", "Google Feedfetcher"),
    (b"bloglines", "Bloglines"),
    (b"newsgator", "NewsGator"),
    (b"overcast", "Overcast"),
    (b"newshutch", "Newshutch"),
    (b"livejournal.com", "LiveJournal.com"),
    (b"kinjabot", "kinjabot"),
];

/// The known aggregator a `User-Agent` names, if any.
fn known_name(ua: &[u8]) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|(word, _)| ua.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word)))
        .map(|(_, name)| *name)
}

/// Longest name kept of an aggregator that is not one of [`KNOWN`].
const MAX_NAME: usize = 40;

/// The name of the aggregator behind a `User-Agent`: a known one's, else
/// its product token (`Bloglines/3.1 (…)` → `Bloglines`; in `Mozilla/5.0
/// (compatible; name; …)`, the name), cut to letters, digits, `.`, `-`
/// and `_` and to [`MAX_NAME`] bytes; "other" when none is left.
fn aggregator_name(ua: &[u8]) -> &str {
    if let Some(name) = known_name(ua) {
        return name;
    }
    let mut rest = ua;
    if starts_with_ignore_case(rest, b"mozilla/") {
        if let Some(p) = find(rest, b"(compatible;") {
            rest = &rest[p + b"(compatible;".len()..];
        }
    }
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    let len = rest
        .iter()
        .take(MAX_NAME)
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        .count();
    match std::str::from_utf8(&rest[..len]) {
        Ok(s) if !s.is_empty() => s,
        _ => "other",
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: u64 = 1_764_763_200; // 2025-12-03 12:00 UTC

    fn stats(dir: &Path) -> Stats {
        let (s, err) = Stats::open(dir, Limits::default(), NOON);
        assert!(err.is_none(), "{err:?}");
        s.set_feeds(["/rss.xml", "/atom.xml"]);
        s
    }

    fn v4(i: u32) -> u128 {
        u128::from(std::net::Ipv4Addr::from(i).to_ipv6_mapped())
    }

    /// Real aggregator `User-Agent` strings (tests/fixtures/user_agents.tsv)
    /// give their aggregator and count; browsers and feed readers that
    /// report nothing give none.
    #[test]
    fn aggregator_user_agents() {
        let text = include_str!("../tests/fixtures/user_agents.tsv");
        let mut seen = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let mut f = line.splitn(3, '\t');
            let (name, count, ua) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            let want = (!name.is_empty()).then(|| (name, count.parse::<u64>().unwrap()));
            assert_eq!(reported(ua.as_bytes()), want, "{ua}");
            seen += 1;
        }
        assert!(seen >= 15, "{seen} fixtures");
    }

    /// 10,000 distinct addresses estimate within 5 %, however often each
    /// polls; so do 100 and 100,000.
    #[test]
    fn distinct_pollers_estimate() {
        let dir = tempfile::tempdir().unwrap();
        let s = stats(dir.path());
        for n in [100u32, 10_000, 100_000] {
            s.roll(NOON + DAY * u64::from(n));
            for i in 0..n {
                for _ in 0..3 {
                    s.count(
                        "/rss.xml",
                        Some(b"Mozilla/5.0 NetNewsWire/6.1"),
                        v4(0x0a00_0000 + i),
                    );
                }
            }
            let got = s.report()[0].1.feeds["/rss.xml"].direct_pollers;
            let err = (got as f64 - f64::from(n)).abs() / f64::from(n);
            assert!(err < 0.05, "{n} addresses estimated as {got}");
        }
    }

    /// Aggregators set their latest figure; an absurd count is ignored;
    /// names beyond the cap are ignored; their fetches are no pollers;
    /// routes that are no feed count nothing.
    #[test]
    fn aggregator_figures_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Stats::open(
            dir.path(),
            Limits {
                max_aggregators_per_feed: 3,
                ..Limits::default()
            },
            NOON,
        );
        s.set_feeds(["/rss.xml"]);
        let ua = |n: u64| {
            format!("Feedly/1.0 (+http://www.feedly.com/fetcher.html; {n} subscribers; like FeedFetcher-Google)")
        };
        s.count("/rss.xml", Some(ua(10).as_bytes()), v4(1));
        s.count("/rss.xml", Some(ua(12).as_bytes()), v4(1));
        s.count("/rss.xml", Some(ua(99_999_999_999).as_bytes()), v4(1));
        for i in 0..10 {
            s.count(
                "/rss.xml",
                Some(format!("Agg{i}/1.0 ({i} readers)").as_bytes()),
                v4(2),
            );
        }
        s.count("/articles/x/", Some(ua(5).as_bytes()), v4(3));
        s.count("/articles/x/", None, v4(3));
        let day = &s.report()[0].1;
        let f = &day.feeds["/rss.xml"];
        assert_eq!(f.aggregators.len(), 1, "only known names: {f:?}");
        assert_eq!(f.unrecognised_aggregators.len(), 3, "bounded: {f:?}");
        assert_eq!(day.aggregator_subscribers(), 12, "{f:?}");
        assert_eq!(f.aggregators["Feedly"], 12);
        // Another address reports its own figure; the largest shows.
        s.count("/rss.xml", Some(ua(3).as_bytes()), v4(9));
        assert_eq!(s.report()[0].1.feeds["/rss.xml"].aggregators["Feedly"], 12);
        s.count("/rss.xml", Some(ua(30).as_bytes()), v4(9));
        assert_eq!(s.report()[0].1.feeds["/rss.xml"].aggregators["Feedly"], 30);
        // At most MAX_REPORTERS addresses per aggregator.
        for i in 10..30 {
            s.count("/rss.xml", Some(ua(1000 + u64::from(i)).as_bytes()), v4(i));
        }
        let top = s.report()[0].1.feeds["/rss.xml"].aggregators["Feedly"];
        assert_eq!(top, 1000 + 10 + MAX_REPORTERS as u64 - 3, "{top}");
        assert_eq!(f.direct_pollers, 0);
        assert_eq!(day.direct_pollers, 0);
        assert_eq!(day.feeds.len(), 1);
    }

    /// Everything survives a save and an open on the same day (pollers
    /// seen before the restart are not counted twice); on a later day,
    /// today becomes history and a fresh key is drawn; days beyond the
    /// limit go.
    #[test]
    fn survives_restart_and_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let s = stats(dir.path());
        for i in 0..50 {
            s.count("/rss.xml", None, v4(i));
        }
        s.count(
            "/atom.xml",
            Some(b"NewsBlur Feed Fetcher - 7 subscribers - https://www.newsblur.com/site/1/x"),
            v4(9),
        );
        s.set_websub([("/atom.xml".to_string(), 2)].into());
        s.save().unwrap();
        let key = s.live.load().key;

        let (s2, err) = Stats::open(dir.path(), Limits::default(), NOON + 60);
        assert!(err.is_none(), "{err:?}");
        s2.set_feeds(["/rss.xml", "/atom.xml"]);
        assert_eq!(s2.live.load().key, key, "same day, same key");
        for i in 0..50 {
            s2.count("/rss.xml", None, v4(i));
        }
        assert_eq!(s2.report(), s.report());
        let t = &s2.report()[0].1;
        // Two of 50 may share a register (for a few % of keys): one less.
        let n = t.feeds["/rss.xml"].direct_pollers;
        assert!((48..=50).contains(&n), "{n}");
        assert_eq!(t.feeds["/atom.xml"].aggregators["NewsBlur"], 7);
        assert_eq!(t.feeds["/atom.xml"].websub, 2);

        let (s3, _) = Stats::open(dir.path(), Limits::default(), NOON + DAY);
        s3.set_feeds(["/rss.xml"]);
        assert_ne!(s3.live.load().key, key, "a new day, a new key");
        let r = s3.report();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "2025-12-04");
        assert_eq!(r[1].0, "2025-12-03");
        assert_eq!(r[1].1, s.report()[0].1, "yesterday as it was");
        assert!(s3.roll(NOON + 200 * DAY));
        s3.save().unwrap();
        let (s4, _) = Stats::open(dir.path(), Limits::default(), NOON + 200 * DAY);
        assert_eq!(s4.report().len(), 1, "older than 90 days: gone");
    }

    /// A damaged file is reported, and counting starts afresh.
    #[test]
    fn corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "{\"version\":1,\n\"days\":[").unwrap();
        let (s, err) = Stats::open(dir.path(), Limits::default(), NOON);
        let msg = err.expect("an error").to_string();
        assert!(msg.contains("stats.json:2:"), "{msg}");
        assert_eq!(s.report().len(), 1);
        // Today's key of 32 bytes that are not 32 hex digits (a character
        // of two bytes across its middle): no key restored, no panic.
        let key = format!("a{}b", "é".repeat(15));
        assert_eq!(key.len(), 32);
        std::fs::write(
            dir.path().join(FILE),
            format!(r#"{{"version":1,"today":{{"day":"2025-12-03","key":"{key}","all":""}}}}"#),
        )
        .unwrap();
        let (s, _) = Stats::open(dir.path(), Limits::default(), NOON);
        assert_eq!(s.report().len(), 1);
    }

    /// The sketch's file form reads back register for register; other
    /// text is refused.
    #[test]
    fn sketch_encoding() {
        let k = Sketch::new();
        for i in 0..1000u64 {
            k.add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        let back = Sketch::decode(&k.encode()).unwrap();
        assert_eq!(back.estimate(), k.estimate());
        for bad in ["xyz", "ffff01", "00003f", "0000"] {
            assert!(Sketch::decode(bad).is_none(), "{bad}");
        }
    }
}
