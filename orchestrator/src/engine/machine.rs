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
//! [`Event`]; it decides nothing on its own. The wire [`Phase`] and the status text are derived
//! from the state, never used as state.

use cutover_proto::v1::{Color, Phase};
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

/// The one transition function: `state` after `event`, or why not. Pure.
pub fn step(state: State, event: Event) -> Result<State, InvalidTransition> {
    use Event as E;
    use State as S;
    let refused = |state: &S, event: &E, hint| InvalidTransition {
        state: state.name(),
        event: event.name(),
        hint,
    };
    let next = match (state, event) {
        (s, E::Start) if s.allows_start() => S::Discovering,
        (s, E::Resumed) if !s.is_terminal() => s.resumed(),
        (S::Discovering, E::Discovered) => S::Cycling { undone: 0 },
        (S::Discovering | S::Cycling { .. } | S::Postponed { .. }, E::Failed { error, .. }) => {
            S::Failed { reason: error }
        }
        (S::Cycling { undone }, E::Cycled(verdict)) => cycled(undone, verdict),
        // Postponed, delta cycles keep the gap small; only proceed (or abort) moves on.
        (S::Postponed { undone }, E::Cycled(_)) => S::Postponed { undone },
        (S::Postponed { undone }, E::Proceed) => S::Handover {
            handover: Handover::Cutover {
                attempt: undone + 1,
                rehearse: false,
            },
            step: Step::Epoch,
        },
        (S::Handover { handover, step }, event) => return handover_step(handover, step, event),
        (
            S::Undoing {
                handover,
                epoch,
                from,
                why,
            },
            event,
        ) => return undoing_step(handover, epoch, from, why, event),
        (S::Switched { reverse_from }, E::ReverseSyncBegun) => S::ReverseSync { reverse_from },
        (
            S::Switched { reverse_from } | S::ReverseSync { reverse_from },
            E::Rollback { discard },
        ) => S::Handover {
            handover: Handover::Rollback {
                discard,
                reverse_from,
            },
            step: Step::Epoch,
        },
        (
            S::Discovering | S::Cycling { .. } | S::Postponed { .. } | S::Rehearsed { .. },
            E::Abort { reason },
        ) => S::Aborted { reason },
        (state, event) => {
            let hint = hint(&state, &event);
            return Err(refused(&state, &event, hint));
        }
    };
    Ok(next)
}

/// After a cycle: the verdict decides.
fn cycled(undone: u32, verdict: Verdict) -> State {
    match verdict {
        Verdict::Again => State::Cycling { undone },
        Verdict::Postpone => State::Postponed { undone },
        Verdict::Ready { rehearse } => State::Handover {
            handover: Handover::Cutover {
                attempt: undone + 1,
                rehearse,
            },
            step: Step::Epoch,
        },
        Verdict::GiveUp { reason } => State::Aborted { reason },
    }
}

fn handover_step(handover: Handover, step: Step, event: Event) -> Result<State, InvalidTransition> {
    use Event as E;
    use Step as T;
    let same = |step| State::Handover {
        handover: handover.clone(),
        step,
    };
    let next = match (step, event) {
        (T::Epoch, E::EpochTaken(epoch)) => same(T::Pausing { epoch }),
        (T::Pausing { epoch }, E::Paused) => same(T::Fencing { epoch }),
        (T::Fencing { epoch }, E::Fenced(fenced)) => same(T::FinalCycle { epoch, fenced }),
        (T::FinalCycle { epoch, fenced }, E::FinalCycleDone) => {
            same(T::Verifying { epoch, fenced })
        }
        (T::Verifying { epoch, .. }, E::Verified(verified))
            if matches!(handover, Handover::Cutover { rehearse: true, .. }) =>
        {
            State::Undoing {
                handover,
                epoch,
                from: StepName::Verifying,
                why: Undo::Rehearsed {
                    verified: verified.summary,
                },
            }
        }
        (T::Verifying { epoch, fenced }, E::Verified(verified)) => same(T::Sealing {
            epoch,
            fenced,
            verified,
        }),
        (
            T::Sealing {
                epoch, verified, ..
            },
            E::Sealed,
        ) => same(T::Committed { epoch, verified }),
        (T::Committed { epoch, verified }, E::Committed) => same(T::Switching { epoch, verified }),
        (T::Switching { verified, .. }, E::Switched) => match handover {
            Handover::Cutover { .. } => State::Switched {
                reverse_from: verified.green_heads,
            },
            Handover::Rollback { .. } => State::RolledBack {
                verified: verified.summary,
            },
        },
        // Nothing is held yet: a failure or an abort needs no undo.
        (T::Epoch, E::Failed { error, again }) => undone(handover, Undo::Failed { error, again }),
        (T::Epoch, E::Abort { reason }) if handover.direction() == Direction::Forward => {
            State::Aborted { reason }
        }
        (step, E::Failed { error, again }) if step.is_held() => State::Undoing {
            handover,
            epoch: step.epoch().expect("a held step has its epoch"),
            from: step.name(),
            why: Undo::Failed { error, again },
        },
        (step, E::Abort { reason })
            if step.is_held() && handover.direction() == Direction::Forward =>
        {
            State::Undoing {
                handover,
                epoch: step.epoch().expect("a held step has its epoch"),
                from: step.name(),
                why: Undo::Aborted { reason },
            }
        }
        (step, event) => {
            let state = State::Handover { handover, step };
            return Err(InvalidTransition {
                state: state.name(),
                event: event.name(),
                hint: hint(&state, &event),
            });
        }
    };
    Ok(next)
}

