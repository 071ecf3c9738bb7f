//! The orchestrator's metric names (all `cutover_orchestrator_*`), described once at start-up.

use cutover_proto::v1::Phase;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

use super::routes::Tally;

/// Cycles finished, counter.
pub const CYCLES: &str = "cutover_orchestrator_cycles_total";
/// Documents copied by source `collection`, counter.
pub const DOCUMENTS: &str = "cutover_orchestrator_documents_copied_total";
/// Body bytes copied by source `collection`, counter.
pub const BYTES: &str = "cutover_orchestrator_bytes_copied_total";
/// Cycle wall time, histogram.
pub const CYCLE_DURATION: &str = "cutover_orchestrator_cycle_duration_seconds";
/// Documents pending on the sources after the last cycle, gauge.
pub const PENDING: &str = "cutover_orchestrator_pending_documents";
/// The threshold engine's predicted final cycle plus switch, gauge.
pub const PREDICTED: &str = "cutover_orchestrator_predicted_final_cycle_seconds";
/// Documents whose transform failed (dead letters), counter.
pub const FAILURES: &str = "cutover_orchestrator_transform_failures_total";
/// Documents the transform dropped on purpose, counter.
pub const DROPS: &str = "cutover_orchestrator_transform_drops_total";
/// 1 for the current `phase`, 0 for the others, gauge.
pub const PHASE: &str = "cutover_orchestrator_phase";

/// Registers the descriptions of every orchestrator metric with the installed recorder.
pub fn describe() {
    describe_counter!(CYCLES, Unit::Count, "Copy cycles finished.");
    describe_counter!(
        DOCUMENTS,
        Unit::Count,
        "Documents copied, by source collection."
    );
    describe_counter!(
        BYTES,
        Unit::Bytes,
        "Body bytes copied, by source collection."
    );
    describe_histogram!(CYCLE_DURATION, Unit::Seconds, "Wall time of a copy cycle.");
    describe_gauge!(
        PENDING,
        Unit::Count,
        "Documents changed on the sources since the watermarks, after the last cycle."
    );
    describe_gauge!(
        PREDICTED,
        Unit::Seconds,
        "Predicted final cycle plus switch (the pause clients would see)."
    );
    describe_counter!(
        FAILURES,
        Unit::Count,
        "Documents whose transform failed (dead letters)."
    );
    describe_counter!(DROPS, Unit::Count, "Documents the transform dropped.");
    describe_gauge!(
        PHASE,
        Unit::Count,
        "1 for the current phase, 0 for the others."
    );
}

/// Counts one acknowledged batch.
pub fn copied(per_collection: &[(String, u64, u64)], tally: &Tally) {
    for (collection, documents, bytes) in per_collection {
        metrics::counter!(DOCUMENTS, "collection" => collection.clone()).increment(*documents);
        metrics::counter!(BYTES, "collection" => collection.clone()).increment(*bytes);
    }
    metrics::counter!(FAILURES).increment(tally.failed);
    metrics::counter!(DROPS).increment(tally.dropped);
}

/// Sets the phase gauge: 1 for `current`, 0 for every other phase.
pub fn phase(current: Phase) {
    for raw in Phase::Idle as i32..=Phase::Failed as i32 {
        let Ok(phase) = Phase::try_from(raw) else {
            continue;
        };
        let name = phase_name(phase);
        metrics::gauge!(PHASE, "phase" => name).set(if phase == current { 1.0 } else { 0.0 });
    }
}

/// The lower-case name of `phase` (`ready_for_cutover`), as in logs and labels.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Unspecified => "unspecified",
        Phase::Idle => "idle",
        Phase::Discovering => "discovering",
        Phase::Cycling => "cycling",
        Phase::ReadyForCutover => "ready_for_cutover",
        Phase::Postponed => "postponed",
        Phase::Pausing => "pausing",
        Phase::Fencing => "fencing",
        Phase::FinalCycle => "final_cycle",
        Phase::Verifying => "verifying",
        Phase::Committed => "committed",
        Phase::Switching => "switching",
        Phase::Switched => "switched",
        Phase::ReverseSync => "reverse_sync",
        Phase::RollingBack => "rolling_back",
        Phase::RolledBack => "rolled_back",
        Phase::Aborting => "aborting",
        Phase::Aborted => "aborted",
        Phase::Failed => "failed",
    }
}
