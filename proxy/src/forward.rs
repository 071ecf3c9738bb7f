//! One client request: through the gate (forwarded, held or refused), to a backend of its
//! colour, and its response back, bodies streamed both ways. `X-Forwarded-For` and `Via` are
//! added, hop-by-hop headers dropped, everything else passed through unchanged. A held
//! request's body is read while it waits (`body.rs`).

mod body;

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cutover_daemon::Classify;
use cutover_proto::Color;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version,
    header::{self, HOST},
};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

pub use self::body::Forwarded;
use self::body::{Waited, wait_reading};
use crate::{
    error::ProxyError,
    hold::{Admission, Gate, InFlight, Release},
    metrics::RequestMetrics,
    upstream::Upstreams,
};

/// What a client receives: a backend's streamed body, or the proxy's own answer.
pub type ProxyBody = Either<Tracked, Full<Bytes>>;

/// Everything a request needs, shared by all of them.
#[derive(Debug)]
pub struct Forwarder {
    gate: Arc<Gate>,
    upstreams: Arc<Upstreams>,
    metrics: RequestMetrics,
    timeout: Duration,
}

/// The `Via` entry of this proxy for a message received over `version`.
fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(if version == Version::HTTP_2 {
        "2 cutover"
    } else {
        "1.1 cutover"
    })
}

fn x_forwarded_for() -> HeaderName {
    HeaderName::from_static("x-forwarded-for")
}

impl Forwarder {
    /// Forwards through `gate` to `upstreams`; a backend that sends no response headers within
    /// `timeout` gets the client a 504.
    pub fn new(gate: Arc<Gate>, upstreams: Arc<Upstreams>, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            gate,
            upstreams,
            metrics: RequestMetrics::new(),
            timeout,
        })
    }

    /// Answers one request from `peer`.
    pub async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let arrived = Instant::now();
        if request.method() == http::Method::CONNECT || request.uri().path_and_query().is_none() {
            return Ok(self.refuse(ProxyError::NotProxied, arrived));
        }
        let bytes = request.body().size_hint().exact().unwrap_or(0);
        let (color, in_flight, request) = match self.gate.admit(bytes) {
            Admission::Forward(color, in_flight) => {
                (color, in_flight, request.map(Forwarded::from))
            }
            Admission::Refused(full) => {
                return Ok(self.refuse(ProxyError::not_held(full), arrived));
            }
            Admission::Held(ticket) => {
                let (parts, body) = request.into_parts();
                match wait_reading(ticket, body, bytes).await {
                    Waited::Released(Release::Forward(color, in_flight), body) => {
                        self.metrics.held_for(arrived.elapsed().as_secs_f64());
                        (color, in_flight, Request::from_parts(parts, body))
                    }
                    Waited::Released(Release::Expired, _) => {
                        return Ok(self.refuse(ProxyError::HoldTimeout, arrived));
                    }
                    Waited::BodyFailed(error) => {
                        let detail = error_chain(&error);
                        return Ok(self.refuse(ProxyError::BodyFailed { detail }, arrived));
                    }
                }
            }
        };
        let response = match self.forward(peer, request, color).await {
            Ok(response) => response.map(|body| {
                Either::Left(Tracked {
                    body,
                    in_flight: Some(in_flight),
                })
            }),
            Err(error) => {
                drop(in_flight);
                return Ok(self.refuse(error, arrived));
            }
        };
        self.metrics.answered(
            Some(color),
            response.status(),
            arrived.elapsed().as_secs_f64(),
        );
        Ok(response)
    }

    /// Records the hold of a request that waited as a bare connection (see `accept.rs`).
    pub fn held_for(&self, held: Duration) {
        self.metrics.held_for(held.as_secs_f64());
    }

    /// The answer to a request whose hold expired before it reached hyper.
    pub fn hold_expired(&self, arrived: Instant) -> Response<ProxyBody> {
        self.refuse(ProxyError::HoldTimeout, arrived)
    }

    async fn forward(
        &self,
        peer: SocketAddr,
        request: Request<Forwarded>,
        color: Color,
    ) -> Result<Response<Incoming>, ProxyError> {
        let backend = self.upstreams.pick(color);
        let (mut parts, body) = request.into_parts();
        let via_in = via(parts.version);
        if parts.version == Version::HTTP_2 {
            join_cookies(&mut parts.headers);
        }
        if !parts.headers.contains_key(HOST) {
            // HTTP/2 carries the host in :authority; an HTTP/1.1 backend needs a Host header.
            if let Some(value) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(HOST, value);
            }
        }
        let path = parts.uri.path_and_query().cloned();
        parts.uri = Uri::builder()
            .scheme(backend.scheme())
            .authority(backend.authority().clone())
            .path_and_query(path.expect("requests without a path are refused in handle"))
            .build()
            .expect("a valid URI's path with a valid authority");
        parts.version = Version::HTTP_11;
        remove_hop_by_hop(&mut parts.headers);
        append_forwarded_for(&mut parts.headers, peer);
        parts.headers.append(header::VIA, via_in);

        let sent = self
            .upstreams
            .client()
            .request(Request::from_parts(parts, body));
        let mut response = match tokio::time::timeout(self.timeout, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                if error.is_connect() {
                    backend.mark_down();
                }
                return Err(ProxyError::Unreachable {
                    color,
                    upstream: backend.url().to_owned(),
                    detail: error_chain(&error),
                });
            }
            Err(_) => {
                return Err(ProxyError::Timeout {
                    color,
                    upstream: backend.url().to_owned(),
                    timeout: self.timeout,
                });
            }
        };
        remove_hop_by_hop(response.headers_mut());
        response
            .headers_mut()
            .append(header::VIA, via(Version::HTTP_11));
        Ok(response)
    }

    fn refuse(&self, error: ProxyError, arrived: Instant) -> Response<ProxyBody> {
        self.refused(&error, arrived);
        error.to_response().map(Either::Right)
    }

    /// Logs and counts an answer of the proxy's own to a request that arrived at `arrived`.
    pub(crate) fn refused(&self, error: &ProxyError, arrived: Instant) {
        tracing::debug!(%error, "answered by the proxy");
        self.metrics.rejected(error.rejection());
        let color = match error {
            ProxyError::Unreachable { color, .. } | ProxyError::Timeout { color, .. } => {
                Some(*color)
            }
            _ => None,
        };
        let status = error.code().http_status();
        self.metrics
            .answered(color, status, arrived.elapsed().as_secs_f64());
    }

    /// Counts a backend's response, its head sent `elapsed` after the request arrived.
    pub(crate) fn answered(&self, color: Option<Color>, status: u16, elapsed: Duration) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        self.metrics.answered(color, status, elapsed.as_secs_f64());
    }

    /// The gate every request passes.
    pub(crate) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The backends.
    pub(crate) fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// The longest wait for a backend's response head.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A backend's response body, counted in flight until its last byte (or until the client
