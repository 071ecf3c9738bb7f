//! One error classification for every boundary, mapped once to both an HTTP status and a gRPC
//! code, so no handler builds a status by hand and HTTP and gRPC callers see the same answer.

/// Declares [`ErrorCode`] and [`ErrorCode::ALL`] from one list, so that no code can be
/// missing from `ALL`: the tests that check every code an API answers is documented (the
/// node's OpenAPI description) iterate it.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $code:ident,)*) => {
        /// What kind of failure an error is, independent of the protocol that reports it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$code,)*];
        }
    };
}

error_codes! {
    /// The request is malformed: bad JSON, a bad name, an out-of-range value.
    InvalidArgument,
    /// The thing asked for does not exist.
    NotFound,
    /// A condition of the request does not hold (`If-Match`, a stale epoch).
    PreconditionFailed,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// The method is not supported on this path.
    MethodNotAllowed,
    /// The node refuses client writes because it is fenced; retry elsewhere or later.
    Fenced,
    /// A position beyond what exists (a `since` above the head).
    OutOfRange,
    /// Credentials are missing or wrong.
    Unauthenticated,
    /// What the request would create exists already (an upgrade in progress).
    AlreadyExists,
    /// The request reached a server that does not serve it (a cluster node that does not
    /// own the document, or one of another cluster): HTTP 421.
    Misdirected,
    /// Temporarily unable to serve; retry.
    Unavailable,
    /// A server this one forwards to could not be reached or failed (a proxy's upstream).
    BadGateway,
    /// Something did not finish in the time allowed (a drain, an upstream response).
    DeadlineExceeded,
    /// A bug or a broken store: nothing the caller can fix.
    Internal,
}

impl ErrorCode {
    /// The short machine-readable name used in JSON error bodies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Fenced => "fenced",
            Self::OutOfRange => "out_of_range",
            Self::Unauthenticated => "unauthenticated",
            Self::AlreadyExists => "already_exists",
            Self::Misdirected => "misdirected",
            Self::Unavailable => "unavailable",
            Self::BadGateway => "bad_gateway",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status that reports this code.
    pub fn http_status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::InvalidArgument | Self::OutOfRange => S::BAD_REQUEST,
            Self::NotFound => S::NOT_FOUND,
            Self::PreconditionFailed => S::PRECONDITION_FAILED,
            Self::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            Self::Fenced | Self::Unavailable => S::SERVICE_UNAVAILABLE,
            Self::Unauthenticated => S::UNAUTHORIZED,
            Self::AlreadyExists => S::CONFLICT,
            Self::Misdirected => S::MISDIRECTED_REQUEST,
            Self::BadGateway => S::BAD_GATEWAY,
            Self::DeadlineExceeded => S::GATEWAY_TIMEOUT,
            Self::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code that reports this code.
    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code as C;
        match self {
            Self::InvalidArgument | Self::PayloadTooLarge => C::InvalidArgument,
            Self::NotFound => C::NotFound,
            Self::PreconditionFailed | Self::Fenced | Self::Misdirected => C::FailedPrecondition,
            Self::MethodNotAllowed => C::Unimplemented,
            Self::OutOfRange => C::OutOfRange,
            Self::Unauthenticated => C::Unauthenticated,
            Self::AlreadyExists => C::AlreadyExists,
            Self::Unavailable | Self::BadGateway => C::Unavailable,
            Self::DeadlineExceeded => C::DeadlineExceeded,
            Self::Internal => C::Internal,
        }
    }
}

/// An error that knows its [`ErrorCode`].
pub trait Classify: std::error::Error {
    /// The classification of this error.
    fn code(&self) -> ErrorCode;

    /// The error as a gRPC status whose message is the error's display text.
    fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code().grpc_code(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_holds_every_code_once_with_a_name_of_its_own() {
        let names: std::collections::HashSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "{names:?}");
        assert!(ErrorCode::ALL.contains(&ErrorCode::Internal));
    }
}
