//! Reads: single documents, collection listings, the change scan behind `Pull` and `Lag`, and
//! the counters behind `Digest` and `Describe`. Each read that touches more than one key
//! reads from one RocksDB snapshot.

use std::ops::ControlFlow;

use rocksdb::{DB, ReadOptions};

use super::{
    Store, StoreError,
    digest::partition_of,
    fence::now_unix_ms,
    keys::{self, Change, Counter, DocPointer},
    rocks::{CF_CHANGES, CF_DOCS, CF_STATS, cf},
    schema::{SCHEMA_VERSION, check_collection, check_id},
};

/// A live document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// Its version (the HTTP `ETag`).
    pub version: u64,
    /// The seq of its latest write.
    pub seq: u64,
    /// The stored JSON, byte for byte.
    pub body: Vec<u8>,
}

/// One page of a collection, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// `(id, version, body)` of each live document on the page.
    pub documents: Vec<(String, u64, Vec<u8>)>,
    /// The id to pass as `after` for the next page, when there is one.
    pub next: Option<String>,
}

/// What a pull covers.
#[derive(Debug, Clone, Default)]
pub struct PullSpec {
    /// Exclusive lower bound on seq.
    pub since: u64,
    /// Partitions to include; empty means all.
    pub partitions: Vec<u32>,
}

/// One change seen by a scan: its seq and the document's latest state.
pub type Changed<'a> = (u64, Change<'a>);

/// What a scan covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullSummary {
    /// Every change with seq ≤ this was visited (when `complete`).
    pub high_watermark: u64,
    /// Changes visited.
    pub documents: u64,
    /// Body bytes visited.
    pub bytes: u64,
    /// False when the visitor stopped the scan early.
    pub complete: bool,
}

/// Count and digest of one partition's live documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionDigest {
    /// The partition.
    pub partition: u32,
    /// Live documents in it.
    pub live_documents: u64,
    /// The wrapping sum of their digest terms.
    pub digest: u64,
}

/// Per-partition counts and digests from one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The node's partition count.
    pub partition_count: u32,
    /// The requested partitions, in order.
    pub partitions: Vec<PartitionDigest>,
    /// The stable head when the snapshot was taken.
    pub head_seq: u64,
}

/// The identity and shape of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    /// The node id.
    pub node_id: String,
    /// The partition count.
    pub partition_count: u32,
    /// `(name, live documents)` of every non-empty collection, by name.
    pub collections: Vec<(String, u64)>,
    /// The stable head.
    pub head_seq: u64,
    /// The store's layout version.
    pub schema_version: u32,
    /// Whether client writes are refused now.
    pub fenced: bool,
    /// The partitions this node owns, in increasing order: all of them for a cluster of one.
    pub partitions: Vec<u32>,
    /// The hash of the node's cluster file; empty for a cluster of one.
    pub cluster_hash: String,
}

impl Store {
    /// A live document, or `None` if it is absent or deleted.
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<Doc>, StoreError> {
        check_collection(collection)?;
        check_id(id)?;
        let db = &self.inner.db;
        let snapshot = db.snapshot();
        let Some(pointer) = snapshot.get_cf(cf(db, CF_DOCS), keys::doc_key(collection, id))? else {
            return Ok(None);
        };
        let pointer = DocPointer::decode(&pointer)?;
        if pointer.tombstone {
            return Ok(None);
        }
        let change = snapshot
            .get_cf(cf(db, CF_CHANGES), keys::seq_key(pointer.seq))?
            .ok_or(StoreError::Corrupt {
                what: "document pointer without its change",
            })?;
        Ok(Some(Doc {
            version: pointer.version,
            seq: pointer.seq,
            body: Change::decode(&change)?.body.to_vec(),
        }))
    }

