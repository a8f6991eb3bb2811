//! `Config`: Herald's settings from an optional TOML file plus command-line
//! overrides. Every key has a default, so Herald runs with no file at all;
//! an unknown key or a wrong type is an error naming the key and the line.
//! Uses nothing else of Herald's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

/// Full text or summary in feed items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ContentMode {
    /// The whole article body.
    #[default]
    Full,
    /// Only the summary; readers follow the link for the rest.
    Summary,
}

/// Per-feed-kind overrides (`[rss]`, `[atom]`, `[json]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeedKindConfig {
    /// Overrides the top-level `content` for this kind of feed.
    pub content: Option<ContentMode>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable; without timestamps and with syslog priorities under journald.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The smallest `max_header_bytes`: hyper's HTTP/1 read buffer is never
/// smaller, so a lower limit could not be kept.
pub const MIN_HEADER_BYTES: usize = 8192;

/// The largest `max_header_bytes`: every connection may buffer this much
/// of a request head.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// `[websub]`: WebSub (W3C Recommendation, 2018) publishing: the hubs
/// every feed names, publish pings to the external ones, and the
/// built-in hub at `/websub` with its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSubConfig {
    /// External hubs (absolute http(s) URLs): named in every feed and
    /// pinged after every change of a feed's bytes.
    pub hubs: Vec<String>,
    /// Herald is also a hub, at `/websub` (named first in every feed).
    pub builtin: bool,
    /// Callbacks may be loopback, private, link-local or multicast
    /// addresses (only for tests and closed networks).
    pub allow_private_callbacks: bool,
    /// Lease of a subscription that asks for none.
    pub lease_default: Duration,
    /// Longest lease granted; longer requests get this.
    pub lease_max: Duration,
    /// Outgoing requests (deliveries, verifications, pings) at once.
    pub delivery_concurrency: usize,
    /// Attempts after the first for one delivery or ping, before it is
    /// dropped.
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one.
    pub retry_backoff: Duration,
    /// Longest one outgoing request may take, connecting included.
    pub request_timeout: Duration,
    /// Longest a client may take to send a hub request's body.
    pub body_timeout: Duration,
    /// Largest hub request body, bytes.
    pub max_request_bytes: usize,
    /// Subscribe and unsubscribe requests one client address (an IPv6
    /// client: its /64) may make per minute.
    pub requests_per_minute: usize,
    /// Subscriptions (verified or being verified) whose callbacks are on
    /// one host.
    pub max_subscriptions_per_host: usize,
    /// Subscriptions in all (verified or being verified).
    pub max_subscriptions: usize,
    /// Verification requests at once (their own budget, apart from
    /// deliveries).
    pub verify_concurrency: usize,
    /// A delivery not answered in this time moves its subscriber to the
    /// slow lane.
    pub slow_delivery: Duration,
    /// Deliveries at once to subscribers in the slow lane.
    pub slow_lane_concurrency: usize,
    /// A delivery to a subscriber in good standing not answered in this
    /// time hands its place among `delivery_concurrency` to the next one
    /// and waits on among `waiting_deliveries` (when one is free).
    pub delivery_patience: Duration,
    /// Deliveries past `delivery_patience` still waiting for an answer,
    /// at once.
    pub waiting_deliveries: usize,
    /// A change waiting this long for a healthy subscriber degrades
    /// `/healthz`.
    pub delivery_lag: Duration,
}

impl Default for WebSubConfig {
    fn default() -> Self {
        WebSubConfig {
            hubs: Vec::new(),
            builtin: false,
            allow_private_callbacks: false,
            lease_default: Duration::from_secs(10 * 86_400),
            lease_max: Duration::from_secs(30 * 86_400),
            delivery_concurrency: 32,
            retries: 5,
            retry_backoff: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_request_bytes: 8192,
            requests_per_minute: 20,
            max_subscriptions_per_host: 100,
            max_subscriptions: 10_000,
            verify_concurrency: 8,
            slow_delivery: Duration::from_secs(2),
            slow_lane_concurrency: 4,
            delivery_patience: Duration::from_millis(100),
            waiting_deliveries: 1024,
            delivery_lag: Duration::from_secs(60),
        }
    }
}

impl WebSubConfig {
    /// The hub URLs every feed names: the built-in one first (under
    /// `base_url`), then the external ones.
    pub fn hub_urls(&self, base_url: &str) -> Vec<String> {
        let builtin = self.builtin.then(|| format!("{base_url}websub"));
        builtin
            .into_iter()
            .chain(self.hubs.iter().cloned())
            .collect()
    }
}

/// `[stats]`: the readership figures (who reads the feeds), served on
/// the admin listener.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsConfig {
    /// Count readers at all.
    pub enabled: bool,
    /// Days of figures kept, today included.
    pub days: usize,
    /// Aggregator names kept per feed and day.
    pub max_aggregators_per_feed: usize,
    /// Larger subscriber counts in a `User-Agent` are ignored as absurd.
    pub max_reported_subscribers: u64,
    /// How often the figures are saved to `state_dir` (and at shutdown).
    pub save_interval: Duration,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            enabled: true,
            days: 90,
            max_aggregators_per_feed: 32,
            max_reported_subscribers: 10_000_000,
            save_interval: Duration::from_secs(300),
        }
    }
}

/// `[stats]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStats {
    enabled: Option<bool>,
    days: Option<toml::Spanned<i64>>,
    max_aggregators_per_feed: Option<toml::Spanned<i64>>,
    max_reported_subscribers: Option<toml::Spanned<i64>>,
    save_interval_secs: Option<toml::Spanned<i64>>,
}

/// The default `admin_listen`: loopback, on a port of its own.
pub const DEFAULT_ADMIN_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 9190);

/// `[publish]`: the object-storage target `herald publish` mirrors to and
/// `herald serve` keeps up to date after every publish. Credentials are
/// never here: they come from the AWS environment and profile chain.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishConfig {
    /// The target as written (`s3://bucket/prefix`).
    pub to: String,
    /// The bucket.
    pub bucket: String,
    /// Key prefix, without slashes at either end (empty: the bucket's root).
    pub prefix: String,
    /// An S3-compatible server's URL (MinIO, Garage, Ceph RGW, R2 …);
    /// `None`: AWS itself.
    pub endpoint: Option<String>,
    /// The bucket's region.
    pub region: String,
    /// Bodies stored gzip-encoded (`Content-Encoding: gzip`) where the
    /// document has a gzip form.
    pub gzip: bool,
    /// Most objects one mirror pass may delete; more and it deletes none.
    pub max_deletes: usize,
    /// `Cache-Control: max-age` of feeds, the index, listing pages and
    /// OPML, seconds.
    pub cache_feeds: u64,
    /// `Cache-Control: max-age` of article pages and the files they
    /// reference, seconds.
    pub cache_pages: u64,
    /// `Cache-Control: max-age` of RFC 5005 archive pages, seconds.
    pub cache_archive: u64,
    /// Requests to the target at once.
    pub concurrency: usize,
    /// Longest one request may take, connecting included.
    pub request_timeout: Duration,
    /// Longest wait between two attempts while the target fails.
    pub retry_max: Duration,
    /// How often `serve` lists the whole bucket and repairs what changed
    /// behind its back; `None`: only at start and after a failure.
    pub repair_interval: Option<Duration>,
}

