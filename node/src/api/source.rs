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
    let mut batch = Batch::new(max_documents, max_bytes);
    let send = |documents: Vec<Document>| {
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
    let result = store.scan_changes(spec, |seq, change| batch.add(seq, change, send));
    let summary = match result {
        Ok(summary) if summary.complete => summary,
        Ok(_) => return, // the client went away
        Err(error) => {
            let _ = tx.blocking_send(Err(status(error)));
            return;
        }
    };
    if !batch.is_empty() && !send(batch.take()) {
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

/// Protobuf framing of one document besides its strings and body, counted against the batch's
/// byte budget (tags, lengths, version, seq, tombstone flag: at most about 30 bytes).
const DOCUMENT_OVERHEAD: usize = 32;

/// A batch being filled: its documents, whose bodies are still empty, and their bodies end to
/// end with each one's end offset. Buffers are reserved at the first document, so an empty
/// batch (after the last send) costs nothing.
struct Batch {
    documents: Vec<Document>,
    bodies: BytesMut,
    ends: Vec<usize>,
    /// Encoded size of the documents so far (bodies, strings, framing).
    size: usize,
    max_documents: usize,
    max_bytes: usize,
}

impl Batch {
    fn new(max_documents: usize, max_bytes: u64) -> Self {
        Self {
            documents: Vec::new(),
            bodies: BytesMut::new(),
            ends: Vec::new(),
            size: 0,
            max_documents: max_documents.max(1),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        }
    }

    fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    fn cost(change: &Change<'_>) -> usize {
        change.body.len() + change.collection.len() + change.id.len() + DOCUMENT_OVERHEAD
    }

    /// Adds `change`, first handing the batch so far to `send` when the change would not fit;
    /// breaks when `send` says the client is gone.
    fn add(
        &mut self,
        seq: u64,
        change: &Change<'_>,
        send: impl Fn(Vec<Document>) -> bool,
    ) -> ControlFlow<()> {
        if !self.fits(change) && !send(self.take()) {
            return ControlFlow::Break(());
        }
        self.push(seq, change);
        ControlFlow::Continue(())
    }

    /// Whether `change` may join: a batch stays within its document count and its bytes, but
    /// for a single document larger than the byte budget, which goes alone.
    fn fits(&self, change: &Change<'_>) -> bool {
        self.is_empty()
            || (self.documents.len() < self.max_documents
                && self.size + Self::cost(change) <= self.max_bytes)
    }

    fn push(&mut self, seq: u64, change: &Change<'_>) {
        if self.is_empty() {
            let documents = self.max_documents.min(4096);
            self.documents.reserve(documents);
            self.ends.reserve(documents);
            self.bodies.reserve(self.max_bytes.min(4 << 20));
        }
        self.size += Self::cost(change);
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

    /// The documents with their bodies, leaving the batch empty.
    fn take(&mut self) -> Vec<Document> {
        let mut taken = std::mem::take(&mut self.documents);
        let bodies = std::mem::take(&mut self.bodies).freeze();
        let mut start = 0;
        for (document, end) in taken.iter_mut().zip(self.ends.drain(..)) {
            document.body = bodies.slice(start..end);
            start = end;
        }
        self.size = 0;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change<'a>(id: &'a str, body: &'a [u8]) -> Change<'a> {
        Change {
            version: 1,
            tombstone: false,
            collection: "c",
            id,
            body,
        }
    }

    /// Fills batches as `scan` does and returns what was sent.
    fn batches(
        max_documents: usize,
        max_bytes: u64,
        bodies: &[&'static [u8]],
    ) -> Vec<Vec<Document>> {
        let mut batch = Batch::new(max_documents, max_bytes);
        let sent = std::cell::RefCell::new(Vec::new());
        let send = |documents| {
            sent.borrow_mut().push(documents);
            true
        };
        for (i, body) in bodies.iter().enumerate() {
            let id = format!("d{i}");
            assert!(
                batch
                    .add(i as u64 + 1, &change(&id, body), send)
                    .is_continue()
            );
        }
        if !batch.is_empty() {
            send(batch.take());
        }
        sent.into_inner()
    }

    #[test]
    fn every_document_gets_its_own_body_and_batches_keep_their_bounds() {
        let bodies: Vec<&'static [u8]> = vec![b"{}", b"[1]", b"", b"\"x\"", b"{\"a\":1}"];
        let sent = batches(2, 1 << 20, &bodies);
        assert_eq!(sent.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        let all: Vec<&Document> = sent.iter().flatten().collect();
        for (i, doc) in all.iter().enumerate() {
            assert_eq!(doc.body.as_ref(), bodies[i], "document {i}");
            assert_eq!(doc.seq, i as u64 + 1);
            assert_eq!(doc.id, format!("d{i}"));
        }
    }

    #[test]
    fn a_batch_never_goes_over_its_bytes_but_a_huge_document_goes_alone() {
        let big: &'static [u8] = &[b'x'; 300];
        let small: &'static [u8] = &[b'y'; 40];
        let budget = 200u64;
        let sent = batches(100, budget, &[small, small, small, big, small, small]);
        for batch in &sent {
            let size: usize = batch
                .iter()
                .map(|d| d.body.len() + d.collection.len() + d.id.len() + DOCUMENT_OVERHEAD)
                .sum();
            assert!(
                size as u64 <= budget || batch.len() == 1,
                "a batch of {} documents and {size} bytes",
                batch.len()
            );
        }
        assert_eq!(sent.iter().map(Vec::len).sum::<usize>(), 6);
        assert!(sent.iter().any(|b| b.len() == 1 && b[0].body.len() == 300));
    }
}
