//! The machine's transitions as a table: every legal one gives its state, and every other
//! pair of a sample state and a sample event is refused.

use cutover_proto::v1::Phase;

use super::*;

const E: u64 = 7;

fn heads() -> Heads {
    vec![("http://blue:1".to_owned(), 42)]
}

fn verified() -> Verified {
    Verified {
        summary: "verified 10 documents in 4 partitions (counts and digests)".to_owned(),
        green_heads: vec![("http://green:1".to_owned(), 99)],
    }
}

fn cutover(attempt: u32) -> Handover {
    Handover::Cutover {
        attempt,
        rehearse: false,
    }
}

fn rehearsal() -> Handover {
    Handover::Cutover {
        attempt: 1,
        rehearse: true,
    }
}

fn rollback() -> Handover {
    Handover::Rollback {
        discard: false,
        reverse_from: verified().green_heads,
    }
}

fn at(handover: Handover, step: Step) -> State {
    State::Handover { handover, step }
}

fn undoing(handover: Handover, from: StepName, why: Undo) -> State {
    State::Undoing {
        handover,
        epoch: E,
        from,
        why,
    }
}

fn failed(again: bool) -> Event {
    Event::Failed {
        error: "pausing: p1: Pause: no answer".to_owned(),
        again,
    }
}

fn abort() -> Event {
    Event::Abort {
        reason: "window over".to_owned(),
    }
}

fn aborted() -> State {
    State::Aborted {
        reason: "window over".to_owned(),
    }
}

/// Every step of a handover, with its epoch and data.
fn steps() -> Vec<Step> {
    vec![
        Step::Epoch,
        Step::Pausing { epoch: E },
        Step::Fencing { epoch: E },
        Step::FinalCycle {
            epoch: E,
            fenced: heads(),
        },
        Step::Verifying {
            epoch: E,
            fenced: heads(),
        },
        Step::Sealing {
            epoch: E,
            fenced: heads(),
            verified: verified(),
        },
        Step::Committed {
            epoch: E,
            verified: verified(),
        },
        Step::Switching {
            epoch: E,
            verified: verified(),
        },
    ]
}

fn states() -> Vec<State> {
    let mut states = vec![
        State::Idle,
        State::Discovering,
        State::Cycling { undone: 0 },
        State::Cycling { undone: 2 },
        State::Postponed { undone: 1 },
        State::Rehearsed {
            verified: "v".into(),
        },
        State::Switched {
            reverse_from: heads(),
        },
        State::ReverseSync {
            reverse_from: heads(),
        },
        State::RolledBack {
            verified: "v".into(),
        },
        aborted(),
        State::Failed {
            reason: "boom".into(),
        },
    ];
    for handover in [cutover(1), cutover(3), rehearsal(), rollback()] {
        for step in steps() {
            states.push(at(handover.clone(), step));
        }
        for why in [
            Undo::Failed {
                error: "e".into(),
                again: true,
            },
            Undo::Interrupted,
            Undo::Aborted {
                reason: "window over".into(),
            },
        ] {
            states.push(undoing(handover.clone(), StepName::Pausing, why));
        }
    }
    states.push(undoing(
        rehearsal(),
        StepName::Verifying,
        Undo::Rehearsed {
            verified: "v".into(),
        },
    ));
    states
}

fn events() -> Vec<Event> {
    vec![
        Event::Start,
        Event::Discovered,
        Event::Cycled(Verdict::Again),
        Event::Cycled(Verdict::Ready { rehearse: false }),
        Event::Cycled(Verdict::Ready { rehearse: true }),
        Event::Cycled(Verdict::Postpone),
        Event::Cycled(Verdict::GiveUp {
            reason: "not converging".into(),
        }),
        Event::Proceed,
        Event::EpochTaken(E),
        Event::Paused,
        Event::Fenced(heads()),
        Event::FinalCycleDone,
        Event::Verified(verified()),
        Event::Sealed,
        Event::Committed,
        Event::Switched,
        Event::ReverseSyncBegun,
        Event::Undone,
        failed(true),
        failed(false),
        abort(),
        Event::Rollback { discard: true },
        Event::Resumed,
    ]
}

