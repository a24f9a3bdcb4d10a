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
//! Guessing is limited twice. Per client address: after [`MAX_FAILURES`] wrong
//! PINs within [`FAILURE_WINDOW`] that address is locked out for [`LOCKOUT`].
//! Across every address, since a pupil's phone can take a new address at will:
//! after [`ROOM_MAX_FAILURES`] wrong PINs within [`ROOM_FAILURE_WINDOW`], from
//! however many addresses, signing in from the LAN is locked for everyone,
//! for [`FIRST_ROOM_LOCKOUT`] and twice as long at each further trip, up to
//! [`LONGEST_ROOM_LOCKOUT`]; the doubling starts again only after
//! [`ROOM_QUIET`] without a wrong PIN. A guesser so gets about ten tries an hour: a year's guessing
//! covers under a tenth of the six-digit PINs (the shortest allowed by
//! default, `panel.teacher_pin_min_digits`). The panel itself never needs
//! the PIN, so a lockout never keeps the teacher from the room; it shows on
//! the panel and in /healthz (subsystem `teacher_sign_in`) until a teacher
//! signs in again.
//!
//! [`PinGate`] is a state machine with no I/O: [`SharedGate`] hands it the
//! monotonic time of the agent's clock, so a step of the wall clock neither
//! ends a lockout nor a sign-in early.

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
use crate::health::{self, Health};
use crate::http::error::ApiError;

pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
pub const LOCKOUT: Duration = Duration::from_secs(300);
pub const ROOM_MAX_FAILURES: usize = 10;
pub const ROOM_FAILURE_WINDOW: Duration = Duration::from_secs(3600);
pub const FIRST_ROOM_LOCKOUT: Duration = Duration::from_secs(60);
pub const LONGEST_ROOM_LOCKOUT: Duration = Duration::from_secs(3600);
/// How long the room must go without a wrong PIN, after its last lockout ends,
/// before lockouts start short again.
pub const ROOM_QUIET: Duration = Duration::from_secs(24 * 3600);
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
    /// Too many wrong PINs; try again after this long.
    LockedOut {
        wait: Duration,
        scope: Lockout,
    },
    /// No PIN is configured: the interface is reachable only on the panel itself.
    Disabled,
}

/// Whom a lockout keeps out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// The address that sent too many wrong PINs.
    Address,
    /// Every address: too many wrong PINs came from the LAN as a whole.
    Room,
}

#[derive(Default)]
struct Client {
    failures: Vec<Monotonic>,
    locked_until: Option<Monotonic>,
}

/// Wrong PINs from every address, and the room-wide lockout they cause.
#[derive(Default)]
struct RoomFailures {
    /// Each wrong PIN within [`ROOM_FAILURE_WINDOW`], with its address.
    failures: Vec<(Monotonic, IpAddr)>,
    locked_until: Option<Monotonic>,
    /// Lockouts since the last quiet spell, each twice the one before.
    lockouts: u32,
    last_failure: Option<Monotonic>,
}

/// What the room's lockout is to be shown as: how many wrong PINs from how
/// many addresses tripped it, and how long its latest trip lasts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Guessing {
    pub wrong_pins: usize,
    pub addresses: std::collections::HashSet<IpAddr>,
    pub locked_for: Duration,
}

impl std::fmt::Display for Guessing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let locked_for = crate::clock::text::human(
            jiff::SignedDuration::try_from(self.locked_for).unwrap_or(jiff::SignedDuration::MAX),
        );
        write!(
            f,
            "Có người đang dò mã PIN: {} lần sai từ {} địa chỉ; đăng nhập từ xa bị khoá {} (someone is guessing the teacher's PIN: \
             {} wrong PINs from {} addresses; signing in from the LAN is locked for {}; the panel itself still works; \
             if the PIN may be known, change panel.teacher_pin)",
            self.wrong_pins,
            self.addresses.len(),
            locked_for,
            self.wrong_pins,
            self.addresses.len(),
            locked_for,
        )
    }
}

