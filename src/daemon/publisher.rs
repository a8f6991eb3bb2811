//! The one writer of `herald serve`: owns the library, the site builder
//! and the watcher, and runs the loop { batch of changes → library →
//! render → publish }, with the timer for future-dated articles, the
//! verification pass and reloads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use chrono::Utc;

use super::brotli::BrQueue;
use super::drop_guard::{self, DropGuard};
use super::systemd::notify;
use super::{
    guard, open_library, parse_ctx, settings, Fatal, Overrides, EXIT_CONTENT_DIR, EXIT_DROP_HELD,
};
use crate::config::Config;
use crate::health::{Health, Sink, Step};
use crate::library::Library;
use crate::metrics::Metrics;
use crate::site::{self, SiteBuilder};

/// What the loop thread is told from outside the file system.
#[derive(Debug)]
pub(super) enum Control {
    Reload,
    Shutdown,
    /// A request found file-backed pages damaged (see `site::Damage`).
    Repair,
    /// SIGUSR1: the operator confirms the removal a held publish would
    /// make (`drop_guard.rs`).
    ConfirmDrop,
}

/// Starts the watcher for `root`, queueing its events for the loop. On
/// failure the loop still runs; the verification pass finds changes.
pub(super) fn start_watcher(
    root: &std::path::Path,
    tx: &std::sync::mpsc::Sender<Msg>,
) -> Option<crate::watch::Watcher> {
    let tx = tx.clone();
    match crate::watch::Watcher::new(root, move |c| {
        let _ = tx.send(Msg::Fs(c, Instant::now()));
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(path = %root.display(), "cannot watch content; relying on the verification pass: {e}");
            None
        }
    }
}

/// Messages to the publish loop.
#[derive(Debug)]
pub(super) enum Msg {
    /// A file event and when the watcher saw it: the quiet period is
    /// counted from then, not from when the loop got to it (after a
    /// publish, say), so work done meanwhile is not added to the wait.
    Fs(crate::watch::Change, Instant),
    Control(Control),
}

/// The one writer: owns the library, the site builder and the watcher.
pub(super) struct Publisher {
    config: Config,
    lib: Library,
    builder: SiteBuilder,
    pub(super) shared: Option<Arc<crate::server::Shared>>,
    /// Counters and the loop's health, shared with the server.
    pub(super) metrics: Arc<Metrics>,
    next_release: Option<chrono::DateTime<Utc>>,
    reported: std::collections::HashSet<String>,
    /// Failure state of the output directory.
    output: SinkLog,
    /// An output write or removal failed since the last pass that checked
    /// every route against the disk: the next write is such a pass.
    output_behind: bool,
    /// Failure state of the state file.
    state: SinkLog,
    last_rebuild: Option<(SystemTime, u128)>,
    /// Queue of the background brotli compressor (`None`: no brotli).
    pub(super) br: Option<BrQueue>,
    /// WebSub pings and the built-in hub (`None`: no hub configured),
    /// told of the routes each publish changed.
    pub(super) syndicate: Option<crate::syndicate::Syndicate>,
    /// The bucket mirror (`None`: no `[publish] to`), handed each publish.
    pub(super) mirror: Option<crate::mirror::Mirror>,
    /// The feeds the start-up publish changed: whose file in the output
    /// directory, left by the last run, held other bytes.
    pub(super) start_changed: Vec<String>,
    /// The start-up publish left the output directory's stale files (of
    /// routes gone while Herald was stopped) for the loop's first step.
    prune_pending: bool,
    /// `HERALD_FAILPOINT=publish-panic`: the next publish panics. For the
    /// end-to-end test of a dead loop only (no real input can make the
    /// loop panic); nothing happens unless the variable is set.
    panic_on_publish: bool,
    /// Holds back a publish that would remove most articles (`max_drop`).
    drop_guard: DropGuard,
    /// The article count `state_dir` records as published.
    published: Option<usize>,
}

impl Publisher {
    pub(super) fn open(config: Config) -> anyhow::Result<Publisher> {
        let metrics = Arc::new(Metrics::default());
        metrics.health.set_stall(config.publish_stall);
        let mut lib = open_library(&config, true)?;
        beat_while_reading(&mut lib, &metrics);
        let builder = watched_builder(&config, &metrics, Arc::default());
        let max_drop = config.max_drop;
        Ok(Publisher {
            config,
            lib,
            builder,
            shared: None,
            metrics,
            next_release: None,
            reported: Default::default(),
            output: SinkLog::new(Sink::Output),
            output_behind: false,
            state: SinkLog::new(Sink::State),
            last_rebuild: None,
            br: None,
            syndicate: None,
            mirror: None,
            start_changed: Vec::new(),
            prune_pending: false,
            drop_guard: DropGuard::new(max_drop),
            published: None,
            panic_on_publish: std::env::var("HERALD_FAILPOINT").is_ok_and(|v| v == "publish-panic"),
        })
    }