fn undoing_step(
    handover: Handover,
    epoch: u64,
    from: StepName,
    why: Undo,
    event: Event,
) -> Result<State, InvalidTransition> {
    match event {
        Event::Undone => Ok(undone(handover, why)),
        // An abort while a failed or interrupted cutover is undone: it ends aborted.
        Event::Abort { reason }
            if handover.direction() == Direction::Forward
                && !matches!(why, Undo::Aborted { .. }) =>
        {
            Ok(State::Undoing {
                handover,
                epoch,
                from,
                why: Undo::Aborted { reason },
            })
        }
        // Aborting twice is aborting once.
        Event::Abort { .. }
            if handover.direction() == Direction::Forward
                && matches!(why, Undo::Aborted { .. }) =>
        {
            Ok(State::Undoing {
                handover,
                epoch,
                from,
                why,
            })
        }
        event => {
            let state = State::Undoing {
                handover,
                epoch,
                from,
                why,
            };
            Err(InvalidTransition {
                state: state.name(),
                event: event.name(),
                hint: hint(&state, &event),
            })
        }
    }
}

/// Where an undone handover leaves the upgrade.
fn undone(handover: Handover, why: Undo) -> State {
    match handover {
        Handover::Rollback { reverse_from, .. } => State::ReverseSync { reverse_from },
        Handover::Cutover { attempt, .. } => match why {
            Undo::Failed { error, again } => {
                if again && attempt < CUTOVER_ATTEMPTS {
                    State::Cycling { undone: attempt }
                } else {
                    State::Aborted {
                        reason: format!(
                            "cutover attempt {attempt} undone ({error}); proxies resumed on blue, \
                             blue unfenced: giving up"
                        ),
                    }
                }
            }
            // A restart is not the cutover's fault: it does not count as an attempt.
            Undo::Interrupted => State::Cycling {
                undone: attempt.saturating_sub(1),
            },
            Undo::Aborted { reason } => State::Aborted { reason },
            Undo::Rehearsed { verified } => State::Rehearsed { verified },
        },
    }
}

fn hint(state: &State, event: &Event) -> Option<&'static str> {
    match event {
        Event::Abort { .. } if state.is_committed() => {
            Some("abort is only possible before the cutover commits (use rollback)")
        }
        Event::Abort { .. } => Some("abort needs an upgrade in progress"),
        Event::Rollback { .. } => {
            Some("rollback is for a switched upgrade (SWITCHED or REVERSE_SYNC)")
        }
        Event::Proceed => Some("proceed is for a postponed upgrade"),
        Event::Start => Some("wait for the upgrade to end, or abort it"),
        _ => None,
    }
}

impl Handover {
    /// Which way documents flow.
    pub fn direction(&self) -> Direction {
        match self {
            Self::Cutover { .. } => Direction::Forward,
            Self::Rollback { .. } => Direction::Reverse,
        }
    }

    /// The side that served before the handover: it is fenced, and proxies resume on it
    /// when the handover is undone.
    pub fn from(&self) -> Color {
        match self {
            Self::Cutover { .. } => Color::Blue,
            Self::Rollback { .. } => Color::Green,
        }
    }

