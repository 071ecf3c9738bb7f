//! The upgrade as one state machine: [`State`] is everything the engine must remember of where
//! an upgrade stands (journaled whole on every transition, so a restart resumes from it), and
//! [`step`] is the only way it changes. Both directions of the handover are one protocol,
//! parameterised by [`Handover`]:
//!
//! ```text
//! epoch → pausing → fencing (a lease) → final cycle → verifying → sealing (the fence made
//! permanent) → committed → switching → switched/reverse sync (forward) or rolled back (reverse)
//! ```
//!
//! Before the commit any failure, an operator's abort or a restart turns the handover into
//! [`State::Undoing`]: the fenced side is unfenced, then every proxy resumes on the side it
//! was serving. The fence is permanent before the commit is journaled, so no lease can lapse
//! after a commit. From the commit on, the handover only goes forward.
//!
//! The driver (`driver.rs`) executes what a state asks for and feeds the outcome back as an
//! [`Event`]; it decides nothing on its own. The wire [`Phase`](cutover_proto::v1::Phase) and the status text are derived
//! from the state, never used as state.

use serde::{Deserialize, Serialize};

pub use super::journal::Direction;

/// Cutover attempts undone (a proxy that could not drain, a node that did not answer) before
/// the upgrade gives up.
pub const CUTOVER_ATTEMPTS: u32 = 3;

/// Each fenced node's head seq as its fence reported it: `(endpoint, seq)`.
pub type Heads = Vec<(String, u64)>;

/// Where an upgrade stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// No upgrade was ever started.
    Idle,
    /// Describing every node against the plan.
    Discovering,
    /// Copy cycles with a threshold decision after each; `undone` cutover attempts so far.
    Cycling {
        /// Cutover attempts undone so far.
        undone: u32,
    },
    /// At the threshold; delta cycles go on until the operator's proceed.
    Postponed {
        /// Cutover attempts undone so far.
        undone: u32,
    },
    /// A handover (a cutover or a rollback) under way.
    Handover {
        /// Which way, and what that way needs.
        handover: Handover,
        /// How far it got.
        step: Step,
    },
    /// A handover that did not commit, being undone: the fenced side unfenced, then every
    /// proxy resumed under `epoch` on the side it was serving.
    Undoing {
        /// The handover being undone.
        handover: Handover,
        /// Its proxy epoch.
        epoch: u64,
        /// The step it had reached.
        from: StepName,
        /// Why, which also says where the upgrade goes once undone.
        why: Undo,
    },
    /// A rehearsal passed verification and resumed on blue; only abort ends it.
    Rehearsed {
        /// What the verification found.
        verified: String,
    },
    /// Every proxy routes to green.
    Switched {
        /// Green's heads at the verification: reverse sync starts after them.
        reverse_from: Heads,
    },
    /// Green serves; its changes flow back to blue.
    ReverseSync {
        /// Green's heads at the verification: what a rollback counts green's writes from.
        reverse_from: Heads,
    },
    /// Rolled back: every proxy routes to blue, blue is unfenced.
    RolledBack {
        /// What the rollback's verification found.
        verified: String,
    },
    /// Abandoned before the commit; blue serves as before.
    Aborted {
        /// Why, with what to do.
        reason: String,
    },
    /// Stopped on an error before any handover; blue was not changed.
    Failed {
        /// Why, with what to do.
        reason: String,
    },
}

/// A handover's direction and what it needs that the other does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "direction", rename_all = "snake_case")]
pub enum Handover {
    /// Blue to green.
    Cutover {
        /// Which attempt this is, from 1.
        attempt: u32,
        /// A rehearsal: undone once verification passes.
        rehearse: bool,
    },
    /// Green back to blue.
    Rollback {
        /// Green's writes to collections without a reverse program are discarded on request.
        discard: bool,
        /// Green's heads at the forward verification.
        reverse_from: Heads,
    },
}

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// For people, e.g. "verified 1000 documents in 64 partitions (counts and digests)".
    pub summary: String,
    /// Green's heads once verified (a cutover's; empty for a rollback).
    pub green_heads: Heads,
}

