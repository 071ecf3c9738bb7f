//! Sequence numbers: assigned in increasing order, committed in any order, published only up
//! to the *stable* watermark — the highest seq below which every assigned seq has committed
//! (or failed). A pull reads the stable watermark before it takes its snapshot and stops
//! there, so a write that took seq 10 but commits after the write that took seq 11 is never
//! skipped by a pull that reported 11 as covered.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, MutexGuard},
};

/// Assigns seqs and tracks which are still being written.
#[derive(Debug)]
pub struct SeqTracker {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The highest seq assigned.
    head: u64,
    /// The first seq of every range assigned but not yet committed.
    in_flight: BTreeSet<u64>,
}

/// A range of seqs being written; dropping it (committed or failed) lets the stable
/// watermark pass it.
#[derive(Debug)]
pub struct SeqRange {
    tracker: Arc<SeqTracker>,
    first: u64,
}

impl SeqTracker {
    /// A tracker whose highest assigned seq is `head` (0 for an empty store).
    pub fn new(head: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                head,
                in_flight: BTreeSet::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State half-updated (each update is
        // one field assignment or one set operation), so a poisoned lock is still valid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Assigns `count` (≥ 1) consecutive seqs; the first is returned with the range.
    pub fn assign(self: &Arc<Self>, count: u64) -> SeqRange {
        self.take(&mut self.lock(), count)
    }

    /// [`SeqTracker::assign`], only if the highest seq assigned so far is `head`: `None`
    /// when another writer took a seq since.
    pub fn assign_after(self: &Arc<Self>, head: u64, count: u64) -> Option<SeqRange> {
        let mut state = self.lock();
        (state.head == head).then(|| self.take(&mut state, count))
    }

    fn take(self: &Arc<Self>, state: &mut State, count: u64) -> SeqRange {
        let first = state.head + 1;
        state.head += count.max(1);
        state.in_flight.insert(first);
        SeqRange {
            tracker: Arc::clone(self),
            first,
        }
    }

    /// The highest seq assigned (committed or not).
    pub fn assigned(&self) -> u64 {
        self.lock().head
    }

    /// Every seq ≤ the returned value has committed or failed.
    pub fn stable(&self) -> u64 {
        let state = self.lock();
        match state.in_flight.first() {
            Some(first) => first - 1,
            None => state.head,
        }
    }
}

impl SeqRange {
    /// The first seq of the range.
    pub fn first(&self) -> u64 {
        self.first
    }
}

impl Drop for SeqRange {
    fn drop(&mut self) {
        self.tracker.lock().in_flight.remove(&self.first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_waits_for_the_oldest_uncommitted_seq() {
        let tracker = SeqTracker::new(5);
        assert_eq!(tracker.stable(), 5);
        let a = tracker.assign(1);
        let b = tracker.assign(3);
        assert_eq!((a.first(), b.first()), (6, 7));
        assert_eq!(tracker.stable(), 5);
        drop(b);
        assert_eq!(tracker.stable(), 5, "seq 6 is still being written");
        drop(a);
        assert_eq!(tracker.stable(), 9);
        assert_eq!(tracker.assign(1).first(), 10);
    }

    #[test]
    fn assign_after_refuses_once_another_writer_took_a_seq() {
        let tracker = SeqTracker::new(0);
        let first = tracker.assign_after(0, 4).expect("nothing assigned yet");
        assert_eq!(first.first(), 1);
        assert!(tracker.assign_after(0, 1).is_none(), "head is 4 now");
        drop(tracker.assign(1));
        assert!(
            tracker.assign_after(4, 1).is_none(),
            "seq 5 went to another writer"
        );
        assert_eq!(tracker.assign_after(5, 2).map(|r| r.first()), Some(6));
    }
}
