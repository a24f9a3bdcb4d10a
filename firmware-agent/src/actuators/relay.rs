//! Relays on output lines: a simulated pin bank, the Linux GPIO character
//! device and a Raspberry Pi's pins, all behind [`OutputLine`], and the
//! [`Relay`] actuator that drives one of them safely.
//!
//! # Design
//! - Lines are requested in their inactive state, so a relay is off from the
//!   moment the agent owns it (the safe state at start). Active-low wiring is the
//!   line's business: callers only ever say "active" or "inactive".
//! - A relay with a maximum on-time (every bell) arms a cutoff on a thread of
//!   its own, with a timer of its own, on the monotonic time of the clock it is
//!   handed: the relay goes off at the deadline even if the agent's async
//!   runtime is stuck or the command that switched it on was lost. The agent's
//!   own pulse normally ends long before.
//! - On the way down after a crash the process is gone and the kernel releases
//!   the line; the GPIO driver then returns the pin to an input. Relay boards
//!   must be wired so that an undriven input means off (a pull-down on
//!   active-high boards; active-low boards have their own pull-up), which
//!   `config/agent.example.toml` says beside the keys.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use jiff::Timestamp;
use tokio::sync::watch;

use super::{Actuator, ActuatorError, BoxFuture, Confirmation};
use crate::clock::{Clock, Monotonic};

/// A line that drives a relay.
pub trait OutputLine: Send {
    /// Drives the line to its active level (relay on) or its inactive level (off).
    fn set(&mut self, active: bool) -> std::io::Result<()>;
}

/// A relay on one line.
pub struct Relay {
    name: String,
    line: Arc<Mutex<Box<dyn OutputLine>>>,
    cutoff: Option<Cutoff>,
}

/// The longest the relay may stay on, and the deadline its cutoff thread
/// watches (`None` while off). [`Relay::drive`] and [`watch_cutoff`] change
/// the line and read or write the deadline under the line's lock, so a cutoff
/// never switches off a relay switched on again since.
struct Cutoff {
    max_on: Duration,
    clock: Arc<dyn Clock>,
    /// Dropped with the relay, which ends the cutoff thread.
    deadline: watch::Sender<Option<Monotonic>>,
}

impl Relay {
    /// A relay on `line`, which the caller has just requested in its inactive state.
    pub fn new(
        name: &str,
        line: Box<dyn OutputLine>,
        max_on: Option<Duration>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Relay> {
        let line = Arc::new(Mutex::new(line));
        let Some(max_on) = max_on else {
            return Arc::new(Relay {
                name: name.to_owned(),
                line,
                cutoff: None,
            });
        };
        let (deadline, armed) = watch::channel(None);
        let (watched, thread_clock, name_owned) =
            (Arc::downgrade(&line), clock.clone(), name.to_owned());
        // A timer of its own, on its own thread: the agent's runtime may be the thing that is stuck.
        let timer = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a timer can be started at start-up");
        std::thread::Builder::new()
            .name(format!("cutoff-{name}"))
            .spawn(move || {
                timer.block_on(watch_cutoff(
                    &name_owned,
                    max_on,
                    thread_clock.as_ref(),
                    armed,
                    &watched,
                ))
            })
            .expect("a thread can be started at start-up");
        Arc::new(Relay {
            name: name.to_owned(),
            line,
            cutoff: Some(Cutoff {
                max_on,
                clock,
                deadline,
            }),
        })
    }

    fn drive(&self, active: bool) -> Result<(), ActuatorError> {
        let mut line = self
            .line
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        line.set(active)
            .map_err(|err| ActuatorError::Failed(format!("cannot drive the line: {err}")))?;
        if let Some(cutoff) = &self.cutoff {
            cutoff
                .deadline
                .send_replace(active.then(|| cutoff.clock.deadline_in(cutoff.max_on)));
        }
        Ok(())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.safe_state();
    }
}

/// Sleeps until the armed deadline and forces the line off then; returns once the relay is gone.
async fn watch_cutoff(
    name: &str,
    max_on: Duration,
    clock: &dyn Clock,
    mut armed: watch::Receiver<Option<Monotonic>>,
    line: &Weak<Mutex<Box<dyn OutputLine>>>,
) {
    loop {
        let deadline = *armed.borrow_and_update();
        if let Some(at) = deadline {
            tokio::select! {
                changed = armed.changed() => if changed.is_err() { return } else { continue },
                () = clock.sleep_until(at) => {}
            }
            let Some(line) = line.upgrade() else { return };
            let mut line = line.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if *armed.borrow() == deadline {
                let result = line.set(false);
                tracing::warn!(
                    device = name,
                    ?max_on,
                    ?result,
                    "relay on for its maximum time: switched off by its cutoff"
                );
            }
        }
        if armed.changed().await.is_err() {
            return;
        }
    }
}

impl Actuator for Relay {
    fn name(&self) -> &str {
        &self.name
    }