impl PublishConfig {
    /// A target for `to` (`s3://bucket[/prefix]`) with every other key at
    /// its default; `None` when `to` is not such a URL.
    pub fn for_target(to: &str) -> Option<PublishConfig> {
        let rest = to.trim().strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
            return None;
        }
        Some(PublishConfig {
            to: to.trim().to_string(),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            region: "us-east-1".into(),
            gzip: true,
            max_deletes: 256,
            cache_feeds: 300,
            cache_pages: 3600,
            cache_archive: 86_400,
            concurrency: 16,
            request_timeout: Duration::from_secs(30),
            retry_max: Duration::from_secs(60),
            repair_interval: Some(Duration::from_secs(600)),
        })
    }
}

/// `[publish]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    to: Option<toml::Spanned<String>>,
    endpoint: Option<toml::Spanned<String>>,
    region: Option<String>,
    gzip: Option<bool>,
    max_deletes: Option<toml::Spanned<i64>>,
    cache_feeds_secs: Option<u64>,
    cache_pages_secs: Option<u64>,
    cache_archive_secs: Option<u64>,
    concurrency: Option<toml::Spanned<i64>>,
    request_timeout_secs: Option<toml::Spanned<i64>>,
    retry_max_secs: Option<toml::Spanned<i64>>,
    repair_interval_secs: Option<toml::Spanned<i64>>,
}

/// `[websub]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebSub {
    hubs: Option<Vec<toml::Spanned<String>>>,
    builtin: Option<bool>,
    allow_private_callbacks: Option<bool>,
    lease_default_secs: Option<toml::Spanned<i64>>,
    lease_max_secs: Option<toml::Spanned<i64>>,
    delivery_concurrency: Option<toml::Spanned<i64>>,
    retries: Option<toml::Spanned<i64>>,
    retry_backoff_ms: Option<toml::Spanned<i64>>,
    request_timeout_secs: Option<toml::Spanned<i64>>,
    body_timeout_secs: Option<toml::Spanned<i64>>,
    max_request_bytes: Option<toml::Spanned<i64>>,
    requests_per_minute: Option<toml::Spanned<i64>>,
    max_subscriptions_per_host: Option<toml::Spanned<i64>>,
    max_subscriptions: Option<toml::Spanned<i64>>,
    verify_concurrency: Option<toml::Spanned<i64>>,
    slow_delivery_secs: Option<toml::Spanned<i64>>,
    slow_lane_concurrency: Option<toml::Spanned<i64>>,
    delivery_patience_ms: Option<toml::Spanned<i64>>,
    waiting_deliveries: Option<toml::Spanned<i64>>,
    delivery_lag_secs: Option<toml::Spanned<i64>>,
}

/// The file as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    title: Option<String>,
    description: Option<String>,
    base_url: Option<toml::Spanned<String>>,
    id_authority: Option<String>,
    author: Option<String>,
    language: Option<String>,
    timezone: Option<toml::Spanned<String>>,
    content_dir: Option<PathBuf>,
    output_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    max_items: Option<toml::Spanned<i64>>,
    page_size: Option<toml::Spanned<i64>>,
    archive_page_size: Option<toml::Spanned<i64>>,
    archive_max_age: Option<u64>,
    content: Option<ContentMode>,
    rss: Option<FeedKindConfig>,
    atom: Option<FeedKindConfig>,
    json: Option<FeedKindConfig>,
    listen: Option<toml::Spanned<String>>,
    cache_max_age: Option<u64>,
    debounce_ms: Option<u64>,
    settle_max_ms: Option<u64>,
    verify_interval_secs: Option<u64>,
    max_connections: Option<toml::Spanned<i64>>,
    max_connections_per_ip: Option<toml::Spanned<i64>>,
    trusted_proxies: Option<Vec<toml::Spanned<String>>>,
    http_workers: Option<toml::Spanned<i64>>,
    brotli_quality: Option<toml::Spanned<i64>>,
    header_read_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    max_header_bytes: Option<toml::Spanned<i64>>,
    shutdown_grace_secs: Option<u64>,
    max_file_bytes: Option<toml::Spanned<i64>>,
    max_front_matter_bytes: Option<toml::Spanned<i64>>,
    max_labels: Option<toml::Spanned<i64>>,
    max_nesting: Option<toml::Spanned<i64>>,
    follow_external_symlinks: Option<bool>,
    max_former_slugs: Option<toml::Spanned<i64>>,
    max_asset_bytes: Option<toml::Spanned<i64>>,
    publish_stall_secs: Option<toml::Spanned<i64>>,
    write_retry_secs: Option<toml::Spanned<i64>>,
    max_drop: Option<toml::Spanned<f64>>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    websub: Option<RawWebSub>,
    admin_listen: Option<toml::Spanned<String>>,
    admin_max_connections: Option<toml::Spanned<i64>>,
    stats: Option<RawStats>,
    publish: Option<RawPublish>,
}

