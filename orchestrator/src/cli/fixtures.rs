//! Statuses and events for the rendering tests of `cutover upgrade`.

use cutover_proto::v1::{
    AnotherCycle, CycleRecord, DeadLetter, Decision, NotConverging, PeerReachability, Phase,
    PipelineStatus, ProgressEvent, ProxyHold, UpgradeStatus, decision::Kind,
};

/// A forward cycle with round figures: 90 000 documents, 12.3 MB in 4.5 s.
pub(crate) fn cycle(cycle: u32, final_cycle: bool) -> CycleRecord {
    CycleRecord {
        cycle,
        documents: 90_000,
        bytes: 12_300_000,
        tombstones: 12,
        dropped: 3,
        failed: 2,
        duration_micros: 4_500_000,
        pending_after: 1_200,
        final_cycle,
        direction: "forward".to_owned(),
    }
}

/// "Another cycle" with 1200 pending, 20 000 docs/s, 620 ms predicted, 500 ms budget.
pub(crate) fn another_cycle() -> Decision {
    Decision {
        kind: Some(Kind::AnotherCycle(AnotherCycle {})),
        pending: 1_200,
        copy_rate_docs_per_sec: 20_000.0,
        predicted_final_ms: 620.0,
        pause_budget_ms: 500.0,
    }
}

/// "Not converging": blue changes at 30 000 docs/s, the copy follows at 20 000.
pub(crate) fn not_converging() -> Decision {
    Decision {
        kind: Some(Kind::NotConverging(NotConverging {
            blue_change_rate_docs_per_sec: 30_000.0,
            copy_rate_docs_per_sec: 20_000.0,
        })),
        ..another_cycle()
    }
}

/// A cycling upgrade `u1` with two cycles, a decision, a hold and `letters` dead letters
/// (all listed).
pub(crate) fn status(letters: u64) -> UpgradeStatus {
    UpgradeStatus {
        upgrade_id: "u1".to_owned(),
        phase: Phase::Cycling.into(),
        phase_detail: "cycle 3: 41200/90000 documents".to_owned(),
        cycles: vec![cycle(1, false), cycle(2, false)],
        last_decision: Some(another_cycle()),
        dead_letters: (0..letters)
            .map(|i| DeadLetter {
                source: "blue-1".to_owned(),
                collection: "users".to_owned(),
                id: format!("u{i}"),
                version: 7,
                error: "missing field `name`".to_owned(),
            })
            .collect(),
        dead_letter_total: letters,
        holds: vec![ProxyHold {
            proxy: "p1".to_owned(),
            held: 12,
            max_hold_micros: 48_200,
        }],
        error: String::new(),
        started_unix_ms: 1_700_000_000_000,
        updated_unix_ms: 1_700_000_060_000,
        direction: String::new(),
        handover_step: String::new(),
        pipelines: vec![
            pipeline("blue-1", "green-1", "0-7", 8_000.0, ""),
            pipeline(
                "blue-2",
                "green-1",
                "8-15",
                4_000.0,
                "http://blue-2:7001: Pull: connection refused",
            ),
        ],
        peers: vec![
            PeerReachability {
                role: "proxy".to_owned(),
                endpoint: "http://p1:8081".to_owned(),
                reachable: true,
                error: String::new(),
                since_unix_ms: 1_700_000_000_000,
            },
            PeerReachability {
                role: "blue".to_owned(),
                endpoint: "http://blue-2:7001".to_owned(),
                reachable: false,
                error: "http://blue-2:7001: Status: connection refused".to_owned(),
                since_unix_ms: 1_700_000_050_000,
            },
        ],
    }
}

/// A pipeline of `status`: copying, or waiting when `waiting_on` says on what.
pub(crate) fn pipeline(
    source: &str,
    sink: &str,
    partitions: &str,
    docs_per_sec: f64,
    waiting_on: &str,
) -> PipelineStatus {
    PipelineStatus {
        source: source.to_owned(),
        sink: sink.to_owned(),
        source_endpoint: format!("http://{source}:7001"),
        sink_endpoint: format!("http://{sink}:7001"),
        partitions: partitions.to_owned(),
        state: if waiting_on.is_empty() {
            "copying"
        } else {
            "waiting"
        }
        .to_owned(),
        documents: 20_600,
        docs_per_sec,
        watermark: 30_000,
        pending: 0,
        waiting_on: waiting_on.to_owned(),
        run_by_sink: true,
    }
}

/// A progress event of `status(0)`: 41 200 of 90 000 copied at 12 000 docs/s, 4 s left.
pub(crate) fn event() -> ProgressEvent {
    ProgressEvent {
        status: Some(status(0)),
        documents_copied: 41_200,
        documents_expected: 90_000,
        docs_per_sec: 12_000.4,
        eta_ms: 4_100,
    }
}
