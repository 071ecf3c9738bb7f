//! The fence: while it is up, client writes are refused (replication through `Sink.Apply`
//! still writes). A client write holds the gate's read side from its fence check to its
//! commit, and raising the fence takes the write side, so once `fence` returns no client
//! write is in flight and none will start: the final delta cycle cannot miss one.
//!
//! Every fence and unfence carries the orchestrator's epoch, kept in the state: one below the
//! state's comes from an orchestrator that a newer attempt has overtaken, and is refused, so
//! a stale orchestrator cannot lift (or renew) a fence a newer one raised.

use std::{
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::StoreError;

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

/// The persisted fence: a mode (or none), why, and the epoch of the newest caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceState {
    /// The fence, or `None` when client writes are accepted.
    pub mode: Option<FenceMode>,
    /// Why it was raised or lowered, as the caller said.
    pub reason: String,
    /// The highest epoch any fence or unfence carried; a call with a lower one is refused.
    /// Kept when the fence lifts. A store written before epochs existed has none: it reads
    /// as 0, the lowest, so the first orchestrator to call is obeyed.
    #[serde(default)]
    pub epoch: u64,
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

    /// The state after a fence request under `epoch`: a permanent fence is never downgraded
    /// to a lease. Refused, changing nothing, when `epoch` is below the state's.
    pub fn raised(
        &self,
        epoch: u64,
        requested: FenceMode,
        reason: String,
    ) -> Result<Self, StoreError> {
        let epoch = self.admit(epoch)?;
        let mode = if self.is_permanent() {
            FenceMode::Permanent
        } else {
            requested
        };
        Ok(Self {
            mode: Some(mode),
            reason,
            epoch,
        })
    }

    /// The state after an unfence request under `epoch`. Refused, leaving the fence up, when
    /// `epoch` is below the state's.
    pub fn lowered(&self, epoch: u64, reason: String) -> Result<Self, StoreError> {
        let epoch = self.admit(epoch)?;
        Ok(Self {
            mode: None,
            reason,
            epoch,
        })
    }

    /// The epoch of the state after a call under `given`: the higher of the two, or a
    /// refusal when `given` is the lower (equal is a repeat of the same attempt: accepted).
    fn admit(&self, given: u64) -> Result<u64, StoreError> {
        if given < self.epoch {
            return Err(StoreError::StaleEpoch {
                given,
                current: self.epoch,
            });
        }
        Ok(given)
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
        let lease = FenceState::default()
            .raised(
                1,
                FenceMode::Lease {
                    until_unix_ms: 1_000,
                },
                "cutover".into(),
            )
            .expect("epoch 1 > 0");
        assert!(lease.is_fenced(999));
        assert!(!lease.is_fenced(1_000));
        assert_eq!(lease.lease_remaining(400), Duration::from_millis(600));
        let permanent = lease
            .raised(1, FenceMode::Permanent, "committed".into())
            .expect("same epoch");
        assert!(permanent.is_fenced(u64::MAX));
        let still = permanent
            .raised(1, FenceMode::Lease { until_unix_ms: 5 }, "retry".into())
            .expect("same epoch");
        assert!(still.is_permanent());
    }

    #[test]
    fn an_epoch_is_adopted_upwards_and_a_lower_one_is_refused() {
        let fenced = FenceState::default()
            .raised(7, FenceMode::Permanent, "cutover".into())
            .expect("7 > 0");
        assert_eq!(fenced.epoch, 7);
        let refused = fenced.lowered(6, "stale undo".into());
        assert!(
            matches!(
                refused,
                Err(StoreError::StaleEpoch {
                    given: 6,
                    current: 7
                })
            ),
            "{refused:?}"
        );
        let lowered = fenced.lowered(9, "rollback".into()).expect("9 > 7");
        assert_eq!((lowered.mode, lowered.epoch), (None, 9));
        assert!(
            lowered.raised(0, FenceMode::Permanent, "x".into()).is_err(),
            "epoch 0 is below 9"
        );
    }
}
