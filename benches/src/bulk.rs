//! A bulk load of a node's store before its node starts: the benchmark opens the data folder
//! with the node's own [`Store`], writes every document as sorted table files through the
//! store's ingest (what cycle 1 into a fresh green does), then closes it, and `cutover node
//! --data-dir` opens the folder as it would any store. Tens of millions of documents load in
//! minutes this way, where HTTP or `Sink.Apply` would take an hour, and the store ends as
//! `Store::apply` would leave it (documents, versions, one change each, counters, digests),
//! its files already at the bottom level with no compaction to wait for.

use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context, bail, ensure};
use cutover_node::store::{DEFAULT_MAX_QUEUED_WRITES, Incoming, Store, StoreConfig, SyncPolicy};

/// Documents per ingested chunk: a pair of table files each (~50 MB of bodies).
const CHUNK: u64 = 250_000;
/// Threads building chunks at once (the ingest takes their seqs in turn).
const THREADS: u64 = 2;

/// What one collection of a bulk load holds: documents `0..count` of `collection`, each
/// with the id and the body its functions give.
#[derive(Debug, Clone, Copy)]
pub struct Documents {
    /// The collection.
    pub collection: &'static str,
    /// How many documents.
    pub count: u64,
    /// The id of document `n`.
    pub id: fn(u64) -> String,
    /// The body of document `n`.
    pub body: fn(u64) -> Vec<u8>,
}

/// Creates the store at `path` (which must not hold one) and fills it with `sets` in turn,
/// every document at version 1, then flushes and closes it.
pub fn load(path: &Path, sets: &[Documents]) -> anyhow::Result<()> {
    load_in_chunks(path, sets, CHUNK)
}

fn load_in_chunks(path: &Path, sets: &[Documents], chunk: u64) -> anyhow::Result<()> {
    let store = Store::open(&StoreConfig {
        path: path.to_owned(),
        partitions: None,
        sync: SyncPolicy::Os,
        max_queued_writes: DEFAULT_MAX_QUEUED_WRITES,
    })
    .with_context(|| format!("creating the store at {}", path.display()))?;
    for set in sets {
        load_set(&store, set, chunk)?;
    }
    store.flush()?;
    crate::fixture::settle(&store)?;
    let live = store.live_documents()?;
    let wanted: u64 = sets.iter().map(|s| s.count).sum();
    ensure!(
        live == wanted,
        "the bulk load left {live} documents, not {wanted}"
    );
    // The last handle: dropping it closes RocksDB and releases the folder for the node.
    drop(store);
    Ok(())
}

/// Ingests `set` in chunks of `size` documents on [`THREADS`] threads. Ids rise with `n`, so
/// the chunks' key ranges never overlap and each file lands at the bottom level.
fn load_set(store: &Store, set: &Documents, size: u64) -> anyhow::Result<()> {
    let next = AtomicU64::new(0);
    let chunks = set.count.div_ceil(size);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let chunk = next.fetch_add(1, Ordering::Relaxed);
                        if chunk >= chunks {
                            return Ok(());
                        }
                        let first = chunk * size;
                        ingest(store, set, first..(first + size).min(set.count))?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a bulk-load thread panicked"))??;
        }
        Ok(())
    })
}

/// Ingests documents `numbers` of `set` as one chunk.
fn ingest(store: &Store, set: &Documents, numbers: std::ops::Range<u64>) -> anyhow::Result<()> {
    let ids: Vec<String> = numbers.clone().map(set.id).collect();
    let bodies: Vec<Vec<u8>> = numbers.map(set.body).collect();
    let batch: Vec<Incoming<'_>> = ids
        .iter()
        .zip(&bodies)
        .map(|(id, body)| Incoming {
            collection: set.collection,
            id,
            version: 1,
            tombstone: false,
            body,
        })
        .collect();
    let Some(session) = store.ingest() else {
        bail!("the store being bulk-loaded has had another writer: it takes no more ingests");
    };
    let Some(outcomes) = session.load(std::slice::from_ref(&batch))? else {
        bail!(
            "the store refused an ingest of {} documents from {}: it already holds one of them",
            batch.len(),
            ids.first().map_or("", String::as_str)
        );
    };
    let applied: u64 = outcomes.iter().map(|o| u64::from(o.applied)).sum();
    ensure!(
        applied == batch.len() as u64,
        "ingested {applied} of {}",
        batch.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn a_bulk_loaded_store_holds_every_document_and_reopens() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("data");
        let sets = [
            Documents {
                collection: "bench",
                count: 2_510,
                id: fixture::id,
                body: |n| fixture::body(n, 1),
            },
            Documents {
                collection: "users",
                count: 7,
                id: fixture::id,
                body: |n| fixture::body(n, 1),
            },
        ];
        // Three chunks of 1,000 and a short one, on two threads.
        load_in_chunks(&path, &sets, 1_000).expect("loaded");
        let store = Store::open(&StoreConfig {
            path,
            partitions: None,
            sync: SyncPolicy::Os,
            max_queued_writes: DEFAULT_MAX_QUEUED_WRITES,
        })
        .expect("the folder reopens: the bulk load closed it");
        assert_eq!(store.live_documents().expect("count"), 2_517);
        let doc = store
            .get("bench", &fixture::id(2_503))
            .expect("read")
            .expect("the last chunk's document");
        assert_eq!(
            (doc.version, &doc.body[..]),
            (1, &fixture::body(2_503, 1)[..])
        );
        assert_eq!(store.head_seq(), 2_517);
    }
}
