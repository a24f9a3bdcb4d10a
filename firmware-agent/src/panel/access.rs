//! Who may use the teacher's interface and the room's controls.
//!
//! # Design
//! The kiosk browser on the panel reaches the agent on loopback and is trusted:
//! whoever stands at the panel is in the classroom. From elsewhere on the LAN a
//! teacher signs in with the room's PIN (`panel.teacher_pin`) and gets a
//! sign-in cookie, good for [`SIGN_IN_LIFETIME`] (its wire name, `panel_session`,
//! is older than the word). Tablets' device tokens never grant this access:
//! they are checked by the tablets' own channel and mean nothing here.
//! Which routes need a teacher is decided in one place, `http/mod.rs`;
//! [`require_teacher`] is how.
//!
//! Guessing is rate-limited per client address: after [`MAX_FAILURES`] wrong
//! PINs within [`FAILURE_WINDOW`] that address is locked out for [`LOCKOUT`]; a
//! four-digit PIN then takes weeks to guess. [`PinGate`] is a state machine
//! with no I/O: [`SharedGate`] hands it the monotonic time of the agent's clock,
//! so a step of the wall clock neither ends a lockout nor a sign-in early.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;

use crate::clock::{Clock, Monotonic};
use crate::http::error::ApiError;

pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
pub const LOCKOUT: Duration = Duration::from_secs(300);
pub const SIGN_IN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The sign-in cookie's name on the wire.
pub const COOKIE: &str = "panel_session";

/// The result of a PIN attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Right PIN: a new sign-in token for the cookie.
    Granted(String),
    Wrong {
        tries_left: usize,
    },
    /// Too many wrong PINs from this address; try again after this long.
    LockedOut(Duration),
    /// No PIN is configured: the interface is reachable only on the panel itself.
    Disabled,
}

#[derive(Default)]
struct Client {
    failures: Vec<Monotonic>,
    locked_until: Option<Monotonic>,
}

/// PIN checks, lockouts and sign-ins.
#[derive(Default)]
pub struct PinGate {
    clients: HashMap<IpAddr, Client>,
    /// Each sign-in token and when it expires.
    sign_ins: HashMap<String, Monotonic>,
}

impl PinGate {
    /// Checks `pin` from `client` at `now` against the configured `expected` PIN.
    pub fn attempt(
        &mut self,
        client: IpAddr,
        pin: &str,
        expected: &str,
        now: Monotonic,
    ) -> Attempt {
        if expected.is_empty() {
            return Attempt::Disabled;
        }
        let entry = self.clients.entry(client).or_default();
        if let Some(until) = entry.locked_until {
            if now < until {
                return Attempt::LockedOut(until.saturating_since(now));
            }
            entry.locked_until = None;
            entry.failures.clear();
        }
        if constant_time_eq(pin.as_bytes(), expected.as_bytes()) {
            entry.failures.clear();
            let token = new_token();
            self.sign_ins.retain(|_, expires| *expires > now);
            self.sign_ins.insert(token.clone(), now + SIGN_IN_LIFETIME);
            return Attempt::Granted(token);
        }
        entry
            .failures
            .retain(|at| now.saturating_since(*at) < FAILURE_WINDOW);
        entry.failures.push(now);
        if entry.failures.len() >= MAX_FAILURES {
            entry.locked_until = Some(now + LOCKOUT);
            return Attempt::LockedOut(LOCKOUT);
        }
        Attempt::Wrong {
            tries_left: MAX_FAILURES - entry.failures.len(),
        }
    }

