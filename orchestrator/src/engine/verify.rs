//! Verification before a switch: per-partition live counts and digests of the side copied from
//! and the side copied to, taken while the side copied from is fenced, must agree once the
//! documents the transforms dropped or failed on are accounted for. Pure: the caller fetches
//! the digests; this module only compares.

use std::collections::BTreeSet;

use cutover_node::store::{partition_of, term};
use cutover_proto::v1::DigestResponse;

/// A document known to be live on one side and absent from the other: `(collection, id,
/// version)` as that side holds it (a drop of the transform).
pub type Known = (String, String, u64);

/// What the comparison must account for.
#[derive(Debug, Clone, Default)]
pub struct Allowances {
    /// Live on the side copied from, not on the other (dropped on the way).
    pub only_from: Vec<Known>,
    /// Live on the side copied to, not on the other.
    pub only_to: Vec<Known>,
    /// Ids whose partition cannot be compared (dead letters: the other side may hold an older
    /// version or none). Their partitions are skipped and counted.
    pub unknown: Vec<String>,
    /// A renamed collection changes every digest term of its documents: only counts are
    /// compared then. `Some(name)` names the renamed collection.
    pub renamed: Option<String>,
}

/// A passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Partitions compared.
    pub partitions: u32,
    /// Partitions skipped for dead letters.
    pub skipped: u32,
    /// Live documents on the side copied to.
    pub documents: u64,
    /// Whether digests were compared (not only counts).
    pub digests: bool,
}

/// A failed verification: the first partition that differs, with both figures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The sides are partitioned differently.
    #[error("partition counts differ: {from} on the source side, {to} on the sink side")]
    Partitions {
        /// Partition count of the side copied from.
        from: u32,
        /// Partition count of the side copied to.
        to: u32,
    },
    /// A partition differs.
    #[error(
        "partition {partition} differs: {from_count} live documents (digest {from_digest:016x}) \
         expected from the source side, {to_count} (digest {to_digest:016x}) on the sink side"
    )]
    Partition {
        /// The partition.
        partition: u32,
        /// Expected live documents.
        from_count: u64,
        /// Expected digest.
        from_digest: u64,
        /// Live documents found.
        to_count: u64,
        /// Digest found.
        to_digest: u64,
    },
}

/// Sums the digests of the nodes of one side, partition by partition.
fn totals(sides: &[DigestResponse]) -> Result<(u32, Vec<(u64, u64)>), Mismatch> {
    let count = sides.first().map_or(0, |d| d.partition_count);
    let mut sums = vec![(0u64, 0u64); count as usize];
    for side in sides {
        if side.partition_count != count {
            return Err(Mismatch::Partitions {
                from: count,
                to: side.partition_count,
            });
        }
        for p in &side.partitions {
            if let Some(slot) = sums.get_mut(p.partition as usize) {
                slot.0 += p.live_documents;
                slot.1 = slot.1.wrapping_add(p.digest);
            }
        }
    }
    Ok((count, sums))
}

fn subtract(sums: &mut [(u64, u64)], count: u32, known: &[Known]) {
    for (collection, id, version) in known {
        let slot = &mut sums[partition_of(id, count) as usize];
        slot.0 = slot.0.saturating_sub(1);
        slot.1 = slot.1.wrapping_sub(term(collection, id, *version));
    }
}

/// Compares the digests of the nodes copied from (`from`, summed) with those of the node they
/// were copied to (`to`).
pub fn compare(
    from: &[DigestResponse],
    to: &[DigestResponse],
    allowances: &Allowances,
) -> Result<Verified, Mismatch> {
    let (count, mut expected) = totals(from)?;
    let (to_count, mut found) = totals(to)?;
    if count != to_count {
        return Err(Mismatch::Partitions {
            from: count,
            to: to_count,
        });
    }
    subtract(&mut expected, count, &allowances.only_from);
    subtract(&mut found, count, &allowances.only_to);
    let skipped: BTreeSet<u32> = allowances
        .unknown
        .iter()
        .map(|id| partition_of(id, count))
        .collect();
    let digests = allowances.renamed.is_none();
    for (partition, (want, got)) in expected.iter().zip(&found).enumerate() {
        let partition = partition as u32;
        if skipped.contains(&partition) {
            continue;
        }
        if want.0 != got.0 || (digests && want.1 != got.1) {
            return Err(Mismatch::Partition {
                partition,
                from_count: want.0,
                from_digest: want.1,
                to_count: got.0,
                to_digest: got.1,
            });
        }
    }
    Ok(Verified {
        partitions: count - skipped.len() as u32,
        skipped: skipped.len() as u32,
        documents: found.iter().map(|f| f.0).sum(),
        digests,
    })
}

