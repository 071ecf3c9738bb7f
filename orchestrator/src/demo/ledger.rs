//! What a client load remembers: every key's last acknowledged state, and the check that a
//! store holds each of them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The last acknowledged state of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Live at this version with this `visits`.
    Live {
        /// Version the write returned.
        version: u64,
        /// The `visits` it wrote.
        visits: u64,
    },
    /// Deleted.
    Deleted,
    /// A write failed without an answer: its outcome is unknown (and counted as an error).
    Unknown,
}

/// Every key's last acknowledged state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// id → state.
    pub keys: HashMap<String, Expect>,
}

/// A key whose stored state differs from its last acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The id.
    pub id: String,
    /// What was acknowledged.
    pub expected: String,
    /// What the store holds.
    pub found: String,
}

impl Ledger {
    /// Compares every key with `read(id)` (the store's `(version, visits)`, or none) and
    /// returns the keys that differ.
    pub fn check(&self, mut read: impl FnMut(&str) -> Option<(u64, u64)>) -> Vec<Lost> {
        let mut lost = Vec::new();
        for (id, expect) in &self.keys {
            let found = read(id);
            let ok = match (expect, found) {
                (Expect::Unknown, _) => true,
                (Expect::Deleted, None) => true,
                (Expect::Live { version, visits }, Some((v, n))) => *version == v && *visits == n,
                _ => false,
            };
            if !ok {
                lost.push(Lost {
                    id: id.clone(),
                    expected: format!("{expect:?}"),
                    found: format!("{found:?}"),
                });
            }
        }
        lost.sort_by(|a, b| a.id.cmp(&b.id));
        lost
    }

    /// Keys with an acknowledged state (not unknown).
    pub fn known(&self) -> usize {
        self.keys
            .values()
            .filter(|e| **e != Expect::Unknown)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_differing_from_its_last_acknowledged_write_is_lost() {
        let mut ledger = Ledger::default();
        ledger.keys.insert(
            "a".into(),
            Expect::Live {
                version: 3,
                visits: 2,
            },
        );
        ledger.keys.insert("b".into(), Expect::Deleted);
        ledger.keys.insert("c".into(), Expect::Unknown);
        assert_eq!(ledger.known(), 2);
        let store: HashMap<&str, (u64, u64)> = HashMap::from([("a", (3, 2))]);
        assert!(ledger.check(|id| store.get(id).copied()).is_empty());
        // An older version, a resurrected delete: both lost; the unknown write never counts.
        let stale: HashMap<&str, (u64, u64)> = HashMap::from([("a", (2, 1)), ("b", (1, 0))]);
        let lost = ledger.check(|id| stale.get(id).copied());
        assert_eq!(
            lost.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
