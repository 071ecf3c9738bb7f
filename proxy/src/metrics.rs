//! The proxy's metric names (`cutover_proxy_*`), their descriptions, and the per-request
//! handles, looked up once so the request path does not hash label sets.

use cutover_proto::Color;
use http::StatusCode;
use metrics::{Counter, Histogram, Unit};

/// Client requests answered, by `color` (`none` when the proxy answered itself) and status
/// `class` (`2xx` … `5xx`).
pub const REQUESTS: &str = "cutover_proxy_requests_total";
/// Time from a request's arrival to its response headers, holds included, by `color`.
pub const REQUEST_DURATION: &str = "cutover_proxy_request_duration_seconds";
/// Requests held right now.
pub const HELD_REQUESTS: &str = "cutover_proxy_held_requests";
/// Held requests whose connection waited as a bare socket, its request not read yet
/// (`accept.rs`).
pub const HELD_SOCKETS: &str = "cutover_proxy_held_sockets_total";
/// How long each released request was held.
pub const HOLD_DURATION: &str = "cutover_proxy_hold_duration_seconds";
/// Requests the proxy answered with an error itself, by `reason` (`hold_full`,
/// `hold_timeout`, `upstream`, `not_proxied`).
pub const REJECTED: &str = "cutover_proxy_rejected_requests_total";
/// The current epoch.
pub const EPOCH: &str = "cutover_proxy_epoch";
/// 1 for the active colour, 0 for the other, by `color`.
pub const ACTIVE_COLOR: &str = "cutover_proxy_active_color";
/// Backends that pass their health check, by `color`.
pub const HEALTHY_BACKENDS: &str = "cutover_proxy_healthy_backends";

/// Registers the descriptions (once per process is enough; repeats are harmless).
pub fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        Unit::Count,
        "Client requests answered, by colour and status class."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Arrival to response headers, holds included."
    );
    metrics::describe_gauge!(HELD_REQUESTS, Unit::Count, "Requests held right now.");
    metrics::describe_counter!(
        HELD_SOCKETS,
        Unit::Count,
        "Held requests whose connection waited as a bare socket (past the first 1,000 of a hold)."
    );
    metrics::describe_histogram!(
        HOLD_DURATION,
        Unit::Seconds,
        "How long each released request was held."
    );
    metrics::describe_counter!(
        REJECTED,
        Unit::Count,
        "Requests the proxy refused itself, by reason."
    );
    metrics::describe_gauge!(EPOCH, Unit::Count, "The proxy's current epoch.");
    metrics::describe_gauge!(
        ACTIVE_COLOR,
        Unit::Count,
        "1 for the colour requests go to."
    );
    metrics::describe_gauge!(
        HEALTHY_BACKENDS,
        Unit::Count,
        "Backends passing their health check."
    );
}

/// Why the proxy answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The hold was full.
    HoldFull,
    /// The hold expired.
    HoldTimeout,
    /// The upstream could not be reached or timed out.
    Upstream,
    /// A CONNECT or another request the proxy does not forward.
    NotProxied,
    /// A held request whose body failed while it waited (its client left).
    BadBody,
}

impl Rejection {
    fn label(self) -> &'static str {
        match self {
            Self::HoldFull => "hold_full",
            Self::HoldTimeout => "hold_timeout",
            Self::Upstream => "upstream",
            Self::NotProxied => "not_proxied",
            Self::BadBody => "bad_body",
        }
    }
}

/// Handles for everything the request path records.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    /// [colour: blue, green, none][class: 1xx … 5xx]
    requests: [[Counter; 5]; 3],
    durations: [Histogram; 3],
    hold: Histogram,
    rejected: [Counter; 5],
}

const COLORS: [&str; 3] = ["blue", "green", "none"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl RequestMetrics {
    /// Looks every handle up in the installed recorder.
    pub fn new() -> Self {
        Self {
            requests: COLORS.map(|color| {
                CLASSES.map(|class| metrics::counter!(REQUESTS, "color" => color, "class" => class))
            }),
            durations: COLORS.map(|color| metrics::histogram!(REQUEST_DURATION, "color" => color)),
            hold: metrics::histogram!(HOLD_DURATION),
            rejected: [
                Rejection::HoldFull,
                Rejection::HoldTimeout,
                Rejection::Upstream,
                Rejection::NotProxied,
                Rejection::BadBody,
            ]
            .map(|reason| metrics::counter!(REJECTED, "reason" => reason.label())),
        }
    }

    /// One answered request: `color` is `None` when the proxy answered it itself.
    pub fn answered(&self, color: Option<Color>, status: StatusCode, seconds: f64) {
        let color = match color {
            Some(Color::Blue) => 0,
            Some(Color::Green) => 1,
            None => 2,
        };
        let class = (usize::from(status.as_u16() / 100)).clamp(1, 5) - 1;
        self.requests[color][class].increment(1);
        self.durations[color].record(seconds);
    }

    /// One request the proxy refused itself.
    pub fn rejected(&self, reason: Rejection) {
        let index = match reason {
            Rejection::HoldFull => 0,
            Rejection::HoldTimeout => 1,
            Rejection::Upstream => 2,
            Rejection::NotProxied => 3,
            Rejection::BadBody => 4,
        };
        self.rejected[index].increment(1);
    }

    /// One released request's hold.
    pub fn held_for(&self, seconds: f64) {
        self.hold.record(seconds);
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Publishes the route's epoch and colour.
pub fn route(epoch: u64, active: Color) {
    metrics::gauge!(EPOCH).set(epoch as f64);
    for color in [Color::Blue, Color::Green] {
        let value = if color == active { 1.0 } else { 0.0 };
        metrics::gauge!(ACTIVE_COLOR, "color" => color.as_str()).set(value);
    }
}
