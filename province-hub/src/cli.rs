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
    /// Land rooms' records bundles from a USB stick in PostgreSQL and write their acknowledgements.
    ///
    /// Each BUNDLE is opened with the province's age identity ([usb] in the
    /// config), checked against the room's pinned key (pinned on first
    /// sight), and its events stored once each with the room's cursor in one
    /// transaction. With --ack-to, the signed acknowledgement of what the hub
    /// now holds is written there for the room's `firmware-agent hub
    /// import-ack`. Importing a bundle again adds nothing.
    ///
    /// Exit codes: 0 every bundle imported; 1 one could not be (PostgreSQL,
    /// writing the acknowledgement, missing earlier records); 2 one was
    /// refused (damaged or truncated, for another province, signed by another
    /// key than the room's pin, from an unknown room) or the config is invalid.
    ImportBundle {
        /// The hub's config file.
        #[arg(long, short, value_name = "PATH", env = "PROVINCE_HUB_CONFIG")]
        config: PathBuf,
        /// Where to write each bundle's acknowledgement (the stick's directory, usually).
        #[arg(long, value_name = "DIR")]
        ack_to: Option<PathBuf>,
        /// The records bundles (`SCHOOL.ROOM.OUTBOX.FIRST-LAST.bundle`).
        #[arg(value_name = "BUNDLE", required = true)]
        bundles: Vec<PathBuf>,
    },
}