/// PIN checks, lockouts and sign-ins.
#[derive(Default)]
pub struct PinGate {
    clients: HashMap<IpAddr, Client>,
    room: RoomFailures,
    /// Set when the room's lockout trips, until a teacher signs in.
    guessing: Option<Guessing>,
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
        if let Some(until) = self.room.locked_until.filter(|until| now < *until) {
            return Attempt::LockedOut {
                wait: until.saturating_since(now),
                scope: Lockout::Room,
            };
        }
        let entry = self.clients.entry(client).or_default();
        if let Some(until) = entry.locked_until {
            if now < until {
                return Attempt::LockedOut {
                    wait: until.saturating_since(now),
                    scope: Lockout::Address,
                };
            }
            entry.locked_until = None;
            entry.failures.clear();
        }
        if constant_time_eq(pin.as_bytes(), expected.as_bytes()) {
            entry.failures.clear();
            self.guessing = None;
            let token = new_token();
            self.sign_ins.retain(|_, expires| *expires > now);
            self.sign_ins.insert(token.clone(), now + SIGN_IN_LIFETIME);
            return Attempt::Granted(token);
        }
        entry
            .failures
            .retain(|at| now.saturating_since(*at) < FAILURE_WINDOW);
        entry.failures.push(now);
        let address_left = MAX_FAILURES.saturating_sub(entry.failures.len());
        if address_left == 0 {
            entry.locked_until = Some(now + LOCKOUT);
        }
        let room_left = self.room_failure(client, now);
        if room_left == 0 {
            let locked_for = self.lock_the_room(now);
            return Attempt::LockedOut {
                wait: locked_for,
                scope: Lockout::Room,
            };
        }
        if address_left == 0 {
            return Attempt::LockedOut {
                wait: LOCKOUT,
                scope: Lockout::Address,
            };
        }
        Attempt::Wrong {
            tries_left: address_left.min(room_left),
        }
    }

    /// Counts a wrong PIN from `client` against the room; the tries the room has left.
    fn room_failure(&mut self, client: IpAddr, now: Monotonic) -> usize {
        let room = &mut self.room;
        let quiet_since = room.last_failure.max(room.locked_until);
        if quiet_since.is_some_and(|since| now.saturating_since(since) >= ROOM_QUIET) {
            room.lockouts = 0;
        }
        room.last_failure = Some(now);
        room.failures
            .retain(|(at, _)| now.saturating_since(*at) < ROOM_FAILURE_WINDOW);
        room.failures.push((now, client));
        ROOM_MAX_FAILURES.saturating_sub(room.failures.len())
    }

    /// Locks signing in for every address, each time twice as long; how long.
    fn lock_the_room(&mut self, now: Monotonic) -> Duration {
        let room = &mut self.room;
        let locked_for = FIRST_ROOM_LOCKOUT
            .saturating_mul(1 << room.lockouts.min(16))
            .min(LONGEST_ROOM_LOCKOUT);
        room.lockouts += 1;
        room.locked_until = Some(now + locked_for);
        let guessing = self.guessing.get_or_insert_default();
        guessing.wrong_pins += room.failures.len();
        guessing
            .addresses
            .extend(room.failures.drain(..).map(|(_, address)| address));
        guessing.locked_for = locked_for;
        locked_for
    }

    /// The room's lockout as the panel is to show it, from its first trip
    /// until a teacher signs in.
    pub fn guessing(&self) -> Option<&Guessing> {
        self.guessing.as_ref()
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

/// The health subsystem that shows the room's PIN lockout.
const SUBSYSTEM: &str = "teacher_sign_in";

/// The room's [`PinGate`] and the clock it reads, shared by the sign-in route
/// and [`require_teacher`]; it shows the room's lockout in `health`.
#[derive(Clone)]
pub struct SharedGate {
    gate: Arc<Mutex<PinGate>>,
    clock: Arc<dyn Clock>,
    health: Health,
}

impl SharedGate {
    pub fn new(clock: Arc<dyn Clock>, health: Health) -> Self {
        SharedGate {
            gate: Arc::default(),
            clock,
            health,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PinGate> {
        self.gate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks `pin` from `client`, now, against the configured `expected` PIN;
    /// shows the room's lockout when it trips, and its end when a teacher signs in.
    pub fn attempt(&self, client: IpAddr, pin: &str, expected: &str) -> Attempt {
        let now = self.clock.monotonic();
        let mut gate = self.lock();
        let was_guessing = gate.guessing().is_some();
        let attempt = gate.attempt(client, pin, expected, now);
        match gate.guessing() {
            Some(guessing)
                if matches!(
                    attempt,
                    Attempt::LockedOut {
                        scope: Lockout::Room,
                        ..
                    }
                ) =>
            {
                self.health
                    .set(SUBSYSTEM, health::State::Degraded, guessing.to_string());
            }
            None if was_guessing => self.health.set(
                SUBSYSTEM,
                health::State::Ok,
                "a teacher signed in after the lockout",
            ),
            _ => {}
        }
        attempt
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
            Attempt::LockedOut {
                wait: LOCKOUT,
                scope: Lockout::Address
            }
        );
        // Locked out: even the right PIN is refused until the lockout ends.
        assert!(matches!(
            gate.attempt(guesser, "4821", "4821", start + Duration::from_secs(10)),
            Attempt::LockedOut {
                scope: Lockout::Address,
                ..
            }
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
        let clock: Arc<dyn Clock> =
            Arc::new(crate::clock::ManualClock::new(jiff::Timestamp::UNIX_EPOCH));
        SharedGate::new(clock.clone(), Health::new(clock)).admits(&parts)
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
        let gate = SharedGate::new(clock.clone(), Health::new(clock.clone()));
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

    /// A guesser who takes a new address before each address's lockout.
    fn guess_from_new_addresses(
        gate: &mut PinGate,
        first: u32,
        count: u32,
        at: Monotonic,
    ) -> Vec<Attempt> {
        (first..first + count)
            .map(|n| {
                let address = IpAddr::from([10, 0, (n / 250) as u8, (n % 250) as u8 + 1]);
                gate.attempt(address, &format!("{n:06}"), "482193", at)
            })
            .collect()
    }

    #[test]
    fn wrong_pins_from_many_addresses_lock_the_room_for_ever_longer() {
        let mut gate = PinGate::default();
        let start = Monotonic::default();
        let tries = guess_from_new_addresses(&mut gate, 0, ROOM_MAX_FAILURES as u32, start);
        assert_eq!(
            tries[0],
            Attempt::Wrong {
                tries_left: MAX_FAILURES - 1
            }
        );
        assert_eq!(
            tries[ROOM_MAX_FAILURES - 2],
            Attempt::Wrong { tries_left: 1 },
            "the room's last try"
        );
        assert_eq!(
            tries[ROOM_MAX_FAILURES - 1],
            Attempt::LockedOut {
                wait: FIRST_ROOM_LOCKOUT,
                scope: Lockout::Room
            }
        );
        let guessing = gate.guessing().expect("shown on the panel").clone();
        assert_eq!(
            (guessing.wrong_pins, guessing.addresses.len()),
            (ROOM_MAX_FAILURES, ROOM_MAX_FAILURES)
        );

        // While the room is locked, the right PIN from a fresh address is refused too.
        let teacher: IpAddr = "192.0.2.200".parse().unwrap();
        assert!(matches!(
            gate.attempt(teacher, "482193", "482193", start + Duration::from_secs(59)),
            Attempt::LockedOut {
                scope: Lockout::Room,
                ..
            }
        ));

        // Each further trip locks twice as long, up to the longest.
        let mut at = start + FIRST_ROOM_LOCKOUT;
        let mut expected = FIRST_ROOM_LOCKOUT;
        for trip in 1..10u32 {
            expected = (expected * 2).min(LONGEST_ROOM_LOCKOUT);
            let tries =
                guess_from_new_addresses(&mut gate, trip * 100, ROOM_MAX_FAILURES as u32, at);
            assert_eq!(
                tries.last(),
                Some(&Attempt::LockedOut {
                    wait: expected,
                    scope: Lockout::Room
                }),
                "trip {trip}"
            );
            at = at + expected;
        }
        assert_eq!(expected, LONGEST_ROOM_LOCKOUT);
        assert_eq!(gate.guessing().unwrap().wrong_pins, 10 * ROOM_MAX_FAILURES);

        // A teacher who signs in once the lockout is over ends the alert; after
        // a quiet day the next lockout is short again, not before.
        assert!(matches!(
            gate.attempt(teacher, "482193", "482193", at),
            Attempt::Granted(_)
        ));
        assert_eq!(gate.guessing(), None);
        let tries = guess_from_new_addresses(
            &mut gate,
            4000,
            ROOM_MAX_FAILURES as u32,
            at + (ROOM_QUIET - Duration::from_secs(1)),
        );
        assert_eq!(
            tries.last(),
            Some(&Attempt::LockedOut {
                wait: LONGEST_ROOM_LOCKOUT,
                scope: Lockout::Room
            })
        );
        let quiet = at + (ROOM_QUIET - Duration::from_secs(1)) + LONGEST_ROOM_LOCKOUT + ROOM_QUIET;
        let tries = guess_from_new_addresses(&mut gate, 5000, ROOM_MAX_FAILURES as u32, quiet);
        assert_eq!(
            tries.last(),
            Some(&Attempt::LockedOut {
                wait: FIRST_ROOM_LOCKOUT,
                scope: Lockout::Room
            })
        );
    }

    #[test]
    fn a_room_lockout_shows_in_health_until_a_teacher_signs_in() {
        let clock = Arc::new(crate::clock::ManualClock::new(jiff::Timestamp::UNIX_EPOCH));
        let health = Health::new(clock.clone());
        let gate = SharedGate::new(clock.clone(), health.clone());
        for n in 0..ROOM_MAX_FAILURES as u8 {
            gate.attempt(IpAddr::from([10, 0, 0, n + 1]), "000000", "482193");
        }
        let shown = health.snapshot()[SUBSYSTEM].clone();
        assert_eq!(shown.state, health::State::Degraded, "{shown:?}");
        let detail = &shown.detail;
        assert!(
            detail.starts_with("Có người đang dò mã PIN: 10 lần sai từ 10 địa chỉ"),
            "{detail}"
        );
        assert!(detail.contains("panel.teacher_pin"), "{detail}");
        clock.advance(FIRST_ROOM_LOCKOUT);
        assert!(matches!(
            gate.attempt(IpAddr::from([192, 0, 2, 8]), "482193", "482193"),
            Attempt::Granted(_)
        ));
        assert_eq!(health.snapshot()[SUBSYSTEM].state, health::State::Ok);
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
