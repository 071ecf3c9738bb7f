//! The fence: while it is up, client writes are refused (replication through `Sink.Apply`
//! still writes). A client write holds the gate's read side from its fence check to its
//! commit, and raising the fence takes the write side, so once `fence` returns no client
//! write is in flight and none will start: the final delta cycle cannot miss one.

use std::{
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// How a node is fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FenceMode {
    /// Until the given wall-clock time (milliseconds since the Unix epoch), then it lifts by
    /// itself, so a dead orchestrator cannot leave blue read-only forever.
    Lease {
        /// When the lease ends.
        until_unix_ms: u64,
    },
    /// Until an explicit unfence, across restarts.
    Permanent,
}

/// The persisted fence: a mode (or none) and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceState {
    /// The fence, or `None` when client writes are accepted.
    pub mode: Option<FenceMode>,
    /// Why it was raised or lowered, as the caller said.
    pub reason: String,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl FenceState {
    /// Whether client writes are refused at `now_ms`.
    pub fn is_fenced(&self, now_ms: u64) -> bool {
        match self.mode {
            None => false,
            Some(FenceMode::Permanent) => true,
            Some(FenceMode::Lease { until_unix_ms }) => now_ms < until_unix_ms,
        }
    }

    /// Whether the fence is permanent.
    pub fn is_permanent(&self) -> bool {
        self.mode == Some(FenceMode::Permanent)
    }

    /// Time left on a lease at `now_ms` (zero when not leased or expired).
    pub fn lease_remaining(&self, now_ms: u64) -> Duration {
        match self.mode {
            Some(FenceMode::Lease { until_unix_ms }) => {
                Duration::from_millis(until_unix_ms.saturating_sub(now_ms))
            }
            _ => Duration::ZERO,
        }
    }

    /// The state after a fence request: a permanent fence is never downgraded to a lease.
    pub fn raised(&self, requested: FenceMode, reason: String) -> Self {
        let mode = if self.is_permanent() {
            FenceMode::Permanent
        } else {
            requested
        };
        Self {
            mode: Some(mode),
            reason,
        }
    }
}

/// The fence and the lock that orders it against client writes.
#[derive(Debug)]
pub struct FenceGate {
    state: RwLock<FenceState>,
}

impl FenceGate {
    /// A gate in the given (persisted) state.
    pub fn new(state: FenceState) -> Self {
        Self {
            state: RwLock::new(state),
        }
    }

    /// The read side, held by a client write from its check to its commit.
    pub fn read(&self) -> RwLockReadGuard<'_, FenceState> {
        // Every update replaces the whole state, so a poisoned lock still holds a valid one.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The write side: waits for every client write in flight.
    pub fn write(&self) -> RwLockWriteGuard<'_, FenceState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lifts_by_itself_and_a_permanent_fence_is_never_downgraded() {
        let lease = FenceState::default().raised(
            FenceMode::Lease {
                until_unix_ms: 1_000,
            },
            "cutover".into(),
        );
        assert!(lease.is_fenced(999));
        assert!(!lease.is_fenced(1_000));
        assert_eq!(lease.lease_remaining(400), Duration::from_millis(600));
        let permanent = lease.raised(FenceMode::Permanent, "committed".into());
        assert!(permanent.is_fenced(u64::MAX));
        let still = permanent.raised(FenceMode::Lease { until_unix_ms: 5 }, "retry".into());
        assert!(still.is_permanent());
    }
}
