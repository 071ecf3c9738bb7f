//! The text of an upgrade's status for people: phase, cycle table, last decision, holds,
//! dead letters, error. Pure functions from the prost messages to strings.

use std::{
    fmt::Write as _,
    time::{Duration, UNIX_EPOCH},
};

use cutover_proto::v1::{
    CycleRecord, Decision, Phase, PipelineStatus, UpgradeStatus, decision::Kind,
};

/// How many dead letters `status` lists; the total is always given.
pub(super) const DEAD_LETTERS_SHOWN: usize = 10;

/// The phase's machine name, lower_snake (`ready_for_cutover`), as in the JSON output and
/// the metrics.
pub(crate) fn phase_key(phase: Phase) -> &'static str {
    crate::engine::metrics::phase_name(phase)
}

/// The phase's name for people (`ready for cutover`).
pub(crate) fn phase_human(phase: Phase) -> String {
    phase_key(phase).replace('_', " ")
}

/// The decision's kind, lower_snake (`another_cycle`).
pub(crate) fn decision_key(decision: &Decision) -> &'static str {
    match decision.kind {
        Some(Kind::AnotherCycle(_)) => "another_cycle",
        Some(Kind::CutoverReady(_)) => "cutover_ready",
        Some(Kind::NotConverging(_)) => "not_converging",
        Some(Kind::DeadlineExceeded(_)) => "deadline_exceeded",
        Some(Kind::MaxCyclesReached(_)) => "max_cycles_reached",
        None => "unknown",
    }
}

/// The decision's kind for people (`another cycle`).
pub(crate) fn decision_human(decision: &Decision) -> String {
    decision_key(decision).replace('_', " ")
}

/// The whole status, as `cutover upgrade status` prints it.
pub(super) fn status(status: &UpgradeStatus) -> String {
    let mut out = headline(status);
    out.push('\n');
    if let Some(times) = times(status) {
        let _ = writeln!(out, "{times}");
    }
    if !status.cycles.is_empty() {
        let _ = write!(out, "\n{}", cycle_table(&status.cycles));
    }
    if status.pipelines.len() > 1 {
        let _ = write!(out, "\n{}", pipeline_table(&status.pipelines));
    }
    if let Some(decision) = &status.last_decision {
        let _ = writeln!(out, "\nlast decision: {}", decision_line(decision));
    }
    if !status.holds.is_empty() {
        out.push_str("\nholds:\n");
        for hold in &status.holds {
            let _ = writeln!(
                out,
                "  {}: {} requests held, longest {}",
                hold.proxy,
                hold.held,
                micros(hold.max_hold_micros)
            );
        }
    }
    if status.dead_letter_total > 0 || !status.dead_letters.is_empty() {
        let _ = write!(out, "\n{}", dead_letters(status));
    }
    for peer in status.peers.iter().filter(|p| !p.reachable) {
        let _ = writeln!(
            out,
            "\nunreachable since {}: {} {}: {}",
            rfc3339(peer.since_unix_ms),
            peer.role,
            peer.endpoint,
            peer.error
        );
    }
    if !status.error.is_empty() {
        let _ = writeln!(out, "\nerror: {}", status.error);
    }
    out
}

/// One line: the upgrade, its phase and the phase's detail.
pub(super) fn headline(status: &UpgradeStatus) -> String {
    let phase = phase_human(status.phase());
    let mut line = if status.upgrade_id.is_empty() {
        format!("no upgrade (phase {phase})")
    } else {
        format!("upgrade {}: {phase}", status.upgrade_id)
    };
    if !status.handover_step.is_empty() {
        let step = status.handover_step.replace('_', " ");
        let _ = write!(line, " ({} handover, step {step})", status.direction);
    }
    if !status.phase_detail.is_empty() {
        let _ = write!(line, " — {}", status.phase_detail);
    }
    line
}

/// `headline`, then the error if there is one: what `proceed` and `abort` print.
pub(super) fn brief(status: &UpgradeStatus) -> String {
    let mut out = headline(status);
    if !status.error.is_empty() {
        let _ = write!(out, "\nerror: {}", status.error);
    }
    out
}

fn times(status: &UpgradeStatus) -> Option<String> {
    (status.started_unix_ms > 0).then(|| {
        format!(
            "started {}, updated {}",
            rfc3339(status.started_unix_ms),
            rfc3339(status.updated_unix_ms)
        )
    })
}

pub(crate) fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// The pipelines, one row each: source → sink, partitions, state, this cycle's documents and
/// rate, watermark, pending, and what a waiting one waits on.
pub(super) fn pipeline_table(pipelines: &[PipelineStatus]) -> String {
    let mut out = String::from("pipelines:\n");
    for p in pipelines {
        let _ = write!(
            out,
            "  {} → {}  partitions {}  {}  {} docs  {:.0} docs/s  watermark {}  pending {}",
            p.source,
            p.sink,
            p.partitions,
            p.state,
            p.documents,
            p.docs_per_sec,
            p.watermark,
            p.pending
        );
        out.push_str(if p.run_by_sink {
            "  run by the sink"
        } else {
            "  run by the orchestrator"
        });
        if !p.waiting_on.is_empty() {
            let _ = write!(out, "  waiting on: {}", p.waiting_on);
        }
        out.push('\n');
    }
    out
}

