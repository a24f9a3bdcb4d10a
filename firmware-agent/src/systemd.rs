//! Talking to systemd: READY once serving, watchdog pings while the runtime is
//! alive, STOPPING on the way down. Outside systemd every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// The watchdog interval systemd asks for, as `sd_watchdog_enabled(3)` reads
/// it: `WATCHDOG_USEC`, for this process unless `WATCHDOG_PID` names another.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC")
        .ok()?
        .parse()
        .ok()
        .filter(|&usec| usec > 0)?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

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
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = tick.tick() => { let _ = sd_notify::notify(false, &[NotifyState::Watchdog]); }
            _ = shutdown.cancelled() => return,
        }
    }
}
