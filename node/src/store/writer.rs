//! Group commit of client writes. Every client put and delete is queued to one thread, which
//! takes all the writes that queued while it was committing the previous group, checks the
//! fence and each precondition in arrival order, stages the survivors into one `WriteBatch`
//! and commits it with one WAL sync. Under load that is one fsync for a whole group, and no
//! thread per request parked inside RocksDB.
//!
//! The thread holds the store only weakly: it ends when the last `Store` is dropped, and it
//! lets go of the store before it answers, so a caller that drops its `Store` after its answer
//! closes the database at once.

use std::{
    collections::HashMap,
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering},
        mpsc::{Receiver, SyncSender, TryRecvError, TrySendError},
    },
};

use bytes::Bytes;
use rocksdb::WriteBatch;
use tokio::sync::oneshot;

use super::{
    Inner, Store, StoreError,
    fence::now_unix_ms,
    keys::{self, DocPointer},
    write::{Next, Precondition, WriteOutcome},
};

/// Most writes committed in one group.
const MAX_GROUP: usize = 1_024;

/// A client write: a put (with its body) or a delete (no body).
#[derive(Debug, Clone)]
pub struct ClientWrite {
    /// The collection.
    pub collection: String,
    /// The id.
    pub id: String,
    /// The new JSON body, or `None` to delete.
    pub body: Option<Bytes>,
    /// What must hold for the write to happen.
    pub precondition: Precondition,
}

/// The answer to one client write.
pub type WriteResult = Result<WriteOutcome, StoreError>;

/// A queued write and where its answer goes.
pub(super) struct Job {
    write: ClientWrite,
    key: Vec<u8>,
    reply: oneshot::Sender<WriteResult>,
}

impl Job {
    /// A job for a write whose collection and id were checked.
    pub(super) fn new(write: ClientWrite, reply: oneshot::Sender<WriteResult>) -> Self {
        let key = keys::doc_key(&write.collection, &write.id);
        Self { write, key, reply }
    }
}

/// Where client writes wait for the commit thread: at most `bound` of them.
#[derive(Debug)]
pub(super) struct Queue {
    sender: SyncSender<Job>,
    bound: usize,
    /// Writes queued and not yet taken by the commit thread.
    waiting: Arc<AtomicUsize>,
}

impl Queue {
    /// Queues `job`, or refuses it at once when `bound` writes are waiting already.
    pub(super) fn push(&self, job: Job) -> Result<(), StoreError> {
        // Counted before it is sent, so the commit thread never takes more than was counted.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let refused = match self.sender.try_send(job) {
            Ok(()) => {
                metrics::gauge!(crate::metrics::QUEUED_WRITES).increment(1.0);
                return Ok(());
            }
            Err(TrySendError::Full(_)) => {
                metrics::counter!(crate::metrics::WRITES_OVERLOADED).increment(1);
                StoreError::Overloaded { queued: self.bound }
            }
            Err(TrySendError::Disconnected(_)) => StoreError::WriterStopped,
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        Err(refused)
    }

    /// Writes queued and not yet taken by the commit thread.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Starts the commit thread of the store behind `inner`; writes go to the returned queue,
/// which holds at most `bound` of them (0 counts as 1).
pub(super) fn spawn(inner: Weak<Inner>, bound: usize) -> Queue {
    let bound = bound.max(1);
    let (sender, rx) = std::sync::mpsc::sync_channel(bound);
    let waiting = Arc::new(AtomicUsize::new(0));
    let taken = Arc::clone(&waiting);
    std::thread::Builder::new()
        .name("cutover-writer".into())
        .spawn(move || run(&inner, &rx, &taken))
        .expect("the OS starts the writer thread");
    Queue {
        sender,
        bound,
        waiting,
    }
}

fn run(inner: &Weak<Inner>, rx: &Receiver<Job>, waiting: &AtomicUsize) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        waiting.fetch_sub(group.len(), Ordering::Relaxed);
        metrics::gauge!(crate::metrics::QUEUED_WRITES).decrement(group.len() as f64);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let store = Store { inner };
        // A bug that panics fails this group's writes, not every later one.
        let results =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.commit_group(&group)))
                .unwrap_or_else(|_| {
                    tracing::error!(writes = group.len(), "a group commit panicked");
                    group
                        .iter()
                        .map(|_| {
                            Err(StoreError::Corrupt {
                                what: "a group commit panicked",
                            })
                        })
                        .collect()
                });
        drop(store);
        for (job, result) in group.drain(..).zip(results) {
            // A caller that stopped waiting does not need the answer.
            let _ = job.reply.send(result);
        }
    }
}

