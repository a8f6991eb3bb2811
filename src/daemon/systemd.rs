//! Talking to systemd: the listening socket it hands over (`LISTEN_FDS`),
//! sd_notify messages and the watchdog interval.

use super::{Fatal, EXIT_BIND};
use crate::config::Config;

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
    let l = std::net::TcpListener::bind(c.listen).map_err(|e| {
        Fatal(
            EXIT_BIND,
            anyhow::anyhow!("cannot listen on {}: {e}", c.listen),
        )
    })?;
    l.set_nonblocking(true)
        .map_err(|e| Fatal(EXIT_BIND, e.into()))?;
    Ok(l)
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
