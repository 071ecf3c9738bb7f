//! Which partitions this store may hold: all of them for a node that is a cluster of one,
//! its share for a node of a cluster. Set once, when the node joins its cluster; every
//! replicated and client write is checked against it, so a wrong copy topology (or a request
//! routed past the HTTP layer) fails loudly instead of placing a document where no client
//! will look for it.

use std::sync::OnceLock;

use super::{Store, StoreError, digest::partition_of};
use crate::cluster::{Named, Ranges};

/// A node's share of its cluster.
#[derive(Debug)]
pub(super) struct Ownership {
    /// Whether each partition is this node's.
    owned: Box<[bool]>,
    /// The cluster file's hash.
    cluster_hash: String,
}

/// The ownership slot of a store: empty (everything owned) until [`Store::join_cluster`].
pub(super) type Slot = OnceLock<Ownership>;

impl Store {
    /// Restricts the store to `owned` partitions of a cluster whose file has hash
    /// `cluster_hash`: from now on it refuses writes of documents in other partitions, and
    /// [`describe`](Self::describe) reports both. Once per store; refuses a partition it does
    /// not have.
    pub fn join_cluster(&self, owned: &[u32], cluster_hash: &str) -> Result<(), StoreError> {
        let count = self.inner.partitions;
        let mut table = vec![false; count as usize].into_boxed_slice();
        for &partition in owned {
            *table
                .get_mut(partition as usize)
                .ok_or(StoreError::NoSuchPartition { partition, count })? = true;
        }
        let ownership = Ownership {
            owned: table,
            cluster_hash: cluster_hash.to_owned(),
        };
        self.inner
            .ownership
            .set(ownership)
            .map_err(|_| StoreError::AlreadyJoined)
    }

    /// Whether `partition` is this node's.
    pub fn owns(&self, partition: u32) -> bool {
        match self.inner.ownership.get() {
            None => partition < self.inner.partitions,
            Some(ownership) => ownership.owned.get(partition as usize) == Some(&true),
        }
    }

    /// The partitions this node owns, in increasing order (all of them for a cluster of one).
    pub fn owned_partitions(&self) -> Vec<u32> {
        (0..self.inner.partitions)
            .filter(|p| self.owns(*p))
            .collect()
    }

    /// The hash of the cluster file the node joined with; empty for a cluster of one.
    pub fn cluster_hash(&self) -> &str {
        self.inner
            .ownership
            .get()
            .map_or("", |o| o.cluster_hash.as_str())
    }

    /// Refuses a document of a partition this node does not own.
    pub(super) fn check_owned(&self, collection: &str, id: &str) -> Result<(), StoreError> {
        if self.inner.ownership.get().is_none() {
            return Ok(());
        }
        let partition = partition_of(id, self.inner.partitions);
        if self.owns(partition) {
            return Ok(());
        }
        Err(StoreError::NotOwned {
            collection: collection.to_owned(),
            id: id.to_owned(),
            partition,
            owned: format!("{}", Named(&Ranges::new(self.owned_partitions()))),
        })
    }
}
