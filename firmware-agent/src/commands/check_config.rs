//! `firmware-agent check-config PATH`: every problem of a config file, or OK.

use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::exit::Exit;

pub fn run(path: &Path) -> Exit {
    match Config::load(path) {
        Ok(config) => {
            println!(
                "{}: OK (school {}, room {}, data in {})",
                path.display(),
                config.room.school_code,
                config.room.room_id,
                config.storage.data_dir.display()
            );
            if !crate::tablets::material::pdfjs_installed() {
                println!(
                    "warning: pdf.js is missing from {}: PDFs cannot be shown when the class follows the teacher; install the Debian package libjs-pdf",
                    crate::tablets::material::PDFJS_DIR
                );
            }
            Exit::Success
        }
        Err(err) => {
            eprintln!("{err}");
            if let ConfigError::Invalid { problems, .. } = &err {
                eprintln!("{} problem(s) found", problems.len());
            }
            Exit::InvalidInput
        }
    }
}
