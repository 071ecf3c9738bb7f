//! The document store: RocksDB behind a narrow API (see [`keys`] for every byte layout).
//!
//! - Documents by `(collection, id)`, each with a `version` (+1 on every write; a delete is a
//!   write that leaves a tombstone) and the node-wide `seq` of its latest change.
//! - A by-sequence index with exactly one entry per document, holding its latest change, so a
//!   pull `since = W` is one sequential scan from `W + 1` and costs O(changes).
//! - Per-partition live counts and digests, and per-collection counts, maintained in the same
//!   `WriteBatch` as the write, so `digest` is O(partitions).
//!
//! Every call blocks (async callers run it with `spawn_blocking`) but [`Store::write`], which
//! queues a client write to the group committer (`writer.rs`) and resolves when it is durable.

pub mod digest;
mod fence;
mod ingest;
pub mod keys;
mod locks;
mod ownership;
mod read;
mod rocks;
pub mod schema;
mod seq;
mod write;
mod writer;

#[cfg(test)]
mod tests;

use std::{path::PathBuf, sync::Arc};

use cutover_daemon::{Classify, ErrorCode};
pub use digest::{partition_of, term};
pub use fence::{FenceMode, FenceState, now_unix_ms};
pub use ingest::Ingest;
pub use read::{Changed, Describe, Digest, Doc, Listing, PartitionDigest, PullSpec, PullSummary};
use rocksdb::{DB, WriteBatch};
pub use write::{ApplyOutcome, Incoming, Precondition, WriteOutcome};
pub use writer::{ClientWrite, WriteResult};

use self::{fence::FenceGate, locks::KeyLocks, seq::SeqTracker};

/// When an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// fsync the write-ahead log before acknowledging (concurrent writers share one fsync):
    /// an acknowledged write survives a power loss. The default.
    #[default]
    Always,
    /// Hand the write-ahead log to the OS before acknowledging: an acknowledged write
    /// survives the process being killed, not the machine losing power.
    Os,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The RocksDB directory.
    pub path: PathBuf,
    /// Partitions of a new store; for an existing one, must match it when given.
    pub partitions: Option<u32>,
    /// Durability of acknowledged writes.
    pub sync: SyncPolicy,
    /// Most client writes waiting for the group committer; past it a write is refused
    /// ([`StoreError::Overloaded`]) and nothing of it is written.
    pub max_queued_writes: usize,
}