impl Store {
    /// Commits a group of client writes, in order, as one batch; returns each one's answer.
    fn commit_group(&self, group: &[Job]) -> Vec<WriteResult> {
        metrics::histogram!(crate::metrics::WRITE_GROUP).record(group.len() as f64);
        // Held until the commit: raising the fence waits for this group (see fence.rs).
        let fence = self.inner.fence.read();
        if fence.is_fenced(now_unix_ms()) {
            return group
                .iter()
                .map(|_| {
                    Err(StoreError::Fenced {
                        reason: fence.reason.clone(),
                    })
                })
                .collect();
        }
        let keys: Vec<&[u8]> = group.iter().map(|job| job.key.as_slice()).collect();
        let _held = self.inner.locks.lock_all(&keys);
        let stored = match self.pointers(&keys) {
            Ok(stored) => stored,
            Err(error) => return group.iter().map(|_| Err(failed(&error))).collect(),
        };

        // Decide each write against the state the writes before it leave.
        let mut latest: HashMap<&[u8], Option<DocPointer>> = HashMap::new();
        let mut results = Vec::with_capacity(group.len());
        let mut accepted = 0u64;
        for (job, stored) in group.iter().zip(&stored) {
            let current = latest.get(job.key.as_slice()).copied().unwrap_or(*stored);
            let result = decide(&job.write, current);
            if let Ok(outcome) = &result {
                accepted += 1;
                let pointer = DocPointer {
                    seq: 0,
                    version: outcome.version,
                    tombstone: job.write.body.is_none(),
                };
                latest.insert(&job.key, Some(pointer));
            }
            results.push(result);
        }
        if accepted == 0 {
            return results;
        }

        // The accepted ones take consecutive seqs, in arrival order.
        let range = self.inner.seqs.assign(accepted);
        let accepted = results.iter_mut().filter_map(|r| r.as_mut().ok());
        for (seq, outcome) in (range.first()..).zip(accepted) {
            outcome.seq = seq;
        }
        let mut batch = WriteBatch::default();
        let writes = group.iter().zip(&stored).zip(&results);
        self.stage_in_order(
            &mut batch,
            range.first(),
            writes.filter_map(|((job, stored), result)| {
                let outcome = result.as_ref().ok()?;
                let next = Next {
                    collection: &job.write.collection,
                    id: &job.write.id,
                    version: outcome.version,
                    tombstone: job.write.body.is_none(),
                    body: job.write.body.as_deref().unwrap_or_default(),
                    seq: 0,
                };
                Some((job.key.as_slice(), *stored, next))
            }),
        );
        if let Err(error) = self.commit(batch) {
            // Nothing of the group was written: an answer decided against an earlier write of
            // the group (a 412 naming a version that never existed) would be wrong too.
            return group.iter().map(|_| Err(failed(&error))).collect();
        }
        drop(range);
        results
    }
}

/// Whether a write may happen to a document whose latest state is `current`, and with which
/// version (its seq is filled in later).
fn decide(write: &ClientWrite, current: Option<DocPointer>) -> WriteResult {
    let live = current.filter(|p| !p.tombstone).map(|p| p.version);
    let holds = match &write.precondition {
        Precondition::Always => true,
        Precondition::IfMatch(versions) => live.is_some_and(|v| versions.contains(&v)),
        Precondition::IfExists => live.is_some(),
        Precondition::IfAbsent => live.is_none(),
    };
    if !holds {
        return Err(StoreError::PreconditionFailed { current: live });
    }
    if write.body.is_none() && live.is_none() {
        return Err(StoreError::NotFound {
            collection: write.collection.clone(),
            id: write.id.clone(),
        });
    }
    Ok(WriteOutcome {
        created: live.is_none(),
        version: current.map_or(1, |p| p.version + 1),
        seq: 0,
    })
}

/// A storage failure shared by every write of a group.
fn failed(error: &StoreError) -> StoreError {
    match error {
        StoreError::Rocks(inner) => StoreError::Rocks(inner.clone()),
        StoreError::Corrupt { what } => StoreError::Corrupt { what },
        _ => StoreError::Corrupt {
            what: "a group commit failed",
        },
    }
}
