//! The one-shot commands: `herald build` (publish once into the output
//! directory, skipped when nothing changed since the last clean build) and
//! `herald check` (parse and report, write nothing).

use std::time::{Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::{
    guard, init_logging, open_library, settings, EXIT_BAD_CONTENT, EXIT_CONTENT_DIR, EXIT_OK,
    EXIT_RUNTIME,
};
use crate::config::Config;
use crate::library::{Library, View};
use crate::site::{self, SiteBuilder};

/// Fixes the ids and `updated` of everything published now and saves
/// them, so no file written next shows an id the state file lacks.
fn save_ids(c: &Config, lib: &mut Library, now: DateTime<Utc>) -> Result<(), (u8, anyhow::Error)> {
    let first = lib.view(now);
    settings(c, lib.state_mut(), &first.articles);
    drop(first);
    lib.state_mut()
        .save(&c.state_dir)
        .map_err(|e| (EXIT_RUNTIME, e.into()))
}

/// Renders the whole library once through a builder from `new_builder`
/// (a fresh one again when the guard rejected an article whose rendering
/// panicked).
fn render_all(
    c: &Config,
    lib: &mut Library,
    now: DateTime<Utc>,
    new_builder: impl Fn() -> SiteBuilder,
) -> (View, site::Site, SiteBuilder) {
    let mut builder = new_builder();
    let (view, _, (site, _)) = guard::render_guarded(
        lib,
        |lib| lib.view(now),
        |lib, v| settings(c, lib.state_mut(), &v.articles),
        |v, s, fresh| {
            if fresh {
                builder = new_builder();
            }
            builder.set_former(&v.moved, &v.gone);
            builder.set_labels_known(&v.labels_known);
            builder.set_media(&v.media);
            builder.build(&v.articles, v.rejected.len(), s, SystemTime::now())
        },
    );
    (view, site, builder)
}

fn report(view: &View) {
    for e in &view.rejected {
        tracing::error!("{e}");
    }
    for w in &view.warnings {
        tracing::warn!("{w}");
    }
}

/// `herald check`: parse everything, print every problem, write nothing.
pub fn check_command(c: &Config) -> u8 {
    init_logging(c);
    // Every file parsed, the cache neither read nor written: `check` is
    // the witness of what the parser makes of the files now, and writes
    // nothing.
    let mut lib = match open_library(c, false) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("herald: {e:#}");
            return EXIT_RUNTIME;
        }
    };
    if let Err(e) = lib.scan() {
        eprintln!("herald: {e}");
        return EXIT_CONTENT_DIR;
    }
    let view = lib.view(Utc::now());
    for e in &view.rejected {
        println!("error: {e}");
    }
    for w in &view.warnings {
        println!("warning: {w}");
    }
    println!(
        "{} ok, {} rejected, {}",
        count(view.articles.len(), "article", "articles"),
        count(view.rejected.len(), "file", "files"),
        count(view.warnings.len(), "warning", "warnings")
    );
    if view.rejected.is_empty() {
        EXIT_OK
    } else {
        EXIT_BAD_CONTENT
    }
}

/// `herald build`: publish once into the output directory.
pub fn build_command(c: &Config) -> u8 {
    init_logging(c);
    match build_once(c) {
        Ok(0) => EXIT_OK,
        Ok(_) => EXIT_BAD_CONTENT,
        Err((code, e)) => {
            eprintln!("herald: {e:#}");
            code
        }
    }
}

