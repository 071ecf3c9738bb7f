//! A running node: the store, the HTTP document API and the gRPC services on listeners the
//! caller bound, until cancelled.

use std::{sync::Arc, time::Duration};

use cutover_daemon::{
    Pages, Readiness,
    auth::BearerAuth,
    serve::{incoming, serve_http},
};
use cutover_proto::v1::{
    node_admin_server::NodeAdminServer, sink_server::SinkServer, source_server::SourceServer,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{
        admin::AdminService,
        http::HttpApi,
        route::Routing,
        sink::SinkService,
        source::{SourceRoutes, SourceService},
    },
    cluster::{ClusterError, Problem, peers::Agreement},
    config::NodeConfig,
    metrics as m,
    store::{Store, StoreError, now_unix_ms},
};

/// How often the fence, head and live-document gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);
/// Largest `Sink.Apply` message accepted (batches are far smaller by default).
const MAX_APPLY_MESSAGE_BYTES: usize = 64 << 20;

/// Why a node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store could not be opened or flushed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cluster file does not fit this node or its store.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// A node, opened and ready to run.
#[derive(Debug)]
pub struct Node {
    store: Store,
    config: NodeConfig,
    readiness: Readiness,
    pages: Option<Arc<dyn Pages>>,
}

impl Node {
    /// Opens the store; in a cluster, checks that the store has the cluster file's partition
    /// count (a new store is created with it) and restricts it to this node's partitions.
    pub fn open(config: NodeConfig) -> Result<Self, NodeError> {
        let mut store_config = config.store.clone();
        if let Some(cluster) = &config.cluster {
            let file = cluster.cluster().partitions();
            match store_config.partitions {
                Some(flag) if flag != file => {
                    let problem = Problem::FlagMismatch { file, flag };
                    let source = cluster.cluster().source();
                    return Err(ClusterError::new(source, None, problem).into());
                }
                _ => store_config.partitions = Some(file),
            }
        }
        let store = Store::open(&store_config).map_err(|error| match (error, &config.cluster) {
            (StoreError::PartitionMismatch { path, stored, .. }, Some(cluster)) => {
                let problem = Problem::StoreMismatch {
                    file: cluster.cluster().partitions(),
                    store: stored,
                    store_path: path,
                };
                NodeError::Cluster(ClusterError::new(cluster.cluster().source(), None, problem))
            }
            (error, _) => NodeError::Store(error),
        })?;
        if let Some(cluster) = &config.cluster {
            store.join_cluster(&cluster.me().owns, cluster.cluster().hash())?;
            tracing::info!(
                name = cluster.name(),
                cluster_hash = cluster.cluster().hash(),
                owns = %crate::cluster::Ranges::new(cluster.me().owns.clone()),
                nodes = cluster.cluster().members().len(),
                "node joins its cluster"
            );
        }
        Ok(Self {
            store,
            config,
            readiness: Readiness::new(),
            pages: None,
        })
    }

    /// Serves `pages` on the HTTP port too (the status page of an engine inside the node).
    pub fn with_pages(mut self, pages: Arc<dyn Pages>) -> Self {
        self.pages = Some(pages);
        self
    }

    /// The store (for embedding and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the node serves; `/readyz` reflects it.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Serves HTTP on `http` and gRPC on `grpc` until `cancel` fires, then finishes in-flight
    /// requests and flushes the store.
    pub async fn run(
        self,
        http: TcpListener,
        grpc: TcpListener,
        cancel: CancellationToken,
    ) -> Result<(), NodeError> {
        self.run_with(http, grpc, tonic::service::Routes::default(), cancel)
            .await
    }

