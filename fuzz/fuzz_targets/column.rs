//! Scraped news column (`.txt`, FORMAT.md §1): any bytes either become an
//! article or a `ParseError`, never a panic. The date line is also fed to
//! `parse_column_date` on its own, and the whole file is parsed in zones
//! with DST gaps and extreme offsets, since dates carry no offset.
#![no_main]

use std::path::Path;

use herald::parse::{decode, parse, parse_column_date, ParseCtx};
use libfuzzer_sys::fuzz_target;

const ZONES: [chrono_tz::Tz; 4] = [
    chrono_tz::UTC,
    chrono_tz::Europe::Berlin,
    chrono_tz::Pacific::Kiritimati,
    chrono_tz::Pacific::Pago_Pago,
];

fuzz_target!(|data: &[u8]| {
    let path = Path::new("content/2025-05-22-fuzz.txt");
    let Ok(text) = decode(path, data) else {
        return;
    };
    let first = text
        .trim_start_matches('\u{feff}')
        .lines()
        .next()
        .unwrap_or("");
    let _ = parse_column_date(first.trim());
    for tz in ZONES {
        if let Ok(Some(a)) = parse(path, text, &ParseCtx::new(tz)) {
            assert!(!a.slug.is_empty(), "published article without a slug");
        }
    }
});
