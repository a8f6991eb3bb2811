//! Criterion benches of the build pipeline's pure stages, on generated
//! articles that look like the real content (`benches/corpus/mod.rs`, the
//! same generator `examples/gen_corpus.rs` writes to disk):
//!
//! - `parse/column`, `parse/markdown`: one 4–6 KB file → `Article`;
//! - `render/{rss,atom,json}_50`: the main feed with 50 full-text items;
//! - `site/build_cold_1000`: `SiteBuilder::build` over 1,000 articles with
//!   an empty cache (every feed and page rendered and gzipped);
//! - `site/build_unchanged_1000`: the same builder again with nothing
//!   changed (the daemon's rebuild after an event that changed nothing);
//! - `respond/{304,gzip_200,br_200}`: Herald's own part of serving
//!   `/rss.xml` (`server::respond`: route, negotiation, conditional GET,
//!   headers) for the requests `benches/wrk_vs_nginx.sh` sends, without
//!   hyper or sockets — the part of a request Herald can make cheaper;
//!   `respond/{304,gzip_200}_counted` the same through
//!   `server::respond_counted`, which also counts the feed's reader (a
//!   direct poller with a browser-like `User-Agent`), and
//!   `respond/304_counted_aggregator` one whose `User-Agent` reports
//!   subscribers (Feedly's);
//! - `stats/count_{poller,aggregator,not_a_feed}`: that counting alone
//!   (`Stats::count`).
//!
//! Run with `cargo bench --bench pipeline`; see `benches/README.md`.

#[path = "corpus/mod.rs"]
mod corpus;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use herald::article::Article;
use herald::parse::{parse, ParseCtx};
use herald::render::{self, Body, Settings};
use herald::site::SiteBuilder;

fn ctx() -> ParseCtx {
    ParseCtx::new("Asia/Shanghai".parse().expect("known zone"))
}

fn settings() -> Settings {
    Settings {
        hubs: Vec::new(),
        title: "Herald bench".into(),
        description: "Generated articles".into(),
        base_url: "https://news.example.org/".into(),
        language: "en".into(),
        author: "Desk".into(),
        max_items: 50,
        rss_body: Body::Full,
        atom_body: Body::Full,
        json_body: Body::Full,
        cache_max_age: 300,
        feed_id_prefix: "tag:news.example.org,2022-05-01:".into(),
        generator: "Herald bench".into(),
        timezone: "Asia/Shanghai".parse().expect("known zone"),
        page_size: 20,
        archive_page_size: 50,
        archive_max_age: 86400,
    }
}

/// Articles 0..n of a mixed corpus, parsed, with ids as the library would
/// assign them, newest first.
fn articles(n: u64) -> Vec<Arc<Article>> {
    let ctx = ctx();
    let mut out: Vec<Arc<Article>> = (0..n)
        .map(|i| {
            let d = corpus::article(i, corpus::Mix::Mixed);
            let mut a = parse(Path::new(&d.rel), &d.text, &ctx)
                .expect("generated articles parse")
                .expect("generated articles are not drafts");
            a.id = format!(
                "tag:news.example.org,{}:{}",
                a.published.format("%Y-%m-%d"),
                a.slug
            );
            Arc::new(a)
        })
        .collect();
    out.sort_by(|a, b| b.published.cmp(&a.published).then(a.slug.cmp(&b.slug)));
    out
}

fn bench_parse(c: &mut Criterion) {
    let ctx = ctx();
    let mut g = c.benchmark_group("parse");
    let col = corpus::column(7);
    g.throughput(Throughput::Bytes(col.text.len() as u64));
    g.bench_function("column", |b| {
        b.iter(|| parse(Path::new(&col.rel), black_box(&col.text), &ctx))
    });
    let md = corpus::markdown(8, false);
    g.throughput(Throughput::Bytes(md.text.len() as u64));
    g.bench_function("markdown", |b| {
        b.iter(|| parse(Path::new(&md.rel), black_box(&md.text), &ctx))
    });
    g.finish();
}