    /// Marks the start of a step of the loop (a heartbeat).
    fn step(&self, step: Step) {
        self.metrics.health.busy(step);
    }

    pub(super) fn first_publish(&mut self) -> Result<crate::site::Site, Fatal> {
        self.lib
            .scan()
            .map_err(|e| Fatal(EXIT_CONTENT_DIR, e.into()))?;
        let scan = self.lib.last_scan();
        // Measured against what the last run published before anything is
        // rendered or written: an emptied content directory must not
        // turn the site it left into 410s and empty feeds.
        self.published = drop_guard::load_published(&self.config.state_dir);
        if let Some(last) = self.published {
            let would = self.lib.publishable(Utc::now());
            if let Some(why) = drop_guard::refuse_start(self.config.max_drop, last, would) {
                return Err(Fatal(EXIT_DROP_HELD, anyhow::anyhow!(why)));
            }
        }
        let started = Instant::now();
        let (site, changed) = self.render();
        // Logged like every later publish, so the log says what the site
        // started with: `rendered` documents made anew, `changed` those
        // of them whose bytes differ from the output directory's, `reused`
        // taken from it as the manifest recorded them; and how much of the
        // content was read and parsed, how much came from the parse cache.
        tracing::info!(
            reason = "start",
            articles = site.articles,
            rejected = site.rejected,
            routes = site.len(),
            rendered = self.builder.rendered,
            changed = changed.len(),
            reused = self.builder.reused,
            ms = round_ms(started.elapsed()),
            files = scan.files,
            parsed = scan.parsed,
            from_cache = scan.from_cache,
            scan_ms = round_ms(scan.elapsed),
            "published"
        );
        self.start_changed = feeds_changed_on_disk(&site, &self.config.output_dir);
        // What was rendered is written (pages as they were rendered, by the
        // builder); what the manifest vouched for is on disk already, its
        // files checked. What belongs to no route is looked for once
        // serving has begun ([`Publisher::prune_after_start`]).
        let site = self.mirror(&site, Some(&changed), &[]).unwrap_or(site);
        self.prune_pending = true;
        self.save_manifest();
        Ok(site)
    }

    /// Removes the files of the output directory that belong to no route
    /// (articles, labels or pages gone while Herald was stopped, strays
    /// under `articles/`). A walk of every file — about 2 s at 100,000
    /// articles — so it runs as the loop's first step, after the start-up
    /// publish and with the site already served, not before it: nothing
    /// links to those files any more, and Herald serves from memory and
    /// its own records, never by looking a path up on disk. On the loop's
    /// thread, so no publish writes while it walks.
    fn prune_after_start(&mut self) {
        if !std::mem::take(&mut self.prune_pending) {
            return;
        }
        self.step(Step::Writing);
        let Some(site) = self.shared.as_ref().map(|s| s.site.load_full()) else {
            return;
        };
        let started = Instant::now();
        let pruned = site::prune_to(&site, &self.config.output_dir);
        if let Some(e) = pruned.errors.first() {
            tracing::warn!("cannot remove a stale file from the output directory: {e}");
        }
        tracing::debug!(
            removed = pruned.removed,
            ms = round_ms(started.elapsed()),
            "stale files removed from the output directory"
        );
    }

    /// Records what the output directory holds (see `site::manifest`), so
    /// that the next start renders only what changed meanwhile; only
    /// while every file of the snapshot is written.
    fn save_manifest(&self) {
        if self.output_behind {
            return;
        }
        if let Err(e) = self.builder.save_manifest(&self.config.state_dir) {
            tracing::warn!(
                dir = %self.config.state_dir.display(),
                "cannot save the site manifest ({e}); the next start renders every page"
            );
        }
    }

    /// Renders the current library into a snapshot (not yet published).
    /// The ids and `updated` it shows are saved first: a reader never sees
    /// an id the state file does not hold. When the state cannot be saved,
    /// the articles that would need a new id are held back; the others
    /// are rendered as usual. A panic while rendering rejects the articles
    /// that cause it ([`guard`]).
    ///
    /// An append to the state's journal is synced while the snapshot is
    /// rendered (an fsync took 5-20 ms here, as long as the rendering of an
    /// edit), and the snapshot is returned once it is on disk. Should that
    /// sync fail, the snapshot is dropped and rendered again with the
    /// state saved first, as above.
    fn render(&mut self) -> (crate::site::Site, Vec<String>) {
        match self.render_syncing(true) {
            Ok(done) => done,
            Err(()) => self.render_syncing(false).unwrap_or_else(|()| {
                unreachable!("a render that syncs first has nothing to sync after")
            }),
        }
    }

