//! The cutover migration engine and the `cutover` command line.
//!
//! [`engine`]: cycles, transforms, the threshold engine, the durable journal, the upgrade's
//! state machine and the driver that runs it: the cutover with its verification, reverse
//! sync and the rollback (see `docs/ARCHITECTURE.md`).
//! [`cli`] is the one binary's command line and [`demo`] the `cutover demo` story with its
//! client load, kept in the library so the tests embed them. [`page`] is the status page the
//! orchestrator serves on its HTTP port.

pub mod cli;
pub mod demo;
pub mod engine;
pub mod page;
pub mod service;
