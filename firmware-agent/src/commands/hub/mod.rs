//! `firmware-agent hub …`: the room as the provincial hub sees it, one file
//! per subcommand. Over the network: `pull` and `status` (the reference hub
//! client). On a USB stick, for rooms with no network: `export` (records
//! out), `import-ack` (the province's acknowledgement in), `import` (a
//! roster or content bundle from the office in), `keys` (the room's public
//! keys, for the province to pin ahead).
//!
//! # Design
//! The stick's commands print what they did on stdout, and what went wrong on
//! stderr saying what, where and how to fix it; each also records its outcome
//! for the panel (`hub::usb`). Exit 0: done (or nothing to do); 1: could not
//! be done (the stick or the database refused, nothing was lost); 2: invalid
//! input (a missing key in the config, a bundle refused: damaged, truncated,
//! for another room, signed by another key, an acknowledgement beyond what
//! was handed out).

mod export;
mod import;
mod import_ack;
mod keys;
mod pull;

pub use export::export;
pub use import::import;
pub use import_ack::import_ack;
pub use keys::keys;
pub use pull::{Connection, PullOptions, pull, status};

use std::path::Path;

use crate::config::Config;
use crate::exit::Exit;
use crate::hub::usb::{self, Outcome};
use crate::store::Store;

/// Opens the room's config and store, runs a stick's command on them, and
/// ends as [`Ending::finish`] says.
fn run_on_store<A: ?Sized>(
    config_path: &Path,
    argument: &A,
    run: fn(&Config, &Store, &A) -> Result<Ending, Ending>,
) -> Exit {
    let (config, store) = match crate::commands::open_store(config_path) {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    let ending = run(&config, &store, argument).unwrap_or_else(|ending| ending);
    ending.finish(&config, &store)
}

/// The province's verifying key from the config, or the ending that says it is missing.
fn province_signing_key(config: &Config) -> Result<ed25519_dalek::VerifyingKey, Ending> {
    config.hub.province_signing_key().map_err(|err| {
        Ending::failed(
            Exit::InvalidInput,
            "Máy của lớp chưa có khóa của Sở: báo cán bộ tin học",
            err.to_string(),
        )
    })
}

/// How a stick's command ends: printed, recorded for the panel, and its exit code.
struct Ending {
    exit: Exit,
    /// For the teacher (Vietnamese), shown on the panel.
    message: String,
    /// For IT staff (English), printed.
    detail: String,
}

impl Ending {
    fn done(message: impl Into<String>, detail: impl Into<String>) -> Ending {
        Ending {
            exit: Exit::Success,
            message: message.into(),
            detail: detail.into(),
        }
    }

    fn failed(exit: Exit, message: impl Into<String>, detail: impl Into<String>) -> Ending {
        Ending {
            exit,
            message: message.into(),
            detail: detail.into(),
        }
    }

    /// The ending a bundle error means: refused input, or a failure to read or write.
    fn bundle(err: &classroom_bundle::BundleError, message: &str) -> Ending {
        let exit = if err.is_refused_input() {
            Exit::InvalidInput
        } else {
            Exit::Failure
        };
        let message = match err {
            classroom_bundle::BundleError::StickFull { .. } => {
                "USB đã đầy: chưa chép được, dữ liệu vẫn còn nguyên trong lớp; hãy dùng USB còn trống"
            }
            _ => message,
        };
        Ending::failed(exit, message, err.to_string())
    }

    /// Prints the ending, records it for the panel and gives its exit code.
    fn finish(self, config: &Config, store: &Store) -> Exit {
        if self.exit == Exit::Success {
            println!("{}", self.detail);
        } else {
            eprintln!("{}", self.detail);
        }
        let outcome = Outcome::new(
            store.clock().now(),
            self.exit == Exit::Success,
            self.message,
            self.detail,
        );
        usb::record(&config.storage.data_dir, &outcome);
        self.exit
    }
}

/// The room as bundles name it.
fn room_of(config: &Config) -> classroom_bundle::Room {
    classroom_bundle::Room {
        school_code: config.room.school_code.clone(),
        room_id: config.room.room_id.clone(),
    }
}

/// Refuses a file from the province meant for another room.
fn check_room(file: &Path, config: &Config, room: &classroom_bundle::Room) -> Result<(), Ending> {
    if *room == room_of(config) {
        return Ok(());
    }
    Err(Ending::failed(
        Exit::InvalidInput,
        "Tệp trên USB dành cho lớp khác; không dùng",
        format!(
            "{}: this file is for {}/{}, but this room is {}/{}; nothing was applied\n  hint: give the room the file made for it (its name starts with {}.{})",
            file.display(),
            room.school_code,
            room.room_id,
            config.room.school_code,
            config.room.room_id,
            config.room.school_code,
            config.room.room_id
        ),
    ))
}