/// The default of [`StoreConfig::max_queued_writes`]: ten full groups.
pub const DEFAULT_MAX_QUEUED_WRITES: usize = 10_240;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB could not open the directory.
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// The directory.
        path: String,
        /// What RocksDB said.
        source: rocksdb::Error,
    },
    /// The store was written by a newer cutover.
    #[error(
        "the store at {path} has layout version {found}, this build knows up to {supported}: \
         run a newer cutover on it"
    )]
    SchemaTooNew {
        /// The directory.
        path: String,
        /// The stored version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// The configured partition count differs from the store's.
    #[error(
        "the store at {path} has {stored} partitions but {requested} were asked for; \
         partitions are fixed when a store is created"
    )]
    PartitionMismatch {
        /// The directory.
        path: String,
        /// The store's.
        stored: u32,
        /// The configuration's.
        requested: u32,
    },
    /// A partition count of 0.
    #[error("partitions must be at least 1, got {0}")]
    BadPartitionCount(u32),
    /// A collection name outside `[A-Za-z0-9_.-]{1,128}`.
    #[error("bad collection name {name:?}: use 1 to 128 of A-Z a-z 0-9 _ . -")]
    BadCollection {
        /// The name (shortened).
        name: String,
    },
    /// An id that is empty or longer than 512 bytes.
    #[error("bad id {id:?} ({len} bytes): ids are 1 to 512 bytes of UTF-8")]
    BadId {
        /// The id (shortened).
        id: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A replicated document with version 0 or a tombstone with a body.
    #[error("bad document {collection}/{id}: {problem}")]
    BadDocument {
        /// Its collection.
        collection: String,
        /// Its id.
        id: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A partition number outside `[0, partition_count)`.
    #[error("partition {partition} does not exist: this node has {count} (0 to {last})", last = count - 1)]
    NoSuchPartition {
        /// The number asked for.
        partition: u32,
        /// The node's partition count.
        count: u32,
    },
    /// A document of a partition this node does not own (see [`Store::join_cluster`]).
    #[error(
        "{collection}/{id} is in partition {partition}, which this node does not own (it owns \
         {owned}): the document belongs on the partition's owner in the cluster file"
    )]
    NotOwned {
        /// Its collection.
        collection: String,
        /// Its id.
        id: String,
        /// Its partition.
        partition: u32,
        /// What this node owns, e.g. `partitions 0-7`.
        owned: String,
    },
    /// [`Store::join_cluster`] called a second time.
    #[error("this store has joined its cluster already")]
    AlreadyJoined,
    /// The document does not exist (or is deleted).
    #[error("no document {collection}/{id}")]
    NotFound {
        /// Its collection.
        collection: String,
        /// Its id.
        id: String,
    },
    /// `If-Match` / `If-None-Match` does not hold.
    #[error("precondition failed: the current version is {}", .current.map_or("none (absent)".to_owned(), |v| v.to_string()))]
    PreconditionFailed {
        /// The document's current version, if it exists.
        current: Option<u64>,
    },
    /// Client writes are refused while the node is fenced.
    #[error("this node is fenced ({reason}): client writes are refused; retry on the active side")]
    Fenced {
        /// Why it was fenced.
        reason: String,
    },
    /// A fence or unfence under an epoch below the node's: its caller is an orchestrator a
    /// newer attempt has overtaken. Nothing changed.
    #[error(
        "epoch {given} is stale: this node's fence is at epoch {current}, set by a newer \
         orchestrator attempt, and nothing was changed; stop the orchestrator that sent \
         epoch {given} (a newer one has taken over), or call again with an epoch of at least \
         {current}"
    )]
    StaleEpoch {
        /// The caller's epoch.
        given: u64,
        /// The node's: the highest any fence or unfence carried.
        current: u64,
    },
    /// A pull or lag `since` beyond what this node has assigned.
    #[error("since = {since} is beyond this node's head seq {head}")]
    BeyondHead {
        /// The position asked for.
        since: u64,
        /// The node's stable head.
        head: u64,
    },
    /// A stored value that does not decode.
    #[error("the store is corrupt: {what}")]
    Corrupt {
        /// What did not decode.
        what: &'static str,
    },
    /// More client writes are waiting to be committed than the node queues.
    #[error(
        "overloaded: {queued} writes are already waiting to be committed (--max-queued-writes); \
         nothing was written, retry after a moment"
    )]
    Overloaded {
        /// The bound that was reached.
        queued: usize,
    },
    /// The thread that commits client writes is gone (a bug: restart the node).
    #[error("the store's write thread has stopped: restart the node")]
    WriterStopped,
    /// The folder of an ingest's table files could not be made.
    #[error("cannot {action} {path}: {reason}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// Any other RocksDB failure.
    #[error("storage error: {0}")]
    Rocks(#[from] rocksdb::Error),
}

impl Classify for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::BadCollection { .. }
            | Self::BadId { .. }
            | Self::BadDocument { .. }
            | Self::NoSuchPartition { .. }
            | Self::BadPartitionCount(_) => ErrorCode::InvalidArgument,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::PreconditionFailed { .. } | Self::StaleEpoch { .. } => {
                ErrorCode::PreconditionFailed
            }
            Self::Fenced { .. } => ErrorCode::Fenced,
            Self::Overloaded { .. } => ErrorCode::Unavailable,
            Self::NotOwned { .. } => ErrorCode::Misdirected,
            Self::BeyondHead { .. } => ErrorCode::OutOfRange,
            Self::Open { .. }
            | Self::SchemaTooNew { .. }
            | Self::PartitionMismatch { .. }
            | Self::Corrupt { .. }
            | Self::WriterStopped
            | Self::AlreadyJoined
            | Self::Io { .. }
            | Self::Rocks(_) => ErrorCode::Internal,
        }
    }
}

