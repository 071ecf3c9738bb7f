//! Serialises writes to one key without serialising the whole store: a fixed set of mutex
//! stripes, a key hashing to one. Writers of different keys proceed in parallel (and RocksDB
//! groups their WAL syncs); writers of one key queue.

use std::sync::{Mutex, MutexGuard};

use xxhash_rust::xxh3::xxh3_64;

const STRIPES: usize = 1024;

/// Striped per-key locks.
#[derive(Debug)]
pub struct KeyLocks {
    stripes: Vec<Mutex<()>>,
}

/// Held stripes; released on drop.
pub type Held<'a> = Vec<MutexGuard<'a, ()>>;

impl KeyLocks {
    /// A fresh set of stripes.
    pub fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn stripe(key: &[u8]) -> usize {
        (xxh3_64(key) as usize) % STRIPES
    }

    fn acquire(&self, stripe: usize) -> MutexGuard<'_, ()> {
        // The guarded value is (): a panic elsewhere cannot leave it inconsistent.
        self.stripes[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Locks every stripe of `keys`, in stripe order so that two batches never deadlock.
    pub fn lock_all<'a, K: AsRef<[u8]>>(&'a self, keys: impl IntoIterator<Item = K>) -> Held<'a> {
        let mut stripes: Vec<usize> = keys.into_iter().map(|k| Self::stripe(k.as_ref())).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes.into_iter().map(|s| self.acquire(s)).collect()
    }
}

impl Default for KeyLocks {
    fn default() -> Self {
        Self::new()
    }
}