/// Herald's settings, every one resolved to a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Feed and site title.
    pub title: String,
    /// Feed and site description.
    pub description: String,
    /// Public URL of the site, always ending in `/`. When the file does
    /// not set it, the `listen` address's ([`base_url_for`]); `serve` then
    /// puts the address it actually listens on here.
    pub base_url: String,
    /// `base_url` was set in the file (and so never follows `listen`).
    pub base_url_configured: bool,
    /// Explicit id authority (`tag:` URIs); `None` means "the host of
    /// `base_url` at first publication", remembered in the state file.
    pub id_authority: Option<String>,
    /// Site author, used for articles that name none.
    pub author: String,
    /// Language tag of the feeds (`en`, `zh-CN` …).
    pub language: String,
    /// Zone of dates written without an offset.
    pub timezone: Tz,
    /// Where the articles are.
    pub content_dir: PathBuf,
    /// Where the generated files go.
    pub output_dir: PathBuf,
    /// Where the state file lives (never inside `output_dir`).
    pub state_dir: PathBuf,
    /// Items of a feed's current document: at least this many (all while
    /// there are fewer), up to `archive_page_size - 1` more; older ones
    /// are on its archive pages.
    pub max_items: usize,
    /// Articles on one archive page of the index and of each category's
    /// and tag's page; a front page holds from this many to twice as many
    /// less one.
    pub page_size: usize,
    /// Articles on one closed archive page of each feed (RFC 5005).
    pub archive_page_size: usize,
    /// `Cache-Control: max-age` seconds of the closed archive pages.
    pub archive_max_age: u64,
    /// Full text or summary, per feed kind.
    pub content_rss: ContentMode,
    /// See `content_rss`.
    pub content_atom: ContentMode,
    /// See `content_rss`.
    pub content_json: ContentMode,
    /// Address `serve` listens on.
    pub listen: SocketAddr,
    /// `Cache-Control: max-age` seconds for feeds and pages (RSS `<ttl>` follows it).
    pub cache_max_age: u64,
    /// Quiet period after a file event before a rebuild.
    pub debounce: Duration,
    /// Longest a file that keeps changing can delay its rebuild.
    pub settle_max: Duration,
    /// Period of the stat-only verification pass that catches missed events.
    pub verify_interval: Duration,
    /// Concurrent HTTP connections; more wait (accepted, up to as many
    /// again, then in the kernel backlog).
    pub max_connections: usize,
    /// Connections one client address may hold (open or waiting; an IPv6
    /// client is counted by its /64); more from it are refused at once.
    pub max_connections_per_ip: usize,
    /// Addresses and networks of reverse proxies whose `X-Forwarded-For`
    /// and `Forwarded` headers name the client (empty: none believed).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Threads serving HTTP connections, each with its own event loop.
    pub http_workers: usize,
    /// Quality of the brotli forms of feeds, the index and OPML (1–11);
    /// 0 offers no brotli.
    pub brotli_quality: u32,
    /// A client must send its request head (or its whole HTTP/2 preface)
    /// within this time of its first byte.
    pub header_read_timeout: Duration,
    /// An idle connection is closed after this time (on HTTP/2: no request
    /// being answered; PINGs do not count).
    pub idle_timeout: Duration,
    /// Largest request head accepted, in bytes ([`MIN_HEADER_BYTES`] to
    /// [`MAX_HEADER_BYTES`]).
    pub max_header_bytes: usize,
    /// How long in-flight responses may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Largest article file read, bytes; a larger file is rejected without
    /// being read past this.
    pub max_file_bytes: u64,
    /// Largest front matter of a Markdown article, bytes.
    pub max_front_matter_bytes: usize,
    /// Most categories and tags (together) one article may list.
    pub max_labels: usize,
    /// Deepest nesting of front-matter collections, Markdown blocks and
    /// inlines, and raw HTML elements in one article.
    pub max_nesting: usize,
    /// Read article files and directories that symlinks inside the content
    /// directory point to outside it (refused by default).
    pub follow_external_symlinks: bool,
    /// Former slugs remembered per article (their permalinks redirect).
    pub max_former_slugs: usize,
    /// Largest file an article references that is published, bytes.
    pub max_asset_bytes: u64,
    /// Longest the publish loop may stay on one step with no progress
    /// before `/healthz` answers 503 and the watchdog is no longer pinged.
    pub publish_stall: Duration,
    /// While the output directory or the state file cannot be written,
    /// how often writing them is tried again.
    pub write_retry: Duration,
    /// The largest share (0 to 1) of the articles published within the
    /// last hour that one publish may remove; a publish that would remove
    /// more (and more than 10 articles), or every article, is held back until the content comes back
    /// or the operator confirms (SIGUSR1).
    pub max_drop: f64,
    /// `tracing` filter (overridden by `RUST_LOG`).
    pub log_level: String,
    /// Log output format.
    pub log_format: LogFormat,
    /// WebSub: hubs, pings and the built-in hub.
    pub websub: WebSubConfig,
    /// Address of the admin listener (`/metrics`, `/stats`); `None`
    /// (`"off"` in the file) serves them nowhere.
    pub admin_listen: Option<SocketAddr>,
    /// Connections the admin listener takes at once; more are closed.
    pub admin_max_connections: usize,
    /// The readership figures.
    pub stats: StatsConfig,
    /// The object-storage target (`None`: no `[publish] to`).
    pub publish: Option<PublishConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            title: "Herald".into(),
            description: "Articles published by Herald".into(),
            base_url: "http://127.0.0.1:8080/".into(),
            base_url_configured: false,
            id_authority: None,
            author: "Herald".into(),
            language: "en".into(),
            timezone: Tz::UTC,
            content_dir: "content".into(),
            output_dir: "feeds".into(),
            state_dir: "state".into(),
            max_items: 50,
            page_size: 20,
            archive_page_size: 50,
            archive_max_age: 86400,
            content_rss: ContentMode::Full,
            content_atom: ContentMode::Full,
            content_json: ContentMode::Full,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cache_max_age: 300,
            debounce: Duration::from_millis(25),
            settle_max: Duration::from_millis(2000),
            verify_interval: Duration::from_secs(180),
            max_connections: 1024,
            max_connections_per_ip: 64,
            trusted_proxies: Vec::new(),
            http_workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            brotli_quality: 5,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(5),
            max_file_bytes: 2 * 1024 * 1024,
            max_front_matter_bytes: 64 * 1024,
            max_labels: 50,
            max_nesting: 64,
            follow_external_symlinks: false,
            max_former_slugs: 10,
            max_asset_bytes: 20 * 1024 * 1024,
            publish_stall: Duration::from_secs(10),
            write_retry: Duration::from_secs(10),
            max_drop: 0.5,
            log_level: "info".into(),
            log_format: LogFormat::Human,
            websub: WebSubConfig::default(),
            admin_listen: Some(SocketAddr::from(DEFAULT_ADMIN_LISTEN)),
            admin_max_connections: 8,
            stats: StatsConfig::default(),
            publish: None,
        }
    }
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config: {error}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A key is unknown, has the wrong type or a bad value.
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the offending key.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl Config {
    /// Reads `path`, or returns the defaults when `path` is `None`.
    ///
    /// # Errors
    /// The file cannot be read, or a key is unknown, mistyped or invalid.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|error| ConfigError::Read {
                    path: p.into(),
                    error,
                })?;
                Config::from_toml(p, &text)
            }
        }
    }

    /// Parses config text read from `path`, which labels errors and
    /// anchors relative paths: a relative `content_dir`, `output_dir` or
    /// `state_dir` is relative to the directory holding the file (as
    /// Cargo reads `Cargo.toml`), not to wherever Herald was started, so
    /// one file means the same directories from any working directory.
    ///
    /// # Errors
    /// A key is unknown, mistyped or invalid: the message names key and line.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let line_at = |pos: usize| {
            text.as_bytes()[..pos.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        };
        let invalid = |line: usize, message: String| ConfigError::Invalid {
            path: path.into(),
            line,
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_at(s.start));
            let key = text
                .lines()
                .nth(line - 1)
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim().to_string());
            let msg = unknown_key(&plain_types(&e.message().trim().replace('\n', " ")));
            // A key inside a table is named with it: `[websub] builtin: …`.
            let table = text
                .lines()
                .take(line)
                .filter_map(|l| {
                    let l = l.trim();
                    l.starts_with('[')
                        .then(|| l.trim_matches(['[', ']']).trim())
                })
                .last()
                .filter(|t| !t.is_empty())
                .map_or(String::new(), |t| format!("[{t}] "));
            match key {
                Some(k)
                    if !k.is_empty() && !k.starts_with('[') && !msg.contains(&format!("`{k}`")) =>
                {
                    invalid(line, format!("{table}{k}: {msg}"))
                }
                _ => invalid(line, format!("{table}{msg}")),
            }
        })?;

        let mut c = Config::default();
        let spanned_line = |s: &std::ops::Range<usize>| line_at(s.start);
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = raw.$field {
                    c.$field = v;
                }
            };
        }
        set!(title);
        set!(description);
        set!(author);
        set!(language);
        let base = path.parent().unwrap_or(Path::new(""));
        for (dir, value) in [
            (&mut c.content_dir, raw.content_dir),
            (&mut c.output_dir, raw.output_dir),
            (&mut c.state_dir, raw.state_dir),
        ] {
            if let Some(v) = value {
                *dir = base.join(v);
            }
        }
        set!(cache_max_age);
        set!(archive_max_age);
        set!(log_level);
        set!(log_format);
        set!(follow_external_symlinks);
        c.id_authority = raw.id_authority.filter(|a| !a.trim().is_empty());
        if let Some(u) = raw.base_url {
            let v = u.get_ref().trim();
            if !(v.starts_with("http://") || v.starts_with("https://")) || host_of(v).is_none() {
                return Err(invalid(
                    spanned_line(&u.span()),
                    format!("base_url: {v:?} is not an absolute http(s) URL"),
                ));
            }
            c.base_url = if v.ends_with('/') {
                v.to_string()
            } else {
                format!("{v}/")
            };
            c.base_url_configured = true;
        }
        if let Some(tz) = raw.timezone {
            c.timezone = tz.get_ref().parse().map_err(|_| {
                invalid(
                    spanned_line(&tz.span()),
                    format!(
                        "timezone: {:?} is not an IANA time zone name (e.g. \"Europe/Berlin\")",
                        tz.get_ref()
                    ),
                )
            })?;
        }
        let positive = |v: Option<toml::Spanned<i64>>,
                        key: &str,
                        default: usize|
         -> Result<usize, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) if *s.get_ref() >= 1 => Ok(*s.get_ref() as usize),
                Some(s) => Err(invalid(
                    spanned_line(&s.span()),
                    format!("{key}: must be at least 1, not {}", s.get_ref()),
                )),
            }
        };
        c.max_items = positive(raw.max_items, "max_items", c.max_items)?;
        c.page_size = positive(raw.page_size, "page_size", c.page_size)?;
        c.archive_page_size = positive(
            raw.archive_page_size,
            "archive_page_size",
            c.archive_page_size,
        )?;
        c.max_connections = positive(raw.max_connections, "max_connections", c.max_connections)?;
        c.max_connections_per_ip = positive(
            raw.max_connections_per_ip,
            "max_connections_per_ip",
            c.max_connections_per_ip,
        )?;
        if let Some(list) = raw.trusted_proxies {
            c.trusted_proxies = list
                .iter()
                .map(|p| {
                    let v = p.get_ref().trim();
                    v.parse::<ipnet::IpNet>()
                        .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| {
                            invalid(
                                spanned_line(&p.span()),
                                format!(
                                    "trusted_proxies: {v:?} is not an address or network like \"10.0.0.1\" or \"10.0.0.0/8\""
                                ),
                            )
                        })
                })
                .collect::<Result<_, _>>()?;
        }
        c.http_workers = positive(raw.http_workers, "http_workers", c.http_workers)?;
        c.publish_stall = Duration::from_secs(positive(
            raw.publish_stall_secs,
            "publish_stall_secs",
            c.publish_stall.as_secs() as usize,
        )? as u64);
        c.write_retry = Duration::from_secs(positive(
            raw.write_retry_secs,
            "write_retry_secs",
            c.write_retry.as_secs() as usize,
        )? as u64);
        if let Some(d) = raw.max_drop {
            c.max_drop = Some(*d.get_ref())
                .filter(|d| (0.0..=1.0).contains(d))
                .ok_or_else(|| {
                    invalid(
                        spanned_line(&d.span()),
                        format!(
                            "max_drop: must be a share from 0 to 1 (0.5: half), not {}",
                            d.get_ref()
                        ),
                    )
                })?;
        }
        if let Some(q) = raw.brotli_quality {
            c.brotli_quality = u32::try_from(*q.get_ref())
                .ok()
                .filter(|q| *q <= 11)
                .ok_or_else(|| {
                    invalid(
                        spanned_line(&q.span()),
                        format!(
                            "brotli_quality: must be 0 (no brotli) to 11, not {}",
                            q.get_ref()
                        ),
                    )
                })?;
        }
        if let Some(m) = raw.max_header_bytes {
            c.max_header_bytes = usize::try_from(*m.get_ref())
                .ok()
                .filter(|m| (MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(m))
                .ok_or_else(|| {
                    invalid(
                        spanned_line(&m.span()),
                        format!(
                            "max_header_bytes: must be {MIN_HEADER_BYTES} (the smallest request \
                             buffer the HTTP/1 parser takes) to {MAX_HEADER_BYTES}, not {}",
                            m.get_ref()
                        ),
                    )
                })?;
        }
        c.max_file_bytes = positive(
            raw.max_file_bytes,
            "max_file_bytes",
            c.max_file_bytes as usize,
        )? as u64;
        c.max_front_matter_bytes = positive(
            raw.max_front_matter_bytes,
            "max_front_matter_bytes",
            c.max_front_matter_bytes,
        )?;
        c.max_labels = positive(raw.max_labels, "max_labels", c.max_labels)?;
        c.max_asset_bytes = positive(
            raw.max_asset_bytes,
            "max_asset_bytes",
            c.max_asset_bytes as usize,
        )? as u64;
        c.max_nesting = positive(raw.max_nesting, "max_nesting", c.max_nesting)?;
        if let Some(n) = raw.max_former_slugs {
            c.max_former_slugs = usize::try_from(*n.get_ref()).map_err(|_| {
                invalid(
                    spanned_line(&n.span()),
                    format!("max_former_slugs: must be 0 or more, not {}", n.get_ref()),
                )
            })?;
        }
        let content = raw.content.unwrap_or_default();
        let pick =
            |k: &Option<FeedKindConfig>| k.as_ref().and_then(|k| k.content).unwrap_or(content);
        c.content_rss = pick(&raw.rss);
        c.content_atom = pick(&raw.atom);
        c.content_json = pick(&raw.json);
        if let Some(l) = raw.listen {
            c.listen = resolve(l.get_ref()).map_err(|why| {
                invalid(
                    spanned_line(&l.span()),
                    format!(
                        "listen: {:?} is not an address like \"127.0.0.1:8080\" or \"localhost:8080\"{why}",
                        l.get_ref()
                    ),
                )
            })?;
        }
        if !c.base_url_configured {
            c.base_url = base_url_for(c.listen);
        }
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
        c.debounce = ms(raw.debounce_ms, c.debounce);
        c.settle_max = ms(raw.settle_max_ms, c.settle_max).max(c.debounce);
        c.verify_interval = secs(raw.verify_interval_secs, c.verify_interval);
        c.header_read_timeout = secs(raw.header_read_timeout_secs, c.header_read_timeout);
        c.idle_timeout = secs(raw.idle_timeout_secs, c.idle_timeout);
        c.shutdown_grace = secs(raw.shutdown_grace_secs, c.shutdown_grace);
        if let Some(w) = raw.websub {
            let key = |k: &str| format!("websub.{k}");
            let w_positive = |v: Option<toml::Spanned<i64>>, k: &str, d: u64| {
                positive(v, &key(k), d as usize).map(|n| n as u64)
            };
            let d = &mut c.websub;
            if let Some(hubs) = w.hubs {
                d.hubs = Vec::with_capacity(hubs.len());
                for h in hubs {
                    let v = h.get_ref().trim();
                    if !(v.starts_with("http://") || v.starts_with("https://"))
                        || host_of(v).is_none()
                    {
                        return Err(invalid(
                            spanned_line(&h.span()),
                            format!("websub.hubs: {v:?} is not an absolute http(s) URL"),
                        ));
                    }
                    d.hubs.push(v.to_string());
                }
            }
            d.builtin = w.builtin.unwrap_or(d.builtin);
            d.allow_private_callbacks = w
                .allow_private_callbacks
                .unwrap_or(d.allow_private_callbacks);
            d.lease_default = Duration::from_secs(w_positive(
                w.lease_default_secs,
                "lease_default_secs",
                d.lease_default.as_secs(),
            )?);
            d.lease_max = Duration::from_secs(w_positive(
                w.lease_max_secs,
                "lease_max_secs",
                d.lease_max.as_secs(),
            )?);
            d.lease_default = d.lease_default.min(d.lease_max);
            d.delivery_concurrency = positive(
                w.delivery_concurrency,
                &key("delivery_concurrency"),
                d.delivery_concurrency,
            )?;
            if let Some(r) = w.retries {
                d.retries = u32::try_from(*r.get_ref())
                    .ok()
                    .filter(|r| *r <= 20)
                    .ok_or_else(|| {
                        invalid(
                            spanned_line(&r.span()),
                            format!("websub.retries: must be 0 to 20, not {}", r.get_ref()),
                        )
                    })?;
            }
            d.retry_backoff = Duration::from_millis(w_positive(
                w.retry_backoff_ms,
                "retry_backoff_ms",
                d.retry_backoff.as_millis() as u64,
            )?);
            d.request_timeout = Duration::from_secs(w_positive(
                w.request_timeout_secs,
                "request_timeout_secs",
                d.request_timeout.as_secs(),
            )?);
            d.body_timeout = Duration::from_secs(w_positive(
                w.body_timeout_secs,
                "body_timeout_secs",
                d.body_timeout.as_secs(),
            )?);
            d.max_request_bytes = positive(
                w.max_request_bytes,
                &key("max_request_bytes"),
                d.max_request_bytes,
            )?;
            d.requests_per_minute = positive(
                w.requests_per_minute,
                &key("requests_per_minute"),
                d.requests_per_minute,
            )?;
            d.max_subscriptions_per_host = positive(
                w.max_subscriptions_per_host,
                &key("max_subscriptions_per_host"),
                d.max_subscriptions_per_host,
            )?;
            d.max_subscriptions = positive(
                w.max_subscriptions,
                &key("max_subscriptions"),
                d.max_subscriptions,
            )?;
            d.verify_concurrency = positive(
                w.verify_concurrency,
                &key("verify_concurrency"),
                d.verify_concurrency,
            )?;
            d.slow_delivery = Duration::from_secs(w_positive(
                w.slow_delivery_secs,
                "slow_delivery_secs",
                d.slow_delivery.as_secs(),
            )?);
            d.slow_lane_concurrency = positive(
                w.slow_lane_concurrency,
                &key("slow_lane_concurrency"),
                d.slow_lane_concurrency,
            )?;
            d.delivery_patience = Duration::from_millis(w_positive(
                w.delivery_patience_ms,
                "delivery_patience_ms",
                d.delivery_patience.as_millis() as u64,
            )?);
            d.waiting_deliveries = positive(
                w.waiting_deliveries,
                &key("waiting_deliveries"),
                d.waiting_deliveries,
            )?;
            d.delivery_lag = Duration::from_secs(w_positive(
                w.delivery_lag_secs,
                "delivery_lag_secs",
                d.delivery_lag.as_secs(),
            )?);
        }
        if let Some(a) = raw.admin_listen {
            let v = a.get_ref().trim();
            c.admin_listen = if v == "off" {
                None
            } else {
                Some(resolve(v).map_err(|why| {
                    invalid(
                        spanned_line(&a.span()),
                        format!(
                            "admin_listen: {v:?} is not an address like \"127.0.0.1:9190\" or \"localhost:9190\", or \"off\"{why}"
                        ),
                    )
                })?)
            };
        }
        c.admin_max_connections = positive(
            raw.admin_max_connections,
            "admin_max_connections",
            c.admin_max_connections,
        )?;
        if let Some(st) = raw.stats {
            let d = &mut c.stats;
            d.enabled = st.enabled.unwrap_or(d.enabled);
            d.days = positive(st.days, "stats.days", d.days)?;
            d.max_aggregators_per_feed = positive(
                st.max_aggregators_per_feed,
                "stats.max_aggregators_per_feed",
                d.max_aggregators_per_feed,
            )?;
            d.max_reported_subscribers = positive(
                st.max_reported_subscribers,
                "stats.max_reported_subscribers",
                d.max_reported_subscribers as usize,
            )? as u64;
            d.save_interval = Duration::from_secs(positive(
                st.save_interval_secs,
                "stats.save_interval_secs",
                d.save_interval.as_secs() as usize,
            )? as u64);
        }
        if let Some(p) = raw.publish {
            c.publish = publish_table(p, &invalid, &spanned_line)?;
        }
        Ok(c)
    }

    /// Why `[publish]` cannot go ahead: no `base_url` is set, or it names
    /// this machine (`localhost`, a loopback or unspecified address), so
    /// every object in the bucket would link where no reader can follow.
    /// `None` without `[publish]` or with a public `base_url`.
    pub fn publish_base_url_problem(&self) -> Option<String> {
        let target = self.publish.as_ref()?;
        let why = if !self.base_url_configured {
            "base_url is not set".to_string()
        } else if host_is_local(host_of(&self.base_url).unwrap_or("")) {
            format!("base_url = {:?} is this machine", self.base_url)
        } else {
            return None;
        };
        Some(format!(
            "[publish] to {}: {why}, so every object would link to an address only this machine can reach; set base_url to the URL readers use (base_url = \"https://news.example.org/\")",
            target.to
        ))
    }

    /// The authority for new ids when none is configured: the host of `base_url`.
    pub fn default_authority(&self) -> String {
        self.id_authority
            .clone()
            .unwrap_or_else(|| host_of(&self.base_url).unwrap_or("localhost").to_string())
    }

    /// Settings whose change only takes effect after a restart.
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.listen != new.listen {
            v.push("listen");
        }
        if self.max_connections != new.max_connections {
            v.push("max_connections");
        }
        if self.max_connections_per_ip != new.max_connections_per_ip {
            v.push("max_connections_per_ip");
        }
        if self.trusted_proxies != new.trusted_proxies {
            v.push("trusted_proxies");
        }
        if self.http_workers != new.http_workers {
            v.push("http_workers");
        }
        if self.brotli_quality != new.brotli_quality {
            v.push("brotli_quality");
        }
        if self.header_read_timeout != new.header_read_timeout
            || self.idle_timeout != new.idle_timeout
            || self.max_header_bytes != new.max_header_bytes
        {
            v.push("header_read_timeout_secs/idle_timeout_secs/max_header_bytes");
        }
        if self.log_format != new.log_format {
            v.push("log_format");
        }
        if self.log_level != new.log_level {
            v.push("log_level");
        }
        if self.websub != new.websub {
            v.push("websub");
        }
        if self.admin_listen != new.admin_listen
            || self.admin_max_connections != new.admin_max_connections
        {
            v.push("admin_listen/admin_max_connections");
        }
        if self.stats != new.stats {
            v.push("stats");
        }
        if self.publish != new.publish {
            v.push("publish");
        }
        v
    }
}

