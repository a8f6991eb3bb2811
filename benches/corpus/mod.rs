//! Deterministic generator of realistic Herald content, shared by
//! `examples/gen_corpus.rs` (corpora on disk for `herald build` and Hugo)
//! and `benches/pipeline.rs` (inputs held in memory).
//!
//! Article `i` depends only on `i` and the mix, never on the others, so a
//! corpus can be generated in parallel and article 7 of a 1,000-article
//! corpus is article 7 of a 100,000-article one. Every article is 4–6 KB,
//! dated in the three years before [`END`], in one of eight categories,
//! under a `YYYY/MM/` subdirectory with a unique, dated file name.
//!
//! Columns (`.txt`) follow FORMAT.md §1 exactly: every Django time form
//! (`6:40 a.m.`, `9 a.m.`, `noon`, `midnight`, `12:05 a.m.`), AP months
//! (`Sept.`, `March`), an optional views line with thousands separators,
//! 0–3 `image` lines, and the `Recommend` … `Latest` chrome. Markdown
//! (`.md`) has YAML or TOML front matter, headings, lists, links, emphasis
//! and sometimes a table or a block quote.
#![allow(dead_code)]

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, FixedOffset, Timelike};

/// Newest possible article date: 2025-05-01T00:00:00Z. Everything is older.
pub const END: i64 = 1_746_057_600;
/// Dates spread over three years before [`END`].
pub const SPAN: i64 = 3 * 365 * 86_400;

/// The eight sections of the generated site.
pub const CATEGORIES: [&str; 8] = [
    "Columns and Opinions",
    "World News",
    "Economy & Trade",
    "Science and Technology",
    "Culture",
    "Sports",
    "Asia-Pacific",
    "Health",
];

/// Which formats a corpus holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Three columns for every two Markdown files.
    Mixed,
    /// Only Markdown, with front matter Hugo reads as well (title, date with
    /// offset, `categories` list).
    MdOnly,
    /// Only scraped columns.
    TxtOnly,
}

/// One generated file: its path relative to the content root, and its text.
#[derive(Debug, Clone)]
pub struct Doc {
    /// E.g. `2024/03/2024-03-15-talks-resume-in-geneva-1234.txt`.
    pub rel: String,
    /// The file's contents.
    pub text: String,
}

