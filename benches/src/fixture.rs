//! What every benchmark builds on: a real node on loopback with a fresh store, and the
//! documents (~200-byte JSON bodies) it is loaded with.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::ensure;
use cutover_node::{
    Node, NodeConfig,
    cluster::{Cluster, ClusterConfig},
    store::{Incoming, Store, StoreConfig, SyncPolicy},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Size of each document body, in bytes.
pub const BODY_BYTES: usize = 200;
/// Documents per `apply` call when loading a store.
pub const LOAD_BATCH: u64 = 2_000;

/// A node on loopback with a fresh store in a temporary folder.
pub struct Running {
    /// The store.
    pub store: Store,
    /// The HTTP document API.
    pub http: SocketAddr,
    /// The gRPC services.
    pub grpc: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), cutover_node::NodeError>>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Opens a fresh store and serves it.
    pub async fn start(sync: SyncPolicy) -> anyhow::Result<Self> {
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(sync, None, http, grpc)
    }

    /// The nodes `names` of one cluster over `partitions`, each owning a balanced share, each
    /// on loopback with a fresh store.
    pub async fn start_cluster(
        sync: SyncPolicy,
        names: &[&str],
        partitions: u32,
    ) -> anyhow::Result<(Cluster, Vec<Self>)> {
        let mut listeners = Vec::new();
        let mut members = Vec::new();
        for name in names {
            let http = TcpListener::bind("127.0.0.1:0").await?;
            let grpc = TcpListener::bind("127.0.0.1:0").await?;
            members.push(((*name).to_owned(), http.local_addr()?, grpc.local_addr()?));
            listeners.push((http, grpc));
        }
        let cluster = Cluster::balanced(partitions, members)?;
        let mut nodes = Vec::new();
        for (name, (http, grpc)) in names.iter().zip(listeners) {
            let config = ClusterConfig::new(cluster.clone(), name)?;
            nodes.push(Self::serve(sync, Some(config), http, grpc)?);
        }
        Ok((cluster, nodes))
    }

    /// Opens a fresh store and serves it on `http` and `grpc`.
    fn serve(
        sync: SyncPolicy,
        cluster: Option<ClusterConfig>,
        http: TcpListener,
        grpc: TcpListener,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("cutover-bench-")
            .tempdir()?;
        let config = NodeConfig {
            store: StoreConfig {
                path: dir.path().join("data"),
                partitions: None,
                sync,
            },
            max_body: 1 << 20,
            token: None,
            cluster,
        };
        let node = Node::open(config)?;
        let store = node.store().clone();
        let (http_addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(node.run(http, grpc, cancel.clone()));
        Ok(Self {
            store,
            http: http_addr,
            grpc: grpc_addr,
            cancel,
            task,
            _dir: dir,
        })
    }

    /// Stops the node and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await??;
        Ok(())
    }
}

/// The body of document `n` at `version`: `{"n":…,"v":…,"pad":"xxx…"}`, [`BODY_BYTES`] long.
pub fn body(n: u64, version: u64) -> Vec<u8> {
    let head = format!("{{\"n\":{n},\"v\":{version},\"pad\":\"");
    let mut body = head.into_bytes();
    body.resize(BODY_BYTES - 2, b'x');
    body.extend_from_slice(b"\"}");
    body
}

/// The id of document `n`.
pub fn id(n: u64) -> String {
    format!("doc-{n:010}")
}

/// Writes documents `first..first+count` at `version` through the replication path.
pub async fn load(store: &Store, first: u64, count: u64, version: u64) -> anyhow::Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        write(&store, &(first..first + count).collect::<Vec<_>>(), version)?;
        store.flush()?;
        settle(&store)
    })
    .await?
}

/// Waits until RocksDB has finished the flushes and compactions the load caused, so what is
/// measured next is the read path, not a compaction fighting it for the two cores.
pub fn settle(store: &Store) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while store.background_work()? {
        ensure!(
            Instant::now() < deadline,
            "compactions still running after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Applies documents `numbers` at `version` in batches of [`LOAD_BATCH`], checking that
/// every one was written.
pub fn write(store: &Store, numbers: &[u64], version: u64) -> anyhow::Result<()> {
    for chunk in numbers.chunks(LOAD_BATCH as usize) {
        let ids: Vec<String> = chunk.iter().copied().map(id).collect();
        let bodies: Vec<Vec<u8>> = chunk.iter().map(|&n| body(n, version)).collect();
        let batch: Vec<Incoming<'_>> = ids
            .iter()
            .zip(&bodies)
            .map(|(id, body)| Incoming {
                collection: "bench",
                id,
                version,
                tombstone: false,
                body,
            })
            .collect();
        let out = store.apply(&batch)?;
        ensure!(
            out.applied as usize == batch.len(),
            "applied {} of {}",
            out.applied,
            batch.len()
        );
    }
    Ok(())
}