/// The legal transitions of the sample states and events: (from, event, to).
fn legal() -> Vec<(State, Event, State)> {
    let mut table = Vec::new();
    let mut add = |from: State, event: Event, to: State| table.push((from, event, to));
    // A new upgrade, from any state that allows one.
    for from in states().into_iter().filter(State::allows_start) {
        add(from, Event::Start, State::Discovering);
    }
    // A restart: a held handover is undone, everything else goes on as it was.
    for from in states().into_iter().filter(|s| !s.is_terminal()) {
        let to = match &from {
            State::Handover { handover, step } if step.is_held() => {
                undoing(handover.clone(), step.name(), Undo::Interrupted)
            }
            other => other.clone(),
        };
        add(from, Event::Resumed, to);
    }
    add(
        State::Discovering,
        Event::Discovered,
        State::Cycling { undone: 0 },
    );
    for from in [
        State::Discovering,
        State::Cycling { undone: 0 },
        State::Cycling { undone: 2 },
        State::Postponed { undone: 1 },
    ] {
        for again in [true, false] {
            let to = State::Failed {
                reason: "pausing: p1: Pause: no answer".into(),
            };
            add(from.clone(), failed(again), to);
        }
        add(from, abort(), aborted());
    }
    for undone in [0, 2] {
        let from = State::Cycling { undone };
        add(
            from.clone(),
            Event::Cycled(Verdict::Again),
            State::Cycling { undone },
        );
        add(
            from.clone(),
            Event::Cycled(Verdict::Ready { rehearse: false }),
            at(cutover(undone + 1), Step::Epoch),
        );
        add(
            from.clone(),
            Event::Cycled(Verdict::Ready { rehearse: true }),
            at(
                Handover::Cutover {
                    attempt: undone + 1,
                    rehearse: true,
                },
                Step::Epoch,
            ),
        );
        add(
            from.clone(),
            Event::Cycled(Verdict::Postpone),
            State::Postponed { undone },
        );
        add(
            from,
            Event::Cycled(Verdict::GiveUp {
                reason: "not converging".into(),
            }),
            State::Aborted {
                reason: "not converging".into(),
            },
        );
    }
    let postponed = State::Postponed { undone: 1 };
    for verdict in [
        Verdict::Again,
        Verdict::Ready { rehearse: false },
        Verdict::Ready { rehearse: true },
        Verdict::Postpone,
        Verdict::GiveUp {
            reason: "not converging".into(),
        },
    ] {
        add(postponed.clone(), Event::Cycled(verdict), postponed.clone());
    }
    add(postponed, Event::Proceed, at(cutover(2), Step::Epoch));
    add(
        State::Rehearsed {
            verified: "v".into(),
        },
        abort(),
        aborted(),
    );
    for from in [
        State::Switched {
            reverse_from: heads(),
        },
        State::ReverseSync {
            reverse_from: heads(),
        },
    ] {
        add(
            from,
            Event::Rollback { discard: true },
            at(
                Handover::Rollback {
                    discard: true,
                    reverse_from: heads(),
                },
                Step::Epoch,
            ),
        );
    }
    add(
        State::Switched {
            reverse_from: heads(),
        },
        Event::ReverseSyncBegun,
        State::ReverseSync {
            reverse_from: heads(),
        },
    );
    for handover in [cutover(1), cutover(3), rehearsal(), rollback()] {
        handover_rows(&handover, &mut add);
        undo_rows(&handover, &mut add);
    }
    table
}

