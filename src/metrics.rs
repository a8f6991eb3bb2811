//! Counters shared by the daemon loop and the server, rendered as
//! Prometheus text at `/metrics`, with the publish loop's [`Health`]
//! beside them (read by `/healthz`). Lock-free atomics; uses `health`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::health::{Health, Sink};

/// Request routes are grouped into these classes, so the label set stays
/// small however many articles there are.
pub const ROUTE_CLASSES: [&str; 8] = [
    "feed",
    "category_feed",
    "index",
    "article",
    "opml",
    "health",
    "metrics",
    "other",
];
/// Every status code HTTP defines a class for (RFC 9110 §15: 100–599)
/// has its counter, so no answer Herald sends — the hub's 202, 403, 413,
/// 429 and 503, a gone article's 410, `/healthz`'s 503 — goes uncounted.
/// Only those seen are rendered.
const FIRST_STATUS: u16 = 100;
const STATUS_COUNT: usize = 500;

const SHARDS: usize = 4;

/// One thread's request counters, on cache lines of its own.
#[derive(Debug)]
#[repr(align(128))]
struct Shard([[AtomicU64; STATUS_COUNT]; ROUTE_CLASSES.len()]);

impl Default for Shard {
    fn default() -> Shard {
        Shard(std::array::from_fn(|_| {
            std::array::from_fn(|_| AtomicU64::new(0))
        }))
    }
}

static NEXT_SHARD: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SHARD: usize = (NEXT_SHARD.fetch_add(1, Relaxed) as usize) % SHARDS;
}

/// All of Herald's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Request counters, one shard per server thread (round-robin): two
    /// cores bumping one shared counter would bounce its cache line on
    /// every response.
    requests: [Shard; SHARDS],
    /// Rebuilds published.
    pub rebuilds: AtomicU64,
    /// Sum of rebuild durations, microseconds.
    pub rebuild_micros_sum: AtomicU64,
    /// Duration of the last rebuild, microseconds.
    pub rebuild_micros_last: AtomicU64,
    /// Articles in the current snapshot.
    pub articles: AtomicU64,
    /// Files rejected in the current snapshot.
    pub rejected: AtomicU64,
    /// Open connections.
    pub connections: AtomicU64,
    /// Full rescans (start, overflow, watcher errors, verification passes).
    pub rescans: AtomicU64,
    /// Connections refused because their address held its share.
    pub refused_connections: AtomicU64,
    /// Objects stored in the bucket (`[publish] to`).
    pub bucket_puts: AtomicU64,
    /// Objects deleted from the bucket.
    pub bucket_deletes: AtomicU64,
    /// The publish loop's heartbeat and problems (`/healthz`).
    pub health: Health,
    /// The built-in hub's deliveries waiting or under way, per lane
    /// (subscribers in good standing, then the slow lane).
    pub websub_queue: [AtomicU64; 2],
    /// Age of the oldest change not yet delivered, per lane, milliseconds.
    pub websub_oldest_ms: [AtomicU64; 2],
    /// Subscriptions the built-in hub remembers as slow or failing.
    pub websub_slow_callbacks: AtomicU64,
}

impl Metrics {
    /// Counts one response.
    pub fn request(&self, class: usize, status: u16) {
        let s = usize::from(status.wrapping_sub(FIRST_STATUS));
        if s < STATUS_COUNT {
            let shard = SHARD.with(|i| *i);
            if let Some(row) = self.requests[shard].0.get(class) {
                row[s].fetch_add(1, Relaxed);
            }
        }
    }

