//! Fault points for the crash tests: `cutover orchestrator --fault-point NAME` (a hidden flag)
//! makes the process abort — no destructor, no flush, like `kill -9` — the moment the engine
//! passes the point NAME, so a test can kill the orchestrator after an exact cutover step
//! instead of racing a signal against it. Unset, a point costs one atomic load.

use std::sync::OnceLock;

static ARMED: OnceLock<String> = OnceLock::new();

/// The points, in the order a cutover passes them.
pub const POINTS: &[&str] = &[
    "paused",
    "fenced",
    "final-cycle",
    "committed",
    "first-switch",
];

/// Arms the point `name` for this process (once).
pub fn arm(name: &str) -> Result<(), String> {
    if !POINTS.contains(&name) {
        return Err(format!(
            "--fault-point {name:?}: not a fault point; use one of {}",
            POINTS.join(", ")
        ));
    }
    let _ = ARMED.set(name.to_owned());
    Ok(())
}

/// Passes the point `name`: aborts the process when it is the armed one.
pub fn point(name: &str) {
    if ARMED.get().is_some_and(|armed| armed == name) {
        tracing::error!(point = name, "fault point reached: aborting the process");
        std::process::abort();
    }
}
