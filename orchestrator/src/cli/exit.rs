//! Exit statuses that mean something to scripts, and the errors that lead to them.

/// The exit statuses of `cutover`.
pub mod codes {
    /// The command did what it was asked.
    pub const OK: u8 = 0;
    /// The command ran and failed: an upgrade failed or was refused, a daemon stopped on an
    /// error, a demo check did not hold, or the command is not implemented in this build.
    pub const FAILED: u8 = 1;
    /// The command line is wrong (clap's own usage errors exit with this status too).
    pub const USAGE: u8 = 2;
    /// The orchestrator could not be reached.
    pub const UNREACHABLE: u8 = 3;
}

/// What ended a `cutover` command unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The subcommand exists in the interface but this build does not implement it yet.
    #[error(
        "`cutover {command}` is not implemented in this build yet (issue #{issue}); \
         nothing was started"
    )]
    NotImplemented {
        /// The subcommand, as typed.
        command: &'static str,
        /// The issue that implements it.
        issue: u32,
    },
    /// The command ran and failed; the chain of causes says why.
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl CliError {
    /// The exit status this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotImplemented { .. } | Self::Failed(_) => codes::FAILED,
        }
    }
}