    /// The side the handover switches to.
    pub fn to(&self) -> Color {
        match self {
            Self::Cutover { .. } => Color::Green,
            Self::Rollback { .. } => Color::Blue,
        }
    }
}

impl Step {
    /// The step's name.
    pub fn name(&self) -> StepName {
        match self {
            Self::Epoch => StepName::Epoch,
            Self::Pausing { .. } => StepName::Pausing,
            Self::Fencing { .. } => StepName::Fencing,
            Self::FinalCycle { .. } => StepName::FinalCycle,
            Self::Verifying { .. } => StepName::Verifying,
            Self::Sealing { .. } => StepName::Sealing,
            Self::Committed { .. } => StepName::Committed,
            Self::Switching { .. } => StepName::Switching,
        }
    }

    /// The proxy epoch, once taken.
    pub fn epoch(&self) -> Option<u64> {
        match self {
            Self::Epoch => None,
            Self::Pausing { epoch }
            | Self::Fencing { epoch }
            | Self::FinalCycle { epoch, .. }
            | Self::Verifying { epoch, .. }
            | Self::Sealing { epoch, .. }
            | Self::Committed { epoch, .. }
            | Self::Switching { epoch, .. } => Some(*epoch),
        }
    }

    /// Whether proxies may hold and a side may be fenced, with no commit yet: what an undo
    /// must put right.
    pub fn is_held(&self) -> bool {
        matches!(
            self,
            Self::Pausing { .. }
                | Self::Fencing { .. }
                | Self::FinalCycle { .. }
                | Self::Verifying { .. }
                | Self::Sealing { .. }
        )
    }

    /// Whether the decision is journaled.
    pub fn is_committed(&self) -> bool {
        matches!(self, Self::Committed { .. } | Self::Switching { .. })
    }
}

impl StepName {
    /// The name shown in the status (`handover_step`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Epoch => "epoch",
            Self::Pausing => "pausing",
            Self::Fencing => "fencing",
            Self::FinalCycle => "final_cycle",
            Self::Verifying => "verifying",
            Self::Sealing => "sealing",
            Self::Committed => "committed",
            Self::Switching => "switching",
        }
    }

    fn forward_phase(self) -> Phase {
        match self {
            Self::Epoch => Phase::ReadyForCutover,
            Self::Pausing => Phase::Pausing,
            Self::Fencing => Phase::Fencing,
            Self::FinalCycle => Phase::FinalCycle,
            // The fence is made permanent at the end of verification.
            Self::Verifying | Self::Sealing => Phase::Verifying,
            Self::Committed => Phase::Committed,
            Self::Switching => Phase::Switching,
        }
    }
}

