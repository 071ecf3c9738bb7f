//! Serialises writes to one key without serialising the whole store: a writer takes every key
//! it writes at once, or waits until none of them is taken. Writers of different keys proceed
//! in parallel (and RocksDB groups their WAL syncs); writers of one key queue.
//!
//! Keys are held by their 64-bit hash: two keys with one hash only make one writer wait for
//! the other. Taking all keys or none cannot deadlock. A writer whose keys keep being taken
//! by others could wait long; the writers that contend on a node are one sink's apply
//! streams (green during the copy, a fenced blue during reverse sync), not client writes.

use std::{
    collections::HashSet,
    hash::{BuildHasherDefault, Hasher},
    sync::{Condvar, Mutex, MutexGuard},
};

use xxhash_rust::xxh3::xxh3_64;

/// Keys being written.
#[derive(Debug, Default)]
pub struct KeyLocks {
    held: Mutex<HashSet<u64, BuildHasherDefault<Prehashed>>>,
    released: Condvar,
}

/// Keys taken by one writer; released on drop.
#[derive(Debug)]
pub struct Held<'a> {
    locks: &'a KeyLocks,
    hashes: Vec<u64>,
}

impl KeyLocks {
    /// No key taken.
    pub fn new() -> Self {
        Self::default()
    }

    fn set(&self) -> MutexGuard<'_, HashSet<u64, BuildHasherDefault<Prehashed>>> {
        // A panic elsewhere cannot leave the set inconsistent: it changes in one call.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every key of `keys`, waiting until none of them is taken by another writer.
    pub fn lock_all<'a, K: AsRef<[u8]>>(&'a self, keys: impl IntoIterator<Item = K>) -> Held<'a> {
        // A key twice in `keys` is inserted, then removed, twice: harmless in a set.
        let hashes: Vec<u64> = keys.into_iter().map(|k| xxh3_64(k.as_ref())).collect();
        let mut held = self.set();
        while hashes.iter().any(|h| held.contains(h)) {
            held = self.released.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.extend(&hashes);
        Held {
            locks: self,
            hashes,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.set();
        for hash in &self.hashes {
            held.remove(hash);
        }
        drop(held);
        self.locks.released.notify_all();
    }
}

/// The hasher of a set of xxh3 hashes: they are hashes already.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    #[test]
    fn writers_of_other_keys_do_not_wait_and_writers_of_one_key_queue() {
        let locks = Arc::new(KeyLocks::new());
        let first = locks.lock_all([b"a".as_slice(), b"b"]);
        // Other keys: taken at once, while "a" and "b" are held.
        drop(locks.lock_all([b"c".as_slice(), b"d"]));
        let (taken_tx, taken_rx) = std::sync::mpsc::channel();
        let waiter = {
            let locks = Arc::clone(&locks);
            std::thread::spawn(move || {
                let _held = locks.lock_all([b"d".as_slice(), b"b"]);
                taken_tx.send(()).expect("the test waits");
            })
        };
        assert!(
            taken_rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "a writer of a held key went ahead"
        );
        drop(first);
        taken_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer gets the key once it is released");
        waiter.join().expect("the waiter does not panic");
        assert!(locks.set().is_empty());
    }
}
