//! Every byte layout of the store, in one place: keys (big-endian integers, so byte order is
//! numeric order) and the fixed-layout values. Nothing else in the crate slices bytes.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `docs` | `collection 0x00 id` | [`DocPointer`]: seq, version, flags |
//! | `changes` | `u64_be(seq)` | [`Change`]: version, flags, collection, id, body |
//! | `stats` | `'p' u32_be(partition)` or `'c' collection` | [`Counter`]: two wrapping u64 lanes |
//! | `default` | meta names (`schema_version`, …) | small values |
//!
//! Collection names never contain `0x00` (they match `[A-Za-z0-9_.-]`), so `docs` keys sort
//! by collection, then by id bytes, which for UTF-8 is code point order.

use cutover_proto::pull_wire::DocumentRef;

use crate::store::StoreError;

/// Separates collection and id in a `docs` key.
const SEPARATOR: u8 = 0;
/// Flag bit: the document is a tombstone.
const FLAG_TOMBSTONE: u8 = 1;
/// Prefix of partition counters in `stats`.
const STATS_PARTITION: u8 = b'p';
/// Prefix of collection counters in `stats`.
const STATS_COLLECTION: u8 = b'c';

/// The `docs` key of a document.
pub fn doc_key(collection: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(collection.len() + 1 + id.len());
    push_doc_key(&mut key, collection, id);
    key
}

/// Appends the `docs` key of `(collection, id)` to `out`.
pub fn push_doc_key(out: &mut Vec<u8>, collection: &str, id: &str) {
    out.extend_from_slice(collection.as_bytes());
    out.push(SEPARATOR);
    out.extend_from_slice(id.as_bytes());
}

/// The prefix of every `docs` key of a collection.
pub fn collection_prefix(collection: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(collection.len() + 1);
    key.extend_from_slice(collection.as_bytes());
    key.push(SEPARATOR);
    key
}

/// The id part of a `docs` key that starts with `prefix`.
pub fn id_of_doc_key<'a>(key: &'a [u8], prefix: &[u8]) -> Result<&'a str, StoreError> {
    key.strip_prefix(prefix)
        .and_then(|id| std::str::from_utf8(id).ok())
        .ok_or(StoreError::Corrupt {
            what: "docs key is not collection 0x00 utf8-id",
        })
}

/// The `changes` key of a sequence number.
pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The sequence number of a `changes` key.
pub fn seq_of_key(key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            what: "changes key is not 8 bytes",
        })
}

/// The `stats` key of a partition's counter.
pub fn partition_stats_key(partition: u32) -> [u8; 5] {
    let mut key = [STATS_PARTITION, 0, 0, 0, 0];
    key[1..].copy_from_slice(&partition.to_be_bytes());
    key
}

/// The `stats` key of a collection's counter.
pub fn collection_stats_key(collection: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + collection.len());
    key.push(STATS_COLLECTION);
    key.extend_from_slice(collection.as_bytes());
    key
}

/// The prefix of every collection counter in `stats`.
pub const COLLECTION_STATS_PREFIX: &[u8] = &[STATS_COLLECTION];

/// The collection named by a collection counter key.
pub fn collection_of_stats_key(key: &[u8]) -> Result<&str, StoreError> {
    key.strip_prefix(COLLECTION_STATS_PREFIX)
        .and_then(|name| std::str::from_utf8(name).ok())
        .ok_or(StoreError::Corrupt {
            what: "collection stats key",
        })
}

/// Where a document's latest state is: the `docs` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocPointer {
    /// The seq of the document's latest change (its `changes` key).
    pub seq: u64,
    /// The document's version.
    pub version: u64,
    /// Whether the latest change is a delete.
    pub tombstone: bool,
}

impl DocPointer {
    const LEN: usize = 17;

    /// The encoded value.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..16].copy_from_slice(&self.version.to_be_bytes());
        out[16] = if self.tombstone { FLAG_TOMBSTONE } else { 0 };
        out
    }

    /// Decodes a `docs` value.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bytes = <&[u8; Self::LEN]>::try_from(bytes).map_err(|_| StoreError::Corrupt {
            what: "docs value is not 17 bytes",
        })?;
        Ok(Self {
            seq: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            version: u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")),
            tombstone: bytes[16] & FLAG_TOMBSTONE != 0,
        })
    }
}

/// A document's latest change, as stored under its seq in `changes`: everything a pull sends,
/// so a pull is one sequential scan with no point lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<'a> {
    /// The document's version after this change.
    pub version: u64,
    /// Whether this change is a delete.
    pub tombstone: bool,
    /// The collection.
    pub collection: &'a str,
    /// The id.
    pub id: &'a str,
    /// The JSON body; empty for a tombstone.
    pub body: &'a [u8],
}

impl<'a> Change<'a> {
    /// Header: version (8), flags (1), collection length (2), id length (2).
    const HEADER: usize = 13;