    /// [`Publisher::render`], syncing the state's journal during the
    /// render (`overlap`) or before it; `Err` when the sync during it failed.
    fn render_syncing(&mut self, overlap: bool) -> Result<(crate::site::Site, Vec<String>), ()> {
        let started = Instant::now();
        let now = Utc::now();
        let config = &self.config;
        let metrics = &self.metrics;
        let health = &self.metrics.health;
        let state_log = &mut self.state;
        let builder = &mut self.builder;
        let mut syncing: Option<Syncing> = None;
        let (view, _, (site, changed)) = guard::render_guarded(
            &mut self.lib,
            |lib| {
                let defer = overlap.then_some(&mut syncing);
                settle_and_save(lib, now, config, state_log, health, defer)
            },
            |lib, v| settings(config, lib.state_mut(), &v.articles),
            |v, s, fresh| {
                health.busy(Step::Rendering);
                if fresh {
                    let damage = Arc::clone(builder.damage());
                    *builder = watched_builder(config, metrics, damage);
                }
                builder.set_former(&v.moved, &v.gone);
                builder.set_labels_known(&v.labels_known);
                builder.set_media(&v.media);
                builder.build(&v.articles, v.rejected.len(), s, SystemTime::now())
            },
        );
        if let Some(sync) = syncing.take() {
            if !saved(synced(sync, &config.state_dir), &mut self.state, health) {
                self.lib.state_mut().sync_failed();
                return Err(());
            }
        }
        // A label published for the first time is remembered, so that it
        // answers 410, not 404, once its last article goes. Saved with the
        // next publish's ids (which the deletion of its last article is)
        // or at shutdown, not with a save of its own: only a crash before
        // either forgets it, and then it answers 404.
        self.lib.state_mut().note_labels(self.builder.labels());
        self.note_held_back(view.held_back);
        for e in &view.rejected {
            let line = e.to_string();
            if !self.reported.contains(&line) {
                tracing::error!("{line}");
            }
        }
        // Warnings too, once each while they last, as `build` logs them.
        for w in &view.warnings {
            if !self.reported.contains(w) {
                tracing::warn!("{w}");
            }
        }
        self.reported = view
            .rejected
            .iter()
            .map(ToString::to_string)
            .chain(view.warnings.iter().cloned())
            .collect();
        self.next_release = view.next_release;
        self.last_rebuild = Some((SystemTime::now(), started.elapsed().as_micros()));
        Ok((site, changed))
    }

    /// Brings the output directory in line with `site`: the `changed`
    /// routes written and the `removed` ones deleted — or, with `changed`
    /// `None` (the first publish) and whenever an earlier write failed,
    /// every route checked against the disk and the rest pruned, so that a
    /// mirror that missed writes (a full disk) converges as soon as writing
    /// works again.
    /// Returns `site` with the pages just written served from their files
    /// (see [`SiteBuilder::demote`]), when there were any and every write
    /// worked: the caller publishes it in place of `site`.
    fn mirror(
        &mut self,
        site: &crate::site::Site,
        changed: Option<&[String]>,
        removed: &[String],
    ) -> Option<crate::site::Site> {
        self.step(Step::Writing);
        let dir = &self.config.output_dir;
        let health = &self.metrics.health;
        let full = changed.is_none() || self.output_behind;
        let mut report = site::write_to(site, dir, if full { None } else { changed }, &|| {
            health.beat()
        });
        if !full && !removed.is_empty() {
            // After the new and changed files: a reader of the directory
            // never finds a feed linking to a removed page.
            let gone = site::remove_routes(dir, removed);
            report.removed += gone.removed;
            report.errors.extend(gone.errors);
        }
        match report.errors.first() {
            Some(e) => {
                self.output_behind = true;
                self.output.failed(
                    health,
                    e.error.kind(),
                    || {
                        format!(
                            "cannot write {}: {e} ({} failed); serving continues from memory",
                            dir.display(),
                            super::build::count(report.errors.len(), "file", "files")
                        )
                    },
                    e.to_string(),
                );
            }
            None => {
                if full {
                    self.output_behind = false;
                }
                self.output.worked(health, || {
                    format!(
                        "writing the output directory works again: {} written, {} removed ({})",
                        report.written,
                        report.removed,
                        dir.display()
                    )
                });
                return self.builder.demote(site, if full { None } else { changed });
            }
        }
        None
    }

