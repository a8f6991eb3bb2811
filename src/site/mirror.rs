//! The disk mirror of a snapshot: [`write_to`] writes each route's file
//! and its `.gz` twin under the output directory, only when its bytes
//! changed, each through a temp file and a rename, and removes the files
//! of routes that are gone ([`remove_routes`], or a full prune). This is
//! the "changed/removed" contract any other mirror of the site shares.
//! Uses the snapshot's types only.

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use super::{file_of, Asset, Site};

/// A file under the output directory that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub error: std::io::Error,
}

/// What [`write_to`] did.
#[derive(Debug, Default)]
pub struct WriteReport {
    /// Files (not counting `.gz` twins) whose bytes changed.
    pub written: usize,
    /// Files removed because their route is gone.
    pub removed: usize,
    /// Files that failed.
    pub errors: Vec<WriteError>,
}

/// Mirrors `site` under `dir`. `only` limits the work to those routes (the
/// ones a rebuild changed); `None` checks every route against the disk.
/// Each file is compared with what is on disk and written only if its bytes
/// differ, through a temp file and a rename so a reader (or nginx) never
/// sees half a file; its mtime is set to the asset's `Last-Modified`.
/// Files of listing, archive, category and tag routes that are gone are
/// removed; under `articles/`, any file that is no route's.
/// `progress` is called after each route (from the writing threads), so a
/// long mirror can be told from a stuck one.
pub fn write_to(
    site: &Site,
    dir: &Path,
    only: Option<&[String]>,
    progress: &(dyn Fn() + Sync),
) -> WriteReport {
    let routes: Vec<(&str, &Arc<Asset>)> = match only {
        Some(list) => list
            .iter()
            .filter_map(|r| site.file(r).map(|a| (r.as_str(), a)))
            .collect(),
        None => site.routes().collect(),
    };
    let results: Vec<Result<bool, WriteError>> = routes
        .par_iter()
        .map(|(route, asset)| {
            let r = write_asset(dir, route, asset);
            progress();
            r
        })
        .collect();
    let mut report = WriteReport::default();
    for r in results {
        match r {
            Ok(true) => report.written += 1,
            Ok(false) => {}
            Err(e) => report.errors.push(e),
        }
    }
    if only.is_none() {
        let pruned = prune_to(site, dir);
        report.removed += pruned.removed;
        report.errors.extend(pruned.errors);
    }
    report
}

/// Removes the files under `dir` that belong to no route of `site` (see
/// [`write_to`]), writing nothing.
pub fn prune_to(site: &Site, dir: &Path) -> WriteReport {
    let mut report = WriteReport::default();
    {
        // Each route's file, and whether its uncompressed file is kept
        // (not for a closed archive page, stored only as its `.gz`; a
        // streamed route's files were settled when it was written).
        let keep: HashMap<PathBuf, bool> = site
            .routes()
            .map(|(r, a)| (file_of(r), !a.gzip_only_on_disk()))
            .chain(site.streamed().iter().map(|r| (file_of(r), true)))
            .collect();
        // Everything under articles/ is Herald's (pages, redirect pages,
        // referenced files); elsewhere only its feed and page files are.
        for (sub, all) in [
            ("articles", true),
            ("categories", false),
            ("tags", false),
            ("page", false),
            ("archive", false),
        ] {
            let (removed, _, errors) = prune(dir, &dir.join(sub), &keep, all);
            report.removed += removed;
            report.errors.extend(errors);
        }
    }
    report
}

/// A fingerprint of everything under `dir` from a stat-only walk: each
/// file's path, size and mtime (Herald sets every mtime it writes to the
/// file's Last-Modified, so an edit or removal by anyone else shows).
pub fn output_fingerprint(dir: &Path) -> u128 {
    let mut files = Vec::new();
    stat_walk(dir, Path::new(""), &mut files);
    files.sort_unstable();
    let mut h = Xxh3::new();
    for (p, len, t) in &files {
        h.update(p);
        h.update(&len.to_le_bytes());
        h.update(&t.to_le_bytes());
    }
    h.update(&(files.len() as u64).to_le_bytes());
    h.digest128()
}