fn bench_render(c: &mut Criterion) {
    let s = settings();
    let arts = articles(50);
    assert_eq!(render::feeds(&arts, &s)[0].items.len(), 50);
    // A fresh feed each time: a feed unpacks its items' bodies once, as a
    // publish does.
    let fresh = || render::feeds(&arts, &s).swap_remove(0);
    let mut g = c.benchmark_group("render");
    type Format = fn(&render::Feed, &Settings) -> Vec<u8>;
    let formats: [(&str, Format); 3] = [
        ("rss_50", render::rss),
        ("atom_50", render::atom),
        ("json_50", render::json),
    ];
    for (name, format) in formats {
        g.bench_function(name, |b| {
            b.iter_batched(fresh, |f| format(black_box(&f), &s), BatchSize::SmallInput)
        });
    }
    // What a publish does with a feed whose items changed.
    g.bench_function("all_three_50", |b| {
        b.iter_batched(
            fresh,
            |f| {
                let f = black_box(&f);
                (render::rss(f, &s), render::atom(f, &s), render::json(f, &s))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_site(c: &mut Criterion) {
    let s = settings();
    let arts = articles(1000);
    let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let mut g = c.benchmark_group("site");
    g.sample_size(10);
    g.throughput(Throughput::Elements(arts.len() as u64));
    g.bench_function("build_cold_1000", |b| {
        b.iter(|| SiteBuilder::default().build(black_box(&arts), 0, &s, now))
    });
    let mut warm = SiteBuilder::default();
    warm.build(&arts, 0, &s, now);
    g.bench_function("build_unchanged_1000", |b| {
        b.iter(|| warm.build(black_box(&arts), 0, &s, SystemTime::now()))
    });
    g.finish();

    // One edit in a live archive of 10,000: the newest article's body
    // changes (two versions in turn), so every build re-renders its page,
    // the main feeds and its category's feeds, and keeps everything else.
    let mut arts = articles(10_000);
    let mut warm = SiteBuilder::default();
    warm.build(&arts, 0, &s, now);
    let versions: Vec<Arc<Article>> = ["<p>One.</p>", "<p>Two.</p>"]
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut a = (*arts[0]).clone();
            a.body_html =
                herald::article::Body::new(&format!("{}{body}", arts[0].body_html.html()));
            a.hash ^= i as u128 + 1;
            Arc::new(a)
        })
        .collect();
    let mut turn = 0;
    let mut g = c.benchmark_group("site");
    g.sample_size(20);
    g.bench_function("build_edit_10000", |b| {
        b.iter(|| {
            turn += 1;
            arts[0] = Arc::clone(&versions[turn % 2]);
            let (site, changed) = warm.build(black_box(&arts), 0, &s, now);
            assert!(changed.len() >= 7, "{changed:?}");
            site
        })
    });
    g.finish();
}

fn bench_respond(c: &mut Criterion) {
    use herald::metrics::Metrics;
    use herald::server::respond;
    let s = settings();
    let arts = articles(1000);
    let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let (site, _) = SiteBuilder::default().build(&arts, 0, &s, now);
    let feed = site.get("/rss.xml").expect("the main feed");
    feed.make_br(5);
    let etag = feed.tag(herald::site::Coding::Gzip).to_string();
    let metrics = Metrics::default();
    let request = |headers: &[(&str, &str)]| {
        let mut b = http::Request::builder()
            .uri("/rss.xml")
            .header("host", "news.example.org");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("a valid request")
    };
    let not_modified = request(&[("accept-encoding", "gzip"), ("if-none-match", &etag)]);
    let gzip = request(&[("accept-encoding", "gzip")]);
    let br = request(&[("accept-encoding", "gzip, deflate, br")]);
    let mut g = c.benchmark_group("respond");
    for (name, req) in [("304", &not_modified), ("gzip_200", &gzip), ("br_200", &br)] {
        g.bench_function(name, |b| {
            b.iter(|| respond(black_box(req), &site, &metrics))
        });
    }
    let dir = std::env::temp_dir().join(format!("herald-bench-{}", std::process::id()));
    let (stats, _) = herald::stats::Stats::open(&dir, Default::default(), 1_750_000_000);
    stats.set_feeds(
        site.routes()
            .map(|(r, _)| r)
            .filter(|r| r.ends_with(".xml")),
    );
    let browser = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let feedly = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 123 subscribers; like FeedFetcher-Google)";
    let counted_304 = request(&[
        ("accept-encoding", "gzip"),
        ("if-none-match", &etag),
        ("user-agent", browser),
    ]);
    let counted_gzip = request(&[("accept-encoding", "gzip"), ("user-agent", browser)]);
    let counted_aggregator = request(&[
        ("accept-encoding", "gzip"),
        ("if-none-match", &etag),
        ("user-agent", feedly),
    ]);
    let peer = std::net::IpAddr::from([192, 0, 2, 7]);
    for (name, req) in [
        ("304_counted", &counted_304),
        ("gzip_200_counted", &counted_gzip),
        ("304_counted_aggregator", &counted_aggregator),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                herald::server::respond_counted(black_box(req), &site, &metrics, Some(&stats), peer)
            })
        });
    }
    g.finish();
    // The counting alone, as the request path calls it.
    let mut g = c.benchmark_group("stats");
    let client: u128 = 0xffff_c000_0207;
    for (name, route, ua) in [
        ("count_poller", "/rss.xml", browser),
        ("count_aggregator", "/rss.xml", feedly),
        ("count_not_a_feed", "/articles/x/", browser),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| stats.count(black_box(route), Some(black_box(ua.as_bytes())), client))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_render,
    bench_site,
    bench_respond
);
criterion_main!(benches);
