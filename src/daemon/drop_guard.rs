//! The empty-site guard: a publish that would remove every article, or
//! more than `max_drop` of the most published within the last
//! [`WINDOW`], is held back. The previous site stays served, written and
//! mirrored, and nothing is pushed to subscribers, until the content
//! comes back or the operator confirms the removal (SIGUSR1). An emptied
//! or half-restored content directory (`rm -rf content/*`, a restore that
//! removes the directory first, an unmounted volume) otherwise publishes
//! an empty site: every permalink 410, empty feeds pushed to every
//! subscriber and the bucket emptied.
//!
//! Counted against the most articles published within the window, not
//! against the last publish alone, so a wipe spread over several batches
//! of file events (a large `rm -rf` outlasts `settle_max_ms`) is held as
//! soon as the share is passed. Decides only; the publisher asks it
//! before rendering and skips the publish when told to. Uses `health`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::health::Health;

/// How far back the guard looks for the most articles published.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// A drop of at most this many articles is held only when it would leave
/// none: on a small site, deleting a few articles is most of it.
pub const SMALL_DROP: usize = 10;

/// A publish held back: the count it was measured against and since when.
#[derive(Debug, Clone, Copy)]
struct Hold {
    peak: usize,
    since: Instant,
}

/// The guard's memory: recent published counts and the hold, if any.
#[derive(Debug)]
pub(super) struct DropGuard {
    max_drop: f64,
    /// Counts served, oldest first, each larger than every later one (a
    /// monotonic queue): the front is the most within the window.
    peaks: VecDeque<(Instant, usize)>,
    held: Option<Hold>,
    /// The operator confirmed a hold: the next publish goes ahead.
    confirmed: bool,
}

impl DropGuard {
    /// A guard refusing to remove more than `max_drop` (0 to 1).
    pub(super) fn new(max_drop: f64) -> DropGuard {
        DropGuard {
            max_drop,
            peaks: VecDeque::new(),
            held: None,
            confirmed: false,
        }
    }

    /// Takes a reloaded `max_drop`; applies from the next publish.
    pub(super) fn set_max_drop(&mut self, max_drop: f64) {
        self.max_drop = max_drop;
    }

    /// Whether the publish about to be made must be held back: it would
    /// leave `would` articles while `served` are served now. Logs one
    /// error when a hold begins and one line when it ends; `/healthz`
    /// says why meanwhile.
    pub(super) fn hold(
        &mut self,
        would: usize,
        served: usize,
        now: Instant,
        health: &Health,
    ) -> bool {
        if std::mem::take(&mut self.confirmed) {
            // What was confirmed is the new measure.
            self.peaks.clear();
            self.record(would, now);
            return false;
        }
        self.record(served, now);
        let peak = self.peaks.front().map_or(0, |&(_, n)| n);
        let dropped = peak.saturating_sub(would);
        let too_many = too_many(self.max_drop, peak, would);
        match (too_many, self.held) {
            (true, None) => {
                let why = format!(
                    "publish held back: {dropped} of {peak} articles would be removed \
                     (max_drop = {} of those published within the last hour); the \
                     previous site stays served, written and mirrored. Restore the \
                     content, or confirm the removal with SIGUSR1 (`systemctl kill -s \
                     SIGUSR1 herald`)",
                    self.max_drop
                );
                tracing::error!("{why}");
                health.set_drop_held(Some(why));
                self.held = Some(Hold { peak, since: now });
                true
            }
            (true, Some(_)) => true,
            (false, Some(h)) => {
                tracing::info!(
                    articles = would,
                    held_secs = now.saturating_duration_since(h.since).as_secs(),
                    "content is back: publishing {would} of the {} articles as usual",
                    h.peak
                );
                health.set_drop_held(None);
                self.held = None;
                false
            }
            (false, None) => false,
        }
    }

    /// The operator confirms the removal held back: the next publish goes
    /// ahead, and counts from then on are measured against it. Returns
    /// whether a publish was held.
    pub(super) fn confirm(&mut self, health: &Health) -> bool {
        let Some(h) = self.held.take() else {
            tracing::info!("SIGUSR1: no publish is held back; nothing to confirm");
            return false;
        };
        tracing::warn!(
            "removal confirmed by the operator (SIGUSR1): publishing what the content \
             directory holds now, in place of {} articles",
            h.peak
        );
        health.set_drop_held(None);
        self.confirmed = true;
        true
    }

    /// Notes that `served` articles are served at `now`, forgetting what
    /// left the window and what can no longer be the most.
    fn record(&mut self, served: usize, now: Instant) {
        while self
            .peaks
            .front()
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) > WINDOW)
        {
            self.peaks.pop_front();
        }
        while self.peaks.back().is_some_and(|&(_, n)| n <= served) {
            self.peaks.pop_back();
        }
        self.peaks.push_back((now, served));
    }
}

/// Whether leaving `would` of `peak` articles removes too many: every
/// one, or more than [`SMALL_DROP`] and more than `max_drop` of them.
pub(super) fn too_many(max_drop: f64, peak: usize, would: usize) -> bool {
    let dropped = peak.saturating_sub(would);
    dropped > 0 && (would == 0 || (dropped > SMALL_DROP && dropped as f64 > max_drop * peak as f64))
}

/// The file in `state_dir` holding how many articles the last publish
/// of `serve` put out (a decimal number): what a start is measured
/// against. One small file rewritten only when the count changes, rather
/// than the site manifest, which a new Herald binary or another output
/// directory discards, or the state file, which also keeps the ids of
/// articles long deleted.
pub const PUBLISHED_FILE: &str = "published.count";

