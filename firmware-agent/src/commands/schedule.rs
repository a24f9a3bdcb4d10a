//! `firmware-agent schedule show`: a day's plan, as the scheduler will follow it
//! (with the timetable the hub pushed over the config's, once the room has one).

use std::path::Path;

use crate::cli::Exit;
use crate::config::Config;
use crate::schedule::{Timetable, pushed, timetable};

pub fn show(config_path: &Path, date: Option<jiff::civil::Date>) -> Exit {
    let config = match Config::load(config_path) {
        Ok(config) if config.database_path().exists() => match super::open_store(config_path) {
            Ok((config, store)) => match pushed::in_force(config, &store) {
                (config, Ok(Some(version))) => {
                    println!("Thời khóa biểu do Sở gửi xuống, phiên bản {version} (the timetable the hub pushed, over the config's)");
                    config
                }
                (config, Ok(None)) => config,
                (config, Err(message)) => {
                    eprintln!("{message}");
                    config
                }
            },
            Err(exit) => return exit,
        },
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
