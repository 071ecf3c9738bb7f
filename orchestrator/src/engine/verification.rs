//! A handover's final cycle and its verification, in both directions: the fenced side's
//! per-partition counts and digests (its heads must not have moved) against the other
//! side's, less what the transforms dropped or failed on.

use std::{sync::Arc, time::Duration};

use cutover_proto::v1::{Color, DigestResponse};

use super::{
    driver::Driver,
    error::DriveError,
    journal::Direction,
    machine::{Heads, Verified},
    reverse::count_changes,
    routes::Routes,
    verify::{self, Allowances},
    world::{NodeControl, Pipeline},
};

impl Driver {
    /// The final delta cycle of a handover, from the fenced side; how long it took.
    pub(super) async fn final_cycle(&self, direction: Direction) -> Result<Duration, DriveError> {
        let into = self.next_cycle(direction, true)?;
        let record = match direction {
            Direction::Forward => {
                let run = self.discovered().await?;
                self.cycle(&run.pairs, &run.routes, into, None).await?
            }
            Direction::Reverse => {
                let pairs = self.reverse_pairs().await?;
                let routes = Arc::new(
                    Routes::reverse(&self.plan, &self.natives)
                        .map_err(|e| DriveError::Plan(e.to_string()))?,
                );
                self.cycle(&pairs, &routes, into, None).await?
            }
        };
        Ok(Duration::from_millis(record.duration_ms))
    }

    /// Blue's digests (fenced at `fenced`) against green's, partition by partition: each
    /// partition's owner on one side against its owner on the other (a node holds nothing of
    /// a partition it does not own, so the sums over each colour compare owner to owner).
    /// Each green node's head, where reverse sync from it starts, is journaled as the
    /// watermark of its reverse pipelines.
    pub(super) async fn verify_forward(&self, fenced: &Heads) -> Result<Verified, DriveError> {
        let journal = self.board.journal();
        let fleet = &self.fleet;
        let run = self.discovered().await?;
        let mut blue = fenced_digests(&fleet.blue, fenced, Color::Blue).await?;
        let mut green = digests(&fleet.green).await?;
        owned_only(&fleet.blue, &mut blue, &run.pairs, true);
        owned_only(&fleet.green, &mut green, &run.pairs, false);
        let dead = journal.dead_letters()?;
        let allowances = Allowances {
            only_from: journal.dropped()?,
            unknown: dead.into_iter().map(|d| d.id).collect(),
            renamed: self.plan.renamed(),
            ..Allowances::default()
        };
        let verified = verify::compare(&blue, &green, &allowances).map_err(|mismatch| {
            DriveError::Mismatch {
                color: Color::Green,
                endpoint: owner(&run.pairs, &mismatch, false),
                mismatch,
            }
        })?;
        let mut green_heads = Vec::new();
        for (node, digest) in fleet.green.iter().zip(&green) {
            green_heads.push((node.endpoint().to_owned(), digest.head_seq));
            // Everything this node holds up to here came from blue: reverse sync starts
            // after it.
            for pair in run
                .pairs
                .iter()
                .filter(|p| p.sink_endpoint() == node.endpoint())
            {
                journal.acknowledge(
                    &self.upgrade.id,
                    Direction::Reverse,
                    &pair.link().reversed(),
                    digest.head_seq,
                    &Default::default(),
                )?;
            }
        }
        let summary = summary(
            verified.documents,
            verified.partitions,
            verified.skipped,
            allowances.renamed.is_some(),
        );
        tracing::info!(verified = summary, "verification passed");
        Ok(Verified {
            summary,
            green_heads,
        })
    }

