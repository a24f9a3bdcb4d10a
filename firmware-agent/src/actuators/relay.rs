//! Relays on output lines: a simulated pin bank, the Linux GPIO character
//! device and a Raspberry Pi's pins, all behind [`OutputLine`], and the
//! [`Relay`] actuator that drives one of them safely.
//!
//! # Design
//! - Lines are requested in their inactive state, so a relay is off from the
//!   moment the agent owns it (the safe state at start). Active-low wiring is the
//!   line's business: callers only ever say "active" or "inactive".
//! - A relay with a maximum on-time (every bell) arms a cutoff on a thread of
//!   its own, timed by the monotonic clock: the relay goes off at the deadline
//!   even if the async runtime is stuck or the command that switched it on was
//!   lost. The agent's own pulse normally ends long before.
//! - On the way down after a crash the process is gone and the kernel releases
//!   the line; the GPIO driver then returns the pin to an input. Relay boards
//!   must be wired so that an undriven input means off (a pull-down on
//!   active-high boards; active-low boards have their own pull-up), which
//!   `config/agent.example.toml` says beside the keys.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use jiff::Timestamp;
use tokio::sync::watch;

use super::{Actuator, ActuatorError, BoxFuture, Confirmation};

/// A line that drives a relay.
pub trait OutputLine: Send {
    /// Drives the line to its active level (relay on) or its inactive level (off).
    fn set(&mut self, active: bool) -> std::io::Result<()>;
}

/// A relay on one line.
pub struct Relay {
    name: String,
    line: Arc<Mutex<Box<dyn OutputLine>>>,
    cutoff: Option<Arc<Cutoff>>,
}

/// The deadline after which the relay is forced off, watched by its own thread.
/// Lock order: `deadline`, then the line; the same in [`Relay::drive`] and [`watch_cutoff`].
struct Cutoff {
    deadline: Mutex<Option<Instant>>,
    changed: Condvar,
    max_on: Duration,
    stopped: AtomicBool,
}

impl Relay {
    /// A relay on `line`, which the caller has just requested in its inactive state.
    pub fn new(name: &str, line: Box<dyn OutputLine>, max_on: Option<Duration>) -> Arc<Relay> {
        let line = Arc::new(Mutex::new(line));
        let cutoff = max_on.map(|max_on| Arc::new(Cutoff { deadline: Mutex::new(None), changed: Condvar::new(), max_on, stopped: AtomicBool::new(false) }));
        let relay = Arc::new(Relay { name: name.to_owned(), line, cutoff: cutoff.clone() });
        if let Some(cutoff) = cutoff {
            let line = Arc::downgrade(&relay.line);
            let name = name.to_owned();
            std::thread::Builder::new()
                .name(format!("cutoff-{name}"))
                .spawn(move || watch_cutoff(&name, &cutoff, &line))
                .expect("a thread can be started at start-up");
        }
        relay
    }