    /// The encoded value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// The encoded value, in `out` (cleared first): a writer of many reuses one buffer.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(Self::HEADER + self.collection.len() + self.id.len() + self.body.len());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(if self.tombstone { FLAG_TOMBSTONE } else { 0 });
        // Collections are at most 128 bytes and ids at most 512: both fit a u16.
        out.extend_from_slice(&(self.collection.len() as u16).to_be_bytes());
        out.extend_from_slice(&(self.id.len() as u16).to_be_bytes());
        out.extend_from_slice(self.collection.as_bytes());
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(self.body);
    }

    /// Decodes a `changes` value, borrowing from it.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, StoreError> {
        const CORRUPT: StoreError = StoreError::Corrupt {
            what: "changes value",
        };
        if bytes.len() < Self::HEADER {
            return Err(CORRUPT);
        }
        let version = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let tombstone = bytes[8] & FLAG_TOMBSTONE != 0;
        let collection_len = usize::from(u16::from_be_bytes([bytes[9], bytes[10]]));
        let id_len = usize::from(u16::from_be_bytes([bytes[11], bytes[12]]));
        let rest = &bytes[Self::HEADER..];
        if rest.len() < collection_len + id_len {
            return Err(CORRUPT);
        }
        let (collection, rest) = rest.split_at(collection_len);
        let (id, body) = rest.split_at(id_len);
        Ok(Self {
            version,
            tombstone,
            collection: std::str::from_utf8(collection).map_err(|_| CORRUPT)?,
            id: std::str::from_utf8(id).map_err(|_| CORRUPT)?,
            body,
        })
    }
}

impl<'a> From<&Change<'a>> for DocumentRef<'a> {
    /// The change as the pull's wire encoder takes it, borrowing the same bytes.
    fn from(change: &Change<'a>) -> Self {
        DocumentRef {
            collection: change.collection,
            id: change.id,
            version: change.version,
            body: change.body,
            tombstone: change.tombstone,
        }
    }
}

/// A `stats` value: two u64 lanes added with wrapping arithmetic by the merge operator, so
/// concurrent writers update counters without a read-modify-write. For a partition: (live
/// documents, digest); for a collection: (live documents, unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    /// Live documents (a negative delta is its two's complement).
    pub count: u64,
    /// The digest, or 0.
    pub digest: u64,
}

impl Counter {
    const LEN: usize = 16;

    /// The encoded value or merge operand.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..8].copy_from_slice(&self.count.to_be_bytes());
        out[8..].copy_from_slice(&self.digest.to_be_bytes());
        out
    }

    /// Decodes a `stats` value or merge operand.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bytes = <&[u8; Self::LEN]>::try_from(bytes).map_err(|_| StoreError::Corrupt {
            what: "stats value is not 16 bytes",
        })?;
        Ok(Self {
            count: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            digest: u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")),
        })
    }

    /// Lane-wise wrapping sum.
    pub fn combine(self, other: Self) -> Self {
        Self {
            count: self.count.wrapping_add(other.count),
            digest: self.digest.wrapping_add(other.digest),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn seq_keys_sort_numerically(a: u64, b: u64) {
            prop_assert_eq!(a.cmp(&b), seq_key(a).cmp(&seq_key(b)));
            prop_assert_eq!(seq_of_key(&seq_key(a)).ok(), Some(a));
        }

        #[test]
        fn doc_keys_sort_by_collection_then_id(
            c1 in "[A-Za-z0-9_.-]{1,16}", c2 in "[A-Za-z0-9_.-]{1,16}",
            i1 in "\\PC{1,16}", i2 in "\\PC{1,16}",
        ) {
            let expected = (c1.as_bytes(), i1.as_bytes()).cmp(&(c2.as_bytes(), i2.as_bytes()));
            prop_assert_eq!(doc_key(&c1, &i1).cmp(&doc_key(&c2, &i2)), expected);
            let key = doc_key(&c1, &i1);
            prop_assert_eq!(id_of_doc_key(&key, &collection_prefix(&c1)).ok(), Some(i1.as_str()));
        }

        #[test]
        fn values_round_trip(
            seq: u64, version: u64, tombstone: bool,
            collection in "[A-Za-z0-9_.-]{1,128}", id in "\\PC{1,64}",
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let pointer = DocPointer { seq, version, tombstone };
            prop_assert_eq!(DocPointer::decode(&pointer.encode()).ok(), Some(pointer));
            let change = Change { version, tombstone, collection: &collection, id: &id, body: &body };
            let encoded = change.encode();
            prop_assert_eq!(Change::decode(&encoded).ok(), Some(change));
            let counter = Counter { count: seq, digest: version };
            prop_assert_eq!(Counter::decode(&counter.encode()).ok(), Some(counter));
        }
    }

    #[test]
    fn truncated_values_are_corrupt_not_a_panic() {
        let change = Change {
            version: 1,
            tombstone: false,
            collection: "c",
            id: "i",
            body: b"{}",
        };
        let encoded = change.encode();
        for len in 0..encoded.len() - 2 {
            assert!(Change::decode(&encoded[..len]).is_err(), "length {len}");
        }
        assert!(DocPointer::decode(&[0; 3]).is_err());
        assert!(Counter::decode(&[0; 15]).is_err());
    }

    #[test]
    fn negative_deltas_wrap() {
        let one = Counter {
            count: 1,
            digest: 7,
        };
        let minus_one = Counter {
            count: 1u64.wrapping_neg(),
            digest: 7u64.wrapping_neg(),
        };
        assert_eq!(one.combine(minus_one), Counter::default());
    }
}
