//! One source's share of a cycle: pull → transform → apply → journal, four stages overlapped
//! through bounded queues so that the network, the cores and the disks all stay busy.
//!
//! - pull: reads the source's `Pull(since)` stream; each batch is handed to a blocking
//!   thread for its transform at once, so up to [`TRANSFORMS_IN_FLIGHT`] batches are
//!   transformed in parallel;
//! - apply: takes the transformed batches in pull order and sends them to the sink, at most
//!   the sink's [`window`](super::peer::SinkPeer::window) unacknowledged;
//! - acknowledge: matches the sink's acks to the batches, in order;
//! - journal: commits the watermark of the newest acknowledged batch with its dead letters
//!   and drops (coalescing what queued up meanwhile into one synced write).
//!
//! A crash anywhere loses at most the batches after the last committed watermark; they are
//! pulled again and re-applied, which the sink's version check makes harmless.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use cutover_proto::v1::{ApplyRequest, CopyEvent, pull_response::Kind};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::StreamExt;
use tonic::Status;

use super::{
    hosted,
    journal::{BatchRecord, Direction, Journal, JournalError, Link},
    metrics as m,
    peer::{PeerError, SinkPeer, SourcePeer},
    routes::{Routes, Tally, Transformed, transform_batch},
};

/// Batches being transformed at once, per source.
pub const TRANSFORMS_IN_FLIGHT: usize = 4;

/// What stopped a source's copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A node failed a call.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The pull stream broke or ended without its completion.
    #[error("{endpoint}: the pull stream ended early: {reason}")]
    PullBroken {
        /// The source.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The sink's acknowledgements do not match what was sent.
    #[error("{endpoint}: apply: {reason}")]
    ApplyBroken {
        /// The sink.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The orchestrator that asked for the copy stopped listening.
    #[error("the orchestrator that asked for this copy stopped listening")]
    Unheard,
}

/// Where a copy commits each acknowledged batch's watermark, with its dead letters, drops and
/// successes.
#[derive(Debug, Clone)]
pub enum Commit {
    /// The orchestrator's journal, under the upgrade `upgrade_id` (the journal refuses writes
    /// of another one).
    Journal {
        /// The journal.
        journal: Arc<Journal>,
        /// The upgrade the copy belongs to.
        upgrade_id: String,
    },
    /// Reported to the orchestrator that asked this node for the copy (`Pipelines.Copy`),
    /// which journals it.
    Report(mpsc::Sender<Result<CopyEvent, Status>>),
}

impl Commit {
    /// Commits `record`, the batches of `link` up to `watermark` in `direction` that held
    /// `figures`; in the journal, also counts them in the metrics.
    pub async fn batch(
        &self,
        direction: Direction,
        link: &Link,
        watermark: u64,
        record: BatchRecord,
        figures: Figures,
    ) -> Result<(), CopyError> {
        match self {
            Self::Journal {
                journal,
                upgrade_id,
            } => {
                let (journal, upgrade, link) =
                    (Arc::clone(journal), upgrade_id.clone(), link.clone());
                let (failed, dropped) = (record.failed.len(), record.dropped.len());
                tokio::task::spawn_blocking(move || {
                    journal.acknowledge(&upgrade, direction, &link, watermark, &record)
                })
                .await
                .expect("journal writes do not panic")?;
                m::copied(&figures.per_collection, failed as u64, dropped as u64);
                Ok(())
            }
            Self::Report(events) => {
                let event = hosted::batch_event(watermark, record, figures);
                events.send(Ok(event)).await.map_err(|_| CopyError::Unheard)
            }
        }
    }
}

/// What the batches of one commit held: for progress and the metrics.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Documents handled (copied, dropped or failed), tombstones included.
    pub documents: u64,
    /// `(collection, documents, body bytes)` pulled, by source collection.
    pub per_collection: Vec<(String, u64, u64)>,
}

impl Figures {
    /// Adds a batch's documents of `collection`.
    pub fn add(&mut self, collection: &str, documents: u64, bytes: u64) {
        self.documents += documents;
        match self
            .per_collection
            .iter_mut()
            .find(|(c, _, _)| c == collection)
        {
            Some((_, d, b)) => {
                *d += documents;
                *b += bytes;
            }
            None => self
                .per_collection
                .push((collection.to_owned(), documents, bytes)),
        }
    }
}

