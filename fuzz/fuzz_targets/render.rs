//! Never serve a broken feed: whatever parses from the input (as a `.txt`
//! column and as a `.md` article) is rendered as RSS 2.0, Atom 1.0 and
//! JSON Feed, main feed and category feeds, and every document must read
//! back: XML well-formed with only XML 1.0 characters and accepted by the
//! `rss` / `atom_syndication` readers, JSON accepted by serde_json. A
//! document that does not read back is a panic, so the fuzzer reports it.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use herald::article::Article;
use herald::parse::{decode, parse, ParseCtx};
use herald::render::{atom, feeds, json, rss, Body, Settings};
use libfuzzer_sys::fuzz_target;
use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};

fn settings() -> Settings {
    Settings {
        title: "Herald & Co <fuzz>".into(),
        description: "Feeds \"under\" test".into(),
        base_url: "https://news.example.org/".into(),
        language: "en".into(),
        author: "Desk".into(),
        max_items: 50,
        rss_body: Body::Full,
        atom_body: Body::Full,
        json_body: Body::Full,
        cache_max_age: 300,
        feed_id_prefix: "tag:news.example.org,2025-05-22:".into(),
        generator: "Herald fuzz".into(),
        timezone: "Asia/Shanghai".parse().expect("known zone"),
        page_size: 20,
        archive_page_size: 50,
        archive_max_age: 86400,
        hubs: vec!["https://news.example.org/websub".into()],
    }
}

/// XML 1.0 §2.2 `Char`: what may appear in a document, raw or as a
/// character reference.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn check_chars(what: &str, s: &str, doc: &str) {
    if let Some(c) = s.chars().find(|&c| !xml_char(c)) {
        panic!("{what}: character {c:?} that XML 1.0 forbids\n{doc}");
    }
}

/// Panics unless `bytes` is one well-formed XML 1.0 document.
fn assert_well_formed(kind: &str, bytes: &[u8]) {
    let doc =
        std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{kind}: output is not UTF-8: {e}"));
    check_chars(kind, doc, doc);
    let mut r = Reader::from_str(doc);
    let cfg = r.config_mut();
    cfg.check_end_names = true;
    cfg.check_comments = true;
    let (mut depth, mut roots) = (0usize, 0usize);
    loop {
        let ev = r.read_event().unwrap_or_else(|e| {
            panic!(
                "{kind}: not well-formed at byte {}: {e}\n{doc}",
                r.error_position()
            )
        });
        match ev {
            Event::Start(ref t) | Event::Empty(ref t) => {
                if depth == 0 {
                    roots += 1;
                }
                for a in t.attributes() {
                    let a = a.unwrap_or_else(|e| panic!("{kind}: bad attribute: {e}\n{doc}"));
                    let v = a
                        .decoded_and_normalized_value(XmlVersion::Explicit1_0, r.decoder())
                        .unwrap_or_else(|e| panic!("{kind}: bad attribute value: {e}\n{doc}"));
                    check_chars(kind, &v, doc);
                }
                if matches!(ev, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth -= 1,
            Event::Text(t) => {
                let t = t.decode().expect("UTF-8 input");
                assert!(
                    depth > 0 || t.trim().is_empty(),
                    "{kind}: text outside the root: {t:?}\n{doc}"
                );
                // XML 1.0 §2.4: `]]>` may not appear in character data.
                assert!(!t.contains("]]>"), "{kind}: `]]>` in text\n{doc}");
            }
            Event::CData(_) if depth == 0 => panic!("{kind}: CDATA outside the root\n{doc}"),
            Event::GeneralRef(g) => {
                assert!(depth > 0, "{kind}: reference outside the root\n{doc}");
                match g
                    .resolve_char_ref()
                    .unwrap_or_else(|e| panic!("{kind}: bad character reference: {e}\n{doc}"))
                {
                    Some(c) => assert!(
                        xml_char(c),
                        "{kind}: &#{};  XML 1.0 forbids it\n{doc}",
                        c as u32
                    ),
                    None => {
                        let name = g.decode().expect("UTF-8 input");
                        assert!(
                            matches!(&*name, "lt" | "gt" | "amp" | "apos" | "quot"),
                            "{kind}: undeclared entity &{name};\n{doc}"
                        );
                    }
                }
            }
            Event::DocType(_) => panic!("{kind}: unexpected DOCTYPE\n{doc}"),
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "{kind}: unclosed elements\n{doc}");
    assert_eq!(roots, 1, "{kind}: {roots} root elements\n{doc}");
}

fn check(articles: Vec<Article>) {
    let mut articles: Vec<Arc<Article>> = articles
        .into_iter()
        .map(|mut a| {
            // What the library does at first publication (state.rs `fresh_id`).
            if a.id.is_empty() {
                a.id = format!(
                    "tag:news.example.org,{}:{}",
                    a.published.format("%Y-%m-%d"),
                    herald::article::encode_segment(&a.slug)
                );
            }
            Arc::new(a)
        })
        .collect();
    articles.sort_by(|a, b| b.published.cmp(&a.published));
    let s = settings();
    for f in feeds(&articles, &s) {
        let n = f.items.len();

        let x = rss(&f, &s);
        assert_well_formed("rss", &x);
        let ch = ::rss::Channel::read_from(&x[..]).unwrap_or_else(|e| {
            panic!(
                "rss: rss crate cannot read it: {e}\n{}",
                String::from_utf8_lossy(&x)
            )
        });
        assert_eq!(ch.items().len(), n, "rss: item count");

        let x = atom(&f, &s);
        assert_well_formed("atom", &x);
        let af = atom_syndication::Feed::read_from(&x[..]).unwrap_or_else(|e| {
            panic!(
                "atom: atom_syndication cannot read it: {e}\n{}",
                String::from_utf8_lossy(&x)
            )
        });
        assert_eq!(af.entries().len(), n, "atom: entry count");

        let x = json(&f, &s);
        let v: serde_json::Value = serde_json::from_slice(&x)
            .unwrap_or_else(|e| panic!("json: not JSON: {e}\n{}", String::from_utf8_lossy(&x)));
        assert_eq!(
            v["items"].as_array().map(Vec::len),
            Some(n),
            "json: item count"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let ctx = ParseCtx::new(chrono_tz::Europe::Berlin);
    let mut out = Vec::new();
    for name in ["content/2025-05-22-fuzz.txt", "content/2025-05-22-fuzz.md"] {
        let path = Path::new(name);
        let Ok(text) = decode(path, data) else {
            return;
        };
        if let Ok(Some(a)) = parse(path, text, &ctx) {
            out.push(a);
        }
    }
    if !out.is_empty() {
        check(out);
    }
});
