//! End-to-end tests: real processes of the built `cutover` binary on loopback.
//!
//! Compiled as the `e2e` integration test of `cutover-orchestrator` (see its Cargo.toml) so
//! that `CARGO_BIN_EXE_cutover` points at the binary cargo built for this run.

use cutover_tests::harness::{Binary, Cluster};

mod cli;
mod cutover;
mod engine;
mod node;
mod proxy;

/// A cluster running the binary under test.
fn cluster() -> Cluster {
    Cluster::new(Binary::new(env!("CARGO_BIN_EXE_cutover"))).expect("a temporary cluster root")
}

/// A single-threaded tokio runtime for a test's gRPC calls.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
