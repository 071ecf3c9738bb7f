//! The migration engine: discovery, copy cycles (pull → transform → apply → journal), the
//! threshold engine, the journal, the cutover and its verification, reverse sync and the
//! rollback, and [`upgrade::Engine`], which ties them together for the gRPC service and the
//! embedded mode.

pub mod copy;
pub mod cutover;
pub mod discover;
pub mod driver;
pub mod fault;
pub mod fields;
pub mod fleet;
pub mod journal;
pub mod metrics;
pub mod peer;
pub mod plan;
pub mod reverse;
pub mod routes;
pub mod sample;
pub mod state;
pub mod threshold;
pub mod transform;
pub mod upgrade;
pub mod verify;

pub use upgrade::{Engine, EngineError};