/// What a copy needs besides the two peers.
#[derive(Debug, Clone)]
pub struct CopyContext {
    /// Where the watermarks go.
    pub commit: Commit,
    /// The pipeline's key in the journal.
    pub link: Link,
    /// Which way the copy goes (where its dead letters and drops are journaled).
    pub direction: Direction,
    /// The plan's transforms.
    pub routes: Arc<Routes>,
    /// Keys that are dead letters or drops in the journal.
    pub problems: Arc<HashSet<(String, String)>>,
    /// Batch limits asked of the source.
    pub batch_documents: u32,
    /// Batch limits asked of the source.
    pub batch_bytes: u64,
    /// Documents handled so far, shared with the progress reporter.
    pub progress: Arc<AtomicU64>,
}

/// Copies every change of `source` in `partitions` (empty: all) after `since` to `sink`,
/// committing the watermark after each acknowledged batch; returns the copy's counts and the
/// source snapshot's head it reached.
pub async fn copy(
    source: &SourcePeer,
    sink: &SinkPeer,
    since: u64,
    partitions: &[u32],
    context: &CopyContext,
) -> Result<Copied, CopyError> {
    let pulled = source
        .pull(
            since,
            partitions,
            context.batch_documents,
            context.batch_bytes,
        )
        .await?;
    // The apply call is awaited by the acknowledge stage, not here: some gRPC servers send
    // their response headers only with the first ack, which needs a first batch sent.
    let (apply_tx, acks) = sink.apply();
    let (jobs_tx, jobs_rx) = mpsc::channel(TRANSFORMS_IN_FLIGHT);
    // Room for every batch the sink may hold unacknowledged, and the transforms behind them.
    let queued = (TRANSFORMS_IN_FLIGHT * 4).max(sink.window() + TRANSFORMS_IN_FLIGHT);
    let (sent_tx, sent_rx) = mpsc::channel(queued);
    let (done_tx, done_rx) = mpsc::channel(queued);
    let pull = pull_stage(source, pulled, jobs_tx, context);
    let apply = apply_stage(sink.endpoint(), jobs_rx, apply_tx, sent_tx);
    let acknowledge = acknowledge_stage(sink, acks, sent_rx, done_tx);
    let journal = journal_stage(done_rx, since, context);
    let (high_watermark, (), (), (tally, committed)) =
        tokio::try_join!(pull, apply, acknowledge, journal)?;
    // Changes past the last batch (in no batch of ours) are covered by the snapshot's head.
    if high_watermark > committed {
        context
            .commit
            .batch(
                context.direction,
                &context.link,
                high_watermark,
                BatchRecord::default(),
                Figures::default(),
            )
            .await?;
    }
    Ok(Copied {
        tally,
        high_watermark,
    })
}

/// What a complete copy did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Copied {
    /// Its counts.
    pub tally: Tally,
    /// The source snapshot's head: every change of the partitions up to it is applied.
    pub high_watermark: u64,
}

/// A batch on its way: the transform job, then what was sent.
type Job = JoinHandle<Transformed>;

/// Sent to the sink (`Some(batch_id)`) or, with nothing left to apply, straight to the journal.
struct Sent {
    batch_id: Option<u64>,
    batch: Transformed,
}

async fn pull_stage(
    source: &SourcePeer,
    mut pulled: tonic::Streaming<cutover_proto::v1::PullResponse>,
    jobs: mpsc::Sender<Job>,
    context: &CopyContext,
) -> Result<u64, CopyError> {
    let broken = |reason: String| CopyError::PullBroken {
        endpoint: source.endpoint.clone(),
        reason,
    };
    loop {
        let message = pulled.message().await.map_err(|s| broken(describe(&s)))?;
        match message.and_then(|m| m.kind) {
            Some(Kind::Batch(batch)) => {
                let routes = Arc::clone(&context.routes);
                let problems = Arc::clone(&context.problems);
                let job =
                    tokio::task::spawn_blocking(move || transform_batch(batch, &routes, &problems));
                if jobs.send(job).await.is_err() {
                    return Err(broken("the apply side stopped".into()));
                }
            }
            Some(Kind::Complete(complete)) => return Ok(complete.high_watermark),
            None => return Err(broken("no PullComplete at the end of the stream".into())),
        }
    }
}