    /// [`Publisher::mirror`] of the snapshot being served, which is
    /// replaced by its file-backed form.
    fn write_out(
        &mut self,
        site: &Arc<crate::site::Site>,
        changed: Option<&[String]>,
        removed: &[String],
    ) {
        if let Some(demoted) = self.mirror(site, changed, removed) {
            if let Some(shared) = &self.shared {
                // Only this thread publishes, so the snapshot written is
                // still the one served unless a later one replaced it.
                if Arc::ptr_eq(&shared.site.load(), site) {
                    shared.site.store(Arc::new(demoted));
                }
            }
        }
    }

    /// Records how many new articles are held back; says so once when it
    /// begins and once when they are published.
    fn note_held_back(&mut self, n: usize) {
        let before = self.metrics.health.held_back();
        let s = |n: usize| if n == 1 { "" } else { "s" };
        if n > 0 && before == 0 {
            tracing::warn!(
                "{n} new article{} held back until the state file can be written (an id is saved before it is shown); tried again every {} s and on every publish",
                s(n),
                self.config.write_retry.as_secs()
            );
        } else if n == 0 && before > 0 {
            tracing::info!(
                "{before} new article{} published now that their ids are saved",
                s(before)
            );
        }
        self.metrics.health.set_held_back(n);
    }

    /// Whether something failed to be written and is to be tried again.
    fn writes_failing(&self) -> bool {
        self.output_behind || self.metrics.health.failing(Sink::State)
    }

    /// Tries again what failed to be written: the state file (by
    /// publishing again, so that held-back articles appear once it can be
    /// written), and the whole output directory against the current
    /// snapshot.
    fn retry_writes(&mut self) {
        if self.metrics.health.failing(Sink::State) {
            // Mirrors the output as well, in full while it is behind.
            self.republish("write retry");
        } else if self.output_behind {
            if let Some(shared) = &self.shared {
                let site = shared.site.load_full();
                self.write_out(&site, None, &[]);
            }
        }
    }

    /// Hands the new documents of `site` (every one when `routes` is
    /// `None`) to the brotli thread.
    pub(super) fn queue_br(&self, site: &crate::site::Site, routes: Option<&[String]>) {
        if let Some(tx) = &self.br {
            let wanting = site.wanting_br(routes);
            if !wanting.is_empty() {
                let _ = tx.send(wanting);
            }
        }
    }

    pub(super) fn after_publish(&mut self) {
        if let (Some(shared), Some((_, micros))) = (&self.shared, self.last_rebuild) {
            let site = shared.site.load();
            self.metrics
                .rebuilt(micros as u64, site.articles, site.rejected);
        }
        if let Some(articles) = self.shared.as_ref().map(|s| s.site.load().articles) {
            if self.published != Some(articles) {
                match drop_guard::save_published(&self.config.state_dir, articles) {
                    Ok(()) => self.published = Some(articles),
                    Err(e) => tracing::warn!(
                        dir = %self.config.state_dir.display(),
                        "cannot record the published article count ({e}); the next start is measured against an older one"
                    ),
                }
            }
        }
        if let Some((shared, stats)) = self
            .shared
            .as_ref()
            .and_then(|sh| Some((sh, sh.stats.as_ref()?)))
        {
            stats.set_feeds(feed_routes(&shared.site.load()));
        }
    }

    /// Re-renders and, if anything changed, swaps the snapshot and writes
    /// the changed files.
    fn republish(&mut self, reason: &str) {
        assert!(
            !self.panic_on_publish,
            "HERALD_FAILPOINT=publish-panic: the publish loop panics as asked"
        );
        let started = Instant::now();
        if let Some(shared) = &self.shared {
            let served = shared.site.load().articles;
            let would = self.lib.publishable(Utc::now());
            if self
                .drop_guard
                .hold(would, served, started, &self.metrics.health)
            {
                // Rendered again when the content comes back or the
                // removal is confirmed; a release due meanwhile waits too.
                self.next_release = None;
                return;
            }
        }
        let (site, changed) = self.render();
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let current = shared.site.load();
        if changed.is_empty()
            && site.articles == current.articles
            && site.rejected == current.rejected
            && site.cache_control == current.cache_control
        {
            tracing::debug!(reason, "nothing to publish");
            if self.output_behind {
                let site = Arc::clone(&current);
                drop(current);
                self.write_out(&site, None, &[]);
            }
            return;
        }
        drop(current);
        let site = Arc::new(site);
        let before = shared.site.swap(Arc::clone(&site));
        if let Some(s) = &self.syndicate {
            // Returns at once: pings and deliveries run on their own thread.
            s.published(Some(&before), &site, &changed);
        }
        drop(before);
        let removed = self.builder.removed().to_vec();
        if let Some(m) = &self.mirror {
            // Returns at once: the bucket is written on its own thread.
            m.apply(Arc::clone(&site), &changed, &removed);
        }
        let elapsed = started.elapsed();
        self.queue_br(&site, Some(&changed));
        self.after_publish();
        tracing::info!(
            reason,
            articles = site.articles,
            rejected = site.rejected,
            changed = changed.len(),
            ms = round_ms(elapsed),
            "published"
        );
        if !changed.is_empty() || !removed.is_empty() || self.output_behind {
            self.write_out(&site, Some(&changed), &removed);
        }
        notify(&[sd_notify::NotifyState::Status(&format!(
            "{}, {} rejected; last rebuild {:.1} ms ({reason})",
            super::build::count(site.articles, "article", "articles"),
            site.rejected,
            elapsed.as_secs_f64() * 1000.0
        ))]);
    }

