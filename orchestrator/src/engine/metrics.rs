//! The orchestrator's metric names (all `cutover_orchestrator_*`), described once at start-up.

use std::time::Duration;

use cutover_proto::v1::Phase;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

use super::{journal::Hold, threshold::Decision};

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
/// Cutover and rollback attempts by `direction` and `outcome`, counter.
pub const ATTEMPTS: &str = "cutover_orchestrator_cutover_attempts_total";
/// Longest time a proxy held a request in the last hold, gauge.
pub const HOLD: &str = "cutover_orchestrator_last_hold_seconds";
/// Requests the proxies held in the last hold, gauge.
pub const HELD: &str = "cutover_orchestrator_last_hold_requests";

/// The plan's pause budget, gauge: what the predicted final cycle and the holds are held
/// against.
pub const PAUSE_BUDGET: &str = "cutover_orchestrator_pause_budget_seconds";
/// Dead letters in the journal (documents whose transform failed), gauge.
pub const DEAD_LETTERS: &str = "cutover_orchestrator_dead_letters";
/// The plan's `allowed_transform_failures`: dead letters that may remain at cutover, gauge.
pub const DEAD_LETTERS_ALLOWED: &str = "cutover_orchestrator_dead_letters_allowed";
/// Wall time of the last forward cycle, gauge.
pub const LAST_CYCLE: &str = "cutover_orchestrator_last_cycle_seconds";
/// What the threshold engine's decision before the last forward cycle predicted one more
/// cycle would take (0 when it had made none), gauge.
pub const LAST_CYCLE_PREDICTED: &str = "cutover_orchestrator_last_cycle_predicted_seconds";
/// 1 for the `kind` of the threshold engine's last decision, 0 for the others, gauge.
pub const DECISION: &str = "cutover_orchestrator_decision";
/// Documents changed on green that reverse sync has not yet copied back to blue, gauge.
pub const REVERSE_PENDING: &str = "cutover_orchestrator_reverse_pending_documents";
/// Unix time up to which blue holds every change green had (reverse sync's last finished
/// pass began then), gauge.
pub const REVERSE_SYNCED: &str = "cutover_orchestrator_reverse_synced_timestamp_seconds";

/// Documents copied by each pipeline, by `source` and `sink` node id, counter. Node ids in
/// labels are the one exception to "no ids in labels": bounded, one series per pipeline of
/// the topology.
pub const PIPELINE_DOCUMENTS: &str = "cutover_orchestrator_pipeline_documents_copied_total";
/// Each pipeline's committed watermark, by `source` and `sink`, gauge.
pub const PIPELINE_WATERMARK: &str = "cutover_orchestrator_pipeline_watermark";
/// Changes pending on each pipeline's partitions after its last cycle, by `source` and `sink`,
/// gauge.
pub const PIPELINE_PENDING: &str = "cutover_orchestrator_pipeline_pending_documents";

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
    describe_counter!(
        PIPELINE_DOCUMENTS,
        Unit::Count,
        "Documents copied, by pipeline (source and sink node id)."
    );
    describe_gauge!(
        PIPELINE_WATERMARK,
        "Committed watermark (source seq), by pipeline (source and sink node id)."
    );
    describe_gauge!(
        PIPELINE_PENDING,
        Unit::Count,
        "Changes pending on a pipeline's partitions after its last cycle, by source and sink."
    );
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
    describe_counter!(
        ATTEMPTS,
        Unit::Count,
        "Cutover (direction forward) and rollback (reverse) attempts, by outcome: switched, \
         undone, rehearsed."
    );
    describe_gauge!(
        HOLD,
        Unit::Seconds,
        "Longest time any proxy held a request in the last hold (the pause a client saw)."
    );
    describe_gauge!(
        HELD,
        Unit::Count,
        "Requests the proxies held and released in the last hold."
    );
    describe_gauge!(
        PAUSE_BUDGET,
        Unit::Seconds,
        "The plan's pause budget: the longest pause clients may see."
    );
    describe_gauge!(
        DEAD_LETTERS,
        Unit::Count,
        "Documents whose transform failed, in the journal (dead letters)."
    );
    describe_gauge!(
        DEAD_LETTERS_ALLOWED,
        Unit::Count,
        "Dead letters the plan allows at cutover (allowed_transform_failures)."
    );
    describe_gauge!(
        LAST_CYCLE,
        Unit::Seconds,
        "Wall time of the last forward copy cycle."
    );
    describe_gauge!(
        LAST_CYCLE_PREDICTED,
        Unit::Seconds,
        "What the threshold engine predicted the last forward cycle would take (0: no \
         prediction)."
    );
    describe_gauge!(
        DECISION,
        Unit::Count,
        "1 for the kind of the threshold engine's last decision, 0 for the others."
    );
    describe_gauge!(
        REVERSE_PENDING,
        Unit::Count,
        "Documents changed on green not yet copied back to blue by reverse sync."
    );
    describe_gauge!(
        REVERSE_SYNCED,
        Unit::Seconds,
        "Unix time up to which blue holds every change green had (reverse sync)."
    );
}

