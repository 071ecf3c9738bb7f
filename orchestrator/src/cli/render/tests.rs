use cutover_proto::v1::{DeadlineExceeded, MaxCyclesReached};

use super::*;
use crate::cli::fixtures;

#[test]
fn phases_have_snake_and_human_names() {
    assert_eq!(phase_key(Phase::ReadyForCutover), "ready_for_cutover");
    assert_eq!(phase_human(Phase::ReadyForCutover), "ready for cutover");
    assert_eq!(phase_human(Phase::Cycling), "cycling");
    // Every proto phase name, minus its prefix, is the key.
    for value in 0..=18 {
        let phase = Phase::try_from(value).expect("a phase");
        let proto = phase.as_str_name().trim_start_matches("PHASE_");
        assert_eq!(phase_key(phase), proto.to_lowercase());
    }
}

#[test]
fn the_cycle_table_is_aligned_and_computes_rates() {
    let table = cycle_table(&[fixtures::cycle(1, false), fixtures::cycle(12, true)]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(
        lines[0],
        "cycle  dir  documents    MB  seconds  docs/s  tombstones  dropped  failed  pending after"
    );
    assert_eq!(
        lines[1],
        "    1  fwd      90000  12.3     4.50   20000          12        3       2           1200"
    );
    assert!(lines[2].starts_with("  12*  fwd"), "{table}");
    assert!(lines[3].contains("final cycle"), "{table}");
    let widths: Vec<usize> = lines[..3].iter().map(|l| l.len()).collect();
    assert!(widths.iter().all(|w| *w == widths[0]), "{table}");
}

#[test]
fn a_zero_duration_cycle_has_no_rate() {
    let mut cycle = fixtures::cycle(1, false);
    cycle.duration_micros = 0;
    cycle.direction = "reverse".to_owned();
    let row = cycle_row(&cycle);
    assert_eq!(row[1], "rev");
    assert_eq!(row[5], "-");
}

#[test]
fn decisions_show_their_figures() {
    assert_eq!(
        decision_line(&fixtures::another_cycle()),
        "another cycle — 1200 pending, copy rate 20000 docs/s, predicted final 620 ms vs \
         budget 500 ms"
    );
    let line = decision_line(&fixtures::not_converging());
    assert!(
        line.starts_with(
            "not converging — blue changes at 30000 docs/s, the copy follows at 20000 docs/s"
        ),
        "{line}"
    );
    let max = Decision {
        kind: Some(Kind::MaxCyclesReached(MaxCyclesReached { max_cycles: 9 })),
        ..fixtures::another_cycle()
    };
    assert!(decision_line(&max).contains("9 cycles run"));
    let deadline = Decision {
        kind: Some(Kind::DeadlineExceeded(DeadlineExceeded {
            deadline_unix_ms: 1_700_000_000_000,
        })),
        ..fixtures::another_cycle()
    };
    assert!(decision_line(&deadline).contains("deadline 2023-11-14T22:13:20Z passed"));
}

#[test]
fn the_status_lists_everything_and_caps_dead_letters() {
    let mut status = fixtures::status(12);
    status.dead_letter_total = 40;
    status.error = "blue-1 unreachable".to_owned();
    let text = super::status(&status);
    assert!(
        text.starts_with("upgrade u1: cycling — cycle 3: 41200/90000 documents\n"),
        "{text}"
    );
    assert!(text.contains("started 2023-11-14T22:13:20Z, updated 2023-11-14T22:14:20Z"));
    assert!(text.contains("pending after"), "{text}");
    assert!(
        text.contains("last decision: another cycle — 1200 pending"),
        "{text}"
    );
    assert!(
        text.contains("p1: 12 requests held, longest 48.2 ms"),
        "{text}"
    );
    assert!(text.contains("dead letters: 40 in total"), "{text}");
    assert_eq!(
        text.matches("missing field").count(),
        DEAD_LETTERS_SHOWN,
        "{text}"
    );
    assert!(
        text.contains("\n  blue-1 users/u0 v7: missing field `name`\n"),
        "{text}"
    );
    assert!(text.contains("… and 30 more"), "{text}");
    assert!(text.ends_with("error: blue-1 unreachable\n"), "{text}");
}

#[test]
fn an_idle_orchestrator_says_so() {
    let status = UpgradeStatus {
        phase: Phase::Idle.into(),
        ..UpgradeStatus::default()
    };
    assert_eq!(super::status(&status), "no upgrade (phase idle)\n");
    assert_eq!(brief(&status), "no upgrade (phase idle)");
}

#[test]
fn a_dead_letter_without_source_has_no_gap() {
    let mut status = fixtures::status(1);
    status.dead_letters[0].source.clear();
    let text = super::status(&status);
    assert!(text.contains("\n  users/u0 v7: missing field"), "{text}");
}

#[test]
fn a_handover_shows_its_direction_and_step() {
    let mut status = fixtures::status(0);
    status.phase = Phase::RollingBack.into();
    status.direction = "reverse".into();
    status.handover_step = "final_cycle".into();
    status.phase_detail = "rollback: final reverse cycle".into();
    assert_eq!(
        headline(&status),
        "upgrade u1: rolling back (reverse handover, step final cycle) — rollback: final \
         reverse cycle"
    );
    let value = crate::cli::json::status(&status);
    assert_eq!(value["direction"], "reverse");
    assert_eq!(value["handover_step"], "final_cycle");
    assert!(crate::cli::json::status(&fixtures::status(0))["handover_step"].is_null());
}

#[test]
fn the_pipelines_show_where_they_run_and_what_a_waiting_one_waits_on() {
    let status = fixtures::status(0);
    let text = super::status(&status);
    assert!(
        text.contains(
            "pipelines:\n  blue-1 → green-1  partitions 0-7  copying  20600 docs  8000 docs/s  \
             watermark 30000  pending 0  run by the sink\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("waiting  20600 docs  4000 docs/s  watermark 30000  pending 0  run by the sink  waiting on: http://blue-2:7001: Pull: connection refused"),
        "{text}"
    );
    // The waiting one holds the cycle back, whatever its rate.
    let held_back = slowest(&status.pipelines).expect("two pipelines");
    assert_eq!(held_back.source, "blue-2");
    // One pipeline (1 → 1) has no table.
    let mut one = status.clone();
    one.pipelines.truncate(1);
    assert!(!super::status(&one).contains("pipelines:"));
    assert!(slowest(&one.pipelines).is_none());
}

#[test]
fn the_status_names_each_unreachable_peer_and_why() {
    let text = status(&fixtures::status(0));
    assert!(
        text.contains(
            "unreachable since 2023-11-14T22:14:10Z: blue http://blue-2:7001: \
             http://blue-2:7001: Status: connection refused"
        ),
        "{text}"
    );
    assert!(
        !text.contains("http://p1:8081"),
        "a reachable peer is not listed: {text}"
    );
}
