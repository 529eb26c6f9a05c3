//! The systemd service protocol (`Type=notify`): READY once serving, RELOADING around a
//! SIGHUP, STOPPING on the way out, and WATCHDOG pings while the runtime runs. Without
//! `$NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use sd_notify::NotifyState;
use std::net::SocketAddr;
use std::time::Duration;

fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "failed to notify systemd");
    }
}

/// The server serves at `addr`.
pub fn ready(addr: SocketAddr) {
    let status = format!("serving on {addr}");
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A SIGHUP's reload begins (`ready` ends it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// The server is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// If systemd watches this process (`WatchdogSec=`), a task that pings it at half the
/// interval: a wedged runtime stops the pings and systemd restarts the node.
pub fn watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()?;
    let every = (interval / 2).max(Duration::from_millis(10));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    }))
}
