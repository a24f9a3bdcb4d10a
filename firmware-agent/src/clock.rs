//! Time, as a value the code is handed rather than a global it reads.
//!
//! # Design
//! Everything that depends on the time of day (the outbox's timestamps, the
//! timetable, roll-call windows) takes an `Arc<dyn Clock>`. Production uses
//! [`SystemClock`]; tests use [`ManualClock`] and move it by hand, so a school day
//! runs in milliseconds and a clock stepped back by NTP is a one-line test.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;

/// A source of the current time and of whether it can be trusted.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;
    /// Whether the system clock is disciplined by NTP (or similar) right now.
    fn is_synchronized(&self) -> bool;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn is_synchronized(&self) -> bool {
        kernel_reports_synchronized()
    }
}

/// Asks the kernel, as `timedatectl` does: `adjtimex` reports `TIME_ERROR` or
/// `STA_UNSYNC` while no time daemon has disciplined the clock.
fn kernel_reports_synchronized() -> bool {
    // SAFETY: a zeroed `timex` with `modes = 0` only reads the kernel's state.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut timex) };
    state != -1 && state != libc::TIME_ERROR && timex.status & libc::STA_UNSYNC == 0
}

/// A clock that moves only when told to: for tests and simulations.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
    synchronized: AtomicBool,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self { now: Mutex::new(start), synchronized: AtomicBool::new(true) }
    }

    /// Moves the clock to `to`, forward or back, as an NTP step would.
    pub fn set(&self, to: Timestamp) {
        *self.now.lock().unwrap() = to;
    }

    /// Moves the clock forward (or back, with a negative span).
    pub fn advance(&self, by: jiff::SignedDuration) {
        let mut now = self.now.lock().unwrap();
        *now = now.checked_add(by).expect("simulated time stays within jiff's range");
    }

    pub fn set_synchronized(&self, synchronized: bool) {
        self.synchronized.store(synchronized, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap()
    }

    fn is_synchronized(&self) -> bool {
        self.synchronized.load(Ordering::SeqCst)
    }
}
