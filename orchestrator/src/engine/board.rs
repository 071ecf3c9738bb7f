//! What the engine shows: the upgrade's state, status and progress, kept in memory, built
//! from the journal on start, and published on a `watch` channel that `Status`, `Watch`, the
//! CLI and the tests read. The state is journaled here, before it is shown.

use std::{
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use cutover_proto::v1::{
    self as pb, Phase, ProgressEvent, UpgradeStatus, decision::Kind as DecisionKind,
};
use tokio::sync::watch;

use super::{
    journal::{CycleRecord, Hold, Journal, JournalError, StateRecord},
    machine::State,
    metrics as m,
    threshold::{Assessment, Decision},
};

/// Dead letters listed in a status (the total is always given).
pub const DEAD_LETTERS_SHOWN: usize = 100;

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The published status, and the journal it is recorded in.
#[derive(Debug, Clone)]
pub struct Board {
    journal: Arc<Journal>,
    /// The upgrade's state, as last journaled.
    state: Arc<Mutex<State>>,
    /// The current event; the channel is its only copy.
    tx: Arc<watch::Sender<ProgressEvent>>,
}

impl Board {
    /// The status as the journal has it.
    pub fn load(journal: Arc<Journal>) -> Result<Self, JournalError> {
        let mut status = UpgradeStatus {
            phase: Phase::Idle as i32,
            ..UpgradeStatus::default()
        };
        let mut state = State::Idle;
        if let (Some(upgrade), Some(record)) = (journal.upgrade()?, journal.state()?) {
            status.upgrade_id = upgrade.id;
            status.started_unix_ms = upgrade.started_unix_ms;
            show_state(&mut status, &record.state, &record.detail);
            status.updated_unix_ms = record.since_unix_ms;
            status.cycles = journal.cycles()?.iter().map(cycle_message).collect();
            let holds = journal.holds()?;
            status.holds = hold_messages(&holds);
            m::hold(&holds);
            state = record.state;
        }
        let event = ProgressEvent {
            status: Some(status),
            ..ProgressEvent::default()
        };
        m::phase(state.phase());
        // The status shows no decision until this process makes one; neither do the metrics.
        m::decision(None);
        let (tx, _) = watch::channel(event);
        let board = Self {
            journal,
            state: Arc::new(Mutex::new(state)),
            tx: Arc::new(tx),
        };
        board.refresh_dead_letters()?;
        Ok(board)
    }

    /// The upgrade's state, as last journaled.
    pub fn state(&self) -> State {
        self.state.lock().expect("not poisoned").clone()
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The current event.
    pub fn current(&self) -> ProgressEvent {
        self.tx.borrow().clone()
    }

    /// A receiver of every change.
    pub fn subscribe(&self) -> watch::Receiver<ProgressEvent> {
        self.tx.subscribe()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        phase_of(&self.tx.borrow())
    }

    fn update(&self, change: impl FnOnce(&mut ProgressEvent)) {
        self.tx.send_modify(|event| {
            change(event);
            event
                .status
                .get_or_insert_with(UpgradeStatus::default)
                .updated_unix_ms = now_unix_ms();
        });
    }

    /// A new upgrade begins (already journaled): everything shown of the previous one goes.
    pub fn begin(&self, upgrade_id: &str, started_unix_ms: u64) {
        *self.state.lock().expect("not poisoned") = State::Discovering;
        self.update(|event| {
            *event = ProgressEvent {
                status: Some(UpgradeStatus {
                    upgrade_id: upgrade_id.to_owned(),
                    phase: Phase::Discovering as i32,
                    started_unix_ms,
                    ..UpgradeStatus::default()
                }),
                ..ProgressEvent::default()
            };
        });
        m::phase(Phase::Discovering);
        // A new upgrade has made no decision and held nothing yet: figures of the previous
        // one would look like its own (and fire its alerts).
        m::decision(None);
        m::hold(&[]);
    }

    /// Journals `state` of upgrade `upgrade_id` (one synced write; refused once the journal
    /// holds another upgrade), then shows it with `detail` (for ABORTED and FAILED, the
    /// status's error).
    pub fn commit(
        &self,
        upgrade_id: &str,
        state: &State,
        detail: &str,
    ) -> Result<(), JournalError> {
        let record = StateRecord {
            state: state.clone(),
            since_unix_ms: now_unix_ms(),
            detail: detail.to_owned(),
        };
        self.journal.set_state(upgrade_id, &record)?;
        *self.state.lock().expect("not poisoned") = state.clone();
        let phase = state.phase();
        tracing::info!(
            state = state.name(),
            phase = m::phase_name(phase),
            epoch = state.epoch(),
            detail,
            "transition"
        );
        m::phase(phase);
        self.update(|event| {
            show_state(
                event.status.get_or_insert_with(UpgradeStatus::default),
                state,
                detail,
            );
            event.documents_copied = 0;
            event.documents_expected = 0;
            event.docs_per_sec = 0.0;
            event.eta_ms = 0;
        });
        Ok(())
    }

    /// Shows a detail of the current phase (not journaled).
    pub fn detail(&self, detail: String) {
        self.update(|event| {
            event
                .status
                .get_or_insert_with(UpgradeStatus::default)
                .phase_detail = detail;
        });
    }

    /// Shows copy progress of cycle `cycle`, with a detail line saying so; `expected` is 0
    /// while the delta is still being counted.
    pub fn progress(&self, cycle: u32, copied: u64, expected: u64, docs_per_sec: f64) {
        self.update(|event| {
            event
                .status
                .get_or_insert_with(UpgradeStatus::default)
                .phase_detail = if expected == 0 && copied > 0 {
                format!("cycle {cycle}: {copied} documents (counting the delta)")
            } else {
                format!("cycle {cycle}: {copied}/{expected} documents")
            };
            event.documents_copied = copied;
            event.documents_expected = expected;
            event.docs_per_sec = docs_per_sec;
            event.eta_ms = if docs_per_sec > 0.0 && expected > copied {
                ((expected - copied) as f64 / docs_per_sec * 1000.0) as u64
            } else {
                0
            };
        });
    }

    /// Shows a finished cycle (already journaled); a cycle of the same number is replaced
    /// (reverse sync accumulates into one).
    pub fn cycle(&self, cycle: &CycleRecord) {
        self.update(|event| {
            let status = event.status.get_or_insert_with(UpgradeStatus::default);
            let message = cycle_message(cycle);
            match status.cycles.iter_mut().find(|c| c.cycle == cycle.cycle) {
                Some(shown) => *shown = message,
                None => status.cycles.push(message),
            }
        });
    }

    /// Shows the copy pipelines and their figures.
    pub fn pipelines(&self, pipelines: Vec<pb::PipelineStatus>) {
        self.update(|event| {
            event
                .status
                .get_or_insert_with(UpgradeStatus::default)
                .pipelines = pipelines;
        });
    }

    /// Shows the latest probe of the plan's peers (see [`reach`](super::reach)), unless the
    /// upgrade shown is another one by now or nothing changed.
    pub fn reachability(
        &self,
        upgrade_id: &str,
        answers: Vec<(&'static str, String, Option<String>)>,
    ) {
        self.tx.send_if_modified(|event| {
            let Some(status) = event.status.as_mut() else {
                return false;
            };
            if status.upgrade_id != upgrade_id {
                return false;
            }
            let peers = super::reach::merge(&status.peers, answers);
            if peers == status.peers {
                return false;
            }
            status.peers = peers;
            status.updated_unix_ms = now_unix_ms();
            true
        });
    }

    /// The id of the upgrade shown; empty when there is none.
    pub fn upgrade_id(&self) -> String {
        self.tx
            .borrow()
            .status
            .as_ref()
            .map(|s| s.upgrade_id.clone())
            .unwrap_or_default()
    }

    /// Shows the figures of the latest hold.
    pub fn holds(&self, holds: &[Hold]) {
        m::hold(holds);
        self.update(|event| {
            let status = event.status.get_or_insert_with(UpgradeStatus::default);
            status.holds = hold_messages(holds);
        });
    }

    /// Shows a decision of the threshold engine.
    pub fn decision(&self, assessment: &Assessment) {
        m::decision(Some(&assessment.decision));
        self.update(|event| {
            let status = event.status.get_or_insert_with(UpgradeStatus::default);
            status.last_decision = Some(decision_message(assessment, status.started_unix_ms));
        });
    }

    /// Reloads the dead letters from the journal.
    pub fn refresh_dead_letters(&self) -> Result<u64, JournalError> {
        let dead = self.journal.dead_letters()?;
        let total = dead.len() as u64;
        m::dead_letters(total);
        let shown: Vec<pb::DeadLetter> = dead
            .into_iter()
            .take(DEAD_LETTERS_SHOWN)
            .map(|d| pb::DeadLetter {
                source: d.source,
                collection: d.collection,
                id: d.id,
                version: d.version,
                error: d.error,
            })
            .collect();
        self.update(|event| {
            let status = event.status.get_or_insert_with(UpgradeStatus::default);
            status.dead_letters = shown;
            status.dead_letter_total = total;
        });
        Ok(total)
    }
}

/// The status fields that follow the state: phase, direction, handover step, and the
/// detail (or, aborted and failed, the error).
fn show_state(status: &mut UpgradeStatus, state: &State, detail: &str) {
    status.phase = state.phase() as i32;
    status.direction = state
        .direction()
        .map(|d| d.as_str().to_owned())
        .unwrap_or_default();
    status.handover_step = state.handover_step().unwrap_or_default().to_owned();
    if matches!(state, State::Aborted { .. } | State::Failed { .. }) {
        status.error = detail.to_owned();
        status.phase_detail.clear();
    } else {
        status.error.clear();
        status.phase_detail = detail.to_owned();
    }
}

fn hold_messages(holds: &[Hold]) -> Vec<pb::ProxyHold> {
    holds
        .iter()
        .map(|h| pb::ProxyHold {
            proxy: h.proxy.clone(),
            held: h.released,
            max_hold_micros: h.max_hold_micros,
        })
        .collect()
}

fn phase_of(event: &ProgressEvent) -> Phase {
    event
        .status
        .as_ref()
        .and_then(|s| Phase::try_from(s.phase).ok())
        .unwrap_or(Phase::Idle)
}

fn cycle_message(cycle: &CycleRecord) -> pb::CycleRecord {
    pb::CycleRecord {
        cycle: cycle.cycle,
        documents: cycle.documents,
        bytes: cycle.bytes,
        tombstones: cycle.tombstones,
        dropped: cycle.dropped,
        failed: cycle.failed,
        duration_micros: cycle.duration_ms * 1000,
        pending_after: cycle.pending_after,
        final_cycle: cycle.final_cycle,
        direction: cycle.direction.as_str().to_owned(),
    }
}

fn decision_message(a: &Assessment, started_unix_ms: u64) -> pb::Decision {
    let kind = match a.decision {
        Decision::CutoverReady => DecisionKind::CutoverReady(pb::CutoverReady {}),
        Decision::AnotherCycle => DecisionKind::AnotherCycle(pb::AnotherCycle {}),
        Decision::NotConverging {
            blue_change_rate,
            copy_rate,
        } => DecisionKind::NotConverging(pb::NotConverging {
            blue_change_rate_docs_per_sec: blue_change_rate,
            copy_rate_docs_per_sec: copy_rate,
        }),
        Decision::CycleLimit { max_cycles } => {
            DecisionKind::MaxCyclesReached(pb::MaxCyclesReached { max_cycles })
        }
        Decision::DeadlineExceeded { deadline } => {
            DecisionKind::DeadlineExceeded(pb::DeadlineExceeded {
                deadline_unix_ms: started_unix_ms + deadline.as_millis() as u64,
            })
        }
    };
    pb::Decision {
        kind: Some(kind),
        pending: a.pending,
        copy_rate_docs_per_sec: if a.rate.is_finite() { a.rate } else { 0.0 },
        predicted_final_ms: a.predicted_final.as_secs_f64() * 1000.0,
        pause_budget_ms: a.pause_budget.as_secs_f64() * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_decision_gauge_follows_the_last_decision_and_a_new_upgrade_clears_it() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let gauge = |kind: &str| {
            let series = format!("cutover_orchestrator_decision{{kind=\"{kind}\"}} ");
            let text = handle.render();
            text.lines()
                .find_map(|line| line.strip_prefix(&series)?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(&dir.path().join("journal")).expect("journal");
        metrics::with_local_recorder(&recorder, || {
            let board = Board::load(Arc::new(journal)).expect("board");
            assert_eq!(gauge("not_converging"), 0.0);
            assert!(
                handle
                    .render()
                    .contains("cutover_orchestrator_dead_letters 0"),
                "{}",
                handle.render()
            );
            board.decision(&Assessment {
                decision: Decision::NotConverging {
                    blue_change_rate: 150.0,
                    copy_rate: 100.0,
                },
                cycles: 4,
                pending: 5_000,
                fixed: Duration::ZERO,
                rate: 100.0,
                switch_overhead: Duration::from_millis(50),
                overhead_measured: false,
                predicted_final: Duration::from_secs(50),
                pause_budget: Duration::from_millis(500),
            });
            assert_eq!(gauge("not_converging"), 1.0);
            assert_eq!(gauge("cutover_ready"), 0.0);
            board.begin("u2", now_unix_ms());
            assert_eq!(gauge("not_converging"), 0.0);
        });
    }

    #[test]
    fn progress_says_when_the_delta_is_still_being_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(&dir.path().join("journal")).expect("journal");
        let board = Board::load(Arc::new(journal)).expect("board");
        let events = board.subscribe();
        let detail = || {
            let event = events.borrow();
            let status = event.status.clone().unwrap_or_default();
            (status.phase_detail, event.documents_expected, event.eta_ms)
        };
        board.progress(1, 4_000, 0, 2_000.0);
        assert_eq!(
            detail(),
            ("cycle 1: 4000 documents (counting the delta)".into(), 0, 0)
        );
        board.progress(1, 4_000, 10_000, 2_000.0);
        assert_eq!(
            detail(),
            ("cycle 1: 4000/10000 documents".into(), 10_000, 3_000)
        );
    }
}
