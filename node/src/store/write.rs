//! Writes: client puts and deletes (fenced, preconditioned, versioned here) and replicated
//! applies (keeping the source's version, idempotent). Each is one `WriteBatch` holding the
//! document pointer, its change in the by-sequence index (and the removal of its previous
//! one), and the counter deltas.

use std::collections::HashMap;

use bytes::Bytes;
use rocksdb::{ColumnFamily, WriteBatch};
use tokio::sync::oneshot;

use super::{
    Store, StoreError,
    digest::{partition_of, term},
    keys::{self, Change, Counter, DocPointer},
    rocks::{CF_CHANGES, CF_DOCS, CF_STATS, cf},
    schema::{check_collection, check_id},
    writer::{ClientWrite, Job, WriteResult},
};

/// A condition a client write must meet (`If-Match`, `If-None-Match`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Precondition {
    /// None.
    #[default]
    Always,
    /// The document exists with one of these versions.
    IfMatch(Vec<u64>),
    /// The document exists (`If-Match: *`).
    IfExists,
    /// The document does not exist (`If-None-Match: *`).
    IfAbsent,
}

/// The result of a client write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Whether the document did not exist before (a put that created it).
    pub created: bool,
    /// The document's version after the write.
    pub version: u64,
    /// The seq of the write.
    pub seq: u64,
}

/// A replicated document to apply, with its source's version.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The collection.
    pub collection: &'a str,
    /// The id.
    pub id: &'a str,
    /// The source's version, kept as is.
    pub version: u64,
    /// Whether it is a tombstone.
    pub tombstone: bool,
    /// The JSON body; empty for a tombstone.
    pub body: &'a [u8],
}

/// The result of applying a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyOutcome {
    /// Documents written.
    pub applied: u32,
    /// Documents skipped because the store already had an equal or newer version.
    pub skipped_stale: u32,
    /// Body bytes written.
    pub bytes: u64,
}

/// Counter deltas of one batch, summed before they are merged.
#[derive(Default)]
pub(super) struct Counters<'a> {
    partitions: HashMap<u32, Counter>,
    collections: HashMap<&'a str, Counter>,
}

impl<'a> Counters<'a> {
    /// Counts a document going from `old` to `new` (each its live version, `None` when
    /// absent or a tombstone).
    pub(super) fn add(
        &mut self,
        collection: &'a str,
        id: &str,
        partitions: u32,
        old: Option<u64>,
        new: Option<u64>,
    ) {
        let old = old.map(|version| term(collection, id, version));
        let new = new.map(|version| term(collection, id, version));
        let delta = Counter {
            count: u64::from(new.is_some()).wrapping_sub(u64::from(old.is_some())),
            digest: new.unwrap_or(0).wrapping_sub(old.unwrap_or(0)),
        };
        if delta == Counter::default() {
            return;
        }
        let sum = self
            .partitions
            .entry(partition_of(id, partitions))
            .or_default();
        *sum = sum.combine(delta);
        if delta.count != 0 {
            let sum = self.collections.entry(collection).or_default();
            *sum = sum.combine(Counter {
                count: delta.count,
                digest: 0,
            });
        }
    }

    /// Stages one merge per touched counter, not one per document: merges are the costly
    /// part of a write to the memtable.
    pub(super) fn stage(self, batch: &mut WriteBatch, stats: &ColumnFamily) {
        for (partition, delta) in self.partitions {
            batch.merge_cf(stats, keys::partition_stats_key(partition), delta.encode());
        }
        for (collection, delta) in self.collections {
            batch.merge_cf(
                stats,
                keys::collection_stats_key(collection),
                delta.encode(),
            );
        }
    }
}

