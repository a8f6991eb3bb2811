//! Talking to systemd: the listening socket it hands over (`LISTEN_FDS`),
//! sd_notify messages, and the watchdog, pinged only while the publish
//! loop is live.

use std::sync::Arc;
use std::time::Duration;

use super::{Fatal, EXIT_BIND};
use crate::config::Config;
use crate::health::Verdict;
use crate::metrics::Metrics;

/// The listening socket: inherited from systemd (`LISTEN_FDS`, fd 3) when
/// present, else bound to `listen`.
pub(super) fn listener(c: &Config) -> Result<std::net::TcpListener, Fatal> {
    if let Ok(mut fds) = sd_notify::listen_fds() {
        if let Some(fd) = fds.next() {
            use std::os::fd::FromRawFd;
            // SAFETY: systemd passed this fd to this process (LISTEN_PID
            // checked by listen_fds) and nothing else owns it.
            let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            l.set_nonblocking(true).map_err(|e| {
                Fatal(
                    EXIT_BIND,
                    anyhow::anyhow!("socket from systemd (fd {fd}): {e}"),
                )
            })?;
            return Ok(l);
        }
    }
    super::ports::bind(c.listen, "listen", "--listen")
}

/// How often a start that is still publishing tells systemd so.
pub(super) const START_TICK: Duration = Duration::from_secs(5);

/// How much more time each such message asks for: a few ticks, so one
/// late tick on a busy host does not end the start, while a start that
/// stops making progress still times out soon after.
const START_EXTENSION: Duration = Duration::from_secs(30);

/// Told a second into the first publish and every [`START_TICK`] after
/// that while it runs: as long as the
/// publish loop makes progress (it is not stuck, see `health`), systemd's
/// start timeout (`TimeoutStartSec`) is pushed back by
/// [`START_EXTENSION`] (`EXTEND_TIMEOUT_USEC`) and the status line says
/// how far the start has come. A first start over a large archive (every
/// page rendered and written) thus never trips the unit's timeout, and a
/// start that hangs still does.
pub(super) fn starting(health: &crate::health::Health) {
    if matches!(health.check(), Verdict::Stuck { .. }) {
        return;
    }
    let (step, beats) = health.progress();
    notify(&[
        sd_notify::NotifyState::ExtendTimeoutUsec(START_EXTENSION.as_micros() as u32),
        sd_notify::NotifyState::Status(&format!(
            "starting: {} ({beats} files read and documents made so far)",
            step.label()
        )),
    ]);
}

pub(super) fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::warn!("sd_notify failed: {e}");
        }
    }
}

/// Half of `WATCHDOG_USEC` when systemd's watchdog is on for this process
/// (sd_watchdog_enabled(3): `WATCHDOG_PID`, when set, must be our pid).
pub(super) fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| std::time::Duration::from_micros(usec / 2))
}

/// Watches the publish loop's health for as long as Herald serves: logs
/// once when publishing gets stuck or dies and once when it goes on again,
/// and pings systemd's watchdog (`WATCHDOG=1` every half `WATCHDOG_USEC`)
/// only while the loop is live — so that systemd restarts a Herald that
/// still answers requests but no longer publishes. The pings come from
/// here, not from the loop, because a loop busy with a long (progressing)
/// rescan cannot ping, and a stuck one must not be vouched for by
/// anything else.
pub(super) async fn watch_health(metrics: Arc<Metrics>) {
    let watchdog = watchdog_interval();
    // At least every second, so the log says when it happened.
    let tick = watchdog.map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1)));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_ping = tokio::time::Instant::now();
    let mut live = true;
    loop {
        let now = ticker.tick().await;
        let v = metrics.health.check();
        if v.is_live() != live {
            live = v.is_live();
            if live {
                tracing::info!("publishing goes on; /healthz answers 200 again");
            } else if v != Verdict::Stopped {
                tracing::error!(
                    "publishing is {v}; /healthz answers 503{}",
                    if watchdog.is_some() {
                        " and the watchdog is no longer pinged, so systemd restarts Herald"
                    } else {
                        ""
                    }
                );
            }
        }
        if let (true, Some(w)) = (live, watchdog) {
            if now >= next_ping {
                notify(&[sd_notify::NotifyState::Watchdog]);
                next_ping = now + w;
            }
        }
    }
}
