use super::*;

fn pause(epoch: u64) -> Command {
    Command::Pause {
        epoch: Epoch(epoch),
        deadline_unix_ms: 1_000 + epoch,
    }
}

fn switch(epoch: u64, color: Color) -> Command {
    Command::Switch {
        epoch: Epoch(epoch),
        color,
    }
}

fn run(commands: &[Command]) -> (RouteState, Vec<Result<Change, Refusal>>) {
    let mut state = RouteState::new(Color::Blue);
    let mut outcomes = Vec::new();
    for &command in commands {
        match state.step(command) {
            Ok((next, change)) => {
                state = next;
                outcomes.push(Ok(change));
            }
            Err(refusal) => outcomes.push(Err(refusal)),
        }
    }
    (state, outcomes)
}

#[test]
fn pause_then_switch_moves_the_route_and_repeats_are_idempotent() {
    let (state, outcomes) = run(&[
        pause(1),
        pause(1),
        switch(1, Color::Green),
        switch(1, Color::Green),
        Command::Resume { epoch: Epoch(1) },
    ]);
    assert_eq!(
        outcomes,
        vec![
            Ok(Change::StartHold),
            Ok(Change::JoinHold),
            Ok(Change::Release),
            Ok(Change::Nothing),
            Ok(Change::Nothing),
        ]
    );
    assert_eq!(state.active, Color::Green);
    assert_eq!(state.mode, Mode::Forwarding);
    assert_eq!(state.ended, Some(Ending::Switched(Color::Green)));
}

#[test]
fn stale_and_future_epochs_are_refused_without_change() {
    let start = RouteState::new(Color::Blue);
    let (paused, _) = start.step(pause(5)).expect("first pause");
    for command in [
        pause(4),
        switch(4, Color::Green),
        Command::Resume { epoch: Epoch(4) },
    ] {
        assert!(
            matches!(
                paused.step(command),
                Err(Refusal::StaleEpoch {
                    given: Epoch(4),
                    current: Epoch(5)
                })
            ),
            "{command:?}"
        );
    }
    assert!(matches!(
        paused.step(switch(6, Color::Green)),
        Err(Refusal::NoPauseYet { .. })
    ));
    // Switch without any Pause: nothing to switch.
    assert!(matches!(
        start.step(switch(0, Color::Green)),
        Err(Refusal::NoPauseYet { .. })
    ));
}

#[test]
fn an_ended_hold_needs_a_new_epoch() {
    let (state, outcomes) = run(&[
        pause(2),
        Command::End(Ending::Expired),
        pause(2),
        switch(2, Color::Green),
        Command::Resume { epoch: Epoch(2) },
        pause(3),
    ]);
    assert_eq!(outcomes[1], Ok(Change::Expire));
    assert!(matches!(
        outcomes[2],
        Err(Refusal::HoldEnded {
            ended: Ending::Expired,
            ..
        })
    ));
    assert!(matches!(outcomes[3], Err(Refusal::HoldEnded { .. })));
    assert_eq!(outcomes[4], Ok(Change::Nothing));
    assert_eq!(outcomes[5], Ok(Change::StartHold));
    assert_eq!(state.active, Color::Blue);
    assert!(state.is_holding());
}

#[test]
fn a_switch_to_the_other_colour_after_the_hold_ended_is_refused() {
    let (_, outcomes) = run(&[pause(1), switch(1, Color::Green), switch(1, Color::Blue)]);
    assert!(matches!(
        outcomes[2],
        Err(Refusal::HoldEnded {
            ended: Ending::Switched(Color::Green),
            ..
        })
    ));
}

#[test]
fn a_newer_pause_takes_over_a_hold_in_progress() {
    let (state, outcomes) = run(&[pause(1), pause(2)]);
    assert_eq!(outcomes, vec![Ok(Change::StartHold), Ok(Change::StartHold)]);
    assert_eq!(state.epoch, Epoch(2));
    assert_eq!(
        state.mode,
        Mode::Holding {
            deadline_unix_ms: 1_002
        }
    );
}

#[test]
fn a_drain_failure_releases_on_the_active_colour() {
    let (state, outcomes) = run(&[pause(1), Command::End(Ending::DrainFailed)]);
    assert_eq!(outcomes[1], Ok(Change::Release));
    assert_eq!(state.active, Color::Blue);
    assert_eq!(state.mode, Mode::Forwarding);
    // An ending that comes after the hold already ended changes nothing.
    assert_eq!(
        state.step(Command::End(Ending::Expired)),
        Ok((state, Change::Nothing))
    );
}

#[test]
fn the_file_round_trips_every_state_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = RouteFile::new(dir.path().join("route.json"));
    assert_eq!(file.load().expect("missing file is fine"), None);
    let states = [
        RouteState::new(Color::Blue),
        RouteState {
            epoch: Epoch(7),
            active: Color::Green,
            mode: Mode::Holding {
                deadline_unix_ms: 123,
            },
            ended: None,
        },
        RouteState {
            epoch: Epoch(9),
            active: Color::Green,
            mode: Mode::Forwarding,
            ended: Some(Ending::Switched(Color::Green)),
        },
        RouteState {
            ended: Some(Ending::DrainFailed),
            ..RouteState::new(Color::Blue)
        },
    ];
    for state in states {
        file.store(&state).expect("store");
        assert_eq!(file.load().expect("load"), Some(state));
    }
    for bad in [
        "{",
        r#"{"epoch":1,"active":"purple","holding_until_unix_ms":null,"ended":null}"#,
        r#"{"epoch":1,"active":"blue","holding_until_unix_ms":null,"ended":"won"}"#,
        r#"{"epoch":1,"active":"blue","holding_until_unix_ms":null,"ended":null,"x":1}"#,
    ] {
        fs::write(file.path(), bad).expect("write");
        let error = file.load().expect_err(bad).to_string();
        assert!(
            error.contains("route.json") && error.contains("unreadable"),
            "{error}"
        );
    }
}
