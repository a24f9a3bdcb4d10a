//! The command line: what the province's IT staff type. Exit codes are
//! [`crate::exit::Exit`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The provincial hub: pulls every classroom's records and lands them in
/// PostgreSQL, each exactly once.
///
/// Exit codes: 0 done; 1 could not be done (see the message); 2 invalid input
/// (command line or config file).
#[derive(Debug, Parser)]
#[command(
    name = "province-hub",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub in the foreground until SIGTERM or SIGINT.
    Run {
        /// The hub's config file.
        #[arg(long, short, value_name = "PATH", env = "PROVINCE_HUB_CONFIG")]
        config: PathBuf,
    },
    /// Check a config file and print every problem as PATH:LINE:COL; exit 0 if valid, 2 if not.
    CheckConfig {
        /// The config file to check.
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
}