    /// Green's digests (fenced at `fenced`) against blue's, partition by partition, owner
    /// against owner. Green's writes that cannot flow back are counted again under the fence
    /// (since `reverse_from`): writes since the request would be lost too, unless `discard`.
    pub(super) async fn verify_reverse(
        &self,
        discard: bool,
        reverse_from: &Heads,
        fenced: &Heads,
    ) -> Result<Verified, DriveError> {
        let journal = self.board.journal();
        let fleet = &self.fleet;
        let unreversible = self.plan.unreversible();
        if !discard && !unreversible.is_empty() {
            let lost = count_changes(reverse_from, &unreversible)
                .await
                .map_err(DriveError::call("counting green's writes"))?;
            if lost > 0 {
                return Err(DriveError::WouldLose {
                    documents: lost,
                    collections: unreversible.join(", "),
                });
            }
        }
        let unknown: Vec<String> = journal
            .dead_letters_of(Direction::Forward)?
            .into_iter()
            .chain(journal.dead_letters_of(Direction::Reverse)?)
            .map(|d| d.id)
            .collect();
        let allowances = Allowances {
            only_from: journal.dropped_of(Direction::Reverse)?,
            only_to: journal.dropped_of(Direction::Forward)?,
            unknown,
            renamed: self.plan.renamed(),
        };
        let mut greens = fenced_digests(&fleet.green, fenced, Color::Green).await?;
        if discard {
            return Ok(Verified {
                summary: "green's head checked; digests not compared: green's writes to \
                          collections without a reverse program were discarded on request"
                    .to_owned(),
                green_heads: Vec::new(),
            });
        }
        let mut blues = digests(&fleet.blue).await?;
        let run = self.discovered().await?;
        owned_only(&fleet.green, &mut greens, &run.pairs, false);
        owned_only(&fleet.blue, &mut blues, &run.pairs, true);
        let verified = verify::compare(&greens, &blues, &allowances).map_err(|mismatch| {
            DriveError::Mismatch {
                color: Color::Blue,
                endpoint: owner(&run.pairs, &mismatch, true),
                mismatch,
            }
        })?;
        Ok(Verified {
            summary: format!("verified {} documents back on blue", verified.documents),
            green_heads: Vec::new(),
        })
    }
}

/// The digests of `nodes`, in order.
async fn digests(nodes: &[Arc<dyn NodeControl>]) -> Result<Vec<DigestResponse>, DriveError> {
    let mut digests = Vec::new();
    for node in nodes {
        digests.push(node.digest().await.map_err(DriveError::call("verifying"))?);
    }
    Ok(digests)
}

/// Keeps in each of `digests` (those of `nodes`, in order) only the partitions its node owns:
/// the partitions of the pipelines it is the source (`source`) or the sink of. A stale copy of
/// another node's partition, left in a store from before it joined its cluster, must neither
/// hide a gap on the owner nor make a difference of its own.
fn owned_only(
    nodes: &[Arc<dyn NodeControl>],
    digests: &mut [DigestResponse],
    pairs: &[Arc<dyn Pipeline>],
    source: bool,
) {
    for (node, digest) in nodes.iter().zip(digests) {
        let mine: Vec<&Arc<dyn Pipeline>> = pairs
            .iter()
            .filter(|p| {
                let end = if source {
                    p.source_endpoint()
                } else {
                    p.sink_endpoint()
                };
                end == node.endpoint()
            })
            .collect();
        if mine.iter().any(|p| p.partitions().is_empty()) {
            continue;
        }
        digest
            .partitions
            .retain(|d| mine.iter().any(|p| p.partitions().contains(&d.partition)));
    }
}

/// Where the partition `mismatch` names lives on the side it was found on: the sink (or,
/// with `source`, the source) of the pipeline that copies it; every such node when it names
/// no partition.
fn owner(pairs: &[Arc<dyn Pipeline>], mismatch: &verify::Mismatch, source: bool) -> String {
    let end = |p: &Arc<dyn Pipeline>| {
        if source {
            p.source_endpoint().to_owned()
        } else {
            p.sink_endpoint().to_owned()
        }
    };
    if let verify::Mismatch::Partition { partition, .. } = mismatch
        && let Some(pair) = pairs
            .iter()
            .find(|p| p.partitions().is_empty() || p.partitions().contains(partition))
    {
        return end(pair);
    }
    let mut all: Vec<String> = pairs.iter().map(end).collect();
    all.dedup();
    all.join(", ")
}

/// The digests of `nodes`, fenced at `fenced` heads: [`DriveError::Moved`] when one took a
/// write since (its lease ran out).
async fn fenced_digests(
    nodes: &[Arc<dyn NodeControl>],
    fenced: &Heads,
    color: Color,
) -> Result<Vec<DigestResponse>, DriveError> {
    let mut digests = Vec::new();
    for (node, (_, head)) in nodes.iter().zip(fenced) {
        let digest = node.digest().await.map_err(DriveError::call("verifying"))?;
        if digest.head_seq != *head {
            return Err(DriveError::Moved {
                color,
                endpoint: node.endpoint().to_owned(),
                fenced: *head,
                now: digest.head_seq,
            });
        }
        digests.push(digest);
    }
    Ok(digests)
}

/// What a forward verification found, for people.
fn summary(documents: u64, partitions: u32, skipped: u32, renamed: bool) -> String {
    format!(
        "verified {documents} documents in {partitions} partitions ({}{})",
        if renamed {
            "counts; a collection is renamed"
        } else {
            "counts and digests"
        },
        if skipped > 0 {
            format!("; {skipped} partitions with dead letters skipped")
        } else {
            String::new()
        }
    )
}
