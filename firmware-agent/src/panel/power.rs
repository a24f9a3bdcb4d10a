//! The interactive panel's own power: on before the day's first period, off
//! after its last, so that nobody has to find the remote and no panel glows
//! all night. Optional: `panel.power.control = "none"` (the default) leaves the
//! panel alone.
//!
//! # Design
//! - Two drivers behind one trait: RS-232 (most classroom panels take a short
//!   binary command on their serial port, written here as hex bytes) and a
//!   command to run (`cec-ctl` for HDMI-CEC, or a vendor's tool).
//! - [`desired`] decides from the day's plan and the time it is handed whether
//!   the panel should be on, and when that next changes; it does no I/O. The
//!   loop applies its answer at start (a restart mid-day switches the panel on
//!   again) and at each change, and records every switch for the hub.
//! - The serial port is opened for each command: a panel unplugged and
//!   plugged back in works again at the next change. It is set to raw mode at
//!   the configured speed through `nix`'s termios calls, each checked, and the
//!   write is drained before the port is closed, so a switch reported done has
//!   left the port.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp, ToSpan};
use nix::fcntl::OFlag;
use nix::sys::termios::{self, SetArg};

use super::config::{Control, PowerConfig, hex_bytes, speed};
use crate::agent::Agent;
use crate::health::State;
use crate::proto::{self, actuation::Cause, actuation::Kind, actuation::Outcome};
use crate::schedule::timetable::{DayPlan, Timetable};
use crate::store::recorder::{self, Kept, Who};

const SUBSYSTEM: &str = "panel_power";

/// Whether the panel should be on at `now`, and when that next changes.
pub fn desired(today: &DayPlan, timetable: &Timetable, config: &PowerConfig, now: Timestamp) -> (bool, Timestamp) {
    let zone = &timetable.zone;
    let next_midnight = today
        .date
        .checked_add(1.day())
        .ok()
        .and_then(|d| d.to_zoned(zone.clone()).ok())
        .map_or(now + SignedDuration::from_hours(24), |z| z.timestamp());
    let (Some(first), Some(last)) = (today.periods.iter().map(|p| p.start).min(), today.periods.iter().map(|p| p.end).max()) else {
        return (false, next_midnight);
    };
    let at = |time: jiff::civil::Time| today.date.to_datetime(time).to_zoned(zone.clone()).map(|z| z.timestamp()).unwrap_or(now);
    let on_at = at(first) - SignedDuration::from_mins(i64::from(config.on_before_minutes));
    let off_at = at(last) + SignedDuration::from_mins(i64::from(config.off_after_minutes));
    if now < on_at {
        (false, on_at)
    } else if now < off_at {
        (true, off_at)
    } else {
        (false, next_midnight.max(off_at))
    }
}

/// Switches the panel on or off.
fn switch(config: &PowerConfig, on: bool) -> Result<(), String> {
    match config.control {
        Control::None => Ok(()),
        Control::Rs232 => {
            let bytes = hex_bytes(if on { &config.on_bytes } else { &config.off_bytes }).map_err(|err| err.to_string())?;
            let device = &config.serial_device;
            let mut port = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(OFlag::O_NOCTTY.bits())
                .open(device)
                .map_err(|err| format!("{}: {err}", device.display()))?;
            let speed = speed(config.baud).ok_or_else(|| format!("unsupported speed {}", config.baud))?;
            let mut settings =
                termios::tcgetattr(&port).map_err(|err| format!("{}: not a serial port: {err}", device.display()))?;
            termios::cfmakeraw(&mut settings);
            termios::cfsetspeed(&mut settings, speed).map_err(|err| format!("{}: cannot set {} baud: {err}", device.display(), config.baud))?;
            termios::tcsetattr(&port, SetArg::TCSANOW, &settings)
                .map_err(|err| format!("{}: cannot set raw mode at {} baud: {err}", device.display(), config.baud))?;
            port.write_all(&bytes).map_err(|err| format!("{}: {err}", device.display()))?;
            termios::tcdrain(&port).map_err(|err| format!("{}: the command was not sent: {err}", device.display()))?;
            Ok(())
        }
        Control::Command => {
            let argv = if on { &config.on_command } else { &config.off_command };
            let (program, args) = argv.split_first().ok_or("no command configured")?;
            let status = std::process::Command::new(program).args(args).status().map_err(|err| format!("{program}: {err}"))?;
            if status.success() { Ok(()) } else { Err(format!("{program} exited with {status}")) }
        }
    }
}