/// Path (relative to the walk's root), size and mtime of every regular file
/// under `dir`, subdirectories walked in parallel (an output tree has one
/// per article). Symlinks are not followed.
fn stat_walk(dir: &Path, rel: &Path, out: &mut Vec<(Vec<u8>, u64, u128)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut subdirs = Vec::new();
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        let rel = rel.join(e.file_name());
        if t.is_dir() {
            subdirs.push((e.path(), rel));
        } else if t.is_file() {
            let Ok(m) = e.metadata() else { continue };
            let Some(t) = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            else {
                continue;
            };
            out.push((
                rel.into_os_string().into_encoded_bytes(),
                m.len(),
                t.as_nanos(),
            ));
        }
    }
    let found: Vec<Vec<(Vec<u8>, u64, u128)>> = subdirs
        .par_iter()
        .map(|(d, r)| {
            let mut v = Vec::new();
            stat_walk(d, r, &mut v);
            v
        })
        .collect();
    out.extend(found.into_iter().flatten());
}

/// Removes the files (and `.gz` twins) of routes that are gone, and their
/// directories when empty — the incremental counterpart of the full prune
/// in [`write_to`]. Files already gone are fine; others that cannot be
/// removed are errors in the report.
pub fn remove_routes(dir: &Path, routes: &[String]) -> WriteReport {
    let mut report = WriteReport::default();
    let mut remove = |path: PathBuf| match std::fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => {
            report.errors.push(WriteError { path, error });
            false
        }
    };
    let mut removed = 0;
    for r in routes {
        let path = dir.join(file_of(r));
        if remove(path.clone()) {
            removed += 1;
        }
        remove(gz_path(&path));
        // Folders left empty (a page's, a referenced file's), up to `dir`.
        let mut parent = path.parent();
        while let Some(p) = parent.filter(|p| *p != dir && p.starts_with(dir)) {
            if std::fs::remove_dir(p).is_err() {
                break; // not empty (only an empty folder can be removed)
            }
            parent = p.parent();
        }
    }
    report.removed = removed;
    report
}

/// True when the `.gz` twin on disk is byte for byte the asset's gzip form
/// and the plain file exists with the right length (or, for a document
/// stored only gzipped, does not exist): gzip output is deterministic, so
/// equal twins mean equal documents.
pub(super) fn same_gzip_on_disk(dir: &Path, route: &str, asset: &Asset) -> bool {
    let path = dir.join(file_of(route));
    let plain_ok = if asset.gzip_only_on_disk() {
        std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    } else {
        std::fs::metadata(&path).is_ok_and(|m| m.len() == asset.len as u64)
    };
    if asset.file() == Some(gz_path(&path).as_path()) {
        // A page served from these very files: their sizes are checked
        // here, their bytes each time one is sent.
        return plain_ok
            && std::fs::metadata(gz_path(&path)).is_ok_and(|m| m.len() == asset.gzip_len as u64);
    }
    if !asset.has_gzip() {
        // No twin: the file itself is compared.
        return plain_ok
            && asset.body().is_ok_and(|body| {
                std::fs::read(&path).is_ok_and(|b| crate::sendfile::equals(&body, &b))
            });
    }
    plain_ok
        && asset.gzip().is_ok_and(|gz| {
            std::fs::read(gz_path(&path))
                .is_ok_and(|b| b.len() == asset.gzip_len && crate::sendfile::equals(&gz, &b))
        })
}

/// True when the file at `path` carries `t` as its mtime (to the second).
/// Each file is given its document's `Last-Modified`, and a document
/// whose bytes change always gets a new one, so a plain file left stale
/// beside a current twin (a write that failed half way) is told by it.
fn dated(path: &Path, t: SystemTime) -> bool {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|m| secs(m) == secs(t))
}

