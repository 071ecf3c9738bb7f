//! What the proxy answers itself instead of a backend's response, and its control errors.
//!
//! Client-facing errors are JSON, like the node's: `{"error": "<code>", "detail": "<text>"}`,
//! plus `"color"` and `"upstream"` when a backend failed, so a client (and whoever reads its
//! logs) can tell a proxy refusal from a backend failure.

use std::time::Duration;

use bytes::Bytes;
use cutover_daemon::{Classify, ErrorCode};
use cutover_proto::Color;
use http::{HeaderValue, Response, header};
use http_body_util::Full;

use crate::{hold::NotHeld, metrics::Rejection, route::RouteFileError};

/// Why the proxy answered a client request itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The hold is at its request or byte bound.
    #[error(
        "the proxy is holding requests for a cutover and its hold is full ({what}); retry in a second"
    )]
    HoldFull {
        /// Which bound.
        what: &'static str,
    },
    /// The hold ended without a Switch or Resume.
    #[error(
        "the proxy held this request for a cutover that did not finish within the hold timeout; retry"
    )]
    HoldTimeout,
    /// A held request's body failed while it waited: its client left, or sent a body that
    /// does not parse.
    #[error("the request body failed while the request was held for a cutover: {detail}")]
    BodyFailed {
        /// What hyper said.
        detail: String,
    },
    /// CONNECT (tunnels) and requests without a path are not proxied.
    #[error("the cutover proxy forwards requests for paths; CONNECT and tunnels are not supported")]
    NotProxied,
    /// The backend could not be reached, or failed mid-response.
    #[error("{color} backend {upstream} failed: {detail}")]
    Unreachable {
        /// Its colour.
        color: Color,
        /// Its URL.
        upstream: String,
        /// What the client library said.
        detail: String,
    },
    /// The backend did not answer in time.
    #[error("{color} backend {upstream} sent no response within {timeout:?}")]
    Timeout {
        /// Its colour.
        color: Color,
        /// Its URL.
        upstream: String,
        /// The timeout.
        timeout: Duration,
    },
}

impl Classify for ProxyError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::HoldFull { .. } | Self::HoldTimeout => ErrorCode::Unavailable,
            Self::BodyFailed { .. } => ErrorCode::InvalidArgument,
            Self::NotProxied => ErrorCode::MethodNotAllowed,
            Self::Unreachable { .. } => ErrorCode::BadGateway,
            Self::Timeout { .. } => ErrorCode::DeadlineExceeded,
        }
    }
}

impl ProxyError {
    /// The refusal of a request the hold cannot take.
    pub fn not_held(full: NotHeld) -> Self {
        Self::HoldFull {
            what: match full {
                NotHeld::Count => "--max-held requests are held",
                NotHeld::Bytes => "--max-held-bytes of request bodies are held",
                NotHeld::Stopping => "the proxy is shutting down",
            },
        }
    }

    /// How it is counted in `cutover_proxy_rejected_requests_total`.
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::HoldFull { .. } => Rejection::HoldFull,
            Self::HoldTimeout => Rejection::HoldTimeout,
            Self::Unreachable { .. } | Self::Timeout { .. } => Rejection::Upstream,
            Self::NotProxied => Rejection::NotProxied,
            Self::BodyFailed { .. } => Rejection::BadBody,
        }
    }

    /// The response a client gets: the status of its code, a JSON body, and `Retry-After: 1`
    /// when retrying soon is the right thing to do.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body())));
        *response.status_mut() = self.code().http_status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.retry_soon() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }

    /// The same response as [`Self::to_response`], as HTTP/1.1 bytes appended to `out`; with
    /// `Connection: close` when `close`, and without its body (its length kept) for a HEAD.
    pub(crate) fn write_http1(&self, close: bool, head_only: bool, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let status = self.code().http_status();
        let body = self.body();
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        );
        if self.retry_soon() {
            out.extend_from_slice(b"retry-after: 1\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(body.as_bytes());
        }
    }

    fn retry_soon(&self) -> bool {
        matches!(self, Self::HoldFull { .. } | Self::HoldTimeout)
    }

    fn body(&self) -> String {
        let mut body = serde_json::json!({
            "error": self.code().as_str(),
            "detail": self.to_string(),
        });
        if let Self::Unreachable {
            color, upstream, ..
        }
        | Self::Timeout {
            color, upstream, ..
        } = self
        {
            body["color"] = color.as_str().into();
            body["upstream"] = upstream.as_str().into();
        }
        let mut text = body.to_string();
        text.push('\n');
        text
    }
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The route refused the command (a stale epoch, no hold).
    #[error(transparent)]
    Refused(#[from] crate::route::Refusal),
    /// The route could not be persisted; nothing was released.
    #[error("cannot persist the route: {0}")]
    Persist(#[from] RouteFileError),
    /// Requests to the old colour are still in flight: switching now would have both colours
    /// serve at once.
    #[error(
        "{in_flight} request(s) are still in flight to {active}; wait for Pause to return before Switch"
    )]
    StillInFlight {
        /// How many.
        in_flight: u64,
        /// Their colour.
        active: Color,
    },
    /// The drain did not finish; the proxy resumed forwarding on its colour.
    #[error(
        "{in_flight} request(s) still in flight after the drain timeout of {timeout:?}; the proxy resumed forwarding to {active}"
    )]
    DrainTimeout {
        /// How many were left.
        in_flight: u64,
        /// The drain timeout.
        timeout: Duration,
        /// Where it forwards now.
        active: Color,
    },
    /// A value of the request is out of range.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Classify for ControlError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Refused(refusal) => refusal.code(),
            Self::Persist(error) => error.code(),
            Self::StillInFlight { .. } => ErrorCode::PreconditionFailed,
            Self::DrainTimeout { .. } => ErrorCode::DeadlineExceeded,
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
        }
    }
}

impl From<ControlError> for tonic::Status {
    fn from(error: ControlError) -> Self {
        error.to_status()
    }
}