impl State {
    /// The state's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Discovering => "discovering",
            Self::Cycling { .. } => "cycling",
            Self::Postponed { .. } => "postponed",
            Self::Handover { handover, step } => match (handover.direction(), step.name()) {
                (Direction::Forward, name) => match name {
                    StepName::Epoch => "ready_for_cutover",
                    name => name.as_str(),
                },
                (Direction::Reverse, _) => "rolling_back",
            },
            Self::Undoing { handover, why, .. } => match (handover.direction(), why) {
                (Direction::Forward, Undo::Aborted { .. }) => "aborting",
                (Direction::Forward, _) => "undoing",
                (Direction::Reverse, _) => "rolling_back",
            },
            Self::Rehearsed { .. } => "rehearsed",
            Self::Switched { .. } => "switched",
            Self::ReverseSync { .. } => "reverse_sync",
            Self::RolledBack { .. } => "rolled_back",
            Self::Aborted { .. } => "aborted",
            Self::Failed { .. } => "failed",
        }
    }

    /// The wire phase shown for this state (every rollback step is ROLLING_BACK; the undo of
    /// a failed or interrupted cutover shows the step it undoes, an abort's ABORTING).
    pub fn phase(&self) -> Phase {
        match self {
            Self::Idle => Phase::Idle,
            Self::Discovering => Phase::Discovering,
            Self::Cycling { .. } => Phase::Cycling,
            Self::Postponed { .. } => Phase::Postponed,
            Self::Rehearsed { .. } => Phase::ReadyForCutover,
            Self::Handover { handover, step } => match handover.direction() {
                Direction::Forward => step.name().forward_phase(),
                Direction::Reverse => Phase::RollingBack,
            },
            Self::Undoing {
                handover,
                from,
                why,
                ..
            } => match (handover.direction(), why) {
                (Direction::Reverse, _) => Phase::RollingBack,
                (Direction::Forward, Undo::Aborted { .. }) => Phase::Aborting,
                (Direction::Forward, _) => from.forward_phase(),
            },
            Self::Switched { .. } => Phase::Switched,
            Self::ReverseSync { .. } => Phase::ReverseSync,
            Self::RolledBack { .. } => Phase::RolledBack,
            Self::Aborted { .. } => Phase::Aborted,
            Self::Failed { .. } => Phase::Failed,
        }
    }

    /// The direction of the handover under way, if any (a status field).
    pub fn direction(&self) -> Option<Direction> {
        match self {
            Self::Handover { handover, .. } | Self::Undoing { handover, .. } => {
                Some(handover.direction())
            }
            _ => None,
        }
    }

    /// The handover's step for the status: its step's name, or "undoing".
    pub fn handover_step(&self) -> Option<&'static str> {
        match self {
            Self::Handover { step, .. } => Some(step.name().as_str()),
            Self::Undoing { .. } => Some("undoing"),
            _ => None,
        }
    }

    /// Nothing follows: the upgrade is over and its driver has stopped.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Idle | Self::RolledBack { .. } | Self::Aborted { .. } | Self::Failed { .. }
        )
    }

    /// A new upgrade may start: the last one is over, or in reverse sync (which a new start
    /// ends).
    pub fn allows_start(&self) -> bool {
        self.is_terminal() || matches!(self, Self::ReverseSync { .. })
    }

    /// The forward decision is journaled: only a rollback leads back to blue.
    pub fn is_committed(&self) -> bool {
        match self {
            Self::Handover {
                handover: Handover::Cutover { .. },
                step,
            } => step.is_committed(),
            Self::Handover {
                handover: Handover::Rollback { .. },
                ..
            }
            | Self::Undoing {
                handover: Handover::Rollback { .. },
                ..
            }
            | Self::Switched { .. }
            | Self::ReverseSync { .. }
            | Self::RolledBack { .. } => true,
            _ => false,
        }
    }

    /// The upgrade's outcome is settled for a `Watch` stream: terminal, a rehearsal done, or
    /// green serving.
    pub fn is_final(&self) -> bool {
        self.allows_start() || matches!(self, Self::Rehearsed { .. })
    }

    /// What the driver does when this state's effect fails.
    pub fn on_error(&self) -> OnError {
        match self {
            Self::Discovering | Self::Cycling { .. } | Self::Postponed { .. } => OnError::Fail,
            Self::Handover { step, .. } if !step.is_committed() => OnError::Undo,
            _ => OnError::Retry,
        }
    }

    /// The state a restarted orchestrator goes on from: a handover held but not committed is
    /// undone (its final cycle and verification would be stale); everything else goes on.
    fn resumed(self) -> Self {
        match self {
            Self::Handover { handover, step } if step.is_held() => Self::Undoing {
                handover,
                epoch: step.epoch().expect("a held step has its epoch"),
                from: step.name(),
                why: Undo::Interrupted,
            },
            state => state,
        }
    }

    /// The proxy epoch of the handover under way.
    pub fn epoch(&self) -> Option<u64> {
        match self {
            Self::Handover { step, .. } => step.epoch(),
            Self::Undoing { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }
}

impl Event {
    /// The event's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Discovered => "discovered",
            Self::Cycled(_) => "cycled",
            Self::Proceed => "proceed",
            Self::EpochTaken(_) => "epoch taken",
            Self::Paused => "paused",
            Self::Fenced(_) => "fenced",
            Self::FinalCycleDone => "final cycle done",
            Self::Verified(_) => "verified",
            Self::Sealed => "sealed",
            Self::Committed => "committed",
            Self::Switched => "switched",
            Self::ReverseSyncBegun => "reverse sync begun",
            Self::Undone => "undone",
            Self::Failed { .. } => "failed",
            Self::Abort { .. } => "abort",
            Self::Rollback { .. } => "rollback",
            Self::Resumed => "resumed",
        }
    }
}

