//! What every cutover daemon (node, proxy, orchestrator) shares: structured logging, the
//! process-wide metrics recorder, the `/metrics`, `/healthz` and `/readyz` endpoints, and the
//! root cancellation token with signal handling and a grace period.
//!
//! Library crates take an already-bound listener and a `CancellationToken`; only the binary
//! calls [`logging::init`], [`metrics::install`] and [`shutdown::Shutdown::install`].

pub mod auth;
pub mod bounds;
pub mod closing;
pub mod code;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod pages;
pub mod serve;
pub mod shutdown;
pub mod tls;

pub use bounds::Bounds;
pub use code::{Classify, ErrorCode};
pub use ops::Readiness;
pub use pages::Pages;
pub use shutdown::Shutdown;
