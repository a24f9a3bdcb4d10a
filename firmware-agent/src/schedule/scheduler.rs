//! The scheduler: given the time now, which planned actions are due, which are
//! late but still worth doing, and which were missed.
//!
//! # Design
//! A state machine without I/O: [`Scheduler::poll`] takes the current instant
//! and returns decisions; the caller performs them and persists them. Its state
//! is the set of keys of actions already decided (fired or skipped), so:
//! - a clock stepped back never rings a bell twice: the keys are already there;
//! - a clock stepped forward never skips silently: every action passed over is
//!   decided, rung late within its grace or recorded as skipped with the reason;
//! - a restart resumes from the persisted keys: nothing before the newest
//!   decided action is replayed, and what fell due while the agent was down is
//!   rung late or recorded as skipped, like a forward step.
//!
//! On a first start ever (nothing persisted), actions before that instant are
//! not the agent's business. Only the last [`LOOKBACK`] is examined, so an agent
//! switched off over the summer does not record a summer of skipped bells.
//! How the scheduler, the bell runner and the outbox each cope with a stepped
//! clock is gathered in `DESIGN.md` ("Time").

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::timetable::{PlannedAction, Timetable};
use crate::clock::text::human;

/// How far back a poll looks for actions that fell due.
pub const LOOKBACK: SignedDuration = SignedDuration::from_hours(36);
/// How far ahead [`Scheduler::next_due`] looks.
const LOOKAHEAD_DAYS: i32 = 8;

/// What to do about one planned action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Do it now; `late_by` is zero or how late it is.
    Fire {
        action: PlannedAction,
        late_by: SignedDuration,
    },
    /// Too late to be worth doing: record it with the reason.
    Skip {
        action: PlannedAction,
        reason: String,
    },
}

impl Decision {
    pub fn action(&self) -> &PlannedAction {
        match self {
            Decision::Fire { action, .. } | Decision::Skip { action, .. } => action,
        }
    }
}

/// Follows one timetable.
#[derive(Debug)]
pub struct Scheduler {
    timetable: Arc<Timetable>,
    /// Key of every action decided, with its due instant (for pruning).
    decided: BTreeMap<String, Timestamp>,
    /// Actions due before this are not considered.
    since: Timestamp,
}

impl Scheduler {
    /// A scheduler resuming from `decided` (key, due instant) pairs, or starting afresh at `now`.
    pub fn new(
        timetable: Arc<Timetable>,
        decided: impl IntoIterator<Item = (String, Timestamp)>,
        now: Timestamp,
    ) -> Scheduler {
        let decided: BTreeMap<String, Timestamp> = decided.into_iter().collect();
        let since = decided.values().max().copied().unwrap_or(now);
        Scheduler {
            timetable,
            decided,
            since,
        }
    }

    /// The same scheduler following a new timetable: what was decided stays decided.
    pub fn with_timetable(self, timetable: Arc<Timetable>) -> Scheduler {
        Scheduler { timetable, ..self }
    }

    pub fn timetable(&self) -> &Arc<Timetable> {
        &self.timetable
    }

    /// Every action due at or before `now` and not yet decided, in time order, now decided.
    pub fn poll(&mut self, now: Timestamp) -> Vec<Decision> {
        let from = self.since.max(now.checked_sub(LOOKBACK).unwrap_or(now));
        let mut decisions = Vec::new();
        if from > now {
            return decisions;
        }
        let mut date = self.timetable.date_of(from);
        // Tomorrow's plan may start today (lights on before a period at midnight).
        let today = self.timetable.date_of(now);
        let last = today.tomorrow().unwrap_or(today);
        while date <= last {
            for action in self.timetable.plan(date).actions {
                if action.at < from || action.at > now || self.decided.contains_key(&action.key()) {
                    continue;
                }
                self.decided.insert(action.key(), action.at);
                let late_by = now.duration_since(action.at);
                decisions.push(if now <= action.valid_until {
                    Decision::Fire { action, late_by }
                } else {
                    let allowed = action.valid_until.duration_since(action.at);
                    let reason = format!(
                        "missed by {} (allowed {}): the agent was not running or the clock stepped forward",
                        human(late_by),
                        human(allowed)
                    );
                    Decision::Skip { action, reason }
                });
            }
            let Ok(next) = date.tomorrow() else { break };
            date = next;
        }
        let horizon = now.checked_sub(LOOKBACK * 2).unwrap_or(now);
        self.decided.retain(|_, at| *at >= horizon);
        decisions
    }