    fn switch(&self, on: bool) -> BoxFuture<'_, Result<Confirmation, ActuatorError>> {
        let result = self.drive(on).map(|()| Confirmation::Done);
        async move { result }.boxed()
    }

    fn safe_state(&self) {
        if let Err(err) = self.drive(false) {
            tracing::error!(device = %self.name, %err, "cannot apply the safe state");
        }
    }
}

/// Each simulated pin's changes of electrical level, by pin name.
type PinHistory = BTreeMap<String, Vec<(Timestamp, bool)>>;

/// Pins in memory, for tests and the demo: each remembers its electrical level and every change.
#[derive(Clone)]
pub struct SimulatedPinBank {
    pins: Arc<Mutex<PinHistory>>,
    changes: Arc<watch::Sender<u64>>,
    clock: Arc<dyn Clock>,
}

impl SimulatedPinBank {
    /// A bank whose changes are timed by `clock`'s wall time.
    pub fn new(clock: Arc<dyn Clock>) -> SimulatedPinBank {
        SimulatedPinBank {
            pins: Arc::default(),
            changes: Arc::new(watch::channel(0).0),
            clock,
        }
    }

    /// Requests the pin `name`, driving it to its inactive level at once.
    pub fn line(&self, name: &str, active_low: bool) -> Box<dyn OutputLine> {
        let mut line = SimulatedLine {
            bank: self.clone(),
            name: name.to_owned(),
            active_low,
        };
        line.set(false)
            .expect("a simulated pin always accepts a level");
        Box::new(line)
    }

    /// The pin's electrical level (true = high), if it was ever requested.
    pub fn level(&self, name: &str) -> Option<bool> {
        self.pins
            .lock()
            .unwrap()
            .get(name)
            .and_then(|changes| changes.last())
            .map(|(_, level)| *level)
    }