/// `[publish]` resolved: `None` without `to`.
fn publish_table(
    p: RawPublish,
    invalid: &dyn Fn(usize, String) -> ConfigError,
    line: &dyn Fn(&std::ops::Range<usize>) -> usize,
) -> Result<Option<PublishConfig>, ConfigError> {
    let Some(to) = p.to else {
        return Ok(None);
    };
    let mut c = PublishConfig::for_target(to.get_ref()).ok_or_else(|| {
        invalid(
            line(&to.span()),
            format!(
                "publish.to: {:?} is not an S3 target: s3://bucket or s3://bucket/prefix \
                 (bucket: 3 to 63 lowercase letters, digits, '-' and '.'; any \
                 S3-compatible server through publish.endpoint)",
                to.get_ref()
            ),
        )
    })?;
    if let Some(e) = p.endpoint {
        let v = e.get_ref().trim().trim_end_matches('/');
        if !(v.starts_with("http://") || v.starts_with("https://")) || host_of(v).is_none() {
            return Err(invalid(
                line(&e.span()),
                format!("publish.endpoint: {v:?} is not an absolute http(s) URL"),
            ));
        }
        c.endpoint = Some(v.to_string());
    }
    if let Some(r) = p.region.filter(|r| !r.trim().is_empty()) {
        c.region = r.trim().to_string();
    }
    c.gzip = p.gzip.unwrap_or(c.gzip);
    let at_least = |v: Option<toml::Spanned<i64>>, key: &str, min: i64, d: u64| match v {
        None => Ok(d),
        Some(s) if *s.get_ref() >= min => Ok(*s.get_ref() as u64),
        Some(s) => Err(invalid(
            line(&s.span()),
            format!("publish.{key}: must be at least {min}, not {}", s.get_ref()),
        )),
    };
    c.max_deletes = at_least(p.max_deletes, "max_deletes", 0, c.max_deletes as u64)? as usize;
    c.concurrency = at_least(p.concurrency, "concurrency", 1, c.concurrency as u64)? as usize;
    c.request_timeout = Duration::from_secs(at_least(
        p.request_timeout_secs,
        "request_timeout_secs",
        1,
        c.request_timeout.as_secs(),
    )?);
    c.retry_max = Duration::from_secs(at_least(
        p.retry_max_secs,
        "retry_max_secs",
        1,
        c.retry_max.as_secs(),
    )?);
    // 0: never (only at start and after a failure).
    let repair = at_least(p.repair_interval_secs, "repair_interval_secs", 0, 600)?;
    c.repair_interval = (repair > 0).then(|| Duration::from_secs(repair));
    c.cache_feeds = p.cache_feeds_secs.unwrap_or(c.cache_feeds);
    c.cache_pages = p.cache_pages_secs.unwrap_or(c.cache_pages);
    c.cache_archive = p.cache_archive_secs.unwrap_or(c.cache_archive);
    Ok(Some(c))
}