    /// Records one published rebuild.
    pub fn rebuilt(&self, micros: u64, articles: usize, rejected: usize) {
        self.rebuilds.fetch_add(1, Relaxed);
        self.rebuild_micros_sum.fetch_add(micros, Relaxed);
        self.rebuild_micros_last.store(micros, Relaxed);
        self.articles.store(articles as u64, Relaxed);
        self.rejected.store(rejected as u64, Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP herald_http_requests_total HTTP responses by route class and status.\n# TYPE herald_http_requests_total counter\n");
        let mut not_modified = 0;
        for (c, class) in ROUTE_CLASSES.iter().enumerate() {
            for s in 0..STATUS_COUNT {
                let status = FIRST_STATUS as usize + s;
                let n: u64 = self
                    .requests
                    .iter()
                    .map(|sh| sh.0[c][s].load(Relaxed))
                    .sum();
                if status == 304 {
                    not_modified += n;
                }
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "herald_http_requests_total{{route=\"{class}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        let gauge = |out: &mut String, name: &str, kind: &str, help: &str, v: f64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        };
        gauge(
            &mut out,
            "herald_http_not_modified_total",
            "counter",
            "Conditional GETs answered 304.",
            not_modified as f64,
        );
        gauge(
            &mut out,
            "herald_rebuilds_total",
            "counter",
            "Snapshots published.",
            self.rebuilds.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "herald_rebuild_duration_seconds_sum",
            "counter",
            "Total time spent rebuilding.",
            self.rebuild_micros_sum.load(Relaxed) as f64 / 1e6,
        );
        gauge(
            &mut out,
            "herald_rebuild_last_duration_seconds",
            "gauge",
            "Duration of the last rebuild.",
            self.rebuild_micros_last.load(Relaxed) as f64 / 1e6,
        );
        gauge(
            &mut out,
            "herald_articles",
            "gauge",
            "Articles published.",
            self.articles.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "herald_rejected_files",
            "gauge",
            "Article files left out because they failed.",
            self.rejected.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "herald_open_connections",
            "gauge",
            "Open HTTP connections.",
            self.connections.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "herald_rescans_total",
            "counter",
            "Full content rescans.",
            self.rescans.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "herald_refused_connections_total",
            "counter",
            "Connections refused at once: their address held max_connections_per_ip.",
            self.refused_connections.load(Relaxed) as f64,
        );
        let verdict = self.health.check();
        gauge(
            &mut out,
            "herald_publish_live",
            "gauge",
            "1 while the publish loop works (/healthz 200), 0 when it is stuck or dead.",
            f64::from(u8::from(verdict.is_live())),
        );
        gauge(
            &mut out,
            "herald_articles_held_back",
            "gauge",
            "New articles not published because the state file cannot be written.",
            self.health.held_back() as f64,
        );
        let (routes, secs) = self.health.bucket_behind_at(std::time::Instant::now());
        gauge(
            &mut out,
            "herald_bucket_behind_routes",
            "gauge",
            "Changed routes not yet in the bucket ([publish] to).",
            routes as f64,
        );
        gauge(
            &mut out,
            "herald_bucket_behind_seconds",
            "gauge",
            "Age of the oldest publish not yet in the bucket; 0 when it is up to date.",
            secs,
        );
        gauge(
            &mut out,
            "herald_bucket_puts_total",
            "counter",
            "Objects stored in the bucket.",
            self.bucket_puts.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "herald_bucket_deletes_total",
            "counter",
            "Objects deleted from the bucket.",
            self.bucket_deletes.load(Relaxed) as f64,
        );
        out.push_str("# HELP herald_websub_queue_depth Subscriptions with a change waiting or being delivered, per lane (normal: good standing; slow: slow or failing callbacks).\n# TYPE herald_websub_queue_depth gauge\n");
        for (i, lane) in ["normal", "slow"].iter().enumerate() {
            let _ = writeln!(
                out,
                "herald_websub_queue_depth{{lane=\"{lane}\"}} {}",
                self.websub_queue[i].load(Relaxed)
            );
        }
        out.push_str("# HELP herald_websub_oldest_undelivered_seconds Age of the oldest change not yet delivered to a subscriber, per lane; 0 when none waits.\n# TYPE herald_websub_oldest_undelivered_seconds gauge\n");
        for (i, lane) in ["normal", "slow"].iter().enumerate() {
            let _ = writeln!(
                out,
                "herald_websub_oldest_undelivered_seconds{{lane=\"{lane}\"}} {}",
                self.websub_oldest_ms[i].load(Relaxed) as f64 / 1000.0
            );
        }
        gauge(
            &mut out,
            "herald_websub_slow_callbacks",
            "gauge",
            "Subscriptions whose callbacks the built-in hub remembers as slow or failing (their deliveries go to the slow lane); one leaves when its callback answers quickly again or its subscription ends.",
            self.websub_slow_callbacks.load(Relaxed) as f64,
        );
        out.push_str("# HELP herald_write_failing 1 while writing to that place fails.\n# TYPE herald_write_failing gauge\n");
        for sink in [Sink::Output, Sink::State, Sink::Bucket] {
            let _ = writeln!(
                out,
                "herald_write_failing{{sink=\"{}\"}} {}",
                sink.name(),
                u8::from(self.health.failing(sink))
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters appear with their labels; 304s are summed; the loop's
    /// health shows as gauges.
    #[test]
    fn prometheus_text() {
        let m = Metrics::default();
        m.request(0, 200);
        m.request(0, 304);
        m.request(3, 304);
        m.request(7, 429);
        m.request(5, 503);
        m.request(7, 999);
        m.rebuilt(1500, 7, 1);
        let t = m.render();
        for line in [
            "herald_http_requests_total{route=\"other\",status=\"429\"} 1\n",
            "herald_http_requests_total{route=\"health\",status=\"503\"} 1\n",
        ] {
            assert!(t.contains(line), "{t}");
        }
        assert!(!t.contains("999"), "no such status: {t}");
        assert!(
            t.contains("herald_http_requests_total{route=\"feed\",status=\"200\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("herald_http_not_modified_total 2\n"), "{t}");
        assert!(t.contains("herald_articles 7\n"), "{t}");
        assert!(
            t.contains("herald_rebuild_last_duration_seconds 0.0015\n"),
            "{t}"
        );
        assert!(t.contains("herald_publish_live 1\n"), "{t}");
        assert!(t.contains("herald_articles_held_back 0\n"), "{t}");
        assert!(
            t.contains("herald_write_failing{sink=\"state\"} 0\n"),
            "{t}"
        );
        m.health.set_held_back(2);
        m.health.set_failing(Sink::State, Some("full".into()));
        let t = m.render();
        assert!(t.contains("herald_articles_held_back 2\n"), "{t}");
        assert!(t.contains("herald_bucket_behind_seconds 0\n"), "{t}");
        assert!(
            t.contains("herald_write_failing{sink=\"bucket\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("herald_write_failing{sink=\"state\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("herald_write_failing{sink=\"output\"} 0\n"),
            "{t}"
        );
    }
}