async fn apply_stage(
    sink: &str,
    mut jobs: mpsc::Receiver<Job>,
    apply: mpsc::Sender<ApplyRequest>,
    sent: mpsc::Sender<Sent>,
) -> Result<(), CopyError> {
    let mut next_id = 1;
    while let Some(job) = jobs.recv().await {
        let mut batch = job.await.map_err(|e| CopyError::ApplyBroken {
            endpoint: "transform".into(),
            reason: format!("a transform thread stopped: {e}"),
        })?;
        let mut batch_id = None;
        if !batch.documents.is_empty() {
            let documents = std::mem::take(&mut batch.documents);
            let request = ApplyRequest {
                batch_id: next_id,
                documents,
            };
            if apply.send(request).await.is_err() {
                return Err(CopyError::ApplyBroken {
                    endpoint: sink.to_owned(),
                    reason: "the sink closed the apply stream".into(),
                });
            }
            batch_id = Some(next_id);
            next_id += 1;
        }
        if sent.send(Sent { batch_id, batch }).await.is_err() {
            return Err(CopyError::ApplyBroken {
                endpoint: sink.to_owned(),
                reason: "acknowledgements stopped".into(),
            });
        }
    }
    Ok(())
}

async fn acknowledge_stage(
    sink: &SinkPeer,
    acks: impl Future<Output = Result<super::peer::Acks, PeerError>>,
    mut sent: mpsc::Receiver<Sent>,
    done: mpsc::Sender<Transformed>,
) -> Result<(), CopyError> {
    let mut acks = acks.await?;
    let broken = |reason: String| CopyError::ApplyBroken {
        endpoint: sink.endpoint().to_owned(),
        reason,
    };
    while let Some(Sent { batch_id, batch }) = sent.recv().await {
        if let Some(expected) = batch_id {
            match acks.next().await {
                Some(Ok(ack)) if ack.batch_id == expected => {}
                Some(Ok(ack)) => {
                    return Err(broken(format!(
                        "acknowledged batch {} where {expected} was due",
                        ack.batch_id
                    )));
                }
                // The sink's own answer: a refusal (a partition it does not own, a malformed
                // document) is final, a broken connection transient.
                Some(Err(status)) => {
                    return Err(CopyError::Peer(PeerError::at(sink.endpoint(), "Apply")(
                        status,
                    )));
                }
                None => return Err(broken("the stream ended before every ack".into())),
            }
        }
        if done.send(batch).await.is_err() {
            return Err(CopyError::ApplyBroken {
                endpoint: sink.endpoint().to_owned(),
                reason: "the journal stage stopped".into(),
            });
        }
    }
    Ok(())
}

/// Commits watermarks; returns the cycle's tally and the last committed watermark.
async fn journal_stage(
    mut done: mpsc::Receiver<Transformed>,
    since: u64,
    context: &CopyContext,
) -> Result<(Tally, u64), CopyError> {
    let mut tally = Tally::default();
    let mut committed = since;
    while let Some(first) = done.recv().await {
        let mut record = BatchRecord::default();
        let mut watermark = committed;
        let mut figures = Figures::default();
        // This batch and whatever queued up behind it meanwhile: one journal write.
        let queued = std::iter::from_fn(|| done.try_recv().ok());
        for batch in std::iter::once(first).chain(queued) {
            tally.add(&batch.tally);
            for (collection, documents, bytes) in &batch.per_collection {
                figures.add(collection, *documents, *bytes);
            }
            record
                .failed
                .extend(batch.record.failed.into_iter().map(|mut dead| {
                    dead.source.clone_from(&context.link.source);
                    dead
                }));
            record.dropped.extend(batch.record.dropped);
            record.copied.extend(batch.record.copied);
            watermark = watermark.max(batch.last_seq);
            context
                .progress
                .fetch_add(batch.tally.documents, Ordering::Relaxed);
        }
        context
            .commit
            .batch(context.direction, &context.link, watermark, record, figures)
            .await?;
        committed = watermark;
    }
    Ok((tally, committed))
}

fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}
