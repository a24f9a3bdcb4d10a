//! `firmware-agent lesson summary`: a lesson's roll call, answers and score
//! per pupil as a file for the teacher and the school office.

use std::path::Path;

use crate::exit::Exit;
use crate::tablets::summary;

pub fn summary(lesson_id: &str, out: &Path, config_path: &Path) -> Exit {
    let format = out.extension().and_then(|ext| ext.to_str());
    if !matches!(format, Some("xlsx" | "csv")) {
        eprintln!(
            "--out {}: name a .xlsx file (Excel) or a .csv file",
            out.display()
        );
        return Exit::InvalidInput;
    }
    let (config, store) = match super::open_store(config_path) {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    let class = Some(config.attendance.class.as_str()).filter(|class| !class.is_empty());
    let rows = match store.lesson_rows(lesson_id, class) {
        Ok(rows) => rows,
        Err(err) => {
            eprintln!("cannot read lesson {lesson_id}: {err}");
            return Exit::Failure;
        }
    };
    if rows.questions.is_empty() && rows.pupils.iter().all(|p| p.attendance.is_none()) {
        eprintln!(
            "lesson {lesson_id} has no roll call and no questions: check the id (as the roll call names it, such as 2026-09-07/Sáng/1)"
        );
        return Exit::InvalidInput;
    }
    let bytes = if format == Some("csv") {
        summary::csv(&rows)
    } else {
        match summary::xlsx(&rows) {
            Ok(bytes) => bytes,
            Err(err) => {
                eprintln!("cannot build the workbook: {err}");
                return Exit::Failure;
            }
        }
    };
    match std::fs::write(out, bytes) {
        Ok(()) => {
            println!(
                "{}: {} pupil(s), {} question(s)",
                out.display(),
                rows.pupils.len(),
                rows.questions.len()
            );
            Exit::Success
        }
        Err(err) => {
            eprintln!("{}: cannot write: {err}", out.display());
            Exit::Failure
        }
    }
}
