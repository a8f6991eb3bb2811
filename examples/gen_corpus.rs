//! Writes a deterministic corpus of realistic articles for benchmarks:
//!
//! ```text
//! cargo run --release --example gen_corpus -- N DIR [--md-only|--txt-only]
//! ```
//!
//! N articles of 4–6 KB under `DIR/YYYY/MM/`, dated over the three years
//! before 2025-05-01, in eight categories; three scraped columns (`.txt`)
//! for every two Markdown files (`.md`), or only one kind. `--md-only`
//! writes front matter Hugo reads too (for `benches/build_vs_hugo.sh`).
//! The same N always gives the same bytes; DIR must not hold another
//! corpus (existing files are overwritten, others are left alone).

#[path = "../benches/corpus/mod.rs"]
mod corpus;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use rayon::prelude::*;

fn usage() -> ExitCode {
    eprintln!("usage: gen_corpus N DIR [--md-only|--txt-only]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut mix = corpus::Mix::Mixed;
    let mut pos = Vec::new();
    for a in &args {
        match a.as_str() {
            "--md-only" => mix = corpus::Mix::MdOnly,
            "--txt-only" => mix = corpus::Mix::TxtOnly,
            s if s.starts_with("--") => return usage(),
            s => pos.push(s),
        }
    }
    let [n, dir] = pos[..] else {
        return usage();
    };
    let Ok(n) = n.replace('_', "").parse::<u64>() else {
        return usage();
    };
    let root = PathBuf::from(dir);
    let started = Instant::now();

    // Create each YYYY/MM directory once, before the parallel writes.
    let docs_dirs: HashSet<PathBuf> = (0..n)
        .into_par_iter()
        .map(|i| {
            let d = corpus::article(i, mix);
            Path::new(&d.rel)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
        .collect();
    for d in &docs_dirs {
        if let Err(e) = std::fs::create_dir_all(root.join(d)) {
            eprintln!("gen_corpus: {}: {e}", root.join(d).display());
            return ExitCode::FAILURE;
        }
    }
    let bytes: Result<u64, String> = (0..n)
        .into_par_iter()
        .map(|i| {
            let d = corpus::article(i, mix);
            let p = root.join(&d.rel);
            std::fs::write(&p, &d.text)
                .map(|()| d.text.len() as u64)
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .sum();
    match bytes {
        Ok(b) => {
            eprintln!(
                "gen_corpus: {n} articles, {:.1} MB in {} ({:.1}s)",
                b as f64 / 1e6,
                root.display(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_corpus: {e}");
            ExitCode::FAILURE
        }
    }
}
