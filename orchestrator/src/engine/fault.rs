//! Fault points for the crash tests: `cutover orchestrator --fault-point NAME` (a hidden flag)
//! makes the process send itself SIGKILL — `kill -9`: no destructor, no flush — the moment the
//! engine passes the point NAME, so a test can kill the orchestrator after an exact cutover
//! step instead of racing a signal against it. Unset, a point costs one atomic load.

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

/// Passes the point `name`: kills the process when it is the armed one.
pub fn point(name: &str) {
    if ARMED.get().is_some_and(|armed| armed == name) {
        tracing::error!(point = name, "fault point reached: kill -9 of this process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        std::process::abort();
    }
}
