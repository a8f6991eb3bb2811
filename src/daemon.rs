//! Wiring: the `build`, `check` and `serve` commands. `serve` does the
//! first scan, publishes, starts the server and then runs the one writer
//! loop: { batch of changes → library → render → publish }, plus the timer
//! for future-dated articles, periodic verification, signals and sd_notify.
//! Uses every other module; `anyhow` lives here and in `main.rs` only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use chrono::Utc;

use crate::config::{Config, ContentMode, LogFormat};
use crate::library::{Library, View};
use crate::parse::ParseCtx;
use crate::render::{Body, Settings};
use crate::site::{self, SiteBuilder};
use crate::state::State;

mod guard;

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
        timezone: c.timezone,
        page_size: c.page_size,
    }
}

/// Opens the library for a config: loads the state, fixes the id authority.
///
/// # Errors
/// The state file exists but cannot be read.
pub fn open_library(c: &Config) -> anyhow::Result<Library> {
    let mut state = State::load(&c.state_dir).context("loading state")?;
    let authority = state.authority(c.id_authority.as_deref(), &c.default_authority());
    let mut lib = Library::new(c.content_dir.clone(), parse_ctx(c), state, authority);
    lib.set_follow_external_symlinks(c.follow_external_symlinks);
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

fn report(view: &View) {
    for e in &view.rejected {
        tracing::error!("{e}");
    }
    for w in &view.warnings {
        tracing::warn!("{w}");
    }
}

/// `herald check`: parse everything, print every problem, write nothing.
pub fn check_command(c: &Config) -> u8 {
    init_logging(c);
    let mut lib = match open_library(c) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("herald: {e:#}");
            return EXIT_RUNTIME;
        }
    };
    if let Err(e) = lib.scan() {
        eprintln!("herald: {e}");
        return EXIT_CONTENT_DIR;
    }
    let view = lib.view(Utc::now());
    for e in &view.rejected {
        println!("error: {e}");
    }
    for w in &view.warnings {
        println!("warning: {w}");
    }
    println!(
        "{} articles ok, {} file(s) rejected, {} warning(s)",
        view.articles.len(),
        view.rejected.len(),
        view.warnings.len()
    );
    if view.rejected.is_empty() {
        EXIT_OK
    } else {
        EXIT_BAD_CONTENT
    }
}

/// `herald build`: publish once into the output directory.
pub fn build_command(c: &Config) -> u8 {
    init_logging(c);
    match build_once(c) {
        Ok(0) => EXIT_OK,
        Ok(_) => EXIT_BAD_CONTENT,
        Err((code, e)) => {
            eprintln!("herald: {e:#}");
            code
        }
    }
}

