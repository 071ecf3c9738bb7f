//! Opening RocksDB: column families, their options, the counter merge operator, and the
//! small meta values of the default column family.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, MergeOperands,
    Options,
};

use super::{StoreError, keys::Counter};

/// Documents by `(collection, id)`: where each one's latest change is.
pub const CF_DOCS: &str = "docs";
/// The by-sequence index: each document's latest change, under its seq. One entry a document.
pub const CF_CHANGES: &str = "changes";
/// Live-document counters and digests, updated by merge.
pub const CF_STATS: &str = "stats";
/// Meta values (schema version, partitions, node id, fence).
pub const CF_META: &str = "default";

/// Meta key: the layout version ([`super::schema::SCHEMA_VERSION`]), u32 big-endian.
pub const META_SCHEMA_VERSION: &[u8] = b"schema_version";
/// Meta key: the partition count, u32 big-endian.
pub const META_PARTITIONS: &[u8] = b"partitions";
/// Meta key: the node id, UTF-8.
pub const META_NODE_ID: &[u8] = b"node_id";
/// Meta key: the fence state, JSON.
pub const META_FENCE: &[u8] = b"fence";
/// Meta key prefix: a chunk being ingested, followed by its first seq, with its last as the
/// value (u64 big-endian each); present only from before its first table file is linked
/// until its counters are merged (see `ingest.rs`).
pub const META_INGEST: &[u8] = b"ingest";

/// Opens (or creates) the database with every column family.
pub fn open(path: &Path) -> Result<DB, StoreError> {
    let mut db_options = Options::default();
    db_options.create_if_missing(true);
    db_options.create_missing_column_families(true);
    db_options.increase_parallelism(2);
    db_options.set_max_background_jobs(2);
    // Concurrent writers share one WAL sync (group commit), which makes synced writes cheap
    // under load.
    db_options.set_enable_pipelined_write(true);

    let mut stats = Options::default();
    stats.set_merge_operator_associative("cutover_counter_add", add_counters);
    // Every write merges into a few hot counters: fold them in the memtable as they arrive,
    // so reading a counter never walks thousands of pending operands.
    stats.set_max_successive_merges(16);

    let descriptors = vec![
        ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ColumnFamilyDescriptor::new(CF_DOCS, docs_options()),
        ColumnFamilyDescriptor::new(CF_CHANGES, changes_options()),
        ColumnFamilyDescriptor::new(CF_STATS, stats),
    ];
    DB::open_cf_descriptors(&db_options, path, descriptors).map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    })
}

/// The options of `docs`; also those of the table files an ingest writes for it.
pub fn docs_options() -> Options {
    let mut docs = Options::default();
    let mut docs_table = BlockBasedOptions::default();
    docs_table.set_bloom_filter(10.0, false);
    docs.set_block_based_table_factory(&docs_table);
    // A bloom filter on the memtable too: applying a copy looks up every key it writes, and
    // on a fresh sink every lookup misses.
    docs.set_memtable_prefix_bloom_ratio(0.1);
    docs.set_memtable_whole_key_filtering(true);
    docs.set_compression_type(DBCompressionType::Lz4);
    docs
}

/// The options of `changes`; also those of the table files an ingest writes for it.
pub fn changes_options() -> Options {
    let mut changes = Options::default();
    changes.set_compression_type(DBCompressionType::Lz4);
    // Bigger memtables: the by-sequence index takes every body.
    changes.set_write_buffer_size(64 << 20);
    changes
}

/// Options of a write that is fsynced whatever the store's sync policy.
pub fn synced() -> rocksdb::WriteOptions {
    let mut options = rocksdb::WriteOptions::default();
    options.set_sync(true);
    options
}

/// The handle of a column family created by [`open`].
pub fn cf<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    db.cf_handle(name)
        .expect("open() creates every column family")
}

/// The merge operator of `stats`: lane-wise wrapping sum of [`Counter`]s. A malformed operand
/// (which only a corrupt store can hold) makes the merge fail, and RocksDB reports the read
/// as corrupt instead of returning a wrong count.
fn add_counters(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut total = match existing {
        Some(bytes) => Counter::decode(bytes).ok()?,
        None => Counter::default(),
    };
    for operand in operands {
        total = total.combine(Counter::decode(operand).ok()?);
    }
    Some(total.encode().to_vec())
}

/// Reads a u32 meta value.
pub fn meta_u32(db: &DB, key: &[u8]) -> Result<Option<u32>, StoreError> {
    match db.get_cf(cf(db, CF_META), key)? {
        None => Ok(None),
        Some(bytes) => <[u8; 4]>::try_from(bytes.as_slice())
            .map(|b| Some(u32::from_be_bytes(b)))
            .map_err(|_| StoreError::Corrupt {
                what: "u32 meta value",
            }),
    }
}