/// The pipeline that holds the cycle back: a waiting one first, then the one with the most
/// left to do at its rate; `None` with fewer than two pipelines.
pub(super) fn slowest(pipelines: &[PipelineStatus]) -> Option<&PipelineStatus> {
    if pipelines.len() < 2 {
        return None;
    }
    let busy = |p: &&PipelineStatus| p.state == "copying" || p.state == "waiting";
    pipelines.iter().filter(busy).max_by(|a, b| {
        let waiting = |p: &PipelineStatus| p.state == "waiting";
        waiting(a)
            .cmp(&waiting(b))
            .then(b.docs_per_sec.total_cmp(&a.docs_per_sec))
    })
}

/// The cycles as a right-aligned table; a final cycle is starred, a reverse one marked `rev`.
pub(super) fn cycle_table(cycles: &[CycleRecord]) -> String {
    let rows: Vec<Vec<String>> = cycles.iter().map(cycle_row).collect();
    let mut out = table(&CYCLE_HEADERS, &rows);
    if cycles.iter().any(|c| c.final_cycle) {
        let _ = writeln!(out, "{FINAL_CYCLE_NOTE}");
    }
    out
}

/// The headers of [`cycle_row`]'s cells.
pub(crate) const CYCLE_HEADERS: [&str; 10] = [
    "cycle",
    "dir",
    "documents",
    "MB",
    "seconds",
    "docs/s",
    "tombstones",
    "dropped",
    "failed",
    "pending after",
];

/// What the star of a final cycle means.
pub(crate) const FINAL_CYCLE_NOTE: &str = "* final cycle, run with the source fenced";

/// One cycle's cells, under [`CYCLE_HEADERS`].
pub(crate) fn cycle_row(cycle: &CycleRecord) -> Vec<String> {
    let seconds = cycle.duration_micros as f64 / 1e6;
    let rate = if cycle.duration_micros == 0 {
        "-".to_owned()
    } else {
        format!("{:.0}", cycle.documents as f64 / seconds)
    };
    vec![
        format!(
            "{}{}",
            cycle.cycle,
            if cycle.final_cycle { "*" } else { "" }
        ),
        match cycle.direction.as_str() {
            "reverse" => "rev".to_owned(),
            "forward" | "" => "fwd".to_owned(),
            other => other.to_owned(),
        },
        cycle.documents.to_string(),
        format!("{:.1}", cycle.bytes as f64 / 1e6),
        format!("{seconds:.2}"),
        rate,
        cycle.tombstones.to_string(),
        cycle.dropped.to_string(),
        cycle.failed.to_string(),
        cycle.pending_after.to_string(),
    ]
}

/// Columns right-aligned to their widest cell, two spaces apart, one line a row.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let headers = headers.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
    for row in std::iter::once(&headers).chain(rows) {
        let cells: Vec<String> = widths
            .iter()
            .zip(row)
            .map(|(width, cell)| format!("{cell:>width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  "));
    }
    out
}

/// The decision and the figures that made it.
pub(crate) fn decision_line(decision: &Decision) -> String {
    let figures = format!(
        "{} pending, copy rate {:.0} docs/s, predicted final {:.0} ms vs budget {:.0} ms",
        decision.pending,
        decision.copy_rate_docs_per_sec,
        decision.predicted_final_ms,
        decision.pause_budget_ms
    );
    let why = match &decision.kind {
        Some(Kind::NotConverging(rates)) => format!(
            "blue changes at {:.0} docs/s, the copy follows at {:.0} docs/s; ",
            rates.blue_change_rate_docs_per_sec, rates.copy_rate_docs_per_sec
        ),
        Some(Kind::DeadlineExceeded(deadline)) => {
            format!("deadline {} passed; ", rfc3339(deadline.deadline_unix_ms))
        }
        Some(Kind::MaxCyclesReached(max)) => format!("{} cycles run; ", max.max_cycles),
        Some(Kind::AnotherCycle(_) | Kind::CutoverReady(_)) | None => String::new(),
    };
    format!("{} — {why}{figures}", decision_human(decision))
}

fn dead_letters(status: &UpgradeStatus) -> String {
    let shown = status.dead_letters.len().min(DEAD_LETTERS_SHOWN);
    let mut out = format!("dead letters: {} in total\n", status.dead_letter_total);
    for letter in status.dead_letters.iter().take(shown) {
        let from = if letter.source.is_empty() {
            String::new()
        } else {
            format!("{} ", letter.source)
        };
        let _ = writeln!(
            out,
            "  {from}{}/{} v{}: {}",
            letter.collection, letter.id, letter.version, letter.error
        );
    }
    let more = status.dead_letter_total.saturating_sub(shown as u64);
    if more > 0 {
        let _ = writeln!(out, "  … and {more} more");
    }
    out
}

pub(crate) fn micros(value: u64) -> String {
    if value < 1_000 {
        format!("{value} µs")
    } else {
        format!("{:.1} ms", value as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests;
