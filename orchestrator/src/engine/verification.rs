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
    world::NodeControl,
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
                    Routes::reverse(&self.plan).map_err(|e| DriveError::Plan(e.to_string()))?,
                );
                self.cycle(&pairs, &routes, into, None).await?
            }
        };
        Ok(Duration::from_millis(record.duration_ms))
    }

    /// Blue's digests (fenced at `fenced`) against green's. Green's heads, where reverse sync
    /// starts, are journaled as the reverse watermarks.
    pub(super) async fn verify_forward(&self, fenced: &Heads) -> Result<Verified, DriveError> {
        let journal = self.board.journal();
        let fleet = &self.fleet;
        let run = self.discovered().await?;
        let blue = fenced_digests(&fleet.blue, fenced, Color::Blue).await?;
        let dead = journal.dead_letters()?;
        let mut allowances = Allowances {
            only_from: journal.dropped()?,
            unknown: dead.into_iter().map(|d| d.id).collect(),
            renamed: self.plan.renamed(),
            ..Allowances::default()
        };
        if fleet.green.len() > 1 {
            // A drop's blue node is not journaled: with several groups, leave its partition
            // out rather than guess.
            let ids = allowances.only_from.drain(..).map(|(_, id, _)| id);
            allowances.unknown.extend(ids);
        }
        let (mut partitions, mut skipped, mut documents) = (0, 0, 0);
        let mut green_heads = Vec::new();
        for (g, green) in fleet.green.iter().enumerate() {
            let from: Vec<_> = blue
                .iter()
                .enumerate()
                .filter(|(i, _)| fleet.sink_of(*i) == g)
                .map(|(_, d)| d.clone())
                .collect();
            let to = green
                .digest()
                .await
                .map_err(DriveError::call("verifying"))?;
            let verified = verify::compare(&from, &to, &allowances).map_err(|mismatch| {
                DriveError::Mismatch {
                    color: Color::Green,
                    endpoint: green.endpoint().to_owned(),
                    mismatch,
                }
            })?;
            partitions += verified.partitions;
            skipped += verified.skipped;
            documents += verified.documents;
            green_heads.push((green.endpoint().to_owned(), to.head_seq));
            // Everything green holds up to here came from blue: reverse sync starts after it.
            if let Some(pair) = run
                .pairs
                .iter()
                .find(|p| p.sink_endpoint() == green.endpoint())
            {
                journal.acknowledge(
                    &self.upgrade.id,
                    Direction::Reverse,
                    pair.sink_id(),
                    to.head_seq,
                    &Default::default(),
                )?;
            }
        }
        let summary = summary(documents, partitions, skipped, allowances.renamed.is_some());
        tracing::info!(verified = summary, "verification passed");
        Ok(Verified {
            summary,
            green_heads,
        })
    }

    /// Green's digests (fenced at `fenced`) against blue's, each pair on its own. Green's
    /// writes that cannot flow back are counted again under the fence (since `reverse_from`):
    /// writes since the request would be lost too, unless `discard`.
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
        let greens = fenced_digests(&fleet.green, fenced, Color::Green).await?;
        if discard {
            return Ok(Verified {
                summary: "green's head checked; digests not compared: green's writes to \
                          collections without a reverse program were discarded on request"
                    .to_owned(),
                green_heads: Vec::new(),
            });
        }
        let mut documents = 0;
        for (i, blue) in fleet.blue.iter().enumerate() {
            let from = &greens[fleet.sink_of(i)];
            let to = blue.digest().await.map_err(DriveError::call("verifying"))?;
            let verified = verify::compare(std::slice::from_ref(from), &to, &allowances).map_err(
                |mismatch| DriveError::Mismatch {
                    color: Color::Blue,
                    endpoint: blue.endpoint().to_owned(),
                    mismatch,
                },
            )?;
            documents += verified.documents;
        }
        Ok(Verified {
            summary: format!("verified {documents} documents back on blue"),
            green_heads: Vec::new(),
        })
    }
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
