//! A day's plan from the timetable: which periods run, and every bell and
//! light switch due, at which instant.
//!
//! # Design
//! The plan is a pure function of the config and a date, so `schedule show`
//! prints exactly what the scheduler will do. Each planned action has a key
//! (local date and time, device, command) that stays the same however often the
//! plan is recomputed: the scheduler records keys, not instants, so a clock that
//! moves back cannot make an action new again.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::config::{ExceptionKind, Period, ScheduleConfig, hh_mm};

/// The timetable with the zone its times are in.
#[derive(Debug, Clone)]
pub struct Timetable {
    pub config: ScheduleConfig,
    pub zone: TimeZone,
}

/// What kind of day a date is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayKind {
    /// The weekly timetable applies.
    Normal,
    /// No school on this weekday.
    NoLessons,
    Holiday {
        name: String,
    },
    Exam {
        name: String,
    },
    Changed {
        name: String,
    },
}

/// One period of a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPeriod {
    pub shift: String,
    /// 1-based within its shift.
    pub number: usize,
    pub start: Time,
    pub end: Time,
}

/// What to do to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Ring { pattern: String },
    Switch { on: bool },
}

impl Action {
    /// As recorded in the outbox: `ring:<pattern>`, `on`, `off`.
    pub fn command(&self) -> String {
        match self {
            Action::Ring { pattern } => format!("ring:{pattern}"),
            Action::Switch { on: true } => "on".to_owned(),
            Action::Switch { on: false } => "off".to_owned(),
        }
    }
}

/// One action the timetable asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAction {
    pub local: DateTime,
    pub at: Timestamp,
    /// After this instant the action is no longer worth doing and is recorded as skipped.
    pub valid_until: Timestamp,
    pub device: String,
    pub action: Action,
    /// For people: "Tiết 2 – hết giờ".
    pub label: String,
}

impl PlannedAction {
    /// The action's identity across restarts and clock steps.
    pub fn key(&self) -> String {
        format!(
            "{} {} {}",
            self.local.strftime("%Y-%m-%dT%H:%M:%S"),
            self.device,
            self.action.command()
        )
    }
}

/// Everything planned for one date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayPlan {
    pub date: Date,
    pub kind: DayKind,
    pub periods: Vec<PlannedPeriod>,
    /// In time order.
    pub actions: Vec<PlannedAction>,
}

impl Timetable {
    /// The timetable of `config`, in the zone named `zone` (checked by the config).
    pub fn new(config: ScheduleConfig, zone: &str) -> Result<Timetable, jiff::Error> {
        Ok(Timetable {
            config,
            zone: TimeZone::get(zone)?,
        })
    }

    /// The plan for `date`.
    pub fn plan(&self, date: Date) -> DayPlan {
        let config = &self.config;
        let exception = config
            .exceptions
            .iter()
            .find(|e| e.date <= date && date <= e.until.unwrap_or(e.date));
        let mut periods = Vec::new();
        // (shift name, periods, start pattern, end pattern) for each block of the day.
        let mut blocks: Vec<(String, Vec<&Period>, &str, &str)> = Vec::new();
        let kind = match exception {
            Some(e) if e.kind == ExceptionKind::Holiday => DayKind::Holiday {
                name: e.name.clone(),
            },
            Some(e) => {
                let name = if e.kind == ExceptionKind::Exam {
                    "Thi"
                } else {
                    "Thay đổi"
                };
                blocks.push((
                    name.to_owned(),
                    e.periods.iter().collect(),
                    &e.start_pattern,
                    &e.end_pattern,
                ));
                if e.kind == ExceptionKind::Exam {
                    DayKind::Exam {
                        name: e.name.clone(),
                    }
                } else {
                    DayKind::Changed {
                        name: e.name.clone(),
                    }
                }
            }
            None => {
                let weekday = date.weekday();
                for shift in config
                    .shifts
                    .iter()
                    .filter(|s| s.days.iter().any(|d| d.weekday() == weekday))
                {
                    let today: Vec<&Period> = shift
                        .periods
                        .iter()
                        .filter(|p| {
                            p.days
                                .as_ref()
                                .is_none_or(|days| days.iter().any(|d| d.weekday() == weekday))
                        })
                        .collect();
                    if !today.is_empty() {
                        blocks.push((
                            shift.name.clone(),
                            today,
                            &shift.start_pattern,
                            &shift.end_pattern,
                        ));
                    }
                }
                if blocks.is_empty() {
                    DayKind::NoLessons
                } else {
                    DayKind::Normal
                }
            }
        };
        let mut actions = Vec::new();
        for (shift, block, start_pattern, end_pattern) in &blocks {
            for (i, period) in block.iter().enumerate() {
                let number = i + 1;
                periods.push(PlannedPeriod {
                    shift: shift.clone(),
                    number,
                    start: period.start,
                    end: period.end,
                });
                let ring = |time: Time, pattern: &str, what: &str| {
                    let action = Action::Ring {
                        pattern: pattern.to_owned(),
                    };
                    self.action(
                        date.to_datetime(time),
                        &config.bell,
                        action,
                        format!("Tiết {number} – {what}"),
                        self.grace(),
                    )
                };
                actions.push(ring(period.start, start_pattern, "vào lớp"));
                actions.push(ring(period.end, end_pattern, "hết tiết"));
            }
            let (Some(first), Some(last)) = (block.first(), block.last()) else {
                continue;
            };
            let on_at = date.to_datetime(first.start)
                - SignedDuration::from_mins(config.lights_on_before_minutes.into());
            let off_at = date.to_datetime(last.end)
                + SignedDuration::from_mins(config.lights_off_after_minutes.into());
            let lesson_span = off_at.duration_since(on_at);
            for light in &config.lights {
                actions.push(self.action(
                    on_at,
                    light,
                    Action::Switch { on: true },
                    format!("Ca {shift} – bật đèn"),
                    lesson_span,
                ));
                // Lights left on waste power all night: switching them off is worth doing until the day ends.
                let until_midnight = off_at.duration_until(
                    date.tomorrow()
                        .unwrap_or(date)
                        .to_datetime(Time::midnight()),
                );
                actions.push(self.action(
                    off_at,
                    light,
                    Action::Switch { on: false },
                    format!("Ca {shift} – tắt đèn"),
                    until_midnight,
                ));
            }
        }
        let weekday = date.weekday();
        for switch in config
            .switches
            .iter()
            .filter(|s| s.days.iter().any(|d| d.weekday() == weekday))
        {
            let (on_at, off_at) = (date.to_datetime(switch.on), date.to_datetime(switch.off));
            let name = if switch.name.is_empty() {
                switch.device.as_str()
            } else {
                switch.name.as_str()
            };
            actions.push(self.action(
                on_at,
                &switch.device,
                Action::Switch { on: true },
                format!("{name} – bật"),
                off_at.duration_since(on_at),
            ));
            let until_midnight = off_at.duration_until(
                date.tomorrow()
                    .unwrap_or(date)
                    .to_datetime(Time::midnight()),
            );
            actions.push(self.action(
                off_at,
                &switch.device,
                Action::Switch { on: false },
                format!("{name} – tắt"),
                until_midnight,
            ));
        }
        actions.sort_by(|a, b| (a.at, &a.device).cmp(&(b.at, &b.device)));
        DayPlan {
            date,
            kind,
            periods,
            actions,
        }
    }