/// The store. Cheap to clone: clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    /// The RocksDB directory.
    path: PathBuf,
    node_id: String,
    partitions: u32,
    sync: SyncPolicy,
    seqs: Arc<SeqTracker>,
    locks: KeyLocks,
    fence: FenceGate,
    /// The partitions this node owns (all until it joins a cluster).
    ownership: ownership::Slot,
    /// Whether chunks are still ingested as table files (see `ingest.rs`).
    ingest: ingest::IngestHead,
    /// Client writes, to the group committer.
    writer: writer::Queue,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("node_id", &self.inner.node_id)
            .field("partitions", &self.inner.partitions)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `config.path`, creating it if missing. Refuses a store of a newer
    /// layout and a partition count that differs from the store's.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let path = config.path.display().to_string();
        if config.partitions == Some(0) {
            return Err(StoreError::BadPartitionCount(0));
        }
        let db = rocks::open(&config.path)?;
        let partitions = match rocks::meta_u32(&db, rocks::META_SCHEMA_VERSION)? {
            None => create(&db, config)?,
            Some(found) if found > schema::SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    path,
                    found,
                    supported: schema::SCHEMA_VERSION,
                });
            }
            Some(_) => {
                let stored =
                    rocks::meta_u32(&db, rocks::META_PARTITIONS)?.ok_or(StoreError::Corrupt {
                        what: "partition count missing",
                    })?;
                if let Some(requested) = config.partitions.filter(|r| *r != stored) {
                    return Err(StoreError::PartitionMismatch {
                        path,
                        stored,
                        requested,
                    });
                }
                stored
            }
        };
        let meta = rocks::cf(&db, rocks::CF_META);
        let node_id = db
            .get_cf(meta, rocks::META_NODE_ID)?
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(StoreError::Corrupt {
                what: "node id missing",
            })?;
        let fence = match db.get_cf(meta, rocks::META_FENCE)? {
            None => FenceState::default(),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| StoreError::Corrupt {
                what: "fence state",
            })?,
        };
        ingest::roll_back(&db)?;
        ingest::clear(&config.path);
        let head = read::last_seq(&db)?;
        Ok(Self {
            inner: Arc::new_cyclic(|inner| Inner {
                db,
                path: config.path.clone(),
                node_id,
                partitions,
                sync: config.sync,
                seqs: SeqTracker::new(head),
                locks: KeyLocks::new(),
                fence: FenceGate::new(fence),
                ownership: ownership::Slot::new(),
                ingest: ingest::ingest_head(head),
                writer: writer::spawn(inner.clone(), config.max_queued_writes),
            }),
        })
    }

    /// The node's stable identifier (made when the store was created).
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The partition count, fixed at creation.
    pub fn partition_count(&self) -> u32 {
        self.inner.partitions
    }

    /// The stable head: every change with a seq up to it has committed.
    pub fn head_seq(&self) -> u64 {
        self.inner.seqs.stable()
    }

    /// The current fence.
    pub fn fence_state(&self) -> FenceState {
        self.inner.fence.read().clone()
    }

    /// Raises the fence under `epoch` (a permanent fence stays permanent) once every client
    /// write in flight has committed; returns the new state and the head seq at that moment.
    /// An epoch below the node's is refused with [`StoreError::StaleEpoch`], changing nothing.
    pub fn fence(
        &self,
        epoch: u64,
        mode: FenceMode,
        reason: String,
    ) -> Result<(FenceState, u64), StoreError> {
        // The epoch is checked under the lock that changes the fence, so two orchestrators
        // racing cannot both pass the check and the older one write last.
        let mut state = self.inner.fence.write();
        let next = state.raised(epoch, mode, reason)?;
        self.persist_fence(&next)?;
        *state = next.clone();
        Ok((next, self.head_seq()))
    }

    /// Lowers the fence under `epoch`. An epoch below the node's is refused with
    /// [`StoreError::StaleEpoch`] and the fence stays.
    pub fn unfence(&self, epoch: u64, reason: String) -> Result<(FenceState, u64), StoreError> {
        let mut state = self.inner.fence.write();
        let next = state.lowered(epoch, reason)?;
        self.persist_fence(&next)?;
        *state = next.clone();
        Ok((next, self.head_seq()))
    }

    /// Syncs the write-ahead log and flushes memtables, so a restart replays nothing.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_wal()?;
        for name in [rocks::CF_DOCS, rocks::CF_CHANGES, rocks::CF_STATS] {
            self.inner.db.flush_cf(rocks::cf(&self.inner.db, name))?;
        }
        Ok(())
    }

    /// Syncs the write-ahead log only: everything written is durable, and the memtables are
    /// replayed from the log at the next open (quick, whatever their size).
    pub fn flush_wal(&self) -> Result<(), StoreError> {
        self.inner.db.flush_wal(true)?;
        Ok(())
    }

    /// Tests: entries in the memtables of `docs` and `changes` (none when everything came
    /// by ingest).
    #[cfg(test)]
    pub(crate) fn memtable_entries(&self) -> u64 {
        let db = &self.inner.db;
        [rocks::CF_DOCS, rocks::CF_CHANGES]
            .into_iter()
            .map(|name| {
                db.property_int_value_cf(
                    rocks::cf(db, name),
                    "rocksdb.num-entries-active-mem-table",
                )
                .expect("property")
                .unwrap_or(0)
            })
            .sum()
    }

    /// Whether RocksDB is flushing or compacting, or has such work pending: a benchmark
    /// waits for a settled store before it measures.
    pub fn background_work(&self) -> Result<bool, StoreError> {
        let db = &self.inner.db;
        for property in [
            "rocksdb.num-running-compactions",
            "rocksdb.num-running-flushes",
        ] {
            if db.property_int_value(property)?.unwrap_or(0) > 0 {
                return Ok(true);
            }
        }
        for name in [rocks::CF_DOCS, rocks::CF_CHANGES, rocks::CF_STATS] {
            let family = rocks::cf(db, name);
            for property in [
                "rocksdb.compaction-pending",
                "rocksdb.mem-table-flush-pending",
            ] {
                if db.property_int_value_cf(family, property)?.unwrap_or(0) > 0 {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Writes the fence, fsynced whatever the sync policy: a permanent fence must survive a
    /// power loss (the contract says it is durable before the response), and a fence changes a
    /// few times an upgrade, so the fsync costs nothing that matters.
    fn persist_fence(&self, state: &FenceState) -> Result<(), StoreError> {
        let json = serde_json::to_vec(state).expect("FenceState serialises");
        self.inner.db.put_cf_opt(
            rocks::cf(&self.inner.db, rocks::CF_META),
            rocks::META_FENCE,
            json,
            &rocks::synced(),
        )?;
        Ok(())
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(self.inner.sync == SyncPolicy::Always);
        Ok(self.inner.db.write_opt(batch, &options)?)
    }
}

/// A new store's id. Path, pid and time alone collide in containers: every node there is pid
/// 1 with the same data path, and nodes started together create their stores in the same
/// millisecond. The standard library's hasher keys come from the operating system's random
/// source.
fn new_node_id(path: &std::path::Path) -> String {
    let random = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        now_unix_ms(),
    );
    let seed = format!(
        "{}|{}|{}|{random}",
        path.display(),
        std::process::id(),
        now_unix_ms()
    );
    format!("node-{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}

/// Stamps a new store: layout version, partitions, node id; one synced batch.
fn create(db: &DB, config: &StoreConfig) -> Result<u32, StoreError> {
    let partitions = config.partitions.unwrap_or(schema::DEFAULT_PARTITIONS);
    let node_id = new_node_id(&config.path);
    let meta = rocks::cf(db, rocks::CF_META);
    let mut batch = WriteBatch::default();
    batch.put_cf(
        meta,
        rocks::META_SCHEMA_VERSION,
        schema::SCHEMA_VERSION.to_be_bytes(),
    );
    batch.put_cf(meta, rocks::META_PARTITIONS, partitions.to_be_bytes());
    batch.put_cf(meta, rocks::META_NODE_ID, node_id.as_bytes());
    db.write_opt(batch, &rocks::synced())?;
    Ok(partitions)
}
