//! The parse cache: every article file's parsed [`Article`] (or the fact
//! that it is a draft), kept in the state directory between runs and keyed
//! by the file's path and [`Stamp`]. A restart then reads and parses only
//! the files that changed while Herald was stopped; the rest are taken
//! from here without being opened.
//!
//! What is kept is the parser's output exactly as [`crate::parse::parse`]
//! returned it (warnings included), before the library gives it an id,
//! an `updated` from the state file or a published picture: everything
//! downstream of parsing runs as it would after a parse. Files that fail
//! to parse are never kept, so their errors are reported again each start.
//!
//! The file (`articles.cache`) is a header (magic, format, and a key over
//! Herald's version, the content directory and everything in
//! [`ParseCtx`] that can change parse output) followed by records, each a
//! length, a CRC-32 and a hand-written binary payload. New records are
//! appended, so saving N parses costs O(N); when records that no longer
//! describe a file (superseded, deleted, failing) outnumber the live ones,
//! the live ones are copied into a new file (temp file, fsync, rename,
//! directory fsync). A header with another key means the whole file is
//! ignored and written anew.
//!
//! The file is input like any other: reading stops at the first record
//! that is truncated, fails its CRC, claims an absurd length, holds
//! invalid text, a body that does not inflate to what it claims, or a
//! path outside the content directory; one warning is logged and the
//! files from there on are parsed again. A cache that cannot be read or
//! written is logged once and Herald goes on without it: stamps validate
//! every entry, so correctness never depends on the cache being written.
//!
//! Uses `article`, `parse` (the context it is keyed by) and the library's
//! [`Stamp`].

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use super::Stamp;
use crate::article::{Article, Body, LocalRef, Picture};
use crate::parse::ParseCtx;

/// Name of the cache file in the state directory.
pub const FILE: &str = "articles.cache";

/// First bytes of the file.
const MAGIC: &[u8; 8] = b"HERALDPC";

/// Layout of the payload below. Bump it with any change to [`Article`] or
/// to the encoding (the key changes, so older files are rewritten).
const FORMAT: u32 = 1;

/// Header: magic, then the 128-bit key.
const HEADER_LEN: u64 = 8 + 16;

/// Record framing: payload length (u32) and CRC-32 of the payload.
const FRAME_LEN: usize = 8;

/// Largest payload read or written. A parsed article is at most a few
/// times its file (`max_file_bytes`, 2 MiB by default); a record claiming
/// more is damage, and an article that would need more is simply parsed
/// each start.
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Largest body (unpacked HTML) taken from the cache: bounds what
/// checking a hostile record's body can allocate.
const MAX_BODY_BYTES: usize = MAX_RECORD_BYTES;

/// Records read from disk before they are decoded together (in
/// parallel): bounds the memory a start-up load holds in raw form.
const LOAD_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Pending records kept in memory before they are appended mid-scan: a
/// cold scan of 100,000 files then holds a few megabytes, not a second
/// copy of every article.
const PENDING_FLUSH_BYTES: usize = 8 * 1024 * 1024;

/// Packed bodies read from the cache are moved into mapped unlinked
/// files once this many bytes of them are loaded (see
/// [`Cache::park_bodies`]): the heap briefly holds that much twice;
/// 100,000 articles make about 8 files.
const PARK_CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// The key a cache file must carry to be used: Herald's version, the
/// content directory (records name paths below it) and the parse settings.
pub fn key(root: &Path, ctx: &ParseCtx) -> u128 {
    use std::os::unix::ffi::OsStrExt;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(&FORMAT.to_le_bytes());
    field(env!("CARGO_PKG_VERSION").as_bytes());
    field(root.as_os_str().as_bytes());
    field(ctx.tz.name().as_bytes());
    // Destructured so a new limit cannot be left out of the key.
    let crate::parse::Limits {
        max_file_bytes,
        max_front_matter_bytes,
        max_labels,
        max_nesting,
    } = ctx.limits;
    field(&max_file_bytes.to_le_bytes());
    field(&(max_front_matter_bytes as u64).to_le_bytes());
    field(&(max_labels as u64).to_le_bytes());
    field(&(max_nesting as u64).to_le_bytes());
    h.digest128()
}

