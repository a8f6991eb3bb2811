//! Times what a start spends reading the content directory, with and
//! without the parse cache:
//!
//! ```text
//! cargo run --release --example scan_time -- CONTENT_DIR CACHE_DIR
//! ```
//!
//! Three scans of CONTENT_DIR, each by a fresh library (as a restart
//! would): without a cache; with an empty cache in CACHE_DIR (every file
//! parsed and recorded); and with that cache (unchanged files taken from
//! it). Prints files, parsed, from cache and milliseconds of each, and the
//! cache file's size. CACHE_DIR's `articles.cache` is replaced.

use std::path::PathBuf;
use std::process::ExitCode;

use herald::library::{Library, CACHE_FILE};
use herald::parse::ParseCtx;
use herald::state::State;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [content, cache_dir] = &args[..] else {
        eprintln!("usage: scan_time CONTENT_DIR CACHE_DIR");
        return ExitCode::from(2);
    };
    let cache = PathBuf::from(cache_dir).join(CACHE_FILE);
    let _ = std::fs::remove_file(&cache);
    for (label, with_cache) in [
        ("no cache", false),
        ("empty cache", true),
        ("warm cache", true),
    ] {
        let mut lib = Library::new(
            PathBuf::from(content),
            ParseCtx::new(chrono_tz::UTC),
            State::default(),
            "example.org".into(),
        );
        if with_cache {
            lib.set_cache(cache.clone());
        }
        if let Err(e) = lib.scan() {
            eprintln!("scan_time: {e}");
            return ExitCode::FAILURE;
        }
        let s = lib.last_scan();
        println!(
            "{label:>12}: {} files, {} parsed, {} from cache, {:.0} ms",
            s.files,
            s.parsed,
            s.from_cache,
            s.elapsed.as_secs_f64() * 1000.0
        );
    }
    let size = std::fs::metadata(&cache).map_or(0, |m| m.len());
    println!("cache file: {size} bytes");
    ExitCode::SUCCESS
}