/// Shows the plan's limits: the pause budget and the dead letters allowed at cutover.
pub fn plan(pause_budget: Duration, allowed_dead_letters: u64) {
    metrics::gauge!(PAUSE_BUDGET).set(pause_budget.as_secs_f64());
    metrics::gauge!(DEAD_LETTERS_ALLOWED).set(allowed_dead_letters as f64);
}

/// Shows the dead letters in the journal.
pub fn dead_letters(total: u64) {
    metrics::gauge!(DEAD_LETTERS).set(total as f64);
}

/// Sets the decision gauge: 1 for the kind of `last`, 0 for every other kind (all 0 when
/// there is no decision yet).
pub fn decision(last: Option<&Decision>) {
    let current = last.map(Decision::kind);
    for kind in Decision::KINDS {
        let value = if current == Some(kind) { 1.0 } else { 0.0 };
        metrics::gauge!(DECISION, "kind" => kind).set(value);
    }
}

/// Shows a finished forward cycle's wall time against what was predicted for it, if
/// anything was.
pub fn cycle_timed(took: Duration, predicted: Option<Duration>) {
    metrics::gauge!(LAST_CYCLE).set(took.as_secs_f64());
    metrics::gauge!(LAST_CYCLE_PREDICTED).set(predicted.map_or(0.0, |p| p.as_secs_f64()));
}

/// Shows reverse sync's lag: `pending` changes on green, blue complete up to
/// `synced_unix_ms`.
pub fn reverse(pending: u64, synced_unix_ms: u64) {
    metrics::gauge!(REVERSE_PENDING).set(pending as f64);
    metrics::gauge!(REVERSE_SYNCED).set(synced_unix_ms as f64 / 1e3);
}

/// Counts one cutover or rollback attempt.
pub fn attempt(direction: &'static str, outcome: &'static str) {
    metrics::counter!(ATTEMPTS, "direction" => direction, "outcome" => outcome).increment(1);
}

/// Shows the figures of the last hold.
pub fn hold(holds: &[Hold]) {
    metrics::gauge!(HOLD).set(Hold::longest_micros(holds) as f64 / 1e6);
    metrics::gauge!(HELD).set(Hold::released(holds) as f64);
}

/// Counts one acknowledged batch.
pub fn copied(per_collection: &[(String, u64, u64)], failed: u64, dropped: u64) {
    for (collection, documents, bytes) in per_collection {
        metrics::counter!(DOCUMENTS, "collection" => collection.clone()).increment(*documents);
        metrics::counter!(BYTES, "collection" => collection.clone()).increment(*bytes);
    }
    metrics::counter!(FAILURES).increment(failed);
    metrics::counter!(DROPS).increment(dropped);
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
