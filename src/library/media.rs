//! The files articles reference (a page bundle's images, a PDF beside an
//! article): which file a relative reference names, the URL it is
//! published at, and the guarded read of it.
//!
//! A reference is read as the author's editor reads it: relative to the
//! article's file (`story/index.md` + `chart.png` is `story/chart.png`).
//! The file is published where the same reference, read from the
//! article's page `/articles/<slug>/`, points: `chart.png` at
//! `/articles/<slug>/chart.png`, `img/map.svg` at
//! `/articles/<slug>/img/map.svg`. So the page needs no rewriting and feeds
//! resolve the reference against the permalink to the same URL. A
//! reference that climbs out of the article's folder (`../shared/x.png`)
//! is published where it points from the page (`/articles/shared/x.png`),
//! as long as that is under `/articles/`.
//!
//! Files are input like article files, with the same policy (README
//! "Symlinks, special files and limits"): only regular files, opened so
//! that a FIFO cannot block and checked again through the descriptor,
//! never read past `max_asset_bytes`; a symlink out of the content
//! directory is refused unless `follow_external_symlinks`; hidden files
//! and article files are never published; each real file is read once
//! however many references name it. A file no published article
//! references is not published.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::article::{encode_segment, LocalRef, Media};

use super::walk;
use super::Stamp;

/// What a reference names, worked out from the paths alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// A file to publish at `route`, if it is there and may be.
    File { path: PathBuf, route: Arc<str> },
    /// Not a file to publish, and worth saying why.
    Refused(String),
    /// Not a file to publish (a folder, an article file, a page of the
    /// site): nothing to say.
    None,
}

/// A reference of an article, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resolved {
    /// As written.
    pub url: String,
    /// An image: missing, it is worth a warning.
    pub image: bool,
    pub target: Target,
}

/// What is known of a referenced file.
#[derive(Debug, Clone)]
pub(super) enum State {
    Ready(Arc<Media>),
    /// No file there.
    Missing,
    /// A folder: not a file to publish.
    Folder,
    /// There, but not to be published: why.
    Refused(String),
}

/// A referenced file, as last looked at.
#[derive(Debug, Clone)]
pub(super) struct MediaFile {
    pub stamp: Stamp,
    pub state: State,
}

/// Resolves the reference `r` of the article at `source` (below `root`)
/// published under `slug`.
pub(super) fn resolve(root: &Path, source: &Path, slug: &str, r: &LocalRef) -> Resolved {
    let target = target(root, source, slug, &r.url);
    Resolved {
        url: r.url.clone(),
        image: r.image,
        target,
    }
}

fn target(root: &Path, source: &Path, slug: &str, url: &str) -> Target {
    let path_part = url.split(['?', '#']).next().unwrap_or("");
    if path_part.is_empty() || path_part.ends_with('/') {
        return Target::None;
    }
    // The file: the reference's segments, decoded, from the article's
    // folder, `.` and `..` applied to the path as written (as URLs are).
    let Some(dir) = source.parent().and_then(|d| d.strip_prefix(root).ok()) else {
        return Target::None;
    };
    let mut rel: Vec<String> = dir
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    for seg in path_part.split('/') {
        let Some(seg) = percent_decode(seg) else {
            return Target::None;
        };
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                if rel.pop().is_none() {
                    return Target::Refused("outside the content directory: not published".into());
                }
            }
            s if s.contains(['/', '\\', '\0']) => return Target::None,
            _ => rel.push(seg),
        }
    }
    if rel.iter().any(|s| s.starts_with('.')) {
        return Target::Refused("a hidden file or folder: not published".into());
    }
    let path = rel.iter().fold(root.to_path_buf(), |p, s| p.join(s));
    if crate::parse::kind_of(&path).is_some() {
        return Target::None;
    }
    // The URL: the reference read from the article's page.
    let Ok(base) = url::Url::parse(&format!("http://h/articles/{}/", encode_segment(slug))) else {
        return Target::None;
    };
    let Ok(to) = base.join(path_part) else {
        return Target::None;
    };
    let segments: Option<Vec<String>> = to.path().split('/').skip(1).map(percent_decode).collect();
    let Some(segments) = segments else {
        return Target::None;
    };
    if segments.first().map(String::as_str) != Some("articles") || segments.len() < 2 {
        return Target::Refused(format!(
            "published there it would be {}, outside /articles/: not published (keep the files an article shows in its folder)",
            to.path()
        ));
    }
    if segments
        .last()
        .is_some_and(|s| s == "index.html" || s.is_empty())
    {
        return Target::None;
    }
    let route: String = segments
        .iter()
        .map(|s| format!("/{}", encode_segment(s)))
        .collect();
    Target::File {
        path,
        route: route.into(),
    }
}

