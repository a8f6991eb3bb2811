//! gzip levels on real documents: size and time per document at levels 1
//! to 6 (flate2 with zlib-rs, as Herald compresses), each level repeated
//! for 400 ms. How Herald's level for the current feeds was chosen:
//!
//!     cargo run --release --example gzip_levels -- feeds/rss.xml feeds/atom.xml feeds/feed.json

use std::io::Write;
use std::time::Instant;

fn main() {
    for path in std::env::args().skip(1) {
        let doc = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        };
        for level in 1..=6 {
            let start = Instant::now();
            let (mut runs, mut len) = (0u32, 0);
            while start.elapsed().as_millis() < 400 {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                e.write_all(&doc).expect("writing to memory");
                len = e.finish().expect("writing to memory").len();
                runs += 1;
            }
            let ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
            println!(
                "{path} ({} bytes) level {level}: {len} bytes ({:.1} %), {ms:.2} ms",
                doc.len(),
                100.0 * len as f64 / doc.len() as f64
            );
        }
    }
}
