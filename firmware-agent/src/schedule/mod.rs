//! The school timetable and the scheduler that follows it: which bells ring
//! and which lights switch, when, on every day of the year.
//!
//! # Design
//! [`config`] is what IT staff write; [`timetable`] turns it into one day's
//! plan, a pure function also printed by `schedule show`; [`scheduler`] is the
//! state machine that decides, for the instant it is handed, what is due, late
//! or missed. None of them does I/O or reads the time: the daemon's loop that
//! drives them (the actuators' runner) reads the [`crate::clock::Clock`] it is
//! handed, performs the decisions and persists them. [`pushed`] lays the timetable the
//! hub pushes over the config's.

pub mod config;
pub mod pushed;
pub mod scheduler;
pub mod timetable;

pub use config::ScheduleConfig;
pub use scheduler::{Decision, Scheduler};
pub use timetable::{Action, DayPlan, PlannedAction, Timetable};
