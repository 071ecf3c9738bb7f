//! What a state is called and shows: its name, the wire phase, the status fields, the
//! predicates the driver and the engine ask, and the status text of a transition.

use cutover_proto::v1::{Color, Phase};

use super::{Direction, Event, Handover, OnError, State, Step, StepName, Undo};

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
    pub(super) fn resumed(self) -> Self {
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
        Step::Epoch if rollback => match handover {
            Handover::Rollback { discard: true, .. } => "rolling back to blue; green's writes \
                without a reverse program are discarded on request"
                .to_owned(),
            _ => "rolling back to blue".to_owned(),
        },
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
