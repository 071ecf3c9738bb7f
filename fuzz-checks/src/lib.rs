//! What the fuzz targets check, one `pub fn TARGET(data: &[u8])` each: it feeds the bytes to
//! the product's parser and panics, naming the broken promise, when an invariant fails. The
//! cargo-fuzz targets (`fuzz/fuzz_targets/`) only call these, so the fuzzers and the replay of
//! their corpora in `cargo test` (`tests/replay.rs`) run the same checks.
//!
//! Beyond "does not panic", each checks what its format promises: a second parser agrees
//! (httparse under the relay, prost under the hand-written Pull encoder, jaq under the fast
//! evaluator, tonic's URI parser under the plan's endpoint check), or a round trip holds (a cluster
//! written by `to_toml` reads back equal). See `docs/FUZZING.md`.

mod cluster;
mod fast;
mod plan;
mod pull_wire;
mod relay;

pub use cluster::cluster;
pub use fast::fast;
pub use plan::plan;
pub use pull_wire::pull_wire;
pub use relay::relay;

/// What a target checks on one input; it panics when a check fails.
pub type Check = fn(&[u8]);

/// Every target, by the name of its corpus folder (`fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Check)] = &[
    ("cluster", cluster),
    ("fast", fast),
    ("plan", plan),
    ("pull_wire", pull_wire),
    ("relay", relay),
];
