//! The daemon on simulated time: a whole school day run in seconds, with the
//! same binary, config and database a room has.
//!
//! # Design
//! With `FIRMWARE_AGENT_SIMULATED_CLOCK` set to an instant (RFC 3339, e.g.
//! `2026-09-07T06:59:00+07:00`), `firmware-agent run` takes its time from a
//! [`ManualClock`] that starts there and moves only when a line on its
//! standard input says so. Everything else is real: sockets, the store, the
//! models; a camera file source still paces its frames in real time. The
//! end-to-end tests use it to open a roll call, ring a morning of bells or
//! step the clock back as NTP would, without waiting for it.
//!
//! One command a line; each is answered by a log line
//! `simulated clock moved: command N, now <instant>` (N counts the lines read,
//! from 1) once the clock has moved, or by an error naming the line:
//! - `advance <span>`: lets the span pass (`90s`, `15m`, `1h 30m`; jiff's
//!   friendly format or ISO 8601), waking every sleeper it passes;
//! - `advance-to <instant>`: lets time pass until the wall clock reads it;
//! - `step-to <instant>`: steps the wall clock there, forward or back, as
//!   NTP would; monotonic time stands still and no sleeper wakes;
//! - `synchronized yes|no`: what the clock says of its NTP discipline.
//!
//! Under systemd standard input is `/dev/null`, and the variable is not set
//! by the shipped unit: a room never runs on it.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::ManualClock;

/// The environment variable that selects simulated time and its start.
pub const VARIABLE: &str = "FIRMWARE_AGENT_SIMULATED_CLOCK";

/// A start for the simulated clock that is not an instant.
#[derive(Debug, thiserror::Error)]
#[error(
    "{VARIABLE}={value:?} is not an instant ({source}); give one with its offset, e.g. 2026-09-07T06:59:00+07:00, or unset it to run on the system clock"
)]
pub struct BadStart {
    value: String,
    source: jiff::Error,
}

/// The simulated clock asked for by the environment, if any.
pub fn from_env() -> Result<Option<Arc<ManualClock>>, BadStart> {
    let Some(value) = std::env::var_os(VARIABLE) else {
        return Ok(None);
    };
    let value = value.to_string_lossy().into_owned();
    let start: Timestamp = value.trim().parse().map_err(|source| BadStart {
        value: value.clone(),
        source,
    })?;
    Ok(Some(Arc::new(ManualClock::new(start))))
}

/// Moves `clock` by the commands read from standard input until it ends or
/// the agent stops.
pub async fn steer_from_stdin(clock: Arc<ManualClock>, shutdown: CancellationToken) {
    tracing::warn!(now = %clock_now(&clock), "running on a simulated clock: time moves only by commands on standard input");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut count: u64 = 0;
    loop {
        let line = tokio::select! {
            () = shutdown.cancelled() => return,
            line = lines.next_line() => line,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(%err, "simulated clock: standard input cannot be read; time stands still");
                return;
            }
        };
        count += 1;
        match obey(&clock, &line) {
            Ok(()) => tracing::info!(
                "simulated clock moved: command {count}, now {}",
                clock_now(&clock)
            ),
            Err(problem) => {
                tracing::error!("simulated clock: command {count} {line:?} not done: {problem}")
            }
        }
    }
}

fn clock_now(clock: &ManualClock) -> Timestamp {
    super::Clock::now(clock)
}

/// Carries out one command line.
fn obey(clock: &ManualClock, line: &str) -> Result<(), String> {
    let (verb, argument) = line
        .trim()
        .split_once(char::is_whitespace)
        .map(|(v, a)| (v, a.trim()))
        .unwrap_or((line.trim(), ""));
    let instant = |text: &str| -> Result<Timestamp, String> {
        text.parse()
            .map_err(|err| format!("{text:?} is not an instant with its offset ({err})"))
    };
    match verb {
        "advance" => {
            let span: SignedDuration = argument.parse().map_err(|err| {
                format!("{argument:?} is not a span such as 90s, 15m or 1h 30m ({err})")
            })?;
            let span = std::time::Duration::try_from(span).map_err(|_| {
                format!("{argument:?} goes back: time only moves forward; use step-to")
            })?;
            clock.advance(span);
        }
        "advance-to" => {
            let to = instant(argument)?;
            if to < clock_now(clock) {
                return Err(format!(
                    "{to} is before now ({}): time only moves forward; use step-to",
                    clock_now(clock)
                ));
            }
            clock.advance_to(to);
        }
        "step-to" => clock.set(instant(argument)?),
        "synchronized" => match argument {
            "yes" => clock.set_synchronized(true),
            "no" => clock.set_synchronized(false),
            other => return Err(format!("{other:?}: say yes or no")),
        },
        other => {
            return Err(format!(
                "unknown command {other:?}: use advance, advance-to, step-to or synchronized"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{Clock, Monotonic};

    fn clock() -> ManualClock {
        ManualClock::new("2026-09-07T06:59:00+07:00".parse().unwrap())
    }

    #[test]
    fn each_command_moves_the_clock_as_it_says() {
        let clock = clock();
        obey(&clock, "advance 1m 30s").unwrap();
        assert_eq!(clock.now(), "2026-09-07T07:00:30+07:00".parse().unwrap());
        obey(&clock, "advance-to 2026-09-07T07:45:00+07:00").unwrap();
        assert_eq!(
            clock.monotonic(),
            Monotonic::default() + Duration::from_secs(46 * 60)
        );
        obey(&clock, "step-to 2026-09-07T06:00:00+07:00").unwrap();
        assert_eq!(clock.now(), "2026-09-07T06:00:00+07:00".parse().unwrap());
        assert_eq!(
            clock.monotonic(),
            Monotonic::default() + Duration::from_secs(46 * 60),
            "a step is not time passing"
        );
        obey(&clock, "synchronized no").unwrap();
        assert!(!clock.is_synchronized());
    }

    #[test]
    fn a_bad_command_says_what_was_wrong_and_moves_nothing() {
        let clock = clock();
        for (line, says) in [
            ("advance soon", "is not a span"),
            ("advance -5m", "time only moves forward"),
            ("advance-to 2026-09-07T06:00:00+07:00", "is before now"),
            ("step-to 07:00", "is not an instant"),
            ("rewind 5m", "unknown command \"rewind\""),
            ("synchronized maybe", "say yes or no"),
        ] {
            let problem = obey(&clock, line).unwrap_err();
            assert!(problem.contains(says), "{line}: {problem}");
        }
        assert_eq!(
            (clock.now(), clock.monotonic()),
            (
                "2026-09-07T06:59:00+07:00".parse().unwrap(),
                Monotonic::default()
            )
        );
    }
}
