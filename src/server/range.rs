//! Byte ranges (RFC 9110 §14): which part of a representation a `GET`
//! with `Range` asks for. One range of bytes is served (`206`); several
//! ranges in one request, another unit or a spec that does not parse are
//! ignored and the whole representation sent, as §14.2 allows — a
//! `multipart/byteranges` answer buys a feed reader or a podcast client
//! nothing, and a list of many small ranges is a known way to make a
//! server do a lot of work for a little request. A range starting past
//! the end is `416`. `If-Range` (§13.1.5) lets a client resume only the
//! representation it has: a strong `ETag` equal to the one about to be
//! sent, or an HTTP date equal to its `Last-Modified`; anything else, and
//! the whole representation is sent.
//!
//! A range applies to the representation negotiated for the request: with
//! gzip it counts bytes of the gzip form, whose `ETag` differs from the
//! uncompressed one's, as nginx does with `gzip_static`. Pure functions of
//! the request's headers; no I/O.

use std::time::SystemTime;

use hyper::header::{self, HeaderMap};

/// What to send for a request's `Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// The whole representation (no usable `Range`, or `If-Range` says
    /// the client's copy is another one).
    Whole,
    /// Bytes `start..end` (end exclusive) of it, as `206`.
    Part { start: u64, end: u64 },
    /// No byte of it is in the range: `416`.
    Unsatisfiable,
}

/// The part of a representation of `len` bytes, with strong validator
/// `etag` and `last_modified`, that `headers` ask for.
pub fn ranged(headers: &HeaderMap, len: u64, etag: &[u8], last_modified: SystemTime) -> Ranged {
    let Some(spec) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ranged::Whole;
    };
    if let Some(v) = headers.get(header::IF_RANGE) {
        if !if_range_holds(v.as_bytes(), etag, last_modified) {
            return Ranged::Whole;
        }
    }
    parse(spec, len)
}

/// True when `If-Range`'s value names this very representation: its
/// strong `ETag`, or exactly its `Last-Modified` date. A weak tag never
/// matches (§13.1.5: the comparison is strong).
fn if_range_holds(value: &[u8], etag: &[u8], last_modified: SystemTime) -> bool {
    let value = value.trim_ascii();
    if value.starts_with(b"W/") {
        return false;
    }
    if value.first() == Some(&b'"') {
        return value == etag;
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .is_some_and(|d| d == last_modified)
}

/// One `bytes=` range of a representation of `len` bytes: `first-last`,
/// `first-` or `-suffix` (§14.1.2); [`Ranged::Whole`] for anything else.
fn parse(spec: &str, len: u64) -> Ranged {
    let Some((unit, set)) = spec.split_once('=') else {
        return Ranged::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        // Digits only: `+5`, ` 5` and `0x5` are not byte positions.
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.is_empty() {
        // The last `suffix` bytes (all of them when it exceeds `len`).
        return match num(last) {
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if len == 0 => Ranged::Unsatisfiable,
            Some(suffix) => Ranged::Part {
                start: len - suffix.min(len),
                end: len,
            },
            None => Ranged::Whole,
        };
    }
    let Some(start) = num(first) else {
        return Ranged::Whole;
    };
    let last = match (last.is_empty(), num(last)) {
        (true, _) => None,
        (false, Some(l)) if l >= start => Some(l),
        (false, _) => return Ranged::Whole,
    };
    if start >= len {
        return Ranged::Unsatisfiable;
    }
    let end = last.map_or(len, |l| l.saturating_add(1).min(len));
    Ranged::Part { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn t() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn part(start: u64, end: u64) -> Ranged {
        Ranged::Part { start, end }
    }

    #[test]
    fn range_specs() {
        use Ranged::{Unsatisfiable, Whole};
        let cases: &[(&str, u64, Ranged)] = &[
            ("bytes=0-99", 1000, part(0, 100)),
            ("bytes=100-", 1000, part(100, 1000)),
            ("bytes=-100", 1000, part(900, 1000)),
            ("bytes=-5000", 1000, part(0, 1000)),
            ("bytes=990-2000", 1000, part(990, 1000)),
            ("bytes=999-999", 1000, part(999, 1000)),
            ("BYTES = 0-0", 1000, part(0, 1)),
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=5000-6000", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            // Ignored: the whole representation.
            ("bytes=0-1,5-6", 1000, Whole),
            ("bytes=9-3", 1000, Whole),
            ("bytes=a-b", 1000, Whole),
            ("bytes=+5-9", 1000, Whole),
            ("bytes=5-x", 1000, Whole),
            ("bytes=-", 1000, Whole),
            ("bytes=", 1000, Whole),
            ("items=0-9", 1000, Whole),
            ("0-9", 1000, Whole),
            ("bytes=99999999999999999999-", 1000, Whole),
            ("bytes=0-99999999999999999999", 1000, Whole),
            ("bytes=0-18446744073709551615", 1000, part(0, 1000)),
        ];
        for (spec, len, want) in cases {
            assert_eq!(
                ranged(&req(&[("range", spec)]), *len, b"\"x\"", t()),
                *want,
                "{spec} of {len}"
            );
        }
        assert_eq!(ranged(&req(&[]), 1000, b"\"x\"", t()), Whole);
    }

    #[test]
    fn if_range() {
        let date = httpdate::fmt_http_date(t());
        let earlier = httpdate::fmt_http_date(t() - Duration::from_secs(1));
        let cases: &[(&str, Ranged)] = &[
            ("\"abc\"", part(0, 10)),
            ("\"other\"", Ranged::Whole),
            ("W/\"abc\"", Ranged::Whole),
            (&date, part(0, 10)),
            (&earlier, Ranged::Whole),
            ("not a date", Ranged::Whole),
        ];
        for (v, want) in cases {
            let h = req(&[("range", "bytes=0-9"), ("if-range", v)]);
            assert_eq!(ranged(&h, 100, b"\"abc\"", t()), *want, "If-Range: {v}");
        }
    }
}
