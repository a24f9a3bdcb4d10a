//! When roll calls open: at the start of each period of the timetable, for
//! `attendance.window_minutes`. A room without a timetable takes one roll call
//! when attendance starts (the demo, a room provisioned before its timetable).
//!
//! [`next`] is a pure function of the timetable and the time it is handed, so
//! a school week is tested without waiting for one.

use jiff::{SignedDuration, Timestamp, ToSpan};

use crate::schedule::timetable::Timetable;

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
            let lesson_id = format!("{date}/{}/{}", period.shift, period.number);
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
}
