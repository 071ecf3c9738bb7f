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
    store::{Incoming, Store, StoreConfig, SyncPolicy, partition_of},
};
use cutover_orchestrator::engine::hosted;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

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
        Self::start_on(sync, None, http, grpc).await
    }

    /// [`start`](Self::start), serving both ports over `tls`.
    pub async fn start_tls(
        sync: SyncPolicy,
        tls: cutover_daemon::tls::Tls,
    ) -> anyhow::Result<Self> {
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(sync, None, http, grpc, Some(tls)).await
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
            nodes.push(Self::start_on(sync, Some(config), http, grpc).await?);
        }
        Ok((cluster, nodes))
    }

    /// Opens a fresh store for a node of `cluster` (or a cluster of one) and serves it on
    /// `http` and `grpc`, with the copy pipelines an orchestrator may ask it to run.
    pub async fn start_on(
        sync: SyncPolicy,
        cluster: Option<ClusterConfig>,
        http: TcpListener,
        grpc: TcpListener,
    ) -> anyhow::Result<Self> {
        Self::serve(sync, cluster, http, grpc, None).await
    }

    async fn serve(
        sync: SyncPolicy,
        cluster: Option<ClusterConfig>,
        http: TcpListener,
        grpc: TcpListener,
        tls: Option<cutover_daemon::tls::Tls>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("cutover-bench-")
            .tempdir()?;
        let config = NodeConfig {
            store: StoreConfig {
                path: dir.path().join("data"),
                partitions: cluster.as_ref().map(|c| c.cluster().partitions()),
                sync,
                max_queued_writes: cutover_node::store::DEFAULT_MAX_QUEUED_WRITES,
            },
            max_body: 1 << 20,
            token: None,
            bounds: cutover_daemon::Bounds::default(),
            tls,
            cluster,
        };
        let node = Node::open(config)?;
        let store = node.store().clone();
        let (http_addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);
        let cancel = CancellationToken::new();
        let pipelines = hosted::serve(Routes::default(), store.clone(), None);
        let task = tokio::spawn(node.run_with(http, grpc, pipelines, cancel.clone()));
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

/// `count` nodes sharing a balanced cluster file over `partitions` (a node started alone for
/// one), and the file.
pub async fn cluster(
    count: usize,
    partitions: u32,
    sync: SyncPolicy,
) -> anyhow::Result<(Vec<Running>, Option<Cluster>)> {
    if count == 1 {
        return Ok((vec![Running::start(sync).await?], None));
    }
    let names: Vec<String> = (1..=count).map(|i| format!("node-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (cluster, nodes) = Running::start_cluster(sync, &names, partitions).await?;
    Ok((nodes, Some(cluster)))
}

/// Writes documents `0..count` at version 1, each into the node of `nodes` that owns it.
pub async fn load_cluster(
    nodes: &[Running],
    cluster: Option<&Cluster>,
    count: u64,
) -> anyhow::Result<()> {
    let Some(cluster) = cluster else {
        return load(&nodes[0].store, 0, count, 1).await;
    };
    let mut shares: Vec<Vec<u64>> = vec![Vec::new(); nodes.len()];
    for n in 0..count {
        let partition = partition_of(&id(n), cluster.partitions());
        let owner = cluster.owner(partition).map(|m| m.name.clone());
        let i = cluster
            .members()
            .iter()
            .position(|m| Some(&m.name) == owner.as_ref())
            .unwrap_or(0);
        shares[i].push(n);
    }
    for (node, share) in nodes.iter().zip(shares) {
        let store = node.store.clone();
        tokio::task::spawn_blocking(move || {
            write(&store, &share, 1)?;
            store.flush()?;
            settle(&store)
        })
        .await??;
    }
    Ok(())
}

/// The body of document `n` at `version`, [`BODY_BYTES`] long: a person, as schema changes
/// see them, `{"n":…,"v":…,"name":"Ada King","first_name":…,"last_name":…,"email":…,
/// "plan":…,"pad":"xxx…"}`.
pub fn body(n: u64, version: u64) -> Vec<u8> {
    const FIRST: [&str; 4] = ["Ada", "Grace", "Alan", "Radia"];
    const LAST: [&str; 3] = ["King Lovelace", "Hopper", "Turing"];
    let (first, last) = (FIRST[(n % 4) as usize], LAST[(n % 3) as usize]);
    let head = format!(
        "{{\"n\":{n},\"v\":{version},\"name\":\"{first} {last}\",\"first_name\":\"{first}\",\
         \"last_name\":\"{last}\",\"email\":\"User{n}@Example.com\",\"plan\":\"standard\",\"pad\":\""
    );
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
