//! What the publish loop tells the rest of the process about itself, so
//! that `/healthz` and the systemd watchdog say the truth: the loop stamps
//! a heartbeat when it wakes and at progress points inside long work
//! (files parsed, files written), names the step it is on, and records
//! when it ends; the places it writes to (the output directory, the state
//! file) report their failures here. Read by the server for `/healthz` and
//! `/metrics`, and by the daemon's watchdog task, which pings systemd only
//! while the loop is live. Lock-free for the heartbeat (atomics); the
//! rarely changing notes sit behind a mutex. Uses nothing else of Herald's.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A progress mark a long stage of publishing (reading files, rendering
/// documents) calls as it goes, from whatever thread does the work, so a
/// long job can be told from a stuck one; nothing when not set.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Fn() + Send + Sync>>);

impl Progress {
    /// Progress marks that call `beat`.
    pub fn new(beat: impl Fn() + Send + Sync + 'static) -> Progress {
        Progress(Some(Arc::new(beat)))
    }

    /// One step of work done.
    pub fn beat(&self) {
        if let Some(f) = &self.0 {
            f();
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(set)"
        } else {
            "Progress(none)"
        })
    }
}

/// A step of the publish loop, named in `/healthz` when it takes too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    /// Waiting for file events or a timer: never stuck.
    Waiting = 0,
    /// Reading and parsing article files (a batch, a rescan).
    Reading,
    /// Settling the published set: slugs, ids, `updated`.
    Settling,
    /// Writing the state file.
    SavingState,
    /// Rendering the changed documents.
    Rendering,
    /// Mirroring the snapshot to the output directory.
    Writing,
    /// Applying a new configuration.
    Reloading,
}

impl Step {
    const ALL: [Step; 7] = [
        Step::Waiting,
        Step::Reading,
        Step::Settling,
        Step::SavingState,
        Step::Rendering,
        Step::Writing,
        Step::Reloading,
    ];

    /// What the loop is doing, as `/healthz` says it.
    pub fn label(self) -> &'static str {
        match self {
            Step::Waiting => "waiting for changes",
            Step::Reading => "reading article files",
            Step::Settling => "settling ids",
            Step::SavingState => "saving the state",
            Step::Rendering => "rendering",
            Step::Writing => "writing the output directory",
            Step::Reloading => "reloading the configuration",
        }
    }
}

/// A place the publish loop writes to, with its own failure state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The output directory (`feeds/`).
    Output,
    /// The state file.
    State,
    /// The object-storage target (`[publish] to`).
    Bucket,
}

impl Sink {
    /// The label used in `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Sink::Output => "output",
            Sink::State => "state",
            Sink::Bucket => "bucket",
        }
    }
}

/// Whether the loop is still there.
const RUNNING: u8 = 0;
/// Ended at shutdown, as it should.
const STOPPED: u8 = 1;
/// Ended by a panic or an error: nothing is published any more.
const DIED: u8 = 2;

/// The verdict of [`Health::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Publishing works.
    Ok,
    /// Publishing works, with these problems (still served, still pinged).
    Degraded(Vec<String>),
    /// The loop has been busy on one step, with no progress, for longer
    /// than the stall limit.
    Stuck {
        /// What it is busy with.
        step: &'static str,
        /// For how long, whole seconds.
        secs: u64,
        /// The limit, whole seconds.
        limit: u64,
    },
    /// The loop has ended, with why.
    Dead(String),
    /// The loop has ended because Herald is stopping.
    Stopped,
}

impl Verdict {
    /// True when publishing goes on: `/healthz` answers 200 and the
    /// watchdog is pinged.
    pub fn is_live(&self) -> bool {
        matches!(self, Verdict::Ok | Verdict::Degraded(_))
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Ok => f.write_str("ok"),
            Verdict::Degraded(reasons) => write!(f, "degraded: {}", reasons.join("; ")),
            Verdict::Stuck { step, secs, limit } => write!(
                f,
                "stuck: {step} for {secs} s with no progress (publish_stall_secs = {limit})"
            ),
            Verdict::Dead(why) => write!(f, "dead: {why}"),
            Verdict::Stopped => f.write_str("stopping"),
        }
    }
}

