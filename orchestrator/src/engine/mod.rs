//! The migration engine (issue #4): discovery, copy cycles (pull → transform → apply →
//! journal), the threshold engine, the journal, and [`upgrade::Engine`], which ties them
//! together for the gRPC service and the embedded mode.

pub mod copy;
pub mod discover;
pub mod driver;
pub mod fields;
pub mod journal;
pub mod metrics;
pub mod peer;
pub mod plan;
pub mod routes;
pub mod sample;
pub mod state;
pub mod threshold;
pub mod transform;
pub mod upgrade;

pub use upgrade::{Engine, EngineError};