    pub(super) fn run(
        mut self,
        mut watcher: Option<crate::watch::Watcher>,
        rx: std::sync::mpsc::Receiver<Msg>,
        tx: std::sync::mpsc::Sender<Msg>,
        config_path: Option<PathBuf>,
        overrides: Overrides,
    ) -> anyhow::Result<()> {
        use crate::watch::Pending;
        use std::sync::mpsc::RecvTimeoutError;
        use std::time::Duration;

        let mut pending = Pending::default();
        let mut verify_at = Instant::now() + self.config.verify_interval;
        let mut retry_at = Instant::now() + self.config.write_retry;
        let mut root_missing = false;
        self.prune_after_start();

        loop {
            let now = Instant::now();
            let mut deadline = verify_at;
            if let Some(d) = pending.deadline(self.config.debounce, self.config.settle_max) {
                deadline = deadline.min(d);
            }
            if let Some(when) = self.next_release {
                let wait = (when - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                deadline = deadline.min(now + wait);
            }
            if self.writes_failing() {
                deadline = deadline.min(retry_at);
            } else {
                retry_at = now + self.config.write_retry;
            }
            self.metrics.health.idle();
            let msg = rx.recv_timeout(deadline.saturating_duration_since(now));
            self.step(Step::Reading);
            let mut control = None;
            match msg {
                Ok(Msg::Fs(c, at)) => pending.add(c, at),
                Ok(Msg::Control(c)) => control = Some(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Drain whatever else is queued, so a burst is one batch.
            while control.is_none() {
                match rx.try_recv() {
                    Ok(Msg::Fs(c, at)) => pending.add(c, at),
                    Ok(Msg::Control(c)) => control = Some(c),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            match control {
                Some(Control::Shutdown) => break,
                Some(Control::Reload) => {
                    notify(&[
                        sd_notify::NotifyState::Reloading,
                        sd_notify::NotifyState::monotonic_usec_now()
                            .unwrap_or(sd_notify::NotifyState::Custom("MONOTONIC_USEC=0")),
                    ]);
                    let root_before = self.config.content_dir.clone();
                    self.step(Step::Reloading);
                    self.reload(config_path.as_deref(), &overrides);
                    self.step(Step::Reading);
                    if self.config.content_dir != root_before {
                        watcher = start_watcher(&self.config.content_dir, &tx);
                        pending = Pending::default();
                    }
                    self.rescan("reload");
                    notify(&[sd_notify::NotifyState::Ready]);
                    continue;
                }
                Some(Control::Repair) => {
                    self.repair();
                    continue;
                }
                Some(Control::ConfirmDrop) => {
                    if self.drop_guard.confirm(&self.metrics.health) {
                        self.republish("removal confirmed");
                    }
                    continue;
                }
                None => {}
            }

            let (batch, rescan) =
                pending.take_ready(now, self.config.debounce, self.config.settle_max);
            let mut changed = false;
            let mut reason = "change";
            let mut verified = false;
            if let Some(why) = rescan {
                tracing::warn!("{why}: rescanning the content directory");
                changed |= self.scan_or_keep(&mut root_missing);
                reason = "rescan";
            } else if !batch.is_empty() {
                let root_hit = watcher
                    .as_ref()
                    .is_some_and(|w| batch.iter().any(|p| p == w.root()));
                if root_hit {
                    // The content directory itself was removed or created.
                    if let Some(w) = watcher.as_mut() {
                        w.root_lost();
                        if w.ensure_root() {
                            tracing::info!("content directory is back; watching it again");
                        }
                    }
                    changed |= self.scan_or_keep(&mut root_missing);
                } else {
                    // Events name paths under the watched (canonical) root;
                    // the library and its messages use the configured one.
                    let batch: Vec<PathBuf> = match watcher.as_ref() {
                        Some(w) => batch
                            .into_iter()
                            .map(|p| match p.strip_prefix(w.root()) {
                                Ok(rel) => self.lib.root().join(rel),
                                Err(_) => p,
                            })
                            .collect(),
                        None => batch,
                    };
                    match self.lib.apply(&batch) {
                        Ok(c) => changed |= c,
                        Err(_) => changed |= self.scan_or_keep(&mut root_missing),
                    }
                }
            }
            if Instant::now() >= verify_at {
                verify_at = Instant::now() + self.config.verify_interval;
                verified = true;
                if let Some(w) = watcher.as_mut() {
                    if w.ensure_root() {
                        tracing::info!("content directory watch restored");
                    }
                }
                if let Some(shared) = &self.shared {
                    shared
                        .metrics
                        .rescans
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if self.scan_or_keep(&mut root_missing) {
                    tracing::info!("verification pass found changes the watcher missed");
                    changed = true;
                    reason = "verification";
                }
            }
            let released = self.next_release.is_some_and(|t| t <= Utc::now());
            if changed || released {
                self.republish(if released && !changed {
                    "scheduled article"
                } else {
                    reason
                });
            }
            // What failed to be written is tried again: every
            // `write_retry_secs`, and at each verification pass.
            if self.writes_failing() && (Instant::now() >= retry_at || verified) {
                retry_at = Instant::now() + self.config.write_retry;
                self.retry_writes();
            }
        }
        drop(watcher);
        self.step(Step::SavingState);
        self.save_manifest();
        // Written whole, so the next start reads one file.
        self.lib
            .state_mut()
            .compact(&self.config.state_dir)
            .context("saving state at shutdown")?;
        Ok(())
    }

    /// Has a request that finds a file-backed page damaged wake the loop
    /// (through `tx`) to write it again.
    pub(super) fn on_damage(&self, tx: std::sync::mpsc::Sender<Msg>) {
        self.builder.damage().on_report(move || {
            let _ = tx.send(Msg::Control(Control::Repair));
        });
    }

    /// Renders and writes again the pages requests found damaged: those
    /// whose file still fails its check against the snapshot served now
    /// (a request that raced a publish reports a page that is fine).
    fn repair(&mut self) {
        let reported = self.builder.damage().take();
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let site = shared.site.load_full();
        let damaged: Vec<String> = reported
            .into_iter()
            .filter(|r| site.get(r).is_some_and(|a| a.gzip().is_err()))
            .collect();
        if damaged.is_empty() {
            return;
        }
        tracing::warn!(
            pages = damaged.len(),
            first = %damaged[0],
            "pages changed or removed in the output directory behind Herald's back: writing them again"
        );
        self.builder.forget(&damaged);
        self.republish("repair");
    }

    /// Full scan; a missing root keeps the last snapshot and is logged once.
    fn scan_or_keep(&mut self, root_missing: &mut bool) -> bool {
        match self.lib.scan() {
            Ok(c) => {
                if std::mem::take(root_missing) {
                    tracing::info!(path = %self.config.content_dir.display(), "content directory is readable again");
                }
                c
            }
            Err(e) => {
                if !*root_missing {
                    tracing::error!("{e}; keeping the last published feeds");
                }
                *root_missing = true;
                false
            }
        }
    }

    fn rescan(&mut self, reason: &str) {
        let mut missing = false;
        self.scan_or_keep(&mut missing);
        self.republish(reason);
    }

    /// SIGHUP: a valid new config takes effect; an invalid one is logged
    /// and the running one kept.
    fn reload(&mut self, path: Option<&std::path::Path>, overrides: &Overrides) {
        let new = match Config::load(path) {
            Ok(c) => overrides.apply(c),
            Err(e) => {
                tracing::error!("reload failed, keeping the running configuration: {e}");
                return;
            }
        };
        for key in self.config.restart_needed(&new) {
            tracing::warn!("config `{key}` changed: takes effect after a restart");
        }
        // The hubs feeds name are those running: the ones Herald started with.
        let mut new = new;
        new.websub = self.config.websub.clone();
        if new.content_dir != self.config.content_dir || new.state_dir != self.config.state_dir {
            match open_library(&new, true) {
                Ok(mut lib) => {
                    beat_while_reading(&mut lib, &self.metrics);
                    self.lib = lib;
                }
                Err(e) => {
                    tracing::error!("reload failed, keeping the running configuration: {e:#}");
                    return;
                }
            }
        } else {
            let authority = self
                .lib
                .state_mut()
                .authority(new.id_authority.as_deref(), &new.default_authority());
            self.lib.set_ctx(parse_ctx(&new), authority);
            self.lib
                .set_follow_external_symlinks(new.follow_external_symlinks);
            self.lib.set_max_former_slugs(new.max_former_slugs);
            self.lib.set_max_asset_bytes(new.max_asset_bytes);
        }
        tracing::info!(config = %path.map_or_else(|| "(defaults)".into(), |p| p.display().to_string()), "configuration reloaded");
        self.metrics.health.set_stall(new.publish_stall);
        self.drop_guard.set_max_drop(new.max_drop);
        self.config = new;
    }
}

/// Settles the view as of `now` and saves what settling changed in the
/// state before anything shows it. When the state cannot be saved, the ids
/// made up for new articles are taken back and the view settled again
/// without those articles (held back, [`Library::hold_new_articles`]).
fn settle_and_save(
    lib: &mut Library,
    now: chrono::DateTime<Utc>,
    config: &Config,
    log: &mut SinkLog,
    health: &Health,
    defer: Option<&mut Option<Syncing>>,
) -> crate::library::View {
    health.busy(Step::Settling);
    // Tried afresh each time: the state may be writable again.
    lib.state_mut().allow_new_ids();
    let view = lib.view(now);
    // Fixes the feed-id prefix at first publication, so it is saved too.
    settings(config, lib.state_mut(), &view.articles);
    if !save_state(lib, &config.state_dir, log, health, defer) && lib.hold_new_articles() > 0 {
        health.busy(Step::Settling);
        return lib.view(now);
    }
    view
}

/// The fsync of a journal append, running beside the render.
type Syncing = std::thread::JoinHandle<Result<(), crate::state::StateError>>;

/// Saves the state if it changed; returns whether it is on disk — or,
/// with `defer`, written and being synced by the thread left there (a
/// sync an earlier pass left there is waited for first).
fn save_state(
    lib: &mut Library,
    dir: &std::path::Path,
    log: &mut SinkLog,
    health: &Health,
    defer: Option<&mut Option<Syncing>>,
) -> bool {
    health.busy(Step::SavingState);
    let Some(slot) = defer else {
        return saved(lib.state_mut().save(dir), log, health);
    };
    if let Some(earlier) = slot.take() {
        if !saved(synced(earlier, dir), log, health) {
            lib.state_mut().sync_failed();
        }
    }
    match lib.state_mut().save_unsynced(dir) {
        Ok(None) => saved(Ok(()), log, health),
        Ok(Some(pending)) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("herald-sync".into())
                .spawn(move || rx.recv().map_or(Ok(()), crate::state::Unsynced::sync));
            match spawned {
                Ok(thread) if tx.send(pending).is_ok() => {
                    *slot = Some(thread);
                    true
                }
                // No thread to sync it: the file is written whole, here.
                _ => {
                    lib.state_mut().sync_failed();
                    saved(lib.state_mut().save(dir), log, health)
                }
            }
        }
        Err(e) => saved(Err(e), log, health),
    }
}

/// Waits for a sync [`save_state`] left running.
fn synced(sync: Syncing, dir: &std::path::Path) -> Result<(), crate::state::StateError> {
    sync.join().unwrap_or_else(|_| {
        Err(crate::state::StateError::Io {
            path: dir.join(crate::state::JOURNAL),
            error: std::io::Error::other("the thread syncing it panicked"),
        })
    })
}

/// Reports the outcome of saving the state; returns whether it is on disk.
fn saved(result: Result<(), crate::state::StateError>, log: &mut SinkLog, health: &Health) -> bool {
    match result {
        Ok(()) => {
            log.worked(health, || "saving the state works again".into());
            true
        }
        Err(e) => {
            let kind = match &e {
                crate::state::StateError::Io { error, .. } => error.kind(),
                crate::state::StateError::Corrupt { .. }
                | crate::state::StateError::CorruptJournal { .. } => {
                    std::io::ErrorKind::InvalidData
                }
            };
            log.failed(
                health,
                kind,
                || format!("cannot save state: {e}"),
                e.to_string(),
            );
            false
        }
    }
}

/// A site builder with floors from the output directory that stamps the
/// loop's heartbeat after each document it renders, so that re-rendering
/// a large archive (a settings change) counts as progress, not a stall.
/// A duration in milliseconds to a tenth, as logs show it.
fn round_ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn watched_builder(
    config: &Config,
    metrics: &Arc<Metrics>,
    damage: Arc<crate::site::Damage>,
) -> SiteBuilder {
    let mut b = SiteBuilder::with_floors_from(&config.output_dir)
        .file_backed(&config.output_dir, &config.state_dir)
        .with_damage(damage);
    let metrics = Arc::clone(metrics);
    b.on_progress(move || metrics.health.beat());
    b
}

/// Has `lib` stamp the loop's heartbeat after each file it reads, so that
/// a long rescan counts as progress, not as a stall.
fn beat_while_reading(lib: &mut Library, metrics: &Arc<Metrics>) {
    let metrics = Arc::clone(metrics);
    lib.on_progress(move || metrics.health.beat());
}

/// The failure state of one place the loop writes to: an error is logged
/// when writing there starts failing or fails in a new way, not on every
/// publish while a disk stays full, and one line says when it works again;
/// `/healthz` and `/metrics` show the failure meanwhile. Output and state
/// each have their own, so that neither hides nor re-announces the other.
#[derive(Debug)]
struct SinkLog {
    sink: Sink,
    /// The kind of the failure being reported.
    failing: Option<std::io::ErrorKind>,
}

impl SinkLog {
    fn new(sink: Sink) -> SinkLog {
        SinkLog {
            sink,
            failing: None,
        }
    }

    /// A write failed with `kind`; `line` is logged (as an error) if
    /// that is news. Returns whether it was.
    fn failed(
        &mut self,
        health: &Health,
        kind: std::io::ErrorKind,
        line: impl FnOnce() -> String,
        why: String,
    ) -> bool {
        let news = self.failing != Some(kind);
        if news {
            tracing::error!("{}", line());
        }
        self.failing = Some(kind);
        health.set_failing(self.sink, Some(why));
        news
    }

    /// A write worked; `line` is logged if it had been failing. Returns
    /// whether it was.
    fn worked(&mut self, health: &Health, line: impl FnOnce() -> String) -> bool {
        let healed = self.failing.take().is_some();
        if healed {
            tracing::info!("{}", line());
            health.set_failing(self.sink, None);
        }
        healed
    }
}

/// The routes whose requests count as readers polling a feed: every
/// feed (main, category, tag) in every format, but not an archive page,
/// which a reader fetches once to fill in history.
pub(super) fn feed_routes(site: &crate::site::Site) -> impl Iterator<Item = &str> {
    // Feeds' current documents are held in memory; closed archive pages
    // are files, and not counted.
    site.docs()
        .filter(|(r, a)| {
            a.cors
                && !r.contains("/archive/")
                && [
                    "application/rss+xml",
                    "application/atom+xml",
                    "application/feed+json",
                ]
                .iter()
                .any(|t| a.content_type.starts_with(t))
        })
        .map(|(r, _)| r)
}

/// The feeds of `site` (the routes that name hubs) whose file under `dir`
/// exists and holds other bytes: what changed since the last run wrote
/// them. A feed with no file yet (a first start, a new category) is new
/// to every hub and subscriber, not changed.
fn feeds_changed_on_disk(site: &crate::site::Site, dir: &std::path::Path) -> Vec<String> {
    site.routes()
        .filter(|(_, a)| a.link.is_some())
        .filter_map(|(route, a)| {
            let path = dir.join(crate::site::file_of(route));
            let meta = std::fs::symlink_metadata(&path).ok()?;
            // Herald's own regular files only; a size that differs is a
            // change without reading.
            if !meta.is_file() {
                return None;
            }
            let Ok(body) = a.body() else {
                return Some(route.to_string());
            };
            let same = meta.len() == body.len() as u64
                && std::fs::read(&path).is_ok_and(|old| old == body);
            (!same).then(|| route.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    /// A sink's failure is news once per kind, its healing once; the
    /// other sink's state is its own.
    #[test]
    fn one_line_per_failure_and_per_healing() {
        let h = Health::default();
        let (mut out, mut state) = (SinkLog::new(Sink::Output), SinkLog::new(Sink::State));
        let full = || ErrorKind::StorageFull;
        assert!(!out.worked(&h, String::new), "nothing to heal");
        assert!(out.failed(&h, full(), String::new, "full".into()));
        assert!(!out.failed(&h, full(), String::new, "full".into()));
        assert!(state.failed(&h, ErrorKind::ReadOnlyFilesystem, String::new, "ro".into()));
        assert!(
            !out.failed(&h, full(), String::new, "full".into()),
            "state did not reset output"
        );
        assert!(out.failed(
            &h,
            ErrorKind::PermissionDenied,
            String::new,
            "denied".into()
        ));
        assert!(h.failing(Sink::Output) && h.failing(Sink::State));
        assert!(out.worked(&h, String::new));
        assert!(!out.worked(&h, String::new));
        assert!(!h.failing(Sink::Output) && h.failing(Sink::State));
        assert!(state.worked(&h, String::new));
        assert_eq!(h.check(), crate::health::Verdict::Ok);
    }
}
