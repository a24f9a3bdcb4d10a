//! How every command ends: the exit codes scripts and systemd rely on.

/// Exit codes, the same for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Success = 0,
    /// 1: could not be done (PostgreSQL unreachable, a port in use).
    Failure = 1,
    /// 2: the input is wrong (command line or config file); fix it and retry.
    InvalidInput = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}
