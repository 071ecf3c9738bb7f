//! What operators write and cutover must refuse clearly, parsed without RocksDB or a network:
//!
//! - [`plan`]: the upgrade plan (TOML), checked whole before anything starts;
//! - [`transform`]: the plan's jq programs, with jq's semantics: [`fast`], their native
//!   evaluator, and the jaq engine for what it does not run;
//! - [`cluster`]: the cluster file, the nodes of one colour and the partitions each owns.
//!
//! The orchestrator re-exports the first three as `engine::{plan, transform, fast}` and the
//! node the last as `cluster`. They live apart so that the fuzz targets that feed them
//! untrusted bytes (`fuzz/`, `docs/FUZZING.md`) do not link RocksDB and build in seconds.

pub mod cluster;
pub mod fast;
pub mod plan;
pub mod transform;