/// Why the cache could not be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The file exists but cannot be read.
    #[error("{}: cannot read the parse cache (every file is parsed): {error}", path.display())]
    Read {
        /// The cache file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A record is damaged; those before it are used.
    #[error("{}: parse cache damaged at byte {at}: {why}; files from there on are parsed again", path.display())]
    Damaged {
        /// The cache file.
        path: PathBuf,
        /// Offset of the bad record.
        at: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Records cannot be saved.
    #[error("{}: cannot write the parse cache (Herald goes on without it): {error}", path.display())]
    Write {
        /// The cache file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// What the cache held for one file: the parser's result.
type Parsed = Option<Box<Article>>;

/// A record in the file.
#[derive(Debug, Clone, Copy)]
struct Slot {
    stamp: Stamp,
    /// Offset of the record's frame.
    at: u64,
    /// Frame and payload.
    len: u64,
}

/// A record waiting to be written.
#[derive(Debug)]
struct Pending {
    path: PathBuf,
    stamp: Stamp,
    /// Offset of its frame in [`Cache::buf`].
    at: usize,
    len: usize,
}

/// The parse cache of one library (see the module doc).
#[derive(Debug)]
pub struct Cache {
    path: PathBuf,
    root: PathBuf,
    key: u128,
    loaded: bool,
    /// Records read at start and not yet taken by a scan.
    held: HashMap<PathBuf, (Stamp, Parsed)>,
    /// The record in the file that describes each path as it is now.
    index: HashMap<PathBuf, Slot>,
    /// Records in the file, live or not.
    records: usize,
    /// End of the good part of the file: where the next record goes.
    end: u64,
    /// The file holds more than its good part (a damaged tail, or a
    /// write that failed half-way): cut it before appending.
    cut: bool,
    /// The file is missing, has another key, or cannot be trusted to be
    /// what the index says: the next save writes it whole.
    rewrite: bool,
    /// Framed records not yet written, back to back.
    buf: Vec<u8>,
    pending: Vec<Pending>,
    /// A write failed and was logged; quiet until one succeeds.
    failing: bool,
    /// Paths of the records loaded whose bodies are still on the heap
    /// (see [`Cache::park_bodies`]), and those bodies' packed bytes.
    unparked: Vec<PathBuf>,
    unparked_bytes: usize,
}

impl Cache {
    /// The cache in the file at `path`, for files below `root` parsed with
    /// the settings `key` was made from. Nothing is read until
    /// [`Cache::load`].
    pub fn new(path: PathBuf, root: PathBuf, key: u128) -> Cache {
        Cache {
            path,
            root,
            key,
            loaded: false,
            held: HashMap::default(),
            index: HashMap::default(),
            records: 0,
            end: 0,
            cut: false,
            rewrite: true,
            buf: Vec::new(),
            pending: Vec::new(),
            failing: false,
            unparked: Vec::new(),
            unparked_bytes: 0,
        }
    }

    /// Reads the file once (later calls do nothing), keeping every good
    /// record until a scan takes it. A missing file or another key is not
    /// an error: the cache starts empty and is written whole.
    ///
    /// # Errors
    /// The file cannot be read or is damaged; what was read before the
    /// damage is kept, and the error is for the log.
    pub fn load(&mut self) -> Result<(), CacheError> {
        if std::mem::replace(&mut self.loaded, true) {
            return Ok(());
        }
        let read_err = |error| CacheError::Read {
            path: self.path.clone(),
            error,
        };
        let mut file = match open_regular(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(read_err(e)),
        };
        let len = file.metadata().map_err(read_err)?.len();
        let mut header = [0u8; HEADER_LEN as usize];
        if len < HEADER_LEN || file.read_exact(&mut header).is_err() {
            return Ok(());
        }
        if &header[..8] != MAGIC || header[8..] != self.key.to_le_bytes() {
            tracing::info!(
                "{}: parse cache made by another version or with other settings; every file is parsed and the cache written anew",
                self.path.display()
            );
            return Ok(());
        }
        self.rewrite = false;
        self.end = HEADER_LEN;
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0;
        let mut at = HEADER_LEN;
        let mut damage = None;
        while at < len {
            match read_frame(&mut reader, len - at) {
                Ok(payload) => {
                    let next = at + (FRAME_LEN + payload.len()) as u64;
                    batch_bytes += payload.len();
                    batch.push((at, payload));
                    at = next;
                }
                Err(why) => {
                    damage = Some((at, why));
                    break;
                }
            }
            if batch_bytes >= LOAD_BATCH_BYTES {
                if let Err(d) = self.take_batch(std::mem::take(&mut batch)) {
                    damage = Some(d);
                    break;
                }
                batch_bytes = 0;
                if self.unparked_bytes >= PARK_CHUNK_BYTES {
                    self.park_bodies();
                }
            }
        }
        // A bad record in the last batch comes before a framing fault
        // found after it.
        if let Err(d) = self.take_batch(batch) {
            damage = Some(d);
        }
        self.park_bodies();
        match damage {
            None => Ok(()),
            Some((at, why)) => {
                self.cut = true;
                Err(CacheError::Damaged {
                    path: self.path.clone(),
                    at,
                    why,
                })
            }
        }
    }

    /// Moves the packed bodies of the articles loaded since the last call
    /// into an unlinked file mapped read-only (see
    /// `crate::sendfile`: the files of large response bodies): no longer
    /// on the heap, they count in the daemon's memory only while recently
    /// read, as page cache. Bodies are needed only when a document showing
    /// them is rendered, and a restart that finds its pages on disk
    /// renders almost nothing. Where no such file can be made (not
    /// `serve`, no `O_TMPFILE`), they stay where they are.
    fn park_bodies(&mut self) {
        let paths = std::mem::take(&mut self.unparked);
        self.unparked_bytes = 0;
        if !crate::sendfile::enabled() {
            // `build`, `check`: no copy made only to be thrown away.
            return;
        }
        let mut chunk: Vec<&mut Article> = Vec::with_capacity(paths.len());
        // Each path once (a later record may supersede an earlier one).
        let mut held: Vec<(&PathBuf, &mut (Stamp, Parsed))> = self.held.iter_mut().collect();
        let wanted: rustc_hash::FxHashSet<&PathBuf> = paths.iter().collect();
        held.retain(|(p, _)| wanted.contains(p));
        for (_, (_, parsed)) in held {
            if let Some(a) = parsed.as_deref_mut().filter(|a| !a.body_html.is_empty()) {
                chunk.push(a);
            }
        }
        let bytes = chunk.iter().map(|a| a.body_html.deflated().len()).sum();
        let mut arena = Vec::with_capacity(bytes);
        for a in &chunk {
            arena.extend_from_slice(a.body_html.deflated());
        }
        let arena = crate::sendfile::hold(arena);
        if crate::sendfile::lookup(&arena).is_none() {
            // On the heap after all: the bodies stay where they are.
            return;
        }
        let mut at = 0;
        for a in chunk {
            let n = a.body_html.deflated().len();
            a.body_html.moved_to(arena.slice(at..at + n));
            at += n;
        }
    }

    /// Decodes a batch of framed records (in parallel) and keeps them in
    /// file order up to the first bad one, whose offset and fault are
    /// returned.
    fn take_batch(&mut self, batch: Vec<(u64, Vec<u8>)>) -> Result<(), (u64, &'static str)> {
        let root = &self.root;
        let decoded: Vec<(u64, u64, Result<Record, &'static str>)> = batch
            .into_par_iter()
            .map(|(at, payload)| {
                let len = (FRAME_LEN + payload.len()) as u64;
                (at, len, decode(root, &bytes::Bytes::from(payload)))
            })
            .collect();
        for (at, len, r) in decoded {
            let rec = r.map_err(|why| (at, why))?;
            let stamp = rec.stamp;
            // A later record of the same path supersedes the earlier one
            // (which stays counted in `records`, as dead).
            self.index.insert(rec.path.clone(), Slot { stamp, at, len });
            if let Some(a) = &rec.parsed {
                self.unparked_bytes += a.body_html.deflated().len();
                self.unparked.push(rec.path.clone());
            }
            self.held.insert(rec.path, (stamp, rec.parsed));
            self.records += 1;
            self.end = at + len;
        }
        Ok(())
    }

    /// The parser's result for the file at `path`, if the cache holds one
    /// for exactly this `stamp` (taken: each is handed out once). The
    /// article's `source` is `path`, as the parser would set it.
    pub fn take(&mut self, path: &Path, stamp: Stamp) -> Option<Parsed> {
        match self.held.remove(path) {
            Some((st, parsed)) if st == stamp => Some(parsed.map(|mut a| {
                a.source = path.to_path_buf();
                a
            })),
            _ => None,
        }
    }

    /// Records what the parser made of the file at `path` as of `stamp`
    /// (`None`: a draft). Written by the next [`Cache::flush`], or at once
    /// when enough is pending. An article this encoding cannot hold (a
    /// path outside the content directory, a record over the size limit)
    /// is simply not kept.
    pub fn record(&mut self, path: &Path, stamp: Stamp, parsed: Option<&Article>) {
        self.index.remove(path);
        let at = self.buf.len();
        if encode(&self.root, path, stamp, parsed, &mut self.buf).is_none() {
            self.buf.truncate(at);
            return;
        }
        self.pending.push(Pending {
            path: path.to_path_buf(),
            stamp,
            at,
            len: self.buf.len() - at,
        });
        if self.buf.len() >= PENDING_FLUSH_BYTES {
            self.flush();
        }
    }

    /// Forgets the record of the file at `path` (it failed to parse, is
    /// not a file any more, or is gone).
    pub fn forget(&mut self, path: &Path) {
        self.index.remove(path);
        self.held.remove(path);
        self.pending.retain(|p| p.path != path);
    }

    /// Forgets every record at or below `dir`.
    pub fn forget_under(&mut self, dir: &super::Under) {
        self.index.retain(|p, _| !dir.holds(p));
        self.held.retain(|p, _| !dir.holds(p));
        self.pending.retain(|p| !dir.holds(&p.path));
    }

    /// After a walk of the whole tree: keeps the records of the files
    /// `live` says are as recorded (same stamp, parsed), drops the rest,
    /// and lets go of records read at start that no file took.
    pub fn retain(&mut self, live: impl Fn(&Path, Stamp) -> bool) {
        self.index.retain(|p, s| live(p, s.stamp));
        self.held = HashMap::default();
    }

    /// Records in the file that describe no file as it is now.
    fn dead(&self) -> usize {
        self.records.saturating_sub(self.index.len())
    }

    /// Writes what is pending: appended (not synced: see `append`), or, when the
    /// file must be written anew or dead records outnumber live ones, the
    /// live records and the pending ones into a new file. A failure is
    /// logged once per episode; what was pending is dropped (those files
    /// are parsed again next start).
    pub fn flush(&mut self) {
        let compact = self.rewrite || self.dead() > self.index.len();
        if self.pending.is_empty() && !(compact && self.records > 0) {
            return;
        }
        let result = if compact {
            self.compact()
        } else {
            self.append()
        };
        let pending = std::mem::take(&mut self.pending);
        self.buf = Vec::new();
        match result {
            Ok(base) => {
                for p in pending {
                    let slot = Slot {
                        stamp: p.stamp,
                        at: base + p.at as u64,
                        len: p.len as u64,
                    };
                    // A path recorded twice before one flush leaves its
                    // first record dead, counted as such.
                    self.index.insert(p.path, slot);
                    self.records += 1;
                }
                if self.failing {
                    tracing::info!("{}: parse cache written again", self.path.display());
                }
                self.failing = false;
            }
            Err(error) => {
                if !self.failing {
                    let e = CacheError::Write {
                        path: self.path.clone(),
                        error,
                    };
                    tracing::warn!("{e}");
                }
                self.failing = true;
            }
        }
    }

    /// Appends the pending records; returns the offset they start at.
    fn append(&mut self) -> std::io::Result<u64> {
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
        {
            Ok(f) => f,
            // Removed while Herald ran: written anew.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.compact(),
            Err(e) => return Err(e),
        };
        // Another Herald on the same state directory (a `build` beside
        // `serve`) may have written the file anew, perhaps for other
        // settings: records appended under its header would be read with
        // its key. Then the file is written anew under ours.
        let mut header = [0u8; HEADER_LEN as usize];
        let ours = std::os::unix::fs::FileExt::read_exact_at(&f, &mut header, 0).is_ok()
            && &header[..8] == MAGIC
            && header[8..] == self.key.to_le_bytes();
        if !ours {
            return self.compact();
        }
        let len = f.metadata()?.len();
        if len != self.end {
            if !self.cut && len < self.end {
                // Shorter than what was written: someone else's hand.
                // Copy what is still good into a new file.
                return self.compact();
            }
            f.set_len(self.end)?;
        }
        self.cut = false;
        f.seek(std::io::SeekFrom::Start(self.end))?;
        let base = self.end;
        // From here a failure may leave part of a record: cut it next time.
        self.cut = true;
        // Not synced: the file is a cache, and what a crash loses of it
        // (records cut short or never written fail their CRC, and the
        // file is read up to the first) is parsed again at the next start.
        // Syncing cost 10-20 ms on every edit, ahead of its publication.
        f.write_all(&self.buf)?;
        self.cut = false;
        self.end += self.buf.len() as u64;
        Ok(base)
    }

    /// Writes a new file: header, every live record copied from the old
    /// file (checked again on the way), then the pending ones; returns the
    /// offset the pending ones start at.
    fn compact(&mut self) -> std::io::Result<u64> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{FILE}.tmp"));
        let mut live: Vec<(PathBuf, Slot)> = if self.rewrite {
            Vec::new()
        } else {
            self.index.drain().collect()
        };
        // In file order: one sequential read of the old file.
        live.sort_unstable_by_key(|(_, s)| s.at);
        let written = (|| {
            let mut out =
                std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&tmp)?);
            out.write_all(MAGIC)?;
            out.write_all(&self.key.to_le_bytes())?;
            let mut at = HEADER_LEN;
            let mut index = HashMap::default();
            index.reserve(live.len() + self.pending.len());
            // An old file that cannot be read any more leaves its
            // records behind (their files are parsed again next start).
            let old = match live.is_empty() {
                true => None,
                false => open_regular(&self.path)
                    .and_then(|f| Ok((f.metadata()?.len(), f)))
                    .ok(),
            };
            if let Some((old_len, old)) = old {
                let mut old = std::io::BufReader::with_capacity(256 * 1024, old);
                let mut pos = 0u64;
                let mut frame = Vec::new();
                for (path, slot) in &live {
                    if slot.at < pos || slot.at + slot.len > old_len {
                        continue;
                    }
                    old.seek_relative((slot.at - pos) as i64)?;
                    frame.resize(slot.len as usize, 0);
                    old.read_exact(&mut frame)?;
                    pos = slot.at + slot.len;
                    // Only what still frames, checks and names this very
                    // file and stamp is carried over.
                    if !same_record(&self.root, &frame, path, slot.stamp) {
                        continue;
                    }
                    out.write_all(&frame)?;
                    index.insert(path.clone(), Slot { at, ..*slot });
                    at += slot.len;
                }
            }
            out.write_all(&self.buf)?;
            out.flush()?;
            let f = out.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(dir)?;
            Ok((index, at))
        })();
        match written {
            Ok((index, base)) => {
                self.records = index.len();
                self.index = index;
                self.end = base + self.buf.len() as u64;
                self.rewrite = false;
                self.cut = false;
                Ok(base)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                // The old file is as it was, but its live records are no
                // longer indexed: write it whole next time.
                self.rewrite = true;
                self.records = 0;
                Err(e)
            }
        }
    }

    /// Forgets everything (the parse settings changed): the next save
    /// writes the file anew under `key`.
    pub fn rekey(&mut self, key: u128) {
        if key != self.key {
            self.key = key;
            self.held = HashMap::default();
            self.index = HashMap::default();
            self.pending.clear();
            self.buf = Vec::new();
            self.records = 0;
            self.rewrite = true;
        }
    }
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Opens a file for reading only if it is a regular file (checked on the
/// descriptor, opened non-blocking: a FIFO in its place cannot hang the
/// start).
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

/// Reads one record's frame and payload, with at most `left` bytes left
/// in the file; checks its length and CRC.
fn read_frame(r: &mut impl std::io::Read, left: u64) -> Result<Vec<u8>, &'static str> {
    let mut frame = [0u8; FRAME_LEN];
    r.read_exact(&mut frame)
        .map_err(|_| "truncated record header")?;
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    // Checked before allocating: a damaged length must not ask for
    // gigabytes the file does not hold.
    if len > MAX_RECORD_BYTES || (FRAME_LEN + len) as u64 > left {
        return Err("record length beyond the file or the limit");
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|_| "truncated record")?;
    if crc32fast::hash(&payload) != crc {
        return Err("record checksum mismatch");
    }
    Ok(payload)
}

/// True when `frame` is a whole, checked record for `path` as of `stamp`.
fn same_record(root: &Path, frame: &[u8], path: &Path, stamp: Stamp) -> bool {
    let Some((head, payload)) = frame.split_at_checked(FRAME_LEN) else {
        return false;
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len != payload.len() || crc32fast::hash(payload) != crc {
        return false;
    }
    let mut r = Reader { b: payload };
    r.path(root).is_ok_and(|p| p == path) && r.stamp().is_ok_and(|s| s == stamp)
}

/// One decoded record.
struct Record {
    path: PathBuf,
    stamp: Stamp,
    parsed: Parsed,
}

/// Appends the framed record of `path` to `out`; `None` (with `out` left
/// to be cut back) if it cannot be kept.
fn encode(
    root: &Path,
    path: &Path,
    stamp: Stamp,
    parsed: Option<&Article>,
    out: &mut Vec<u8>,
) -> Option<()> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_LEN]);
    let mut w = Writer { out };
    // Only a path the reader will take back: anything else would stop
    // every later load at this record.
    let rel = path.strip_prefix(root).ok()?;
    if below(root, rel).as_deref() != Some(path) {
        return None;
    }
    w.path(rel)?;
    w.stamp(stamp);
    match parsed {
        None => w.u8(0),
        Some(a) => {
            // Destructured so that a new field cannot be left out; the
            // source is the record's path (checked), the picture's
            // `published` is the library's, never the parser's.
            let Article {
                slug,
                id,
                title,
                published,
                updated,
                updated_from_file,
                categories,
                tags,
                summary,
                body_html,
                author,
                more_authors,
                source,
                hash,
                warnings,
                local_refs,
                picture,
            } = a;
            if source != path || picture.as_ref().is_some_and(|p| p.published.is_some()) {
                return None;
            }
            if body_html.len() > MAX_BODY_BYTES {
                return None;
            }
            w.u8(1);
            w.str(slug)?;
            w.str(id)?;
            w.str(title)?;
            w.time(published);
            w.time(updated);
            w.u8(u8::from(*updated_from_file));
            w.strs(categories)?;
            w.strs(tags)?;
            w.str(summary)?;
            w.bytes(body_html.deflated())?;
            w.u64(body_html.len() as u64);
            w.u32(body_html.crc());
            match author {
                None => w.u8(0),
                Some(s) => {
                    w.u8(1);
                    w.str(s)?;
                }
            }
            w.strs(more_authors)?;
            w.out.extend_from_slice(&hash.to_le_bytes());
            w.strs(warnings)?;
            w.u32(u32::try_from(local_refs.len()).ok()?);
            for r in local_refs {
                w.str(&r.url)?;
                w.u8(u8::from(r.image));
            }
            match picture {
                None => w.u8(0),
                Some(p) => {
                    w.u8(1);
                    w.str(&p.src)?;
                    w.u8(u8::from(p.from_front_matter));
                }
            }
        }
    }
    let len = out.len() - start - FRAME_LEN;
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let crc = crc32fast::hash(&out[start + FRAME_LEN..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Some(())
}

/// Decodes a record's payload (already length- and CRC-checked).
/// A body's packed bytes stay a slice of `payload`, to be moved off the
/// heap ([`Cache::park_bodies`]) without another copy.
fn decode(root: &Path, payload: &bytes::Bytes) -> Result<Record, &'static str> {
    let mut r = Reader { b: payload };
    let path = r.path(root)?;
    let stamp = r.stamp()?;
    let parsed = match r.u8()? {
        0 => None,
        1 => {
            let slug = r.string()?;
            let id = r.string()?;
            let title = r.string()?;
            let published = r.time()?;
            let updated = r.time()?;
            let updated_from_file = r.flag()?;
            let categories = r.strings()?;
            let tags = r.strings()?;
            let summary = r.string()?;
            let packed = r.bytes()?;
            let len = usize::try_from(r.u64()?).map_err(|_| "body length")?;
            let crc = r.u32()?;
            if len > MAX_BODY_BYTES {
                return Err("body longer than the limit");
            }
            let body_html = Body::from_packed(payload.slice_ref(packed), len, crc)
                .ok_or("body does not unpack to what it claims")?;
            let author = match r.u8()? {
                0 => None,
                1 => Some(r.string()?),
                _ => return Err("bad author tag"),
            };
            let more_authors = r.strings()?;
            let hash = u128::from_le_bytes(r.take(16)?.try_into().map_err(|_| "hash")?);
            let warnings = r.strings()?;
            let n = r.count(5)?;
            let mut local_refs = Vec::with_capacity(n);
            for _ in 0..n {
                local_refs.push(LocalRef {
                    url: r.string()?,
                    image: r.flag()?,
                });
            }
            let picture = match r.u8()? {
                0 => None,
                1 => Some(Picture {
                    src: r.string()?,
                    from_front_matter: r.flag()?,
                    published: None,
                }),
                _ => return Err("bad picture tag"),
            };
            Some(Box::new(Article {
                slug,
                id,
                title,
                published,
                updated,
                updated_from_file,
                categories,
                tags,
                summary,
                body_html,
                author,
                more_authors,
                source: path.clone(),
                hash,
                warnings,
                local_refs,
                picture,
            }))
        }
        _ => return Err("bad record kind"),
    };
    if !r.b.is_empty() {
        return Err("trailing bytes in record");
    }
    Ok(Record {
        path,
        stamp,
        parsed,
    })
}

/// `root/rel`, if `rel` names an article file below `root`: relative,
/// every part a plain name (never `..`), not in a hidden directory.
fn below(root: &Path, rel: &Path) -> Option<PathBuf> {
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    let full = root.join(rel);
    let ok = plain
        && !rel.as_os_str().is_empty()
        && crate::parse::kind_of(&full).is_some()
        && !crate::parse::in_hidden_dir(root, &full);
    ok.then_some(full)
}

/// Little-endian writer of the payload.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        self.u32(u32::try_from(b.len()).ok()?);
        self.out.extend_from_slice(b);
        Some(())
    }

    fn str(&mut self, s: &str) -> Option<()> {
        self.bytes(s.as_bytes())
    }

    fn strs(&mut self, v: &[String]) -> Option<()> {
        self.u32(u32::try_from(v.len()).ok()?);
        v.iter().try_for_each(|s| self.str(s))
    }

    /// A path relative to the content directory.
    fn path(&mut self, rel: &Path) -> Option<()> {
        use std::os::unix::ffi::OsStrExt;
        self.bytes(rel.as_os_str().as_bytes())
    }

    /// The instant (seconds, nanoseconds) and the offset it was written in.
    fn time(&mut self, t: &DateTime<FixedOffset>) {
        self.u64(t.timestamp() as u64);
        self.u32(t.timestamp_subsec_nanos());
        self.u32(t.offset().local_minus_utc() as u32);
    }

    fn stamp(&mut self, s: Stamp) {
        let Stamp {
            len,
            mtime,
            dev,
            ino,
            ctime,
        } = s;
        self.u64(len);
        // Before the epoch is possible (a file touched to 1969).
        let (tag, d) = match mtime.map(|t| t.duration_since(std::time::UNIX_EPOCH)) {
            None => (0, std::time::Duration::ZERO),
            Some(Ok(d)) => (1, d),
            Some(Err(e)) => (2, e.duration()),
        };
        self.u8(tag);
        self.u64(d.as_secs());
        self.u32(d.subsec_nanos());
        self.u64(dev);
        self.u64(ino);
        self.u64(ctime.0 as u64);
        self.u64(ctime.1 as u64);
    }
}

