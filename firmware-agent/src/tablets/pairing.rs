//! The pairing window: which codes a tablet may pair with, right now.
//!
//! # Design
//! A pure state machine: it is handed the time and a freshly drawn code, and
//! does no I/O. The teacher opens a window; the panel shows its 6-digit code
//! for `window` (a few minutes, long enough for a whole class of 40 to type
//! it). Any number of tablets may pair inside one window. Wrong codes are the
//! only way to attack it, and one device must not be able to lock the class
//! out by sending them, so:
//! - after its n-th wrong code, an address must wait `retry_delay` × 2ⁿ⁻¹
//!   before its next try; after [`WRONG_CODES_PER_ADDRESS`] it may not try
//!   again in this window. Tries it makes meanwhile are refused unchecked and
//!   do not count against the window: a flood from one address locks out
//!   only that address;
//! - after `max_wrong_codes` checked wrong codes in one window, which takes
//!   several addresses, the window locks and only a new window (with a new
//!   code) lets tablets pair again. With 6 digits and 10 checked tries the
//!   chance of guessing is 1 in 100,000 per window.
//!
//! The teacher sees both: the window's view counts the addresses locked out
//! and the tries refused, and says when the window is locked.

use std::collections::HashMap;
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};

/// Wrong codes after which an address may not try again in the same window.
pub const WRONG_CODES_PER_ADDRESS: u32 = 3;

/// How the window behaves; from `[tablets]` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairingRules {
    pub window: SignedDuration,
    pub max_wrong_codes: u32,
    pub retry_delay: SignedDuration,
}

/// One open window, as the panel shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WindowView {
    pub code: String,
    pub expires_at: Timestamp,
    pub paired: u32,
    pub wrong_codes: u32,
    pub locked: bool,
    /// Addresses that may not try again in this window.
    pub locked_out_addresses: u32,
    /// Tries refused unchecked: too soon after a wrong code, or from an address locked out.
    pub refused_tries: u32,
}

/// The answer to one pairing attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The code is right: the caller issues a token.
    Accepted,
    WrongCode {
        tries_left: u32,
    },
    /// Too soon after this address's last wrong code.
    TooSoon {
        retry_after: SignedDuration,
    },
    /// This address made too many wrong codes; it may try again in a new window.
    AddressLockedOut,
    /// Too many wrong codes: the teacher must open a new window.
    Locked,
    /// No window is open, or it expired.
    Closed,
}

#[derive(Debug)]
struct Window {
    code: String,
    expires_at: Timestamp,
    paired: u32,
    wrong_codes: u32,
    refused_tries: u32,
    wrong_by: HashMap<IpAddr, Misses>,
}

/// One address's wrong codes in a window.
#[derive(Debug, Clone, Copy)]
struct Misses {
    count: u32,
    retry_at: Timestamp,
}

/// The pairing state of the room.
#[derive(Debug)]
pub struct Pairing {
    rules: PairingRules,
    window: Option<Window>,
}

impl Pairing {
    pub fn new(rules: PairingRules) -> Self {
        Self {
            rules,
            window: None,
        }
    }

    /// Opens a new window with `code` (six digits), replacing any other.
    pub fn open(&mut self, now: Timestamp, code: String) -> WindowView {
        debug_assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
        self.window = Some(Window {
            code,
            expires_at: now + self.rules.window,
            paired: 0,
            wrong_codes: 0,
            refused_tries: 0,
            wrong_by: HashMap::new(),
        });
        self.view(now).expect("just opened")
    }

    pub fn close(&mut self) {
        self.window = None;
    }

    /// The window in force, if one is open and not expired.
    pub fn view(&self, now: Timestamp) -> Option<WindowView> {
        let window = self.window.as_ref().filter(|w| now < w.expires_at)?;
        Some(WindowView {
            code: window.code.clone(),
            expires_at: window.expires_at,
            paired: window.paired,
            wrong_codes: window.wrong_codes,
            locked: window.wrong_codes >= self.rules.max_wrong_codes,
            locked_out_addresses: window
                .wrong_by
                .values()
                .filter(|misses| misses.count >= WRONG_CODES_PER_ADDRESS)
                .count() as u32,
            refused_tries: window.refused_tries,
        })
    }

    /// A tablet at `from` presents `code`.
    pub fn attempt(&mut self, now: Timestamp, from: IpAddr, code: &str) -> Attempt {
        let max = self.rules.max_wrong_codes;
        let Some(window) = self.window.as_mut().filter(|w| now < w.expires_at) else {
            return Attempt::Closed;
        };
        if window.wrong_codes >= max {
            return Attempt::Locked;
        }
        if let Some(misses) = window.wrong_by.get(&from) {
            if misses.count >= WRONG_CODES_PER_ADDRESS {
                window.refused_tries += 1;
                return Attempt::AddressLockedOut;
            }
            if now < misses.retry_at {
                window.refused_tries += 1;
                return Attempt::TooSoon {
                    retry_after: misses.retry_at.duration_since(now),
                };
            }
        }
        if same_code(&window.code, code) {
            window.paired += 1;
            return Attempt::Accepted;
        }
        window.wrong_codes += 1;
        let misses = window.wrong_by.entry(from).or_insert(Misses {
            count: 0,
            retry_at: now,
        });
        misses.count += 1;
        misses.retry_at = now + self.rules.retry_delay * (1 << (misses.count - 1));
        if misses.count >= WRONG_CODES_PER_ADDRESS && window.wrong_codes < max {
            return Attempt::AddressLockedOut;
        }
        if window.wrong_codes >= max {
            Attempt::Locked
        } else {
            Attempt::WrongCode {
                tries_left: max - window.wrong_codes,
            }
        }
    }
}