    /// Whether `token` is a sign-in still good at `now`.
    pub fn signed_in(&self, token: &str, now: Monotonic) -> bool {
        self.sign_ins
            .get(token)
            .is_some_and(|expires| *expires > now)
    }
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The room's [`PinGate`] and the clock it reads, shared by the sign-in route and [`require_teacher`].
#[derive(Clone)]
pub struct SharedGate {
    gate: Arc<Mutex<PinGate>>,
    clock: Arc<dyn Clock>,
}

impl SharedGate {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        SharedGate {
            gate: Arc::default(),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PinGate> {
        self.gate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks `pin` from `client`, now, against the configured `expected` PIN.
    pub fn attempt(&self, client: IpAddr, pin: &str, expected: &str) -> Attempt {
        let now = self.clock.monotonic();
        self.lock().attempt(client, pin, expected, now)
    }

    /// Whether the request comes from the panel itself or from a teacher signed in.
    fn admits(&self, parts: &Parts) -> bool {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        if peer.is_some_and(is_the_panel) {
            return true;
        }
        let now = self.clock.monotonic();
        sign_in_cookie(parts).is_some_and(|token| self.lock().signed_in(&token, now))
    }
}

/// Whether `peer` is the panel itself, on loopback. A server listening on
/// `[::]` sees an IPv4 client as an IPv4-mapped address (`::ffff:127.0.0.1`),
/// so the address is read in its canonical form first.
fn is_the_panel(peer: IpAddr) -> bool {
    peer.to_canonical().is_loopback()
}

/// Middleware for the routes that read or change the room: the panel itself
/// or a teacher signed in passes; anyone else gets 401 `teacher_pin_required`.
pub async fn require_teacher(
    State(gate): State<SharedGate>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    if !gate.admits(&parts) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "teacher_pin_required",
            "Cần mã PIN của giáo viên",
            "the teacher's PIN is required: sign in on the panel's page, or use the panel itself",
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

fn sign_in_cookie(parts: &Parts) -> Option<String> {
    let header = parts
        .headers
        .get(axum::http::header::COOKIE)?
        .to_str()
        .ok()?;
    header.split(';').find_map(|pair| {
        pair.trim()
            .strip_prefix(&format!("{COOKIE}="))
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_pins_lock_out_the_address_and_a_right_one_signs_in() {
        let mut gate = PinGate::default();
        let start = Monotonic::default();
        let guesser: IpAddr = "192.0.2.7".parse().unwrap();
        let teacher: IpAddr = "192.0.2.8".parse().unwrap();
        for n in 1..MAX_FAILURES {
            assert_eq!(
                gate.attempt(guesser, "0000", "4821", start),
                Attempt::Wrong {
                    tries_left: MAX_FAILURES - n
                }
            );
        }
        assert_eq!(
            gate.attempt(guesser, "0000", "4821", start),
            Attempt::LockedOut(LOCKOUT)
        );
        // Locked out: even the right PIN is refused until the lockout ends.
        assert!(matches!(
            gate.attempt(guesser, "4821", "4821", start + Duration::from_secs(10)),
            Attempt::LockedOut(_)
        ));
        // Another address is not affected.
        let Attempt::Granted(token) = gate.attempt(teacher, "4821", "4821", start) else {
            panic!()
        };
        assert!(gate.signed_in(&token, start + Duration::from_secs(3600)));
        assert!(!gate.signed_in(&token, start + SIGN_IN_LIFETIME + Duration::from_secs(1)));
        assert!(!gate.signed_in("forged", start));
        // After the lockout the guesser may try again.
        assert!(matches!(
            gate.attempt(
                guesser,
                "4821",
                "4821",
                start + LOCKOUT + Duration::from_secs(1)
            ),
            Attempt::Granted(_)
        ));
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let mut gate = PinGate::default();
        let start = Monotonic::default();
        let client: IpAddr = "192.0.2.9".parse().unwrap();
        for n in 0..(MAX_FAILURES - 1) {
            gate.attempt(
                client,
                "1111",
                "4821",
                start + Duration::from_secs(n as u64),
            );
        }
        let later = start + FAILURE_WINDOW + Duration::from_secs(60);
        assert_eq!(
            gate.attempt(client, "1111", "4821", later),
            Attempt::Wrong {
                tries_left: MAX_FAILURES - 1
            }
        );
    }

    fn admitted(peer: &str) -> bool {
        let peer: SocketAddr = peer.parse().unwrap();
        let request = axum::http::Request::builder()
            .extension(ConnectInfo(peer))
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        SharedGate::new(Arc::new(crate::clock::ManualClock::new(
            jiff::Timestamp::UNIX_EPOCH,
        )))
        .admits(&parts)
    }

    #[test]
    fn loopback_is_the_panel_in_every_form_a_dual_stack_server_sees() {
        for panel in [
            "127.0.0.1:50000",
            "[::1]:50000",
            "[::ffff:127.0.0.1]:50000",
            "[::ffff:127.0.0.9]:50000",
        ] {
            assert!(admitted(panel), "{panel} is the panel");
        }
        for stranger in [
            "192.0.2.7:50000",
            "[::ffff:192.0.2.7]:50000",
            "[2001:db8::7]:50000",
            "[::]:50000",
        ] {
            assert!(!admitted(stranger), "{stranger} needs the PIN");
        }
    }

    #[test]
    fn a_sign_in_lasts_its_lifetime_on_the_clock_it_is_handed() {
        let clock = Arc::new(crate::clock::ManualClock::new(jiff::Timestamp::UNIX_EPOCH));
        let gate = SharedGate::new(clock.clone());
        let teacher: IpAddr = "192.0.2.8".parse().unwrap();
        let Attempt::Granted(token) = gate.attempt(teacher, "4821", "4821") else {
            panic!()
        };
        let request = axum::http::Request::builder()
            .extension(ConnectInfo(SocketAddr::new(teacher, 50000)))
            .header(
                axum::http::header::COOKIE,
                format!("theme=dark; {COOKIE}={token}"),
            )
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        assert!(gate.admits(&parts), "signed in");
        clock.advance(SIGN_IN_LIFETIME - Duration::from_secs(1));
        assert!(
            gate.admits(&parts),
            "still signed in a second before the end"
        );
        clock.advance(Duration::from_secs(2));
        assert!(!gate.admits(&parts), "signed out once the lifetime passed");
    }

    #[test]
    fn no_configured_pin_means_the_panel_only() {
        let mut gate = PinGate::default();
        assert_eq!(
            gate.attempt("192.0.2.1".parse().unwrap(), "", "", Monotonic::default()),
            Attempt::Disabled
        );
    }
}
