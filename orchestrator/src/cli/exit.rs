//! Exit statuses that mean something to scripts, and the errors that lead to them.

use std::{error::Error, path::PathBuf};

use cutover_daemon::auth::TokenError;

use crate::engine::plan::PlanError;

/// The exit statuses of `cutover`.
pub mod codes {
    /// The command did what it was asked.
    pub const OK: u8 = 0;
    /// The command ran and failed: an upgrade failed or was refused, a daemon stopped on an
    /// error, or a demo check did not hold.
    pub const FAILED: u8 = 1;
    /// The command line is wrong (clap's own usage errors exit with this status too).
    pub const USAGE: u8 = 2;
    /// The orchestrator could not be reached.
    pub const UNREACHABLE: u8 = 3;
}

/// What ended a `cutover` command unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command ran and failed; the chain of causes says why.
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
    /// `--orchestrator` is not a URI.
    #[error(
        "--orchestrator {address:?} is not a valid address ({source}); \
         write it like http://127.0.0.1:7171"
    )]
    BadAddress {
        /// The address as given.
        address: String,
        /// Why it does not parse.
        source: tonic::transport::Error,
    },
    /// The orchestrator could not be connected to, or the connection broke (gRPC UNAVAILABLE).
    #[error(
        "cannot reach the orchestrator at {address}: {} (is `cutover orchestrator` running? \
         set --orchestrator or CUTOVER_ORCHESTRATOR)",
        causes(.source.as_ref())
    )]
    Unreachable {
        /// The address as given.
        address: String,
        /// The transport error or the UNAVAILABLE status.
        source: Box<dyn Error + Send + Sync + 'static>,
    },
    /// TLS with the orchestrator failed: a certificate or CA problem, said with what to do.
    #[error("TLS with the orchestrator at {address} failed: {advice}")]
    Tls {
        /// The address as given.
        address: String,
        /// What went wrong and what to do (`cutover_daemon::tls::explain`).
        advice: String,
    },
    /// The orchestrator answered UNAUTHENTICATED.
    #[error(
        "the orchestrator at {address} refused the credentials: {message}; check that \
         --token-file (or CUTOVER_TOKEN_FILE) names the file holding the orchestrator's token"
    )]
    Unauthenticated {
        /// The address as given.
        address: String,
        /// The server's message.
        message: String,
    },
    /// The orchestrator refused the request (INVALID_ARGUMENT, ALREADY_EXISTS,
    /// FAILED_PRECONDITION); its message says what to change and is shown as is.
    #[error("{message}")]
    Refused {
        /// The gRPC code of the refusal.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// The orchestrator failed a call for another reason.
    #[error("the orchestrator failed `{call}` ({code:?}): {message}")]
    Rpc {
        /// The RPC.
        call: &'static str,
        /// The gRPC code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// The token file could not be used.
    #[error("{0}; check --token-file (or CUTOVER_TOKEN_FILE)")]
    Token(#[from] TokenError),
    /// The token cannot be sent as gRPC metadata.
    #[error(
        "the token in {} holds characters that cannot be sent in a header; \
         use the printable ASCII token the orchestrator was given",
        path.display()
    )]
    TokenNotAscii {
        /// The token file.
        path: PathBuf,
    },
    /// The plan file could not be read.
    #[error(
        "cannot read the plan file {}: {source}; check the path and that the file is readable",
        path.display()
    )]
    PlanUnreadable {
        /// The path as given.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The plan was refused by the check the orchestrator runs too (so the message is the one
    /// it would answer): the file, the field and the fix.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A dry run's transforms failed on some sampled documents.
    #[error(
        "the transforms failed on {failed} of {sampled} sampled documents (see the errors in \
         the output); fix the plan's transforms before starting the upgrade"
    )]
    DryRunFailed {
        /// Documents whose transform failed.
        failed: u64,
        /// Documents sampled.
        sampled: u64,
    },
    /// A watched upgrade ended in ABORTED or FAILED.
    #[error("upgrade {upgrade_id} ended in phase {phase}: {error}")]
    UpgradeEnded {
        /// The upgrade.
        upgrade_id: String,
        /// `aborted` or `failed`.
        phase: &'static str,
        /// The status's error.
        error: String,
    },
    /// The watch stream ended while the upgrade was still moving.
    #[error(
        "the orchestrator ended the watch while the upgrade was {phase} (is it shutting \
         down?); run `cutover upgrade status` to see where it stands"
    )]
    WatchEnded {
        /// The phase of the last event.
        phase: &'static str,
    },
    /// Standard output could not be written.
    #[error("cannot write to standard output: {0}")]
    Stdout(#[source] std::io::Error),
}

