//! `tracing` set up for where the log goes: a terminal, journald or a
//! log shipper (JSON).

use crate::config::{Config, LogFormat};

/// Sets up `tracing`: human format on a terminal; under journald
/// (`JOURNAL_STREAM` set) no timestamps and `<N>` syslog priority
/// prefixes; JSON with `log_format = "json"`. `RUST_LOG` wins over
/// `log_level`. The S3 client's own lines are kept to warnings and
/// errors unless the filter names it ([`QUIET`]).
pub fn init_logging(c: &Config) {
    use tracing_subscriber::EnvFilter;
    let (mut filter, text) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, std::env::var("RUST_LOG").unwrap_or_default()),
        Err(_) => (EnvFilter::new(&c.log_level), c.log_level.clone()),
    };
    for (target, directive) in QUIET {
        if !text.contains(target) {
            filter = filter.add_directive(directive.parse().expect("a valid directive"));
        }
    }
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

/// Libraries whose lines are capped unless the filter names them. The S3
/// client (`object_store`) logs every retry of every request at `info`
/// ("Encountered transport error … backing off"): hundreds of lines a
/// minute while the bucket is down, where the mirror says it once per
/// episode and `/healthz` carries the rest.
const QUIET: [(&str, &str); 1] = [("object_store", "object_store=warn")];

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