/// The digest response of a node holding `docs` (collection, id, version) in `count`
/// partitions with head `head_seq`, as a node computes it: for tests and the simulation.
#[cfg(test)]
pub(crate) fn digest_of(count: u32, docs: &[(&str, &str, u64)], head_seq: u64) -> DigestResponse {
    use cutover_proto::v1::PartitionDigest;
    let mut partitions: Vec<PartitionDigest> = (0..count)
        .map(|partition| PartitionDigest {
            partition,
            ..PartitionDigest::default()
        })
        .collect();
    for (collection, id, version) in docs {
        let p = &mut partitions[partition_of(id, count) as usize];
        p.live_documents += 1;
        p.digest = p.digest.wrapping_add(term(collection, id, *version));
    }
    DigestResponse {
        partition_count: count,
        partitions,
        head_seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(count: u32, docs: &[(&str, &str, u64)]) -> DigestResponse {
        digest_of(count, docs, 0)
    }

    #[test]
    fn equal_copies_pass_and_a_missing_or_stale_document_fails() {
        let blue = node(16, &[("users", "alice", 1), ("users", "doc-1", 3)]);
        let same = node(16, &[("users", "alice", 1), ("users", "doc-1", 3)]);
        let ok = compare(
            std::slice::from_ref(&blue),
            std::slice::from_ref(&same),
            &Allowances::default(),
        )
        .expect("equal");
        assert_eq!((ok.partitions, ok.documents, ok.digests), (16, 2, true));

        let stale = node(16, &[("users", "alice", 1), ("users", "doc-1", 2)]);
        let err = compare(
            std::slice::from_ref(&blue),
            std::slice::from_ref(&stale),
            &Allowances::default(),
        )
        .expect_err("stale");
        assert!(
            matches!(err, Mismatch::Partition { partition: 1, .. }),
            "{err}"
        );

        let missing = node(16, &[("users", "alice", 1)]);
        let err = compare(
            &[blue],
            std::slice::from_ref(&missing),
            &Allowances::default(),
        )
        .expect_err("missing");
        assert!(
            matches!(
                err,
                Mismatch::Partition {
                    from_count: 1,
                    to_count: 0,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn sources_are_summed_and_drops_and_dead_letters_are_accounted_for() {
        let a = node(8, &[("users", "a", 1), ("users", "dropped", 4)]);
        let b = node(8, &[("users", "b", 2), ("users", "failed", 1)]);
        let green = node(8, &[("users", "a", 1), ("users", "b", 2)]);
        let err = compare(
            &[a.clone(), b.clone()],
            std::slice::from_ref(&green),
            &Allowances::default(),
        );
        assert!(
            err.is_err(),
            "the drop and the dead letter are not on green"
        );
        let allowances = Allowances {
            only_from: vec![("users".into(), "dropped".into(), 4)],
            unknown: vec!["failed".into()],
            ..Allowances::default()
        };
        let ok =
            compare(&[a, b], std::slice::from_ref(&green), &allowances).expect("accounted for");
        assert_eq!((ok.skipped, ok.documents), (1, 2));
    }

    #[test]
    fn a_rename_compares_counts_only_and_different_partitionings_fail() {
        let blue = node(4, &[("users", "a", 1)]);
        let green = node(4, &[("people", "a", 1)]);
        assert!(
            compare(
                std::slice::from_ref(&blue),
                std::slice::from_ref(&green),
                &Allowances::default()
            )
            .is_err()
        );
        let renamed = Allowances {
            renamed: Some("users".into()),
            ..Allowances::default()
        };
        let ok = compare(
            std::slice::from_ref(&blue),
            std::slice::from_ref(&green),
            &renamed,
        )
        .expect("counts agree");
        assert!(!ok.digests);
        let err = compare(&[blue], &[node(8, &[])], &renamed).expect_err("4 vs 8");
        assert_eq!(err, Mismatch::Partitions { from: 4, to: 8 });
    }
}
