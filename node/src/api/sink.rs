//! gRPC `Sink`: apply streamed batches, each acknowledged once durable, in order; digest.

use cutover_proto::v1::{
    ApplyAck, ApplyRequest, DigestRequest, DigestResponse, Document, sink_server::Sink,
};
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
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(ACK_BUFFER);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut last_batch: Option<u64> = None;
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => return,
                    Err(error) => {
                        tracing::debug!(%error, "apply stream ended by the client");
                        return;
                    }
                };
                let result = apply_one(&store, batch, &mut last_batch).await;
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

/// Applies one batch durably and builds its ack.
async fn apply_one(
    store: &Store,
    batch: ApplyRequest,
    last_batch: &mut Option<u64>,
) -> Result<ApplyAck, Status> {
    if last_batch.is_some_and(|last| batch.batch_id <= last) {
        return Err(Status::invalid_argument(format!(
            "batch_id {} does not increase (last was {}): batch ids must increase within a stream",
            batch.batch_id,
            last_batch.unwrap_or_default()
        )));
    }
    *last_batch = Some(batch.batch_id);
    let batch_id = batch.batch_id;
    let store = store.clone();
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
