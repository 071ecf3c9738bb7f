//! The demo's rig, in one process on loopback: a blue and a green node, a proxy in front of
//! them, the engine inside green, and the plan with the demo's schema change.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context;
use cutover_node::{
    Node, NodeConfig,
    store::{Incoming, Store, StoreConfig, SyncPolicy},
};
use cutover_proxy::{Proxy, ProxyConfig, UpstreamProtocol};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::load::{self, COLLECTION};
use crate::engine::Engine;

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

async fn start_node(dir: &Path, name: &str, cancel: &CancellationToken) -> anyhow::Result<Running> {
    let node = Node::open(NodeConfig {
        store: StoreConfig {
            path: dir.join(name),
            partitions: None,
            // Acknowledged once in the kernel (survives kill -9, not power loss): enough for
            // stores in temporary folders, and the 1M-document load takes seconds, not minutes.
            sync: SyncPolicy::Os,
        },
        max_body: 1 << 20,
        token: None,
        cluster: None,
    })
    .with_context(|| format!("opening the {name} node"))?;
    let store = node.store().clone();
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let grpc = TcpListener::bind("127.0.0.1:0").await?;
    let running = Running {
        store,
        http: http.local_addr()?,
        grpc: grpc.local_addr()?,
    };
    tokio::spawn(node.run(http, grpc, cancel.child_token()));
    Ok(running)
}

/// Writes documents `numbers` of collection `users` at `version` (blue's schema) into
/// `store` through the replication path.
pub async fn preload(
    store: &Store,
    numbers: std::ops::Range<u64>,
    version: u64,
    id: fn(u64) -> String,
) -> anyhow::Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let (start, end) = (numbers.start, numbers.end);
        for first in (start..end).step_by(LOAD_BATCH as usize) {
            let numbers = first..(first + LOAD_BATCH).min(end);
            let ids: Vec<String> = numbers.clone().map(id).collect();
            let bodies: Vec<Vec<u8>> = numbers.map(load::body).collect();
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
        }
        store.flush()?;
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
/// nodes, a proxy in front of them, and the engine inside green. Dropping it stops them.
pub struct Rig {
    /// The old version.
    pub blue: Running,
    /// The new version, with the engine in it.
    pub green: Running,
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
    /// Starts the nodes, the proxy and the engine on loopback in a temporary folder.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cutover-demo-").tempdir()?;
        let cancel = CancellationToken::new();
        let blue = start_node(dir.path(), "blue", &cancel).await?;
        let green = start_node(dir.path(), "green", &cancel).await?;
        let listen = TcpListener::bind("127.0.0.1:0").await?;
        let admin = TcpListener::bind("127.0.0.1:0").await?;
        let (proxy, admin_addr) = (listen.local_addr()?, admin.local_addr()?);
        let mut config = ProxyConfig::new(
            vec![format!("http://{}", blue.http)],
            vec![format!("http://{}", green.http)],
            dir.path().join("route.json"),
        );
        // One multiplexed connection per backend: held requests go out at once on release.
        config.upstream_protocol = UpstreamProtocol::H2c;
        tokio::spawn(Proxy::open(config)?.run(listen, admin, cancel.child_token()));
        let engine = Engine::open(&dir.path().join("journal"), Some(green.store.clone()))?;
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
            "{settings}[blue]\nsources = [\"http://{}\"]\n\n[green]\nsinks = [\"http://{}\"]\n\n\
             [proxies]\ncontrol = [\"http://{}\"]\n\n\
             [collections.{COLLECTION}]\nforward = '{forward}'\nreverse = '{reverse}'\n",
            self.blue.grpc, self.green.grpc, self.admin
        )
    }

    /// Stops the engine, then everything else.
    pub async fn stop(self) {
        self.engine.shutdown().await;
        self.cancel.cancel();
    }
}
