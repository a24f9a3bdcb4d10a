//! When roll calls open: at the start of each period of the timetable, for
//! `attendance.window_minutes`. A room without a timetable takes one roll call
//! when attendance starts (the demo, a room provisioned before its timetable).
//!
//! A lesson's id names its period, `YYYY-MM-DD/<shift>/<period>` in the room's
//! time zone ([`period_lesson_id`]): the roll call and every record the tablets
//! make in that period carry it, so the hub reads a pupil's attendance and
//! learning per lesson. [`lesson_at`] names the lesson going on at an instant:
//! outside every period it is `YYYY-MM-DD/outside`.
//!
//! [`next`] and [`lesson_at`] are pure functions of the timetable and the time
//! they are handed, so a school week is tested without waiting for one.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

use crate::schedule::timetable::{PlannedPeriod, Timetable};

/// What the roll call should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Open the roll call of `lesson_id`, which started at `start` (now or a little before).
    Open { lesson_id: String, start: Timestamp },
    /// Nothing to open before this instant.
    Wait(Timestamp),
    /// No period in the coming week.
    Never,
}

/// How far ahead to look for the next period: past a week of holidays, check again.
const HORIZON_DAYS: i64 = 7;

/// The next roll call after `last_opened` (the lesson id of the one opened last, if any).
pub fn next(
    timetable: &Timetable,
    now: Timestamp,
    window: SignedDuration,
    last_opened: Option<&str>,
) -> Next {
    let today = timetable.date_of(now);
    for offset in 0..=HORIZON_DAYS {
        let Ok(date) = today.checked_add(offset.days()) else {
            break;
        };
        let plan = timetable.plan(date);
        let mut periods = plan.periods.clone();
        periods.sort_by_key(|p| p.start);
        for period in periods {
            let Ok(start) = date
                .to_datetime(period.start)
                .to_zoned(timetable.zone.clone())
                .map(|z| z.timestamp())
            else {
                continue;
            };
            let lesson_id = period_lesson_id(date, &period);
            if last_opened == Some(lesson_id.as_str()) {
                continue;
            }
            if start <= now && now < start + window {
                return Next::Open { lesson_id, start };
            }
            if start > now {
                return Next::Wait(start);
            }
        }
    }
    Next::Never
}

/// The id of the lesson held in `period` on `date`: `YYYY-MM-DD/<shift>/<period>`.
pub fn period_lesson_id(date: Date, period: &PlannedPeriod) -> String {
    format!("{date}/{}/{}", period.shift, period.number)
}

/// The suffix of the lesson id outside every period: `YYYY-MM-DD/outside`.
pub const OUTSIDE_PERIODS: &str = "outside";

/// The lesson going on at `now`: the period of the timetable that holds it
/// (from its start to its end), else `YYYY-MM-DD/outside` for the room's date.
/// `timetable` is `None` in a room without one, which is always outside.
pub fn lesson_at(timetable: Option<&Timetable>, zone: &TimeZone, now: Timestamp) -> String {
    if let Some(timetable) = timetable {
        let date = timetable.date_of(now);
        for period in timetable.plan(date).periods {
            let instant = |time| {
                date.to_datetime(time)
                    .to_zoned(timetable.zone.clone())
                    .map(|z| z.timestamp())
            };
            if let (Ok(start), Ok(end)) = (instant(period.start), instant(period.end))
                && start <= now
                && now < end
            {
                return period_lesson_id(date, &period);
            }
        }
    }
    let date = now.to_zoned(zone.clone()).date();
    format!("{date}/{OUTSIDE_PERIODS}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::config::ScheduleConfig;
    use crate::schedule::scheduler::tests::at;

    fn timetable() -> Timetable {
        let config: ScheduleConfig = toml::from_str(
            "[[shifts]]\nname = \"Sáng\"\ndays = [\"mon\", \"tue\"]\nperiods = [{ start = \"07:00\", end = \"07:45\" }, { start = \"07:50\", end = \"08:35\" }]\n\n\
             [[exceptions]]\ndate = \"2026-09-08\"\nkind = \"holiday\"\nname = \"Nghỉ bù\"\n",
        )
        .unwrap();
        Timetable::new(config, "Asia/Ho_Chi_Minh").unwrap()
    }

    #[test]
    fn a_roll_call_opens_at_each_period_and_never_twice() {
        let timetable = timetable();
        let window = SignedDuration::from_mins(10);
        assert_eq!(
            next(&timetable, at("2026-09-07T06:30"), window, None),
            Next::Wait(at("2026-09-07T07:00"))
        );
        let first = Next::Open {
            lesson_id: "2026-09-07/Sáng/1".into(),
            start: at("2026-09-07T07:00"),
        };
        assert_eq!(
            next(&timetable, at("2026-09-07T07:00"), window, None),
            first
        );
        // An agent started mid-window opens the period's roll call, timed from the period's start.
        assert_eq!(
            next(&timetable, at("2026-09-07T07:04"), window, None),
            first
        );
        assert_eq!(
            next(
                &timetable,
                at("2026-09-07T07:04"),
                window,
                Some("2026-09-07/Sáng/1")
            ),
            Next::Wait(at("2026-09-07T07:50"))
        );
        // Past the window, the period is not called any more.
        assert_eq!(
            next(&timetable, at("2026-09-07T07:20"), window, None),
            Next::Wait(at("2026-09-07T07:50"))
        );
        // Tuesday is a holiday: the next roll call is the next Monday's first period.
        assert_eq!(
            next(&timetable, at("2026-09-07T09:00"), window, None),
            Next::Wait(at("2026-09-14T07:00"))
        );
    }

    #[test]
    fn the_lesson_going_on_is_the_period_that_holds_the_instant_or_outside() {
        let timetable = timetable();
        let zone = timetable.zone.clone();
        let lesson = |time| lesson_at(Some(&timetable), &zone, at(time));
        assert_eq!(lesson("2026-09-07T06:59"), "2026-09-07/outside");
        assert_eq!(lesson("2026-09-07T07:00"), "2026-09-07/Sáng/1");
        assert_eq!(lesson("2026-09-07T07:44"), "2026-09-07/Sáng/1");
        assert_eq!(
            lesson("2026-09-07T07:45"),
            "2026-09-07/outside",
            "the change between periods"
        );
        assert_eq!(lesson("2026-09-07T07:50"), "2026-09-07/Sáng/2");
        assert_eq!(
            lesson("2026-09-08T07:10"),
            "2026-09-08/outside",
            "a holiday"
        );
        assert_eq!(
            lesson_at(None, &zone, at("2026-09-07T07:10")),
            "2026-09-07/outside",
            "a room without a timetable"
        );
        // The id a roll call opened in the period carries is the same.
        let Next::Open { lesson_id, .. } = next(
            &timetable,
            at("2026-09-07T07:50"),
            SignedDuration::from_mins(10),
            None,
        ) else {
            panic!("the second period's roll call opens")
        };
        assert_eq!(lesson_id, lesson("2026-09-07T08:00"));
    }
}
