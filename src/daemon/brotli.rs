//! The background thread that makes brotli forms of feeds, the index and
//! OPML after they are published, at the lowest CPU priority.

use std::time::Instant;

/// Documents handed to the brotli thread, held weakly: one replaced by a
/// later publish before its turn is skipped.
pub(super) type BrQueue = std::sync::mpsc::Sender<Vec<std::sync::Weak<crate::site::Asset>>>;

/// Starts the thread that makes brotli forms after publication, one
/// document at a time, at the lowest CPU priority so it never competes
/// with serving or rebuilding.
pub(super) fn start_br(quality: u32) -> Option<BrQueue> {
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
                    .filter(|a| {
                        // A feed read from disk at start learns where its
                        // gzip form's pieces are (see `Asset::make_cuts`).
                        a.make_cuts();
                        a.make_br(quality)
                    })
                    .count();
                tracing::debug!(
                    made,
                    ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
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