/// goes away): a Pause drains whole exchanges, not only their headers.
#[derive(Debug)]
pub struct Tracked {
    body: Incoming,
    in_flight: Option<InFlight>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Headers that describe one connection, not the message (RFC 9110, section 7.6.1); the relay
/// drops them too, keeping `Transfer-Encoding`, which frames what it passes on as it is.
pub(crate) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    // hyper frames the body itself (Content-Length or chunked) from what the body reports.
    headers.remove(header::TRANSFER_ENCODING);
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    // Every earlier hop, from every X-Forwarded-For line, then the client.
    let ip = peer.ip().to_string();
    join_lines(headers, x_forwarded_for(), b", ", Some(ip.as_bytes()));
}

/// HTTP/2 may split `cookie` into several fields; an HTTP/1.1 backend expects one, joined
/// with "; " (RFC 9113, section 8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_some() {
        join_lines(headers, header::COOKIE, b"; ", None);
    }
}

/// Replaces every `name` line with one: their values joined by `separator`, then `last`.
fn join_lines(headers: &mut HeaderMap, name: HeaderName, separator: &[u8], last: Option<&[u8]>) {
    let mut values: Vec<&[u8]> = headers
        .get_all(&name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    values.extend(last);
    if let Ok(joined) = HeaderValue::from_bytes(&values.join(separator)) {
        headers.insert(name, joined);
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_hop_by_hop_headers_and_those_connection_names() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("if-match", "\"3\""),
            ("content-type", "application/json"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        remove_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["if-match", "content-type"]);
    }

    #[test]
    fn appends_the_client_to_x_forwarded_for() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().expect("addr");
        let mut headers = HeaderMap::new();
        append_forwarded_for(&mut headers, peer);
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3");
        append_forwarded_for(&mut headers, peer);
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3, 10.1.2.3");
        headers.append("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        append_forwarded_for(&mut headers, peer);
        assert_eq!(
            headers["x-forwarded-for"], "10.1.2.3, 10.1.2.3, 192.0.2.1, 10.1.2.3",
            "every earlier line is kept"
        );
    }

    #[test]
    fn joins_cookies_split_by_http2() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", HeaderValue::from_static("a=1"));
        headers.append("cookie", HeaderValue::from_static("b=2"));
        join_cookies(&mut headers);
        assert_eq!(headers.get_all("cookie").iter().count(), 1);
        assert_eq!(headers["cookie"], "a=1; b=2");
    }
}
