//! `/stats` as JSON and `/stats.html` as a page: a chart of the days kept
//! (inline SVG, no script, no external asset) and today's figures per
//! feed.

use std::fmt::Write;

use crate::escape::html as escape;
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

/// The readership page: readable on a phone as on a desktop (a
/// viewport that follows the device; on a narrow screen each row of the
/// table stacked, in a box that scrolls sideways rather than the page if
/// anything is still too wide; the legend as text rather than inside the
/// scaled chart, whose words grow as it shrinks), each
/// feed named by `label_of` (the kind and name of the category or tag a
/// route belongs to, if any) with its path decoded.
pub(super) fn html<'s>(
    days: &[(String, Day)],
    limits: Limits,
    label_of: impl Fn(&str) -> Option<(&'static str, &'s str)>,
) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Herald: readers</title><style>\
         body{font-family:system-ui,sans-serif;line-height:1.4;max-width:60rem;margin:1rem auto;padding:0 1rem}\
         .scroll{overflow-x:auto}\
         table{border-collapse:collapse;min-width:100%}\
         td,th{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
         td.n,th.n{text-align:right}td code{overflow-wrap:anywhere;font-size:.85em;color:#555}td small{color:#555}\
         svg{display:block;max-width:100%;height:auto}svg text{font-size:13px}\
         .legend{list-style:none;padding:0;margin:.4rem 0 1rem;display:flex;flex-wrap:wrap;gap:.2rem 1.4rem}\
         .key{display:inline-block;width:.8em;height:.8em;margin-right:.4em;border-radius:2px}\
         @media (max-width:40rem){body{padding:0 .6rem}svg text{font-size:30px}\
         svg polyline{stroke-width:5}svg circle{r:6}\
         .scroll table,.scroll tbody,.scroll tr,.scroll td{display:block}.scroll thead{display:none}\
         .scroll tr{border-bottom:1px solid #ddd;padding:.5rem 0}.scroll td{border:0;padding:.1rem 0}\
         .scroll td.n{display:inline-block;text-align:left;margin-right:1.2rem}\
         .scroll td.n::before{content:attr(data-label) \": \";color:#555}}\
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
    out.push_str(
        "<h2>Today, per feed</h2>\n<div class=\"scroll\"><table>\
         <thead><tr><th>feed</th><th>aggregators (reported subscribers)</th>\
         <th class=\"n\">direct pollers</th><th class=\"n\">WebSub</th></tr></thead><tbody>\n",
    );
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
                "<tr><td>{}</td><td>{}</td><td class=\"n\" data-label=\"direct pollers\">{}</td>\
                 <td class=\"n\" data-label=\"WebSub\">{}</td></tr>",
                feed_name(route, &label_of),
                aggs.join(", "),
                f.direct_pollers,
                f.websub
            );
        }
    }
    out.push_str(
        "</tbody></table></div>\n<p>Direct pollers are distinct client addresses (an IPv6 client by its /64) \
         that fetched a feed themselves, estimated without keeping any address. \
         Also as <a href=\"/stats\">JSON</a> and <a href=\"/metrics\">Prometheus metrics</a>.</p>\n\
         </body></html>\n",
    );
    out
}

/// A feed as a person reads it: the label's name (or "all articles" for
/// the main feed), its kind and format, then the path decoded (`/tags/
/// élections/rss.xml`, not `%C3%A9…`). A route of a label published no
/// more shows the path alone.
fn feed_name<'s>(
    route: &str,
    label_of: impl Fn(&str) -> Option<(&'static str, &'s str)>,
) -> String {
    let format = ["rss.xml", "atom.xml", "feed.json"]
        .iter()
        .zip(["RSS", "Atom", "JSON Feed"])
        .find(|(file, _)| route.ends_with(*file))
        .map(|(_, name)| name);
    let path = percent_encoding::percent_decode_str(route).decode_utf8_lossy();
    let path = format!("<code>{}</code>", escape(&path));
    let main = route.rfind('/') == Some(0);
    match (label_of(route), format) {
        (Some((kind, name)), Some(format)) => format!(
            "<strong>{}</strong> <small>{kind}, {format}</small><br>{path}",
            escape(name)
        ),
        (None, Some(format)) if main => {
            format!("<strong>all articles</strong> <small>{format}</small><br>{path}")
        }
        _ => path,
    }
}

