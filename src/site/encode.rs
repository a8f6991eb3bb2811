//! How documents are compressed: the deterministic gzip twin of a whole
//! document, and the per-thread deflate state the spliced article pages
//! share (see `asset.rs`, `Form::Spliced`). Brotli forms are made after
//! publication, by [`super::Asset::make_br`].

/// A page tail and its deflated form (every page has the same tail).
pub(super) type DeflatedTail = Option<(String, Vec<u8>)>;

thread_local! {
    /// Page heads' compressor, and the last page tail deflated.
    pub(super) static PAGE_DEFLATE: std::cell::RefCell<(flate2::Compress, DeflatedTail)> =
        std::cell::RefCell::new((flate2::Compress::new(flate2::Compression::new(2), false), None));
}

/// gzip level of a whole document's twin: feeds, the index and OPML are
/// few and fetched over and over, but they are also re-compressed on every
/// edit that touches them, on the way to being served: level 3 (a 313 KB
/// feed: 0.8% larger than level 4 and 2.1% larger than level 6, in 70% and
/// 58% of their time; brotli, made after publication, is the small form).
/// Article pages are not compressed here at all (see `Form::Spliced` in `asset.rs`).
pub(super) const WHOLE_GZIP_LEVEL: u32 = 3;

/// gzip level of the pieces a large feed is cut into (see [`gzip_cut`]):
/// each piece is compressed once and then reused while it stays in the
/// feed, so a higher level costs once per item, not once per edit. Cut at
/// level 6 with each piece primed by the one before, a 340 KB feed of 50
/// items comes out 0.3% larger than whole at level 3 (cut at level 3: 3.8%
/// larger; cut with no priming: 54% larger, the items share most of their
/// words and markup).
pub(super) const CUT_GZIP_LEVEL: u32 = 6;

/// Documents shorter than this are compressed whole: cutting saves less
/// than it costs.
pub(super) const CUT_MIN_LEN: usize = 32 * 1024;

/// A deflate block a stream can end with: final, fixed codes, no symbol
/// but end-of-block.
const EMPTY_FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// How large documents of this media type are cut: just before each of
/// their items (a piece is one item and what follows it up to the next),
/// so an edit changes the pieces of the items it touched. `None`:
/// compressed whole.
pub(super) fn cut_marker(content_type: &str) -> Option<&'static [u8]> {
    if content_type.starts_with("application/rss+xml") {
        Some(b"<item>")
    } else if content_type.starts_with("application/atom+xml") {
        Some(b"<entry>")
    } else if content_type.starts_with("application/feed+json") {
        Some(b"\n    {\n      \"id\":")
    } else {
        None
    }
}

/// Where a document's gzip form was cut, piece by piece, for the next
/// version of the document to reuse.
#[derive(Debug, Default)]
pub(super) struct Cuts(Vec<Piece>);

#[derive(Debug, Clone, Copy)]
struct Piece {
    /// Hash of the piece's bytes and of those of the piece before it,
    /// which primed its compressor: equal keys, equal deflated bytes.
    key: u128,
    /// Where its deflated bytes are in the gzip form, and how many.
    at: u32,
    deflated: u32,
    /// CRC-32 and length of its bytes.
    crc: u32,
    len: u32,
}