/// A type error in words a reader of the file knows: serde names Rust
/// types (`expected i64`), which say nothing to someone editing TOML.
fn plain_types(msg: &str) -> String {
    const WORDS: [(&str, &str); 8] = [
        ("i64", "an integer"),
        ("i32", "an integer"),
        ("u32", "a non-negative integer"),
        ("u64", "a non-negative integer"),
        ("usize", "a non-negative integer"),
        ("a boolean", "a boolean (true or false)"),
        ("path string", "a string (a path)"),
        ("struct FeedKindConfig", "a table"),
    ];
    let Some((head, expected)) = msg.rsplit_once("expected ") else {
        return msg.to_string();
    };
    match WORDS.iter().find(|(rust, _)| expected == *rust) {
        Some((_, words)) => format!("{head}expected {words}"),
        None => msg.to_string(),
    }
}

/// An address to listen on: `IP:port`, or `host:port` resolved now (at
/// start or reload) to its first address, as `localhost:8080` is to
/// 127.0.0.1 or ::1. The error is what the resolver said, ready to append.
fn resolve(v: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let v = v.trim();
    if let Ok(a) = v.parse() {
        return Ok(a);
    }
    match v.to_socket_addrs() {
        Ok(mut all) => all
            .next()
            .ok_or_else(|| ": the name has no address".to_string()),
        Err(e) => Err(format!(": {e}")),
    }
}