/// SplitMix64: tiny, fast, and good enough to vary text.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for one article: seeded from its index only.
    pub fn for_article(i: u64) -> Rng {
        let mut r = Rng(0x4845_5241_4c44 ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }

    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

const NOUNS: &[&str] = &[
    "government",
    "delegation",
    "economy",
    "market",
    "region",
    "ministry",
    "policy",
    "agreement",
    "negotiation",
    "conflict",
    "ceasefire",
    "election",
    "parliament",
    "budget",
    "investment",
    "trade",
    "tariff",
    "supply chain",
    "harbour",
    "railway",
    "university",
    "hospital",
    "vaccine",
    "climate",
    "drought",
    "harvest",
    "factory",
    "currency",
    "inflation",
    "central bank",
    "summit",
    "alliance",
    "border",
    "pipeline",
    "satellite",
    "laboratory",
    "festival",
    "museum",
    "championship",
    "league",
    "coach",
    "athlete",
    "researcher",
    "spokesperson",
    "minister",
    "president",
    "committee",
    "council",
    "court",
    "reform",
    "strategy",
    "framework",
    "consensus",
    "dialogue",
    "partnership",
    "infrastructure",
    "energy",
    "grid",
    "semiconductor",
    "export",
    "import",
    "shipping",
    "port",
    "exhibition",
    "audience",
    "tournament",
    "stadium",
    "clinic",
    "outbreak",
    "population",
    "village",
    "city",
    "province",
    "coastline",
    "river",
    "forest",
    "prisoner exchange",
    "sanction",
    "treaty",
    "referendum",
    "coalition",
    "opposition",
    "survey",
    "report",
    "forecast",
];
const VERBS: &[&str] = &[
    "announced",
    "signed",
    "rejected",
    "welcomed",
    "proposed",
    "discussed",
    "reviewed",
    "approved",
    "postponed",
    "expanded",
    "reduced",
    "criticised",
    "supported",
    "questioned",
    "launched",
    "completed",
    "suspended",
    "extended",
    "confirmed",
    "denied",
    "reached",
    "negotiated",
    "measured",
    "reported",
    "predicted",
    "observed",
    "hosted",
    "won",
    "lost",
    "built",
    "opened",
    "closed",
    "raised",
    "lowered",
    "stabilised",
    "strengthened",
];
const ADJECTIVES: &[&str] = &[
    "new",
    "regional",
    "historic",
    "cautious",
    "ambitious",
    "direct",
    "indirect",
    "fragile",
    "lasting",
    "preliminary",
    "comprehensive",
    "bilateral",
    "multilateral",
    "domestic",
    "international",
    "economic",
    "political",
    "humanitarian",
    "scientific",
    "cultural",
    "significant",
    "modest",
    "sharp",
    "gradual",
    "unexpected",
    "long-awaited",
    "record",
    "first",
    "second",
    "final",
    "joint",
    "public",
    "private",
    "local",
    "national",
];
const CONNECTIVES: &[&str] = &[
    "However,",
    "Meanwhile,",
    "In addition,",
    "At the same time,",
    "According to officials,",
    "Analysts said that",
    "On the 21st,",
    "Last week,",
    "In conclusion,",
    "Therefore,",
    "By contrast,",
    "As a result,",
    "For the first time,",
    "Since March,",
    "In the past year,",
];
const PLACES: &[&str] = &[
    "Istanbul",
    "Geneva",
    "Beijing",
    "Brussels",
    "Nairobi",
    "Jakarta",
    "São Paulo",
    "Washington",
    "Moscow",
    "Kyiv",
    "Riyadh",
    "Tokyo",
    "Seoul",
    "New Delhi",
    "Cairo",
    "Hanoi",
    "Canberra",
    "Mexico City",
    "Ankara",
    "Berlin",
];
const TAGS: &[&str] = &[
    "diplomacy",
    "trade",
    "energy",
    "health",
    "climate",
    "football",
    "elections",
    "markets",
    "research",
    "film",
    "transport",
    "agriculture",
];
const MONTHS: [&str; 12] = [
    "Jan.", "Feb.", "March", "April", "May", "June", "July", "Aug.", "Sept.", "Oct.", "Nov.",
    "Dec.",
];

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A figure as a newspaper prints it: `97`, `1,234`, `600 billion`.
fn figure(r: &mut Rng) -> String {
    match r.below(4) {
        0 => r.range(2, 99).to_string(),
        1 => thousands(r.range(1_000, 99_999) as u64),
        2 => format!("{} percent", r.range(1, 60)),
        _ => format!("${} billion", r.range(1, 900)),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One sentence of plausible news prose, with the odd quote, `&` or figure.
fn sentence(r: &mut Rng) -> String {
    let mut s = String::with_capacity(160);
    if r.chance(1, 3) {
        s.push_str(r.pick(CONNECTIVES));
        s.push_str(" the ");
    } else {
        s.push_str("The ");
    }
    let words = r.range(6, 18);
    for w in 0..words {
        match (w, r.below(9)) {
            (1, _) | (_, 0) => s.push_str(r.pick(VERBS)),
            (_, 1) => s.push_str(r.pick(ADJECTIVES)),
            (_, 2) => s.push_str(r.pick(PLACES)),
            (_, 3) => s.push_str(&figure(r)),
            (_, 4) => s.push_str(["in", "of", "with", "for", "after", "and"][r.below(6)]),
            (_, 5) if r.chance(1, 6) => s.push_str("\"confidence-building measure\""),
            (_, 6) if r.chance(1, 10) => s.push_str("R&D"),
            _ => s.push_str(r.pick(NOUNS)),
        }
        s.push(' ');
    }
    s.pop();
    s.push(if r.chance(1, 15) { '?' } else { '.' });
    s
}

fn paragraph(r: &mut Rng) -> String {
    let n = r.range(3, 8);
    let mut p = String::with_capacity(n * 120);
    for i in 0..n {
        if i > 0 {
            p.push(' ');
        }
        p.push_str(&sentence(r));
    }
    p
}

fn title(r: &mut Rng) -> String {
    let mut t = match r.below(5) {
        0 => format!(
            "What impact will the \"{}\" plan between {} and {} have?",
            r.pick(NOUNS),
            r.pick(PLACES),
            r.pick(PLACES)
        ),
        1 => format!(
            "{} {} {} in {}",
            capitalise(r.pick(ADJECTIVES)),
            r.pick(NOUNS),
            r.pick(VERBS),
            r.pick(PLACES)
        ),
        2 => format!(
            "A Sharp Turn in {} Policy: {} & the {} {}",
            r.pick(PLACES),
            capitalise(r.pick(NOUNS)),
            capitalise(r.pick(ADJECTIVES)),
            capitalise(r.pick(NOUNS))
        ),
        3 => format!(
            "{} {} {} as {} {}",
            capitalise(r.pick(NOUNS)),
            r.pick(VERBS),
            figure(r),
            r.pick(NOUNS),
            r.pick(VERBS)
        ),
        _ => format!(
            "Why the {} {} matters for {}",
            r.pick(ADJECTIVES),
            r.pick(NOUNS),
            r.pick(PLACES)
        ),
    };
    if r.chance(1, 40) {
        t.push_str(" <analysis>");
    }
    t
}

/// The article's date, local to +08:00 (the site's zone in `bench` configs).
fn date(r: &mut Rng) -> DateTime<FixedOffset> {
    let mut secs = END - 3600 - (r.next() % SPAN as u64) as i64;
    secs -= secs % 60;
    let tz = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    let mut d = DateTime::from_timestamp(secs, 0)
        .expect("in range")
        .with_timezone(&tz);
    // Make every Django time form frequent: whole hours (`9 a.m.`), noon,
    // midnight and the minutes after midnight (`12:05 a.m.`).
    let (h, m) = match r.below(12) {
        0 => (12, 0),
        1 => (0, 0),
        2 => (0, r.range(1, 59) as u32),
        3 | 4 => (d.hour(), 0),
        _ => (d.hour(), d.minute()),
    };
    d = d
        .with_hour(h)
        .and_then(|d| d.with_minute(m))
        .expect("valid time");
    d
}

/// Django `N j, Y, P`: `Sept. 9, 2024, 12:05 a.m.`.
pub fn django_date(d: &DateTime<FixedOffset>) -> String {
    let (h, m) = (d.hour(), d.minute());
    let time = match (h, m) {
        (0, 0) => "midnight".to_string(),
        (12, 0) => "noon".to_string(),
        _ => {
            let h12 = if h % 12 == 0 { 12 } else { h % 12 };
            let ampm = if h < 12 { "a.m." } else { "p.m." };
            if m == 0 {
                format!("{h12} {ampm}")
            } else {
                format!("{h12}:{m:02} {ampm}")
            }
        }
    };
    format!(
        "{} {}, {}, {time}",
        MONTHS[d.month0() as usize],
        d.day(),
        d.year()
    )
}

fn file_stem(d: &DateTime<FixedOffset>, title: &str, i: u64) -> String {
    let mut slug = String::new();
    for w in title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(6)
    {
        slug.push_str(&w.to_ascii_lowercase());
        slug.push('-');
    }
    format!("{}-{slug}{i}", d.format("%Y-%m-%d"))
}

fn dir(d: &DateTime<FixedOffset>) -> String {
    d.format("%Y/%m").to_string()
}

/// Article `i` of a corpus with the given mix.
pub fn article(i: u64, mix: Mix) -> Doc {
    match mix {
        Mix::TxtOnly => column(i),
        Mix::MdOnly => markdown(i, true),
        Mix::Mixed if i % 5 < 3 => column(i),
        Mix::Mixed => markdown(i, false),
    }
}

/// A scraped column (FORMAT.md §1), 4–6 KB.
pub fn column(i: u64) -> Doc {
    let r = &mut Rng::for_article(i);
    let d = date(r);
    let title = title(r);
    let target = r.range(4096, 6144);
    let mut t = String::with_capacity(target + 1024);
    if r.chance(1, 50) {
        t.push('\u{feff}');
    }
    let _ = write!(t, "{}\n\n{}\n\n", django_date(&d), CATEGORIES[r.below(8)]);
    if r.chance(3, 4) {
        let views = if r.chance(1, 2) {
            r.range(1, 999).to_string()
        } else {
            thousands(r.range(1_000, 2_500_000) as u64)
        };
        let line = match r.below(3) {
            0 => format!("  • views:{views}"),
            1 => format!("• views: {views}"),
            _ => format!("\t• views:{views}  "),
        };
        let _ = write!(t, "{line}\n\n");
    }
    let _ = write!(t, "{title}\n\n");
    for _ in 0..r.below(4) {
        t.push_str("image\n\n");
    }
    let chrome = 400;
    let mut first = true;
    while t.len() + chrome < target || first {
        if !first && r.chance(1, 12) {
            t.push_str("Latest figures show the ");
            t.push_str(r.pick(NOUNS));
            t.push_str(" has ");
            t.push_str(r.pick(VERBS));
            t.push_str(". ");
        }
        t.push_str(&paragraph(r));
        t.push_str("\n\n");
        first = false;
    }
    let _ = write!(
        t,
        "Recommend\n\n{}\n\n{}\n\nLatest",
        title_teaser(r),
        sentence(r)
    );
    if r.chance(1, 30) {
        t = t.replace('\n', "\r\n");
    }
    Doc {
        rel: format!("{}/{}.txt", dir(&d), file_stem(&d, &title, i)),
        text: t,
    }
}

fn title_teaser(r: &mut Rng) -> String {
    format!(
        "A Sharp Turn in {} Policy: The {} Enters the \"Post-{} Era\"",
        r.pick(PLACES),
        capitalise(r.pick(NOUNS)),
        capitalise(r.pick(ADJECTIVES))
    )
}

/// A double-quoted string valid in both YAML and TOML.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Markdown article, 4–6 KB. With `hugo`, the front matter is what Hugo
/// 0.111 reads as well: title, date with offset, `categories` list; and no
/// date without an offset.
pub fn markdown(i: u64, hugo: bool) -> Doc {
    let r = &mut Rng::for_article(i);
    let d = date(r);
    let title = title(r);
    let target = r.range(4096, 6144);
    let mut cats = vec![CATEGORIES[r.below(8)]];
    if r.chance(1, 10) {
        let c = CATEGORIES[r.below(8)];
        if c != cats[0] {
            cats.push(c);
        }
    }
    let tags: Vec<&str> = (0..r.below(4)).map(|_| r.pick(TAGS)).collect();
    let list = |v: &[&str]| v.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", ");
    let toml = r.chance(1, 3);
    let date_text = if !hugo && r.chance(1, 5) {
        d.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        d.to_rfc3339()
    };
    let mut t = String::with_capacity(target + 1024);
    if toml {
        let _ = writeln!(t, "+++\ntitle = {}", quoted(&title));
        // A bare TOML datetime, as Hugo writes it.
        let _ = writeln!(t, "date = {}", d.to_rfc3339());
        let _ = writeln!(t, "categories = [{}]", list(&cats));
        if !tags.is_empty() {
            let _ = writeln!(t, "tags = [{}]", list(&tags));
        }
        if r.chance(1, 4) {
            let _ = writeln!(t, "author = {}", quoted("Desk editor"));
        }
        t.push_str("+++\n");
    } else {
        let _ = writeln!(t, "---\ntitle: {}\ndate: {date_text}", quoted(&title));
        let _ = writeln!(t, "categories: [{}]", list(&cats));
        if !tags.is_empty() {
            let _ = writeln!(t, "tags: [{}]", list(&tags));
        }
        if r.chance(1, 4) {
            let _ = writeln!(t, "summary: {}", quoted(&sentence(r)));
        }
        t.push_str("---\n");
    }
    let mut first = true;
    while t.len() < target {
        match (first, r.below(10)) {
            (true, _) | (_, 0..=4) => {
                let mut p = paragraph(r);
                emphasise(r, &mut p);
                t.push_str(&p);
            }
            (_, 5) => {
                let _ = write!(t, "## {}", capitalise(&sentence(r)).trim_end_matches('.'));
            }
            (_, 6) => {
                for n in 1..=r.range(3, 6) {
                    if r.chance(1, 2) {
                        let _ = writeln!(t, "- {}", sentence(r));
                    } else {
                        let _ = writeln!(t, "{n}. {}", sentence(r));
                    }
                }
                t.pop();
            }
            (_, 7) => {
                let _ = write!(t, "> {}", sentence(r));
            }
            (_, 8) if r.chance(1, 3) => {
                t.push_str("| Region | Share | Change |\n|---|---:|---:|\n");
                for _ in 0..r.range(3, 6) {
                    let _ = writeln!(
                        t,
                        "| {} | {}% | {:+} |",
                        r.pick(PLACES),
                        r.range(1, 60),
                        r.range(0, 20) as i64 - 10
                    );
                }
                t.pop();
            }
            _ => {
                let _ = write!(
                    t,
                    "See the [full report](https://example.org/reports/{i}) and `{}` for details.",
                    r.pick(NOUNS)
                );
            }
        }
        t.push_str("\n\n");
        first = false;
    }
    Doc {
        rel: format!("{}/{}.md", dir(&d), file_stem(&d, &title, i)),
        text: t,
    }
}

/// Adds `**strong**`, `*emphasis*` and a link inside a paragraph.
fn emphasise(r: &mut Rng, p: &mut String) {
    let words: Vec<&str> = p.split(' ').collect();
    if words.len() < 8 {
        return;
    }
    let a = r.below(words.len() / 2);
    let b = words.len() / 2 + r.below(words.len() / 2 - 1);
    let mut out = String::with_capacity(p.len() + 64);
    for (k, w) in words.iter().enumerate() {
        if k > 0 {
            out.push(' ');
        }
        let plain = w.chars().all(|c| c.is_alphanumeric());
        if k == a && plain {
            let _ = write!(out, "**{w}**");
        } else if k == b && plain {
            let _ = write!(out, "*{w}*");
        } else if k == a + 2 && plain && r.chance(1, 2) {
            let _ = write!(out, "[{w}](https://example.org/topics/{w})");
        } else {
            out.push_str(w);
        }
    }
    *p = out;
}