/// The gzip form of `b` (as [`gzip`]: no name, no mtime), deflated in
/// pieces cut before each `marker`: each piece is compressed on its own,
/// primed with the bytes of the piece before it (the last 32 KiB of them,
/// deflate's window, are exactly what precedes it when the stream is
/// inflated), and ends in a sync flush; an empty final block closes the
/// stream. A piece whose key is among the pieces of `before` (the
/// previous version of the document: its gzip bytes and cuts) is copied
/// from there, so an edit of one item of a feed compresses that item and
/// the one after it (primed by it), and the feed's head, instead of the
/// whole feed. The output is the same whether a piece was copied or
/// compressed anew.
pub(super) fn gzip_cut(b: &[u8], marker: &[u8], before: Option<(&[u8], &Cuts)>) -> (Vec<u8>, Cuts) {
    use xxhash_rust::xxh3::xxh3_128;
    let known: rustc_hash::FxHashMap<u128, Piece> = before
        .map(|(_, c)| c.0.iter().map(|p| (p.key, *p)).collect())
        .unwrap_or_default();
    let old = before.map_or(&[][..], |(z, _)| z);
    let mut starts: Vec<usize> = vec![0];
    starts.extend(memchr::memmem::find_iter(b, marker).filter(|&i| i > 0));
    starts.push(b.len());
    let mut out = Vec::with_capacity(b.len() / 4 + 4096);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut cuts = Vec::with_capacity(starts.len());
    let mut crc = crc32fast::Hasher::new();
    let mut prev: (&[u8], u128) = (&[], 0);
    for w in starts.windows(2) {
        let piece = &b[w[0]..w[1]];
        let hash = xxh3_128(piece);
        let mut k = [0u8; 36];
        k[..16].copy_from_slice(&prev.1.to_le_bytes());
        k[16..32].copy_from_slice(&hash.to_le_bytes());
        k[32..].copy_from_slice(&CUT_GZIP_LEVEL.to_le_bytes());
        let key = xxh3_128(&k);
        let at = out.len();
        let reused = known.get(&key).and_then(|p| {
            let z = old.get(p.at as usize..(p.at + p.deflated) as usize)?;
            (p.len as usize == piece.len()).then_some((z, p.crc))
        });
        let piece_crc = match reused {
            Some((z, c)) => {
                out.extend_from_slice(z);
                c
            }
            None => {
                let dict = &prev.0[prev.0.len().saturating_sub(32 * 1024)..];
                with_compressor(CUT_GZIP_LEVEL, |c| {
                    crate::article::deflate_after(c, dict, piece, &mut out, false);
                });
                crc32fast::hash(piece)
            }
        };
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            piece_crc,
            piece.len() as u64,
        ));
        cuts.push(Piece {
            key,
            at: at as u32,
            deflated: (out.len() - at) as u32,
            crc: piece_crc,
            len: piece.len() as u32,
        });
        prev = (piece, hash);
    }
    out.extend_from_slice(&EMPTY_FINAL_BLOCK);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    (out, Cuts(cuts))
}

/// Runs `f` with this thread's compressor at `level`. The deflate state
/// (~300 KB per level) is kept per thread: allocating and zeroing it
/// afresh cost more than compressing a page.
fn with_compressor<T>(level: u32, f: impl FnOnce(&mut flate2::Compress) -> T) -> T {
    use flate2::{Compress, Compression};
    thread_local! {
        static DEFLATE: std::cell::RefCell<Vec<(u32, Compress)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    DEFLATE.with_borrow_mut(|cache| {
        let at = match cache.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                cache.push((level, Compress::new(Compression::new(level), false)));
                cache.len() - 1
            }
        };
        f(&mut cache[at].1)
    })
}

/// gzip level of a referenced file's twin (SVG, CSV …): compressed once,
/// when the file changes, not on every edit of a feed.
pub(super) const MEDIA_GZIP_LEVEL: u32 = 6;