    /// Up to `limit` live documents of a collection with ids after `after`, in id order.
    pub fn list(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Listing, StoreError> {
        check_collection(collection)?;
        let db = &self.inner.db;
        let snapshot = db.snapshot();
        let mut options = ReadOptions::default();
        options.set_snapshot(&snapshot);
        let prefix = keys::collection_prefix(collection);
        let mut iter = db.raw_iterator_cf_opt(cf(db, CF_DOCS), options);
        match after {
            Some(after) => iter.seek(keys::doc_key(collection, after)),
            None => iter.seek(&prefix),
        }
        let mut page: Vec<(String, DocPointer)> = Vec::new();
        let mut more = false;
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !key.starts_with(&prefix) {
                break;
            }
            let id = keys::id_of_doc_key(key, &prefix)?;
            let pointer = DocPointer::decode(value)?;
            if !pointer.tombstone && Some(id) != after {
                if page.len() == limit {
                    more = true;
                    break;
                }
                page.push((id.to_owned(), pointer));
            }
            iter.next();
        }
        iter.status()?;
        let seq_keys: Vec<[u8; 8]> = page.iter().map(|(_, p)| keys::seq_key(p.seq)).collect();
        let bodies = snapshot.multi_get_cf(seq_keys.iter().map(|k| (cf(db, CF_CHANGES), k)));
        let mut documents = Vec::with_capacity(page.len());
        for ((id, pointer), body) in page.into_iter().zip(bodies) {
            let bytes = body?.ok_or(StoreError::Corrupt {
                what: "document pointer without its change",
            })?;
            documents.push((id, pointer.version, Change::decode(&bytes)?.body.to_vec()));
        }
        let next = more
            .then(|| documents.last().map(|(id, _, _)| id.clone()))
            .flatten();
        Ok(Listing { documents, next })
    }

    /// Visits, in seq order, every document whose latest change has a seq in
    /// `(spec.since, stable head]`, filtered by partition: one sequential scan under one
    /// snapshot. The head is read *before* the snapshot, so every seq up to it has committed
    /// and is in the snapshot. The visitor can stop the scan early.
    pub fn scan_changes(
        &self,
        spec: &PullSpec,
        mut visit: impl FnMut(u64, &Change<'_>) -> ControlFlow<()>,
    ) -> Result<PullSummary, StoreError> {
        let wanted = self.partition_filter(&spec.partitions)?;
        let head = self.head_seq();
        if spec.since > head {
            return Err(StoreError::BeyondHead {
                since: spec.since,
                head,
            });
        }
        let db = &self.inner.db;
        let snapshot = db.snapshot();
        let mut options = ReadOptions::default();
        options.set_snapshot(&snapshot);
        options.set_iterate_upper_bound(keys::seq_key(head.saturating_add(1)));
        options.set_readahead_size(4 << 20);
        // A pull of the whole store must not evict the blocks that serve client reads.
        options.fill_cache(false);
        let mut iter = db.raw_iterator_cf_opt(cf(db, CF_CHANGES), options);
        iter.seek(keys::seq_key(spec.since + 1));
        let mut summary = PullSummary {
            high_watermark: head,
            documents: 0,
            bytes: 0,
            complete: true,
        };
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let seq = keys::seq_of_key(key)?;
            let change = Change::decode(value)?;
            let included = wanted
                .as_ref()
                .is_none_or(|w| w[partition_of(change.id, self.inner.partitions) as usize]);
            if included {
                summary.documents += 1;
                summary.bytes += change.body.len() as u64;
                if visit(seq, &change).is_break() {
                    summary.complete = false;
                    return Ok(summary);
                }
            }
            iter.next();
        }
        iter.status()?;
        Ok(summary)
    }

    /// `(stable head, documents whose latest change has seq > since)` in `partitions` (all
    /// when empty): what a pull with the same `since` and partitions would deliver now.
    /// O(changes): without a filter the index's keys are only counted; with one each change
    /// is decoded for its id, as a pull's scan does.
    pub fn lag(&self, since: u64, partitions: &[u32]) -> Result<(u64, u64), StoreError> {
        let wanted = self.partition_filter(partitions)?;
        let head = self.head_seq();
        if since > head {
            return Err(StoreError::BeyondHead { since, head });
        }
        let db = &self.inner.db;
        let snapshot = db.snapshot();
        let mut options = ReadOptions::default();
        options.set_snapshot(&snapshot);
        options.set_iterate_upper_bound(keys::seq_key(head.saturating_add(1)));
        if wanted.is_some() {
            options.set_readahead_size(4 << 20);
            options.fill_cache(false);
        }
        let mut iter = db.raw_iterator_cf_opt(cf(db, CF_CHANGES), options);
        iter.seek(keys::seq_key(since + 1));
        let mut changed = 0;
        while iter.valid() {
            let included = match (&wanted, iter.value()) {
                (None, _) => true,
                (Some(wanted), Some(value)) => {
                    let change = Change::decode(value)?;
                    wanted[partition_of(change.id, self.inner.partitions) as usize]
                }
                (Some(_), None) => false,
            };
            changed += u64::from(included);
            iter.next();
        }
        iter.status()?;
        Ok((head, changed))
    }

