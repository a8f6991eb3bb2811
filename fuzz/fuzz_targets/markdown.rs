//! Markdown with YAML or TOML front matter (`.md`, FORMAT.md §2): any bytes
//! either become an article (or a draft) or a `ParseError`, never a panic.
//! Exercises the front-matter split, serde_yaml, toml, pulldown-cmark and
//! ammonia.
#![no_main]

use std::path::Path;

use herald::parse::{decode, parse, ParseCtx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("content/2025-05-22-fuzz.md");
    let Ok(text) = decode(path, data) else {
        return;
    };
    // A zone with DST, so offset-less dates can land in a gap or an overlap.
    let ctx = ParseCtx::new(chrono_tz::Europe::Berlin);
    if let Ok(Some(a)) = parse(path, text, &ctx) {
        assert!(!a.slug.is_empty(), "published article without a slug");
    }
});
