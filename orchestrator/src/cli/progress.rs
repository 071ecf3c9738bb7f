//! `cutover upgrade status --watch`: the progress line drawn for each Watch event, and what
//! the phase the stream ended in means for the exit status.

use cutover_proto::v1::{Phase, ProgressEvent, UpgradeStatus};

use super::{CliError, render};

/// Width of the progress bar, in characters.
pub(super) const BAR_WIDTH: usize = 30;

/// Longest phase detail shown on the line, so a live line stays one terminal row.
const DETAIL_CHARS: usize = 60;

/// One line for one event: phase, cycle, copied/expected with a bar, rate, ETA, pending
/// and the last decision. Outside a cycle, the phase detail replaces the copy figures.
pub(super) fn line(event: &ProgressEvent) -> String {
    let status = event.status.as_ref();
    let phase = status.map_or(Phase::Unspecified, UpgradeStatus::phase);
    let mut parts = vec![render::phase_human(phase)];
    if let Some(status) = status.filter(|s| !s.handover_step.is_empty()) {
        // Every rollback step is ROLLING_BACK: the step says where it is.
        parts.push(format!(
            "{} {}",
            status.direction,
            status.handover_step.replace('_', " ")
        ));
    }
    if event.documents_expected > 0 || event.documents_copied > 0 {
        parts.push(format!("cycle {}", current_cycle(status)));
        parts.push(copied(event.documents_copied, event.documents_expected));
        parts.push(format!("{:.0} docs/s", event.docs_per_sec));
        parts.push(format!("ETA {}", eta(event.eta_ms)));
        if let Some(status) = status.filter(|s| s.pipelines.len() > 1) {
            let pipelines = &status.pipelines;
            let busy = pipelines.iter().filter(|p| p.state != "done").count();
            parts.push(format!("{busy}/{} pipelines busy", pipelines.len()));
            if let Some(p) = render::slowest(pipelines) {
                let waiting = if p.waiting_on.is_empty() {
                    format!("{:.0} docs/s", p.docs_per_sec)
                } else {
                    format!("waiting: {}", truncate(&p.waiting_on, DETAIL_CHARS))
                };
                parts.push(format!("slowest {} → {} {waiting}", p.source, p.sink));
            }
        }
    } else if let Some(detail) = status
        .map(|s| s.phase_detail.as_str())
        .filter(|d| !d.is_empty())
    {
        parts.push(truncate(detail, DETAIL_CHARS));
    }
    if let Some(decision) = status.and_then(|s| s.last_decision.as_ref()) {
        parts.push(format!("pending {}", decision.pending));
        parts.push(format!("last: {}", render::decision_human(decision)));
    }
    parts.join(" · ")
}

/// The cycle in progress: the one after the last finished.
fn current_cycle(status: Option<&UpgradeStatus>) -> u32 {
    status
        .and_then(|s| s.cycles.last())
        .map_or(1, |c| c.cycle.saturating_add(1))
}

/// `copied/expected [####....] 45%`, or `copied/?` and an empty bar when the size is unknown.
pub(super) fn copied(copied: u64, expected: u64) -> String {
    if expected == 0 {
        return format!("{copied}/? [{}]", " ".repeat(BAR_WIDTH));
    }
    let done = copied.min(expected);
    let filled = usize::try_from(done * BAR_WIDTH as u64 / expected).unwrap_or(BAR_WIDTH);
    let percent = done * 100 / expected;
    format!(
        "{copied}/{expected} [{}{}] {percent}%",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled)
    )
}

