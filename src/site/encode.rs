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

/// gzip level of a referenced file's twin (SVG, CSV …): compressed once,
/// when the file changes, not on every edit of a feed.
pub(super) const MEDIA_GZIP_LEVEL: u32 = 6;

/// gzip (RFC 1952) of `b`: a fixed header without mtime or name, so output
/// is deterministic; raw deflate; CRC-32 and length. The deflate state
/// (~300 KB per level) is kept per thread and reset between documents:
/// allocating and zeroing it afresh cost more than compressing a page.
pub(super) fn gzip(b: &[u8], level: u32) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    thread_local! {
        static DEFLATE: std::cell::RefCell<Vec<(u32, Compress)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
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
    DEFLATE.with_borrow_mut(|cache| {
        let at = match cache.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                cache.push((level, Compress::new(Compression::new(level), false)));
                cache.len() - 1
            }
        };
        let c = &mut cache[at].1;
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
