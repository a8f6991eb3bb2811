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
                        "unrecognised_aggregators": f.unrecognised_aggregators,
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
            let mut aggs: Vec<String> = f
                .aggregators
                .iter()
                .map(|(n, v)| format!("{}: {v}", escape(n)))
                .collect();
            if !f.unrecognised_aggregators.is_empty() {
                let names: Vec<String> = f
                    .unrecognised_aggregators
                    .iter()
                    .map(|(n, v)| format!("{}: {v}", escape(n)))
                    .collect();
                aggs.push(format!(
                    "<br><small>unrecognised, not counted: {}</small>",
                    names.join(", ")
                ));
            }
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

/// A line chart of the last `span` days up to today (the first of
/// `days`), oldest on the left; a day with no record (Herald not
/// running) is no point, so a line passes over it.
fn chart(out: &mut String, days: &[(String, Day)], span: usize) {
    const W: f64 = 900.0;
    const H: f64 = 260.0;
    const PAD: f64 = 44.0;
    let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let span = span.max(2) as i64;
    let Some(today) = days.first().and_then(|(d, _)| date(d)) else {
        return;
    };
    let first = today - chrono::Duration::days(span - 1);
    // (position from the left, day), oldest first.
    let shown: Vec<(i64, &Day)> = days
        .iter()
        .rev()
        .filter_map(|(d, day)| Some(((date(d)? - first).num_days(), day)))
        .filter(|(i, _)| (0..span).contains(i))
        .collect();
    let max = shown
        .iter()
        .flat_map(|(_, d)| SERIES.iter().map(move |(_, _, f)| f(d)))
        .max()
        .unwrap_or(0)
        .max(1);
    let x = |i: i64| PAD + (W - 2.0 * PAD) * i as f64 / (span - 1) as f64;
    let y = |v: u64| H - PAD - (H - 2.0 * PAD) * v as f64 / max as f64;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"readers per day\">"
    );
    let _ = writeln!(
        out,
        "<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#888\"/>\
         <text x=\"{t}\" y=\"{ty}\" font-size=\"12\" text-anchor=\"end\">{max}</text>\
         <text x=\"{t}\" y=\"{b}\" font-size=\"12\" text-anchor=\"end\">0</text>\
         <text x=\"{PAD}\" y=\"{yb}\" font-size=\"12\">{first}</text>\
         <text x=\"{r}\" y=\"{yb}\" font-size=\"12\" text-anchor=\"end\">{today}</text>",
        b = H - PAD,
        r = W - PAD,
        t = PAD - 4.0,
        ty = PAD + 4.0,
        yb = H - PAD + 16.0,
    );
    for (k, (label, colour, value)) in SERIES.iter().enumerate() {
        let points: Vec<String> = shown
            .iter()
            .map(|(i, d)| format!("{:.1},{:.1}", x(*i), y(value(d))))
            .collect();
        // A dot per day, so that a single day (or one between gaps) shows.
        for p in &points {
            if let Some((cx, cy)) = p.split_once(',') {
                let _ = write!(
                    out,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"2.5\" fill=\"{colour}\"/>"
                );
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::FeedDay;

    fn day(subs: u64, pollers: u64) -> Day {
        let mut d = Day {
            direct_pollers: pollers,
            ..Day::default()
        };
        d.feeds.insert(
            "/rss.xml".into(),
            FeedDay {
                aggregators: [("Feedly".to_string(), subs)].into(),
                direct_pollers: pollers,
                websub: 1,
                ..FeedDay::default()
            },
        );
        d
    }

    /// Each day is a point at its date (a day with no record leaves a
    /// gap, not a shift); the scale is the largest figure; names are
    /// escaped; nothing is loaded from elsewhere.
    #[test]
    fn page_and_chart() {
        let days = vec![
            ("2026-12-03".to_string(), day(40, 10)),
            ("2026-12-01".to_string(), day(20, 5)),
        ];
        let limits = Limits {
            days: 3,
            ..Limits::default()
        };
        let html = html(&days, limits);
        // Three days wide: 12-01 at the left edge, 12-03 at the right.
        assert!(html.contains("points=\"44.0,130.0 856.0,44.0\""), "{html}");
        assert!(html.contains(">40</text>"), "{html}");
        assert!(html.contains("<circle cx=\"856.0\" cy=\"44.0\""), "{html}");
        assert!(
            html.contains("<td>/rss.xml</td><td>Feedly: 40</td>"),
            "{html}"
        );
        assert!(!html.contains("<script") && !html.contains("href=\"http"));
        let mut evil = day(1, 1);
        evil.feeds.get_mut("/rss.xml").unwrap().aggregators = [("<b>x</b>".to_string(), 1)].into();
        let html = super::html(&[("2026-12-03".into(), evil)], limits);
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;: 1"), "{html}");
        let v: serde_json::Value = serde_json::from_str(&json(&days, limits)).unwrap();
        assert_eq!(v["days"][1]["date"], "2026-12-01");
        assert_eq!(v["days"][0]["aggregator_subscribers"], 40);
        assert_eq!(v["days"][0]["feeds"]["/rss.xml"]["websub"], 1);
    }
}