/// A line chart of the last `span` days up to today (the first of
/// `days`), oldest on the left; a day with no record (Herald not
/// running) is no point, so a line passes over it. Its few words (the
/// scale, the first and last dates) sit inside the drawing, where the
/// page's style makes them larger on a narrow screen; the legend follows
/// the drawing as text, readable at any width.
fn chart(out: &mut String, days: &[(String, Day)], span: usize) {
    const W: f64 = 900.0;
    const H: f64 = 300.0;
    // Room for the words: the scale above the plot, the dates below.
    const SIDE: f64 = 12.0;
    const TOP: f64 = 48.0;
    const BOTTOM: f64 = 52.0;
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
    let x = |i: i64| SIDE + (W - 2.0 * SIDE) * i as f64 / (span - 1) as f64;
    let y = |v: u64| H - BOTTOM - (H - TOP - BOTTOM) * v as f64 / max as f64;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"readers per day, {first} to {today}, scale 0 to {max}\">"
    );
    let _ = writeln!(
        out,
        "<line x1=\"{SIDE}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/>\
         <line x1=\"{SIDE}\" y1=\"{TOP}\" x2=\"{r}\" y2=\"{TOP}\" stroke=\"#ccc\" stroke-dasharray=\"4 4\"/>\
         <text x=\"{SIDE}\" y=\"{ty}\" font-size=\"12\">{max}</text>\
         <text x=\"{SIDE}\" y=\"{yb}\" font-size=\"12\" dominant-baseline=\"hanging\">{first}</text>\
         <text x=\"{r}\" y=\"{yb}\" font-size=\"12\" text-anchor=\"end\" dominant-baseline=\"hanging\">{today}</text>",
        b = H - BOTTOM,
        r = W - SIDE,
        ty = TOP - 8.0,
        yb = H - BOTTOM + 8.0,
    );
    for (_, colour, value) in SERIES.iter() {
        let points: Vec<String> = shown
            .iter()
            .map(|(i, d)| format!("{:.1},{:.1}", x(*i), y(value(d))))
            .collect();
        // A dot per day, so that a single day (or one between gaps) shows.
        for p in &points {
            if let Some((cx, cy)) = p.split_once(',') {
                let _ = write!(
                    out,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{colour}\"/>"
                );
            }
        }
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" "),
        );
    }
    out.push_str("</svg>\n<ul class=\"legend\">");
    for (label, colour, _) in SERIES.iter() {
        let _ = write!(
            out,
            "<li><span class=\"key\" style=\"background:{colour}\"></span>{label}</li>"
        );
    }
    out.push_str("</ul>\n");
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
    /// gap, not a shift); the scale is the largest figure; the legend is
    /// text after the chart; names are escaped; nothing is loaded from
    /// elsewhere.
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
        let html = html(&days, limits, |_| None);
        // Three days wide: 12-01 at the left edge, 12-03 at the right.
        assert!(html.contains("points=\"12.0,148.0 888.0,48.0\""), "{html}");
        assert!(html.contains(">40</text>"), "{html}");
        assert!(html.contains("<circle cx=\"888.0\" cy=\"48.0\""), "{html}");
        let legend = html.split("</svg>").nth(1).unwrap();
        assert!(
            legend.contains("background:#d62728\"></span>direct pollers (estimate)</li>"),
            "{legend}"
        );
        assert!(
            html.contains(
                "<td><strong>all articles</strong> <small>RSS</small><br><code>/rss.xml</code></td><td>Feedly: 40</td>"
            ),
            "{html}"
        );
        assert!(!html.contains("<script") && !html.contains("href=\"http"));
        let mut evil = day(1, 1);
        evil.feeds.get_mut("/rss.xml").unwrap().aggregators = [("<b>x</b>".to_string(), 1)].into();
        let html = super::html(&[("2026-12-03".into(), evil)], limits, |_| None);
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;: 1"), "{html}");
        let v: serde_json::Value = serde_json::from_str(&json(&days, limits)).unwrap();
        assert_eq!(v["days"][1]["date"], "2026-12-01");
        assert_eq!(v["days"][0]["aggregator_subscribers"], 40);
        assert_eq!(v["days"][0]["feeds"]["/rss.xml"]["websub"], 1);
    }

    /// A feed is named by its label (kind, name escaped, format) above
    /// its path decoded; the main feed as all articles; a label no
    /// longer published, or anything else, by its path alone.
    #[test]
    fn feed_names() {
        let label = |r: &str| {
            r.starts_with("/tags/%3Cb%3E/")
                .then_some(("tag", "<b> & co"))
        };
        for (route, want) in [
            (
                "/tags/%3Cb%3E/feed.json",
                "<strong>&lt;b&gt; &amp; co</strong> <small>tag, JSON Feed</small><br><code>/tags/&lt;b&gt;/feed.json</code>",
            ),
            (
                "/atom.xml",
                "<strong>all articles</strong> <small>Atom</small><br><code>/atom.xml</code>",
            ),
            (
                "/categories/%D0%BA%D0%B8%D1%97%D0%B2/rss.xml",
                "<code>/categories/київ/rss.xml</code>",
            ),
            ("/odd%FF", "<code>/odd\u{fffd}</code>"),
        ] {
            assert_eq!(feed_name(route, label), want, "{route}");
        }
    }
}
