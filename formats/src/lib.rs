//! What operators write and cutover must refuse clearly, parsed without RocksDB or a network:
//!
//! - [`plan`]: the upgrade plan (TOML), checked whole before anything starts;
//! - [`transform`]: the plan's jq programs, compiled with jaq, and [`fields`], their fast
//!   path for the small subset most schema changes are written in;
//! - [`cluster`]: the cluster file, the nodes of one colour and the partitions each owns.
//!
//! The orchestrator re-exports the first three as `engine::{plan, transform, fields}` and the
//! node the last as `cluster`. They live apart so that the fuzz targets that feed them
//! untrusted bytes (`fuzz/`, `docs/FUZZING.md`) do not link RocksDB and build in seconds.

pub mod cluster;
pub mod fields;
pub mod plan;
pub mod transform;