/// Problems that leave publishing going.
#[derive(Debug, Default)]
struct Notes {
    output: Option<String>,
    state: Option<String>,
    held_back: usize,
    died: Option<String>,
    bucket: Option<String>,
    /// Routes not yet in the bucket, and since when it has been behind.
    bucket_behind: (usize, Option<Instant>),
    /// Why a publish that would remove most articles is held back
    /// (`max_drop`).
    drop_held: Option<String>,
    /// The built-in hub's deliveries to subscribers in good standing
    /// behind: how many, and the oldest one's wait in seconds.
    websub_behind: Option<(usize, u64)>,
    /// What the bucket keeps because `max_deletes` refused its deletion.
    bucket_refused: Option<String>,
}

/// The publish loop's heartbeat, step and problems.
#[derive(Debug)]
pub struct Health {
    /// Instants are kept as milliseconds since this one.
    origin: Instant,
    stall_ms: AtomicU64,
    /// Milliseconds since `origin` of the last heartbeat.
    beat_ms: AtomicU64,
    /// Heartbeats so far: files read and documents rendered or written.
    beats: AtomicU64,
    step: AtomicU8,
    life: AtomicU8,
    notes: Mutex<Notes>,
}

impl Default for Health {
    fn default() -> Health {
        Health::new(Duration::from_secs(10))
    }
}

impl Health {
    /// A loop that has just started, stuck after `stall` without progress.
    pub fn new(stall: Duration) -> Health {
        Health {
            origin: Instant::now(),
            stall_ms: AtomicU64::new(stall.as_millis() as u64),
            beat_ms: AtomicU64::new(0),
            beats: AtomicU64::new(0),
            step: AtomicU8::new(Step::Waiting as u8),
            life: AtomicU8::new(RUNNING),
            notes: Mutex::default(),
        }
    }

    /// Changes the stall limit (a reloaded `publish_stall_secs`).
    pub fn set_stall(&self, stall: Duration) {
        self.stall_ms.store(stall.as_millis() as u64, Relaxed);
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// The loop begins `step`: a heartbeat, and the step `/healthz` names.
    pub fn busy(&self, step: Step) {
        self.beat();
        self.step.store(step as u8, Relaxed);
    }

    /// The loop made progress on its current step.
    pub fn beat(&self) {
        self.beat_ms.store(self.ms(Instant::now()), Relaxed);
        self.beats.fetch_add(1, Relaxed);
    }

    /// What the loop is doing and how many heartbeats it has given so far
    /// (files read, documents rendered or written): how far a long start
    /// has come, as systemd's status line says it.
    pub fn progress(&self) -> (Step, u64) {
        let step = Step::ALL
            .get(usize::from(self.step.load(Relaxed)))
            .copied()
            .unwrap_or(Step::Waiting);
        (step, self.beats.load(Relaxed))
    }

    /// The loop waits for work; waiting is never stuck.
    pub fn idle(&self) {
        self.busy(Step::Waiting);
    }

    /// The loop has ended at shutdown.
    pub fn stopped(&self) {
        self.life.store(STOPPED, Relaxed);
    }

    /// The loop has ended for `why` (a panic, an error): nothing will be
    /// published again in this process.
    pub fn died(&self, why: String) {
        self.with_notes(|n| n.died = Some(why));
        self.life.store(DIED, Relaxed);
    }

    fn with_notes<T>(&self, f: impl FnOnce(&mut Notes) -> T) -> T {
        // A panic while the lock was held leaves plain data behind: still usable.
        let mut n = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut n)
    }

    /// Records that writing to `sink` fails (`Some(why)`) or works (`None`).
    pub fn set_failing(&self, sink: Sink, why: Option<String>) {
        self.with_notes(|n| match sink {
            Sink::Output => n.output = why,
            Sink::State => n.state = why,
            Sink::Bucket => n.bucket = why,
        });
    }

