//! The `[schedule]` section: the timetable as IT staff write it.
//!
//! # Design
//! Times are `"HH:MM"` (or `"HH:MM:SS"`) strings and dates `"YYYY-MM-DD"`, parsed by serde so a
//! malformed one is reported at its exact line and column. Rules serde cannot
//! express (an end before its start, overlapping periods, an unknown pattern or
//! device) are checked by [`problems`] and located by their key path.

use std::collections::BTreeMap;

use jiff::civil::{Date, Time, Weekday};
use serde::Deserialize;

use crate::config::diagnostics::Unlocated;

/// The whole timetable and how the agent follows it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// The device rung at the start and end of every period (an `[[actuators.device]]` name).
    pub bell: String,
    /// Devices switched on for lessons and off after the last one.
    pub lights: Vec<String>,
    /// How long before a shift's first period the lights go on.
    pub lights_on_before_minutes: u32,
    /// How long after a shift's last period the lights go off.
    pub lights_off_after_minutes: u32,
    /// A bell missed by up to this long (agent busy, clock stepped forward) is rung late; beyond it, it is recorded as skipped.
    pub grace_seconds: u32,
    /// How long a teacher's command at the panel holds a device against the timetable and automation.
    pub teacher_hold_minutes: u32,
    /// Named bell patterns.
    pub patterns: BTreeMap<String, BellPattern>,
    pub shifts: Vec<Shift>,
    pub exceptions: Vec<Exception>,
    /// Other switches on a daily time plan (plant watering, a fan), every listed
    /// day, holidays included: plants need water whatever the school does.
    pub switches: Vec<TimedSwitch>,
}

/// A switch turned on and off at set times, such as a watering valve.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimedSwitch {
    /// The `[[actuators.device]]` it switches.
    pub device: String,
    /// What people see, such as "Tưới cây".
    #[serde(default)]
    pub name: String,
    pub days: Vec<Day>,
    pub on: Time,
    pub off: Time,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            bell: "bell".to_owned(),
            lights: Vec::new(),
            lights_on_before_minutes: 5,
            lights_off_after_minutes: 10,
            grace_seconds: 120,
            teacher_hold_minutes: 45,
            patterns: default_patterns(),
            shifts: Vec::new(),
            exceptions: Vec::new(),
            switches: Vec::new(),
        }
    }
}

/// The patterns every room has unless the config redefines them.
pub fn default_patterns() -> BTreeMap<String, BellPattern> {
    BTreeMap::from([
        (
            "start".to_owned(),
            BellPattern {
                pulses_ms: vec![3000],
                gap_ms: 600,
            },
        ),
        (
            "end".to_owned(),
            BellPattern {
                pulses_ms: vec![800, 800],
                gap_ms: 600,
            },
        ),
    ])
}

/// How a bell rings: pulses of the given lengths with gaps between them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BellPattern {
    pub pulses_ms: Vec<u32>,
    #[serde(default = "default_gap_ms")]
    pub gap_ms: u32,
}

fn default_gap_ms() -> u32 {
    600
}

/// A shift (morning, afternoon): its days and its periods.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    pub name: String,
    pub days: Vec<Day>,
    pub periods: Vec<Period>,
    #[serde(default = "start_pattern")]
    pub start_pattern: String,
    #[serde(default = "end_pattern")]
    pub end_pattern: String,
}

fn start_pattern() -> String {
    "start".to_owned()
}

fn end_pattern() -> String {
    "end".to_owned()
}

/// One period. `days`, when given, narrows the shift's days for this period.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub start: Time,
    pub end: Time,
    #[serde(default)]
    pub days: Option<Vec<Day>>,
}

/// A day of the week, as written in the config.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Monday,
            Day::Tue => Weekday::Tuesday,
            Day::Wed => Weekday::Wednesday,
            Day::Thu => Weekday::Thursday,
            Day::Fri => Weekday::Friday,
            Day::Sat => Weekday::Saturday,
            Day::Sun => Weekday::Sunday,
        }
    }
}

/// A day (or run of days) that differs from the weekly timetable.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// The first day.
    pub date: Date,
    /// The last day, inclusive; the same as `date` when absent.
    #[serde(default)]
    pub until: Option<Date>,
    pub kind: ExceptionKind,
    /// What people see, such as "Quốc khánh" or "Thi học kỳ I".
    #[serde(default)]
    pub name: String,
    /// For `exam` and `change`: the periods that replace the day's own.
    #[serde(default)]
    pub periods: Vec<Period>,
    #[serde(default = "start_pattern")]
    pub start_pattern: String,
    #[serde(default = "end_pattern")]
    pub end_pattern: String,
}

/// What kind of exception a day is.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExceptionKind {
    /// No bells, no lights.
    Holiday,
    /// An exam day: its own periods replace the timetable's.
    Exam,
    /// A one-off change: its own periods replace the timetable's.
    Change,
}

