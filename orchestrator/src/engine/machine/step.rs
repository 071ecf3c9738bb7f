//! The transition function: every legal (state, event) pair and the state it gives.

use super::{
    CUTOVER_ATTEMPTS, Direction, Event, Handover, InvalidTransition, State, Step, StepName, Undo,
    Verdict,
};

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
pub(super) fn undone(handover: Handover, why: Undo) -> State {
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