/// Hash of everything in the config that shapes the output, and of
/// Herald's version (a new version may render differently).
fn settings_fingerprint(c: &Config) -> String {
    let text = format!("{} {c:?}", env!("CARGO_PKG_VERSION"));
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// One `herald build`; returns the number of rejected files.
fn build_once(c: &Config) -> Result<usize, (u8, anyhow::Error)> {
    let started = Instant::now();
    let _state_lock = super::lock::lock_state(&c.state_dir).map_err(|e| (EXIT_RUNTIME, e))?;
    let mut lib = open_library(c, true).map_err(|e| (EXIT_RUNTIME, e))?;
    // Fingerprint before reading: a file written during the build makes
    // the next build do the work again.
    let content = crate::library::tree_fingerprint(&c.content_dir, c.follow_external_symlinks)
        .map_err(|e| (EXIT_CONTENT_DIR, e.into()))?;
    let content = format!("{content:032x}");
    let settings_fp = settings_fingerprint(c);
    if let Some(last) = lib.state_mut().last_build() {
        let due = last.next_release.is_some_and(|t| t <= Utc::now());
        if last.content == content
            && last.settings == settings_fp
            && !due
            && last.output == format!("{:032x}", site::output_fingerprint(&c.output_dir))
        {
            for w in &last.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(
                articles = last.articles,
                rejected = 0,
                written = 0,
                removed = 0,
                output = %c.output_dir.display(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "build finished: content, settings and output unchanged since the last build"
            );
            return Ok(0);
        }
    }
    lib.scan().map_err(|e| (EXIT_CONTENT_DIR, e.into()))?;
    let scan = lib.last_scan();
    let now = Utc::now();
    // Ids and `updated` on disk before any file shows them (once the
    // output directory is there to take the files).
    std::fs::create_dir_all(&c.output_dir).map_err(|e| {
        (
            EXIT_RUNTIME,
            anyhow::anyhow!("writing {}: {e}", c.output_dir.display()),
        )
    })?;
    save_ids(c, &mut lib, now)?;
    // Every document goes to disk as it is rendered (article pages first)
    // and is dropped; `write_to` then only removes what is gone.
    let (view, mut site, builder) = render_all(c, &mut lib, now, || {
        SiteBuilder::streaming_to(&c.output_dir)
    });
    report(&view);
    let mut written = site.take_stream_report();
    let rest = site::write_to(&site, &c.output_dir, None, &|| {});
    written.written += rest.written;
    written.removed += rest.removed;
    written.errors.extend(rest.errors);
    if let Some(e) = written.errors.first() {
        return Err((
            EXIT_RUNTIME,
            anyhow::anyhow!(
                "writing {}: {e} ({} failed)",
                c.output_dir.display(),
                count(written.errors.len(), "file", "files")
            ),
        ));
    }
    // Only a build without rejected files may be skipped next time: those
    // must be reported (and fail the build) again.
    let record = view.rejected.is_empty().then(|| crate::state::BuildRecord {
        content,
        settings: settings_fp,
        output: format!("{:032x}", site::output_fingerprint(&c.output_dir)),
        articles: view.articles.len(),
        next_release: view.next_release.map(|t| t.fixed_offset()),
        warnings: view.warnings.clone(),
    });
    lib.state_mut().set_last_build(record);
    // The labels published, so that `serve` answers 410 for one gone.
    lib.state_mut().note_labels(builder.labels());
    // What `serve` then finds on disk needs no rendering.
    if let Err(e) = builder.save_manifest(&c.state_dir) {
        tracing::warn!(dir = %c.state_dir.display(), "cannot save the site manifest ({e}); the next start of serve renders every page");
    }
    lib.state_mut()
        .save(&c.state_dir)
        .map_err(|e| (EXIT_RUNTIME, e.into()))?;
    tracing::info!(
        articles = view.articles.len(),
        rejected = view.rejected.len(),
        written = written.written,
        removed = written.removed,
        parsed = scan.parsed,
        from_cache = scan.from_cache,
        scan_ms = scan.elapsed.as_millis() as u64,
        output = %c.output_dir.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "build finished"
    );
    Ok(view.rejected.len())
}

/// `herald publish [--dry-run]`: one pass mirroring the current content
/// to the `[publish] to` target, printing each object uploaded and
/// deleted. With `dry_run` nothing changes: not the bucket, not the state
/// file, not the output directory.
pub fn publish_command(c: &Config, dry_run: bool) -> u8 {
    init_logging(c);
    let Some(target) = &c.publish else {
        eprintln!("herald: publish: no target configured: set `to` in the [publish] table of the config file");
        return crate::daemon::EXIT_CONFIG;
    };
    if let Some(line) = c.publish_base_url_problem() {
        eprintln!("herald: {line}");
        return crate::daemon::EXIT_CONFIG;
    }
    // A dry run writes no state, so it needs no lock.
    let _state_lock = if dry_run {
        None
    } else {
        match super::lock::lock_state(&c.state_dir) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("herald: {e:#}");
                return EXIT_RUNTIME;
            }
        }
    };
    let started = Instant::now();
    let result = (|| -> Result<(crate::site::Site, View), (u8, anyhow::Error)> {
        // A dry run writes nothing, not even the parse cache.
        let mut lib = open_library(c, !dry_run).map_err(|e| (EXIT_RUNTIME, e))?;
        lib.scan().map_err(|e| (EXIT_CONTENT_DIR, e.into()))?;
        let now = Utc::now();
        if !dry_run {
            // Ids and `updated` on disk before the bucket shows them.
            save_ids(c, &mut lib, now)?;
        }
        let (view, site, _) = render_all(c, &mut lib, now, || {
            SiteBuilder::with_floors_from(&c.output_dir)
        });
        Ok((site, view))
    })();
    let (site, view) = match result {
        Ok(v) => v,
        Err((code, e)) => {
            eprintln!("herald: {e:#}");
            return code;
        }
    };
    report(&view);
    let mut say = |line: String| println!("{line}");
    match crate::mirror::publish_once(target, &site, Some(&c.state_dir), dry_run, &mut say) {
        Ok(r) => {
            println!(
                "{}{} uploaded ({} bytes), {} deleted, {} routes in {} ({} ms)",
                if dry_run { "dry run: would have " } else { "" },
                r.uploaded,
                r.bytes,
                r.deleted,
                site.len(),
                target.to,
                started.elapsed().as_millis()
            );
            if view.rejected.is_empty() {
                EXIT_OK
            } else {
                EXIT_BAD_CONTENT
            }
        }
        Err(e) => {
            eprintln!("herald: publish: {e}");
            EXIT_RUNTIME
        }
    }
}

