//! Ingest: how a copy fills a store that has never held a document (cycle 1 into a fresh
//! green). Instead of a write per batch (a version lookup per document, the write-ahead
//! log, the memtables, then their flushes and compactions) it writes each chunk of batches
//! as two sorted table files, one for `docs` and one for `changes`, and links them into the
//! database. The store ends as [`Store::apply`] would leave it: the same documents, versions,
//! one change each, counters and digests. Only the seq numbers may differ (two chunks in
//! flight may take theirs in either order), and so may the per-batch counts when a chunk
//! holds a document twice (only its newest version is written and counted).
//!
//! It only holds while nothing but ingests writes the store: before each chunk, a session
//! checks that the highest seq assigned is still the one the last ingested chunk left (0 for
//! the first), and takes the chunk's seqs in the same step. Once another writer has taken a
//! seq, ingesting is over for the store (every session is spent) and callers apply as usual.
//! A document given twice in a chunk keeps its newest version. A document an earlier chunk
//! wrote ends ingesting too: each chunk looks its keys up first, in one sorted batch.
//!
//! That state is the store's, not a session's: several sources copying into one fresh store
//! at once (cycle 1 of N blue nodes into one green node, one apply stream each) all ingest,
//! their chunks taking seqs in turn. Their documents are disjoint (each partition has one
//! source), so none spends the others; if two ever share a document, the lookup finds it and
//! everything from then on is applied, which keeps the newest version whatever the order.
//!
//! Two chunks may be written at once: they take their seqs one after the other, then each
//! builds and links its own files (one waits for its files to sync while the other builds).
//!
//! Crash safety: the two files of a chunk cannot be linked in one atomic step (RocksDB's C
//! API ingests one column family at a time), so a synced marker names the chunk's seqs
//! before its first file is linked, and the counters are merged in the same batch that
//! removes it. A store opened with a marker present rolls that chunk back (its changes, and
//! the pointers to them), as does a failure in the middle of the steps; the chunk was never
//! acknowledged, so the copy sends it again, and `apply` writes it. If that rollback fails
//! too, the process stops at once rather than go on with a chunk that is half there (the
//! next open rolls it back).

use std::{
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
};

use rocksdb::{DB, IngestExternalFileOptions, ReadOptions, SstFileWriter, WriteBatch};

use super::{
    ApplyOutcome, Incoming, Store, StoreError,
    keys::{self, Change, DocPointer},
    rocks::{self, CF_CHANGES, CF_DOCS, CF_META, CF_STATS, META_INGEST, cf},
    write::{Counters, check_incoming},
};

/// The folder, inside the store's, where an ingest writes its table files before linking them.
const INGEST_DIR: &str = "ingest";

/// An ingest session (see the module's documentation); from [`Store::ingest`]. Chunks may
/// be loaded from several threads, and several sessions, at once: each takes its seqs in
/// turn, then writes its files while the next one writes its own.
#[derive(Debug)]
pub struct Ingest {
    store: Store,
    /// Tests: stop after this step of a chunk's write (1: changes linked, 2: docs linked):
    /// [`Ingest::crash_point`].
    #[cfg(test)]
    pub(super) crash_after: std::sync::atomic::AtomicU8,
}

/// The store's ingest state: the highest seq the last ingested chunk took (0 before the
/// first), while the store holds nothing but ingested chunks; `None` once another writer
/// took a seq or a chunk failed (for good: the store then applies).
pub(super) type IngestHead = Mutex<Option<u64>>;

/// The ingest state of a store opened with `head` as its highest seq.
pub(super) fn ingest_head(head: u64) -> IngestHead {
    Mutex::new((head == 0).then_some(0))
}

impl Store {
    /// Starts an ingest session while the store holds nothing but what ingests wrote (a
    /// fresh store, or one other sessions are filling). Its chunks are ingested as long as
    /// that lasts.
    pub fn ingest(&self) -> Option<Ingest> {
        let session = Ingest {
            store: self.clone(),
            #[cfg(test)]
            crash_after: std::sync::atomic::AtomicU8::new(0),
        };
        (!session.is_spent()).then_some(session)
    }

    fn ingest_dir(&self) -> PathBuf {
        self.inner.path.join(INGEST_DIR)
    }
}

