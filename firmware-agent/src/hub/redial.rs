//! When the room dials the hub, without I/O: dial now, wait until a deadline,
//! or keep the link it has; and what to say of the link in health.
//!
//! # Design
//! - **Three phases.** The dialler is dialling (a connection and its TLS
//!   handshake under way), linked (the hub drives `SyncService` over the link
//!   until it ends) or waiting until a deadline after a failure. The loop in
//!   [`super::dial_out`] asks [`Redial::step`], does what it says, and reports
//!   what happened ([`Redial::linked`], [`Redial::failed`],
//!   [`Redial::link_ended`], [`Redial::handle_timeout`]).
//! - **Exponential back-off, capped, with full jitter.** After the n-th failure
//!   in a row the wait is drawn uniformly from zero to
//!   `min(MAX_WAIT, FIRST_WAIT × 2ⁿ⁻¹)`. Hundreds of rooms that lost the hub
//!   at the same moment (the hub restarted) then come back spread over the
//!   window rather than all at once, and a hub down for hours costs a room one
//!   attempt a minute at most. The random draw is handed in, so the machine is
//!   deterministic under test.
//! - **A link that lasted resets the back-off.** A link that stayed up for
//!   [`LASTED`] was a working link: when it ends the count of failures starts
//!   again, and the room redials within [`FIRST_WAIT`]. A link that ended
//!   sooner (a hub that accepts and drops at once) counts as one more failure,
//!   so a room never hammers a hub that keeps hanging up.
//! - **Health says since when and why.** The machine keeps when the link came
//!   up, or since when it has been failing and the last cause, for `/healthz`.

use std::time::Duration;

use crate::clock::Monotonic;

/// The longest first wait after a failure.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between two attempts, however many failed.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long a link must have stayed up for its end to reset the back-off.
pub const LASTED: Duration = Duration::from_secs(30);

/// Why a dial, or a link, failed: what `/healthz` and the metrics name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// No TCP connection: the name does not resolve, the address does not
    /// answer or refuses, or the connection timed out.
    Unreachable,
    /// The TLS handshake failed on the hub's side or on the wire: the hub
    /// refused the room's certificate, or it does not speak TLS.
    TlsRefused,
    /// The hub's certificate is not one the room trusts (another CA, another
    /// name, expired).
    Certificate,
    /// A link that was up ended before it lasted.
    LinkLost,
}

impl Cause {
    /// The cause's name, as the metrics' `cause` label and `/healthz` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Unreachable => "unreachable",
            Cause::TlsRefused => "tls_refused",
            Cause::Certificate => "certificate",
            Cause::LinkLost => "link_lost",
        }
    }
}

/// A failure: its cause and what the system said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub cause: Cause,
    pub detail: String,
}

impl Failure {
    pub fn new(cause: Cause, detail: impl Into<String>) -> Failure {
        Failure {
            cause,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.cause.name(), self.detail)
    }
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Open a connection to the hub, and report [`Redial::linked`] or [`Redial::failed`].
    Dial,
    /// Serve the hub over the link until it ends, then report [`Redial::link_ended`].
    Serve,
    /// Sleep until the deadline, then report [`Redial::handle_timeout`].
    WaitUntil(Monotonic),
}

/// The link as health shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// The first dial is under way.
    Dialling,
    /// Linked since this instant.
    Linked { since: Monotonic },
    /// Failing since this instant, `failures` times in a row, last for `last`;
    /// the next attempt is at `retry_at` (`None` while it is under way).
    Failing {
        since: Monotonic,
        failures: u32,
        last: Failure,
        retry_at: Option<Monotonic>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Dialling,
    Linked { since: Monotonic },
    Waiting { until: Monotonic },
}

/// The dialler's state.
#[derive(Debug, Clone)]
pub struct Redial {
    phase: Phase,
    /// Failures since the last link that lasted.
    failures: u32,
    /// Since when the room has had no working link, and why, while failing.
    failing: Option<(Monotonic, Failure)>,
}

impl Default for Redial {
    fn default() -> Self {
        Self::new()
    }
}

impl Redial {
    /// A dialler about to dial for the first time.
    pub fn new() -> Redial {
        Redial {
            phase: Phase::Dialling,
            failures: 0,
            failing: None,
        }
    }

    pub fn step(&self) -> Step {
        match self.phase {
            Phase::Dialling => Step::Dial,
            Phase::Linked { .. } => Step::Serve,
            Phase::Waiting { until } => Step::WaitUntil(until),
        }
    }

    /// When the loop must next be woken: only while waiting.
    pub fn next_deadline(&self) -> Option<Monotonic> {
        match self.phase {
            Phase::Waiting { until } => Some(until),
            _ => None,
        }
    }

    /// The connection and its handshake succeeded at `now`.
    pub fn linked(&mut self, now: Monotonic) {
        self.phase = Phase::Linked { since: now };
    }

    /// The dial failed at `now`; `draw` is uniform in `[0, 1)`. Returns when to dial again.
    pub fn failed(&mut self, now: Monotonic, failure: Failure, draw: f64) -> Monotonic {
        self.failures = self.failures.saturating_add(1);
        let since = self.failing.as_ref().map_or(now, |(since, _)| *since);
        self.failing = Some((since, failure));
        let until = now + jittered(ceiling(self.failures), draw);
        self.phase = Phase::Waiting { until };
        until
    }

