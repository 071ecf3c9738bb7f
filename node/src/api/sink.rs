//! gRPC `Sink`: apply streamed batches, each acknowledged once durable, in order; digest.

use cutover_proto::v1::{
    ApplyAck, ApplyRequest, DigestRequest, DigestResponse, Document, sink_server::Sink,
};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{blocking, status};
use crate::{
    metrics as m,
    store::{ApplyOutcome, Incoming, Store, StoreError},
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
            let acks = batches
                .map(|batch| {
                    let in_order = check_order(batch.batch_id, &mut last_batch);
                    let store = store.clone();
                    async move {
                        in_order?;
                        apply_one(store, batch).await
                    }
                })
                .buffered(APPLY_PARALLEL);
            let mut acks = std::pin::pin!(acks);
            while let Some(result) = acks.next().await {
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

/// Applies one batch durably and builds its ack.
async fn apply_one(store: Store, batch: ApplyRequest) -> Result<ApplyAck, Status> {
    let batch_id = batch.batch_id;
    let (outcome, head_seq) = blocking(move || {
        let outcome = apply_documents(&store, &batch.documents)?;
        Ok((outcome, store.head_seq()))
    })
    .await
    .map_err(status)?;
    metrics::counter!(m::APPLIED_DOCUMENTS).increment(u64::from(outcome.applied));
    metrics::counter!(m::APPLIED_BYTES).increment(outcome.bytes);
    metrics::counter!(m::APPLY_SKIPPED).increment(u64::from(outcome.skipped_stale));
    Ok(ApplyAck {
        batch_id,
        applied: outcome.applied,
        skipped_stale: outcome.skipped_stale,
        head_seq,
    })
}

/// Applies replicated documents to `store` as `Sink.Apply` does (blocking; see
/// [`Store::apply`]). Also how an engine embedded in the node writes its own store.
pub fn apply_documents(store: &Store, documents: &[Document]) -> Result<ApplyOutcome, StoreError> {
    let incoming: Vec<Incoming<'_>> = documents
        .iter()
        .map(|d| Incoming {
            collection: &d.collection,
            id: &d.id,
            version: d.version,
            tombstone: d.tombstone,
            body: &d.body,
        })
        .collect();
    store.apply(&incoming)
}