/// The count [`save_published`] left, if any; a damaged file is logged
/// and counts as none (the start is then not guarded).
pub(super) fn load_published(state_dir: &std::path::Path) -> Option<usize> {
    let path = state_dir.join(PUBLISHED_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read the last published count ({e}); the start is not guarded");
            return None;
        }
    };
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            tracing::warn!(path = %path.display(), "the last published count is not a number; the start is not guarded");
            None
        }
    }
}

/// Records that `articles` are published now, durably
/// ([`crate::durable`]): a crash leaves the old count or the new one,
/// never an empty file that would leave the next start unguarded.
/// The publisher calls it only when the count changes.
///
/// # Errors
///
/// The file cannot be written.
pub(super) fn save_published(state_dir: &std::path::Path, articles: usize) -> std::io::Result<()> {
    crate::durable::write(
        &state_dir.join(PUBLISHED_FILE),
        format!("{articles}\n").as_bytes(),
    )
    .map(drop)
}

/// `herald confirm-drop`: the operator's word that the content really
/// shrank. Removes the count a start is measured against
/// ([`PUBLISHED_FILE`]), so the next start publishes what the content
/// directory holds and records its count from then on. Exit 0, or 5 when
/// the file cannot be removed.
pub fn confirm_drop_command(c: &crate::config::Config) -> u8 {
    super::init_logging(c);
    let path = c.state_dir.join(PUBLISHED_FILE);
    let last = load_published(&c.state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            println!(
                "confirmed: the next start of `herald serve` publishes what {} holds, in place of the {} articles the last run published",
                c.content_dir.display(),
                last.map_or_else(|| "?".to_string(), |n| n.to_string())
            );
            super::EXIT_OK
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "nothing to confirm: no published count in {}",
                c.state_dir.display()
            );
            super::EXIT_OK
        }
        Err(e) => {
            eprintln!(
                "herald: confirm-drop: cannot remove {}: {e}",
                path.display()
            );
            super::EXIT_RUNTIME
        }
    }
}

/// The start-up check: `Some(message)` when publishing the `would`
/// articles found at start would remove too many of the `last` the
/// previous run published (see [`too_many`]).
pub(super) fn refuse_start(max_drop: f64, last: usize, would: usize) -> Option<String> {
    if !too_many(max_drop, last, would) {
        return None;
    }
    let what = if would == 0 {
        format!("all {last} articles the last run published would be removed")
    } else {
        format!(
            "{} of the {last} articles the last run published would be removed (max_drop = {max_drop})",
            last - would
        )
    };
    Some(format!(
        "start refused: {what}, so the previous output is left as it is. Restore the \
         content and start again, or confirm the removal with `herald confirm-drop` \
         and start again"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One case per shape of publish: (served now, would be left,
    /// expected hold), run in order on one guard with `max_drop` 0.5.
    #[test]
    fn holds_only_what_removes_too_much() {
        let h = Health::default();
        let t0 = Instant::now();
        let mut g = DropGuard::new(0.5);
        let cases: &[(&str, usize, usize, bool)] = &[
            ("an empty start stays empty", 0, 0, false),
            ("first articles", 0, 100, false),
            ("a few deleted", 100, 80, false),
            (
                "down to 50 of the 100 of the hour: exactly half",
                80,
                50,
                false,
            ),
            ("40 of 100 left: more than half gone", 50, 40, true),
            ("still held, not logged again", 50, 30, true),
            ("content back", 50, 100, false),
            ("emptied", 100, 0, true),
        ];
        for (i, &(label, served, would, want)) in cases.iter().enumerate() {
            let now = t0 + Duration::from_secs(i as u64);
            assert_eq!(g.hold(would, served, now, &h), want, "{label}");
        }
        assert!(matches!(h.check(), crate::health::Verdict::Degraded(_)));
        assert!(g.confirm(&h));
        assert_eq!(h.check(), crate::health::Verdict::Ok);
        assert!(
            !g.hold(0, 100, t0 + Duration::from_secs(9), &h),
            "confirmed"
        );
        assert!(!g.confirm(&h), "nothing left to confirm");
        assert!(refuse_start(0.5, 12, 0).is_some(), "a start on nothing");
        assert!(refuse_start(0.5, 100, 40).is_some(), "a start on 40 of 100");
        assert!(refuse_start(0.5, 100, 60).is_none(), "a start on 60 of 100");
        assert!(refuse_start(0.5, 0, 0).is_none(), "nothing published yet");
        let mut small = DropGuard::new(0.5);
        assert!(!small.hold(1, 8, t0, &h), "7 of 8: a small site's few");
        assert!(small.hold(0, 1, t0, &h), "but not its last");
    }

    /// A peak older than the window no longer counts; emptying a site is
    /// held whatever `max_drop` says.
    #[test]
    fn the_window_and_the_empty_site() {
        let h = Health::default();
        let t0 = Instant::now();
        let mut g = DropGuard::new(1.0);
        assert!(!g.hold(10, 100, t0, &h), "max_drop 1: any share");
        assert!(g.hold(0, 10, t0, &h), "but never every article");
        let mut g = DropGuard::new(0.5);
        assert!(!g.hold(60, 100, t0, &h));
        let later = t0 + WINDOW + Duration::from_secs(1);
        assert!(!g.hold(31, 60, later, &h), "the 100 have left the window");
        assert!(g.hold(29, 31, later, &h), "29 of 60");
    }
}
