//! The cutover migration engine and the `cutover` command line.
//!
//! The engine (cycles, transforms, threshold engine, verification, cutover and rollback, the
//! durable journal; see `../shared/DESIGN.md`, "Migration engine") is built by the engine and
//! cutover issues. [`cli`] is the one binary's command line, kept in the library so tests and
//! `cutover demo` can embed it.

pub mod cli;
pub mod engine;
pub mod service;