impl Ingest {
    /// Writes a chunk of batches, durably, as [`Store::apply`] of each batch in turn would;
    /// returns each batch's outcome. `Ok(None)`, with nothing written, when the store has had
    /// another writer or already holds one of the chunk's documents: apply the chunk instead
    /// (and every later one: the session is spent).
    pub fn load(
        &self,
        batches: &[Vec<Incoming<'_>>],
    ) -> Result<Option<Vec<ApplyOutcome>>, StoreError> {
        if self.is_spent() {
            return Ok(None);
        }
        for batch in batches {
            check_incoming(&self.store, batch)?;
        }
        let documents: Vec<(usize, &Incoming<'_>)> = batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| batch.iter().map(move |doc| (b, doc)))
            .collect();
        let keys = Keys::new(&documents);
        // Key order for the `docs` file, newest version first within a key: only that one
        // is kept (the first of its key, then ties by arrival).
        let mut by_key: Vec<usize> = (0..documents.len()).collect();
        by_key.sort_unstable_by(|&a, &b| {
            keys.get(a)
                .cmp(keys.get(b))
                .then(documents[b].1.version.cmp(&documents[a].1.version))
                .then(a.cmp(&b))
        });
        by_key.dedup_by(|later, first| keys.get(*later) == keys.get(*first));
        let mut kept = vec![false; documents.len()];
        for &i in &by_key {
            kept[i] = true;
        }
        let count = by_key.len() as u64;
        let mut outcomes = vec![ApplyOutcome::default(); batches.len()];
        if count == 0 {
            return Ok(Some(outcomes));
        }
        let inner = &self.store.inner;
        let _held = inner.locks.lock_all(by_key.iter().map(|&i| keys.get(i)));
        // A document an earlier chunk wrote (an apply stream may send one again, or a chunk
        // still in flight holds it: its lock kept us waiting until it was written) is
        // `apply`'s to handle.
        if self.holds_any(&keys, &by_key)? {
            self.spend();
            return Ok(None);
        }
        let range = {
            let mut head = self.head();
            let Some(range) = head.and_then(|h| inner.seqs.assign_after(h, count)) else {
                *head = None;
                return Ok(None);
            };
            *head = Some(range.first() + count - 1);
            range
        };
        // Seqs in arrival order, as `apply` gives them.
        let mut seqs = vec![0; documents.len()];
        let mut next = range.first();
        for ((seq, keep), (batch, doc)) in seqs.iter_mut().zip(&kept).zip(&documents) {
            let outcome = &mut outcomes[*batch];
            if *keep {
                *seq = next;
                next += 1;
                outcome.applied += 1;
                outcome.bytes += doc.body.len() as u64;
            } else {
                outcome.skipped_stale += 1;
            }
        }
        let (first, last) = (range.first(), next - 1);
        let chunk = Chunk {
            documents: &documents,
            keys: &keys,
            by_key: &by_key,
            kept: &kept,
            seqs: &seqs,
        };
        let dir = self.store.ingest_dir().join(first.to_string());
        // A panic is a failure like any other: the chunk is rolled back.
        let written =
            std::panic::catch_unwind(AssertUnwindSafe(|| chunk.write(self, &dir, first, last)))
                .unwrap_or_else(|panic| {
                    #[cfg(test)]
                    if panic.is::<TestCrash>() {
                        std::panic::resume_unwind(panic);
                    }
                    drop(panic);
                    Err(StoreError::Corrupt {
                        what: "an ingest panicked",
                    })
                });
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(error) = written {
            self.spend();
            if let Err(undo) = roll_back_from(&inner.db, first) {
                // Going on would let the stable head pass a chunk that the next open deletes,
                // after the copy was told its documents are there.
                tracing::error!(%error, %undo, first, last, "an ingest failed and could not be rolled back: stopping; the store rolls it back when it is next opened");
                std::process::abort();
            }
            return Err(error);
        }
        Ok(Some(outcomes))
    }

    /// Tests: after step `crash_after` of a chunk's write, fail as an I/O error would (and
    /// the chunk is rolled back at once), or, with 0x10 added, panic as a crash would stop
    /// the process there (the rollback is then left to the next open).
    #[cfg(test)]
    fn crash_point(&self, step: u8) -> Result<(), StoreError> {
        let crash_after = self.crash_after.load(std::sync::atomic::Ordering::Relaxed);
        if crash_after == step | 0x10 {
            std::panic::resume_unwind(Box::new(TestCrash));
        }
        if crash_after == step {
            return Err(StoreError::Corrupt {
                what: "a failure injected by a test",
            });
        }
        Ok(())
    }

    #[cfg(not(test))]
    #[allow(clippy::unnecessary_wraps, clippy::unused_self)]
    fn crash_point(&self, _step: u8) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the store holds a document of the chunk whose kept keys, in order, are
    /// `by_key`. One seek answers when no document lies in the chunk's key range (the first
    /// chunk, or a source that wrote its documents in key order, such as sequential ids);
    /// otherwise, as for random ids, one sorted lookup of every key, which the table files'
    /// bloom filters mostly answer.
    fn holds_any(&self, keys: &Keys, by_key: &[usize]) -> Result<bool, StoreError> {
        let db = &self.store.inner.db;
        let (Some(&low), Some(&high)) = (by_key.first(), by_key.last()) else {
            return Ok(false);
        };
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound([keys.get(high), &[0]].concat());
        let mut range = db.raw_iterator_cf_opt(cf(db, CF_DOCS), options);
        range.seek(keys.get(low));
        if !range.valid() {
            range.status()?;
            return Ok(false);
        }
        let sorted: Vec<&[u8]> = by_key.iter().map(|&i| keys.get(i)).collect();
        for found in db.batched_multi_get_cf(cf(db, CF_DOCS), &sorted, true) {
            if found?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The store's ingest state, locked.
    fn head(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.store
            .inner
            .ingest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends ingesting for the store: every later chunk, of every session, is `apply`'s.
    fn spend(&self) {
        *self.head() = None;
    }

    /// Whether ingesting is over for the store: a chunk failed, or another writer took a seq
    /// since the last ingested chunk (found here, and ingesting ended for good).
    fn is_spent(&self) -> bool {
        let mut head = self.head();
        if head.is_some_and(|h| h != self.store.inner.seqs.assigned()) {
            *head = None;
        }
        head.is_none()
    }
}

/// Tests: the unwinding that stands for a crash of the process.
#[cfg(test)]
struct TestCrash;

/// The `docs` keys of a chunk's documents, in arrival order, end to end in one buffer.
struct Keys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    fn new(documents: &[(usize, &Incoming<'_>)]) -> Self {
        let mut keys = Self {
            bytes: Vec::with_capacity(
                documents
                    .iter()
                    .map(|(_, d)| d.collection.len() + 1 + d.id.len())
                    .sum(),
            ),
            ends: Vec::with_capacity(documents.len()),
        };
        for (_, doc) in documents {
            keys::push_doc_key(&mut keys.bytes, doc.collection, doc.id);
            keys.ends.push(keys.bytes.len());
        }
        keys
    }

    /// The key of the `i`th document.
    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// One chunk's documents, in arrival order, with what `load` decided about each.
struct Chunk<'c, 'a> {
    documents: &'c [(usize, &'c Incoming<'a>)],
    keys: &'c Keys,
    /// The kept documents, in key order.
    by_key: &'c [usize],
    /// Whether each document is kept (the newest version of its key in the chunk).
    kept: &'c [bool],
    seqs: &'c [u64],
}

impl Chunk<'_, '_> {
    /// Writes the two files, then marker, links and counters (see the module's documentation).
    fn write(&self, session: &Ingest, dir: &Path, first: u64, last: u64) -> Result<(), StoreError> {
        let store = &session.store;
        let db = &store.inner.db;
        std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, &e))?;
        let changes_file = dir.join("changes.sst");
        let docs_file = dir.join("docs.sst");
        let mut counters = Counters::default();
        let options = rocks::changes_options();
        let mut changes = SstFileWriter::create(&options);
        changes.open(&changes_file)?;
        let mut value = Vec::new();
        for (i, (_, doc)) in self.documents.iter().enumerate() {
            if !self.kept[i] {
                continue;
            }
            let change = Change {
                version: doc.version,
                tombstone: doc.tombstone,
                collection: doc.collection,
                id: doc.id,
                body: doc.body,
            };
            change.encode_into(&mut value);
            changes.put(keys::seq_key(self.seqs[i]), &value)?;
            counters.add(
                doc.collection,
                doc.id,
                store.inner.partitions,
                None,
                (!doc.tombstone).then_some(doc.version),
            );
        }
        changes.finish()?;
        let options = rocks::docs_options();
        let mut docs = SstFileWriter::create(&options);
        docs.open(&docs_file)?;
        for &i in self.by_key {
            let doc = self.documents[i].1;
            let pointer = DocPointer {
                seq: self.seqs[i],
                version: doc.version,
                tombstone: doc.tombstone,
            };
            docs.put(self.keys.get(i), pointer.encode())?;
        }
        docs.finish()?;

        let mut marker = WriteBatch::default();
        marker.put_cf(cf(db, CF_META), marker_key(first), last.to_be_bytes());
        // Synced whatever the store's sync policy: the marker and the rollback must survive a
        // power loss, or the links they cover would outlive them.
        db.write_opt(marker, &rocks::synced())?;
        let mut link = IngestExternalFileOptions::default();
        link.set_move_files(true);
        db.ingest_external_file_cf_opts(cf(db, CF_CHANGES), &link, vec![&changes_file])?;
        session.crash_point(1)?;
        db.ingest_external_file_cf_opts(cf(db, CF_DOCS), &link, vec![&docs_file])?;
        session.crash_point(2)?;
        let mut done = WriteBatch::default();
        counters.stage(&mut done, cf(db, CF_STATS));
        done.delete_cf(cf(db, CF_META), marker_key(first));
        store.commit(done)
    }
}

/// The marker of the chunk whose first seq is `first`.
fn marker_key(first: u64) -> Vec<u8> {
    [META_INGEST, &first.to_be_bytes()].concat()
}

/// Undoes every ingest that did not finish (see [`roll_back_from`]); called when a store opens.
pub(super) fn roll_back(db: &DB) -> Result<(), StoreError> {
    let mut firsts = Vec::new();
    let mut iter = db.raw_iterator_cf(cf(db, CF_META));
    iter.seek(META_INGEST);
    while let Some(key) = iter.key() {
        let Some(first) = key.strip_prefix(META_INGEST) else {
            break;
        };
        let first = <[u8; 8]>::try_from(first).map_err(|_| StoreError::Corrupt {
            what: "ingest marker key",
        })?;
        firsts.push(u64::from_be_bytes(first));
        iter.next();
    }
    iter.status()?;
    for first in firsts {
        roll_back_from(db, first)?;
    }
    Ok(())
}

/// Undoes the chunk from `first` if its marker is still there: its changes, and the pointers
/// to them (the store held none of those documents before). Called when an ingest fails.
fn roll_back_from(db: &DB, first: u64) -> Result<(), StoreError> {
    let Some(last) = db.get_cf(cf(db, CF_META), marker_key(first))? else {
        return Ok(());
    };
    let last = <[u8; 8]>::try_from(last.as_slice())
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            what: "ingest marker value is not a u64",
        })?;
    let end = keys::seq_key(last.saturating_add(1));
    let mut undo = WriteBatch::default();
    let mut options = ReadOptions::default();
    options.set_iterate_upper_bound(end);
    let mut iter = db.raw_iterator_cf_opt(cf(db, CF_CHANGES), options);
    iter.seek(keys::seq_key(first));
    while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
        let seq = keys::seq_of_key(key)?;
        let change = Change::decode(value)?;
        let doc = keys::doc_key(change.collection, change.id);
        if let Some(bytes) = db.get_cf(cf(db, CF_DOCS), &doc)?
            && DocPointer::decode(&bytes)?.seq == seq
        {
            undo.delete_cf(cf(db, CF_DOCS), doc);
        }
        iter.next();
    }
    iter.status()?;
    undo.delete_range_cf(cf(db, CF_CHANGES), keys::seq_key(first), end);
    undo.delete_cf(cf(db, CF_META), marker_key(first));
    db.write_opt(undo, &rocks::synced())?;
    tracing::warn!(first, last, "rolled back an ingest that did not finish");
    Ok(())
}

/// Removes the table files of an ingest that did not finish (they were never linked).
pub(super) fn clear(path: &Path) {
    let _ = std::fs::remove_dir_all(path.join(INGEST_DIR));
}

fn io_error(action: &'static str, path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}
