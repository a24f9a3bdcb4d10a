//! Who wins when commands conflict.
//!
//! # Design
//! The order is written once, here: **the teacher at the panel, then the
//! timetable, then automation** (home automation, an empty room).
//! - A teacher's command is always performed, and holds a switch against the
//!   other two for `teacher_hold_minutes`.
//! - The timetable's "lights on" holds the lights against automation until the
//!   lights' planned "off", so an empty-room rule cannot darken a lesson.
//! - Automation is performed only when nothing holds the device.
//!
//! Bells are never held: a ring is momentary and rings do not undo each other.
//! A command that yields is not performed and is recorded as skipped, naming
//! what held the device.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::proto::actuation::Cause;

/// Holds on devices, by device name.
#[derive(Debug, Default)]
pub struct Arbiter {
    holds: HashMap<String, Hold>,
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    by: Cause,
    until: Timestamp,
}

/// Ranks causes: lower wins.
fn rank(cause: Cause) -> u8 {
    match cause {
        Cause::Teacher => 0,
        Cause::Timetable => 1,
        Cause::Automation | Cause::Unspecified => 2,
    }
}

/// Whether a command may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// Held by a command that ranks higher; the reason says which.
    Yield(String),
}

impl Arbiter {
    /// Decides on a command from `cause` at `now`. A command that proceeds and
    /// asks for a hold (`hold_until`) takes it, replacing any hold it outranks.
    pub fn admit(
        &mut self,
        device: &str,
        cause: Cause,
        now: Timestamp,
        hold_until: Option<Timestamp>,
    ) -> Verdict {
        if let Some(hold) = self.holds.get(device).filter(|hold| hold.until > now)
            && rank(hold.by) < rank(cause)
        {
            let by = match hold.by {
                Cause::Teacher => "giáo viên (the teacher)",
                _ => "thời khóa biểu (the timetable)",
            };
            let until = hold.until.strftime("%H:%M UTC");
            return Verdict::Yield(format!("held by {by} until {until}"));
        }
        match hold_until {
            Some(until) => {
                self.holds
                    .insert(device.to_owned(), Hold { by: cause, until });
            }
            None if self
                .holds
                .get(device)
                .is_some_and(|hold| rank(hold.by) >= rank(cause)) =>
            {
                self.holds.remove(device);
            }
            None => {}
        }
        Verdict::Proceed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_second(minutes * 60).unwrap()
    }

    #[test]
    fn the_teacher_beats_the_timetable_which_beats_automation() {
        let mut arbiter = Arbiter::default();
        // The timetable switches the lights on for the lesson, until minute 60.
        assert_eq!(
            arbiter.admit("lights", Cause::Timetable, t(0), Some(t(60))),
            Verdict::Proceed
        );
        assert!(
            matches!(arbiter.admit("lights", Cause::Automation, t(10), None), Verdict::Yield(reason) if reason.contains("timetable"))
        );
        // The teacher switches them off for a film, holding them until minute 55.
        assert_eq!(
            arbiter.admit("lights", Cause::Teacher, t(10), Some(t(55))),
            Verdict::Proceed
        );
        assert!(
            matches!(arbiter.admit("lights", Cause::Timetable, t(20), None), Verdict::Yield(reason) if reason.contains("teacher"))
        );
        assert!(matches!(
            arbiter.admit("lights", Cause::Automation, t(20), None),
            Verdict::Yield(_)
        ));
        // Once the hold ends, the timetable and then automation may act again.
        assert_eq!(
            arbiter.admit("lights", Cause::Timetable, t(56), None),
            Verdict::Proceed
        );
        assert_eq!(
            arbiter.admit("lights", Cause::Automation, t(57), None),
            Verdict::Proceed
        );
    }
}