pub(super) fn write_asset(dir: &Path, route: &str, asset: &Asset) -> Result<bool, WriteError> {
    let rel = file_of(route);
    let path = dir.join(&rel);
    let gz = gz_path(&path);
    let gzip_only = asset.gzip_only_on_disk();
    let last = if gzip_only { &gz } else { &path };
    if same_gzip_on_disk(dir, route, asset) && dated(last, asset.last_modified) {
        return Ok(false);
    }
    let err = |error| WriteError {
        path: path.clone(),
        error,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    // The twin first: once the plain file is new, the route is complete.
    // If the plain file then fails (a full disk), its old date tells the
    // next pass to write it again ([`dated`]).
    let damaged = |e: super::Damaged| WriteError {
        path: e.path,
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e.why),
    };
    if asset.has_gzip() {
        let bytes = asset.gzip().map_err(damaged)?;
        atomic_write(&gz, &bytes, asset.last_modified).map_err(|error| WriteError {
            path: gz.clone(),
            error,
        })?;
    }
    if gzip_only {
        // Its `.gz` is its one file: an uncompressed one left from an
        // earlier layout goes.
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
            _ => Ok(true),
        };
    }
    let bytes = asset.body().map_err(damaged)?;
    atomic_write(&path, &bytes, asset.last_modified).map_err(err)?;
    Ok(true)
}

pub(super) fn gz_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".gz");
    PathBuf::from(s)
}

/// Writes `bytes` to a temp file beside `path`, sets its mtime, renames it
/// over `path`.
pub fn atomic_write(path: &Path, bytes: &[u8], mtime: SystemTime) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.herald-tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        crate::sendfile::write_all(&mut f, bytes)?;
        f.set_modified(mtime)?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes the files of ours under `dir` whose route is not in `keep`, and