/// serde's `unknown field `x`, expected one of …` (every key Herald
/// knows) said shortly: the nearest known key when one is close, else
/// where the keys are listed. Other messages come back unchanged.
fn unknown_key(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_string();
    };
    let Some((key, expected)) = rest.split_once('`') else {
        return msg.to_string();
    };
    let known = expected.split('`').skip(1).step_by(2);
    let near = known
        .map(|k| (strsim::damerau_levenshtein(key, k), k))
        .filter(|&(d, k)| d <= 2 && d * 3 <= key.len().max(k.len()))
        .min_by_key(|&(d, _)| d);
    match near {
        Some((_, k)) => format!("unknown key `{key}`; did you mean `{k}`?"),
        None => {
            format!("unknown key `{key}` (config/herald.toml lists every key with its default)")
        }
    }
}

/// The `base_url` of a site served on `addr` when none is configured:
/// `http://<addr>/`, an unspecified address (`0.0.0.0`, `::`, every
/// interface) as the loopback address of its family, which is at least
/// reachable from the machine itself.
pub fn base_url_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(a) if a.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(a) if a.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}/", SocketAddr::new(ip, addr.port()))
}

/// Whether `host` (as [`host_of`] gives it) names this machine:
/// `localhost` or a name under it, a loopback or unspecified address.
fn host_is_local(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| {
        let ip = ip.to_canonical();
        ip.is_loopback() || ip.is_unspecified()
    })
}

