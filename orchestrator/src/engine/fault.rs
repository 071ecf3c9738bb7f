//! Fault points for the crash tests: `cutover orchestrator --fault-point NAME` (a hidden flag)
//! makes the process send itself SIGKILL — `kill -9`: no destructor, no flush — the moment the
//! engine passes the point NAME, so a test can kill the orchestrator at an exact step instead
//! of racing a signal against it. Unset, a point costs one atomic load.
//!
//! There is a point for every state of the upgrade, passed right after the state is journaled
//! and before its effect runs: `cutover-pausing`, `cutover-fencing`, …, `rollback-switching`,
//! `cutover-undoing`, `reverse_sync`, … ([`POINTS`]). `sealed` is passed once the serving
//! side's fence is permanent, before the commit is journaled; `first-switch` when the first
//! proxy of a switch has switched. The names of the first release (`paused`, `fenced`,
//! `final-cycle`, `committed`) still work: each is the state entered after that step.
//!
//! `--fault-stall NAME=DURATION` (hidden too) stalls the engine at the point instead: the
//! thread that first passes it sleeps for DURATION, after logging `fault point reached:
//! stalling` (later passes go on: one fault, then the upgrade's own retries),
//! so a test across containers can freeze or cut off the process at that exact step (the
//! process's other work goes on meanwhile), and see what the upgrade does once it goes on.

use std::{sync::OnceLock, time::Duration};

use super::machine::{Handover, State, StepName};

static ARMED: OnceLock<String> = OnceLock::new();
/// How long the armed point stalls; unset, it kills.
static STALL: OnceLock<Duration> = OnceLock::new();
/// Whether the stall has happened (it happens once).
static STALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The handover's steps, in order.
const STEPS: &[StepName] = &[
    StepName::Epoch,
    StepName::Pausing,
    StepName::Fencing,
    StepName::FinalCycle,
    StepName::Verifying,
    StepName::Sealing,
    StepName::Committed,
    StepName::Switching,
];

/// The states outside a handover that have a point.
const OTHERS: &[&str] = &[
    "discovering",
    "cycling",
    "postponed",
    "rehearsed",
    "switched",
    "reverse_sync",
    "rolled_back",
    "aborted",
    "failed",
];

/// Older names, and the point each stands for.
const ALIASES: &[(&str, &str)] = &[
    ("paused", "cutover-fencing"),
    ("fenced", "cutover-final_cycle"),
    ("final-cycle", "cutover-verifying"),
    ("committed", "cutover-committed"),
];

/// Every point's name.
pub static POINTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    let mut points = Vec::new();
    for way in ["cutover", "rollback"] {
        for step in STEPS {
            points.push(format!("{way}-{}", step.as_str()));
        }
        points.push(format!("{way}-undoing"));
    }
    points.extend(OTHERS.iter().map(|s| (*s).to_owned()));
    points.push("sealed".to_owned());
    points.push("first-switch".to_owned());
    points
});

/// Arms the point `name` (or an older name of one) for this process (once).
pub fn arm(name: &str) -> Result<(), String> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, point)| point);
    if !POINTS.iter().any(|p| p == name) {
        return Err(format!(
            "--fault-point {name:?}: not a fault point; use one of {}",
            POINTS.join(", ")
        ));
    }
    let _ = ARMED.set(name.to_owned());
    Ok(())
}

/// Arms `NAME=DURATION`: the point NAME stalls the engine for DURATION instead of killing.
pub fn arm_stall(spec: &str) -> Result<(), String> {
    let (name, duration) = spec.split_once('=').ok_or_else(|| {
        format!("--fault-stall {spec:?}: write it as NAME=DURATION, e.g. sealed=20s")
    })?;
    let duration = humantime::parse_duration(duration)
        .map_err(|error| format!("--fault-stall {spec:?}: {error}"))?;
    arm(name)?;
    let _ = STALL.set(duration);
    Ok(())
}

/// The point of `state`: passed once it is journaled.
pub fn name(state: &State) -> String {
    let way = |handover: &Handover| match handover {
        Handover::Cutover { .. } => "cutover",
        Handover::Rollback { .. } => "rollback",
    };
    match state {
        State::Handover { handover, step } => {
            format!("{}-{}", way(handover), step.name().as_str())
        }
        State::Undoing { handover, .. } => format!("{}-undoing", way(handover)),
        other => other.name().to_owned(),
    }
}

/// Passes the point of `state` (see [`point`]).
pub fn passed(state: &State) {
    if ARMED.get().is_some() {
        point(&name(state));
    }
}

/// Passes the point `name`: kills the process when it is the armed one, or stalls here when
/// it was armed with a stall.
pub fn point(name: &str) {
    if ARMED.get().is_some_and(|armed| armed == name) {
        if let Some(stall) = STALL.get() {
            if STALLED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            tracing::error!(point = name, ?stall, "fault point reached: stalling");
            std::thread::sleep(*stall);
            tracing::warn!(point = name, "fault point: the stall is over, going on");
            return;
        }
        tracing::error!(point = name, "fault point reached: kill -9 of this process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::machine::Step;

    #[test]
    fn every_state_has_a_point_and_the_old_names_still_arm() {
        let rollback = Handover::Rollback {
            discard: false,
            reverse_from: vec![],
        };
        let state = State::Handover {
            handover: rollback,
            step: Step::Pausing { epoch: 3 },
        };
        assert_eq!(name(&state), "rollback-pausing");
        assert!(POINTS.contains(&name(&state)));
        assert!(POINTS.contains(&name(&State::ReverseSync {
            reverse_from: vec![]
        })));
        for (alias, point) in ALIASES {
            assert!(POINTS.iter().any(|p| p == point), "{alias} → {point}");
        }
        let error = arm("nowhere").expect_err("not a point");
        assert!(error.contains("cutover-committed"), "{error}");
    }
}