/// The handover's own steps, forward, and what a failure or an abort does at each.
fn handover_rows(handover: &Handover, add: &mut impl FnMut(State, Event, State)) {
    let h = || handover.clone();
    let [
        epoch,
        pausing,
        fencing,
        final_cycle,
        verifying,
        sealing,
        committed,
        switching,
    ] = <[Step; 8]>::try_from(steps()).expect("eight steps");
    add(
        at(h(), epoch.clone()),
        Event::EpochTaken(E),
        at(h(), pausing.clone()),
    );
    add(
        at(h(), pausing.clone()),
        Event::Paused,
        at(h(), fencing.clone()),
    );
    add(
        at(h(), fencing.clone()),
        Event::Fenced(heads()),
        at(h(), final_cycle.clone()),
    );
    add(
        at(h(), final_cycle.clone()),
        Event::FinalCycleDone,
        at(h(), verifying.clone()),
    );
    let verified_to = if matches!(handover, Handover::Cutover { rehearse: true, .. }) {
        undoing(
            h(),
            StepName::Verifying,
            Undo::Rehearsed {
                verified: verified().summary,
            },
        )
    } else {
        at(h(), sealing.clone())
    };
    add(
        at(h(), verifying.clone()),
        Event::Verified(verified()),
        verified_to,
    );
    add(
        at(h(), sealing.clone()),
        Event::Sealed,
        at(h(), committed.clone()),
    );
    add(
        at(h(), committed),
        Event::Committed,
        at(h(), switching.clone()),
    );
    let switched = match handover {
        Handover::Cutover { .. } => State::Switched {
            reverse_from: verified().green_heads,
        },
        Handover::Rollback { .. } => State::RolledBack {
            verified: verified().summary,
        },
    };
    add(at(h(), switching), Event::Switched, switched);
    // Before anything is held, a failure gives the handover back with nothing to undo.
    for again in [true, false] {
        let to = undone(
            h(),
            Undo::Failed {
                error: "pausing: p1: Pause: no answer".into(),
                again,
            },
        );
        add(at(h(), epoch.clone()), failed(again), to);
    }
    if handover.direction() == Direction::Forward {
        add(at(h(), epoch), abort(), aborted());
    }
    for step in [pausing, fencing, final_cycle, verifying, sealing] {
        for again in [true, false] {
            let why = Undo::Failed {
                error: "pausing: p1: Pause: no answer".into(),
                again,
            };
            add(
                at(h(), step.clone()),
                failed(again),
                undoing(h(), step.name(), why),
            );
        }
        if handover.direction() == Direction::Forward {
            let why = Undo::Aborted {
                reason: "window over".into(),
            };
            add(
                at(h(), step.clone()),
                abort(),
                undoing(h(), step.name(), why),
            );
        }
    }
}

/// What ends an undo, and an abort during one.
fn undo_rows(handover: &Handover, add: &mut impl FnMut(State, Event, State)) {
    let h = || handover.clone();
    let mut whys = vec![
        Undo::Failed {
            error: "e".into(),
            again: true,
        },
        Undo::Interrupted,
        Undo::Aborted {
            reason: "window over".into(),
        },
    ];
    if matches!(handover, Handover::Cutover { rehearse: true, .. }) {
        whys.push(Undo::Rehearsed {
            verified: "v".into(),
        });
    }
    for why in whys {
        let from = if matches!(why, Undo::Rehearsed { .. }) {
            StepName::Verifying
        } else {
            StepName::Pausing
        };
        let state = undoing(h(), from, why.clone());
        add(state.clone(), Event::Undone, undone(h(), why.clone()));
        if handover.direction() == Direction::Forward {
            let to = match why {
                Undo::Aborted { .. } => state.clone(),
                _ => undoing(
                    h(),
                    from,
                    Undo::Aborted {
                        reason: "window over".into(),
                    },
                ),
            };
            add(state, abort(), to);
        }
    }
}

