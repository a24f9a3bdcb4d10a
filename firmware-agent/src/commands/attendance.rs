//! `firmware-agent attendance export`: the roll call of a day or a month as a
//! file for the school office.

use std::path::{Path, PathBuf};

use crate::attendance::export::{Period, csv, xlsx};
use crate::exit::Exit;

pub fn export(period: &str, format: &str, output: Option<&Path>, config_path: &Path) -> Exit {
    let period = match Period::parse(period) {
        Ok(period) => period,
        Err(message) => {
            eprintln!("--period: {message}");
            return Exit::InvalidInput;
        }
    };
    let (config, store) = match super::open_store(config_path) {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    let zone = jiff::tz::TimeZone::get(&config.room.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let rows = match period
        .bounds(&zone)
        .map_err(|err| err.to_string())
        .and_then(|(from, to)| store.marks_between(from, to).map_err(|err| err.to_string()))
    {
        Ok(rows) => rows,
        Err(err) => {
            eprintln!("cannot read the marks: {err}");
            return Exit::Failure;
        }
    };
    let bytes = if format == "csv" {
        csv(&rows, &zone)
    } else {
        match xlsx(&rows, &zone) {
            Ok(bytes) => bytes,
            Err(err) => {
                eprintln!("cannot build the workbook: {err}");
                return Exit::Failure;
            }
        }
    };
    let output = output
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(format!("{}.{format}", period.file_stem())));
    match std::fs::write(&output, bytes) {
        Ok(()) => {
            println!("{}: {} mark(s)", output.display(), rows.len());
            Exit::Success
        }
        Err(err) => {
            eprintln!("{}: cannot write: {err}", output.display());
            Exit::Failure
        }
    }
}
