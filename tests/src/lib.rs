//! The test harness: a [`harness::Cluster`] builder that gives every process a `TempDir` and
//! a loopback address, runs the built `cutover` binary as child processes that are killed on
//! drop, and waits by polling with a deadline (never a bare sleep).
//!
//! The end-to-end tests themselves are in `tests/e2e/`; they are compiled as an integration
//! test of the `cutover-orchestrator` package, which owns the `cutover` binary, so that cargo
//! builds the binary once and passes its path in `CARGO_BIN_EXE_cutover`.

pub mod harness;
