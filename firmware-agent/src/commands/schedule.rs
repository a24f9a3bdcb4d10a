//! `firmware-agent schedule show`: a day's plan, as the scheduler will follow it
//! (with the timetable the hub pushed over the config's, once the room has one).

use std::path::Path;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::exit::Exit;
use crate::schedule::{Timetable, pushed, timetable};
use crate::store::Store;

pub fn show(config_path: &Path, date: Option<jiff::civil::Date>) -> Exit {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return Exit::InvalidInput;
        }
    };
    let config = match with_pushed_timetable(config) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let zone = &config.room.timezone;
    let timetable = match Timetable::new(config.schedule.clone(), zone) {
        Ok(timetable) => timetable,
        Err(err) => {
            eprintln!("{}: room.timezone: {err}", config_path.display());
            return Exit::InvalidInput;
        }
    };
    let date = date.unwrap_or_else(|| timetable.date_of(crate::clock::Clock::now(&SystemClock)));
    print!("{}", timetable::render(&timetable.plan(date), zone));
    Exit::Success
}

/// `config` with the timetable the hub pushed laid over it, saying so, once the room has a database.
fn with_pushed_timetable(config: Config) -> Result<Config, Exit> {
    if !config.database_path().exists() {
        return Ok(config);
    }
    let store = Store::open(&config.database_path(), Arc::new(SystemClock)).map_err(|err| {
        eprintln!("{err}");
        Exit::Failure
    })?;
    let (config, followed) = pushed::in_force(config, &store);
    match followed {
        Ok(Some(version)) => {
            println!(
                "Thời khóa biểu do Sở gửi xuống, phiên bản {version} (the timetable the hub pushed, over the config's)"
            )
        }
        Ok(None) => {}
        Err(set_aside) => eprintln!("{set_aside}"),
    }
    Ok(config)
}
