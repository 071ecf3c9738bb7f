//! Pipelines hosted by the node they copy into (`Pipelines.Copy`), as Vitess runs each stream
//! on its target: the sink node pulls from the source, transforms and applies to its own
//! store, so the copy's work is spread over the sink nodes. The orchestrator still decides and
//! journals: [`Hosted`] is its side of a pipeline, committing each batch the node reports;
//! [`PipelinesService`] is the node's side, served by every `cutover node`.
//!
//! A sink that does not serve `Pipelines` (UNIMPLEMENTED: another implementation of the
//! contract) is copied into by the orchestrator itself, through `Sink.Apply`.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use cutover_daemon::auth::BearerAuth;
use cutover_node::store::Store;
use cutover_proto::v1::{
    CollectionCopied, CopyBatch, CopyDone, CopyEvent, CopyRequest, DocumentKey, DroppedDocument,
    copy_event::Kind,
    pipelines_client::PipelinesClient,
    pipelines_server::{Pipelines, PipelinesServer},
};
use futures_util::{FutureExt as _, future::BoxFuture};
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Code, Request, Response, Status, service, transport::Channel};

use super::{
    copy::{Commit, CopyContext, CopyError, Figures, copy},
    discover::Pair,
    error::DriveError,
    journal::{BatchRecord, DeadLetter, Direction},
    peer::{MAX_MESSAGE_BYTES, PeerError, SinkPeer, SourcePeer, Token, channel},
    plan::Plan,
    routes::{Routes, Tally},
    transform::Natives,
};

/// The orchestrator's side of a pipeline the sink node runs; falls back to copying through
/// the orchestrator when the sink node does not host pipelines.
#[derive(Debug)]
pub struct Hosted {
    /// The pipeline, for its ends and its partitions, and for the fallback.
    pub pair: Pair,
    /// The plan, sent with each copy for its programs.
    pub plan_toml: String,
    client: PipelinesClient<Channel>,
    token: Token,
    /// Set once the sink answered UNIMPLEMENTED: the orchestrator copies from then on.
    unhosted: AtomicBool,
}

impl Hosted {
    /// `pair`, run by its sink node with `token` (the sink colour's).
    pub fn new(pair: Pair, plan_toml: String, token: Token) -> Result<Self, String> {
        let client = PipelinesClient::new(channel(pair.sink.endpoint())?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            pair,
            plan_toml,
            client,
            token,
            unhosted: AtomicBool::new(false),
        })
    }

    /// Whether the sink node runs the copy (until it said it cannot).
    pub fn hosted(&self) -> bool {
        !self.unhosted.load(Ordering::Relaxed)
    }

    /// One copy by the sink node, each reported batch committed through `context`.
    pub async fn copy(&self, since: u64, context: &CopyContext) -> Result<Tally, CopyError> {
        if !self.hosted() {
            return self.fallback(since, context).await;
        }
        let problems = context
            .problems
            .iter()
            .map(|(collection, id)| DocumentKey {
                collection: collection.clone(),
                id: id.clone(),
            })
            .collect();
        let request = CopyRequest {
            source: self.pair.source.endpoint.clone(),
            partitions: self.pair.partitions.clone(),
            since,
            plan_toml: self.plan_toml.clone(),
            reverse: context.direction == Direction::Reverse,
            max_batch_documents: context.batch_documents,
            max_batch_bytes: context.batch_bytes,
            problems,
        };
        let endpoint = self.pair.sink.endpoint();
        let fail = |status: Status| CopyError::Peer(PeerError::at(endpoint, "Copy")(status));
        let answer = self.client.clone().copy(self.token.attach(request)).await;
        let mut events = match answer {
            Ok(events) => events.into_inner(),
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!(
                    sink = endpoint,
                    "the sink node does not host pipelines: the orchestrator copies into it"
                );
                self.unhosted.store(true, Ordering::Relaxed);
                return self.fallback(since, context).await;
            }
            Err(status) => return Err(fail(status)),
        };
        loop {
            let event = events.message().await.map_err(fail)?;
            match event.and_then(|e| e.kind) {
                Some(Kind::Batch(batch)) => {
                    let watermark = batch.watermark;
                    let (record, figures) = from_batch(batch, &context.link.source);
                    context
                        .progress
                        .fetch_add(figures.documents, Ordering::Relaxed);
                    context
                        .commit
                        .batch(context.direction, &context.link, watermark, record, figures)
                        .await?;
                }
                // The node reported its high watermark as a batch before it was done.
                Some(Kind::Done(done)) => {
                    return Ok(Tally {
                        documents: done.documents,
                        bytes: done.bytes,
                        tombstones: done.tombstones,
                        dropped: done.dropped,
                        failed: done.failed,
                    });
                }
                None => {
                    return Err(CopyError::ApplyBroken {
                        endpoint: endpoint.to_owned(),
                        reason: "the copy stream ended without its CopyDone".to_owned(),
                    });
                }
            }
        }
    }

    async fn fallback(&self, since: u64, context: &CopyContext) -> Result<Tally, CopyError> {
        let pair = &self.pair;
        let copied = copy(&pair.source, &pair.sink, since, &pair.partitions, context).await?;
        Ok(copied.tally)
    }
}