/// The rules serde cannot express; `devices` are the configured actuator names.
pub fn problems(schedule: &ScheduleConfig, devices: &[&str]) -> Vec<Unlocated> {
    let mut out = Vec::new();
    let mut problem = |key: String, message: String, hint: &str| {
        out.push(Unlocated {
            key,
            message,
            hint: hint.to_owned(),
        })
    };
    for (name, pattern) in &schedule.patterns {
        if pattern.pulses_ms.is_empty() || pattern.pulses_ms.contains(&0) {
            problem(
                format!("schedule.patterns.{name}"),
                "a pattern needs at least one pulse, each longer than 0 ms".into(),
                "write pulses_ms = [3000] for one 3-second ring",
            );
        }
    }
    let uses_timetable =
        !schedule.shifts.is_empty() || schedule.exceptions.iter().any(|e| !e.periods.is_empty());
    if uses_timetable && !devices.contains(&schedule.bell.as_str()) {
        problem(
            "schedule.bell".into(),
            format!("no device named `{}`", schedule.bell),
            "name an [[actuators.device]] entry, or add one",
        );
    }
    for (i, light) in schedule.lights.iter().enumerate() {
        if !devices.contains(&light.as_str()) {
            problem(
                format!("schedule.lights.{i}"),
                format!("no device named `{light}`"),
                "name an [[actuators.device]] entry, or add one",
            );
        }
    }
    for (i, switch) in schedule.switches.iter().enumerate() {
        let key = format!("schedule.switches.{i}");
        if !devices.contains(&switch.device.as_str()) {
            problem(
                format!("{key}.device"),
                format!("no device named `{}`", switch.device),
                "name an [[actuators.device]] entry, or add one",
            );
        }
        if switch.off <= switch.on {
            problem(
                format!("{key}.off"),
                format!(
                    "switches off at {} but on at {}",
                    hh_mm(switch.off),
                    hh_mm(switch.on)
                ),
                "the off time comes after the on time",
            );
        }
        if switch.days.is_empty() {
            problem(
                format!("{key}.days"),
                "no days".into(),
                "write days = [\"mon\", \"wed\", \"fri\"]",
            );
        }
    }
    let check_pattern = |key: String, name: &str, problem: &mut dyn FnMut(String, String, &str)| {
        if !schedule.patterns.contains_key(name) {
            let known: Vec<&str> = schedule.patterns.keys().map(String::as_str).collect();
            problem(
                key,
                format!("unknown bell pattern `{name}`"),
                &format!("use one of: {}", known.join(", ")),
            );
        }
    };
    for (s, shift) in schedule.shifts.iter().enumerate() {
        check_pattern(
            format!("schedule.shifts.{s}.start_pattern"),
            &shift.start_pattern,
            &mut problem,
        );
        check_pattern(
            format!("schedule.shifts.{s}.end_pattern"),
            &shift.end_pattern,
            &mut problem,
        );
        if shift.days.is_empty() {
            problem(
                format!("schedule.shifts.{s}.days"),
                "a shift needs at least one day".into(),
                "write days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\"]",
            );
        }
        check_periods(
            &format!("schedule.shifts.{s}"),
            &shift.periods,
            &mut problem,
        );
    }
    for (e, exception) in schedule.exceptions.iter().enumerate() {
        let key = format!("schedule.exceptions.{e}");
        if exception.until.is_some_and(|until| until < exception.date) {
            problem(
                format!("{key}.until"),
                "the last day is before the first".into(),
                "write until on or after date",
            );
        }
        match exception.kind {
            ExceptionKind::Holiday if !exception.periods.is_empty() => {
                problem(
                    format!("{key}.periods"),
                    "a holiday has no periods".into(),
                    "use kind = \"change\" for a day with other periods",
                );
            }
            ExceptionKind::Exam | ExceptionKind::Change => {
                check_pattern(
                    format!("{key}.start_pattern"),
                    &exception.start_pattern,
                    &mut problem,
                );
                check_pattern(
                    format!("{key}.end_pattern"),
                    &exception.end_pattern,
                    &mut problem,
                );
                check_periods(&key, &exception.periods, &mut problem);
            }
            ExceptionKind::Holiday => {}
        }
    }
    out
}

fn check_periods(key: &str, periods: &[Period], problem: &mut dyn FnMut(String, String, &str)) {
    for (p, period) in periods.iter().enumerate() {
        if period.end <= period.start {
            problem(
                format!("{key}.periods.{p}.end"),
                format!(
                    "period ends at {} but starts at {}",
                    hh_mm(period.end),
                    hh_mm(period.start)
                ),
                "a period's end comes after its start",
            );
        }
        if let Some(previous) = p.checked_sub(1).map(|q| &periods[q])
            && period.start < previous.end
        {
            problem(
                format!("{key}.periods.{p}.start"),
                format!(
                    "starts at {}, before the previous period ends ({})",
                    hh_mm(period.start),
                    hh_mm(previous.end)
                ),
                "list periods in order, without overlaps",
            );
        }
    }
}

/// `07:45`, or `07:45:30` for a time with seconds.
pub fn hh_mm(time: Time) -> String {
    match time.second() {
        0 => format!("{:02}:{:02}", time.hour(), time.minute()),
        seconds => format!("{:02}:{:02}:{seconds:02}", time.hour(), time.minute()),
    }
}