/// Decodes `%XX` escapes; `None` when the bytes are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The media type of a file by its extension, and whether it is worth a
/// gzip twin. Types a browser would run (HTML, scripts) are sent as
/// `application/octet-stream`, a download.
pub(crate) fn media_type(path: &Path) -> (&'static str, bool) {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "png" => ("image/png", false),
        "jpg" | "jpeg" => ("image/jpeg", false),
        "gif" => ("image/gif", false),
        "webp" => ("image/webp", false),
        "avif" => ("image/avif", false),
        "svg" => ("image/svg+xml", true),
        "bmp" => ("image/bmp", true),
        "ico" => ("image/x-icon", true),
        "pdf" => ("application/pdf", false),
        "mp3" => ("audio/mpeg", false),
        "m4a" => ("audio/mp4", false),
        "ogg" | "oga" | "opus" => ("audio/ogg", false),
        "wav" => ("audio/wav", true),
        "mp4" | "m4v" => ("video/mp4", false),
        "webm" => ("video/webm", false),
        "ogv" => ("video/ogg", false),
        "vtt" => ("text/vtt; charset=utf-8", true),
        "csv" => ("text/csv; charset=utf-8", true),
        "json" => ("application/json", true),
        "zip" => ("application/zip", false),
        "gz" | "tgz" => ("application/gzip", false),
        "epub" => ("application/epub+zip", false),
        _ => ("application/octet-stream", false),
    }
}

