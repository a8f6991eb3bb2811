//! The manifest: what each file under the output directory was rendered
//! from (the fingerprint of its inputs) and what it holds (length, gzip
//! length, validators, `Last-Modified`), kept in the state directory. A
//! restart checks each route's fingerprint, computed from the content it
//! finds, against the record, and the record against the file's size and
//! date: where all agree, the page is taken from disk as it is instead of
//! being rendered again, so a restart costs what changed while Herald was
//! stopped, not the archive.
//!
//! The file names the binary that wrote it (its version and executable
//! file's identity) and
//! the output directory: a new Herald, which may render differently, or
//! another directory starts over. It is written whole, through a temp file
//! and a rename, after the first publish and at shutdown; a manifest left
//! behind by a crash is only older, and what changed since shows as a
//! file whose size or date differs from its record, which is rendered
//! again. A damaged file is read up to its first bad record (each carries
//! a CRC-32); nothing in it can make Herald serve bytes it did not check.
//! Uses the snapshot's types only.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

/// What the manifest says of one route's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// Fingerprint of what the route was rendered from.
    pub fp: u128,
    /// Hash behind the document's `ETag`.
    pub etag: u128,
    /// Hash of the `.gz` twin's bytes (its `ETag`).
    pub etag_gzip: u128,
    /// The document's length.
    pub len: u64,
    /// The `.gz` twin's length.
    pub gzip_len: u64,
    /// `Last-Modified`, in seconds since the epoch (both files' mtime).
    pub modified: u64,
}

const MAGIC: &[u8; 16] = b"herald-manifest1";
/// Bytes of a record after its route.
const FIXED: usize = 16 * 3 + 8 * 3;
/// Longest route a record may name.
const MAX_ROUTE: usize = 16 * 1024;

/// The manifest's file in `state_dir`.
pub(crate) fn path_in(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("site.manifest")
}

/// Identifies the binary and the output directory a manifest belongs to.
/// The binary by its version and its file's identity (size, mtime,
/// inode): a rebuilt or reinstalled Herald, which may render differently,
/// is another binary. (Its bytes are not hashed: that would read tens of
/// megabytes at every start.)
fn key(output_dir: &Path) -> u128 {
    static EXE: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let exe = *EXE.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        match std::env::current_exe().and_then(std::fs::metadata) {
            Ok(m) => {
                for x in [m.len(), m.ino(), m.dev()] {
                    h.update(&x.to_le_bytes());
                }
                h.update(&m.mtime().to_le_bytes());
                h.update(&m.mtime_nsec().to_le_bytes());
            }
            // Unknown binary: a key no manifest matches twice.
            Err(_) => h.update(
                &std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos())
                    .to_le_bytes(),
            ),
        }
        h.digest128()
    });
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&exe.to_le_bytes());
    h.update(output_dir.as_os_str().as_encoded_bytes());
    h.digest128()
}

/// Reads the manifest at `path` for `output_dir`: every record up to the
/// first damaged one; empty when there is none, it belongs to another
/// binary or directory, or it cannot be read (said in one line).
pub(crate) fn load(path: &Path, output_dir: &Path) -> HashMap<Arc<str>, Record> {
    let mut out = HashMap::default();
    let bytes = match std::fs::File::open(path) {
        Ok(f) => {
            let mut b = Vec::new();
            if let Err(e) = std::io::BufReader::new(f).read_to_end(&mut b) {
                tracing::warn!(path = %path.display(), "cannot read the site manifest ({e}); rendering every page");
                return out;
            }
            b
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read the site manifest ({e}); rendering every page");
            return out;
        }
    };
    if bytes.len() < 32 || &bytes[..16] != MAGIC {
        tracing::warn!(path = %path.display(), "the site manifest is not one Herald wrote; rendering every page");
        return out;
    }
    if bytes[16..32] != key(output_dir).to_le_bytes() {
        tracing::info!("the site manifest is of another Herald binary or output directory; rendering every page");
        return out;
    }
    let mut rest = &bytes[32..];
    let mut damaged = false;
    while !rest.is_empty() {
        match record(rest) {
            Some((route, r, used)) => {
                out.insert(Arc::from(route), r);
                rest = &rest[used..];
            }
            None => {
                damaged = true;
                break;
            }
        }
    }
    if damaged {
        tracing::warn!(
            path = %path.display(),
            kept = out.len(),
            "the site manifest is damaged after {} records; the pages it no longer names are rendered again",
            out.len()
        );
    }
    out
}

