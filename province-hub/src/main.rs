//! The `province-hub` command: parses the command line and hands over.

use std::process::ExitCode;

use clap::Parser;
use province_hub::cli::{Cli, Command};
use province_hub::config::{Config, ConfigError};
use province_hub::daemon;
use province_hub::exit::Exit;

fn main() -> ExitCode {
    let exit = match Cli::parse().command {
        Command::Run { config } => daemon::run(&config),
        Command::CheckConfig { path } => check_config(&path),
        Command::ImportBundle {
            config,
            ack_to,
            bundles,
        } => province_hub::usb::run(&config, &bundles, ack_to.as_deref()),
    };
    exit.into()
}

fn check_config(path: &std::path::Path) -> Exit {
    match Config::load(path) {
        Ok(config) => {
            println!(
                "{}: OK ({} room(s), health on http://{})",
                path.display(),
                config.rooms.len(),
                config.http.listen
            );
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