/// An estimate for people: `0.4s`, `12s`, `3m05s`, `1h02m`; `?` when unknown (0).
pub(super) fn eta(ms: u64) -> String {
    let seconds = ms / 1_000;
    match ms {
        0 => "?".to_owned(),
        1..1_000 => format!("{:.1}s", ms as f64 / 1e3),
        1_000..60_000 => format!("{seconds}s"),
        60_000..3_600_000 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3_600, seconds % 3_600 / 60),
    }
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(chars.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

/// What the phase a watch ended in means: the exit status of `status --watch`.
pub(super) fn settle(status: &UpgradeStatus) -> Result<(), CliError> {
    let phase = status.phase();
    match phase {
        Phase::ReadyForCutover
        | Phase::Switched
        | Phase::ReverseSync
        | Phase::RolledBack
        | Phase::Postponed
        | Phase::Idle => Ok(()),
        Phase::Aborted | Phase::Failed => Err(CliError::UpgradeEnded {
            upgrade_id: status.upgrade_id.clone(),
            phase: render::phase_key(phase),
            error: if status.error.is_empty() {
                "no reason given".to_owned()
            } else {
                status.error.clone()
            },
        }),
        Phase::Unspecified
        | Phase::Discovering
        | Phase::Cycling
        | Phase::Pausing
        | Phase::Fencing
        | Phase::FinalCycle
        | Phase::Verifying
        | Phase::Committed
        | Phase::Switching
        | Phase::RollingBack
        | Phase::Aborting => Err(CliError::WatchEnded {
            phase: render::phase_key(phase),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{codes, fixtures};

    #[test]
    fn the_line_shows_cycle_progress_rate_eta_and_decision() {
        assert_eq!(
            line(&fixtures::event()),
            "cycling · cycle 3 · 41200/90000 [#############.................] 45% · \
             12000 docs/s · ETA 4s · 2/2 pipelines busy · slowest blue-2 → green-1 waiting: \
             http://blue-2:7001: Pull: connection refused · pending 1200 · last: another cycle"
        );
    }

    #[test]
    fn outside_a_cycle_the_line_shows_the_detail() {
        let pausing = |detail: String| {
            let mut status = fixtures::status(0);
            status.phase = Phase::Pausing.into();
            status.phase_detail = detail;
            status.last_decision = None;
            ProgressEvent {
                status: Some(status),
                ..ProgressEvent::default()
            }
        };
        assert_eq!(
            line(&pausing("waiting for proxy p2 to drain".to_owned())),
            "pausing · waiting for proxy p2 to drain"
        );
        let long = line(&pausing("x".repeat(100)));
        assert_eq!(
            long.chars().count(),
            "pausing · ".chars().count() + DETAIL_CHARS
        );
        assert!(long.ends_with('…'), "{long}");
    }

    #[test]
    fn the_bar_is_always_30_characters() {
        for (copied_, expected) in [(0, 10), (5, 10), (10, 10), (15, 10), (7, 0)] {
            let text = copied(copied_, expected);
            let bar = &text[text.find('[').expect("[") + 1..text.find(']').expect("]")];
            assert_eq!(bar.chars().count(), BAR_WIDTH, "{text}");
        }
        assert!(copied(10, 10).ends_with("[##############################] 100%"));
        assert!(copied(15, 10).ends_with("100%"), "an overshoot is capped");
        assert!(copied(7, 0).starts_with("7/? ["));
    }

    #[test]
    fn etas_read_like_durations() {
        assert_eq!(eta(0), "?");
        assert_eq!(eta(400), "0.4s");
        assert_eq!(eta(12_900), "12s");
        assert_eq!(eta(185_000), "3m05s");
        assert_eq!(eta(3_720_000), "1h02m");
    }

    #[test]
    fn the_end_phase_decides_the_exit_status() {
        let exit = |phase: Phase| {
            let mut status = fixtures::status(0);
            status.phase = phase.into();
            settle(&status).map_or_else(|e| e.exit_code(), |()| codes::OK)
        };
        for ok in [
            Phase::ReadyForCutover,
            Phase::Switched,
            Phase::ReverseSync,
            Phase::RolledBack,
            Phase::Postponed,
            Phase::Idle,
        ] {
            assert_eq!(exit(ok), codes::OK, "{ok:?}");
        }
        assert_eq!(exit(Phase::Aborted), codes::FAILED);
        assert_eq!(exit(Phase::Failed), codes::FAILED);
        assert_eq!(exit(Phase::Cycling), codes::FAILED, "ended before settling");
        let mut status = fixtures::status(0);
        status.phase = Phase::Aborted.into();
        status.error = "not converging".to_owned();
        let error = settle(&status).expect_err("aborted");
        assert_eq!(
            error.to_string(),
            "upgrade u1 ended in phase aborted: not converging"
        );
    }
}