    /// Every level the pin was driven to, with when (by the bank's clock, as a relay's click would be timed).
    pub fn history(&self, name: &str) -> Vec<(Timestamp, bool)> {
        self.pins
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Ticks on every change of any pin.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

struct SimulatedLine {
    bank: SimulatedPinBank,
    name: String,
    active_low: bool,
}

impl OutputLine for SimulatedLine {
    fn set(&mut self, active: bool) -> std::io::Result<()> {
        let level = active != self.active_low;
        tracing::debug!(pin = %self.name, level = if level { "high" } else { "low" }, active, "simulated pin driven");
        let at = self.bank.clock.now();
        self.bank
            .pins
            .lock()
            .unwrap()
            .entry(self.name.clone())
            .or_default()
            .push((at, level));
        self.bank.changes.send_modify(|n| *n += 1);
        Ok(())
    }
}

/// A line of a Linux GPIO character device (`/dev/gpiochipN`).
pub struct CdevLine {
    request: gpiocdev::Request,
    offset: u32,
}

impl CdevLine {
    /// Requests `offset` on `chip` as an output at its inactive level.
    pub fn request(
        chip: &str,
        offset: u32,
        active_low: bool,
        consumer: &str,
    ) -> Result<CdevLine, ActuatorError> {
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(chip)
            .with_consumer(consumer)
            .with_line(offset)
            .as_output(gpiocdev::line::Value::Inactive);
        if active_low {
            builder.as_active_low();
        }
        let request = builder
            .request()
            .map_err(|err| ActuatorError::Failed(format!("cannot request line {offset} of {chip}: {err} (check the chip path, the line number, and that the agent's user is in the gpio group)")))?;
        Ok(CdevLine { request, offset })
    }
}

impl OutputLine for CdevLine {
    fn set(&mut self, active: bool) -> std::io::Result<()> {
        let value = if active {
            gpiocdev::line::Value::Active
        } else {
            gpiocdev::line::Value::Inactive
        };
        self.request
            .set_value(self.offset, value)
            .map(|_| ())
            .map_err(std::io::Error::other)
    }
}

/// A Raspberry Pi pin (BCM numbering) through `rppal`.
pub struct RppalLine {
    pin: rppal::gpio::OutputPin,
    active_low: bool,
}

impl RppalLine {
    /// Takes `pin` as an output at its inactive level.
    pub fn request(pin: u8, active_low: bool) -> Result<RppalLine, ActuatorError> {
        let failed = |err: rppal::gpio::Error| {
            ActuatorError::Failed(format!(
                "cannot take GPIO pin {pin}: {err} (is this a Raspberry Pi, and is the agent's user in the gpio group?)"
            ))
        };
        let pin = rppal::gpio::Gpio::new()
            .map_err(failed)?
            .get(pin)
            .map_err(failed)?;
        let mut pin = if active_low {
            pin.into_output_high()
        } else {
            pin.into_output_low()
        };
        // Keep driving the inactive level when released, rather than restoring whatever was there before.
        pin.set_reset_on_drop(false);
        Ok(RppalLine { pin, active_low })
    }
}

impl OutputLine for RppalLine {
    fn set(&mut self, active: bool) -> std::io::Result<()> {
        if active != self.active_low {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new("2026-09-07T00:00:00Z".parse().unwrap()))
    }

    #[tokio::test]
    async fn a_relay_is_safe_at_start_and_at_stop_active_high_and_low() {
        let clock = clock();
        let bank = SimulatedPinBank::new(clock.clone());
        let high = Relay::new("bell", bank.line("bell", false), None, clock.clone());
        let low = Relay::new("lights", bank.line("lights", true), None, clock);
        assert_eq!(
            (bank.level("bell"), bank.level("lights")),
            (Some(false), Some(true)),
            "inactive at start"
        );
        high.switch(true).await.unwrap();
        low.switch(true).await.unwrap();
        assert_eq!(
            (bank.level("bell"), bank.level("lights")),
            (Some(true), Some(false)),
            "active"
        );
        drop((high, low));
        assert_eq!(
            (bank.level("bell"), bank.level("lights")),
            (Some(false), Some(true)),
            "inactive once stopped"
        );
    }

    #[tokio::test]
    async fn a_bell_left_on_is_cut_off_by_the_relay_itself_at_its_maximum() {
        let clock = clock();
        let bank = SimulatedPinBank::new(clock.clone());
        let bell = Relay::new(
            "bell",
            bank.line("bell", false),
            Some(Duration::from_secs(15)),
            clock.clone(),
        );
        let mut changes = bank.subscribe();
        bell.switch(true).await.unwrap();
        changes.mark_unchanged();
        clock.advance(Duration::from_millis(14_999));
        assert_eq!(bank.level("bell"), Some(true), "not before its maximum");
        // Nobody switches it off: the cutoff thread must, once its maximum has passed.
        clock.advance(Duration::from_millis(1));
        changes
            .wait_for(|_| bank.level("bell") == Some(false))
            .await
            .unwrap();
        let history = bank.history("bell");
        let (on_at, off_at) = (history[history.len() - 2].0, history[history.len() - 1].0);
        assert_eq!(
            off_at.duration_since(on_at),
            jiff::SignedDuration::from_secs(15),
            "at its maximum, by the clock it was handed"
        );
        drop(bell);
    }

    #[tokio::test]
    async fn a_bell_switched_off_and_on_again_gets_its_whole_maximum_again() {
        let clock = clock();
        let bank = SimulatedPinBank::new(clock.clone());
        let bell = Relay::new(
            "bell",
            bank.line("bell", false),
            Some(Duration::from_secs(15)),
            clock.clone(),
        );
        let mut changes = bank.subscribe();
        bell.switch(true).await.unwrap();
        clock.advance(Duration::from_secs(10));
        bell.switch(false).await.unwrap();
        bell.switch(true).await.unwrap();
        changes.mark_unchanged();
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            bank.level("bell"),
            Some(true),
            "the first deadline no longer stands"
        );
        clock.advance(Duration::from_secs(5));
        changes
            .wait_for(|_| bank.level("bell") == Some(false))
            .await
            .unwrap();
        assert_eq!(
            bank.history("bell").last().unwrap().0,
            "2026-09-07T00:00:25Z".parse::<Timestamp>().unwrap()
        );
    }
}