/// Compares without stopping at the first differing digit.
fn same_code(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: PairingRules = PairingRules {
        window: SignedDuration::from_secs(300),
        max_wrong_codes: 10,
        retry_delay: SignedDuration::from_secs(1),
    };

    fn start() -> Timestamp {
        "2026-09-07T01:00:00Z".parse().unwrap()
    }

    fn tablet(n: u8) -> IpAddr {
        IpAddr::from([192, 168, 1, n])
    }

    #[test]
    fn forty_tablets_pair_inside_one_window() {
        let mut pairing = Pairing::new(RULES);
        pairing.open(start(), "428913".into());
        for n in 1..=40u8 {
            let now = start() + SignedDuration::from_secs(i64::from(n) * 5);
            assert_eq!(
                pairing.attempt(now, tablet(n), "428913"),
                Attempt::Accepted,
                "tablet {n}"
            );
        }
        assert_eq!(
            pairing
                .view(start() + SignedDuration::from_secs(200))
                .unwrap()
                .paired,
            40
        );
    }

    #[test]
    fn the_window_closes_when_it_expires() {
        let mut pairing = Pairing::new(RULES);
        assert_eq!(
            pairing.attempt(start(), tablet(1), "428913"),
            Attempt::Closed
        );
        pairing.open(start(), "428913".into());
        assert_eq!(
            pairing.attempt(
                start() + SignedDuration::from_secs(300),
                tablet(1),
                "428913"
            ),
            Attempt::Closed
        );
        assert_eq!(pairing.view(start() + SignedDuration::from_secs(300)), None);
    }

    #[test]
    fn a_flood_from_one_address_locks_out_that_address_and_the_class_still_pairs() {
        let mut pairing = Pairing::new(RULES);
        pairing.open(start(), "428913".into());
        let attacker = tablet(66);
        assert_eq!(
            pairing.attempt(start(), attacker, "000000"),
            Attempt::WrongCode { tries_left: 9 }
        );
        assert_eq!(
            pairing.attempt(start(), attacker, "428913"),
            Attempt::TooSoon {
                retry_after: SignedDuration::from_secs(1)
            },
            "even the right code is refused unchecked inside the delay"
        );
        let second = start() + SignedDuration::from_secs(1);
        assert_eq!(
            pairing.attempt(second, attacker, "000001"),
            Attempt::WrongCode { tries_left: 8 }
        );
        assert_eq!(
            pairing.attempt(
                second + SignedDuration::from_millis(1999),
                attacker,
                "000002"
            ),
            Attempt::TooSoon {
                retry_after: SignedDuration::from_millis(1)
            },
            "the delay doubles"
        );
        let third = second + SignedDuration::from_secs(2);
        assert_eq!(
            pairing.attempt(third, attacker, "000002"),
            Attempt::AddressLockedOut
        );
        for n in 0..10_000 {
            let now = third + SignedDuration::from_millis(n);
            assert_eq!(
                pairing.attempt(now, attacker, "000003"),
                Attempt::AddressLockedOut
            );
        }
        let view = pairing.view(third).unwrap();
        assert_eq!(
            (
                view.wrong_codes,
                view.locked,
                view.locked_out_addresses,
                view.refused_tries
            ),
            (3, false, 1, 10_002)
        );
        assert_eq!(
            pairing.attempt(third, tablet(1), "428913"),
            Attempt::Accepted,
            "the class still pairs"
        );
    }

    #[test]
    fn wrong_codes_from_many_addresses_lock_the_window_until_a_new_one_opens() {
        let mut pairing = Pairing::new(RULES);
        pairing.open(start(), "428913".into());
        for n in 0..9u8 {
            assert!(matches!(
                pairing.attempt(start(), tablet(100 + n), "111111"),
                Attempt::WrongCode { .. }
            ));
        }
        assert_eq!(
            pairing.attempt(start(), tablet(200), "222222"),
            Attempt::Locked
        );
        assert_eq!(
            pairing.attempt(start(), tablet(1), "428913"),
            Attempt::Locked,
            "the right code no longer pairs"
        );
        assert!(pairing.view(start()).unwrap().locked);
        pairing.open(start(), "555123".into());
        assert_eq!(
            pairing.attempt(start(), tablet(200), "555123"),
            Attempt::Accepted,
            "a new window forgets the addresses' misses"
        );
    }

    #[test]
    fn a_tablet_that_waits_out_the_delay_may_try_again() {
        let mut pairing = Pairing::new(RULES);
        pairing.open(start(), "428913".into());
        assert!(matches!(
            pairing.attempt(start(), tablet(3), "428931"),
            Attempt::WrongCode { .. }
        ));
        assert_eq!(
            pairing.attempt(start() + SignedDuration::from_secs(1), tablet(3), "428913"),
            Attempt::Accepted
        );
    }
}