    /// Counts and digests of the requested partitions (all when empty): O(partitions).
    pub fn digest(&self, partitions: &[u32]) -> Result<Digest, StoreError> {
        let count = self.inner.partitions;
        let mut wanted: Vec<u32> = if partitions.is_empty() {
            (0..count).collect()
        } else {
            self.partition_filter(partitions)?;
            partitions.to_vec()
        };
        wanted.sort_unstable();
        wanted.dedup();
        let head_seq = self.head_seq();
        let db = &self.inner.db;
        let snapshot = db.snapshot();
        let stats = cf(db, CF_STATS);
        let stat_keys: Vec<[u8; 5]> = wanted
            .iter()
            .map(|p| keys::partition_stats_key(*p))
            .collect();
        let values = snapshot.multi_get_cf(stat_keys.iter().map(|k| (stats, k)));
        let mut out = Vec::with_capacity(wanted.len());
        for (partition, value) in wanted.into_iter().zip(values) {
            let counter = value?
                .map(|bytes| Counter::decode(&bytes))
                .transpose()?
                .unwrap_or_default();
            out.push(PartitionDigest {
                partition,
                live_documents: counter.count,
                digest: counter.digest,
            });
        }
        Ok(Digest {
            partition_count: count,
            partitions: out,
            head_seq,
        })
    }

    /// The node's identity, collections and head.
    pub fn describe(&self) -> Result<Describe, StoreError> {
        let head_seq = self.head_seq();
        let db = &self.inner.db;
        let mut iter = db.raw_iterator_cf(cf(db, CF_STATS));
        iter.seek(keys::COLLECTION_STATS_PREFIX);
        let mut collections = Vec::new();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !key.starts_with(keys::COLLECTION_STATS_PREFIX) {
                break;
            }
            let live = Counter::decode(value)?.count;
            if live > 0 {
                collections.push((keys::collection_of_stats_key(key)?.to_owned(), live));
            }
            iter.next();
        }
        iter.status()?;
        Ok(Describe {
            node_id: self.inner.node_id.clone(),
            partition_count: self.inner.partitions,
            collections,
            head_seq,
            schema_version: SCHEMA_VERSION,
            fenced: self.fence_state().is_fenced(now_unix_ms()),
            partitions: self.owned_partitions(),
            cluster_hash: self.cluster_hash().to_owned(),
        })
    }

    /// Live documents of the whole node: the sum of the partition counters.
    pub fn live_documents(&self) -> Result<u64, StoreError> {
        Ok(self
            .digest(&[])?
            .partitions
            .iter()
            .map(|p| p.live_documents)
            .sum())
    }

    /// A lookup table of wanted partitions, or `None` for all; refuses unknown partitions.
    fn partition_filter(&self, partitions: &[u32]) -> Result<Option<Vec<bool>>, StoreError> {
        if partitions.is_empty() {
            return Ok(None);
        }
        let count = self.inner.partitions;
        let mut wanted = vec![false; count as usize];
        for &partition in partitions {
            if partition >= count {
                return Err(StoreError::NoSuchPartition { partition, count });
            }
            wanted[partition as usize] = true;
        }
        Ok(Some(wanted))
    }
}

/// The highest seq in the by-sequence index (0 when empty): after a restart, the head.
/// Every assigned seq was, when assigned, some document's latest; the highest cannot have been
/// superseded, so the index's last key is the highest seq ever committed.
pub(super) fn last_seq(db: &DB) -> Result<u64, StoreError> {
    let mut iter = db.raw_iterator_cf(cf(db, CF_CHANGES));
    iter.seek_to_last();
    iter.status()?;
    iter.key().map_or(Ok(0), keys::seq_of_key)
}
