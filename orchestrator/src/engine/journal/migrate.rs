//! Layout 1 → 2: the `phase` record (a wire phase name, since when, a reason) and the
//! `cutover` record (the handover under way) of releases before the state machine become one
//! `state` record and the `holds`. Every phase such a release could journal maps to the state
//! that resumes it the same way: a cutover held but not committed is undone, a committed one
//! finishes, reverse sync goes on (it may have lasted for days) and still allows a rollback.

use rocksdb::WriteBatch;
use serde::Deserialize;

use super::{Direction, HOLDS, Hold, Journal, JournalError, STATE, StateRecord, UpgradeRecord};
use crate::engine::machine::{Handover, Heads, State, Step, StepName, Undo, Verified};

const PHASE: &[u8] = b"phase";
const CUTOVER: &[u8] = b"cutover";

/// Layout 1's `phase` record.
#[derive(Deserialize)]
struct StoredPhase {
    phase: String,
    since_unix_ms: u64,
    reason: String,
}

/// Layout 1's `cutover` record.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CutoverRecord {
    direction: Direction,
    epoch: u64,
    committed: bool,
    fenced_heads: Heads,
    holds: Vec<Hold>,
    verified: String,
    reverse_from: Heads,
    discard: bool,
    rehearsed: bool,
}

/// Adds to `batch` what turns `journal`, of layout 1, into layout 2.
pub(super) fn from_layout_1(journal: &Journal, batch: &mut WriteBatch) -> Result<(), JournalError> {
    let upgrade: UpgradeRecord = journal
        .json(super::UPGRADE)?
        .ok_or_else(|| journal.corrupt("layout 1: an upgrade key without its record"))?;
    let phase: StoredPhase = journal
        .json(PHASE)?
        .ok_or_else(|| journal.corrupt("layout 1: an upgrade without its phase"))?;
    let cutover: Option<CutoverRecord> = journal.json(CUTOVER)?;
    let state = state_of(&upgrade, &phase, cutover.as_ref())
        .ok_or_else(|| journal.corrupt(format!("layout 1: unknown phase {:?}", phase.phase)))?;
    let record = StateRecord {
        state,
        since_unix_ms: phase.since_unix_ms,
        detail: phase.reason,
    };
    batch.put(STATE, serde_json::to_vec(&record).expect("serialises"));
    let holds = cutover.map(|c| c.holds).unwrap_or_default();
    batch.put(HOLDS, serde_json::to_vec(&holds).expect("serialises"));
    batch.delete(PHASE);
    batch.delete(CUTOVER);
    Ok(())
}

/// The state of a layout-1 phase and cutover record; `None` for a phase name it never wrote.
fn state_of(
    upgrade: &UpgradeRecord,
    phase: &StoredPhase,
    cutover: Option<&CutoverRecord>,
) -> Option<State> {
    let empty = CutoverRecord::default();
    let record = cutover.unwrap_or(&empty);
    let forward = || Handover::Cutover {
        attempt: 1,
        rehearse: upgrade.rehearse,
    };
    let epoch = record.epoch;
    let fenced = || record.fenced_heads.clone();
    let verified = || Verified {
        summary: record.verified.clone(),
        green_heads: record.reverse_from.clone(),
    };
    let at = |handover, step| State::Handover { handover, step };
    let reason = || phase.reason.clone();
    Some(match phase.phase.as_str() {
        "PHASE_IDLE" | "PHASE_UNSPECIFIED" => State::Idle,
        "PHASE_DISCOVERING" => State::Discovering,
        "PHASE_CYCLING" => State::Cycling { undone: 0 },
        "PHASE_POSTPONED" => State::Postponed { undone: 0 },
        "PHASE_READY_FOR_CUTOVER" if upgrade.rehearse && record.rehearsed => State::Rehearsed {
            verified: record.verified.clone(),
        },
        "PHASE_READY_FOR_CUTOVER" => at(forward(), Step::Epoch),
        "PHASE_PAUSING" => at(forward(), Step::Pausing { epoch }),
        "PHASE_FENCING" => at(forward(), Step::Fencing { epoch }),
        "PHASE_FINAL_CYCLE" => at(
            forward(),
            Step::FinalCycle {
                epoch,
                fenced: fenced(),
            },
        ),
        "PHASE_VERIFYING" => at(
            forward(),
            Step::Verifying {
                epoch,
                fenced: fenced(),
            },
        ),
        "PHASE_COMMITTED" => at(
            forward(),
            Step::Committed {
                epoch,
                verified: verified(),
            },
        ),
        "PHASE_SWITCHING" => at(
            forward(),
            Step::Switching {
                epoch,
                verified: verified(),
            },
        ),
        "PHASE_SWITCHED" => State::Switched {
            reverse_from: record.reverse_from.clone(),
        },
        "PHASE_REVERSE_SYNC" => State::ReverseSync {
            reverse_from: record.reverse_from.clone(),
        },
        "PHASE_ROLLING_BACK" => rollback_state(record),
        "PHASE_ROLLED_BACK" => State::RolledBack {
            verified: record.verified.clone(),
        },
        "PHASE_ABORTING" if cutover.is_some_and(|c| c.direction == Direction::Forward) => {
            State::Undoing {
                handover: forward(),
                epoch,
                from: StepName::Pausing,
                why: Undo::Aborted { reason: reason() },
            }
        }
        // An abort with no cutover under way has nothing to undo.
        "PHASE_ABORTING" | "PHASE_ABORTED" => State::Aborted { reason: reason() },
        "PHASE_FAILED" => State::Failed { reason: reason() },
        _ => return None,
    })
}

/// A layout-1 rollback: asked for and not begun, held and not committed (a restart undoes
/// it), or committed (blue is unfenced again, idempotent, then every proxy switched).
fn rollback_state(record: &CutoverRecord) -> State {
    let rollback = Handover::Rollback {
        discard: record.discard,
        reverse_from: record.reverse_from.clone(),
    };
    let epoch = record.epoch;
    let step = if record.direction != Direction::Reverse || (epoch == 0 && !record.committed) {
        Step::Epoch
    } else if record.committed {
        Step::Committed {
            epoch,
            verified: Verified {
                summary: record.verified.clone(),
                green_heads: Vec::new(),
            },
        }
    } else {
        Step::FinalCycle {
            epoch,
            fenced: record.fenced_heads.clone(),
        }
    };
    State::Handover {
        handover: rollback,
        step,
    }
}