    /// Whether writing to `sink` fails.
    pub fn failing(&self, sink: Sink) -> bool {
        self.with_notes(|n| match sink {
            Sink::Output => n.output.is_some(),
            Sink::State => n.state.is_some(),
            Sink::Bucket => n.bucket.is_some(),
        })
    }

    /// Records how far the bucket is behind: `routes` changed and not yet
    /// in it, the oldest publish not yet mirrored made at `since` (`None`:
    /// up to date).
    pub fn set_bucket_behind(&self, routes: usize, since: Option<Instant>) {
        self.with_notes(|n| n.bucket_behind = (routes, since));
    }

    /// How far the bucket is behind at `now`: routes waiting and seconds
    /// since the oldest publish not yet in it (0 when up to date).
    pub fn bucket_behind_at(&self, now: Instant) -> (usize, f64) {
        self.with_notes(|n| {
            let (routes, since) = n.bucket_behind;
            let secs = since.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
            (routes, secs)
        })
    }

    /// Records what the bucket keeps because `max_deletes` refused its
    /// deletion (`None`: nothing).
    pub fn set_bucket_refused(&self, note: Option<String>) {
        self.with_notes(|notes| notes.bucket_refused = note);
    }

    /// The built-in hub's deliveries behind (how many, the oldest's wait
    /// in seconds), or `None` when they keep up: degrades `/healthz`.
    pub fn set_websub_behind(&self, behind: Option<(usize, u64)>) {
        self.with_notes(|n| n.websub_behind = behind);
    }

    /// Records how many new articles are held back (the state file cannot
    /// be written, so their ids could not be kept).
    pub fn set_held_back(&self, n: usize) {
        self.with_notes(|notes| notes.held_back = n);
    }

    /// How many new articles are held back.
    pub fn held_back(&self) -> usize {
        self.with_notes(|n| n.held_back)
    }

    /// Records that a publish is held back for removing too many
    /// articles (`Some(why)`), or that none is (`None`).
    pub fn set_drop_held(&self, why: Option<String>) {
        self.with_notes(|n| n.drop_held = why);
    }

    /// The verdict now.
    pub fn check(&self) -> Verdict {
        self.check_at(Instant::now())
    }

