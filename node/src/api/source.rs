//! gRPC `Source`: describe, lag, pull (one scan of the by-sequence index, streamed in bounded
//! batches with backpressure) and digest.

use std::ops::ControlFlow;

use bytes::{Bytes, BytesMut};
use cutover_proto::v1::{
    CollectionInfo, DescribeRequest, DescribeResponse, DigestRequest, DigestResponse, Document,
    DocumentBatch, LagRequest, LagResponse, PartitionDigest, PullComplete, PullRequest,
    PullResponse, pull_response::Kind, source_server::Source,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{blocking, status};
use crate::{
    metrics as m,
    store::{Digest, PullSpec, Store, keys::Change},
};

/// Documents per batch when the request leaves it to the server.
pub const DEFAULT_BATCH_DOCUMENTS: u32 = 2_000;
/// Body bytes per batch when the request leaves it to the server.
pub const DEFAULT_BATCH_BYTES: u64 = 1 << 20;
/// The largest batch the server builds, whatever the request asks: well under the 4 MiB
/// message limit of gRPC clients' defaults.
pub const MAX_BATCH_BYTES: u64 = 3 << 20;
/// Batches buffered between the scan and the network: the scan waits when the client is slow.
const PIPELINE_BATCHES: usize = 4;

/// The `Source` service over a store.
#[derive(Debug, Clone)]
pub struct SourceService {
    store: Store,
}

impl SourceService {
    /// The service for `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// The wire form of a digest (shared with `Sink.Digest`).
pub fn digest_response(digest: Digest) -> DigestResponse {
    DigestResponse {
        partition_count: digest.partition_count,
        partitions: digest
            .partitions
            .into_iter()
            .map(|p| PartitionDigest {
                partition: p.partition,
                live_documents: p.live_documents,
                digest: p.digest,
            })
            .collect(),
        head_seq: digest.head_seq,
    }
}

/// Serves a digest request from `store`.
pub async fn digest(store: &Store, request: DigestRequest) -> Result<DigestResponse, Status> {
    let store = store.clone();
    blocking(move || store.digest(&request.partitions))
        .await
        .map(digest_response)
        .map_err(status)
}

#[tonic::async_trait]
impl Source for SourceService {
    async fn describe(
        &self,
        _request: Request<DescribeRequest>,
    ) -> Result<Response<DescribeResponse>, Status> {
        let store = self.store.clone();
        let d = blocking(move || store.describe()).await.map_err(status)?;
        Ok(Response::new(DescribeResponse {
            node_id: d.node_id,
            partition_count: d.partition_count,
            collections: d
                .collections
                .into_iter()
                .map(|(name, live_documents)| CollectionInfo {
                    name,
                    live_documents,
                })
                .collect(),
            head_seq: d.head_seq,
            schema_version: d.schema_version,
            fenced: d.fenced,
        }))
    }

    async fn lag(&self, request: Request<LagRequest>) -> Result<Response<LagResponse>, Status> {
        let since = request.into_inner().since;
        let store = self.store.clone();
        let (head_seq, changed) = blocking(move || store.lag(since)).await.map_err(status)?;
        Ok(Response::new(LagResponse { head_seq, changed }))
    }

    type PullStream = ReceiverStream<Result<PullResponse, Status>>;

    #[tracing::instrument(skip_all, fields(since))]
    async fn pull(
        &self,
        request: Request<PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let request = request.into_inner();
        tracing::Span::current().record("since", request.since);
        let max_documents = match request.max_batch_documents {
            0 => DEFAULT_BATCH_DOCUMENTS,
            n => n,
        } as usize;
        let max_bytes = match request.max_batch_bytes {
            0 => DEFAULT_BATCH_BYTES,
            n => n.min(MAX_BATCH_BYTES),
        };
        let spec = PullSpec {
            since: request.since,
            partitions: request.partitions,
        };
        let (tx, rx) = mpsc::channel(PIPELINE_BATCHES);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || scan(&store, &spec, max_documents, max_bytes, &tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn digest(
        &self,
        request: Request<DigestRequest>,
    ) -> Result<Response<DigestResponse>, Status> {
        digest(&self.store, request.into_inner())
            .await
            .map(Response::new)
    }
}

/// The blocking half of a pull: scans and sends batches, waiting whenever the client is
/// behind; stops when the client goes away. The bodies of a batch are copied into one buffer
/// and each document's body is a slice of it: one allocation a batch, not one a document.
fn scan(
    store: &Store,
    spec: &PullSpec,
    max_documents: usize,
    max_bytes: u64,
    tx: &mpsc::Sender<Result<PullResponse, Status>>,
) {
    let capacity = max_documents.min(4096);
    let mut batch = Batch::new(capacity, max_bytes);
    let send = |batch: &mut Batch| {
        let documents = batch.take(capacity, max_bytes);
        let last_seq = documents.last().map_or(0, |d| d.seq);
        metrics::counter!(m::PULLED_DOCUMENTS).increment(documents.len() as u64);
        let message = PullResponse {
            kind: Some(Kind::Batch(DocumentBatch {
                documents,
                last_seq,
            })),
        };
        tx.blocking_send(Ok(message)).is_ok()
    };
    let result = store.scan_changes(spec, |seq, change| {
        batch.push(seq, change);
        let full = batch.documents.len() >= max_documents || batch.bodies.len() as u64 >= max_bytes;
        if full && !send(&mut batch) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    let summary = match result {
        Ok(summary) if summary.complete => summary,
        Ok(_) => return, // the client went away
        Err(error) => {
            let _ = tx.blocking_send(Err(status(error)));
            return;
        }
    };
    if !batch.documents.is_empty() && !send(&mut batch) {
        return;
    }
    metrics::counter!(m::PULLED_BYTES).increment(summary.bytes);
    let complete = PullResponse {
        kind: Some(Kind::Complete(PullComplete {
            high_watermark: summary.high_watermark,
            documents: summary.documents,
            bytes: summary.bytes,
        })),
    };
    let _ = tx.blocking_send(Ok(complete));
}

/// A batch being filled: its documents, whose bodies are still empty, and their bodies end to
/// end with each one's end offset.
struct Batch {
    documents: Vec<Document>,
    bodies: BytesMut,
    ends: Vec<usize>,
}

impl Batch {
    fn new(documents: usize, bytes: u64) -> Self {
        Self {
            documents: Vec::with_capacity(documents),
            bodies: BytesMut::with_capacity(usize::try_from(bytes).unwrap_or(1 << 20)),
            ends: Vec::with_capacity(documents),
        }
    }

    fn push(&mut self, seq: u64, change: &Change<'_>) {
        self.bodies.extend_from_slice(change.body);
        self.ends.push(self.bodies.len());
        self.documents.push(Document {
            collection: change.collection.to_owned(),
            id: change.id.to_owned(),
            version: change.version,
            seq,
            body: Bytes::new(),
            tombstone: change.tombstone,
        });
    }

    /// The documents with their bodies, leaving an empty batch of the same capacity.
    fn take(&mut self, documents: usize, bytes: u64) -> Vec<Document> {
        let next = Self::new(documents, bytes);
        let Self {
            documents: mut taken,
            bodies,
            ends,
        } = std::mem::replace(self, next);
        let bodies = bodies.freeze();
        let mut start = 0;
        for (document, end) in taken.iter_mut().zip(ends) {
            document.body = bodies.slice(start..end);
            start = end;
        }
        taken
    }
}
