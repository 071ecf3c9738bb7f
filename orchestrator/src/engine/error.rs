//! Why an effect of the upgrade failed, with its cause kept (which peer, which call, which
//! status, which partition), and the one rule that says whether trying again may help.

use cutover_proto::v1::Color;

use super::{
    copy::CopyError, discover::DiscoverError, journal::JournalError, peer::PeerError,
    verify::Mismatch,
};

/// What stopped an effect of the driver.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Discovery failed or found the nodes unfit for the plan.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// A copy failed.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// A node or proxy answered a call with an error, during `doing`.
    #[error("{doing}: {error}")]
    Call {
        /// The step, e.g. "pausing", "fencing".
        doing: &'static str,
        /// The peer, the call and its status.
        #[source]
        error: PeerError,
    },
    /// The plan's deadline passed while a pipeline waited for a node that does not answer.
    #[error("past the plan's deadline of {deadline:?} while pipeline {pipeline} waits: {error}")]
    PastDeadline {
        /// The plan's deadline.
        deadline: std::time::Duration,
        /// The pipeline that waits.
        pipeline: String,
        /// What it waits on.
        #[source]
        error: Box<DriveError>,
    },
    /// The plan (journaled with the upgrade) cannot be used: a token file, an endpoint.
    #[error("the plan: {0}")]
    Plan(String),
    /// A fenced node took writes: its lease ran out before the fence was made permanent or
    /// while it was verified.
    #[error(
        "{color} {endpoint} took writes while fenced (seq {fenced} → {now}; its lease ran out?)",
        color = color_name(*color)
    )]
    Moved {
        /// The fenced side.
        color: Color,
        /// The node.
        endpoint: String,
        /// Its head when fenced.
        fenced: u64,
        /// Its head now.
        now: u64,
    },
    /// Verification found the two sides different.
    #[error("verification failed on {color} {endpoint}: {mismatch}", color = color_name(*color))]
    Mismatch {
        /// The side compared against.
        color: Color,
        /// The node compared against.
        endpoint: String,
        /// What differs, and in which partition.
        #[source]
        mismatch: Mismatch,
    },
    /// A rollback would lose green writes that have no reverse program.
    #[error(
        "{documents} documents written on green in {collections} have no reverse program and \
         would be lost; roll back with --discard-green-writes to accept that"
    )]
    WouldLose {
        /// Green writes that cannot flow back.
        documents: u64,
        /// The collections without a reverse program.
        collections: String,
    },
}

fn color_name(color: Color) -> &'static str {
    match color {
        Color::Green => "green",
        _ => "blue",
    }
}

impl DriveError {
    /// A failed call, named by what the driver was doing.
    pub fn call(doing: &'static str) -> impl Fn(PeerError) -> Self {
        move |error| Self::Call { doing, error }
    }

    /// Whether another attempt may succeed, as opposed to an error that would come back the
    /// same way. The rule, per cause:
    ///
    /// - a peer's gRPC status: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`,
    ///   `ABORTED` and `CANCELLED` are transient (the peer is down, slow, busy or restarting);
    ///   `UNKNOWN` and `INTERNAL` only when the status carries a transport error (a connection
    ///   or stream that broke: `hyper`, `h2` or I/O errors in its `source()` chain), since a
    ///   peer that answers `INTERNAL` itself would answer it again; every other code
    ///   (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `UNAUTHENTICATED`, `PERMISSION_DENIED`,
    ///   `NOT_FOUND`, `UNIMPLEMENTED`, …) is final;
    /// - a pull or apply stream that ended early is transient;
    /// - the journal, the plan, a discovery mismatch, a verification mismatch, a fenced node
    ///   that moved, and a rollback that would lose writes are final.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Copy(CopyError::Peer(peer))
            | Self::Discover(DiscoverError::Peer(peer))
            | Self::Call { error: peer, .. } => transient(&peer.status),
            Self::Copy(CopyError::PullBroken { .. } | CopyError::ApplyBroken { .. }) => true,
            Self::Copy(CopyError::Journal(_) | CopyError::Unheard)
            | Self::Journal(_)
            | Self::Discover(DiscoverError::Mismatch(_))
            | Self::Plan(_)
            | Self::PastDeadline { .. }
            | Self::Moved { .. }
            | Self::Mismatch { .. }
            | Self::WouldLose { .. } => false,
        }
    }

    /// Whether a cutover undone for this error may be tried again: not after a verification
    /// mismatch, which would find the same difference.
    pub fn again(&self) -> bool {
        !matches!(self, Self::Mismatch { .. })
    }
}

/// Whether a peer's `status` is worth another try (see [`DriveError::retryable`]).
pub fn transient(status: &tonic::Status) -> bool {
    use tonic::Code;
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled => true,
        Code::Unknown | Code::Internal => from_transport(status),
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::DataLoss
        | Code::Unauthenticated => false,
    }
}

/// Whether a transport error (a broken connection or stream) is in `status`'s source chain.
fn from_transport(status: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        if error.is::<hyper::Error>()
            || error.is::<h2::Error>()
            || error.is::<std::io::Error>()
            || error.is::<tonic::transport::Error>()
        {
            return true;
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};

    use super::*;

    fn peer(status: Status) -> DriveError {
        DriveError::Call {
            doing: "pausing",
            error: PeerError {
                endpoint: "http://127.0.0.1:1".into(),
                call: "Pause",
                status,
            },
        }
    }

    #[test]
    fn retries_are_decided_by_the_grpc_code_and_the_transport() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Cancelled,
        ] {
            assert!(peer(Status::new(code, "x")).retryable(), "{code:?}");
        }
        for code in [
            Code::Unknown,
            Code::Internal,
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::NotFound,
            Code::Unimplemented,
        ] {
            assert!(!peer(Status::new(code, "x")).retryable(), "{code:?}");
        }
        let broken = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset",
        )));
        assert_eq!(broken.code(), Code::Unknown);
        assert!(peer(broken).retryable(), "a broken connection is transient");
        let error = peer(Status::unavailable("down"));
        assert_eq!(
            error.to_string(),
            "pausing: http://127.0.0.1:1: Pause: down",
            "the step, the peer and the call are named"
        );
    }

    #[test]
    fn a_verification_mismatch_is_final_and_not_tried_again() {
        let mismatch = DriveError::Mismatch {
            color: Color::Green,
            endpoint: "http://127.0.0.1:2".into(),
            mismatch: Mismatch::Partitions { from: 64, to: 32 },
        };
        assert!(!mismatch.retryable());
        assert!(!mismatch.again());
        assert!(
            mismatch
                .to_string()
                .starts_with("verification failed on green")
        );
        assert!(peer(Status::unavailable("down")).again());
    }
}
