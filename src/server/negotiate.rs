//! Content negotiation: which coding a response is sent in
//! (`Accept-Encoding`, RFC 9110 §12.5.3).

use hyper::header::{self, HeaderMap};

use crate::site::Coding;

/// Picks the coding for a response from `Accept-Encoding` (RFC 9110
/// §12.5.3): of gzip and (when `have_br`) brotli, the one with the higher
/// q-value above 0 (brotli on a tie, being smaller); a coding the header
/// does not name takes the q of `*`, if any. Neither acceptable (or no
/// header): identity.
pub fn negotiate(headers: &HeaderMap, have_br: bool) -> Coding {
    let (mut gzip, mut br, mut star) = (None::<f32>, None::<f32>, None::<f32>);
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        for item in v.as_bytes().split(|&b| b == b',') {
            let (coding, params) = match item.iter().position(|&b| b == b';') {
                Some(i) => (&item[..i], &item[i + 1..]),
                None => (item, &[][..]),
            };
            let coding = coding.trim_ascii();
            let slot =
                if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                    &mut gzip
                } else if coding.eq_ignore_ascii_case(b"br") {
                    &mut br
                } else if coding == b"*" {
                    &mut star
                } else {
                    continue;
                };
            // The first mention of a coding counts.
            slot.get_or_insert_with(|| q_value(params));
        }
    }
    let gzip = gzip.or(star).unwrap_or(0.0);
    let br = if have_br {
        br.or(star).unwrap_or(0.0)
    } else {
        0.0
    };
    if br > 0.0 && br >= gzip {
        Coding::Br
    } else if gzip > 0.0 {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// The `q` of an `Accept-Encoding` item's parameters (`;q=0.5`), 1 when
/// absent or unreadable.
fn q_value(params: &[u8]) -> f32 {
    params
        .split(|&b| b == b';')
        .filter_map(|p| {
            let p = p.trim_ascii();
            p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q="))
        })
        .filter_map(|q| {
            std::str::from_utf8(q.trim_ascii())
                .ok()?
                .parse::<f32>()
                .ok()
        })
        .next()
        .unwrap_or(1.0)
}
