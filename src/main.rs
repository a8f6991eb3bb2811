//! The `herald` command: thin glue over the library crate. Errors become
//! one line on stderr (the whole cause chain) and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::config::{Config, LogFormat};
use herald::daemon;

/// Herald publishes a folder of articles as RSS 2.0, Atom 1.0 and JSON Feed.
#[derive(Parser, Debug)]
#[command(name = "herald", version, about, long_about = None)]
struct Cli {
    /// Config file (TOML). Without it, built-in defaults apply.
    #[arg(long, short = 'c', global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// Content directory (overrides `content_dir`).
    #[arg(long, global = true)]
    content: Option<PathBuf>,
    /// Output directory (overrides `output_dir`).
    #[arg(long, global = true)]
    output: Option<PathBuf>,
    /// State directory (overrides `state_dir`).
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    /// Log format (overrides `log_format`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Watch the content directory and serve every feed over HTTP.
    Serve {
        /// Address to listen on (overrides `listen`); port 0 picks a free port.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Address of the admin listener (overrides `admin_listen`): an
        /// address (port 0 picks a free port), or `off`.
        #[arg(long, value_name = "ADDRESS|off", value_parser = admin_address)]
        admin_listen: Option<AdminListen>,
    },
    /// Build every feed and page once into the output directory.
    Build,
    /// Parse everything and report every problem; writes nothing.
    Check,
    /// Mirror the current content once to the `[publish] to` bucket,
    /// printing what is uploaded and deleted.
    Publish {
        /// Print what would be uploaded and deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The site really shrank: the deletions `max_deletes` held back, and
    /// no others, are made by the next pass to the bucket that would make
    /// only those (a running `serve`'s within a second, or the next
    /// `publish`), which takes the bucket's new size as the measure from
    /// now on.
    ConfirmDeletes,
    /// The content really shrank: the next `serve` publishes what the
    /// content directory holds, though it removes more than `max_drop`
    /// of the articles the last run published.
    ConfirmDrop,
}

/// `--admin-listen`: an address, or `None` for "off".
#[derive(Debug, Clone, Copy)]
struct AdminListen(Option<std::net::SocketAddr>);

fn admin_address(s: &str) -> Result<AdminListen, String> {
    if s == "off" {
        return Ok(AdminListen(None));
    }
    s.parse()
        .map(|a| AdminListen(Some(a)))
        .map_err(|_| format!("{s:?} is not an address like \"127.0.0.1:9190\", or \"off\""))
}

fn main() -> ExitCode {
    daemon::tune_allocator();
    let cli = Cli::parse();
    let overrides = daemon::Overrides {
        content_dir: cli.content.clone(),
        output_dir: cli.output.clone(),
        state_dir: cli.state.clone(),
        listen: match &cli.command {
            Command::Serve { listen, .. } => *listen,
            _ => None,
        },
        admin_listen: match &cli.command {
            Command::Serve { admin_listen, .. } => admin_listen.map(|a| a.0),
            _ => None,
        },
        log_format: cli.log_format,
        listening: None,
    };
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => overrides.apply(c),
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(daemon::EXIT_CONFIG);
        }
    };
    daemon::init_logging(&config);
    // A panic is a bug. Where one is caught (one article's parsing or
    // rendering) Herald goes on; either way it is logged like any other
    // error, not printed around the log.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("internal error (a bug in Herald; please report it): {info}");
    }));
    let code = match cli.command {
        Command::Build => daemon::build_command(&config),
        Command::Check => daemon::check_command(&config),
        Command::Publish { dry_run } => daemon::publish_command(&config, dry_run),
        Command::ConfirmDeletes => daemon::confirm_deletes_command(&config),
        Command::ConfirmDrop => daemon::confirm_drop_command(&config),
        Command::Serve { .. } => daemon::serve_command(config, cli.config, overrides),
    };
    ExitCode::from(code)
}