/// The wire form of batches a sink node reports: everything up to `watermark` applied, with
/// the batches' failures, drops and successes (`record`) and counts (`figures`).
pub fn batch_event(watermark: u64, record: BatchRecord, figures: Figures) -> CopyEvent {
    let batch = CopyBatch {
        watermark,
        failed: record
            .failed
            .into_iter()
            .map(|dead| cutover_proto::v1::DeadLetter {
                source: dead.source,
                collection: dead.collection,
                id: dead.id,
                version: dead.version,
                error: dead.error,
            })
            .collect(),
        dropped: record
            .dropped
            .into_iter()
            .map(|(collection, id, version)| DroppedDocument {
                collection,
                id,
                version,
            })
            .collect(),
        copied: record
            .copied
            .into_iter()
            .map(|(collection, id)| DocumentKey { collection, id })
            .collect(),
        documents: figures.documents,
        collections: figures
            .per_collection
            .into_iter()
            .map(|(collection, documents, bytes)| CollectionCopied {
                collection,
                documents,
                bytes,
            })
            .collect(),
    };
    CopyEvent {
        kind: Some(Kind::Batch(batch)),
    }
}

/// [`batch_event`] read back, its dead letters from the pipeline's `source` node (the sink
/// node knows itself only).
fn from_batch(batch: CopyBatch, source: &str) -> (BatchRecord, Figures) {
    let record = BatchRecord {
        failed: batch
            .failed
            .into_iter()
            .map(|dead| DeadLetter {
                source: source.to_owned(),
                collection: dead.collection,
                id: dead.id,
                version: dead.version,
                error: dead.error,
            })
            .collect(),
        dropped: batch
            .dropped
            .into_iter()
            .map(|d| (d.collection, d.id, d.version))
            .collect(),
        copied: batch
            .copied
            .into_iter()
            .map(|k| (k.collection, k.id))
            .collect(),
    };
    let figures = Figures {
        documents: batch.documents,
        per_collection: batch
            .collections
            .into_iter()
            .map(|c| (c.collection, c.documents, c.bytes))
            .collect(),
    };
    (record, figures)
}

/// `routes` and the `Pipelines` service of the node whose store is `store`, behind its bearer
/// `token`: what every `cutover node` serves. It knows no native transform: a plan that names
/// one is refused ([`serve_with_natives`] for an embedder's node).
pub fn serve(routes: service::Routes, store: Store, token: Option<String>) -> service::Routes {
    serve_with_natives(routes, store, token, Natives::default())
}

/// [`serve`], the plans of the copies looking up their `*_native` names in `natives`: what a
/// program that embeds a node and registers native transforms serves (the same registry as
/// its engine's, `Engine::builder().natives(..)`, as each node runs the copies into itself).
pub fn serve_with_natives(
    routes: service::Routes,
    store: Store,
    token: Option<String>,
    natives: Natives,
) -> service::Routes {
    routes.add_service(PipelinesServer::with_interceptor(
        PipelinesService::new(store).with_natives(natives),
        BearerAuth::new(token),
    ))
}

/// A node's `Pipelines` service: runs the copies into its own store.
#[derive(Debug, Clone)]
pub struct PipelinesService {
    store: Store,
    natives: Natives,
}