/// directories left empty; subdirectories in parallel. Ours: every file
/// with `all`, else the `.html`, `.xml` and `.json` files and their twins.
/// Returns how many documents (not counting `.gz` twins) were removed,
/// whether `dir` is now empty (only then is removing it worth a system
/// call), and the files that could not be removed.
fn prune(
    root: &Path,
    dir: &Path,
    keep: &HashMap<PathBuf, bool>,
    all: bool,
) -> (usize, bool, Vec<WriteError>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, false, Vec::new());
    };
    let mut removed = 0;
    let mut left = 0;
    let mut errors = Vec::new();
    let mut subdirs = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            subdirs.push(p);
            continue;
        }
        let Ok(rel) = p.strip_prefix(root) else {
            left += 1;
            continue;
        };
        let name = rel.to_string_lossy();
        let twin = name.strip_suffix(".gz");
        let base = twin.unwrap_or(&name);
        let ours =
            all || base.ends_with(".html") || base.ends_with(".xml") || base.ends_with(".json");
        // A `.gz` file may itself be a published file (an archive).
        let kept = match keep.get(Path::new(base)) {
            Some(&plain) => twin.is_some() || plain,
            None => twin.is_some() && keep.contains_key(Path::new(name.as_ref())),
        };
        if kept || !ours {
            left += 1;
            continue;
        }
        match std::fs::remove_file(&p) {
            Ok(()) => removed += usize::from(!name.ends_with(".gz")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                left += 1;
                errors.push(WriteError { path: p, error });
            }
        }
    }
    subdirs
        .par_iter()
        .map(|d| {
            let (n, empty, errors) = prune(root, d, keep, all);
            // remove_dir only succeeds when empty
            let left = usize::from(!(empty && std::fs::remove_dir(d).is_ok()));
            (n, left, errors)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .for_each(|(n, l, e)| {
            removed += n;
            left += l;
            errors.extend(e);
        });
    (removed, left == 0, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{articles, settings};
    use crate::site::SiteBuilder;
    use std::time::Duration;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// The output fingerprint sees every file at any depth, its size and
    /// its mtime, and nothing else (not the order of directory entries).
    #[test]
    fn output_fingerprint_sees_changes() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let files = [
            "index.html",
            "articles/x/index.html",
            "articles/y/index.html.gz",
        ];
        for d in [a.path(), b.path()] {
            let names: Vec<&str> = if d == a.path() {
                files.to_vec()
            } else {
                files.iter().rev().copied().collect()
            };
            for f in names {
                let p = d.join(f);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                atomic_write(&p, f.as_bytes(), t(1_700_000_000)).unwrap();
            }
        }
        let fp = output_fingerprint(a.path());
        assert_eq!(fp, output_fingerprint(b.path()), "same tree, other order");
        let deep = b.path().join("articles/y/index.html.gz");
        atomic_write(&deep, b"articles/y/index.html.gz", t(1_700_000_001)).unwrap();
        assert_ne!(fp, output_fingerprint(b.path()), "mtime");
        atomic_write(&deep, b"articles/y/index.html.gz!", t(1_700_000_000)).unwrap();
        assert_ne!(fp, output_fingerprint(b.path()), "size");
        atomic_write(&deep, b"articles/y/index.html.gz", t(1_700_000_000)).unwrap();
        assert_eq!(fp, output_fingerprint(b.path()), "restored");
        std::fs::create_dir_all(b.path().join("articles/z")).unwrap();
        assert_eq!(fp, output_fingerprint(b.path()), "an empty directory");
        std::fs::write(b.path().join("articles/z/index.html"), "").unwrap();
        assert_ne!(fp, output_fingerprint(b.path()), "a new file");
    }

    /// Writing creates every file with a .gz twin; a second write with the
    /// same snapshot writes nothing; a gone article's page is removed (and
    /// someone else's file is not); the Last-Modified floor survives a new
    /// builder (a restart).
    #[test]
    fn write_only_changes() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings();
        let arts = articles();
        let (site, _) = SiteBuilder::default().build(&arts, 0, &s, t(0));
        let r = write_to(&site, dir.path(), None, &|| {});
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.written, site.len());
        assert!(dir.path().join("articles/plain/index.html.gz").exists());
        assert!(dir
            .path()
            .join("categories/world-news/feed.json.gz")
            .exists());
        assert_eq!(write_to(&site, dir.path(), None, &|| {}).written, 0);

        // Someone else's file in a directory of ours stays, and so does
        // that directory.
        let foreign = dir.path().join("categories/world-news/NOTES.txt");
        std::fs::write(&foreign, "kept").unwrap();
        let (site2, _) =
            SiteBuilder::with_floors_from(dir.path()).build(&arts[..2], 0, &s, t(5_000_000_000));
        let r = write_to(&site2, dir.path(), None, &|| {});
        assert_eq!(
            r.removed,
            1 + 3 + 1,
            "one article page, the world-news category's three feeds and its page"
        );
        assert!(!dir.path().join("articles/other/index.html").exists());
        assert!(!dir.path().join("articles/other").exists());
        assert!(!dir.path().join("categories/world-news/rss.xml.gz").exists());
        assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "kept");
        // The index changed (one article fewer) but its newest date did not:
        // its Last-Modified must be the restart's `now`, not the old date.
        assert_eq!(site2.get("/").unwrap().last_modified, t(5_000_000_000));
        assert_eq!(
            site2.get("/rss.xml").unwrap().last_modified,
            t(5_000_000_000)
        );
        // The newest article's page: its neighbour is still the same
        // (the oldest one's page lost its link to the one deleted).
        let page = "/articles/hostile/";
        assert_eq!(
            site2.get(page).unwrap().last_modified,
            site.get(page).unwrap().last_modified,
            "unchanged page keeps its date"
        );
    }
}
