//! The demo's rig, in one process on loopback: blue and green nodes (one each, or clusters of
//! any size), a proxy in front of them, the engine inside green, and the plan with the demo's
//! schema change.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context;
use cutover_node::{
    Node, NodeConfig,
    cluster::{Cluster, ClusterConfig},
    store::{Incoming, Store, StoreConfig, SyncPolicy, partition_of, schema::DEFAULT_PARTITIONS},
};
use cutover_proxy::{Proxy, ProxyConfig, UpstreamProtocol};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use super::load::{self, COLLECTION};
use crate::engine::{Engine, hosted};

/// The demo's schema change: `name` split into `first_name`/`last_name`, `"schema": 2`.
pub const FORWARD: &str = r#".first_name = (.name | split(" ") | .[0]) | .last_name = (.name | split(" ") | .[1:] | join(" ")) | del(.name) | .schema = 2"#;
/// And back.
pub const REVERSE: &str =
    r#".name = ([.first_name, .last_name] | join(" ")) | del(.first_name, .last_name, .schema)"#;
/// Documents per store write while loading blue.
const LOAD_BATCH: u64 = 5_000;

/// A node of the rig.
#[derive(Debug)]
pub struct Running {
    /// Its store.
    pub store: Store,
    /// Its HTTP document API.
    pub http: SocketAddr,
    /// Its gRPC services.
    pub grpc: SocketAddr,
}

/// The nodes of one colour: one node, or a cluster whose nodes each own a balanced share of
/// the partitions and route requests among themselves.
#[derive(Debug)]
pub struct Colour {
    /// Its nodes, in the cluster file's order.
    pub nodes: Vec<Running>,
    /// The cluster file they share, when there are several.
    pub cluster: Option<Cluster>,
}

impl Colour {
    /// Starts `count` nodes named `name-1`, `name-2`… (just `name` for one) with their stores
    /// in `dir`.
    async fn start(
        dir: &Path,
        name: &str,
        count: usize,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut listeners = Vec::new();
        for _ in 0..count {
            let http = TcpListener::bind("127.0.0.1:0").await?;
            let grpc = TcpListener::bind("127.0.0.1:0").await?;
            listeners.push((http, grpc));
        }
        let names: Vec<String> = if count == 1 {
            vec![name.to_owned()]
        } else {
            (1..=count).map(|i| format!("{name}-{i}")).collect()
        };
        let cluster = if count > 1 {
            let members = names
                .iter()
                .zip(&listeners)
                .map(|(n, (h, g))| Ok((n.clone(), h.local_addr()?, g.local_addr()?)))
                .collect::<std::io::Result<Vec<_>>>()?;
            Some(Cluster::balanced(DEFAULT_PARTITIONS, members)?)
        } else {
            None
        };
        let mut nodes = Vec::new();
        for (node_name, (http, grpc)) in names.iter().zip(listeners) {
            let config = NodeConfig {
                store: StoreConfig {
                    path: dir.join(node_name),
                    partitions: Some(DEFAULT_PARTITIONS),
                    // Acknowledged once in the kernel (survives kill -9, not power loss):
                    // enough for stores in temporary folders, and the 1M-document load takes
                    // seconds, not minutes.
                    sync: SyncPolicy::Os,
                    max_queued_writes: cutover_node::store::DEFAULT_MAX_QUEUED_WRITES,
                },
                max_body: 1 << 20,
                token: None,
                bounds: cutover_daemon::Bounds::default(),
                tls: None,
                cluster: cluster
                    .as_ref()
                    .map(|c| ClusterConfig::new(c.clone(), node_name))
                    .transpose()?,
            };
            let node =
                Node::open(config).with_context(|| format!("opening the {node_name} node"))?;
            nodes.push(Running {
                store: node.store().clone(),
                http: http.local_addr()?,
                grpc: grpc.local_addr()?,
            });
            let pipelines = hosted::serve(Routes::default(), node.store().clone(), None);
            tokio::spawn(node.run_with(http, grpc, pipelines, cancel.child_token()));
        }
        Ok(Self { nodes, cluster })
    }

    /// The store that holds document `id`: its partition's owner's.
    pub fn store_of(&self, id: &str) -> &Store {
        let owner = self.cluster.as_ref().and_then(|cluster| {
            let partition = partition_of(id, cluster.partitions());
            let name = &cluster.owner(partition)?.name;
            cluster.members().iter().position(|m| &m.name == name)
        });
        &self.nodes[owner.unwrap_or(0)].store
    }

    /// The HTTP addresses of its nodes, as a proxy's backends.
    fn backends(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.http))
            .collect()
    }

    /// The gRPC endpoints of its nodes, as a plan lists them.
    fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("\"http://{}\"", n.grpc))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Writes documents `numbers` at `version` (blue's schema) into the stores that own them,
    /// through the replication path.
    pub async fn preload(
        &self,
        numbers: std::ops::Range<u64>,
        version: u64,
        id: fn(u64) -> String,
    ) -> anyhow::Result<()> {
        if self.cluster.is_none() {
            return preload(&self.nodes[0].store, numbers, version, id).await;
        }
        for first in (numbers.start..numbers.end).step_by(LOAD_BATCH as usize) {
            let mut shares: Vec<Vec<u64>> = vec![Vec::new(); self.nodes.len()];
            for n in first..(first + LOAD_BATCH).min(numbers.end) {
                let store = self.store_of(&id(n));
                let owner = self
                    .nodes
                    .iter()
                    .position(|r| std::ptr::eq(&r.store, store));
                shares[owner.unwrap_or(0)].push(n);
            }
            for (node, share) in self.nodes.iter().zip(shares) {
                write(&node.store, share, version, id).await?;
            }
        }
        Ok(())
    }

    /// The `(version, visits)` of `id` on this colour, or none.
    pub fn stored(&self, id: &str) -> Option<(u64, u64)> {
        stored(self.store_of(id), id)
    }
}