    fn drive(&self, active: bool) -> Result<(), ActuatorError> {
        let mut deadline = self.cutoff.as_ref().map(|cutoff| cutoff.deadline.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let mut line = self.line.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        line.set(active).map_err(|err| ActuatorError::Failed(format!("cannot drive the line: {err}")))?;
        if let (Some(cutoff), Some(deadline)) = (&self.cutoff, deadline.as_mut()) {
            **deadline = active.then(|| Instant::now() + cutoff.max_on);
            cutoff.changed.notify_all();
        }
        Ok(())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.safe_state();
        if let Some(cutoff) = &self.cutoff {
            // Under the lock, so the cutoff thread cannot miss the wake-up between its check and its wait.
            let _deadline = cutoff.deadline.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            cutoff.stopped.store(true, Ordering::SeqCst);
            cutoff.changed.notify_all();
        }
    }
}

/// Sleeps until the armed deadline and forces the line off then; returns once the relay is gone.
fn watch_cutoff(name: &str, cutoff: &Cutoff, line: &Weak<Mutex<Box<dyn OutputLine>>>) {
    let mut deadline = cutoff.deadline.lock().unwrap();
    loop {
        if cutoff.stopped.load(Ordering::SeqCst) {
            return;
        }
        match *deadline {
            None => deadline = cutoff.changed.wait(deadline).unwrap(),
            Some(at) if Instant::now() >= at => {
                *deadline = None;
                let Some(line) = line.upgrade() else { return };
                let result = line.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).set(false);
                tracing::warn!(device = name, max_on = ?cutoff.max_on, ?result, "relay on for its maximum time: switched off by its cutoff");
            }
            Some(at) => deadline = cutoff.changed.wait_timeout(deadline, at - Instant::now()).unwrap().0,
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
#[derive(Clone, Default)]
pub struct SimulatedPinBank {
    pins: Arc<Mutex<PinHistory>>,
    changes: Arc<watch::Sender<u64>>,
}

impl SimulatedPinBank {
    pub fn new() -> SimulatedPinBank {
        SimulatedPinBank { pins: Arc::default(), changes: Arc::new(watch::channel(0).0) }
    }

    /// Requests the pin `name`, driving it to its inactive level at once.
    pub fn line(&self, name: &str, active_low: bool) -> Box<dyn OutputLine> {
        let mut line = SimulatedLine { bank: self.clone(), name: name.to_owned(), active_low };
        line.set(false).expect("a simulated pin always accepts a level");
        Box::new(line)
    }

    /// The pin's electrical level (true = high), if it was ever requested.
    pub fn level(&self, name: &str) -> Option<bool> {
        self.pins.lock().unwrap().get(name).and_then(|changes| changes.last()).map(|(_, level)| *level)
    }

    /// Every level the pin was driven to, with when (by the system clock, as a relay's click would be timed).
    pub fn history(&self, name: &str) -> Vec<(Timestamp, bool)> {
        self.pins.lock().unwrap().get(name).cloned().unwrap_or_default()
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
        self.bank.pins.lock().unwrap().entry(self.name.clone()).or_default().push((Timestamp::now(), level));
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
    pub fn request(chip: &str, offset: u32, active_low: bool, consumer: &str) -> Result<CdevLine, ActuatorError> {
        let mut builder = gpiocdev::Request::builder();
        builder.on_chip(chip).with_consumer(consumer).with_line(offset).as_output(gpiocdev::line::Value::Inactive);
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
        let value = if active { gpiocdev::line::Value::Active } else { gpiocdev::line::Value::Inactive };
        self.request.set_value(self.offset, value).map(|_| ()).map_err(std::io::Error::other)
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
        let failed = |err: rppal::gpio::Error| ActuatorError::Failed(format!("cannot take GPIO pin {pin}: {err} (is this a Raspberry Pi, and is the agent's user in the gpio group?)"));
        let pin = rppal::gpio::Gpio::new().map_err(failed)?.get(pin).map_err(failed)?;
        let mut pin = if active_low { pin.into_output_high() } else { pin.into_output_low() };
        // Keep driving the inactive level when released, rather than restoring whatever was there before.
        pin.set_reset_on_drop(false);
        Ok(RppalLine { pin, active_low })
    }
}

impl OutputLine for RppalLine {
    fn set(&mut self, active: bool) -> std::io::Result<()> {
        if active != self.active_low { self.pin.set_high() } else { self.pin.set_low() }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relay_is_safe_at_start_and_at_stop_active_high_and_low() {
        let bank = SimulatedPinBank::new();
        let high = Relay::new("bell", bank.line("bell", false), None);
        let low = Relay::new("lights", bank.line("lights", true), None);
        assert_eq!((bank.level("bell"), bank.level("lights")), (Some(false), Some(true)), "inactive at start");
        high.switch(true).await.unwrap();
        low.switch(true).await.unwrap();
        assert_eq!((bank.level("bell"), bank.level("lights")), (Some(true), Some(false)), "active");
        drop((high, low));
        assert_eq!((bank.level("bell"), bank.level("lights")), (Some(false), Some(true)), "inactive once stopped");
    }

    #[tokio::test]
    async fn a_bell_left_on_is_cut_off_by_the_relay_itself() {
        let bank = SimulatedPinBank::new();
        let bell = Relay::new("bell", bank.line("bell", false), Some(Duration::from_millis(100)));
        let mut changes = bank.subscribe();
        changes.mark_unchanged();
        bell.switch(true).await.unwrap();
        // Nobody switches it off: the cutoff thread must.
        changes.wait_for(|_| bank.level("bell") == Some(false)).await.unwrap();
        let history = bank.history("bell");
        let (on_at, off_at) = (history[history.len() - 2].0, history[history.len() - 1].0);
        assert!(off_at.duration_since(on_at) >= jiff::SignedDuration::from_millis(100), "never before its maximum");
        drop(bell);
    }
}