/// `herald confirm-deletes`: the operator's word that the site really
/// shrank, given for the deletions `max_deletes` last held back (listed in
/// `state/bucket.json`) and for no others. Recorded in that file only
/// (nothing else is touched, so it is safe beside a running `serve`); the
/// next pass whose deletions are all among them makes them. With nothing
/// held back there is nothing to confirm: it says so, writes nothing and
/// exits 0.
pub fn confirm_deletes_command(c: &Config) -> u8 {
    init_logging(c);
    let Some(target) = &c.publish else {
        eprintln!("herald: confirm-deletes: no target configured: set `to` in the [publish] table of the config file");
        return crate::daemon::EXIT_CONFIG;
    };
    let mut guard = crate::mirror::Guard::open(Some(&c.state_dir), target);
    match guard.request_confirmation() {
        Ok(0) => println!(
            "nothing to confirm: no pass to {} has held deletions back (none listed in {}); a confirmation covers only deletions already held back",
            target.to,
            c.state_dir.join(crate::mirror::GUARD_FILE).display()
        ),
        Ok(n) => println!(
            "confirmed: {}: the next pass to {} whose deletions are all among them makes them (a running `herald serve` within a second; otherwise the next `herald publish`), and the bucket's new size becomes its mark; a pass that would delete anything else is still held back",
            count(n, "deletion max_deletes held back", "deletions max_deletes held back"),
            target.to
        ),
        Err(e) => {
            eprintln!(
                "herald: confirm-deletes: cannot write {}: {e}",
                c.state_dir.join(crate::mirror::GUARD_FILE).display()
            );
            return EXIT_RUNTIME;
        }
    }
    EXIT_OK
}

/// `1 article`, `2 articles`: a count with its noun in agreement.
pub(super) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
