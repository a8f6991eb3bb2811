//! `/stats` as JSON and `/stats.html` as a page: a chart of the days kept
//! (inline SVG, no script, no external asset) and today's figures per
//! feed.

use std::fmt::Write;

use crate::stats::{Day, Limits};

/// The readership as JSON: every day kept, today first, with its totals
/// and its figures per feed.
pub(super) fn json(days: &[(String, Day)], limits: Limits) -> String {
    let days: Vec<serde_json::Value> = days
        .iter()
        .map(|(date, d)| {
            let feeds: serde_json::Map<String, serde_json::Value> = d
                .feeds
                .iter()
                .map(|(route, f)| {
                    let v = serde_json::json!({
                        "aggregators": f.aggregators,
                        "aggregator_subscribers": f.aggregator_subscribers(),
                        "direct_pollers": f.direct_pollers,
                        "websub": f.websub,
                    });
                    (route.clone(), v)
                })
                .collect();
            serde_json::json!({
                "date": date,
                "aggregator_subscribers": d.aggregator_subscribers(),
                "direct_pollers": d.direct_pollers,
                "websub": d.websub(),
                "feeds": feeds,
            })
        })
        .collect();
    let v = serde_json::json!({
        "days_kept": limits.days,
        "days": days,
    });
    let mut s = serde_json::to_string_pretty(&v).expect("JSON values serialise");
    s.push('\n');
    s
}

/// The three series of the chart: label, colour, value of a day.
type Series = (&'static str, &'static str, fn(&Day) -> u64);

const SERIES: [Series; 3] = [
    (
        "subscribers reported by aggregators",
        "#1f77b4",
        Day::aggregator_subscribers,
    ),
    ("direct pollers (estimate)", "#d62728", |d| d.direct_pollers),
    ("WebSub subscriptions", "#2ca02c", Day::websub),
];

/// The readership page.
pub(super) fn html(days: &[(String, Day)], limits: Limits) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>Herald: readers</title><style>\
         body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}\
         table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}\
         td.n{text-align:right}svg{max-width:100%;height:auto}\
         </style></head><body>\n<h1>Readers</h1>\n",
    );
    if let Some((date, today)) = days.first() {
        let _ = writeln!(
            out,
            "<p>Today ({date}, UTC, so far): <strong>{}</strong> subscribers reported by aggregators, \
             <strong>{}</strong> distinct direct pollers (estimate), <strong>{}</strong> WebSub subscriptions.</p>",
            today.aggregator_subscribers(),
            today.direct_pollers,
            today.websub()
        );
    }
    chart(&mut out, days, limits.days);
    out.push_str("<h2>Today, per feed</h2>\n<table><tr><th>feed</th><th>aggregators (reported subscribers)</th><th>direct pollers</th><th>WebSub</th></tr>\n");
    if let Some((_, today)) = days.first() {
        for (route, f) in &today.feeds {
            if f.aggregators.is_empty() && f.direct_pollers == 0 && f.websub == 0 {
                continue;
            }
            let aggs: Vec<String> = f
                .aggregators
                .iter()
                .map(|(n, v)| format!("{}: {v}", escape(n)))
                .collect();
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(route),
                aggs.join(", "),
                f.direct_pollers,
                f.websub
            );
        }
    }
    out.push_str(
        "</table>\n<p>Direct pollers are distinct client addresses (an IPv6 client by its /64) \
         that fetched a feed themselves, estimated without keeping any address. \
         Also as <a href=\"/stats\">JSON</a> and <a href=\"/metrics\">Prometheus metrics</a>.</p>\n\
         </body></html>\n",
    );
    out
}

/// A line chart of the last `span` days, oldest on the left.
fn chart(out: &mut String, days: &[(String, Day)], span: usize) {
    const W: f64 = 900.0;
    const H: f64 = 260.0;
    const PAD: f64 = 44.0;
    // `days` is newest first, with no gaps but those with no record.
    let shown: Vec<&(String, Day)> = days.iter().take(span.max(1)).rev().collect();
    let max = shown
        .iter()
        .flat_map(|(_, d)| SERIES.iter().map(move |(_, _, f)| f(d)))
        .max()
        .unwrap_or(0)
        .max(1);
    let n = shown.len().max(2) - 1;
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / n as f64;
    let y = |v: u64| H - PAD - (H - 2.0 * PAD) * v as f64 / max as f64;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"readers per day\">"
    );
    let _ = writeln!(
        out,
        "<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#888\"/>\
         <text x=\"{t}\" y=\"{ty}\" font-size=\"12\" text-anchor=\"end\">{max}</text>\
         <text x=\"{t}\" y=\"{b}\" font-size=\"12\" text-anchor=\"end\">0</text>",
        b = H - PAD,
        r = W - PAD,
        t = PAD - 4.0,
        ty = PAD + 4.0,
    );
    if let (Some(first), Some(last)) = (shown.first(), shown.last()) {
        let _ = writeln!(
            out,
            "<text x=\"{PAD}\" y=\"{yb}\" font-size=\"12\">{}</text><text x=\"{r}\" y=\"{yb}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            escape(&first.0),
            escape(&last.0),
            yb = H - PAD + 16.0,
            r = W - PAD,
        );
    }
    for (k, (label, colour, value)) in SERIES.iter().enumerate() {
        let points: Vec<String> = shown
            .iter()
            .enumerate()
            .map(|(i, (_, d))| format!("{:.1},{:.1}", x(i), y(value(d))))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\
             <rect x=\"{lx}\" y=\"{ly}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"12\">{label}</text>",
            points.join(" "),
            lx = PAD + 250.0 * k as f64,
            ly = 12.0,
            tx = PAD + 14.0 + 250.0 * k as f64,
            ty = 21.0,
        );
    }
    out.push_str("</svg>\n");
}

/// Text for HTML content and attribute values.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}