impl CliError {
    /// The exit status this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::BadAddress { .. } => codes::USAGE,
            Self::Unreachable { .. } => codes::UNREACHABLE,
            Self::Failed(_)
            | Self::Unauthenticated { .. }
            | Self::Tls { .. }
            | Self::Refused { .. }
            | Self::Rpc { .. }
            | Self::Token(_)
            | Self::TokenNotAscii { .. }
            | Self::PlanUnreadable { .. }
            | Self::Plan(_)
            | Self::DryRunFailed { .. }
            | Self::UpgradeEnded { .. }
            | Self::WatchEnded { .. }
            | Self::Stdout(_) => codes::FAILED,
        }
    }
}

/// An error and its causes on one line, each cause once. A gRPC status contributes its
/// message, not its debug-like `Display`.
fn causes(error: &(dyn Error + 'static)) -> String {
    let mut text = match error.downcast_ref::<tonic::Status>() {
        Some(status) => status.message().to_owned(),
        None => error.to_string(),
    };
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_exits_3_and_says_what_to_do() {
        let error = CliError::Unreachable {
            address: "http://127.0.0.1:1".to_owned(),
            source: Box::new(tonic::Status::unavailable("tcp connect error")),
        };
        assert_eq!(error.exit_code(), codes::UNREACHABLE);
        let message = error.to_string();
        assert!(
            message.contains("http://127.0.0.1:1: tcp connect error"),
            "{message}"
        );
        assert!(message.contains("CUTOVER_ORCHESTRATOR"), "{message}");
    }

    #[test]
    fn refusals_and_failures_exit_1_and_bad_addresses_exit_2() {
        let refused = CliError::Refused {
            code: tonic::Code::AlreadyExists,
            message: "upgrade u1 is in progress".to_owned(),
        };
        assert_eq!(refused.exit_code(), codes::FAILED);
        assert_eq!(refused.to_string(), "upgrade u1 is in progress");
        let unauthenticated = CliError::Unauthenticated {
            address: "a".to_owned(),
            message: "wrong bearer token".to_owned(),
        };
        assert_eq!(unauthenticated.exit_code(), codes::FAILED);
        assert!(unauthenticated.to_string().contains("--token-file"));
        let plan = CliError::from(PlanError {
            file: "plan.toml".to_owned(),
            what: "max_cycles: must be at least 1".to_owned(),
        });
        assert_eq!(plan.exit_code(), codes::FAILED);
        assert_eq!(
            plan.to_string(),
            "plan.toml: max_cycles: must be at least 1"
        );
        let unreadable = CliError::PlanUnreadable {
            path: "nowhere/plan.toml".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(unreadable.exit_code(), codes::FAILED);
        assert!(
            unreadable
                .to_string()
                .starts_with("cannot read the plan file nowhere/plan.toml: "),
            "{unreadable}"
        );
        let dry = CliError::DryRunFailed {
            failed: 1,
            sampled: 3,
        };
        assert_eq!(dry.exit_code(), codes::FAILED);
        let bad = cutover_proto::endpoint("http://[::1").expect_err("not a URI");
        let bad = CliError::BadAddress {
            address: "http://[::1".to_owned(),
            source: bad,
        };
        assert_eq!(bad.exit_code(), codes::USAGE);
    }

    #[test]
    fn causes_are_listed_once() {
        let io = std::io::Error::other("connection refused");
        let status = tonic::Status::from_error(Box::new(io));
        assert_eq!(causes(&status), "connection refused");
    }
}