    /// The local date of `instant`.
    pub fn date_of(&self, instant: Timestamp) -> Date {
        instant.to_zoned(self.zone.clone()).date()
    }

    fn grace(&self) -> SignedDuration {
        SignedDuration::from_secs(self.config.grace_seconds.into())
    }

    fn action(
        &self,
        local: DateTime,
        device: &str,
        action: Action,
        label: String,
        validity: SignedDuration,
    ) -> PlannedAction {
        // A local time skipped or repeated by a daylight-saving change resolves as most clocks do (compatible).
        let at = self
            .zone
            .to_ambiguous_timestamp(local)
            .compatible()
            .map_or(Timestamp::MAX, |t| t);
        let valid_until = at.checked_add(validity).unwrap_or(Timestamp::MAX);
        PlannedAction {
            local,
            at,
            valid_until,
            device: device.to_owned(),
            action,
            label,
        }
    }
}

/// A day's plan as people read it, Vietnamese first.
pub fn render(plan: &DayPlan, zone: &str) -> String {
    let weekday = match plan.date.weekday() {
        jiff::civil::Weekday::Monday => "Thứ Hai",
        jiff::civil::Weekday::Tuesday => "Thứ Ba",
        jiff::civil::Weekday::Wednesday => "Thứ Tư",
        jiff::civil::Weekday::Thursday => "Thứ Năm",
        jiff::civil::Weekday::Friday => "Thứ Sáu",
        jiff::civil::Weekday::Saturday => "Thứ Bảy",
        jiff::civil::Weekday::Sunday => "Chủ Nhật",
    };
    let kind = match &plan.kind {
        DayKind::Normal => "ngày học theo thời khóa biểu (timetable day)".to_owned(),
        DayKind::NoLessons => "không có tiết học (no lessons)".to_owned(),
        DayKind::Holiday { name } => format!("ngày nghỉ (holiday): {name}"),
        DayKind::Exam { name } => format!("ngày thi (exam day): {name}"),
        DayKind::Changed { name } => format!("lịch thay đổi (one-off change): {name}"),
    };
    let mut out = format!(
        "{weekday}, {} ({zone}): {kind}\n",
        plan.date.strftime("%d/%m/%Y")
    );
    if !plan.periods.is_empty() {
        out.push_str("\nTiết học (periods):\n");
        let mut shift = "";
        for period in &plan.periods {
            if period.shift != shift {
                shift = &period.shift;
                out.push_str(&format!("  Ca {shift}\n"));
            }
            out.push_str(&format!(
                "    Tiết {:<2} {} – {}\n",
                period.number,
                hh_mm(period.start),
                hh_mm(period.end)
            ));
        }
    }
    if !plan.actions.is_empty() {
        out.push_str("\nChuông và đèn (bells and lights):\n");
        for action in &plan.actions {
            let what = match &action.action {
                Action::Ring { pattern } => {
                    format!("chuông `{}` reo kiểu `{pattern}`", action.device)
                }
                Action::Switch { on: true } => format!("bật `{}`", action.device),
                Action::Switch { on: false } => format!("tắt `{}`", action.device),
            };
            out.push_str(&format!(
                "  {}  {what:<40} {}\n",
                hh_mm(action.local.time()),
                action.label
            ));
        }
    }
    out
}
