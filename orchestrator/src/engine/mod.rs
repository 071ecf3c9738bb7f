//! The migration engine: discovery, copy cycles (pull → transform → apply → journal), the
//! threshold engine, the journal, the upgrade's state machine and the driver that executes
//! it (the handover both ways, its verification, reverse sync), and [`upgrade::Engine`],
//! which ties them together for the gRPC service and the embedded mode.

pub mod board;
pub mod check;
pub mod copy;
pub mod cycle;
pub mod discover;
pub mod driver;
pub mod error;
pub mod fault;
pub mod fleet;
pub mod handover;
pub mod host;
pub mod hosted;
pub mod journal;
pub mod machine;
pub mod metrics;
pub mod peer;
pub mod pipelines;
pub mod reach;
pub mod reverse;
pub mod routes;
pub mod sample;
#[cfg(test)]
pub mod sim;
pub mod threshold;
pub mod topology;
pub mod upgrade;
pub mod verification;
pub mod verify;
pub mod world;

// The plan and its programs are parsed in `cutover-formats` (no RocksDB there, so their fuzz
// targets build fast); their paths under `engine` stay as they were.
pub use cutover_formats::{fast, plan, transform};
pub use host::EngineBuilder;
pub use upgrade::{Engine, EngineError};