/// Reader of the payload: every length is checked against what is left,
/// so nothing it allocates is larger than the record.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let (head, rest) = self
            .b
            .split_at_checked(n)
            .ok_or("field beyond the record")?;
        self.b = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn flag(&mut self) -> Result<bool, &'static str> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("bad flag"),
        }
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| "u64")?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, &'static str> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| "invalid UTF-8")
    }

    /// A count of items each at least `min` bytes long: more than the
    /// record can hold is damage (and never preallocated).
    fn count(&mut self, min: usize) -> Result<usize, &'static str> {
        let n = self.u32()? as usize;
        if n > self.b.len() / min {
            return Err("count beyond the record");
        }
        Ok(n)
    }

    fn strings(&mut self) -> Result<Vec<String>, &'static str> {
        let n = self.count(4)?;
        (0..n).map(|_| self.string()).collect()
    }

    /// A path below `root`: relative, every part a plain name, and an
    /// article file's name (never `..`, an absolute path or a dot-file).
    fn path(&mut self, root: &Path) -> Result<PathBuf, &'static str> {
        use std::os::unix::ffi::OsStrExt;
        let rel = Path::new(std::ffi::OsStr::from_bytes(self.bytes()?));
        below(root, rel).ok_or("a path outside the content directory")
    }

    fn time(&mut self) -> Result<DateTime<FixedOffset>, &'static str> {
        let secs = self.u64()? as i64;
        let nanos = self.u32()?;
        let offset = self.u32()? as i32;
        let offset = FixedOffset::east_opt(offset).ok_or("bad time offset")?;
        DateTime::from_timestamp(secs, nanos)
            .map(|t| t.with_timezone(&offset))
            .ok_or("bad time")
    }

    fn stamp(&mut self) -> Result<Stamp, &'static str> {
        let len = self.u64()?;
        let tag = self.u8()?;
        let (secs, nanos) = (self.u64()?, self.u32()?);
        // `Duration::new` panics when the nanoseconds carry past u64.
        if nanos >= 1_000_000_000 {
            return Err("bad mtime");
        }
        let d = std::time::Duration::new(secs, nanos);
        let mtime = match tag {
            0 => None,
            1 => std::time::UNIX_EPOCH.checked_add(d),
            2 => std::time::UNIX_EPOCH.checked_sub(d),
            _ => return Err("bad mtime tag"),
        };
        if tag != 0 && mtime.is_none() {
            return Err("bad mtime");
        }
        Ok(Stamp {
            len,
            mtime,
            dev: self.u64()?,
            ino: self.u64()?,
            ctime: (self.u64()? as i64, self.u64()? as i64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::Library;
    use crate::state::State;
    use std::fs;

    fn ctx() -> ParseCtx {
        ParseCtx::new(chrono_tz::Europe::Berlin)
    }

    fn stamp(n: u64) -> Stamp {
        Stamp {
            len: 100 + n,
            mtime: Some(std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000 + n, 7)),
            dev: 42,
            ino: 1000 + n,
            ctime: (1_700_000_000 + n as i64, 9),
        }
    }

    /// A Markdown article with every optional field set (several
    /// authors, a front-matter id, slug, `updated`, image, summary, a
    /// warning) and a column article with a warning.
    fn samples(root: &Path) -> Vec<(PathBuf, Article)> {
        let md = "---\n\
            title: \"Everything <set>\"\n\
            date: 2025-05-01T09:30:00+05:45\n\
            updated: 2025-06-02T10:00:00-03:00\n\
            categories: [News, World]\n\
            tags: [one, two]\n\
            summary: A summary.\n\
            author: Ann\n\
            authors: [Bob, Cy]\n\
            id: urn:x:1\n\
            slug: every-thing\n\
            image: pic.png\n\
            ---\n\
            Body with ![alt](inline.jpg) and [a link](doc.pdf), *emphasis* and ü.\n";
        let col = "May 1, 2025, noon\n\nNews\n\nA column title\n";
        let mut out = Vec::new();
        for (name, text) in [("sub/2025-05-01-all.md", md), ("col.txt", col)] {
            let p = root.join(name);
            let mut a = crate::parse::parse(&p, text, &ctx())
                .unwrap()
                .expect("not a draft");
            // The Markdown parser's warnings come from the sanitiser's
            // log; one as it would read.
            if a.warnings.is_empty() {
                a.warnings.push(format!("{}:13: a warning", p.display()));
            }
            out.push((p, a));
        }
        out
    }

    fn cache_in(dir: &Path, root: &Path) -> Cache {
        Cache::new(dir.join(FILE), root.to_path_buf(), key(root, &ctx()))
    }

    /// Every field of a parsed article comes back exactly (offsets of
    /// dates included, which `==` on dates does not compare), and a draft
    /// comes back as a draft.
    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("content");
        let arts = samples(&root);
        let (md, col) = (&arts[0].1, &arts[1].1);
        assert!(md.author.is_some() && md.more_authors.len() == 2);
        assert!(md.picture.as_ref().is_some_and(|p| p.from_front_matter));
        assert!(
            !md.local_refs.is_empty() && !md.warnings.is_empty(),
            "{md:?}"
        );
        assert!(md.updated_from_file && !md.id.is_empty() && !md.tags.is_empty());
        assert!(!col.warnings.is_empty(), "{col:?}");
        let mut c = cache_in(d.path(), &root);
        c.load().unwrap();
        for (i, (p, a)) in arts.iter().enumerate() {
            c.record(p, stamp(i as u64), Some(a));
        }
        let draft = root.join("draft.md");
        c.record(&draft, stamp(9), None);
        c.flush();

        let mut c = cache_in(d.path(), &root);
        c.load().unwrap();
        for (i, (p, _)) in arts.iter().enumerate() {
            assert!(c.take(p, stamp(i as u64 + 1)).is_none(), "other stamp");
        }
        let mut c = cache_in(d.path(), &root);
        c.load().unwrap();
        for (i, (p, a)) in arts.iter().enumerate() {
            let got = c.take(p, stamp(i as u64)).unwrap().unwrap();
            assert_eq!(*got, *a);
            for (x, y) in [(got.published, a.published), (got.updated, a.updated)] {
                assert_eq!(x.to_rfc3339(), y.to_rfc3339());
            }
            assert_eq!(got.body_html.deflated(), a.body_html.deflated());
        }
        assert_eq!(c.take(&draft, stamp(9)), Some(None));
        assert_eq!(c.take(&draft, stamp(9)), None, "handed out once");
    }

    /// Where unlinked mapped files can be made (as in `herald serve`),
    /// the bodies loaded leave the heap: each lies in such a file, and
    /// reads back as the body it was.
    #[test]
    fn loaded_bodies_move_to_mapped_files() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("content");
        // Enough of them for a file (small bodies stay on the heap).
        let samples = samples(&root);
        let arts: Vec<(PathBuf, Article)> = (0..800)
            .map(|i| {
                let (p, a) = &samples[i % samples.len()];
                let p =
                    p.with_file_name(format!("{i}-{}", p.file_name().unwrap().to_str().unwrap()));
                let mut a = a.clone();
                a.source = p.clone();
                (p, a)
            })
            .collect();
        let mut c = cache_in(d.path(), &root);
        c.load().unwrap();
        for (i, (p, a)) in arts.iter().enumerate() {
            c.record(p, stamp(i as u64), Some(a));
        }
        c.flush();
        // The same directory as `sendfile`'s own tests: set once per process.
        if !crate::sendfile::enable(&std::env::temp_dir()) {
            eprintln!("skipped: no O_TMPFILE here, bodies stay on the heap");
            return;
        }
        let mut c = cache_in(d.path(), &root);
        c.load().unwrap();
        for (i, (p, a)) in arts.iter().enumerate() {
            let got = c.take(p, stamp(i as u64)).unwrap().unwrap();
            assert!(
                got.body_html.is_empty()
                    || crate::sendfile::lookup(got.body_html.deflated()).is_some(),
                "{}: body still on the heap",
                p.display()
            );
            assert!(crate::sendfile::lookup(a.body_html.deflated()).is_none());
            assert_eq!(got.body_html.html(), a.body_html.html());
        }
        let parked = arts.iter().filter(|(_, a)| !a.body_html.is_empty());
        assert!(parked.count() >= 400);
    }

    /// Writes three records and gives back the file's bytes and the
    /// records' frame offsets.
    fn three(dir: &Path, root: &Path) -> (Vec<u8>, Vec<u64>) {
        let arts = samples(root);
        let mut c = cache_in(dir, root);
        c.load().unwrap();
        for i in 0..3u64 {
            let (p, a) = &arts[(i % 2) as usize];
            let p = p.with_file_name(format!("f{i}.{}", p.extension().unwrap().to_str().unwrap()));
            let mut a = a.clone();
            a.source = p.clone();
            c.record(&p, stamp(i), Some(&a));
        }
        c.flush();
        let mut at: Vec<u64> = c.index.values().map(|s| s.at).collect();
        at.sort_unstable();
        (fs::read(dir.join(FILE)).unwrap(), at)
    }

    /// A truncated tail, a flipped byte, an absurd length, and records
    /// that pass their CRC but hold a path outside the content directory,
    /// invalid UTF-8 or a body that does not unpack: reading stops at the
    /// bad record with an error naming its offset, keeps those before it,
    /// never panics; the next save cuts the bad tail and appends, and the
    /// file reads clean again.
    #[test]
    fn damaged_file() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("content");
        let (good, at) = three(d.path(), &root);
        let file = d.path().join(FILE);
        // A record of the second file, rebuilt with a valid CRC after `f`
        // changed its payload.
        let forged = |f: &dyn Fn(&mut Vec<u8>)| {
            let (s, e) = (at[1] as usize, at[2] as usize);
            let mut payload = good[s + FRAME_LEN..e].to_vec();
            f(&mut payload);
            let mut b = good[..s].to_vec();
            b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            b.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            b.extend_from_slice(&payload);
            b
        };
        let rel_at = 4; // the path's bytes follow its length
        let mut flipped = good.clone();
        flipped[at[1] as usize + FRAME_LEN + 20] ^= 0x40;
        let mut absurd = good.clone();
        absurd[at[1] as usize..at[1] as usize + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let cases: Vec<(&str, Vec<u8>, usize, &str)> = vec![
            (
                "truncated",
                good[..good.len() - 3].to_vec(),
                2,
                "length beyond",
            ),
            ("flipped byte", flipped, 1, "checksum"),
            ("absurd length", absurd, 1, "length beyond"),
            (
                "path outside",
                forged(&|p| p[rel_at..rel_at + 3].copy_from_slice(b"../")),
                1,
                "outside the content directory",
            ),
            (
                "absolute path",
                forged(&|p| p[rel_at] = b'/'),
                1,
                "outside the content directory",
            ),
            (
                "invalid UTF-8",
                forged(&|p| {
                    // The slug follows path (4 + n), stamp (53) and kind (1).
                    let n = u32::from_le_bytes(p[..4].try_into().unwrap()) as usize;
                    p[4 + n + 53 + 1 + 4] = 0xFF;
                }),
                1,
                "invalid UTF-8",
            ),
            (
                "bad body",
                forged(&|p| {
                    let body = find_body(p);
                    p[body] ^= 0xFF;
                }),
                1,
                "body does not unpack",
            ),
        ];
        for (label, bytes, kept, why) in cases {
            fs::write(&file, &bytes).unwrap();
            let mut c = cache_in(d.path(), &root);
            let err = c.load().expect_err(label).to_string();
            assert!(err.contains(why), "{label}: {err}");
            assert_eq!(c.held.len(), kept, "{label}");
            // The next save cuts what was bad and appends after it.
            let p = root.join("new.txt");
            let a = samples(&root).pop().unwrap().1;
            let a = Article {
                source: p.clone(),
                ..a
            };
            c.record(&p, stamp(7), Some(&a));
            c.flush();
            let mut c = cache_in(d.path(), &root);
            c.load().unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(c.held.len(), kept + 1, "{label}");
            assert!(c.take(&p, stamp(7)).is_some(), "{label}");
        }
        // Noise in place of the file: one error, nothing used.
        let mut noise = good[..HEADER_LEN as usize].to_vec();
        noise.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        fs::write(&file, &noise).unwrap();
        let mut c = cache_in(d.path(), &root);
        assert!(c.load().is_err());
        assert!(c.held.is_empty());
    }

    /// A record whose CRC holds but whose body lies (bytes changed inside
    /// the packed stream, its end intact) is read at start without being
    /// inflated; the body then reads as empty, with an error logged, and
    /// nothing panics. Herald never writes such a record: it takes a CRC
    /// collision on a damaged disk, or a hand at work in `state_dir`.
    #[test]
    fn lying_body_reads_empty() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("content");
        let (good, at) = three(d.path(), &root);
        // The first record, an article with a body.
        let (s, e) = (at[0] as usize, at[1] as usize);
        let mut payload = good[s + FRAME_LEN..e].to_vec();
        let body = find_body(&payload);
        payload[body] ^= 0xFF;
        payload[body + 1] ^= 0x5A;
        let mut b = good[..s].to_vec();
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        b.extend_from_slice(&payload);
        b.extend_from_slice(&good[e..]);
        fs::write(d.path().join(FILE), &b).unwrap();
        let mut c = cache_in(d.path(), &root);
        c.load().unwrap();
        let samples = samples(&root);
        let p = samples[0].0.with_file_name("f0.md");
        let got = c.take(&p, stamp(0)).unwrap().unwrap();
        assert!(!got.body_html.is_empty());
        assert_eq!(got.body_html.html(), "");
        // The records after it are whole.
        let p2 = samples[0].0.with_file_name("f2.md");
        let a2 = c.take(&p2, stamp(2)).unwrap().unwrap();
        assert_eq!(a2.body_html.html(), samples[0].1.body_html.html());
    }

    /// Offset of the first byte of the packed body in a payload of an
    /// article record.
    fn find_body(p: &[u8]) -> usize {
        let mut r = Reader { b: p };
        r.bytes().unwrap();
        r.stamp().unwrap();
        r.u8().unwrap();
        for _ in 0..3 {
            r.bytes().unwrap();
        }
        r.time().unwrap();
        r.time().unwrap();
        r.flag().unwrap();
        r.strings().unwrap();
        r.strings().unwrap();
        r.bytes().unwrap();
        p.len() - r.b.len() + 4
    }

    /// A file written for other parse settings (another time zone) or
    /// another content directory is ignored without a warning and written
    /// anew under the new key.
    #[test]
    fn other_key_ignored() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("content");
        three(d.path(), &root);
        let utc = ParseCtx::new(chrono_tz::UTC);
        for k in [key(&root, &utc), key(&d.path().join("elsewhere"), &ctx())] {
            let mut c = Cache::new(d.path().join(FILE), root.clone(), k);
            c.load().unwrap();
            assert!(c.held.is_empty());
        }
        let mut c = Cache::new(d.path().join(FILE), root.clone(), key(&root, &utc));
        c.load().unwrap();
        let (p, a) = samples(&root).pop().unwrap();
        c.record(&p, stamp(1), Some(&a));
        c.flush();
        let mut c = Cache::new(d.path().join(FILE), root.clone(), key(&root, &utc));
        c.load().unwrap();
        assert_eq!(c.held.len(), 1);
        assert!(c.take(&p, stamp(1)).is_some());
    }

    /// Two Heralds with different settings on one state directory: one
    /// that finds the file written anew under another key does not append
    /// to it (its records would be read under that key) but writes it
    /// anew under its own.
    #[test]
    fn no_append_under_another_key() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("content");
        let (p, a) = samples(&root).pop().unwrap();
        let other = key(&root, &ParseCtx::new(chrono_tz::UTC));
        let mut mine = cache_in(d.path(), &root);
        mine.load().unwrap();
        mine.record(&p, stamp(1), Some(&a));
        mine.flush();
        let mut theirs = Cache::new(d.path().join(FILE), root.clone(), other);
        theirs.load().unwrap();
        theirs.record(&p, stamp(2), Some(&a));
        theirs.flush();
        mine.record(&p, stamp(3), Some(&a));
        mine.flush();
        let mut theirs = Cache::new(d.path().join(FILE), root.clone(), other);
        theirs.load().unwrap();
        assert!(theirs.held.is_empty());
        let mut mine = cache_in(d.path(), &root);
        mine.load().unwrap();
        assert!(mine.take(&p, stamp(3)).is_some());
    }

    /// Records of files edited again and again, or gone, are dead; once
    /// they outnumber the live ones the file is rewritten with only the
    /// latest record of each live file, which all read back.
    #[test]
    fn compaction_keeps_live_entries() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("content");
        let (p0, a0) = samples(&root).pop().unwrap();
        let name = |i: usize| p0.with_file_name(format!("f{i}.txt"));
        let art = |i: usize| Article {
            source: name(i),
            title: format!("T{i}"),
            ..a0.clone()
        };
        let mut c = cache_in(d.path(), &root);
        c.load().unwrap();
        for i in 0..10 {
            c.record(&name(i), stamp(i as u64), Some(&art(i)));
        }
        c.flush();
        let full = fs::metadata(d.path().join(FILE)).unwrap().len();
        // Five edits: 15 records, 10 live; not yet worth a rewrite.
        for i in 0..5 {
            c.record(&name(i), stamp(100 + i as u64), Some(&art(i)));
        }
        c.flush();
        assert_eq!((c.records, c.index.len()), (15, 10));
        // Four files deleted (a full scan sees them gone), one edited.
        c.retain(|p, _| p != name(6) && p != name(7) && p != name(8) && p != name(9));
        c.record(&name(0), stamp(200), Some(&art(0)));
        c.flush();
        assert_eq!((c.records, c.index.len()), (6, 6), "rewritten");
        assert!(fs::metadata(d.path().join(FILE)).unwrap().len() < full);
        // Appends go on after the rewrite.
        c.record(&name(5), stamp(300), Some(&art(5)));
        c.flush();

        let mut c = cache_in(d.path(), &root);
        c.load().unwrap();
        let want = [200, 101, 102, 103, 104, 300];
        for (i, st) in want.into_iter().enumerate() {
            let a = c.take(&name(i), stamp(st)).unwrap().unwrap();
            assert_eq!(*a, art(i));
        }
        assert!(c.held.is_empty(), "{:?}", c.held.keys());
    }

    /// A library with a cache parses every file on its first scan and
    /// none on the next start; a file edited in between is parsed again
    /// (its new title shows), one deleted is gone, and both views match.
    #[test]
    fn library_restart_reads_from_cache() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("content");
        fs::create_dir_all(&root).unwrap();
        let col = |t: &str| format!("May 1, 2025, noon\n\nNews\n\n{t}\n\nBody of {t}.\n");
        for i in 0..5 {
            fs::write(root.join(format!("a{i}.txt")), col(&format!("A{i}"))).unwrap();
        }
        fs::write(root.join("bad.txt"), "garbage").unwrap();
        fs::write(
            root.join("draft.md"),
            "---\ntitle: D\ndate: 2025-01-01\ndraft: true\n---\nx\n",
        )
        .unwrap();
        let open = || {
            let mut l = Library::new(root.clone(), ctx(), State::default(), "e.com".into());
            l.set_cache(d.path().join("state").join(FILE));
            l
        };
        let now = chrono::Utc::now();
        let mut l = open();
        l.scan().unwrap();
        let s = l.last_scan();
        assert_eq!((s.files, s.parsed, s.from_cache), (7, 7, 0));
        let first = l.view(now);
        drop(l);

        let mut l = open();
        l.scan().unwrap();
        let s = l.last_scan();
        assert_eq!((s.parsed, s.from_cache), (1, 6), "only the broken file");
        let again = l.view(now);
        assert_eq!(first.articles, again.articles);
        assert_eq!(first.rejected, again.rejected);
        drop(l);

        fs::write(root.join("a1.txt"), col("Edited")).unwrap();
        fs::remove_file(root.join("a2.txt")).unwrap();
        let mut l = open();
        l.scan().unwrap();
        let s = l.last_scan();
        assert_eq!((s.parsed, s.from_cache), (2, 4));
        let titles: Vec<String> = l
            .view(now)
            .articles
            .iter()
            .map(|a| a.title.clone())
            .collect();
        assert!(
            titles.contains(&"Edited".to_string()) && !titles.contains(&"A2".to_string()),
            "{titles:?}"
        );
    }
}
