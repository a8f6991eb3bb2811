//! The file-system floor of a cold `herald build`: only the directories
//! and files it creates, with nothing parsed, rendered or compressed.
//!
//! ```text
//! cargo run --release --example fs_floor -- DIR [N] [--direct]
//! ```
//!
//! Creates `DIR/articles/<slug>/` for N articles (default 10,000) and in
//! each an `index.html` of 6,000 bytes and an `index.html.gz` of 2,500
//! (the sizes of a generated article's page and twin), each through a
//! temp file and a rename as `herald build` writes them (`--direct`:
//! written in place), on as many threads as `herald build` uses. Prints
//! the wall time. DIR must not exist. Compare with a cold `herald build`
//! of the same number of articles into a fresh directory: what is left is
//! Herald's own work.

use rayon::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let direct = args.iter().any(|a| a == "--direct");
    let rest: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (Some(dir), n) = (rest.first(), rest.get(1)) else {
        eprintln!("usage: fs_floor DIR [N] [--direct]");
        return ExitCode::from(2);
    };
    let Ok(n) = n.map_or(Ok(10_000), |s| s.parse::<usize>()) else {
        eprintln!("fs_floor: N must be a number");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    if dir.exists() {
        eprintln!("fs_floor: {} exists; give a new directory", dir.display());
        return ExitCode::from(2);
    }
    let page = vec![b'p'; 6000];
    let twin = vec![b'z'; 2500];
    let started = Instant::now();
    let result: std::io::Result<()> = (0..n).into_par_iter().try_for_each(|i| {
        let d = dir
            .join("articles")
            .join(format!("a-generated-article-title-{i}"));
        std::fs::create_dir_all(&d)?;
        for (name, bytes) in [("index.html.gz", &twin), ("index.html", &page)] {
            let path = d.join(name);
            if direct {
                std::fs::File::create(&path)?.write_all(bytes)?;
            } else {
                let tmp = d.join(format!(".{name}.herald-tmp"));
                std::fs::File::create(&tmp)?.write_all(bytes)?;
                std::fs::rename(&tmp, &path)?;
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("fs_floor: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "{n} directories, {} files{}: {:.3} s",
        2 * n,
        if direct {
            " (in place)"
        } else {
            " (temp + rename)"
        },
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