/// Keeps the panel's power in step with the timetable until shutdown.
pub async fn run(agent: Arc<Agent>) {
    let mut applied: Option<bool> = None;
    loop {
        let config = agent.config();
        let power = config.panel.power.clone();
        if power.control == Control::None {
            agent.health.set(SUBSYSTEM, State::Disabled, "panel.power.control = \"none\"");
            return;
        }
        let Ok(timetable) = Timetable::new(config.schedule.clone(), &config.room.timezone) else { return };
        let now = agent.clock.now();
        let (on, next) = desired(&timetable.plan(timetable.date_of(now)), &timetable, &power, now);
        // The panel is switched only while its record can be kept; refused, it is tried again in a minute.
        let admitted = agent.store.recorder().admit(Who::Room).inspect_err(|refusal| tracing::warn!(%refusal, "the panel's power is not switched"));
        if applied != Some(on) && admitted.is_ok() {
            let settings = power.clone();
            let result = tokio::task::spawn_blocking(move || switch(&settings, on)).await.unwrap_or_else(|err| Err(err.to_string()));
            let (outcome, detail) = match &result {
                Ok(()) => (Outcome::Done, String::new()),
                Err(err) => (Outcome::Failed, err.clone()),
            };
            match &result {
                Ok(()) => agent.health.set(SUBSYSTEM, State::Ok, if on { "on for the school day" } else { "off" }),
                Err(err) => agent.health.set(SUBSYSTEM, State::Degraded, format!("cannot switch the panel {}: {err}", if on { "on" } else { "off" })),
            }
            let record = proto::Actuation {
                device: "panel".into(),
                device_kind: Kind::Switch as i32,
                command: if on { "on" } else { "off" }.into(),
                cause: Cause::Timetable as i32,
                outcome: outcome as i32,
                detail,
                latency_ms: 0,
            };
            if let Kept::Refused(refusal) = agent.store.recorder().keep(recorder::Write::event(now, record)).await {
                tracing::error!(%refusal, "the panel's power record was not kept");
            }
            // A failed or refused switch is tried again after a minute.
            applied = result.is_ok().then_some(on);
        }
        let wait = if applied == Some(on) { next.duration_since(agent.clock.now()) } else { SignedDuration::from_mins(1) };
        let wait = std::time::Duration::try_from(wait).unwrap_or(std::time::Duration::ZERO).max(std::time::Duration::from_secs(1));
        tokio::select! {
            _ = agent.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::config::ScheduleConfig;
    use crate::schedule::scheduler::tests::at;

    fn timetable() -> Timetable {
        let config: ScheduleConfig = toml::from_str(
            "[[shifts]]\nname = \"Sáng\"\ndays = [\"mon\"]\nperiods = [{ start = \"07:00\", end = \"07:45\" }, { start = \"07:50\", end = \"08:35\" }]\n",
        )
        .unwrap();
        Timetable::new(config, "Asia/Ho_Chi_Minh").unwrap()
    }

    #[test]
    fn on_before_the_first_period_and_off_after_the_last() {
        let timetable = timetable();
        let config = PowerConfig { control: Control::Rs232, ..Default::default() };
        let monday = "2026-09-07".parse().unwrap();
        let plan = timetable.plan(monday);
        assert_eq!(desired(&plan, &timetable, &config, at("2026-09-07T06:00")), (false, at("2026-09-07T06:50")));
        assert_eq!(desired(&plan, &timetable, &config, at("2026-09-07T06:50")), (true, at("2026-09-07T08:50")));
        assert_eq!(desired(&plan, &timetable, &config, at("2026-09-07T08:50")), (false, at("2026-09-08T00:00")));
        let tuesday = timetable.plan("2026-09-08".parse().unwrap());
        assert_eq!(desired(&tuesday, &timetable, &config, at("2026-09-08T07:10")), (false, at("2026-09-09T00:00")), "no lessons, no panel");
    }

    #[test]
    fn the_serial_port_is_left_raw_at_the_configured_speed_and_the_command_sent() {
        use std::io::Read;
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&pty.slave))).unwrap();
        let config = PowerConfig {
            control: Control::Rs232,
            serial_device: slave,
            baud: 115200,
            on_bytes: "AA 0A 0D".into(),
            ..Default::default()
        };
        switch(&config, true).unwrap();
        let settings = termios::tcgetattr(&pty.slave).unwrap();
        assert_eq!(termios::cfgetospeed(&settings), termios::BaudRate::B115200);
        assert!(!settings.local_flags.contains(termios::LocalFlags::ICANON), "raw input");
        assert!(!settings.output_flags.contains(termios::OutputFlags::OPOST), "raw output");
        let mut received = [0u8; 3];
        std::fs::File::from(pty.master).read_exact(&mut received).unwrap();
        assert_eq!(received, [0xAA, 0x0A, 0x0D], "sent unchanged: no newline translated");
    }

    #[test]
    fn a_device_that_is_not_a_serial_port_is_named() {
        let config = PowerConfig { control: Control::Rs232, serial_device: "/dev/null".into(), on_bytes: "AA".into(), ..Default::default() };
        let err = switch(&config, true).unwrap_err();
        assert!(err.starts_with("/dev/null: not a serial port"), "{err}");
    }
}