/// Looks at the referenced file at `path` (stat only, unless it changed
/// since `known`) and reads it if it is to be published. `real_root` is
/// the content directory's canonical path.
pub(super) fn look(
    path: &Path,
    real_root: &Path,
    root: &Path,
    follow_external: bool,
    max: u64,
    known: Option<&MediaFile>,
    same_file: impl Fn(&Stamp) -> Option<MediaFile>,
) -> MediaFile {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let linked = std::fs::symlink_metadata(path).is_ok();
            return MediaFile {
                stamp: Stamp::none(),
                state: if linked {
                    State::Refused(format!("symlink cannot be followed: {e}: not published"))
                } else {
                    State::Missing
                },
            };
        }
        Err(e) => {
            return MediaFile {
                stamp: Stamp::none(),
                state: State::Refused(format!("cannot read: {e}")),
            }
        }
    };
    let stamp = Stamp::of(&meta);
    if let Some(k) = known.filter(|k| k.stamp == stamp) {
        return k.clone();
    }
    let read_before = same_file(&stamp);
    let refused = |why: String| MediaFile {
        stamp,
        state: State::Refused(why),
    };
    if meta.is_dir() {
        return MediaFile {
            stamp,
            state: State::Folder,
        };
    }
    // Reached through a symlink (the file or a folder on the way)?
    let lexical = real_root.join(path.strip_prefix(root).unwrap_or(path));
    if let Ok(real) = std::fs::canonicalize(path) {
        if real != lexical && !follow_external && !walk::inside(real_root, &real) {
            return refused(format!(
                "symlink to {}, outside the content directory: refused (set `follow_external_symlinks = true` to publish it)",
                real.display()
            ));
        }
    }
    if !meta.is_file() {
        let what = walk::special_kind(&meta.file_type()).unwrap_or("not a file");
        return refused(format!("{what}, not a regular file: not published"));
    }
    let too_big = |len: u64| {
        refused(format!(
            "file is {len} bytes; at most {max} are published (limit `max_asset_bytes`)"
        ))
    };
    if meta.len() > max {
        return too_big(meta.len());
    }
    // The same file (a hard link, or a symlink inside the content
    // directory) already read under another name: read once.
    if let Some(k) = read_before {
        return k;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => return refused(format!("cannot read: {e}")),
    };
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(m) => {
            let what = walk::special_kind(&m.file_type()).unwrap_or("not a file");
            return refused(format!("{what}, not a regular file: not published"));
        }
        Err(e) => return refused(format!("cannot read: {e}")),
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    if let Err(e) = (&mut file).take(max + 1).read_to_end(&mut bytes) {
        return refused(format!("cannot read: {e}"));
    }
    if bytes.len() as u64 > max {
        return too_big(bytes.len() as u64);
    }
    let (media_type, compressible) = media_type(path);
    let hash = xxhash_rust::xxh3::xxh3_128(&bytes);
    MediaFile {
        stamp,
        state: State::Ready(Arc::new(Media {
            bytes: crate::sendfile::hold(bytes),
            media_type,
            compressible,
            modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            hash,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(source: &str, slug: &str, url: &str) -> Target {
        target(Path::new("/c"), Path::new(source), slug, url)
    }

    fn file(path: &str, route: &str) -> Target {
        Target::File {
            path: PathBuf::from(path),
            route: route.into(),
        }
    }

    /// A reference names the file relative to the article and is
    /// published where it points from the article's page; folders, pages,
    /// article files and hidden files are not files to publish, and
    /// nothing outside the content directory or `/articles/` is.
    #[test]
    fn references_to_files_and_routes() {
        let bundle = "/c/2025/05/story/index.md";
        assert_eq!(
            t(bundle, "story", "chart.png"),
            file("/c/2025/05/story/chart.png", "/articles/story/chart.png")
        );
        assert_eq!(
            t(bundle, "story", "./img/my%20map.svg?v=2#x"),
            file(
                "/c/2025/05/story/img/my map.svg",
                "/articles/story/img/my%20map.svg"
            )
        );
        assert_eq!(
            t("/c/2025/a.md", "a", "../shared/x.png"),
            file("/c/shared/x.png", "/articles/shared/x.png")
        );
        // A '%' not followed by two hex digits is a '%', also before a
        // character of several bytes.
        assert!(matches!(
            t("/c/2025/a.md", "a", "5%aé.png"),
            Target::File { path, .. } if path == Path::new("/c/2025/5%aé.png")
        ));
        assert_eq!(
            t("/c/sub/київ.md", "київ", "фото.png"),
            file(
                "/c/sub/фото.png",
                "/articles/%D0%BA%D0%B8%D1%97%D0%B2/%D1%84%D0%BE%D1%82%D0%BE.png"
            )
        );
        for (url, what) in [
            ("../kyiv-notes/", "a page"),
            ("other.md", "an article file"),
            ("notes.txt", "an article file"),
            ("index.html", "the page itself"),
            ("a%2Fb.png", "an escaped slash"),
        ] {
            assert_eq!(t("/c/a.md", "a", url), Target::None, "{what}");
        }
        assert!(
            matches!(t("/c/a.md", "a", "../../x.png"), Target::Refused(w) if w.contains("outside the content"))
        );
        assert!(
            matches!(t("/c/a.md", "a", ".secret.png"), Target::Refused(w) if w.contains("hidden"))
        );
        assert!(
            matches!(t("/c/x/y/a.md", "a", "../../x.png"), Target::Refused(w) if w.contains("outside /articles/"))
        );
    }

    /// Media types by extension; what a browser would run is a download.
    #[test]
    fn media_types() {
        for (name, want) in [
            ("a.PNG", ("image/png", false)),
            ("a.svg", ("image/svg+xml", true)),
            ("a.pdf", ("application/pdf", false)),
            ("a.html", ("application/octet-stream", false)),
            ("a.js", ("application/octet-stream", false)),
            ("noext", ("application/octet-stream", false)),
        ] {
            assert_eq!(media_type(Path::new(name)), want, "{name}");
        }
    }
}