    /// [`run`](Self::run), serving `extra` gRPC services on the same port too (the
    /// orchestrator, when the engine runs inside this node).
    pub async fn run_with(
        self,
        http: TcpListener,
        grpc: TcpListener,
        extra: tonic::service::Routes,
        cancel: CancellationToken,
    ) -> Result<(), NodeError> {
        m::describe();
        let store = self.store;
        let auth = BearerAuth::new(self.config.token.clone());
        let (routing, agreement) = match self.config.cluster.clone() {
            None => (None, None),
            Some(cluster) => {
                let (agreement, task) = Agreement::spawn(&cluster, cancel.child_token());
                (Some(Routing::new(cluster, agreement)), Some(task))
            }
        };
        let api = HttpApi::new(
            store.clone(),
            self.config.max_body,
            self.readiness.clone(),
            routing,
        )
        .with_pages(self.pages.clone());
        let bounds = self.config.bounds;
        let tls = self.config.tls.clone();
        let http_task = tokio::spawn(serve_http(
            http,
            "http",
            bounds,
            tls.clone(),
            cancel.child_token(),
            move |request| Arc::clone(&api).handle(request),
        ));

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<SourceServer<SourceService>>().await;
        health.set_serving::<SinkServer<SinkService>>().await;
        health.set_serving::<NodeAdminServer<AdminService>>().await;
        let sink = SinkServer::new(SinkService::new(store.clone()))
            .max_decoding_message_size(MAX_APPLY_MESSAGE_BYTES);
        let grpc_server = tonic::transport::Server::builder()
            .initial_stream_window_size(cutover_proto::STREAM_WINDOW_BYTES)
            .initial_connection_window_size(cutover_proto::CONNECTION_WINDOW_BYTES)
            .max_frame_size(cutover_proto::MAX_FRAME_BYTES)
            .max_concurrent_streams(bounds.max_streams)
            .http2_max_header_list_size(bounds.http2_header_list_bytes())
            .add_routes(extra)
            .add_service(SourceRoutes::new(store.clone()))
            .add_service(tonic::service::interceptor::InterceptedService::new(
                sink,
                auth.clone(),
            ))
            .add_service(NodeAdminServer::with_interceptor(
                AdminService::new(store.clone()),
                auth,
            ))
            .add_service(health_service)
            .add_service(cutover_proto::reflection())
            .serve_with_incoming_shutdown(
                // TCP_NODELAY set: without it a small answer (an ack, a Fence, a Digest)
                // written after another one waits for the peer's delayed ACK (~40 ms).
                incoming(grpc, "grpc", bounds, tls, cancel.child_token()),
                cancel.clone().cancelled_owned(),
            );
        let gauges = tokio::spawn(refresh_gauges(store.clone(), cancel.child_token()));
        let stop_began = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                cancel.cancelled().await;
                std::time::Instant::now()
            }
        });

        self.readiness.set_ready();
        tracing::info!(
            node_id = store.node_id(),
            head_seq = store.head_seq(),
            "node serving"
        );
        let grpc_result = grpc_server.await;
        self.readiness.set_not_ready();
        // The gRPC server only returns early on error; make the rest stop too.
        cancel.cancel();
        let _ = http_task.await;
        // Not awaited: it may be inside a count of the live documents, a full scan.
        gauges.abort();
        if let Some(agreement) = agreement {
            let _ = agreement.await;
        }
        // Past half the grace (a client held the drain), the memtables stay unflushed: the
        // process must exit within its grace, and the synced log holds every write anyway.
        let late = stop_began
            .await
            .is_ok_and(|began| began.elapsed() >= bounds.grace / 2);
        let flushed = tokio::task::spawn_blocking(move || {
            if late {
                store.flush_wal()
            } else {
                store.flush()
            }
        })
        .await;
        grpc_result?;
        match flushed {
            Ok(result) => result?,
            Err(_) => tracing::warn!("flush on shutdown did not complete"),
        }
        tracing::info!("node stopped");
        Ok(())
    }
}

async fn refresh_gauges(store: Store, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let fenced = store.fence_state().is_fenced(now_unix_ms());
        metrics::gauge!(m::FENCED).set(if fenced { 1.0 } else { 0.0 });
        metrics::gauge!(m::HEAD_SEQ).set(store.head_seq() as f64);
        let probe = store.clone();
        if let Ok(Ok(live)) = tokio::task::spawn_blocking(move || probe.live_documents()).await {
            metrics::gauge!(m::LIVE_DOCUMENTS).set(live as f64);
        }
    }
}