    /// The next instant after `now` at which an undecided action falls due.
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        let mut date = self.timetable.date_of(now);
        for _ in 0..LOOKAHEAD_DAYS {
            let due = self
                .timetable
                .plan(date)
                .actions
                .into_iter()
                .filter(|a| a.at > now && !self.decided.contains_key(&a.key()))
                .map(|a| a.at)
                .min();
            if due.is_some() {
                return due;
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schedule::config::ScheduleConfig;
    use crate::schedule::timetable::Action;

    /// A school with a morning shift of five periods Monday to Saturday (Wednesday has four),
    /// one light, a holiday on Wednesday 2 September and an exam on Friday 11 September 2026.
    pub fn school() -> Arc<Timetable> {
        let source = r#"
            bell = "bell"
            lights = ["lights"]
            grace_seconds = 120
            [patterns.exam]
            pulses_ms = [5000]
            [[shifts]]
            name = "Sáng"
            days = ["mon", "tue", "wed", "thu", "fri", "sat"]
            periods = [
                { start = "07:00", end = "07:45" },
                { start = "07:50", end = "08:35" },
                { start = "08:55", end = "09:40" },
                { start = "09:45", end = "10:30" },
                { start = "10:35", end = "11:20", days = ["mon", "tue", "thu", "fri", "sat"] },
            ]
            [[switches]]
            device = "watering"
            name = "Tưới cây"
            days = ["mon", "wed", "fri"]
            on = "16:30"
            off = "16:45"
            [[exceptions]]
            date = "2026-09-02"
            kind = "holiday"
            name = "Quốc khánh"
            [[exceptions]]
            date = "2026-09-11"
            kind = "exam"
            name = "Khảo sát đầu năm"
            start_pattern = "exam"
            end_pattern = "exam"
            periods = [{ start = "07:30", end = "09:00" }]
        "#;
        let config: ScheduleConfig = toml::from_str(source).unwrap();
        Arc::new(Timetable::new(config, "Asia/Ho_Chi_Minh").unwrap())
    }

    pub fn at(local: &str) -> Timestamp {
        local
            .parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").unwrap())
            .unwrap()
            .timestamp()
    }

    /// Runs the scheduler from `from` to `to`, waking exactly when it asks to; returns (poll instant, decision).
    fn run(
        scheduler: &mut Scheduler,
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<(Timestamp, Decision)> {
        let mut now = from;
        let mut out = Vec::new();
        loop {
            out.extend(scheduler.poll(now).into_iter().map(|d| (now, d)));
            match scheduler.next_due(now) {
                Some(next) if next <= to => now = next,
                _ => return out,
            }
        }
    }

    fn bells(decisions: &[(Timestamp, Decision)]) -> Vec<String> {
        decisions
            .iter()
            .filter(|(_, d)| d.action().device == "bell")
            .map(|(_, d)| d.action().key())
            .collect()
    }

    #[test]
    fn a_school_week_rings_every_bell_once_on_time() {
        let timetable = school();
        let monday = at("2026-08-31T00:00");
        let mut scheduler = Scheduler::new(timetable.clone(), [], monday);
        let week = run(&mut scheduler, monday, at("2026-09-06T23:59"));
        assert!(week.iter().all(
            |(now, d)| matches!(d, Decision::Fire { late_by, .. } if late_by.is_zero())
                && *now == d.action().at
        ));
        let fired = bells(&week);
        // Mon, Tue, Thu, Sat: 5 periods; Wed 2 Sep is a holiday; Fri: 5 periods. 2 bells each.
        assert_eq!(fired.len(), 5 * 5 * 2, "{fired:#?}");
        assert!(
            fired.iter().all(|k| !k.starts_with("2026-09-02")),
            "no bell on the holiday"
        );
        assert!(fired.contains(&"2026-08-31T07:00:00 bell ring:start".to_owned()));
        assert!(fired.contains(&"2026-08-31T11:20:00 bell ring:end".to_owned()));
        let lights: Vec<String> = week
            .iter()
            .filter(|(_, d)| d.action().device == "lights")
            .map(|(_, d)| d.action().key())
            .collect();
        assert_eq!(
            lights[..2],
            [
                "2026-08-31T06:55:00 lights on".to_owned(),
                "2026-08-31T11:30:00 lights off".to_owned()
            ]
        );
        // The plants are watered Monday, Wednesday (a holiday for the school, not for them) and Friday.
        let watering: Vec<String> = week
            .iter()
            .filter(|(_, d)| d.action().device == "watering")
            .map(|(_, d)| d.action().key())
            .collect();
        assert_eq!(watering.len(), 6, "{watering:#?}");
        assert_eq!(
            watering[2..4],
            [
                "2026-09-02T16:30:00 watering on".to_owned(),
                "2026-09-02T16:45:00 watering off".to_owned()
            ]
        );
    }

    #[test]
    fn an_exam_day_replaces_the_timetable_and_wednesday_has_four_periods() {
        let timetable = school();
        let mut scheduler = Scheduler::new(timetable.clone(), [], at("2026-09-09T00:00"));
        let fired = bells(&run(
            &mut scheduler,
            at("2026-09-09T00:00"),
            at("2026-09-11T23:00"),
        ));
        let wednesday = fired.iter().filter(|k| k.starts_with("2026-09-09")).count();
        assert_eq!(wednesday, 8);
        let friday: Vec<&String> = fired
            .iter()
            .filter(|k| k.starts_with("2026-09-11"))
            .collect();
        assert_eq!(
            friday,
            [
                "2026-09-11T07:30:00 bell ring:exam",
                "2026-09-11T09:00:00 bell ring:exam"
            ]
        );
    }

    #[test]
    fn a_restart_at_10_17_resumes_without_replaying_the_morning() {
        let timetable = school();
        let start = at("2026-09-07T06:00");
        let mut before = Scheduler::new(timetable.clone(), [], start);
        let morning = run(&mut before, start, at("2026-09-07T09:00"));
        let persisted: Vec<(String, Timestamp)> = morning
            .iter()
            .map(|(_, d)| (d.action().key(), d.action().at))
            .collect();
        // The agent stops at 09:00 and comes back at 10:17: bells at 09:40 and 09:45 fell due meanwhile.
        let mut after = Scheduler::new(timetable, persisted, at("2026-09-07T10:17"));
        let resumed = after.poll(at("2026-09-07T10:17"));
        let keys: Vec<String> = resumed.iter().map(|d| d.action().key()).collect();
        assert_eq!(
            keys,
            [
                "2026-09-07T09:40:00 bell ring:end",
                "2026-09-07T09:45:00 bell ring:start"
            ]
        );
        assert!(
            resumed.iter().all(
                |d| matches!(d, Decision::Skip { reason, .. } if reason.contains("missed by"))
            ),
            "{resumed:#?}"
        );
        let rest = bells(&run(
            &mut after,
            at("2026-09-07T10:17"),
            at("2026-09-07T12:00"),
        ));
        assert_eq!(
            rest,
            [
                "2026-09-07T10:30:00 bell ring:end",
                "2026-09-07T10:35:00 bell ring:start",
                "2026-09-07T11:20:00 bell ring:end"
            ]
        );
    }

    #[test]
    fn a_clock_stepped_back_never_rings_twice() {
        let mut scheduler = Scheduler::new(school(), [], at("2026-09-07T06:00"));
        assert_eq!(
            scheduler.poll(at("2026-09-07T07:00")).len(),
            2,
            "the lights at 06:55 and the bell at 07:00"
        );
        // NTP steps the clock back ten minutes, then time runs forward past 07:00 again.
        assert!(scheduler.poll(at("2026-09-07T06:50")).is_empty());
        assert_eq!(
            scheduler.next_due(at("2026-09-07T06:50")),
            Some(at("2026-09-07T07:45"))
        );
        assert!(scheduler.poll(at("2026-09-07T07:00:30")).is_empty());
    }

    #[test]
    fn a_clock_stepped_forward_rings_late_within_grace_and_records_the_rest() {
        let mut scheduler = Scheduler::new(school(), [], at("2026-09-07T07:30"));
        // 07:30 -> 07:46:30: the 07:45 bell is 90 s late, within the 120 s grace.
        let late = scheduler.poll(at("2026-09-07T07:46:30"));
        assert_eq!(late.len(), 1);
        assert!(
            matches!(&late[0], Decision::Fire { late_by, .. } if *late_by == SignedDuration::from_secs(90))
        );
        // 07:46:30 -> 09:00: 07:50, 08:35 and 08:55 are beyond grace.
        let jumped = scheduler.poll(at("2026-09-07T09:00"));
        let summary: Vec<(String, bool)> = jumped
            .iter()
            .map(|d| (d.action().key(), matches!(d, Decision::Skip { .. })))
            .collect();
        assert_eq!(
            summary,
            [
                ("2026-09-07T07:50:00 bell ring:start".to_owned(), true),
                ("2026-09-07T08:35:00 bell ring:end".to_owned(), true),
                ("2026-09-07T08:55:00 bell ring:start".to_owned(), true),
            ]
        );
    }

    #[test]
    fn lights_missed_in_the_morning_still_go_on_during_lessons() {
        let mut scheduler = Scheduler::new(school(), [], at("2026-09-07T06:00"));
        let decisions = scheduler.poll(at("2026-09-07T08:00"));
        let on = decisions
            .iter()
            .find(|d| d.action().action == Action::Switch { on: true })
            .unwrap();
        assert!(matches!(on, Decision::Fire { .. }), "{on:?}");
    }
}