/// One record at the start of `b`: route, record and bytes used; `None`
/// when it is cut short, too long, not UTF-8 or fails its CRC.
fn record(b: &[u8]) -> Option<(&str, Record, usize)> {
    let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    if n > MAX_ROUTE {
        return None;
    }
    let end = 4 + n + FIXED;
    let body = b.get(..end)?;
    let crc = u32::from_le_bytes(b.get(end..end + 4)?.try_into().ok()?);
    if crc32fast::hash(body) != crc {
        return None;
    }
    let route = std::str::from_utf8(&body[4..4 + n]).ok()?;
    let f = &body[4 + n..];
    let u128_at = |i: usize| u128::from_le_bytes(f[i..i + 16].try_into().expect("16 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(f[i..i + 8].try_into().expect("8 bytes"));
    let r = Record {
        fp: u128_at(0),
        etag: u128_at(16),
        etag_gzip: u128_at(32),
        len: u64_at(48),
        gzip_len: u64_at(56),
        modified: u64_at(64),
    };
    Some((route, r, end + 4))
}

/// Writes `records` as the manifest at `path` for `output_dir`: a temp
/// file, fsync, rename, fsync of the directory.
///
/// # Errors
/// The file cannot be written.
pub(crate) fn save<'a>(
    path: &Path,
    output_dir: &Path,
    records: impl Iterator<Item = (&'a str, Record)>,
) -> std::io::Result<usize> {
    let mut buf = Vec::with_capacity(1 << 16);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&key(output_dir).to_le_bytes());
    let mut n = 0;
    for (route, r) in records {
        let start = buf.len();
        buf.extend_from_slice(&(route.len() as u32).to_le_bytes());
        buf.extend_from_slice(route.as_bytes());
        for x in [r.fp, r.etag, r.etag_gzip] {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        for x in [r.len, r.gzip_len, r.modified] {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        let crc = crc32fast::hash(&buf[start..]);
        buf.extend_from_slice(&crc.to_le_bytes());
        n += 1;
    }
    // The same records as on disk (a build over unchanged output, a stop
    // right after a start): nothing to write.
    if std::fs::read(path).is_ok_and(|old| old == buf) {
        return Ok(n);
    }
    let tmp = path.with_extension("manifest.tmp");
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(n)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Record {
        Record {
            fp: u128::from(i) << 64 | 7,
            etag: u128::from(i) + 1,
            etag_gzip: u128::from(i) + 2,
            len: i * 10,
            gzip_len: i * 3,
            modified: 1_700_000_000 + i,
        }
    }

    /// Records come back as written, for the same output directory only.
    #[test]
    fn round_trip_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let routes = ["/", "/articles/%C3%BCber/", "/archive/rss/3.xml"];
        let n = save(
            &path,
            Path::new("/srv/feeds"),
            routes.iter().enumerate().map(|(i, r)| (*r, rec(i as u64))),
        )
        .unwrap();
        assert_eq!(n, 3);
        let back = load(&path, Path::new("/srv/feeds"));
        assert_eq!(back.len(), 3);
        for (i, r) in routes.iter().enumerate() {
            assert_eq!(back[*r], rec(i as u64), "{r}");
        }
        assert!(load(&path, Path::new("/srv/other")).is_empty());
        assert!(load(&dir.path().join("none"), Path::new("/srv/feeds")).is_empty());
    }

    /// A damaged manifest gives the records before the damage and never
    /// panics: cut at every length, one byte flipped, a huge length.
    #[test]
    fn damaged_manifest_keeps_what_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let out = Path::new("/srv/feeds");
        save(
            &path,
            out,
            (0..4u64).map(|i| (["/a", "/b", "/c", "/d"][i as usize], rec(i))),
        )
        .unwrap();
        let whole = std::fs::read(&path).unwrap();
        let per = (whole.len() - 32) / 4;
        for cut in 0..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let got = load(&path, out);
            let want = cut.saturating_sub(32) / per;
            assert_eq!(got.len(), want, "cut at {cut}");
        }
        let mut flipped = whole.clone();
        flipped[32 + per + 10] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        let got = load(&path, out);
        assert_eq!(got.len(), 1);
        assert_eq!(got["/a"], rec(0));
        let mut huge = whole[..32].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &huge).unwrap();
        assert!(load(&path, out).is_empty());
    }
}
