//! `--output json`: the prost messages written out by hand (they derive no `Serialize`).
//! Phases and decision kinds are lower_snake names; every figure keeps the proto field's
//! unit, which its key names (`duration_micros`, `predicted_final_ms`); an empty string of
//! the proto (no upgrade id, no error) is `null`.

use cutover_proto::v1::{
    CycleRecord, DeadLetter, Decision, PeerReachability, PipelineStatus, ProgressEvent, ProxyHold,
    UpgradeStatus, decision::Kind,
};
use serde_json::{Value, json};

use super::render;

/// An upgrade's status.
pub(crate) fn status(status: &UpgradeStatus) -> Value {
    json!({
        "upgrade_id": non_empty(&status.upgrade_id),
        "phase": render::phase_key(status.phase()),
        "phase_detail": status.phase_detail,
        "direction": non_empty(&status.direction),
        "handover_step": non_empty(&status.handover_step),
        "cycles": status.cycles.iter().map(cycle).collect::<Vec<_>>(),
        "last_decision": status.last_decision.as_ref().map(decision),
        "dead_letters": status.dead_letters.iter().map(dead_letter).collect::<Vec<_>>(),
        "dead_letter_total": status.dead_letter_total,
        "holds": status.holds.iter().map(hold).collect::<Vec<_>>(),
        "pipelines": status.pipelines.iter().map(pipeline).collect::<Vec<_>>(),
        "peers": status.peers.iter().map(peer).collect::<Vec<_>>(),
        "error": non_empty(&status.error),
        "started_unix_ms": status.started_unix_ms,
        "updated_unix_ms": status.updated_unix_ms,
    })
}

/// One Watch event: the status and the copy progress.
pub(super) fn event(event: &ProgressEvent) -> Value {
    json!({
        "status": event.status.as_ref().map(status),
        "documents_copied": event.documents_copied,
        "documents_expected": event.documents_expected,
        "docs_per_sec": event.docs_per_sec,
        "eta_ms": event.eta_ms,
    })
}

fn pipeline(pipeline: &PipelineStatus) -> Value {
    json!({
        "source": pipeline.source,
        "sink": pipeline.sink,
        "source_endpoint": pipeline.source_endpoint,
        "sink_endpoint": pipeline.sink_endpoint,
        "partitions": pipeline.partitions,
        "state": pipeline.state,
        "documents": pipeline.documents,
        "docs_per_sec": pipeline.docs_per_sec,
        "watermark": pipeline.watermark,
        "pending": pipeline.pending,
        "waiting_on": non_empty(&pipeline.waiting_on),
        "run_by_sink": pipeline.run_by_sink,
    })
}

fn peer(peer: &PeerReachability) -> Value {
    json!({
        "role": peer.role,
        "endpoint": peer.endpoint,
        "reachable": peer.reachable,
        "error": non_empty(&peer.error),
        "since_unix_ms": peer.since_unix_ms,
    })
}

fn cycle(cycle: &CycleRecord) -> Value {
    json!({
        "cycle": cycle.cycle,
        "direction": cycle.direction,
        "final_cycle": cycle.final_cycle,
        "documents": cycle.documents,
        "bytes": cycle.bytes,
        "tombstones": cycle.tombstones,
        "dropped": cycle.dropped,
        "failed": cycle.failed,
        "duration_micros": cycle.duration_micros,
        "pending_after": cycle.pending_after,
    })
}

/// A decision: its kind, the common figures, and the kind's own figures.
fn decision(decision: &Decision) -> Value {
    let mut value = json!({
        "kind": render::decision_key(decision),
        "pending": decision.pending,
        "copy_rate_docs_per_sec": decision.copy_rate_docs_per_sec,
        "predicted_final_ms": decision.predicted_final_ms,
        "pause_budget_ms": decision.pause_budget_ms,
    });
    match &decision.kind {
        Some(Kind::NotConverging(rates)) => {
            value["blue_change_rate_docs_per_sec"] = json!(rates.blue_change_rate_docs_per_sec);
        }
        Some(Kind::DeadlineExceeded(deadline)) => {
            value["deadline_unix_ms"] = json!(deadline.deadline_unix_ms);
        }
        Some(Kind::MaxCyclesReached(max)) => value["max_cycles"] = json!(max.max_cycles),
        Some(Kind::AnotherCycle(_) | Kind::CutoverReady(_)) | None => {}
    }
    value
}

fn dead_letter(letter: &DeadLetter) -> Value {
    json!({
        "source": letter.source,
        "collection": letter.collection,
        "id": letter.id,
        "version": letter.version,
        "error": letter.error,
    })
}

fn hold(hold: &ProxyHold) -> Value {
    json!({
        "proxy": hold.proxy,
        "held": hold.held,
        "max_hold_micros": hold.max_hold_micros,
    })
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::fixtures;

    #[test]
    fn the_status_has_snake_names_and_units_in_keys() {
        let value = status(&fixtures::status(1));
        assert_eq!(value["upgrade_id"], "u1");
        assert_eq!(value["phase"], "cycling");
        assert_eq!(value["error"], Value::Null);
        assert_eq!(value["cycles"][1]["cycle"], 2);
        assert_eq!(value["cycles"][0]["duration_micros"], 4_500_000);
        assert_eq!(value["cycles"][0]["direction"], "forward");
        assert_eq!(value["last_decision"]["kind"], "another_cycle");
        assert_eq!(value["last_decision"]["predicted_final_ms"], 620.0);
        assert_eq!(value["dead_letters"][0]["id"], "u0");
        assert_eq!(value["dead_letter_total"], 1);
        assert_eq!(value["holds"][0]["max_hold_micros"], 48_200);
        assert_eq!(value["started_unix_ms"], 1_700_000_000_000_u64);
    }

    #[test]
    fn decisions_carry_their_own_figures() {
        let value = decision(&fixtures::not_converging());
        assert_eq!(value["kind"], "not_converging");
        assert_eq!(value["blue_change_rate_docs_per_sec"], 30_000.0);
        assert_eq!(value["copy_rate_docs_per_sec"], 20_000.0);
        let mut idle = UpgradeStatus::default();
        idle.set_phase(cutover_proto::v1::Phase::Idle);
        let value = status(&idle);
        assert_eq!(value["phase"], "idle");
        assert_eq!(value["upgrade_id"], Value::Null);
        assert_eq!(value["last_decision"], Value::Null);
    }

    #[test]
    fn an_event_is_one_line_with_the_status_inside() {
        let value = event(&fixtures::event());
        assert_eq!(value["status"]["phase"], "cycling");
        assert_eq!(value["documents_copied"], 41_200);
        assert_eq!(value["documents_expected"], 90_000);
        assert_eq!(value["eta_ms"], 4_100);
        assert!(!value.to_string().contains('\n'));
    }
}