/// Hash of everything in the config that shapes the output, and of
/// Herald's version (a new version may render differently).
fn settings_fingerprint(c: &Config) -> String {
    let text = format!("{} {c:?}", env!("CARGO_PKG_VERSION"));
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// One `herald build`; returns the number of rejected files.
fn build_once(c: &Config) -> Result<usize, (u8, anyhow::Error)> {
    let started = Instant::now();
    let mut lib = open_library(c).map_err(|e| (EXIT_RUNTIME, e))?;
    // Fingerprint before reading: a file written during the build makes
    // the next build do the work again.
    let content = crate::library::tree_fingerprint(&c.content_dir, c.follow_external_symlinks)
        .map_err(|e| (EXIT_CONTENT_DIR, e.into()))?;
    let content = format!("{content:032x}");
    let settings_fp = settings_fingerprint(c);
    if let Some(last) = lib.state_mut().last_build() {
        let due = last.next_release.is_some_and(|t| t <= Utc::now());
        if last.content == content
            && last.settings == settings_fp
            && !due
            && last.output == format!("{:032x}", site::output_fingerprint(&c.output_dir))
        {
            for w in &last.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(
                articles = last.articles,
                rejected = 0,
                written = 0,
                removed = 0,
                output = %c.output_dir.display(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "build finished: content, settings and output unchanged since the last build"
            );
            return Ok(0);
        }
    }
    lib.scan().map_err(|e| (EXIT_CONTENT_DIR, e.into()))?;
    // Every document goes to disk as it is rendered (article pages first)
    // and is dropped; `write_to` then only removes what is gone.
    let mut builder = SiteBuilder::streaming_to(&c.output_dir);
    let (view, _, (mut site, _)) = guard::render_guarded(
        &mut lib,
        Utc::now(),
        |lib, v| settings(c, lib.state_mut(), &v.articles),
        |v, s, fresh| {
            if fresh {
                builder = SiteBuilder::streaming_to(&c.output_dir);
            }
            builder.build(&v.articles, v.rejected.len(), s, SystemTime::now())
        },
    );
    report(&view);
    let mut written = site.take_stream_report();
    let rest = site::write_to(&site, &c.output_dir, None);
    written.written += rest.written;
    written.removed += rest.removed;
    written.errors.extend(rest.errors);
    if let Some(e) = written.errors.first() {
        return Err((
            EXIT_RUNTIME,
            anyhow::anyhow!(
                "writing {}: {e} ({} files failed)",
                c.output_dir.display(),
                written.errors.len()
            ),
        ));
    }
    // Only a build without rejected files may be skipped next time: those
    // must be reported (and fail the build) again.
    let record = view.rejected.is_empty().then(|| crate::state::BuildRecord {
        content,
        settings: settings_fp,
        output: format!("{:032x}", site::output_fingerprint(&c.output_dir)),
        articles: view.articles.len(),
        next_release: view.next_release.map(|t| t.fixed_offset()),
        warnings: view.warnings.clone(),
    });
    lib.state_mut().set_last_build(record);
    lib.state_mut()
        .save(&c.state_dir)
        .map_err(|e| (EXIT_RUNTIME, e.into()))?;
    tracing::info!(
        articles = view.articles.len(),
        rejected = view.rejected.len(),
        written = written.written,
        removed = written.removed,
        output = %c.output_dir.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "build finished"
    );
    Ok(view.rejected.len())
}

/// Sets up `tracing`: human format on a terminal; under journald
/// (`JOURNAL_STREAM` set) no timestamps and `<N>` syslog priority
/// prefixes; JSON with `log_format = "json"`. `RUST_LOG` wins over
/// `log_level`.
pub fn init_logging(c: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&c.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match c.log_format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Human if std::env::var_os("JOURNAL_STREAM").is_some() => {
            builder.event_format(JournaldFormat).try_init()
        }
        LogFormat::Human => builder.with_target(false).try_init(),
    };
    let mut level = tracing_log::AsLog::as_log(&tracing::level_filters::LevelFilter::current());
    level = level.max(log::LevelFilter::Warn);
    if log::set_boxed_logger(Box::new(LogBridge(tracing_log::LogTracer::new()))).is_ok() {
        log::set_max_level(level);
    }
}

/// Carries the records of libraries that log through the `log` crate into
/// Herald's log, except those of the HTML parser behind the sanitiser:
/// it writes one line per misplaced node without naming the file, so its
/// warnings are counted instead and become one warning of the article
/// ([`crate::parse::sanitiser_warned`]).
struct LogBridge(tracing_log::LogTracer);

impl log::Log for LogBridge {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target().starts_with("html5ever") || self.0.enabled(m)
    }

    fn log(&self, r: &log::Record<'_>) {
        if r.target().starts_with("html5ever") {
            if r.level() <= log::Level::Warn {
                crate::parse::sanitiser_warned();
            }
        } else {
            self.0.log(r);
        }
    }

    fn flush(&self) {}
}

/// Log lines for journald: `<priority>message key=value…`, no timestamp
/// (journald adds its own), so levels map to syslog priorities.
struct JournaldFormat;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JournaldFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let prio = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(w, "<{prio}>")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// What the loop thread is told from outside the file system.
#[derive(Debug)]
enum Control {
    Reload,
    Shutdown,
}