/// Checks a batch of replicated documents whole, before any of it is written: each is well
/// formed and of a partition `store` owns.
pub(super) fn check_incoming(store: &Store, documents: &[Incoming<'_>]) -> Result<(), StoreError> {
    for doc in documents {
        check_collection(doc.collection)?;
        check_id(doc.id)?;
        store.check_owned(doc.collection, doc.id)?;
        let problem = if doc.version == 0 {
            Some("version 0: versions start at 1")
        } else if doc.tombstone && !doc.body.is_empty() {
            Some("a tombstone carries no body")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(StoreError::BadDocument {
                collection: doc.collection.to_owned(),
                id: doc.id.to_owned(),
                problem,
            });
        }
    }
    Ok(())
}

/// A document's new state, staged into a batch.
pub(super) struct Next<'a> {
    pub collection: &'a str,
    pub id: &'a str,
    pub version: u64,
    pub tombstone: bool,
    pub body: &'a [u8],
    pub seq: u64,
}

impl Store {
    /// Creates or replaces a live document (a client write: refused while fenced). Blocks
    /// until the write is durable; async callers use [`Store::write`].
    pub fn put(
        &self,
        collection: &str,
        id: &str,
        body: &[u8],
        precondition: &Precondition,
    ) -> Result<WriteOutcome, StoreError> {
        self.write_blocking(ClientWrite {
            collection: collection.to_owned(),
            id: id.to_owned(),
            body: Some(Bytes::copy_from_slice(body)),
            precondition: precondition.clone(),
        })
    }

    /// Deletes a live document, leaving a tombstone (a client write: refused while fenced).
    /// Blocks until the delete is durable; async callers use [`Store::write`].
    pub fn delete(
        &self,
        collection: &str,
        id: &str,
        precondition: &Precondition,
    ) -> Result<WriteOutcome, StoreError> {
        self.write_blocking(ClientWrite {
            collection: collection.to_owned(),
            id: id.to_owned(),
            body: None,
            precondition: precondition.clone(),
        })
    }

