//! The cutover proxy: a hyper reverse proxy in front of the service that routes to the active
//! colour and, during a cutover, holds new requests, drains in-flight ones and switches, so
//! clients see a pause instead of an error (see `docs/ARCHITECTURE.md`, "request → hold →
//! switch").
//!
//! - [`route`]: the persisted route and its pure transitions;
//! - [`hold`]: the gate every request passes (forward, hold, refuse) and the in-flight count;
//! - [`control`]: Pause, Switch, Resume and expiry; [`grpc`]: `ProxyControl` over it;
//! - `relay`: HTTP/1.1 requests to HTTP/1.1 backends, both connections driven by one task;
//!   [`forward`]: every other request (HTTP/2 clients, h2c backends), through hyper;
//!   [`upstream`]: backends, their connection pools and health;
//! - [`server`]: the two listeners, and `accept`: client connections, which wait for the end
//!   of a hold as bare sockets when they arrive during one, each served on one of the
//!   `workers` (a single-threaded runtime per core); [`error`] and [`metrics`].

mod accept;
pub mod control;
pub mod error;
pub mod forward;
pub mod grpc;
pub mod hold;
pub mod metrics;
mod relay;
pub mod route;
pub mod server;
pub mod upstream;
mod workers;

// The relay's head parsing and body framing, for the fuzz targets only.
#[doc(hidden)]
pub use relay::wire as relay_wire;

pub use control::HoldConfig;
pub use hold::Limits;
pub use route::{Epoch, RouteState};
pub use server::{Proxy, ProxyConfig, ServeError};
pub use upstream::UpstreamProtocol;