/// The host part of an absolute URL (without port or user info).
pub fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..])?
    } else {
        host.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("herald.toml"), t)
    }

    /// An empty file gives exactly the defaults.
    #[test]
    fn empty_is_default() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    /// The shipped example config parses and matches the built-in defaults
    /// where it says it does.
    #[test]
    fn example_config_parses() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/herald.toml"))
                .unwrap();
        let c = parse(&text).unwrap();
        let d = Config::default();
        assert_eq!(c.max_items, d.max_items);
        assert_eq!(c.timezone, d.timezone);
        assert_eq!(c.content_dir, d.content_dir);
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.debounce, d.debounce);
        assert_eq!(c.websub, d.websub, "[websub] shows the defaults");
        assert_eq!(c.publish, None, "no target unless `to` is set");
        let with_to = parse(&text.replace("# to = ", "to = ")).unwrap();
        assert_eq!(
            with_to.publish,
            PublishConfig::for_target("s3://feeds-bucket/site"),
            "[publish] shows the defaults"
        );
        assert_eq!(c.stats, d.stats, "[stats] shows the defaults");
        assert_eq!(c.admin_listen, d.admin_listen);
        assert_eq!(c.admin_max_connections, d.admin_max_connections);
    }

    /// `admin_listen` takes an address or "off"; `[stats]` keys set what
    /// they name; bad values name key and line.
    #[test]
    fn admin_and_stats() {
        let c = parse("admin_listen = \"off\"\n").unwrap();
        assert_eq!(c.admin_listen, None);
        let c = parse(
            "admin_listen = \"127.0.0.1:0\"\nadmin_max_connections = 2\n[stats]\nenabled = false\ndays = 7\n\
             max_aggregators_per_feed = 4\nmax_reported_subscribers = 1000\nsave_interval_secs = 9\n",
        )
        .unwrap();
        assert_eq!(c.admin_listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.admin_max_connections, 2);
        assert_eq!(
            c.stats,
            StatsConfig {
                enabled: false,
                days: 7,
                max_aggregators_per_feed: 4,
                max_reported_subscribers: 1000,
                save_interval: Duration::from_secs(9),
            }
        );
        for (text, want) in [
            (
                "admin_listen = \"nine\"\n",
                "herald.toml:1: admin_listen: \"nine\" is not an address",
            ),
            (
                "\n[stats]\ndays = 0\n",
                "herald.toml:3: stats.days: must be at least 1, not 0",
            ),
            ("[stats]\nnope = 1\n", "herald.toml:2:"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    /// `[websub]` keys set what they name; the default lease never
    /// exceeds the longest; the built-in hub is named first.
    #[test]
    fn websub_table() {
        let c = parse(
            "base_url = \"https://n.example/\"\n[websub]\nbuiltin = true\nhubs = [\"https://hub.example/\"]\n\
             lease_default_secs = 99999\nlease_max_secs = 600\nretries = 0\nretry_backoff_ms = 50\n\
             requests_per_minute = 3\nmax_subscriptions_per_host = 7\n",
        )
        .unwrap();
        let w = &c.websub;
        assert!(w.builtin && !w.allow_private_callbacks);
        assert_eq!(w.lease_max, Duration::from_secs(600));
        assert_eq!(w.lease_default, Duration::from_secs(600));
        assert_eq!((w.retries, w.retry_backoff), (0, Duration::from_millis(50)));
        assert_eq!(
            (w.requests_per_minute, w.max_subscriptions_per_host),
            (3, 7)
        );
        assert_eq!(
            w.hub_urls(&c.base_url),
            ["https://n.example/websub", "https://hub.example/"]
        );
        assert!(Config::default()
            .websub
            .hub_urls("https://n.example/")
            .is_empty());
    }

    /// `[publish]` needs `to` to do anything; its keys set what they
    /// name; a target that is not `s3://bucket[/prefix]` and an endpoint
    /// that is not an http(s) URL are errors naming key and line.
    #[test]
    fn publish_table() {
        assert_eq!(parse("[publish]\ngzip = false\n").unwrap().publish, None);
        let c = parse(
            "[publish]\nto = \"s3://feeds-bucket/site/\"\nendpoint = \"http://127.0.0.1:9000/\"\n\
             gzip = false\nmax_deletes = 0\ncache_archive_secs = 9\nrepair_interval_secs = 0\n",
        )
        .unwrap();
        let p = c.publish.unwrap();
        assert_eq!(p.repair_interval, None, "0: never");
        assert_eq!(
            (p.bucket.as_str(), p.prefix.as_str()),
            ("feeds-bucket", "site")
        );
        assert_eq!(p.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!((p.gzip, p.max_deletes, p.cache_archive), (false, 0, 9));
        assert_eq!(p.region, "us-east-1");
        let every = parse("[publish]\nto = \"s3://b-1.x\"\nrepair_interval_secs = 30\n").unwrap();
        assert_eq!(
            every.publish.unwrap().repair_interval,
            Some(Duration::from_secs(30))
        );
        let root = parse("[publish]\nto = \"s3://b-1.x\"\n")
            .unwrap()
            .publish
            .unwrap();
        assert_eq!((root.prefix.as_str(), root.max_deletes), ("", 256));
        assert_eq!(root.repair_interval, Some(Duration::from_secs(600)));
        for (text, key) in [
            ("[publish]\n\nto = \"gs://bucket/x\"\n", "publish.to"),
            ("[publish]\n\nto = \"s3://Bad_Bucket\"\n", "publish.to"),
            (
                "[publish]\nto = \"s3://bucket\"\nendpoint = \"localhost:9000\"\n",
                "publish.endpoint",
            ),
            (
                "[publish]\nto = \"s3://bucket\"\nmax_deletes = -1\n",
                "publish.max_deletes",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
            assert!(
                e.starts_with("herald.toml:3:") || e.starts_with("herald.toml:2:"),
                "{e}"
            );
        }
    }

    /// Unknown keys and wrong types name the key and the line.
    #[test]
    fn errors_name_key_and_line() {
        let cases = [
            (
                "unknown key",
                "title = \"x\"\n\ntitel = \"y\"\n",
                3,
                "titel",
            ),
            (
                "wrong type",
                "title = \"x\"\nmax_items = \"many\"\n",
                2,
                "invalid type",
            ),
            ("bad zone", "timezone = \"Mars/Olympus\"\n", 1, "timezone"),
            ("zero items", "\nmax_items = 0\n", 2, "max_items"),
            (
                "zero page size",
                "page_size = 0\n",
                1,
                "page_size: must be at least 1",
            ),
            ("bad url", "base_url = \"example.com\"\n", 1, "base_url"),
            ("bad listen", "\n\nlisten = \"localhost\"\n", 3, "listen"),
            ("bad content mode", "content = \"some\"\n", 1, "content"),
            (
                "brotli too high",
                "\nbrotli_quality = 12\n",
                2,
                "brotli_quality",
            ),
            (
                "header limit below what HTTP/1 can keep",
                "max_header_bytes = 4096\n",
                1,
                "max_header_bytes: must be 8192",
            ),
            (
                "header limit too large",
                "\nmax_header_bytes = 1073741824\n",
                2,
                "max_header_bytes",
            ),
            (
                "brotli negative",
                "brotli_quality = -1\n",
                1,
                "brotli_quality",
            ),
            (
                "no stall limit",
                "publish_stall_secs = 0\n",
                1,
                "publish_stall_secs",
            ),
            (
                "no retry period",
                "\nwrite_retry_secs = -5\n",
                2,
                "write_retry_secs",
            ),
            ("drop share over 1", "max_drop = 50.0\n", 1, "max_drop"),
            (
                "proxy not an address",
                "trusted_proxies = [\"10.0.0.1\",\n  \"proxy.example\"]\n",
                2,
                "trusted_proxies",
            ),
            (
                "unknown in table",
                "[rss]\ncontnet = \"full\"\n",
                2,
                "contnet",
            ),
            (
                "hub not a URL",
                "[websub]\nhubs = [\"https://hub.example\", \"hub\"]\n",
                2,
                "websub.hubs",
            ),
            (
                "no lease",
                "[websub]\n\nlease_max_secs = 0\n",
                3,
                "websub.lease_max_secs",
            ),
            (
                "unknown websub key",
                "[websub]\nbuiltins = true\n",
                2,
                "builtins",
            ),
        ];
        for (label, text, line, key) in cases {
            let e = parse(text).unwrap_err();
            let s = e.to_string();
            assert!(
                s.starts_with(&format!("herald.toml:{line}: ")),
                "{label}: {s}"
            );
            assert!(s.contains(key), "{label}: {s}");
        }
    }

    /// A value of the wrong type is named in TOML's words, not Rust's;
    /// other messages pass through unchanged.
    #[test]
    fn type_errors_in_plain_words() {
        let cases = [
            ("string for integer", "max_items = \"many\"\n", "max_items: invalid type: string \"many\", expected an integer"),
            ("float for integer", "max_connections = 1.5\n", "max_connections: invalid type: floating point `1.5`, expected an integer"),
            ("negative seconds", "cache_max_age = -5\n", "cache_max_age: invalid value: integer `-5`, expected a non-negative integer"),
            ("string for seconds", "idle_timeout_secs = \"60s\"\n", "idle_timeout_secs: invalid type: string \"60s\", expected a non-negative integer"),
            ("string for boolean", "follow_external_symlinks = \"yes\"\n", "follow_external_symlinks: invalid type: string \"yes\", expected a boolean (true or false)"),
            ("integer for string", "title = 5\n", "title: invalid type: integer `5`, expected a string"),
            ("integer for path", "content_dir = 5\n", "content_dir: invalid type: integer `5`, expected a string (a path)"),
            ("string for table", "rss = \"full\"\n", "rss: invalid type: string \"full\", expected a table"),
            ("unknown variant", "content = \"some\"\n", "content: unknown variant `some`, expected `full` or `summary`"),
        ];
        for (label, text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert_eq!(e, format!("herald.toml:1: {want}"), "{label}");
        }
    }

    /// Relative paths in a file are relative to the file's directory;
    /// absolute ones and the defaults (no file) are left as they are.
    #[test]
    fn relative_paths_follow_the_file() {
        let text =
            "content_dir = \"articles\"\noutput_dir = \"/srv/out\"\nstate_dir = \"../state\"\n";
        let c = Config::from_toml(Path::new("/etc/herald/herald.toml"), text).unwrap();
        assert_eq!(c.content_dir, Path::new("/etc/herald/articles"));
        assert_eq!(c.output_dir, Path::new("/srv/out"));
        assert_eq!(c.state_dir, Path::new("/etc/herald/../state"));
        let c = Config::from_toml(Path::new("site/herald.toml"), "").unwrap();
        assert_eq!(c.content_dir, Config::default().content_dir);
        let c = Config::from_toml(Path::new("herald.toml"), "content_dir = \"c\"\n").unwrap();
        assert_eq!(c.content_dir, Path::new("c"));
    }

    /// `content` applies to all feeds and each kind can override it.
    #[test]
    fn content_mode_overrides() {
        let c = parse("content = \"summary\"\n[json]\ncontent = \"full\"\n").unwrap();
        assert_eq!(
            (c.content_rss, c.content_atom, c.content_json),
            (
                ContentMode::Summary,
                ContentMode::Summary,
                ContentMode::Full
            )
        );
    }

    /// A bucket needs a `base_url` that names a host readers can reach:
    /// none, `localhost` and loopback or unspecified addresses are refused.
    #[test]
    fn publish_needs_a_public_base_url() {
        let bucket = "[publish]\nto = \"s3://bucket\"\n";
        let cases = [
            ("none", String::new(), true),
            (
                "v4 loopback",
                "base_url = \"http://127.0.0.2:80/\"\n".into(),
                true,
            ),
            (
                "localhost",
                "base_url = \"http://LocalHost./\"\n".into(),
                true,
            ),
            (
                "under localhost",
                "base_url = \"http://a.localhost/\"\n".into(),
                true,
            ),
            ("v6 loopback", "base_url = \"http://[::1]/\"\n".into(), true),
            (
                "v4-mapped",
                "base_url = \"http://[::ffff:127.0.0.1]/\"\n".into(),
                true,
            ),
            (
                "unspecified",
                "base_url = \"http://0.0.0.0:8080/\"\n".into(),
                true,
            ),
            (
                "public",
                "base_url = \"https://news.example.org/\"\n".into(),
                false,
            ),
            ("private", "base_url = \"http://10.0.0.5/\"\n".into(), false),
        ];
        for (label, base, refused) in cases {
            let c = parse(&format!("{base}{bucket}")).unwrap();
            let problem = c.publish_base_url_problem();
            assert_eq!(problem.is_some(), refused, "{label}: {problem:?}");
            if let Some(p) = problem {
                assert!(p.contains("set base_url") && !p.contains('\n'), "{p}");
            }
        }
        let c = parse("").unwrap();
        assert_eq!(c.publish_base_url_problem(), None, "no bucket, no need");
    }

    /// Without `base_url`, the site's URL is the `listen` address's (an
    /// unspecified address as loopback); a `base_url` set is kept.
    #[test]
    fn base_url_follows_listen_unless_set() {
        let c = parse("listen = \"127.0.0.1:9000\"\n").unwrap();
        assert_eq!(
            (c.base_url.as_str(), c.base_url_configured),
            ("http://127.0.0.1:9000/", false)
        );
        let c = parse("listen = \"0.0.0.0:80\"\n").unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:80/");
        assert_eq!(
            base_url_for("[::]:8080".parse().unwrap()),
            "http://[::1]:8080/"
        );
        assert_eq!(
            base_url_for("[2001:db8::1]:81".parse().unwrap()),
            "http://[2001:db8::1]:81/"
        );
        let c = parse("listen = \"127.0.0.1:9000\"\nbase_url = \"https://a.example/\"\n").unwrap();
        assert_eq!(
            (c.base_url.as_str(), c.base_url_configured),
            ("https://a.example/", true)
        );
    }

    /// The id authority defaults to the host of base_url.
    #[test]
    fn authority_default() {
        let c = parse("base_url = \"https://news.example.org:8443/blog\"\n").unwrap();
        assert_eq!(c.base_url, "https://news.example.org:8443/blog/");
        assert_eq!(c.default_authority(), "news.example.org");
        let c = parse("base_url = \"https://a.example\"\nid_authority = \"b.example\"\n").unwrap();
        assert_eq!(c.default_authority(), "b.example");
    }
}
