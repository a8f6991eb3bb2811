//! Wiring: the `build`, `check` and `serve` commands. `serve` does the
//! first scan, publishes, starts the server and then runs the one writer
//! loop (`publisher`): { batch of changes → library → render → publish },
//! plus the timer for future-dated articles, periodic verification,
//! signals and sd_notify. Uses every other module; `anyhow` lives here and
//! in `main.rs` only.
//!
//! - `build`: the `build`, `check` and `publish` commands, and the build
//!   cache.
//! - `publisher`: the writer loop of `serve`, and what it publishes to.
//! - `drop_guard`: holds back a publish that would remove most articles
//!   (`max_drop`) until the content comes back or SIGUSR1 confirms, and
//!   a start measured so against the last run's published count.
//! - `ports`: binding the listeners, and naming who holds a taken port.
//! - `lock`: the exclusive lock on `state_dir` of `serve`, `build` and
//!   `publish`.
//! - `systemd`: the inherited listener, sd_notify and the watchdog.
//! - `logging`: `tracing` set up for a terminal, journald or JSON.
//! - `brotli`: the background thread that makes brotli forms.
//! - `process`: process-wide tuning (allocator, open-file limit).

mod brotli;
mod build;
mod drop_guard;
mod guard;
mod lock;
mod logging;
mod ports;
mod process;
mod publisher;
mod systemd;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;

use crate::config::{Config, ContentMode, LogFormat};
use crate::library::Library;
use crate::parse::ParseCtx;
use crate::render::{Body, Settings};
use crate::state::State;

pub use build::{build_command, check_command, confirm_deletes_command, publish_command};
pub use drop_guard::{confirm_drop_command, PUBLISHED_FILE};
pub use lock::LOCK_FILE;
pub use logging::init_logging;
pub use process::tune_allocator;

use brotli::start_br;
use process::raise_fd_limit;
use publisher::{start_watcher, Control, Msg, Publisher};
use systemd::{listener, notify};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: some article files failed (build/check).
pub const EXIT_BAD_CONTENT: u8 = 1;
/// Exit code: the config file is missing, unreadable or invalid (BSD
/// `EX_CONFIG`, which `systemctl status` shows as `78/CONFIG`). Not 2:
/// that is a usage error on the command line (clap's code, shown as
/// `2/INVALIDARGUMENT`), so the two can be told apart.
pub const EXIT_CONFIG: u8 = 78;
/// Exit code: the content directory cannot be read.
pub const EXIT_CONTENT_DIR: u8 = 3;
/// Exit code: the listen address cannot be bound.
pub const EXIT_BIND: u8 = 4;
/// Exit code: output or state cannot be written, or another runtime failure.
pub const EXIT_RUNTIME: u8 = 5;
/// Exit code: `serve` did not start because the content it found would
/// remove too many of the articles the last run published (`max_drop`);
/// `herald confirm-drop` lets the next start go ahead.
pub const EXIT_DROP_HELD: u8 = 6;

/// Command-line settings that win over the config file (kept so that a
/// reload on SIGHUP applies them again).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--content`.
    pub content_dir: Option<PathBuf>,
    /// `--output`.
    pub output_dir: Option<PathBuf>,
    /// `--state`.
    pub state_dir: Option<PathBuf>,
    /// `serve --listen`.
    pub listen: Option<std::net::SocketAddr>,
    /// `serve --admin-listen`: an address, or `Some(None)` for "off".
    pub admin_listen: Option<Option<std::net::SocketAddr>>,
    /// The address `serve` actually listens on (the port that port 0
    /// picked, or a socket systemd passed in): the site's URL when the
    /// config sets no `base_url`.
    pub listening: Option<std::net::SocketAddr>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