    /// The verdict at `now`.
    pub fn check_at(&self, now: Instant) -> Verdict {
        match self.life.load(Relaxed) {
            STOPPED => return Verdict::Stopped,
            DIED => return Verdict::Dead(self.with_notes(|n| n.died.clone()).unwrap_or_default()),
            _ => {}
        }
        let step = Step::ALL
            .get(usize::from(self.step.load(Relaxed)))
            .copied()
            .unwrap_or(Step::Waiting);
        let since = self.ms(now).saturating_sub(self.beat_ms.load(Relaxed));
        let limit = self.stall_ms.load(Relaxed);
        if step != Step::Waiting && since > limit {
            return Verdict::Stuck {
                step: step.label(),
                secs: since / 1000,
                limit: limit / 1000,
            };
        }
        let mut reasons = Vec::new();
        self.with_notes(|n| {
            if let Some(why) = &n.drop_held {
                reasons.push(why.clone());
            }
            if n.held_back > 0 {
                reasons.push(format!(
                    "{} new article{} held back until the state file can be written",
                    n.held_back,
                    if n.held_back == 1 { "" } else { "s" }
                ));
            }
            if let Some(why) = &n.state {
                reasons.push(format!("the state file cannot be written: {why}"));
            }
            if let Some(why) = &n.output {
                reasons.push(format!("the output directory cannot be written: {why}"));
            }
            if let Some(why) = &n.bucket {
                let (routes, since) = n.bucket_behind;
                let secs = since.map_or(0, |t| now.saturating_duration_since(t).as_secs());
                reasons.push(format!(
                    "the bucket cannot be written: {why} ({routes} changed routes waiting; behind for {secs} s)"
                ));
            }
            if let Some((n, secs)) = n.websub_behind {
                reasons.push(format!(
                    "websub: {n} deliveries to subscribers in good standing behind, the oldest waiting {secs} s"
                ));
            }
            if let Some(note) = &n.bucket_refused {
                reasons.push(note.clone());
            }
        });
        if reasons.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Degraded(reasons)
        }
    }

    /// The `/healthz` answer: 200 while publishing goes on (with
    /// "degraded: …" when something is wrong that a restart would not
    /// fix), 503 when the loop is stuck or dead (a restart is due); the
    /// body is the verdict on one line.
    pub fn report(&self) -> (u16, String) {
        let v = self.check();
        (if v.is_live() { 200 } else { 503 }, format!("{v}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop waiting is never stuck; busy past the limit with no
    /// heartbeat it is, naming the step; a heartbeat makes it live again.
    #[test]
    fn stuck_only_when_busy_without_progress() {
        let h = Health::new(Duration::from_secs(2));
        let t0 = Instant::now();
        h.idle();
        assert_eq!(h.check_at(t0 + Duration::from_secs(60)), Verdict::Ok);
        h.busy(Step::SavingState);
        assert_eq!(
            h.check_at(Instant::now() + Duration::from_millis(1900)),
            Verdict::Ok
        );
        let v = h.check_at(Instant::now() + Duration::from_millis(3500));
        assert_eq!(
            v,
            Verdict::Stuck {
                step: "saving the state",
                secs: 3,
                limit: 2
            }
        );
        assert!(!v.is_live());
        assert!(
            v.to_string().starts_with("stuck: saving the state for 3 s"),
            "{v}"
        );
        h.beat();
        assert_eq!(
            h.check_at(Instant::now() + Duration::from_millis(1900)),
            Verdict::Ok
        );
        h.set_stall(Duration::from_secs(1));
        assert!(!h
            .check_at(Instant::now() + Duration::from_millis(1900))
            .is_live());
    }

    /// Sink failures and held-back articles degrade, but stay live (200);
    /// a dead loop is 503 with its reason and outranks everything.
    #[test]
    fn degraded_and_dead() {
        let h = Health::default();
        assert_eq!(h.report(), (200, "ok\n".to_string()));
        h.set_held_back(1);
        h.set_failing(
            Sink::State,
            Some("Read-only file system (os error 30)".into()),
        );
        let (status, body) = h.report();
        assert_eq!(status, 200);
        assert_eq!(
            body,
            "degraded: 1 new article held back until the state file can be written; \
             the state file cannot be written: Read-only file system (os error 30)\n"
        );
        assert!(h.failing(Sink::State) && !h.failing(Sink::Output));
        h.set_held_back(0);
        h.set_failing(Sink::State, None);
        assert_eq!(h.check(), Verdict::Ok);
        h.died("the publish loop panicked: boom".into());
        assert_eq!(
            h.report(),
            (503, "dead: the publish loop panicked: boom\n".to_string())
        );
        let b = Health::default();
        let t0 = Instant::now();
        b.set_bucket_behind(3, Some(t0));
        assert_eq!(b.check_at(t0), Verdict::Ok, "behind but working is fine");
        b.set_failing(Sink::Bucket, Some("PUT rss.xml: connection refused".into()));
        assert_eq!(
            b.check_at(t0 + Duration::from_millis(7500)),
            Verdict::Degraded(vec![
                "the bucket cannot be written: PUT rss.xml: connection refused \
                 (3 changed routes waiting; behind for 7 s)"
                    .into()
            ])
        );
        assert_eq!(b.bucket_behind_at(t0 + Duration::from_secs(2)), (3, 2.0));
        b.set_failing(Sink::Bucket, None);
        b.set_bucket_behind(0, None);
        assert_eq!(b.check(), Verdict::Ok);
        assert_eq!(b.bucket_behind_at(Instant::now()), (0, 0.0));
        let s = Health::default();
        s.stopped();
        assert_eq!(s.report(), (503, "stopping\n".to_string()));
    }
}