/// The status detail of entering `to` from `from` through `event` (for aborted and failed,
/// the status's error): what it is doing, or why it got there.
pub fn narrate(from: &State, event: &Event, to: &State) -> String {
    let why_undone = match from {
        State::Undoing { why, .. } => Some(why),
        _ => None,
    };
    match (to, event) {
        (State::Cycling { .. }, Event::Undone) => match (from, why_undone) {
            (
                State::Undoing {
                    handover: Handover::Cutover { attempt, .. },
                    ..
                },
                Some(Undo::Failed { error, .. }),
            ) => format!(
                "cutover attempt {attempt} undone ({error}); proxies resumed on blue, blue \
                 unfenced: cycling again"
            ),
            _ => "a cutover was interrupted and undone; cycling again".to_owned(),
        },
        (State::Cycling { .. }, Event::Failed { error, .. }) => {
            format!("the cutover could not begin ({error}): cycling again")
        }
        (State::Cycling { .. } | State::Discovering | State::Idle, _) => String::new(),
        (State::Postponed { .. }, _) => {
            "at the threshold: `cutover upgrade proceed` cuts over; delta cycles go on".to_owned()
        }
        (State::Handover { handover, step }, _) => narrate_step(handover, step, event),
        (State::Undoing { handover, why, .. }, _) => {
            let (what, side) = match handover.direction() {
                Direction::Forward => ("the cutover", "blue"),
                Direction::Reverse => ("the rollback", "green"),
            };
            let why = match why {
                Undo::Failed { error, .. } => error.clone(),
                Undo::Interrupted => "interrupted".to_owned(),
                Undo::Aborted { reason } => reason.clone(),
                Undo::Rehearsed { verified } => format!("rehearsal: {verified}"),
            };
            format!("undoing {what} ({why}): unfencing {side}, resuming proxies on {side}")
        }
        (State::Rehearsed { verified }, _) => {
            format!("rehearsal done: {verified}; proxies resumed on blue, blue unfenced")
        }
        (State::Switched { .. }, _) => "every proxy routes to green".to_owned(),
        (State::ReverseSync { .. }, Event::Undone) => match why_undone {
            Some(Undo::Failed { error, .. }) => format!(
                "rollback failed and was undone ({error}); green still serves and nothing was \
                 lost: fix the cause and roll back again"
            ),
            _ => "a rollback was interrupted and undone; green still serves: roll back again"
                .to_owned(),
        },
        (State::ReverseSync { .. }, Event::Failed { error, .. }) => format!(
            "rollback refused ({error}); green still serves and nothing was lost: fix the cause \
             and roll back again"
        ),
        (State::ReverseSync { .. }, _) => "green serves; its changes flow back to blue".to_owned(),
        (State::RolledBack { verified }, _) => format!("{verified}; every proxy routes to blue"),
        (State::Aborted { reason } | State::Failed { reason }, _) => reason.clone(),
    }
}

fn narrate_step(handover: &Handover, step: &Step, event: &Event) -> String {
    let rollback = handover.direction() == Direction::Reverse;
    let prefix = if rollback { "rollback: " } else { "" };
    let text = match step {
        Step::Epoch if rollback => "rolling back to blue".to_owned(),
        Step::Epoch => match event {
            Event::Proceed => "proceed by operator".to_owned(),
            _ => "the final cycle fits the pause budget".to_owned(),
        },
        Step::Pausing { epoch } => format!("epoch {epoch}: proxies hold new requests and drain"),
        Step::Fencing { .. } if rollback => "fencing green".to_owned(),
        Step::Fencing { .. } => "fencing blue's client writes".to_owned(),
        Step::FinalCycle { .. } if rollback => "final reverse cycle".to_owned(),
        Step::FinalCycle { .. } => "copying what blue took since the last cycle".to_owned(),
        Step::Verifying { .. } => "comparing per-partition counts and digests".to_owned(),
        Step::Sealing { verified, .. } => {
            let side = if rollback { "green" } else { "blue" };
            format!("{}; fencing {side} for good", verified.summary)
        }
        Step::Committed { verified, .. } if rollback => {
            format!("{}; committed: unfencing blue", verified.summary)
        }
        Step::Committed { verified, .. } => format!("{}; blue fenced for good", verified.summary),
        Step::Switching { .. } => {
            let side = if rollback { "blue" } else { "green" };
            format!("switching every proxy to {side}")
        }
    };
    format!("{prefix}{text}")
}

#[cfg(test)]
mod tests;