    /// Queues a client write to the group committer (see `writer.rs`); resolves once it is
    /// durable, or refused. Never blocks the caller's thread.
    pub fn write(&self, write: ClientWrite) -> impl Future<Output = WriteResult> + Send + 'static {
        let queued = self.enqueue(write);
        async move { queued?.await.unwrap_or(Err(StoreError::WriterStopped)) }
    }

    /// [`Store::write`] for a thread that may block.
    pub fn write_blocking(&self, write: ClientWrite) -> WriteResult {
        self.enqueue(write)?
            .blocking_recv()
            .unwrap_or(Err(StoreError::WriterStopped))
    }

    fn enqueue(&self, write: ClientWrite) -> Result<oneshot::Receiver<WriteResult>, StoreError> {
        check_collection(&write.collection)?;
        check_id(&write.id)?;
        self.check_owned(&write.collection, &write.id)?;
        let (reply, answer) = oneshot::channel();
        self.inner.writer.push(Job::new(write, reply))?;
        Ok(answer)
    }

    /// Checks a batch of replicated documents as [`apply`](Self::apply) and an ingest do
    /// before writing any of it: well formed, and each of a partition this node owns.
    pub fn check_batch(&self, documents: &[Incoming<'_>]) -> Result<(), StoreError> {
        check_incoming(self, documents)
    }

    /// Applies replicated documents in one synced batch, keeping each source version and
    /// assigning this node's own seqs. A document whose stored version is equal or newer is
    /// skipped, so redelivery is harmless. Not fenced: this is how reverse sync writes back to
    /// a fenced blue. The whole batch is checked before any of it is written.
    pub fn apply(&self, documents: &[Incoming<'_>]) -> Result<ApplyOutcome, StoreError> {
        check_incoming(self, documents)?;
        let keys: Vec<Vec<u8>> = documents
            .iter()
            .map(|d| keys::doc_key(d.collection, d.id))
            .collect();
        let _held = self.inner.locks.lock_all(&keys);
        // The latest state of each key: the store's, then this batch's earlier entries.
        let mut latest: HashMap<&[u8], Option<DocPointer>> = HashMap::with_capacity(keys.len());
        let stored = self.pointers(&keys)?;
        let mut wanted = Vec::with_capacity(documents.len());
        for ((doc, key), pointer) in documents.iter().zip(&keys).zip(stored) {
            let current = *latest.entry(key.as_slice()).or_insert(pointer);
            if current.is_some_and(|p| p.version >= doc.version) {
                continue;
            }
            latest.insert(
                key.as_slice(),
                Some(DocPointer {
                    seq: 0,
                    version: doc.version,
                    tombstone: doc.tombstone,
                }),
            );
            wanted.push((doc, key, current));
        }
        let mut outcome = ApplyOutcome {
            skipped_stale: (documents.len() - wanted.len()) as u32,
            ..ApplyOutcome::default()
        };
        if wanted.is_empty() {
            return Ok(outcome);
        }
        let range = self.inner.seqs.assign(wanted.len() as u64);
        outcome.applied = wanted.len() as u32;
        outcome.bytes = wanted.iter().map(|(doc, _, _)| doc.body.len() as u64).sum();
        let mut batch = WriteBatch::default();
        self.stage_in_order(
            &mut batch,
            range.first(),
            wanted.iter().map(|(doc, key, current)| {
                let next = Next {
                    collection: doc.collection,
                    id: doc.id,
                    version: doc.version,
                    tombstone: doc.tombstone,
                    body: doc.body,
                    seq: 0,
                };
                (key.as_slice(), *current, next)
            }),
        );
        self.commit(batch)?;
        Ok(outcome)
    }

    /// Stages `writes` (key, its stored pointer, its new state) in order, with consecutive seqs
    /// from `first_seq` (each `Next::seq` is set here). A key written twice replaces its own
    /// earlier change in the by-sequence index, which keeps one entry per document.
    pub(super) fn stage_in_order<'a>(
        &self,
        batch: &mut WriteBatch,
        first_seq: u64,
        writes: impl IntoIterator<Item = (&'a [u8], Option<DocPointer>, Next<'a>)>,
    ) {
        let mut staged: HashMap<&[u8], DocPointer> = HashMap::new();
        let mut counters = Counters::default();
        for (seq, (key, stored, mut next)) in (first_seq..).zip(writes) {
            next.seq = seq;
            let previous = staged.get(key).copied().or(stored);
            self.stage(batch, key, previous, &next, &mut counters);
            staged.insert(
                key,
                DocPointer {
                    seq,
                    version: next.version,
                    tombstone: next.tombstone,
                },
            );
        }
        counters.stage(batch, cf(&self.inner.db, CF_STATS));
    }

    /// Adds one document's new state to `batch`: pointer and index entry (replacing the
    /// previous one); its counter deltas go to `counters`.
    fn stage<'a>(
        &self,
        batch: &mut WriteBatch,
        key: &[u8],
        previous: Option<DocPointer>,
        next: &Next<'a>,
        counters: &mut Counters<'a>,
    ) {
        let db = &self.inner.db;
        let pointer = DocPointer {
            seq: next.seq,
            version: next.version,
            tombstone: next.tombstone,
        };
        batch.put_cf(cf(db, CF_DOCS), key, pointer.encode());
        let changes = cf(db, CF_CHANGES);
        if let Some(previous) = previous {
            batch.delete_cf(changes, keys::seq_key(previous.seq));
        }
        let change = Change {
            version: next.version,
            tombstone: next.tombstone,
            collection: next.collection,
            id: next.id,
            body: next.body,
        };
        batch.put_cf(changes, keys::seq_key(next.seq), change.encode());
        counters.add(
            next.collection,
            next.id,
            self.inner.partitions,
            previous.filter(|p| !p.tombstone).map(|p| p.version),
            (!next.tombstone).then_some(next.version),
        );
    }

    /// The pointers of many documents, in one batched lookup.
    pub(super) fn pointers<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<DocPointer>>, StoreError> {
        let db = &self.inner.db;
        let docs = cf(db, CF_DOCS);
        db.batched_multi_get_cf(docs, keys, false)
            .into_iter()
            .map(|result| match result? {
                Some(bytes) => DocPointer::decode(&bytes).map(Some),
                None => Ok(None),
            })
            .collect()
    }
}
