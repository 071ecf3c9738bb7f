//! gRPC `Sink`: apply streamed batches, each acknowledged once durable, in order; digest.

use cutover_proto::v1::{
    ApplyAck, ApplyRequest, DigestRequest, DigestResponse, Document, sink_server::Sink,
};
use std::{pin::Pin, sync::Arc};

use futures_util::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{blocking, status};
use crate::{
    metrics as m,
    store::{ApplyOutcome, Incoming, Ingest, Store},
};

/// Acks buffered towards a slow client before applying waits.
const ACK_BUFFER: usize = 16;

/// Batches of one apply stream applied at once, each on a blocking thread; their acks still
/// go out in batch order. One batch at a time left a core idle: while one thread waits for
/// RocksDB (the lookups, the WAL, the memtable), the next batch's lookups can run. Batches
/// that share a key still apply one after the other (see the store's key locks), and the
/// version rule makes their order harmless.
pub const APPLY_PARALLEL: usize = 3;

/// The `Sink` service over a store.
#[derive(Debug, Clone)]
pub struct SinkService {
    store: Store,
}

impl SinkService {
    /// The service for `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl Sink for SinkService {
    type ApplyStream = ReceiverStream<Result<ApplyAck, Status>>;

    async fn apply(
        &self,
        request: Request<Streaming<ApplyRequest>>,
    ) -> Result<Response<Self::ApplyStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(ACK_BUFFER);
        let store = self.store.clone();
        tokio::spawn(async move {
            let batches = tokio_stream::StreamExt::map_while(inbound, |message| {
                message
                    .map_err(|error| tracing::debug!(%error, "apply stream ended by the client"))
                    .ok()
            });
            let mut last_batch: Option<u64> = None;
            let batches = batches
                .map(move |batch| check_order(batch.batch_id, &mut last_batch).map(|()| batch));
            let mut applied = apply_stream(store, batches);
            while let Some(result) = applied.next().await {
                let result = result.map(|applied| {
                    let outcome = applied.outcome;
                    metrics::counter!(m::APPLIED_DOCUMENTS).increment(u64::from(outcome.applied));
                    metrics::counter!(m::APPLIED_BYTES).increment(outcome.bytes);
                    metrics::counter!(m::APPLY_SKIPPED).increment(u64::from(outcome.skipped_stale));
                    applied.ack()
                });
                let stop = result.is_err();
                if tx.send(result).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn digest(
        &self,
        request: Request<DigestRequest>,
    ) -> Result<Response<DigestResponse>, Status> {
        super::source::digest(&self.store, request.into_inner())
            .await
            .map(Response::new)
    }
}

/// Refuses a batch id that does not increase within the stream, and every batch after it
/// (the stream ends with that refusal, and none of them is applied).
fn check_order(batch_id: u64, last_batch: &mut Option<u64>) -> Result<(), Status> {
    if let Some(last) = last_batch.filter(|last| batch_id <= *last) {
        *last_batch = Some(u64::MAX);
        return Err(Status::invalid_argument(format!(
            "batch_id {batch_id} does not increase (last was {last}): batch ids must increase \
             within a stream"
        )));
    }
    *last_batch = Some(batch_id);
    Ok(())
}

/// Batches of an apply stream ingested at once, at most (whatever has arrived while the
/// previous chunk was written, up to this many).
pub const INGEST_BATCHES: usize = 64;

/// Chunks being ingested at once: while one waits for its files to sync, the next one builds
/// its own.
const INGEST_PARALLEL: usize = 2;

/// A batch written durably.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// The batch.
    pub batch_id: u64,
    /// What was written of it.
    pub outcome: ApplyOutcome,
    /// The store's head seq once it was written.
    pub head_seq: u64,
}

impl Applied {
    /// Its acknowledgement.
    pub fn ack(&self) -> ApplyAck {
        ApplyAck {
            batch_id: self.batch_id,
            applied: self.outcome.applied,
            skipped_stale: self.outcome.skipped_stale,
            head_seq: self.head_seq,
        }
    }
}

/// Writes a stream of batches; gives each one once it is durable, in order. An `Err` batch
/// fails the stream there. Into a store that has never held a document (cycle
/// 1 into a fresh green) the batches are ingested as table files, a chunk at a time (see
/// [`Store::ingest`]); otherwise up to [`APPLY_PARALLEL`] batches are applied at once. This
/// is `Sink.Apply`, and how an engine inside the node writes its own store.
pub fn apply_stream(
    store: Store,
    batches: impl Stream<Item = Result<ApplyRequest, Status>> + Send + 'static,
) -> Pin<Box<dyn Stream<Item = Result<Applied, Status>> + Send>> {
    let Some(session) = store.ingest() else {
        return Box::pin(
            batches
                .map(move |batch| {
                    let store = store.clone();
                    async move { apply_one(store, batch?).await }
                })
                .buffered(APPLY_PARALLEL),
        );
    };
    let session = Arc::new(session);
    Box::pin(
        batches
            .ready_chunks(INGEST_BATCHES)
            .map(move |chunk| ingest_chunk(store.clone(), Arc::clone(&session), chunk))
            .buffered(INGEST_PARALLEL)
            .flat_map(futures_util::stream::iter),
    )
}

/// Writes a chunk of batches durably (up to its first `Err`, which ends it) and builds
/// their acks: ingested at once, or, once the session is spent, applied as any other stream
/// is (up to [`APPLY_PARALLEL`] batches at once, each acknowledged on its own).
async fn ingest_chunk(
    store: Store,
    session: Arc<Ingest>,
    chunk: Vec<Result<ApplyRequest, Status>>,
) -> Vec<Result<Applied, Status>> {
    let mut batches = Vec::with_capacity(chunk.len());
    let mut refused = None;
    for batch in chunk {
        match batch {
            Ok(batch) => batches.push(batch),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let ingest_store = store.clone();
    let ingested = blocking(move || {
        let incoming: Vec<Vec<Incoming<'_>>> =
            batches.iter().map(|b| incoming(&b.documents)).collect();
        // A refused batch (malformed, or of a partition this node does not own) ends the
        // stream there; the batches before it are still written and acknowledged.
        let mut invalid = None;
        let mut valid = incoming.len();
        for (i, batch) in incoming.iter().enumerate() {
            if let Err(error) = ingest_store.check_batch(batch) {
                invalid = Some(error);
                valid = i;
                break;
            }
        }
        let outcomes = session.load(&incoming[..valid])?;
        drop(incoming);
        batches.truncate(valid);
        Ok((batches, outcomes, ingest_store.head_seq(), invalid))
    })
    .await;
    let (mut acks, invalid): (Vec<_>, _) = match ingested {
        Ok((batches, Some(outcomes), head_seq, invalid)) => (
            batches
                .iter()
                .zip(outcomes)
                .map(|(batch, outcome)| {
                    Ok(Applied {
                        batch_id: batch.batch_id,
                        outcome,
                        head_seq,
                    })
                })
                .collect(),
            invalid,
        ),
        Ok((batches, None, _, invalid)) => (
            futures_util::stream::iter(batches)
                .map(|batch| apply_one(store.clone(), batch))
                .buffered(APPLY_PARALLEL)
                .collect()
                .await,
            invalid,
        ),
        Err(error) => (vec![Err(status(error))], None),
    };
    // The first refusal ends the stream: a batch found invalid here comes before the
    // stream's own refusal, which followed every batch of the chunk.
    match invalid {
        Some(error) => acks.push(Err(status(error))),
        None => acks.extend(refused.map(Err)),
    }
    acks
}

/// Applies one batch durably and builds its ack.
async fn apply_one(store: Store, batch: ApplyRequest) -> Result<Applied, Status> {
    let batch_id = batch.batch_id;
    let (outcome, head_seq) = blocking(move || {
        let outcome = store.apply(&incoming(&batch.documents))?;
        Ok((outcome, store.head_seq()))
    })
    .await
    .map_err(status)?;
    Ok(Applied {
        batch_id,
        outcome,
        head_seq,
    })
}

fn incoming(documents: &[Document]) -> Vec<Incoming<'_>> {
    documents
        .iter()
        .map(|d| Incoming {
            collection: &d.collection,
            id: &d.id,
            version: d.version,
            tombstone: d.tombstone,
            body: &d.body,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;
    use crate::store::{Precondition, StoreConfig, SyncPolicy};

    fn fresh(dir: &tempfile::TempDir) -> Store {
        Store::open(&StoreConfig {
            path: dir.path().join("db"),
            partitions: Some(4),
            sync: SyncPolicy::Os,
            max_queued_writes: crate::store::DEFAULT_MAX_QUEUED_WRITES,
        })
        .expect("open")
    }

    /// Batch `batch_id` of ten new documents.
    fn batch(batch_id: u64) -> Result<ApplyRequest, Status> {
        let documents = (0..10)
            .map(|n| Document {
                collection: "c".into(),
                id: format!("d{batch_id:03}-{n}"),
                version: 1,
                seq: 0,
                body: bytes::Bytes::from_static(b"{}"),
                tombstone: false,
            })
            .collect();
        Ok(ApplyRequest {
            batch_id,
            documents,
        })
    }

    async fn run(store: &Store, spent: bool) -> Vec<(u64, u32)> {
        let applied = apply_stream(store.clone(), stream::iter((1..=6).map(batch)));
        if spent {
            // A client write after the session began and before its first chunk.
            let client = store.clone();
            tokio::task::spawn_blocking(move || {
                client.put("c", "client", b"{}", &Precondition::Always)
            })
            .await
            .expect("join")
            .expect("put");
        }
        applied
            .map(|a| a.map(|a| (a.batch_id, a.outcome.applied)).expect("ack"))
            .collect()
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fresh_store_ingests_the_stream_and_acks_every_batch_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fresh(&dir);
        let acks = run(&store, false).await;
        assert_eq!(acks, (1..=6).map(|b| (b, 10)).collect::<Vec<_>>());
        assert_eq!(store.live_documents().expect("count"), 60);
        assert_eq!(store.memtable_entries(), 0, "ingested as table files");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_streams_into_a_fresh_store_all_ingest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fresh(&dir);
        // Two sources at once, disjoint documents (batch ids 1-6 and 11-16).
        let first = apply_stream(store.clone(), stream::iter((1..=6).map(batch)));
        let second = apply_stream(store.clone(), stream::iter((11..=16).map(batch)));
        let acks = |applied: Pin<Box<dyn Stream<Item = Result<Applied, Status>> + Send>>| {
            applied
                .map(|a| a.map(|a| (a.batch_id, a.outcome.applied)).expect("ack"))
                .collect::<Vec<_>>()
        };
        let (first, second) = tokio::join!(acks(first), acks(second));
        assert_eq!(first, (1..=6).map(|b| (b, 10)).collect::<Vec<_>>());
        assert_eq!(second, (11..=16).map(|b| (b, 10)).collect::<Vec<_>>());
        assert_eq!(store.live_documents().expect("count"), 120);
        assert_eq!(store.memtable_entries(), 0, "both ingested as table files");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spent_session_applies_the_stream_and_acks_every_batch_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fresh(&dir);
        let acks = run(&store, true).await;
        assert_eq!(acks, (1..=6).map(|b| (b, 10)).collect::<Vec<_>>());
        assert_eq!(store.live_documents().expect("count"), 61);
        assert!(store.memtable_entries() > 60, "applied, not ingested");
    }
}