impl Overrides {
    /// Applies the overrides to a loaded config.
    pub fn apply(&self, mut c: Config) -> Config {
        if let Some(v) = &self.content_dir {
            c.content_dir = v.clone();
        }
        if let Some(v) = &self.output_dir {
            c.output_dir = v.clone();
        }
        if let Some(v) = &self.state_dir {
            c.state_dir = v.clone();
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.admin_listen {
            c.admin_listen = v;
        }
        if !c.base_url_configured {
            if let Some(a) = self.listening.or(self.listen) {
                c.base_url = crate::config::base_url_for(a);
            }
        }
        if let Some(v) = self.log_format {
            c.log_format = v;
        }
        c
    }
}

/// The part of the config the renderers need, with the feed-id prefix from
/// the state file.
pub fn settings(
    c: &Config,
    state: &mut State,
    articles: &[Arc<crate::article::Article>],
) -> Settings {
    let authority = state.authority(c.id_authority.as_deref(), &c.default_authority());
    let since = state.since(|| {
        articles.iter().map(|a| a.published).min().map_or_else(
            || Utc::now().format("%Y-%m-%d").to_string(),
            |d| d.format("%Y-%m-%d").to_string(),
        )
    });
    let body = |m: ContentMode| {
        if m == ContentMode::Full {
            Body::Full
        } else {
            Body::Summary
        }
    };
    Settings {
        title: c.title.clone(),
        description: c.description.clone(),
        base_url: c.base_url.clone(),
        language: c.language.clone(),
        author: c.author.clone(),
        max_items: c.max_items,
        rss_body: body(c.content_rss),
        atom_body: body(c.content_atom),
        json_body: body(c.content_json),
        cache_max_age: c.cache_max_age,
        feed_id_prefix: format!("tag:{authority},{since}:"),
        generator: format!("Herald {}", env!("CARGO_PKG_VERSION")),
        hubs: c.websub.hub_urls(&c.base_url),
        timezone: c.timezone,
        page_size: c.page_size,
        archive_page_size: c.archive_page_size,
        archive_max_age: c.archive_max_age,
    }
}

/// Opens the library for a config: loads the state, fixes the id authority.
/// With `parse_cache`, the library keeps what it parses in
/// `state_dir/articles.cache` and takes unchanged files from there
/// (`serve`, `build`, `publish`); `check` and dry runs, which write
/// nothing, parse every file.
///
/// # Errors
/// The state file exists but cannot be read.
pub fn open_library(c: &Config, parse_cache: bool) -> anyhow::Result<Library> {
    let mut state = State::load(&c.state_dir).context("loading state")?;
    let authority = state.authority(c.id_authority.as_deref(), &c.default_authority());
    let mut lib = Library::new(c.content_dir.clone(), parse_ctx(c), state, authority);
    lib.set_follow_external_symlinks(c.follow_external_symlinks);
    lib.set_max_former_slugs(c.max_former_slugs);
    lib.set_max_asset_bytes(c.max_asset_bytes);
    if parse_cache {
        lib.set_cache(c.state_dir.join(crate::library::CACHE_FILE));
    }
    Ok(lib)
}

/// What the parsers need of the config: the time zone and the limits on
/// one article.
pub fn parse_ctx(c: &Config) -> ParseCtx {
    ParseCtx {
        tz: c.timezone,
        limits: crate::parse::Limits {
            max_file_bytes: c.max_file_bytes,
            max_front_matter_bytes: c.max_front_matter_bytes,
            max_labels: c.max_labels,
            max_nesting: c.max_nesting,
        },
    }
}

/// `herald serve`: exit code after shutdown.
pub fn serve_command(c: Config, config_path: Option<PathBuf>, overrides: Overrides) -> u8 {
    init_logging(&c);
    // Before anything is bound or written.
    if let Some(line) = c.publish_base_url_problem() {
        eprintln!("herald: {line}");
        return EXIT_CONFIG;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .thread_name("herald-main")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    let result = rt.block_on(serve(c, config_path, overrides));
    // A publish loop or first publish left stuck is not waited for.
    rt.shutdown_background();
    match result {
        Ok(()) => EXIT_OK,
        Err(Fatal(code, e)) => {
            tracing::error!("{e:#}");
            code
        }
    }
}

/// A fatal error with its exit code.
#[derive(Debug)]
pub struct Fatal(pub u8, pub anyhow::Error);

fn fatal(code: u8) -> impl FnOnce(anyhow::Error) -> Fatal {
    move |e| Fatal(code, e)
}

async fn serve(
    c: Config,
    config_path: Option<PathBuf>,
    mut overrides: Overrides,
) -> Result<(), Fatal> {
    // Signal handlers first: a `systemctl reload` right after READY=1 must
    // not meet SIGHUP's default action (terminate). SIGHUP reloads; the
    // first SIGTERM/SIGINT stops gracefully, a second one exits at once;
    // SIGUSR1 confirms a removal the empty-site guard holds back.
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(|e| Fatal(EXIT_RUNTIME, e.into()))?;
    let mut usr1 =
        signal(SignalKind::user_defined1()).map_err(|e| Fatal(EXIT_RUNTIME, e.into()))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| Fatal(EXIT_RUNTIME, e.into()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Fatal(EXIT_RUNTIME, e.into()))?;
    // Every listener before anything is written: a second Herald on a
    // port already taken (the admin one, say) ends here, leaving the
    // output and state directories as the running one has them.
    let std_listener = listener(&c)?;
    let admin_listener = admin_listener(&c)?;
    let addr = std_listener
        .local_addr()
        .map_err(|e| Fatal(EXIT_BIND, e.into()))?;
    let listener =
        tokio::net::TcpListener::from_std(std_listener).map_err(|e| Fatal(EXIT_BIND, e.into()))?;
    // Held until `serve` returns (the process's exit releases it anyway).
    let _state_lock = lock::lock_state(&c.state_dir).map_err(fatal(EXIT_RUNTIME))?;
    // Without a configured `base_url`, links point where Herald is
    // actually reachable (and stay so across reloads).
    overrides.listening = Some(addr);
    let c = overrides.apply(c);
    if !c.base_url_configured && addr.ip().is_unspecified() {
        tracing::warn!(
            "base_url is not set: links point to {} (listening on every interface); set base_url to the address readers use",
            c.base_url
        );
    }

    // First snapshot, before READY=1.
    // Watch before the first scan, so nothing written in between is missed.
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let watcher = start_watcher(&c.content_dir, &tx);
    let mut pubr = Publisher::open(c.clone()).map_err(fatal(EXIT_RUNTIME))?;
    pubr.on_damage(tx.clone());
    raise_fd_limit();
    if let Err(e) = std::fs::create_dir_all(&c.state_dir) {
        tracing::warn!(dir = %c.state_dir.display(), "cannot create the state directory: {e}");
    }
    crate::sendfile::enable(&c.state_dir);
    // Off this thread, so that a signal still stops a first publish that
    // hangs (on a stuck mount, say).
    let starting = Arc::clone(&pubr.metrics);
    let mut job = tokio::task::spawn_blocking(move || {
        let first = pubr.first_publish();
        (pubr, first)
    });
    // A start shorter than a second says nothing more; a longer one says
    // so within a second, before even a short `TimeoutStartSec` ends it.
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + std::time::Duration::from_secs(1),
        systemd::START_TICK,
    );
    let (mut pubr, first) = loop {
        tokio::select! {
            r = &mut job => break r.map_err(|e| Fatal(EXIT_RUNTIME, anyhow::anyhow!("the first publish failed: {e}")))?,
            _ = tick.tick() => systemd::starting(&starting.health),
            _ = term.recv() => return Err(stopped_during_first_publish()),
            _ = int.recv() => return Err(stopped_during_first_publish()),
        }
    };
    let syndicate = crate::syndicate::Syndicate::start(&c, Arc::clone(&pubr.metrics))
        .map_err(|e| Fatal(EXIT_RUNTIME, e.into()))?;
    let stats = open_stats(&c);
    let shared = Arc::new(crate::server::Shared {
        site: arc_swap::ArcSwap::from_pointee(first?),
        metrics: Arc::clone(&pubr.metrics),
        hub: syndicate.as_ref().and_then(|s| s.hub()),
        stats,
    });
    match &c.publish {
        Some(target) => {
            // With a bucket, WebSub waits for it: a hub that fetches a
            // feed from the CDN must get its new version.
            let hook = syndicate.map(|s| -> crate::mirror::OnSynced {
                Box::new(move |before, after, changed| s.published(before, after, changed))
            });
            let mirror = crate::mirror::Mirror::start(
                target.clone(),
                &c.state_dir,
                shared.site.load_full(),
                std::mem::take(&mut pubr.start_changed),
                Arc::clone(&pubr.metrics),
                hook,
            )
            .map_err(|e| Fatal(EXIT_RUNTIME, anyhow::anyhow!("publish: {e}")))?;
            tracing::info!(target = %target.to, "mirroring every publish to {}", target.to);
            pubr.mirror = Some(mirror);
        }
        None => {
            if let Some(s) = &syndicate {
                // Feeds that changed while Herald was not running (an
                // article added meanwhile): their hubs and subscribers
                // hear of it now, not at the next edit.
                s.published(None, &shared.site.load(), &pubr.start_changed);
            }
            pubr.syndicate = syndicate;
        }
    }
    pubr.shared = Some(Arc::clone(&shared));
    pubr.after_publish();
    // The start read every article file or the parse cache, and may have
    // rendered the whole site: memory freed since goes back to the system
    // (glibc keeps it otherwise), so what stays resident is what serving
    // holds.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    pubr.br = start_br(c.brotli_quality);
    pubr.queue_br(&shared.site.load(), None);

    let limits = crate::server::Limits {
        max_connections: c.max_connections,
        max_connections_per_ip: c.max_connections_per_ip,
        header_read_timeout: c.header_read_timeout,
        idle_timeout: c.idle_timeout,
        max_header_bytes: c.max_header_bytes,
        shutdown_grace: c.shutdown_grace,
        workers: c.http_workers,
        trusted_proxies: crate::server::TrustedProxies::new(&c.trusted_proxies),
    };
    let admin_listener = admin_listener
        .map(tokio::net::TcpListener::from_std)
        .transpose()
        .map_err(|e| Fatal(EXIT_BIND, e.into()))?;
    if let Some(a) = admin_listener.as_ref().and_then(|l| l.local_addr().ok()) {
        tracing::info!(address = %a, "admin interface on http://{a}/ (/metrics, /stats)");
    }
    tracing::info!(
        address = %addr,
        content = %c.content_dir.display(),
        output = %c.output_dir.display(),
        state = %c.state_dir.display(),
        "listening on http://{addr}/"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::clone(&pubr.metrics);
    // Told when the loop has ended, however it ended.
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let loop_thread = {
        let tx = tx.clone();
        let metrics = Arc::clone(&metrics);
        std::thread::Builder::new()
            .name("herald-publish".into())
            .spawn(move || {
                // Caught only to say so: /healthz and the watchdog then
                // report the loop dead, and systemd restarts Herald.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pubr.run(watcher, rx, tx, config_path, overrides)
                }));
                let health = &metrics.health;
                match &r {
                    Ok(Ok(())) => health.stopped(),
                    Ok(Err(e)) => health.died(format!("the publish loop failed: {e:#}")),
                    Err(p) => health.died(format!(
                        "the publish loop panicked: {}",
                        crate::library::panic_message(p.as_ref())
                    )),
                }
                let _ = done_tx.send(());
                r
            })
            .map_err(|e| Fatal(EXIT_RUNTIME, e.into()))?
    };
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!(
            "serving {} on {addr}",
            build::count(shared.site.load().articles, "article", "articles")
        )),
    ]);
    tokio::spawn(systemd::watch_health(Arc::clone(&metrics)));
    let admin = admin_listener.map(|l| {
        let mut stop_rx = stop_rx.clone();
        let shutdown = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        let limits = crate::admin::Limits {
            max_connections: c.admin_max_connections,
            header_read_timeout: c.header_read_timeout,
            connection_lifetime: c.idle_timeout,
            max_header_bytes: c.max_header_bytes,
        };
        tokio::spawn(crate::admin::run(l, Arc::clone(&shared), limits, shutdown))
    });
    let upkeep = tokio::spawn(crate::admin::upkeep(
        Arc::clone(&shared),
        c.stats.save_interval,
    ));

    let server = {
        let mut stop_rx = stop_rx.clone();
        let shutdown = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        tokio::spawn(crate::server::run(
            listener,
            Arc::clone(&shared),
            limits,
            shutdown,
        ))
    };

    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = tx.send(Msg::Control(Control::Reload));
            }
            _ = usr1.recv() => {
                let _ = tx.send(Msg::Control(Control::ConfirmDrop));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!(
        "shutting down: finishing in-flight responses (up to {:?})",
        c.shutdown_grace
    );
    notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    let _ = tx.send(Msg::Control(Control::Shutdown));
    tokio::select! {
        r = server => {
            if let Err(e) = r {
                return Err(Fatal(EXIT_RUNTIME, anyhow::anyhow!("server task failed: {e}")));
            }
        }
        _ = term.recv() => { tracing::warn!("second signal: exiting now"); std::process::exit(i32::from(EXIT_RUNTIME)); }
        _ = int.recv() => { tracing::warn!("second signal: exiting now"); std::process::exit(i32::from(EXIT_RUNTIME)); }
    }
    upkeep.abort();
    if let Some(a) = admin {
        let _ = a.await;
    }
    if let Some(stats) = shared.stats.clone() {
        crate::admin::take_websub(&shared);
        match tokio::task::spawn_blocking(move || stats.save()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("stats: cannot save the readership figures: {e}"),
            Err(e) => tracing::error!("stats: saving failed: {e}"),
        }
    }
    // The loop saves the state and ends. It is waited for only while it
    // could still be making progress: a loop stuck past
    // `publish_stall_secs` (blocked on a hung mount, say) would hold the
    // process forever.
    loop {
        tokio::select! {
            _ = &mut done_rx => break,
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                let v = metrics.health.check();
                if matches!(v, crate::health::Verdict::Stuck { .. }) {
                    return Err(Fatal(
                        EXIT_RUNTIME,
                        anyhow::anyhow!("the publish loop did not stop ({v}); exiting without it"),
                    ));
                }
            }
            _ = term.recv() => { tracing::warn!("second signal: exiting now"); std::process::exit(i32::from(EXIT_RUNTIME)); }
            _ = int.recv() => { tracing::warn!("second signal: exiting now"); std::process::exit(i32::from(EXIT_RUNTIME)); }
        }
    }
    // It has ended (it said so), so this does not block.
    match loop_thread.join() {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(Fatal(EXIT_RUNTIME, e)),
        Ok(Err(p)) => {
            return Err(Fatal(
                EXIT_RUNTIME,
                anyhow::anyhow!(
                    "the publish loop panicked: {}",
                    crate::library::panic_message(p.as_ref())
                ),
            ))
        }
        Err(_) => {
            return Err(Fatal(
                EXIT_RUNTIME,
                anyhow::anyhow!("the publish loop panicked"),
            ))
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The admin listener, bound to `admin_listen` (also under socket
/// activation: systemd hands over the public socket only), or `None`
/// when it is "off".
fn admin_listener(c: &Config) -> Result<Option<std::net::TcpListener>, Fatal> {
    c.admin_listen
        .map(|addr| ports::bind(addr, "admin_listen", "--admin-listen"))
        .transpose()
}

/// The readership counters, read from `state_dir` (a damaged file is
/// logged, and counting starts afresh), or `None` when counting is off.
fn open_stats(c: &Config) -> Option<Arc<crate::stats::Stats>> {
    if !c.stats.enabled {
        return None;
    }
    let limits = crate::stats::Limits {
        days: c.stats.days,
        max_aggregators_per_feed: c.stats.max_aggregators_per_feed,
        max_reported_subscribers: c.stats.max_reported_subscribers,
    };
    let (stats, err) = crate::stats::Stats::open(&c.state_dir, limits, crate::admin::unix_now());
    if let Some(e) = err {
        tracing::error!("stats: {e}; counting starts afresh");
    }
    Some(Arc::new(stats))
}

fn stopped_during_first_publish() -> Fatal {
    Fatal(
        EXIT_RUNTIME,
        anyhow::anyhow!("stopped by a signal before the first publish was done"),
    )
}