/// `herald serve`: exit code after shutdown.
pub fn serve_command(c: Config, config_path: Option<PathBuf>, overrides: Overrides) -> u8 {
    init_logging(&c);
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
    match rt.block_on(serve(c, config_path, overrides)) {
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

/// The listening socket: inherited from systemd (`LISTEN_FDS`, fd 3) when
/// present, else bound to `listen`.
fn listener(c: &Config) -> Result<std::net::TcpListener, Fatal> {
    if let Ok(mut fds) = sd_notify::listen_fds() {
        if let Some(fd) = fds.next() {
            use std::os::fd::FromRawFd;
            // SAFETY: systemd passed this fd to this process (LISTEN_PID
            // checked by listen_fds) and nothing else owns it.
            let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            l.set_nonblocking(true).map_err(|e| {
                Fatal(
                    EXIT_BIND,
                    anyhow::anyhow!("socket from systemd (fd {fd}): {e}"),
                )
            })?;
            return Ok(l);
        }
    }
    let l = std::net::TcpListener::bind(c.listen).map_err(|e| {
        Fatal(
            EXIT_BIND,
            anyhow::anyhow!("cannot listen on {}: {e}", c.listen),
        )
    })?;
    l.set_nonblocking(true)
        .map_err(|e| Fatal(EXIT_BIND, e.into()))?;
    Ok(l)
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::warn!("sd_notify failed: {e}");
        }
    }
}

async fn serve(c: Config, config_path: Option<PathBuf>, overrides: Overrides) -> Result<(), Fatal> {
    // Signal handlers first: a `systemctl reload` right after READY=1 must
    // not meet SIGHUP's default action (terminate). SIGHUP reloads; the
    // first SIGTERM/SIGINT stops gracefully, a second one exits at once.
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(|e| Fatal(EXIT_RUNTIME, e.into()))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| Fatal(EXIT_RUNTIME, e.into()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Fatal(EXIT_RUNTIME, e.into()))?;
    let std_listener = listener(&c)?;
    let addr = std_listener
        .local_addr()
        .map_err(|e| Fatal(EXIT_BIND, e.into()))?;
    let listener =
        tokio::net::TcpListener::from_std(std_listener).map_err(|e| Fatal(EXIT_BIND, e.into()))?;

    // First snapshot, before READY=1.
    // Watch before the first scan, so nothing written in between is missed.
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let watcher = start_watcher(&c.content_dir, &tx);
    let mut pubr = Publisher::open(c.clone()).map_err(fatal(EXIT_RUNTIME))?;
    raise_fd_limit();
    if let Err(e) = std::fs::create_dir_all(&c.state_dir) {
        tracing::warn!(dir = %c.state_dir.display(), "cannot create the state directory: {e}");
    }
    crate::sendfile::enable(&c.state_dir);
    let first = tokio::task::block_in_place(|| pubr.first_publish())?;
    let shared = Arc::new(crate::server::Shared::new(first));
    pubr.shared = Some(Arc::clone(&shared));
    pubr.after_publish();
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
    };
    tracing::info!(
        address = %addr,
        content = %c.content_dir.display(),
        output = %c.output_dir.display(),
        state = %c.state_dir.display(),
        "listening on http://{addr}/"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loop_thread = {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("herald-publish".into())
            .spawn(move || pubr.run(watcher, rx, tx, config_path, overrides))
            .map_err(|e| Fatal(EXIT_RUNTIME, e.into()))?
    };
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!(
            "serving {} articles on {addr}",
            shared.site.load().articles
        )),
    ]);

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
    let joined = tokio::task::spawn_blocking(move || loop_thread.join()).await;
    match joined {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(Fatal(EXIT_RUNTIME, e)),
        _ => {
            return Err(Fatal(
                EXIT_RUNTIME,
                anyhow::anyhow!("the publish loop panicked"),
            ))
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft limit on open files to the hard limit (as Go's runtime
/// does): each connection and each file-backed body holds a descriptor,
/// and the usual soft limit of 1024 is below `max_connections`' default.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::debug!("cannot raise the open-file limit: {e}");
        }
    }
}

