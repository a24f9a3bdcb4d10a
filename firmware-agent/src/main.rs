//! The `firmware-agent` command: parses the command line and hands over.

use std::process::ExitCode;

use clap::Parser;
use firmware_agent::cli::{Cli, Command, FaceCommand, RosterCommand};
use firmware_agent::{commands, daemon};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = match cli.command {
        Command::Run { config } => daemon::run(&config),
        Command::CheckConfig { path } => commands::check_config::run(&path),
        Command::Roster(RosterCommand::Import { file, config }) => commands::roster::import(&file, &config),
        Command::Face(FaceCommand::Enroll { student, images, config }) => commands::face::enroll(&student, &images, &config),
        Command::Face(FaceCommand::Forget { student, reason, config }) => commands::face::forget(&student, &reason, &config),
        Command::Face(FaceCommand::Detect { image, config }) => commands::face::detect(&image, config.as_deref()),
        Command::Face(FaceCommand::Compare { first, second, config }) => {
            commands::face::compare(&first, &second, config.as_deref())
        }
    };
    exit.into()
}
