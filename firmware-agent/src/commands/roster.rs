//! `firmware-agent roster import FILE.csv` (all rows or none, face templates by
//! the rule of [`crate::store::roster`]) and `roster export`.

use std::path::Path;

use crate::exit::Exit;
use crate::roster::parse_csv;

pub fn import(file: &Path, config_path: &Path) -> Exit {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("{}: cannot read: {err}", file.display());
            return Exit::InvalidInput;
        }
    };
    let roster = match parse_csv(&bytes) {
        Ok(roster) => roster,
        Err(err) => {
            eprintln!("{}: {err}", file.display());
            return Exit::InvalidInput;
        }
    };
    let (_config, store) = match super::open_store(config_path) {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    match store.import_roster(&roster) {
        Ok(summary) => {
            println!(
                "{}: imported {} pupil(s) in {} class(es) and {} teacher(s)",
                file.display(),
                summary.pupils,
                summary.classes,
                summary.teachers
            );
            if summary.erased > 0 {
                println!(
                    "{}: the face templates of {} pupil(s) without face consent were erased; the erasures are recorded for the hub",
                    file.display(),
                    summary.erased
                );
            }
            Exit::Success
        }
        Err(err) => {
            eprintln!("{}: nothing was imported: {err}", file.display());
            Exit::Failure
        }
    }
}

pub fn export(config_path: &Path) -> Exit {
    let (_config, store) = match super::open_store(config_path) {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    let roster = match store.roster() {
        Ok(roster) => roster,
        Err(err) => {
            eprintln!("{err}");
            return Exit::Failure;
        }
    };
    match crate::roster::write_csv(&roster, std::io::stdout().lock()) {
        Ok(()) => Exit::Success,
        Err(err) => {
            eprintln!("cannot write the roster: {err}");
            Exit::Failure
        }
    }
}