#[test]
fn every_legal_transition_gives_its_state_and_every_other_is_refused() {
    let table = legal();
    let mut checked = 0;
    for state in states() {
        for event in events() {
            let expected = table
                .iter()
                .find(|(from, on, _)| *from == state && *on == event)
                .map(|(_, _, to)| to.clone());
            let got = step(state.clone(), event.clone());
            match (expected, got) {
                (Some(to), Ok(next)) => assert_eq!(next, to, "{state:?} + {event:?}"),
                (None, Err(refused)) => {
                    assert_eq!(refused.state, state.name(), "{state:?} + {event:?}");
                    assert_eq!(refused.event, event.name());
                }
                (expected, got) => {
                    panic!("{state:?} + {event:?}: expected {expected:?}, got {got:?}")
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 1_000, "{checked} pairs");
    // Every row of the table was reached by the loop above.
    for (from, event, _) in &table {
        assert!(states().contains(from), "{from:?} is not a sample state");
        assert!(events().contains(event), "{event:?} is not a sample event");
    }
}

#[test]
fn the_undo_of_a_failed_cutover_cycles_again_until_the_last_attempt_or_a_mismatch() {
    let failed = |again| Undo::Failed {
        error: "Pause: no answer".into(),
        again,
    };
    assert_eq!(
        undone(cutover(1), failed(true)),
        State::Cycling { undone: 1 }
    );
    assert_eq!(
        undone(cutover(2), failed(true)),
        State::Cycling { undone: 2 }
    );
    let State::Aborted { reason } = undone(cutover(3), failed(true)) else {
        panic!("the third attempt gives up");
    };
    assert!(
        reason.starts_with("cutover attempt 3 undone (Pause: no answer)"),
        "{reason}"
    );
    assert!(matches!(
        undone(cutover(1), failed(false)),
        State::Aborted { .. }
    ));
    assert_eq!(
        undone(cutover(2), Undo::Interrupted),
        State::Cycling { undone: 1 },
        "a restart is not counted as an attempt"
    );
}

#[test]
fn the_wire_phase_and_status_fields_follow_the_state() {
    let cases = [
        (State::Idle, Phase::Idle, None, None),
        (State::Cycling { undone: 1 }, Phase::Cycling, None, None),
        (
            at(cutover(1), Step::Epoch),
            Phase::ReadyForCutover,
            Some(Direction::Forward),
            Some("epoch"),
        ),
        (
            at(cutover(1), Step::Pausing { epoch: E }),
            Phase::Pausing,
            Some(Direction::Forward),
            Some("pausing"),
        ),
        (
            at(
                cutover(1),
                Step::Sealing {
                    epoch: E,
                    fenced: heads(),
                    verified: verified(),
                },
            ),
            Phase::Verifying,
            Some(Direction::Forward),
            Some("sealing"),
        ),
        (
            at(
                rollback(),
                Step::Switching {
                    epoch: E,
                    verified: verified(),
                },
            ),
            Phase::RollingBack,
            Some(Direction::Reverse),
            Some("switching"),
        ),
        (
            undoing(
                cutover(1),
                StepName::FinalCycle,
                Undo::Aborted { reason: "r".into() },
            ),
            Phase::Aborting,
            Some(Direction::Forward),
            Some("undoing"),
        ),
        (
            undoing(cutover(1), StepName::FinalCycle, Undo::Interrupted),
            Phase::FinalCycle,
            Some(Direction::Forward),
            Some("undoing"),
        ),
        (
            undoing(rollback(), StepName::Fencing, Undo::Interrupted),
            Phase::RollingBack,
            Some(Direction::Reverse),
            Some("undoing"),
        ),
        (
            State::Rehearsed {
                verified: "v".into(),
            },
            Phase::ReadyForCutover,
            None,
            None,
        ),
    ];
    for (state, phase, direction, step) in cases {
        assert_eq!(state.phase(), phase, "{state:?}");
        assert_eq!(state.direction(), direction, "{state:?}");
        assert_eq!(state.handover_step(), step, "{state:?}");
    }
}

#[test]
fn committed_and_error_policies_are_methods_of_the_state() {
    for step in steps() {
        let forward = at(cutover(1), step.clone());
        assert_eq!(forward.is_committed(), step.is_committed(), "{step:?}");
        let policy = if step.is_committed() {
            OnError::Retry
        } else {
            OnError::Undo
        };
        assert_eq!(forward.on_error(), policy, "{step:?}");
        assert!(
            at(rollback(), step).is_committed(),
            "after the forward commit"
        );
    }
    assert_eq!(State::Cycling { undone: 0 }.on_error(), OnError::Fail);
    assert_eq!(
        undoing(cutover(1), StepName::Pausing, Undo::Interrupted).on_error(),
        OnError::Retry
    );
    assert!(
        State::ReverseSync {
            reverse_from: heads()
        }
        .allows_start()
    );
    assert!(
        !State::ReverseSync {
            reverse_from: heads()
        }
        .is_terminal()
    );
    let refused = step(
        at(
            cutover(1),
            Step::Committed {
                epoch: E,
                verified: verified(),
            },
        ),
        abort(),
    )
    .expect_err("too late");
    assert!(refused.to_string().contains("use rollback"), "{refused}");
}

#[test]
fn a_state_survives_its_journal_encoding() {
    for state in states() {
        let json = serde_json::to_string(&state).expect("serialises");
        let back: State = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, state, "{json}");
    }
}