/// How far a handover got, with what each step needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Taking a proxy epoch above every epoch a proxy has seen.
    Epoch,
    /// Every proxy holds new requests and drains the ones in flight.
    Pausing {
        /// The proxy epoch of this handover.
        epoch: u64,
    },
    /// The side that served is fenced with a lease.
    Fencing {
        /// The proxy epoch of this handover.
        epoch: u64,
    },
    /// The last delta cycle, from the fenced side.
    FinalCycle {
        /// The proxy epoch of this handover.
        epoch: u64,
        /// The fenced nodes' heads.
        fenced: Heads,
    },
    /// Both sides compared, per partition.
    Verifying {
        /// The proxy epoch of this handover.
        epoch: u64,
        /// The fenced nodes' heads.
        fenced: Heads,
    },
    /// The fence made permanent, checking that no write slipped in under the lease.
    Sealing {
        /// The proxy epoch of this handover.
        epoch: u64,
        /// The fenced nodes' heads.
        fenced: Heads,
        /// What the verification found.
        verified: Verified,
    },
    /// The decision is journaled: from here the handover only goes forward. A rollback
    /// unfences blue in this step.
    Committed {
        /// The proxy epoch of this handover.
        epoch: u64,
        /// What the verification found.
        verified: Verified,
    },
    /// Every proxy is switched to the new side, releasing its held requests there.
    Switching {
        /// The proxy epoch of this handover.
        epoch: u64,
        /// What the verification found.
        verified: Verified,
    },
}

/// A step's name, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    /// [`Step::Epoch`].
    Epoch,
    /// [`Step::Pausing`].
    Pausing,
    /// [`Step::Fencing`].
    Fencing,
    /// [`Step::FinalCycle`].
    FinalCycle,
    /// [`Step::Verifying`].
    Verifying,
    /// [`Step::Sealing`].
    Sealing,
    /// [`Step::Committed`].
    Committed,
    /// [`Step::Switching`].
    Switching,
}

/// Why a handover is undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Undo {
    /// A step failed. `again`: a cutover may be tried again (not after a verification
    /// mismatch, which would come back the same).
    Failed {
        /// What failed.
        error: String,
        /// Whether another attempt may succeed.
        again: bool,
    },
    /// A restarted orchestrator found it part-way.
    Interrupted,
    /// The operator aborted the upgrade.
    Aborted {
        /// The operator's reason.
        reason: String,
    },
    /// A rehearsal passed verification.
    Rehearsed {
        /// What the verification found.
        verified: String,
    },
}

/// What happened: an effect's outcome, an operator's command, or a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new upgrade starts (from a state that allows one).
    Start,
    /// Every node was described and fits the plan.
    Discovered,
    /// A copy cycle ended; the threshold engine's verdict.
    Cycled(Verdict),
    /// The operator lets a postponed upgrade cut over.
    Proceed,
    /// A proxy epoch was taken and journaled.
    EpochTaken(u64),
    /// Every proxy holds and has drained.
    Paused,
    /// The serving side is fenced; its heads.
    Fenced(Heads),
    /// The final cycle copied everything up to the fenced heads.
    FinalCycleDone,
    /// Both sides matched.
    Verified(Verified),
    /// The fence is permanent and nothing slipped in under the lease.
    Sealed,
    /// What the commit asks before the switch is done (a rollback: blue unfenced).
    Committed,
    /// Every proxy routes to the new side.
    Switched,
    /// Reverse sync begins after a forward switch.
    ReverseSyncBegun,
    /// The undo is complete: unfenced, every proxy resumed.
    Undone,
    /// What the state asked for failed and cannot be retried in place; `again` as in
    /// [`Undo::Failed`].
    Failed {
        /// What failed, with what to do.
        error: String,
        /// Whether another attempt may succeed.
        again: bool,
    },
    /// The operator abandons the upgrade.
    Abort {
        /// The operator's reason.
        reason: String,
    },
    /// The operator rolls a switched upgrade back.
    Rollback {
        /// Discard green's writes that cannot flow back.
        discard: bool,
    },
    /// A restarted orchestrator read this state from the journal.
    Resumed,
}

/// The threshold engine's verdict after a cycle, as the state machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Another cycle (or, postponed, another delta cycle while waiting).
    Again,
    /// The final cycle fits the pause budget: cut over (or rehearse the cutover).
    Ready {
        /// A rehearsal: undo the cutover once it verified.
        rehearse: bool,
    },
    /// The final cycle fits, but the plan waits for the operator's proceed.
    Postpone,
    /// It will not converge: abort, blue untouched.
    GiveUp {
        /// Why, with what to do.
        reason: String,
    },
}

/// An event the state does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event} is not possible in state {state}{}", hint.map(|h| format!(": {h}")).unwrap_or_default())]
pub struct InvalidTransition {
    /// The state's name.
    pub state: &'static str,
    /// The event's name.
    pub event: &'static str,
    /// What to do instead, when there is something.
    pub hint: Option<&'static str>,
}

/// What the driver does when the effect of a state fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Retry a transient failure a few times, then fail the upgrade (blue untouched).
    Fail,
    /// Feed [`Event::Failed`]: the handover is undone (or, not yet held, given back).
    Undo,
    /// Retry until it gets through, backing off: only finishing puts the system right.
    Retry,
}

mod status;
mod step;

pub use status::narrate;
pub use step::step;
#[cfg(test)]
use step::undone;

#[cfg(test)]
mod tests;
