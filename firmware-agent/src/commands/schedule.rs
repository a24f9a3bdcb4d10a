//! `firmware-agent schedule show`: a day's plan, as the scheduler will follow it.

use std::path::Path;

use crate::cli::Exit;
use crate::config::Config;
use crate::schedule::{Timetable, timetable};

pub fn show(config_path: &Path, date: Option<jiff::civil::Date>) -> Exit {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return Exit::InvalidInput;
        }
    };
    let zone = &config.room.timezone;
    let timetable = match Timetable::new(config.schedule.clone(), zone) {
        Ok(timetable) => timetable,
        Err(err) => {
            eprintln!("{}: room.timezone: {err}", config_path.display());
            return Exit::InvalidInput;
        }
    };
    let date = date.unwrap_or_else(|| timetable.date_of(jiff::Timestamp::now()));
    print!("{}", timetable::render(&timetable.plan(date), zone));
    Exit::Success
}
