//! How every command ends, the daemon included: the exit codes scripts and
//! systemd rely on, in one place that the command line, the commands and the
//! daemon all use.

/// Exit codes, the same for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Success = 0,
    /// 1: could not be done (a port in use, a database that cannot be opened,
    /// an agent or hub that does not answer). For `face compare`: different people.
    Failure = 1,
    /// 2: the input is wrong (command line, config file, CSV file); fix it and retry.
    InvalidInput = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}
