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
//!   again) and at each change, and records every switch for the hub. It
//!   sleeps on the agent's clock until that change, but never longer than
//!   [`LOOK_AGAIN`]: a switch that failed or was refused is tried again, and a
//!   wall clock stepped by NTP is followed, within that time (`DESIGN.md`,
//!   "Time").
//! - The serial port is opened for each command: a panel unplugged and
//!   plugged back in works again at the next change. It is set to raw mode at
//!   the configured speed through `nix`'s termios calls, each checked, and the
//!   write is drained before the port is closed, so a switch reported done has
//!   left the port.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp, ToSpan};
use nix::fcntl::OFlag;
use nix::sys::termios::{self, SetArg};

use super::config::{Control, HexError, PowerConfig, hex_bytes, speed};
use crate::agent::Agent;
use crate::health::State;
use crate::proto::{self, actuation::Cause, actuation::Kind, actuation::Outcome};
use crate::schedule::timetable::{DayPlan, Timetable};
use crate::store::recorder::{self, Kept, Who};

const SUBSYSTEM: &str = "panel_power";

/// The longest the loop sleeps before it looks at the plan and the clock again.
pub const LOOK_AGAIN: Duration = Duration::from_secs(60);

/// Whether the panel should be on at `now`, and when, after `now`, that next changes.
pub fn desired(
    today: &DayPlan,
    timetable: &Timetable,
    config: &PowerConfig,
    now: Timestamp,
) -> (bool, Timestamp) {
    let zone = &timetable.zone;
    let next_midnight = today
        .date
        .checked_add(1.day())
        .ok()
        .and_then(|d| d.to_zoned(zone.clone()).ok())
        .map_or(now + SignedDuration::from_hours(24), |z| z.timestamp());
    let (Some(first), Some(last)) = (
        today.periods.iter().map(|p| p.start).min(),
        today.periods.iter().map(|p| p.end).max(),
    ) else {
        return (false, next_midnight);
    };
    let at = |time: jiff::civil::Time| {
        today
            .date
            .to_datetime(time)
            .to_zoned(zone.clone())
            .map(|z| z.timestamp())
            .unwrap_or(now)
    };
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

/// Why the panel could not be switched: what failed, on which device or
/// program, and the key to look at.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("panel.power.{key}: {source}")]
    Bytes { key: &'static str, source: HexError },
    #[error("panel.power.baud: unsupported speed {0}")]
    Speed(u32),
    #[error("{}: {what}: {source} (check panel.power.serial_device, and that the agent's user may use the port)", device.display())]
    Serial {
        device: PathBuf,
        what: String,
        source: std::io::Error,
    },
    #[error("panel.power.{key}: no command configured")]
    NoCommand { key: &'static str },
    #[error("{program}: {source} (check panel.power.{key})")]
    Spawn {
        program: String,
        key: &'static str,
        source: std::io::Error,
    },
    #[error("{program} exited with {status} (panel.power.{key})")]
    Exited {
        program: String,
        key: &'static str,
        status: std::process::ExitStatus,
    },
}

/// Switches the panel on or off.
fn switch(config: &PowerConfig, on: bool) -> Result<(), SwitchError> {
    match config.control {
        Control::None => Ok(()),
        Control::Rs232 => {
            let (key, text) = if on {
                ("on_bytes", &config.on_bytes)
            } else {
                ("off_bytes", &config.off_bytes)
            };
            let bytes = hex_bytes(text).map_err(|source| SwitchError::Bytes { key, source })?;
            let device = &config.serial_device;
            let serial = |what: String| {
                move |source: std::io::Error| SwitchError::Serial {
                    device: device.clone(),
                    what,
                    source,
                }
            };
            let mut port = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(OFlag::O_NOCTTY.bits())
                .open(device)
                .map_err(serial("cannot open".to_owned()))?;
            let speed = speed(config.baud).ok_or(SwitchError::Speed(config.baud))?;
            let mut settings = termios::tcgetattr(&port)
                .map_err(std::io::Error::from)
                .map_err(serial("not a serial port".to_owned()))?;
            termios::cfmakeraw(&mut settings);
            termios::cfsetspeed(&mut settings, speed)
                .map_err(std::io::Error::from)
                .map_err(serial(format!("cannot set {} baud", config.baud)))?;
            termios::tcsetattr(&port, SetArg::TCSANOW, &settings)
                .map_err(std::io::Error::from)
                .map_err(serial(format!(
                    "cannot set raw mode at {} baud",
                    config.baud
                )))?;
            port.write_all(&bytes)
                .map_err(serial("cannot write the command".to_owned()))?;
            termios::tcdrain(&port)
                .map_err(std::io::Error::from)
                .map_err(serial("the command was not sent".to_owned()))?;
            Ok(())
        }
        Control::Command => {
            let (key, argv) = if on {
                ("on_command", &config.on_command)
            } else {
                ("off_command", &config.off_command)
            };
            let (program, args) = argv.split_first().ok_or(SwitchError::NoCommand { key })?;
            let status = std::process::Command::new(program)
                .args(args)
                .status()
                .map_err(|source| SwitchError::Spawn {
                    program: program.clone(),
                    key,
                    source,
                })?;
            if status.success() {
                Ok(())
            } else {
                Err(SwitchError::Exited {
                    program: program.clone(),
                    key,
                    status,
                })
            }
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
            agent
                .health
                .set(SUBSYSTEM, State::Disabled, "panel.power.control = \"none\"");
            return;
        }
        let Ok(timetable) = Timetable::new(config.schedule.clone(), &config.room.timezone) else {
            return;
        };
        let now = agent.clock.now();
        let (on, next) = desired(
            &timetable.plan(timetable.date_of(now)),
            &timetable,
            &power,
            now,
        );
        // The panel is switched only while its record can be kept; refused, it is tried again at the next look.
        let admitted =
            agent.store.recorder().admit(Who::Room).inspect_err(
                |refusal| tracing::warn!(%refusal, "the panel's power is not switched"),
            );
        if applied != Some(on) && admitted.is_ok() {
            let settings = power.clone();
            let result = tokio::task::spawn_blocking(move || switch(&settings, on)).await;
            let (outcome, detail) = match &result {
                Ok(Ok(())) => (Outcome::Done, String::new()),
                Ok(Err(err)) => (Outcome::Failed, err.to_string()),
                Err(worker) => (
                    Outcome::Failed,
                    format!("the switch's worker failed: {worker}"),
                ),
            };
            match outcome {
                Outcome::Done => agent.health.set(
                    SUBSYSTEM,
                    State::Ok,
                    if on { "on for the school day" } else { "off" },
                ),
                _ => agent.health.set(
                    SUBSYSTEM,
                    State::Degraded,
                    format!(
                        "cannot switch the panel {}: {detail}",
                        if on { "on" } else { "off" }
                    ),
                ),
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
            if let Kept::Refused(refusal) = agent
                .store
                .recorder()
                .keep(recorder::Write::event(now, record))
                .await
            {
                tracing::error!(%refusal, "the panel's power record was not kept");
            }
            // A failed switch is tried again at the next look.
            applied = (outcome == Outcome::Done).then_some(on);
        }
        // `next` is always after `now` (see `desired`), so this never spins.
        let wake_at = agent.clock.deadline_toward(next, LOOK_AGAIN);
        tokio::select! {
            _ = agent.shutdown.cancelled() => return,
            () = agent.clock.sleep_until(wake_at) => {}
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
        let config = PowerConfig {
            control: Control::Rs232,
            ..Default::default()
        };
        let monday = "2026-09-07".parse().unwrap();
        let plan = timetable.plan(monday);
        assert_eq!(
            desired(&plan, &timetable, &config, at("2026-09-07T06:00")),
            (false, at("2026-09-07T06:50"))
        );
        assert_eq!(
            desired(&plan, &timetable, &config, at("2026-09-07T06:50")),
            (true, at("2026-09-07T08:50"))
        );
        assert_eq!(
            desired(&plan, &timetable, &config, at("2026-09-07T08:50")),
            (false, at("2026-09-08T00:00"))
        );
        let tuesday = timetable.plan("2026-09-08".parse().unwrap());
        assert_eq!(
            desired(&tuesday, &timetable, &config, at("2026-09-08T07:10")),
            (false, at("2026-09-09T00:00")),
            "no lessons, no panel"
        );
    }

    /// A morning on the manual clock, in milliseconds, with a real command as the panel's driver: off
    /// before the school day, on ten minutes before its first period, and off within a minute of NTP
    /// stepping the clock forward past the end of the day.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_panel_follows_the_school_day_and_a_clock_stepped_forward_within_a_minute() {
        let (dir, clock, store) = crate::store::testing::store();
        clock.set(at("2026-09-07T06:00"));
        let switched = dir.path().join("panel.log");
        let command = |word: &str| {
            format!(
                "[\"sh\", \"-c\", \"echo {word} >> '{}'\"]",
                switched.display()
            )
        };
        let source = format!(
            "[room]\nschool_code = \"LC-0101\"\nroom_id = \"6A1\"\n[panel.power]\ncontrol = \"command\"\non_command = {}\noff_command = {}\n\
             [[schedule.shifts]]\nname = \"Sáng\"\ndays = [\"mon\"]\nperiods = [{{ start = \"07:00\", end = \"07:45\" }}, {{ start = \"07:50\", end = \"08:35\" }}]\n\
             [[actuators.device]]\nname = \"bell\"\nkind = \"bell\"\ndriver = {{ type = \"simulated\" }}\n",
            command("on"),
            command("off")
        );
        let config =
            crate::config::Config::parse(std::path::Path::new("room.toml"), &source).unwrap();
        let store = Arc::new(store);
        let (agent, _) = crate::agent::testing::agent(config, store.clone(), clock.clone());
        let running = tokio::spawn(run(agent.clone()));
        let recorded = |records: i64| {
            let mut commits = store.subscribe_commits();
            async move {
                let committed = commits.wait_for(|seq| *seq >= records);
                tokio::time::timeout(std::time::Duration::from_secs(10), committed)
                    .await
                    .expect("the panel switched in time")
                    .unwrap();
            }
        };
        recorded(1).await;
        clock.advance_to(at("2026-09-07T06:50"));
        recorded(2).await;
        // The loop sleeps toward the end of the day, 08:50, when NTP steps the clock forward past it.
        crate::agent::testing::until_asleep(&clock, 1).await;
        clock.set(at("2026-09-07T08:55"));
        clock.advance(LOOK_AGAIN);
        recorded(3).await;
        agent.shutdown.cancel();
        running.await.unwrap();

        let recorded: Vec<(String, Timestamp, i32)> =
            crate::store::outbox::read_after(&store.reader().unwrap(), 0, 10)
                .unwrap()
                .iter()
                .map(|event| match event.payload().unwrap() {
                    Some(proto::event::Payload::Actuation(a)) => {
                        (a.command, event.occurred_at, a.outcome)
                    }
                    other => panic!("{other:?}"),
                })
                .collect();
        let done = Outcome::Done as i32;
        assert_eq!(
            recorded,
            [
                ("off".to_owned(), at("2026-09-07T06:00"), done),
                ("on".to_owned(), at("2026-09-07T06:50"), done),
                ("off".to_owned(), at("2026-09-07T08:56"), done),
            ]
        );
        assert_eq!(
            std::fs::read_to_string(&switched).unwrap(),
            "off\non\noff\n",
            "the driver ran once for each record"
        );
    }

    #[test]
    fn the_serial_port_is_left_raw_at_the_configured_speed_and_the_command_sent() {
        use std::io::Read;
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
        ))
        .unwrap();
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
        assert!(
            !settings.local_flags.contains(termios::LocalFlags::ICANON),
            "raw input"
        );
        assert!(
            !settings.output_flags.contains(termios::OutputFlags::OPOST),
            "raw output"
        );
        let mut received = [0u8; 3];
        std::fs::File::from(pty.master)
            .read_exact(&mut received)
            .unwrap();
        assert_eq!(
            received,
            [0xAA, 0x0A, 0x0D],
            "sent unchanged: no newline translated"
        );
    }

    #[test]
    fn a_device_that_is_not_a_serial_port_is_named() {
        let config = PowerConfig {
            control: Control::Rs232,
            serial_device: "/dev/null".into(),
            on_bytes: "AA".into(),
            ..Default::default()
        };
        let err = switch(&config, true).unwrap_err().to_string();
        assert!(err.starts_with("/dev/null: not a serial port"), "{err}");
        assert!(err.contains("check panel.power.serial_device"), "{err}");
    }
}
