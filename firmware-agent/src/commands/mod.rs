//! One file per command-line command that is not the daemon itself.

pub mod attendance;
pub mod camera;
pub mod check_config;
pub mod devices;
pub mod face;
pub mod hub;
pub mod lesson;
pub mod roster;
pub mod schedule;
pub mod tls;

use std::path::Path;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::exit::Exit;
use crate::store::Store;

/// Loads the config and opens its database, for commands that work on the room's data.
/// Prints what went wrong and returns the exit code when either fails.
pub fn open_store(config_path: &Path) -> Result<(Config, Store), Exit> {
    let config = Config::load(config_path).map_err(|err| {
        eprintln!("{err}");
        Exit::InvalidInput
    })?;
    let store = Store::open(&config.database_path(), Arc::new(SystemClock)).map_err(|err| {
        eprintln!("{err}");
        Exit::Failure
    })?;
    Ok((config, store))
}