/// gzip (RFC 1952) of `b`: a fixed header without mtime or name, so output
/// is deterministic; raw deflate; CRC-32 and length. The deflate state
/// (~300 KB per level) is kept per thread and reset between documents:
/// allocating and zeroing it afresh cost more than compressing a page.
pub(super) fn gzip(b: &[u8], level: u32) -> Vec<u8> {
    use flate2::{FlushCompress, Status};
    // XFL as RFC 1952 §2.3.1 and flate2's GzBuilder set it; OS 255 = unknown.
    let xfl = match level {
        9.. => 2,
        0..=1 => 4,
        _ => 0,
    };
    // Feeds and pages deflate to a quarter or less: sized for that, a
    // 300 KB feed's output stays below glibc's mmap threshold (a mapping
    // is faulted in page by page and unmapped again on every publish).
    let mut out = Vec::with_capacity(b.len() / 4 + 4096);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff]);
    with_compressor(level, |c| {
        c.reset();
        loop {
            let done = c.total_in() as usize;
            let status = c
                .compress_vec(&b[done..], &mut out, FlushCompress::Finish)
                .expect("deflating a complete in-memory buffer cannot fail");
            if status == Status::StreamEnd {
                break;
            }
            out.reserve(out.capacity().max(4096));
        }
    });
    let mut crc = flate2::Crc::new();
    crc.update(b);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(z), &mut out).unwrap();
        out
    }

    /// A feed of `n` items, item `edited` with another title.
    fn feed(n: usize, edited: Option<usize>) -> Vec<u8> {
        let mut d = String::from("<rss><channel><title>t</title>\n");
        let mut x = 12345u32;
        for i in 0..n {
            let title = if edited == Some(i) { "edited" } else { "title" };
            d.push_str(&format!("<item><title>{title} {i}</title><description>"));
            // Prose-like: words drawn from a few hundred.
            for _ in 0..(300 + i * 7 % 50) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let w = (x >> 16) % 400;
                d.push_str(&format!(
                    "w{w}{} ",
                    ["a", "tion", "ing", "ed"][(w % 4) as usize]
                ));
            }
            d.push_str("</description></item>\n");
        }
        d.push_str("</channel></rss>\n");
        d.into_bytes()
    }

    /// A cut document inflates to itself; the next version, built from
    /// the pieces of the previous one, is byte for byte what compressing
    /// it afresh gives, whatever changed (an item edited, one added at
    /// the top, the last dropped, nothing); and it is close to whole
    /// compression in size.
    #[test]
    fn cut_gzip_reuses_pieces() {
        let marker = b"<item>";
        let first = feed(50, None);
        let (z, cuts) = gzip_cut(&first, marker, None);
        assert_eq!(gunzip(&z), first);
        assert_eq!(cuts.0.len(), 51);
        let whole = gzip(&first, WHOLE_GZIP_LEVEL).len();
        assert!(z.len() < whole * 11 / 10, "cut {} whole {whole}", z.len());
        for next in [
            feed(50, Some(7)),
            feed(50, Some(0)),
            feed(51, None),
            feed(49, None),
            first.clone(),
        ] {
            let (again, _) = gzip_cut(&next, marker, Some((&z, &cuts)));
            assert_eq!(gunzip(&again), next);
            assert_eq!(again, gzip_cut(&next, marker, None).0);
        }
        // No marker, a marker first, nothing at all: one piece each.
        for d in [&b"plain text"[..], b"<item>a<item>b", b""] {
            let (z, c) = gzip_cut(d, marker, None);
            assert_eq!(gunzip(&z), d);
            assert_eq!(gzip_cut(d, marker, Some((&z, &c))).0, z);
        }
        // A piece found in `before` whose bytes there are cut short (a
        // damaged `before`) is compressed again, not copied.
        let (z2, c2) = gzip_cut(&first, marker, Some((&z[..z.len() / 2], &cuts)));
        assert_eq!(gunzip(&z2), first);
        assert_eq!(c2.0.len(), 51);
    }

    /// The per-thread deflate state is reset between documents: a large
    /// document (several output buffer growths) followed by small ones at
    /// both levels all give valid gzip members of exactly their input.
    #[test]
    fn gzip_state_reused() {
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        let docs: [&[u8]; 4] = [&big, b"<p>small</p>", b"", &big[..1000]];
        for level in [1, 6, 1] {
            for d in docs {
                let z = gzip(d, level);
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[..]), &mut out)
                    .unwrap();
                assert_eq!(out, d, "level {level}, {} bytes", d.len());
            }
        }
    }
}