    /// The link ended at `now`, for `why`; `draw` is uniform in `[0, 1)`.
    /// Returns when to dial again.
    pub fn link_ended(&mut self, now: Monotonic, why: Failure, draw: f64) -> Monotonic {
        let since = match self.phase {
            Phase::Linked { since } => since,
            _ => now,
        };
        if now.saturating_since(since) >= LASTED {
            self.failures = 0;
            self.failing = None;
        }
        self.failed(now, why, draw)
    }

    /// The wait's deadline may have come.
    pub fn handle_timeout(&mut self, now: Monotonic) {
        if let Phase::Waiting { until } = self.phase
            && now >= until
        {
            self.phase = Phase::Dialling;
        }
    }

    /// The link as health shows it.
    pub fn state(&self) -> LinkState {
        match (&self.phase, &self.failing) {
            (Phase::Linked { since }, _) => LinkState::Linked { since: *since },
            (phase, Some((since, last))) => LinkState::Failing {
                since: *since,
                failures: self.failures,
                last: last.clone(),
                retry_at: match phase {
                    Phase::Waiting { until } => Some(*until),
                    _ => None,
                },
            },
            (_, None) => LinkState::Dialling,
        }
    }
}

/// The back-off's ceiling after `failures` failures in a row (at least one).
fn ceiling(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_WAIT.saturating_mul(1 << doublings).min(MAX_WAIT)
}

/// A wait drawn uniformly below `ceiling` ("full jitter").
fn jittered(ceiling: Duration, draw: f64) -> Duration {
    ceiling.mul_f64(draw.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: f64) -> Monotonic {
        Monotonic::default() + Duration::from_secs_f64(seconds)
    }

    fn unreachable() -> Failure {
        Failure::new(Cause::Unreachable, "connection refused")
    }

    #[test]
    fn it_dials_at_once_then_serves_the_link_it_got() {
        let mut redial = Redial::new();
        assert_eq!(redial.step(), Step::Dial);
        assert_eq!(redial.state(), LinkState::Dialling);
        redial.linked(at(0.2));
        assert_eq!(redial.step(), Step::Serve);
        assert_eq!(redial.next_deadline(), None);
        assert_eq!(redial.state(), LinkState::Linked { since: at(0.2) });
    }

    #[test]
    fn waits_double_up_to_the_cap_and_the_draw_spreads_them_from_zero() {
        let mut redial = Redial::new();
        let mut now = at(0.0);
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            // The highest draw shows the ceiling; the lowest, that the wait may be none at all.
            let until = redial.failed(now, unreachable(), 0.999_999);
            ceilings.push(until.saturating_since(now).as_secs_f64().round() as u64);
            assert_eq!(redial.step(), Step::WaitUntil(until));
            redial.handle_timeout(until);
            assert_eq!(redial.step(), Step::Dial);
            now = until;
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(redial.failed(now, unreachable(), 0.0), now);
        assert_eq!(
            redial.failed(now, unreachable(), 0.5).saturating_since(now),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn it_does_not_dial_before_the_deadline() {
        let mut redial = Redial::new();
        let until = redial.failed(at(1.0), unreachable(), 0.5);
        assert_eq!(until, at(1.5));
        redial.handle_timeout(at(1.4));
        assert_eq!(redial.step(), Step::WaitUntil(at(1.5)));
        assert_eq!(redial.next_deadline(), Some(at(1.5)));
        redial.handle_timeout(at(1.5));
        assert_eq!(redial.step(), Step::Dial);
    }

    #[test]
    fn a_link_that_lasted_resets_the_back_off_and_a_short_one_counts_as_a_failure() {
        let mut redial = Redial::new();
        let mut now = at(0.0);
        for _ in 0..6 {
            now = redial.failed(now, unreachable(), 0.999_999);
            redial.handle_timeout(now);
        }
        // Linked, and dropped at once: one more failure, the ceiling still grows.
        redial.linked(now);
        let lost = Failure::new(Cause::LinkLost, "the hub closed the link");
        let until = redial.link_ended(now + Duration::from_secs(1), lost.clone(), 0.999_999);
        assert_eq!(
            until
                .saturating_since(now + Duration::from_secs(1))
                .as_secs(),
            59
        );
        redial.handle_timeout(until);
        // Linked for longer than LASTED: the next wait is the first one again.
        redial.linked(until);
        let ended = until + LASTED;
        let next = redial.link_ended(ended, lost, 0.999_999);
        assert!(next.saturating_since(ended) < FIRST_WAIT);
        let LinkState::Failing {
            since, failures, ..
        } = redial.state()
        else {
            panic!("failing after the link ended: {:?}", redial.state())
        };
        assert_eq!((since, failures), (ended, 1));
    }

    #[test]
    fn health_keeps_since_when_it_fails_and_the_latest_cause() {
        let mut redial = Redial::new();
        let first = redial.failed(at(10.0), unreachable(), 0.5);
        redial.handle_timeout(first);
        let certificate = Failure::new(Cause::Certificate, "UnknownIssuer");
        let retry = redial.failed(first, certificate.clone(), 0.5);
        assert_eq!(
            redial.state(),
            LinkState::Failing {
                since: at(10.0),
                failures: 2,
                last: certificate.clone(),
                retry_at: Some(retry),
            }
        );
        redial.handle_timeout(retry);
        let LinkState::Failing { retry_at, .. } = redial.state() else {
            panic!("still failing while it dials again")
        };
        assert_eq!(retry_at, None, "dialling now");
        redial.linked(retry);
        assert_eq!(redial.state(), LinkState::Linked { since: retry });
    }
}
