//! The pairing window: which codes a tablet may pair with, right now.
//!
//! # Design
//! A pure state machine: it is handed the time and a freshly drawn code, and
//! does no I/O. The teacher opens a window; the panel shows its 6-digit code
//! for `window` (a few minutes, long enough for a whole class of 40 to type
//! it). Any number of tablets may pair inside one window. Wrong codes are the
//! only way to attack it, so:
//! - after a wrong code, the same address must wait `retry_delay` before the
//!   next try; tries inside that delay are refused unchecked and still count;
//! - after `max_wrong_codes` wrong or refused tries in one window, the window
//!   locks and only a new window (with a new code) lets tablets pair again.
//!   With 6 digits and 10 tries the chance of guessing is 1 in 100,000 per
//!   window, and the teacher sees the lock.

use std::collections::HashMap;
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};

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
    last_wrong_by: HashMap<IpAddr, Timestamp>,
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
            last_wrong_by: HashMap::new(),
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
        if let Some(last) = window.last_wrong_by.get(&from) {
            let retry_at = *last + self.rules.retry_delay;
            if now < retry_at {
                window.wrong_codes += 1;
                return if window.wrong_codes >= max {
                    Attempt::Locked
                } else {
                    Attempt::TooSoon {
                        retry_after: retry_at.duration_since(now),
                    }
                };
            }
        }
        if same_code(&window.code, code) {
            window.paired += 1;
            return Attempt::Accepted;
        }
        window.wrong_codes += 1;
        window.last_wrong_by.insert(from, now);
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
    fn a_flood_of_wrong_codes_locks_the_window_until_a_new_one_opens() {
        let mut pairing = Pairing::new(RULES);
        pairing.open(start(), "428913".into());
        assert_eq!(
            pairing.attempt(start(), tablet(66), "000000"),
            Attempt::WrongCode { tries_left: 9 }
        );
        assert_eq!(
            pairing.attempt(start(), tablet(66), "428913"),
            Attempt::TooSoon {
                retry_after: SignedDuration::from_secs(1)
            },
            "even the right code is refused unchecked inside the delay"
        );
        for n in 0..7u8 {
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
            pairing.attempt(start(), tablet(1), "555123"),
            Attempt::Accepted
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