/// Starts the watcher for `root`, queueing its events for the loop. On
/// failure the loop still runs; the verification pass finds changes.
fn start_watcher(
    root: &std::path::Path,
    tx: &std::sync::mpsc::Sender<Msg>,
) -> Option<crate::watch::Watcher> {
    let tx = tx.clone();
    match crate::watch::Watcher::new(root, move |c| {
        let _ = tx.send(Msg::Fs(c, Instant::now()));
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(path = %root.display(), "cannot watch content; relying on the verification pass: {e}");
            None
        }
    }
}

/// Half of `WATCHDOG_USEC` when systemd's watchdog is on for this process
/// (sd_watchdog_enabled(3): `WATCHDOG_PID`, when set, must be our pid).
fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| std::time::Duration::from_micros(usec / 2))
}

/// Messages to the publish loop.
#[derive(Debug)]
enum Msg {
    /// A file event and when the watcher saw it: the quiet period is
    /// counted from then, not from when the loop got to it (after a
    /// publish, say), so work done meanwhile is not added to the wait.
    Fs(crate::watch::Change, Instant),
    Control(Control),
}

/// The one writer: owns the library, the site builder and the watcher.
struct Publisher {
    config: Config,
    lib: Library,
    builder: SiteBuilder,
    shared: Option<Arc<crate::server::Shared>>,
    next_release: Option<chrono::DateTime<Utc>>,
    reported: std::collections::HashSet<String>,
    write_failing: Option<String>,
    last_rebuild: Option<(SystemTime, u128)>,
    /// Queue of the background brotli compressor (`None`: no brotli).
    br: Option<BrQueue>,
}

/// Gives large freed blocks back to the system at once. glibc's malloc
/// serves blocks of 128 KiB and more with their own `mmap` — until the first
/// such block is freed: it then raises that threshold (up to 32 MiB) and
/// the trim threshold with it, so later big buffers come from the heap and
/// stay resident after they are freed. In a thread's arena the top of the
/// heap is never trimmed at all. The brotli encoder's ~12 MB of working
/// memory stayed in the daemon's RSS that way. Fixing the threshold at
/// glibc's default turns that adjustment off: measured at 10,000 articles,
/// `herald serve` 78 MB after an edit instead of 82 (94 with brotli), and
/// `herald build` 68 MB peak instead of 74, at the same speed. Call first
/// thing in `main`, before any thread is started.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Documents handed to the brotli thread, held weakly: one replaced by a
/// later publish before its turn is skipped.
type BrQueue = std::sync::mpsc::Sender<Vec<std::sync::Weak<crate::site::Asset>>>;