/// Writes documents `numbers` of collection `users` at `version` (blue's schema) into
/// `store` through the replication path.
pub async fn preload(
    store: &Store,
    numbers: std::ops::Range<u64>,
    version: u64,
    id: fn(u64) -> String,
) -> anyhow::Result<()> {
    for first in (numbers.start..numbers.end).step_by(LOAD_BATCH as usize) {
        let batch = (first..(first + LOAD_BATCH).min(numbers.end)).collect();
        write(store, batch, version, id).await?;
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.flush()).await??;
    Ok(())
}

/// Writes documents `numbers` into `store` in one batch.
async fn write(
    store: &Store,
    numbers: Vec<u64>,
    version: u64,
    id: fn(u64) -> String,
) -> anyhow::Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let ids: Vec<String> = numbers.iter().copied().map(id).collect();
        let bodies: Vec<Vec<u8>> = numbers.iter().copied().map(load::body).collect();
        let batch: Vec<Incoming<'_>> = ids
            .iter()
            .zip(&bodies)
            .map(|(id, body)| Incoming {
                collection: COLLECTION,
                id,
                version,
                tombstone: false,
                body,
            })
            .collect();
        store.apply(&batch)?;
        anyhow::Ok(())
    })
    .await?
}

/// The `(version, visits)` of `id` in `store`, or none.
pub fn stored(store: &Store, id: &str) -> Option<(u64, u64)> {
    let doc = store.get(COLLECTION, id).ok()??;
    let body: serde_json::Value = serde_json::from_slice(&doc.body).ok()?;
    Some((doc.version, body.get("visits")?.as_u64()?))
}

/// Everything the demo (and the cutover benchmark) runs in one process: blue and green
/// nodes, a proxy in front of them, and the engine inside the first green node. Dropping it
/// stops them.
pub struct Rig {
    /// The old version.
    pub blue: Colour,
    /// The new version, with the engine in its first node.
    pub green: Colour,
    /// The proxy's client address.
    pub proxy: SocketAddr,
    /// The proxy's admin address (ProxyControl).
    pub admin: SocketAddr,
    /// The migration engine.
    pub engine: Arc<Engine>,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Starts one blue and one green node, the proxy and the engine on loopback in a
    /// temporary folder.
    pub async fn start() -> anyhow::Result<Self> {
        Self::resize(1, 1).await
    }

    /// Starts `blue` blue nodes and `green` green ones (clusters when more than one), the
    /// proxy round-robin over each colour's nodes, and the engine.
    pub async fn resize(blue: usize, green: usize) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cutover-demo-").tempdir()?;
        let cancel = CancellationToken::new();
        let blue = Colour::start(dir.path(), "blue", blue, &cancel).await?;
        let green = Colour::start(dir.path(), "green", green, &cancel).await?;
        let listen = TcpListener::bind("127.0.0.1:0").await?;
        let admin = TcpListener::bind("127.0.0.1:0").await?;
        let (proxy, admin_addr) = (listen.local_addr()?, admin.local_addr()?);
        let mut config = ProxyConfig::new(
            blue.backends(),
            green.backends(),
            dir.path().join("route.json"),
        );
        // One multiplexed connection per backend: held requests go out at once on release.
        config.upstream_protocol = UpstreamProtocol::H2c;
        tokio::spawn(Proxy::open(config)?.run(listen, admin, cancel.child_token()));
        let engine = Engine::open(
            &dir.path().join("journal"),
            Some(green.nodes[0].store.clone()),
        )?;
        Ok(Self {
            blue,
            green,
            proxy,
            admin: admin_addr,
            engine,
            cancel,
            _dir: dir,
        })
    }

    /// The plan: `settings` (top-level fields), the nodes, the proxy, and the demo's schema
    /// change with its reverse.
    pub fn plan(&self, settings: &str) -> String {
        self.plan_with(settings, FORWARD, REVERSE)
    }

    /// The plan with the programs `forward` and `reverse` for `users`.
    pub fn plan_with(&self, settings: &str, forward: &str, reverse: &str) -> String {
        format!(
            "{settings}[blue]\nsources = [{}]\n\n[green]\nsinks = [{}]\n\n\
             [proxies]\ncontrol = [\"http://{}\"]\n\n\
             [collections.{COLLECTION}]\nforward = '{forward}'\nreverse = '{reverse}'\n",
            self.blue.endpoints(),
            self.green.endpoints(),
            self.admin
        )
    }

    /// Stops the engine, then everything else.
    pub async fn stop(self) {
        self.engine.shutdown().await;
        self.cancel.cancel();
    }
}
