//! `/metrics`: Herald's counters (`metrics::Metrics`), the size of the
//! snapshot, and today's readership figures as gauges, in the Prometheus
//! text exposition format 0.0.4.

use std::fmt::Write;

use crate::server::Shared;

/// The whole `/metrics` text.
pub(super) fn render(shared: &Shared) -> String {
    let mut out = shared.metrics.render();
    let _ = write!(
        out,
        "# HELP herald_site_routes Routes in the published snapshot.\n# TYPE herald_site_routes gauge\nherald_site_routes {}\n",
        shared.site.load().len()
    );
    if let Some(stats) = &shared.stats {
        readership(&mut out, &stats.report());
    }
    out
}

/// Today's figures (the first day of `days`): gauges that start again
/// from zero at each UTC midnight. Feeds with nothing to show are left
/// out, so a site with many tag feeds does not list them all.
fn readership(out: &mut String, days: &[(String, crate::stats::Day)]) {
    let Some((_, today)) = days.first() else {
        return;
    };
    out.push_str(
        "# HELP herald_feed_aggregator_subscribers Subscribers an aggregator reported in its User-Agent today (its latest figure).\n\
         # TYPE herald_feed_aggregator_subscribers gauge\n",
    );
    for (route, f) in &today.feeds {
        for (name, n) in &f.aggregators {
            let _ = writeln!(
                out,
                "herald_feed_aggregator_subscribers{{feed=\"{}\",aggregator=\"{}\"}} {n}",
                label(route),
                label(name)
            );
        }
    }
    out.push_str(
        "# HELP herald_feed_direct_pollers Distinct clients that polled the feed themselves today (estimate).\n\
         # TYPE herald_feed_direct_pollers gauge\n",
    );
    for (route, f) in today.feeds.iter().filter(|(_, f)| f.direct_pollers > 0) {
        let _ = writeln!(
            out,
            "herald_feed_direct_pollers{{feed=\"{}\"}} {}",
            label(route),
            f.direct_pollers
        );
    }
    out.push_str(
        "# HELP herald_feed_websub_subscriptions Verified subscriptions of the built-in WebSub hub.\n\
         # TYPE herald_feed_websub_subscriptions gauge\n",
    );
    for (route, f) in today.feeds.iter().filter(|(_, f)| f.websub > 0) {
        let _ = writeln!(
            out,
            "herald_feed_websub_subscriptions{{feed=\"{}\"}} {}",
            label(route),
            f.websub
        );
    }
    let _ = write!(
        out,
        "# HELP herald_direct_pollers Distinct clients that polled any feed themselves today (estimate).\n\
         # TYPE herald_direct_pollers gauge\nherald_direct_pollers {}\n",
        today.direct_pollers
    );
}

/// A label value escaped as the format asks (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