/// Starts the thread that makes brotli forms after publication, one
/// document at a time, at the lowest CPU priority so it never competes
/// with serving or rebuilding.
fn start_br(quality: u32) -> Option<BrQueue> {
    if quality == 0 {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::channel::<Vec<std::sync::Weak<crate::site::Asset>>>();
    let spawned = std::thread::Builder::new()
        .name("herald-br".into())
        .spawn(move || {
            // Linux keeps a nice value per thread: this one only.
            if let Err(e) = rustix::process::setpriority_process(None, 19) {
                tracing::debug!("brotli thread keeps its priority: {e}");
            }
            for batch in rx {
                let started = Instant::now();
                let made = batch
                    .iter()
                    .filter_map(std::sync::Weak::upgrade)
                    .filter(|a| a.make_br(quality))
                    .count();
                tracing::debug!(
                    made,
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "brotli forms made"
                );
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!("cannot start the brotli thread ({e}); serving gzip only");
            None
        }
    }
}

impl Publisher {
    fn open(config: Config) -> anyhow::Result<Publisher> {
        let lib = open_library(&config)?;
        let builder = SiteBuilder::with_floors_from(&config.output_dir);
        Ok(Publisher {
            config,
            lib,
            builder,
            shared: None,
            next_release: None,
            reported: Default::default(),
            write_failing: None,
            last_rebuild: None,
            br: None,
        })
    }

    fn first_publish(&mut self) -> Result<crate::site::Site, Fatal> {
        self.lib
            .scan()
            .map_err(|e| Fatal(EXIT_CONTENT_DIR, e.into()))?;
        let (site, _) = self.render();
        self.write(&site, None);
        Ok(site)
    }

    /// Renders the current library into a snapshot (not yet published).
    fn render(&mut self) -> (crate::site::Site, Vec<String>) {
        let started = Instant::now();
        let config = &self.config;
        let builder = &mut self.builder;
        let (view, _, (site, changed)) = guard::render_guarded(
            &mut self.lib,
            Utc::now(),
            |lib, v| settings(config, lib.state_mut(), &v.articles),
            |v, s, fresh| {
                if fresh {
                    *builder = SiteBuilder::with_floors_from(&config.output_dir);
                }
                builder.build(&v.articles, v.rejected.len(), s, SystemTime::now())
            },
        );
        for e in &view.rejected {
            let line = e.to_string();
            if !self.reported.contains(&line) {
                tracing::error!("{line}");
            }
        }
        // Warnings too, once each while they last, as `build` logs them.
        for w in &view.warnings {
            if !self.reported.contains(w) {
                tracing::warn!("{w}");
            }
        }
        self.reported = view
            .rejected
            .iter()
            .map(ToString::to_string)
            .chain(view.warnings.iter().cloned())
            .collect();
        self.next_release = view.next_release;
        self.last_rebuild = Some((SystemTime::now(), started.elapsed().as_micros()));
        (site, changed)
    }

    /// Mirrors to disk; failures are logged once until they change or heal.
    fn write(&mut self, site: &crate::site::Site, only: Option<&[String]>) {
        let report = site::write_to(site, &self.config.output_dir, only);
        match report.errors.first() {
            Some(e) => {
                // Logged when the failure starts or changes kind, not on
                // every publish while the disk stays full.
                let key = format!("output:{:?}", e.error.kind());
                if self.write_failing.as_deref() != Some(&key) {
                    tracing::error!(
                        "cannot write {}: {e} ({} files failed); serving continues from memory",
                        self.config.output_dir.display(),
                        report.errors.len()
                    );
                }
                self.write_failing = Some(key);
            }
            None => {
                if self
                    .write_failing
                    .as_deref()
                    .is_some_and(|k| k.starts_with("output:"))
                {
                    self.write_failing = None;
                    tracing::info!(output = %self.config.output_dir.display(), "writing the output directory works again");
                }
            }
        }
        self.save_state();
    }

    fn save_state(&mut self) {
        if let Err(e) = self.lib.state_mut().save(&self.config.state_dir) {
            let key = format!("state:{e}");
            if self.write_failing.as_deref() != Some(&key) {
                tracing::error!("cannot save state: {e}");
                self.write_failing = Some(key);
            }
        }
    }

    /// Hands the new documents of `site` (every one when `routes` is
    /// `None`) to the brotli thread.
    fn queue_br(&self, site: &crate::site::Site, routes: Option<&[String]>) {
        if let Some(tx) = &self.br {
            let wanting = site.wanting_br(routes);
            if !wanting.is_empty() {
                let _ = tx.send(wanting);
            }
        }
    }

    fn after_publish(&self) {
        if let (Some(shared), Some((_, micros))) = (&self.shared, self.last_rebuild) {
            let site = shared.site.load();
            shared
                .metrics
                .rebuilt(micros as u64, site.articles, site.rejected);
        }
    }

    /// Re-renders and, if anything changed, swaps the snapshot and writes
    /// the changed files.
    fn republish(&mut self, reason: &str) {
        let started = Instant::now();
        let (site, changed) = self.render();
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let current = shared.site.load();
        if changed.is_empty()
            && site.articles == current.articles
            && site.rejected == current.rejected
            && site.cache_control == current.cache_control
        {
            tracing::debug!(reason, "nothing to publish");
            return;
        }
        drop(current);
        let site = Arc::new(site);
        shared.site.store(Arc::clone(&site));
        let elapsed = started.elapsed();
        self.queue_br(&site, Some(&changed));
        self.after_publish();
        tracing::info!(
            reason,
            articles = site.articles,
            rejected = site.rejected,
            changed = changed.len(),
            ms = elapsed.as_secs_f64() * 1000.0,
            "published"
        );
        // New and changed files first, then the gone ones: a reader of
        // the directory never finds a feed linking to a removed page.
        if !changed.is_empty() {
            self.write(&site, Some(&changed));
        } else {
            self.save_state();
        }
        let removed = self.builder.removed().to_vec();
        if !removed.is_empty() {
            site::remove_routes(&self.config.output_dir, &removed);
        }
        notify(&[sd_notify::NotifyState::Status(&format!(
            "{} articles, {} rejected; last rebuild {:.1} ms ({reason})",
            site.articles,
            site.rejected,
            elapsed.as_secs_f64() * 1000.0
        ))]);
    }

    fn run(
        mut self,
        mut watcher: Option<crate::watch::Watcher>,
        rx: std::sync::mpsc::Receiver<Msg>,
        tx: std::sync::mpsc::Sender<Msg>,
        config_path: Option<PathBuf>,
        overrides: Overrides,
    ) -> anyhow::Result<()> {
        use crate::watch::Pending;
        use std::sync::mpsc::RecvTimeoutError;
        use std::time::Duration;

        let mut pending = Pending::default();
        let mut verify_at = Instant::now() + self.config.verify_interval;
        let watchdog = watchdog_interval();
        let mut ping_at = Instant::now();
        let mut root_missing = false;

        loop {
            let now = Instant::now();
            let mut deadline = verify_at;
            if let Some(d) = pending.deadline(self.config.debounce, self.config.settle_max) {
                deadline = deadline.min(d);
            }
            if let Some(when) = self.next_release {
                let wait = (when - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                deadline = deadline.min(now + wait);
            }
            if watchdog.is_some() {
                deadline = deadline.min(ping_at);
            }
            let msg = rx.recv_timeout(deadline.saturating_duration_since(now));
            let mut control = None;
            match msg {
                Ok(Msg::Fs(c, at)) => pending.add(c, at),
                Ok(Msg::Control(c)) => control = Some(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Drain whatever else is queued, so a burst is one batch.
            while control.is_none() {
                match rx.try_recv() {
                    Ok(Msg::Fs(c, at)) => pending.add(c, at),
                    Ok(Msg::Control(c)) => control = Some(c),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if let Some(w) = watchdog {
                if now >= ping_at {
                    notify(&[sd_notify::NotifyState::Watchdog]);
                    ping_at = now + w;
                }
            }
            match control {
                Some(Control::Shutdown) => break,
                Some(Control::Reload) => {
                    notify(&[
                        sd_notify::NotifyState::Reloading,
                        sd_notify::NotifyState::monotonic_usec_now()
                            .unwrap_or(sd_notify::NotifyState::Custom("MONOTONIC_USEC=0")),
                    ]);
                    let root_before = self.config.content_dir.clone();
                    self.reload(config_path.as_deref(), &overrides);
                    if self.config.content_dir != root_before {
                        watcher = start_watcher(&self.config.content_dir, &tx);
                        pending = Pending::default();
                    }
                    self.rescan("reload");
                    notify(&[sd_notify::NotifyState::Ready]);
                    continue;
                }
                None => {}
            }

            let (batch, rescan) =
                pending.take_ready(now, self.config.debounce, self.config.settle_max);
            let mut changed = false;
            let mut reason = "change";
            if let Some(why) = rescan {
                tracing::warn!("{why}: rescanning the content directory");
                changed |= self.scan_or_keep(&mut root_missing);
                reason = "rescan";
            } else if !batch.is_empty() {
                let root_hit = watcher
                    .as_ref()
                    .is_some_and(|w| batch.iter().any(|p| p == w.root()));
                if root_hit {
                    // The content directory itself was removed or created.
                    if let Some(w) = watcher.as_mut() {
                        w.root_lost();
                        if w.ensure_root() {
                            tracing::info!("content directory is back; watching it again");
                        }
                    }
                    changed |= self.scan_or_keep(&mut root_missing);
                } else {
                    // Events name paths under the watched (canonical) root;
                    // the library and its messages use the configured one.
                    let batch: Vec<PathBuf> = match watcher.as_ref() {
                        Some(w) => batch
                            .into_iter()
                            .map(|p| match p.strip_prefix(w.root()) {
                                Ok(rel) => self.lib.root().join(rel),
                                Err(_) => p,
                            })
                            .collect(),
                        None => batch,
                    };
                    match self.lib.apply(&batch) {
                        Ok(c) => changed |= c,
                        Err(_) => changed |= self.scan_or_keep(&mut root_missing),
                    }
                }
            }
            if Instant::now() >= verify_at {
                verify_at = Instant::now() + self.config.verify_interval;
                if let Some(w) = watcher.as_mut() {
                    if w.ensure_root() {
                        tracing::info!("content directory watch restored");
                    }
                }
                if let Some(shared) = &self.shared {
                    shared
                        .metrics
                        .rescans
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if self.scan_or_keep(&mut root_missing) {
                    tracing::info!("verification pass found changes the watcher missed");
                    changed = true;
                    reason = "verification";
                }
            }
            let released = self.next_release.is_some_and(|t| t <= Utc::now());
            if changed || released {
                self.republish(if released && !changed {
                    "scheduled article"
                } else {
                    reason
                });
            }
        }
        drop(watcher);
        self.lib
            .state_mut()
            .save(&self.config.state_dir)
            .context("saving state at shutdown")?;
        Ok(())
    }

    /// Full scan; a missing root keeps the last snapshot and is logged once.
    fn scan_or_keep(&mut self, root_missing: &mut bool) -> bool {
        match self.lib.scan() {
            Ok(c) => {
                if std::mem::take(root_missing) {
                    tracing::info!(path = %self.config.content_dir.display(), "content directory is readable again");
                }
                c
            }
            Err(e) => {
                if !*root_missing {
                    tracing::error!("{e}; keeping the last published feeds");
                }
                *root_missing = true;
                false
            }
        }
    }

    fn rescan(&mut self, reason: &str) {
        let mut missing = false;
        self.scan_or_keep(&mut missing);
        self.republish(reason);
    }

    /// SIGHUP: a valid new config takes effect; an invalid one is logged
    /// and the running one kept.
    fn reload(&mut self, path: Option<&std::path::Path>, overrides: &Overrides) {
        let new = match Config::load(path) {
            Ok(c) => overrides.apply(c),
            Err(e) => {
                tracing::error!("reload failed, keeping the running configuration: {e}");
                return;
            }
        };
        for key in self.config.restart_needed(&new) {
            tracing::warn!("config `{key}` changed: takes effect after a restart");
        }
        if new.content_dir != self.config.content_dir || new.state_dir != self.config.state_dir {
            match open_library(&new) {
                Ok(lib) => self.lib = lib,
                Err(e) => {
                    tracing::error!("reload failed, keeping the running configuration: {e:#}");
                    return;
                }
            }
        } else {
            let authority = self
                .lib
                .state_mut()
                .authority(new.id_authority.as_deref(), &new.default_authority());
            self.lib.set_ctx(parse_ctx(&new), authority);
            self.lib
                .set_follow_external_symlinks(new.follow_external_symlinks);
        }
        tracing::info!(config = %path.map_or_else(|| "(defaults)".into(), |p| p.display().to_string()), "configuration reloaded");
        self.config = new;
    }
}
