//! Time, as a value the code is handed rather than a global it reads.
//!
//! # Design
//! A clock gives two kinds of time, as Moonfire NVR's `Clocks` does:
//! - **wall time** ([`Clock::now`]): what the records say and what the timetable
//!   is written in. It can step, forward or back, when NTP corrects it.
//! - **monotonic time** ([`Clock::monotonic`]): what timeouts, retries and
//!   "how long since" are measured in. It never steps and never goes back.
//!
//! and the one way to wait: [`Clock::sleep_until`] a monotonic deadline. Every
//! loop takes its time and its sleeps from the `Arc<dyn Clock>` it is handed;
//! nothing reads the system clock behind its back. Production uses
//! [`SystemClock`]. Tests and simulations use [`ManualClock`], which moves only
//! when told: moving it wakes every sleeper whose deadline it passed, at once,
//! so a school day runs in milliseconds and a clock stepped back by NTP is a
//! one-line test. How each part copes with a stepped wall clock is written in
//! `DESIGN.md` ("Time"); running the whole daemon on simulated time, in
//! [`simulated`].

pub mod simulated;

pub mod text;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use jiff::Timestamp;

/// A point on a clock's monotonic line: the time since that clock began.
/// Only comparable with points from the same clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Monotonic(Duration);

impl Monotonic {
    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Monotonic) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Add<Duration> for Monotonic {
    type Output = Monotonic;
    fn add(self, span: Duration) -> Monotonic {
        Monotonic(self.0.saturating_add(span))
    }
}

/// What [`Clock::sleep_until`] returns: a future that completes at the deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of the current time, of whether it can be trusted, and of sleeps.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;
    /// Whether the system clock is disciplined by NTP (or similar) right now.
    fn is_synchronized(&self) -> bool;
    /// The current monotonic time.
    fn monotonic(&self) -> Monotonic;
    /// Completes once [`Clock::monotonic`] has reached `deadline` (at once if
    /// it already has). Cancel-safe: dropping it only stops the wait.
    fn sleep_until(&self, deadline: Monotonic) -> Sleep;
}

impl dyn Clock {
    /// Completes once `span` of monotonic time has passed.
    pub fn sleep(&self, span: Duration) -> Sleep {
        self.sleep_until(self.monotonic() + span)
    }

    /// The monotonic time `span` from now.
    pub fn deadline_in(&self, span: Duration) -> Monotonic {
        self.monotonic() + span
    }

    /// The monotonic deadline at which the wall clock will read `at` if it does
    /// not step, but no later than `at_most` from now: a loop waiting for a
    /// wall-clock instant wakes at least that often, so it notices a step.
    pub fn deadline_toward(&self, at: Timestamp, at_most: Duration) -> Monotonic {
        let until = Duration::try_from(self.now().duration_until(at)).unwrap_or(Duration::ZERO);
        self.deadline_in(until.min(at_most))
    }
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// The origin of [`SystemClock`]'s monotonic line: the first time it is read.
fn process_origin() -> tokio::time::Instant {
    static ORIGIN: OnceLock<tokio::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(tokio::time::Instant::now)
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn is_synchronized(&self) -> bool {
        kernel_reports_synchronized()
    }

    fn monotonic(&self) -> Monotonic {
        Monotonic(process_origin().elapsed())
    }

    fn sleep_until(&self, deadline: Monotonic) -> Sleep {
        Box::pin(tokio::time::sleep_until(process_origin() + deadline.0))
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
    wall: Mutex<Timestamp>,
    /// The monotonic time; sleepers watch it.
    monotonic: tokio::sync::watch::Sender<Duration>,
    synchronized: AtomicBool,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            wall: Mutex::new(start),
            monotonic: tokio::sync::watch::Sender::new(Duration::ZERO),
            synchronized: AtomicBool::new(true),
        }
    }

    /// Steps the wall clock to `to`, forward or back, as an NTP step would.
    /// Monotonic time does not move, so no sleeper wakes.
    pub fn set(&self, to: Timestamp) {
        *self.wall.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }

    /// Lets `by` pass: both times move forward and every sleeper whose
    /// deadline is now reached wakes.
    pub fn advance(&self, by: Duration) {
        {
            let mut wall = self.wall.lock().unwrap_or_else(|e| e.into_inner());
            *wall = wall
                .checked_add(by)
                .expect("simulated time stays within jiff's range");
        }
        self.monotonic
            .send_modify(|monotonic| *monotonic = monotonic.saturating_add(by));
    }

    /// Lets time pass until the wall clock reads `to`; a `to` in the past
    /// changes nothing.
    pub fn advance_to(&self, to: Timestamp) {
        let span = to.duration_since(self.now());
        if let Ok(span) = Duration::try_from(span) {
            self.advance(span);
        }
    }

    pub fn set_synchronized(&self, synchronized: bool) {
        self.synchronized.store(synchronized, Ordering::SeqCst);
    }

    /// How many sleeps wait on this clock now, so that a test moves it only
    /// once the loops it drives have gone to sleep.
    pub fn sleepers(&self) -> usize {
        self.monotonic.receiver_count()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.wall.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_synchronized(&self) -> bool {
        self.synchronized.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Monotonic {
        Monotonic(*self.monotonic.borrow())
    }

    fn sleep_until(&self, deadline: Monotonic) -> Sleep {
        let mut moves = self.monotonic.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, nobody
            // can move time any more and the sleep never ends, as in real life.
            if moves.wait_for(|now| *now >= deadline.0).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Timestamp {
        "2026-09-07T00:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn a_manual_sleeper_wakes_exactly_when_time_passes_its_deadline() {
        let clock: std::sync::Arc<ManualClock> = std::sync::Arc::new(ManualClock::new(start()));
        let dyn_clock: std::sync::Arc<dyn Clock> = clock.clone();
        let mut sleep = dyn_clock.sleep(Duration::from_secs(60));
        let poll = |sleep: &mut Sleep| {
            let waker = std::task::Waker::noop();
            sleep
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
                .is_ready()
        };
        assert!(!poll(&mut sleep));
        clock.advance(Duration::from_secs(59));
        assert!(!poll(&mut sleep), "one second short");
        clock.set("2026-09-08T00:00:00Z".parse().unwrap());
        assert!(!poll(&mut sleep), "a wall-clock step wakes no sleeper");
        clock.advance(Duration::from_secs(1));
        assert!(poll(&mut sleep));
        assert_eq!(
            clock.now(),
            "2026-09-08T00:00:01Z".parse().unwrap(),
            "the step, then one more second"
        );
        assert_eq!(clock.monotonic(), Monotonic(Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn advancing_to_a_time_in_the_past_changes_nothing() {
        let clock = ManualClock::new(start());
        clock.advance_to("2026-09-06T00:00:00Z".parse().unwrap());
        assert_eq!(
            (clock.now(), clock.monotonic()),
            (start(), Monotonic::default())
        );
        clock.advance_to("2026-09-07T00:00:05Z".parse().unwrap());
        assert_eq!(clock.monotonic(), Monotonic(Duration::from_secs(5)));
    }
}
