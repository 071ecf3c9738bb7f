//! The reference stateful node: the service whose state cutover moves. Blue and green
//! clusters are both made of these nodes.
//!
//! - [`store`]: documents on RocksDB with a by-sequence change index and incremental
//!   per-partition digests (see `docs/ARCHITECTURE.md`).
//! - [`api`]: the HTTP document API and the gRPC `Source`, `Sink` and `NodeAdmin` services.
//! - [`cluster`]: the cluster file: the nodes of a colour and the partitions each owns.
//! - [`Node`]: all of it on listeners the caller bound, until cancelled. Embeddable.

pub mod api;
pub mod cluster;
pub mod config;
pub mod metrics;
mod server;
pub mod store;

pub use config::NodeConfig;
pub use server::{Node, NodeError};
