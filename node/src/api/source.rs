//! gRPC `Source`: describe, lag, pull (one scan of the by-sequence index, streamed in bounded
//! batches with backpressure) and digest.

use std::{convert::Infallible, ops::ControlFlow, pin::Pin};

use cutover_proto::{
    pull_wire::{Batch, DocumentRef, EncodedBatch, PullCodec, PullMessage},
    v1::{
        CollectionInfo, DescribeRequest, DescribeResponse, DigestRequest, DigestResponse,
        LagRequest, LagResponse, PartitionDigest, PullComplete, PullRequest, PullResponse,
        source_server::{SERVICE_NAME, Source, SourceServer},
    },
};
use futures_util::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Request, Response, Status,
    codegen::{Body, BoxFuture, Service, StdError, http},
    server::{Grpc, NamedService, ServerStreamingService},
};

use super::{blocking, status};
use crate::{
    metrics as m,
    store::{Digest, PullSpec, Store},
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

    /// Starts a pull: its messages, encoded for the wire as the scan reads them.
    fn messages(&self, request: PullRequest) -> ReceiverStream<Result<PullMessage, Status>> {
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
        ReceiverStream::new(rx)
    }
}

/// The path of `Source.Pull`.
const PULL_PATH: &str = "/cutover.v1.Source/Pull";

/// The `Source` service as the node serves it: `Pull` through [`PullCodec`], which writes the
/// batches the scan encoded; every other method through the generated server.
#[derive(Debug, Clone)]
pub struct SourceRoutes {
    service: SourceService,
    generated: SourceServer<SourceService>,
}

impl SourceRoutes {
    /// The service for `store`.
    pub fn new(store: Store) -> Self {
        let service = SourceService::new(store);
        Self {
            generated: SourceServer::new(service.clone()),
            service,
        }
    }
}

impl NamedService for SourceRoutes {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for SourceRoutes
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != PULL_PATH {
            return self.generated.call(request);
        }
        let pull = EncodedPull(self.service.clone());
        Box::pin(async move { Ok(Grpc::new(PullCodec).server_streaming(pull, request).await) })
    }
}

/// `Source.Pull` answered with [`PullMessage`]s.
struct EncodedPull(SourceService);

impl ServerStreamingService<PullRequest> for EncodedPull {
    type Response = PullMessage;
    type ResponseStream = ReceiverStream<Result<PullMessage, Status>>;
    type Future = std::future::Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<PullRequest>) -> Self::Future {
        std::future::ready(Ok(Response::new(self.0.messages(request.into_inner()))))
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
            partitions: d.partitions,
            cluster_hash: d.cluster_hash,
        }))
    }

    async fn lag(&self, request: Request<LagRequest>) -> Result<Response<LagResponse>, Status> {
        let LagRequest { since, partitions } = request.into_inner();
        let store = self.store.clone();
        let (head_seq, changed) = blocking(move || store.lag(since, &partitions))
            .await
            .map_err(status)?;
        Ok(Response::new(LagResponse { head_seq, changed }))
    }

    type PullStream = Pin<Box<dyn Stream<Item = Result<PullResponse, Status>> + Send>>;

    /// The pull through the generated types, for a caller of the trait: the node serves
    /// [`SourceRoutes`], which sends the encoded batches as they are.
    async fn pull(
        &self,
        request: Request<PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let messages = self.messages(request.into_inner()).map(|message| {
            Ok(message?
                .into_response()
                .expect("a batch the scan encoded decodes (pull_wire's tests)"))
        });
        Ok(Response::new(Box::pin(messages)))
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
/// behind; stops when the client goes away. Each document is encoded as it is read (see
/// [`pull_wire`](cutover_proto::pull_wire)).
fn scan(
    store: &Store,
    spec: &PullSpec,
    max_documents: usize,
    max_bytes: u64,
    tx: &mpsc::Sender<Result<PullMessage, Status>>,
) {
    let mut batch = Batch::new(max_documents, max_bytes);
    let send = |batch: EncodedBatch| {
        metrics::counter!(m::PULLED_DOCUMENTS).increment(batch.count as u64);
        tx.blocking_send(Ok(PullMessage::Batch(batch))).is_ok()
    };
    let result = store.scan_changes(spec, |seq, change| {
        let document = DocumentRef::from(change);
        if !batch.fits(&document) && !send(batch.take()) {
            return ControlFlow::Break(());
        }
        batch.push(seq, &document);
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
    if !batch.is_empty() && !send(batch.take()) {
        return;
    }
    metrics::counter!(m::PULLED_BYTES).increment(summary.bytes);
    let _ = tx.blocking_send(Ok(PullMessage::Complete(PullComplete {
        high_watermark: summary.high_watermark,
        documents: summary.documents,
        bytes: summary.bytes,
    })));
}

#[cfg(test)]
mod tests {
    use cutover_proto::v1::pull_response::Kind;

    use super::*;
    use crate::store::{Precondition, StoreConfig, SyncPolicy};

    /// The trait's pull (the generated types, decoded from the encoded batches) gives every
    /// change in seq order, batch by batch, then the completion.
    #[tokio::test]
    async fn the_trait_pull_decodes_the_encoded_batches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&StoreConfig {
            path: dir.path().join("db"),
            partitions: Some(4),
            sync: SyncPolicy::Os,
            max_queued_writes: crate::store::DEFAULT_MAX_QUEUED_WRITES,
        })
        .expect("open");
        let writer = store.clone();
        tokio::task::spawn_blocking(move || {
            for n in 0..5 {
                writer.put("c", &format!("d{n}"), b"{\"n\":1}", &Precondition::Always)?;
            }
            writer.delete("c", "d1", &Precondition::Always)
        })
        .await
        .expect("writes ran")
        .expect("writes");
        let request = Request::new(PullRequest {
            since: 0,
            partitions: vec![],
            max_batch_documents: 2,
            max_batch_bytes: 0,
        });
        let response = Source::pull(&SourceService::new(store), request)
            .await
            .expect("pull");
        let messages: Vec<PullResponse> = response
            .into_inner()
            .map(|m| m.expect("message"))
            .collect()
            .await;
        let mut documents = Vec::new();
        for message in &messages[..messages.len() - 1] {
            let Some(Kind::Batch(batch)) = &message.kind else {
                panic!("a batch expected: {message:?}");
            };
            assert!(batch.documents.len() <= 2);
            assert_eq!(
                batch.last_seq,
                batch.documents.last().expect("a document").seq
            );
            documents.extend(batch.documents.iter().cloned());
        }
        let ids: Vec<_> = documents.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["d0", "d2", "d3", "d4", "d1"]);
        let deleted = &documents[4];
        assert!(deleted.tombstone && deleted.body.is_empty() && deleted.version == 2);
        assert_eq!(documents[0].body.as_ref(), b"{\"n\":1}");
        let Some(Kind::Complete(complete)) = messages.last().and_then(|m| m.kind.clone()) else {
            panic!("no completion last");
        };
        assert_eq!((complete.high_watermark, complete.documents), (6, 5));
    }
}
