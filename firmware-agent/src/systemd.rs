//! Talking to systemd: READY once serving, watchdog pings while the runtime is
//! alive, STOPPING on the way down. Outside systemd every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

pub fn ready(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

pub fn reloading() {
    let _ = sd_notify::notify(false, &[NotifyState::Reloading]);
}

/// Pings the watchdog at half its interval, so a hung runtime is restarted by
/// systemd. The ping runs on the async runtime on purpose: if the runtime's
/// threads are all stuck, the pings stop.
pub async fn watchdog(shutdown: CancellationToken) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_micros(usec) / 2);
    loop {
        tokio::select! {
            _ = tick.tick() => { let _ = sd_notify::notify(false, &[NotifyState::Watchdog]); }
            _ = shutdown.cancelled() => return,
        }
    }
}