impl PipelinesService {
    /// The service of the node whose store is `store`, with no native transform.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            natives: Natives::default(),
        }
    }

    /// This service, the plans of its copies looking up their native transforms in `natives`.
    pub fn with_natives(mut self, natives: Natives) -> Self {
        self.natives = natives;
        self
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<CopyEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Pipelines for PipelinesService {
    type CopyStream = Events;

    async fn copy(&self, request: Request<CopyRequest>) -> Result<Response<Events>, Status> {
        let request = request.into_inner();
        let plan = Plan::parse("the plan of the copy", &request.plan_toml)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let direction = if request.reverse {
            Direction::Reverse
        } else {
            Direction::Forward
        };
        let routes = match direction {
            Direction::Forward => Routes::forward(&plan, &self.natives),
            Direction::Reverse => Routes::reverse(&plan, &self.natives),
        }
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let source = SourcePeer::new(&request.source).map_err(Status::invalid_argument)?;
        let sink = SinkPeer::Local {
            endpoint: "this node".to_owned(),
            store: self.store.clone(),
        };
        let (events, stream) = mpsc::channel(16);
        let context = CopyContext {
            commit: Commit::Report(events.clone()),
            link: super::journal::Link::new(self.store.node_id(), self.store.node_id()),
            direction,
            routes: Arc::new(routes),
            problems: Arc::new(
                request
                    .problems
                    .into_iter()
                    .map(|k| (k.collection, k.id))
                    .collect(),
            ),
            batch_documents: request.max_batch_documents,
            batch_bytes: request.max_batch_bytes,
            progress: Arc::default(),
        };
        let (since, partitions) = (request.since, request.partitions);
        tokio::spawn(async move {
            let end = match copy(&source, &sink, since, &partitions, &context).await {
                Ok(copied) => Ok(done(copied.tally, copied.high_watermark)),
                Err(CopyError::Unheard) => return,
                Err(error) => Err(status(error)),
            };
            let _ = events.send(end).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

fn done(tally: Tally, high_watermark: u64) -> CopyEvent {
    CopyEvent {
        kind: Some(Kind::Done(CopyDone {
            high_watermark,
            documents: tally.documents,
            bytes: tally.bytes,
            tombstones: tally.tombstones,
            dropped: tally.dropped,
            failed: tally.failed,
        })),
    }
}

/// A copy's failure as the orchestrator should read it: UNAVAILABLE for whatever it would
/// retry had it copied itself (a node down, a broken stream), else the failed call's own code
/// (a refusal is final) or INTERNAL. The cause chain does not cross the wire, so the
/// classification is made here, where it is still known.
fn status(error: CopyError) -> Status {
    let message = error.to_string();
    let code = match &error {
        CopyError::Peer(peer) => peer.status.code(),
        _ => Code::Internal,
    };
    if DriveError::from(error).retryable() {
        Status::unavailable(message)
    } else {
        Status::new(code, message)
    }
}

impl super::world::Pipeline for Hosted {
    fn link(&self) -> &super::journal::Link {
        &self.pair.link
    }

    fn source_endpoint(&self) -> &str {
        &self.pair.source.endpoint
    }

    fn sink_endpoint(&self) -> &str {
        self.pair.sink.endpoint()
    }

    fn partitions(&self) -> &[u32] {
        &self.pair.partitions
    }

    fn run_by_sink(&self) -> bool {
        self.hosted()
    }

    fn lag(&self, since: u64) -> BoxFuture<'_, Result<u64, PeerError>> {
        super::world::Pipeline::lag(&self.pair, since)
    }

    fn live_documents(&self) -> BoxFuture<'_, Result<u64, PeerError>> {
        super::world::Pipeline::live_documents(&self.pair)
    }

    fn copy<'a>(
        &'a self,
        since: u64,
        context: &'a CopyContext,
    ) -> BoxFuture<'a, Result<Tally, CopyError>> {
        Hosted::copy(self, since, context).boxed()
    }

    fn reversed(&self, token: &Token) -> Result<Arc<dyn super::world::Pipeline>, String> {
        let pair = self.pair.turned(token)?;
        Ok(Arc::new(Hosted::new(
            pair,
            self.plan_toml.clone(),
            token.clone(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cutover_node::{
        Node, NodeConfig,
        store::{Incoming, Store, StoreConfig, SyncPolicy},
    };
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use crate::engine::Engine;

    /// A node on loopback that serves no `Pipelines` (another implementation of the
    /// contract); its store and gRPC address.
    async fn plain_node(dir: &std::path::Path, cancel: &CancellationToken) -> (Store, String) {
        let node = Node::open(NodeConfig {
            store: StoreConfig {
                path: dir.to_owned(),
                partitions: None,
                sync: SyncPolicy::Os,
                max_queued_writes: cutover_node::store::DEFAULT_MAX_QUEUED_WRITES,
            },
            max_body: 1 << 20,
            token: None,
            bounds: cutover_daemon::Bounds::default(),
            tls: None,
            cluster: None,
        })
        .expect("a node");
        let store = node.store().clone();
        let http = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = format!("http://{}", grpc.local_addr().expect("an address"));
        tokio::spawn(node.run(http, grpc, cancel.child_token()));
        (store, address)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sink_that_hosts_no_pipelines_is_copied_into_by_the_orchestrator() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cancel = CancellationToken::new();
        let (blue, blue_at) = plain_node(&dir.path().join("blue"), &cancel).await;
        let (green, green_at) = plain_node(&dir.path().join("green"), &cancel).await;
        let ids: Vec<String> = (0..100).map(|n| format!("d{n}")).collect();
        let documents: Vec<Incoming<'_>> = ids
            .iter()
            .map(|id| Incoming {
                collection: "c",
                id,
                version: 1,
                tombstone: false,
                body: b"{}",
            })
            .collect();
        blue.apply(&documents).expect("blue loaded");
        let engine = Engine::open(&dir.path().join("journal"), None).expect("an engine");
        let plan = format!(
            "pause_budget = \"10s\"\n[blue]\nsources = [\"{blue_at}\"]\n[green]\nsinks = \
             [\"{green_at}\"]\n"
        );
        engine
            .start(&plan, "plan.toml", true)
            .await
            .expect("started");
        let status = engine
            .first_cycle(Duration::from_secs(30))
            .await
            .expect("a cycle within 30 s");
        engine.shutdown().await;
        cancel.cancel();
        assert_eq!(status.cycles[0].documents, 100, "{status:?}");
        assert!(
            status.pipelines.iter().all(|p| !p.run_by_sink),
            "the orchestrator ran it: {:?}",
            status.pipelines
        );
        assert_eq!(green.live_documents().expect("count"), 100);
    }
}
