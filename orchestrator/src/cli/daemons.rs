//! The daemon roles: `cutover node`, `cutover proxy`, `cutover orchestrator`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Args, ValueEnum};
use cutover_daemon::{Bounds, Readiness, Shutdown, auth::read_token_file};
use cutover_node::{
    Node, NodeConfig,
    cluster::{Address, Cluster, ClusterConfig},
    store::{StoreConfig, SyncPolicy},
};
use cutover_proxy::{HoldConfig, Limits, Proxy, ProxyConfig, UpstreamProtocol};
use tokio::net::TcpListener;

use super::{CliError, bounds::BoundsArgs, values};
use crate::{
    engine::{Engine, hosted},
    page::StatusPage,
    service,
};

/// `cutover node`: a reference stateful node.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cutover node --data-dir /var/lib/cutover/blue-1 --http 127.0.0.1:7070 --grpc 127.0.0.1:7071\n  \
    cutover node --data-dir /var/lib/cutover/blue-1 --cluster blue.toml --name blue-1")]
pub struct NodeArgs {
    /// Directory of the node's RocksDB store (created if missing).
    #[arg(long, env = "CUTOVER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the HTTP document API, /metrics, /healthz and /readyz [default: this
    /// node's `http` in --cluster (0.0.0.0 and its port when it names a host, not an IP),
    /// else 127.0.0.1:7070]. Given with --cluster, it is where the node listens (e.g.
    /// 0.0.0.0:7070); the file says where its peers reach it.
    #[arg(long, env = "CUTOVER_HTTP")]
    pub http: Option<SocketAddr>,
    /// Address of the gRPC Source, Sink and NodeAdmin services [default: this node's `grpc`
    /// in --cluster (0.0.0.0 and its port for a name), else 127.0.0.1:7071].
    #[arg(long, env = "CUTOVER_GRPC")]
    pub grpc: Option<SocketAddr>,
    /// Cluster file naming every node of this colour and the partitions each owns (write
    /// one with `cutover cluster init`); without it the node is a cluster of one. The node
    /// refuses to start on a file with a gap, an overlap or a duplicate name, or whose
    /// partition count differs from its store's.
    #[arg(long, env = "CUTOVER_CLUSTER", requires = "name")]
    pub cluster: Option<PathBuf>,
    /// This node's name in the --cluster file.
    #[arg(long, env = "CUTOVER_NAME", requires = "cluster")]
    pub name: Option<String>,
    /// File holding the bearer token that NodeAdmin and Sink calls must present.
    #[arg(long, env = "CUTOVER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Virtual partitions of a new store (default 64, or the --cluster file's); fixed once the
    /// store exists, and an existing store refuses a different count.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub partitions: Option<u32>,
    /// When an acknowledged write is on disk: `always` fsyncs the write-ahead log first
    /// (survives power loss), `os` hands it to the kernel (survives `kill -9` only).
    #[arg(long, value_enum, default_value_t = SyncArg::Always, env = "CUTOVER_SYNC")]
    pub sync: SyncArg,
    /// Largest accepted request body, e.g. 1MiB; a larger one is answered 413.
    #[arg(long, default_value = "1MiB", value_parser = values::bytes)]
    pub max_body: u64,
    /// Most client writes waiting to be committed; past it a write is answered 503
    /// `overloaded` with Retry-After, and nothing of it is written.
    #[arg(
        long,
        default_value_t = cutover_node::store::DEFAULT_MAX_QUEUED_WRITES as u32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_queued_writes: u32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub bounds: BoundsArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: super::DaemonTlsArgs,
    /// Also run the migration engine inside this (green) node; its status page is then
    /// served at / on the HTTP port.
    #[arg(long, requires = "journal")]
    pub orchestrate: bool,
    /// Directory of the orchestrator journal, with --orchestrate.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Crash tests only: abort the process when the engine inside passes this point.
    #[arg(long, hide = true, requires = "orchestrate")]
    pub fault_point: Option<String>,
    /// Fault tests only: NAME=DURATION stalls the engine inside at the point NAME.
    #[arg(
        long,
        hide = true,
        requires = "orchestrate",
        conflicts_with = "fault_point"
    )]
    pub fault_stall: Option<String>,
}

/// `--sync` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncArg {
    /// fsync before acknowledging.
    Always,
    /// Write to the kernel before acknowledging.
    Os,
}

impl From<SyncArg> for SyncPolicy {
    fn from(arg: SyncArg) -> Self {
        match arg {
            SyncArg::Always => SyncPolicy::Always,
            SyncArg::Os => SyncPolicy::Os,
        }
    }
}

/// `cutover proxy`: the cutover proxy in front of the service.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cutover proxy --listen 127.0.0.1:8080 --admin 127.0.0.1:8081 \\\n    \
    --blue http://127.0.0.1:7070 --green http://127.0.0.1:7080 --state-file /var/lib/cutover/route.json")]
pub struct ProxyArgs {
    /// Address clients send their requests to.
    #[arg(long, default_value = "127.0.0.1:8080", env = "CUTOVER_LISTEN")]
    pub listen: SocketAddr,
    /// Address of gRPC ProxyControl, /metrics, /healthz, /readyz and /route.
    #[arg(long, default_value = "127.0.0.1:8081", env = "CUTOVER_ADMIN")]
    pub admin: SocketAddr,
    /// Blue backends, comma-separated URLs.
    #[arg(long, value_delimiter = ',', required = true)]
    pub blue: Vec<String>,
    /// Green backends, comma-separated URLs.
    #[arg(long, value_delimiter = ',', required = true)]
    pub green: Vec<String>,
    /// Where the route (epoch, colour, mode) is persisted across restarts.
    #[arg(long, env = "CUTOVER_STATE_FILE")]
    pub state_file: PathBuf,
    /// File holding the bearer token that ProxyControl calls must present.
    #[arg(long, env = "CUTOVER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Most requests held at once during a pause; more get 503 with Retry-After.
    #[arg(long, default_value_t = 10_000)]
    pub max_held: u64,
    /// Most bytes of held request bodies; more get 503 with Retry-After, e.g. 64MiB.
    #[arg(long, default_value = "64MiB", value_parser = values::bytes)]
    pub max_held_bytes: u64,
    /// Longest hold when a Pause does not say, e.g. 5s: a held request waits at most this
    /// long, and a hold nobody ends returns to forwarding after it.
    #[arg(long, default_value = "5s", value_parser = values::positive_duration)]
    pub hold_timeout: Duration,
    /// Longest hold a Pause may ask for; longer asks are lowered to it.
    #[arg(long, default_value = "60s", value_parser = values::positive_duration)]
    pub max_hold_timeout: Duration,
    /// Longest wait for in-flight requests when a Pause does not say.
    #[arg(long, default_value = "5s", value_parser = values::positive_duration)]
    pub drain_timeout: Duration,
    /// Longest wait for a backend's response headers before answering 504.
    #[arg(long, default_value = "30s", value_parser = values::positive_duration)]
    pub upstream_timeout: Duration,
    /// How often each backend's /healthz is checked.
    #[arg(long, default_value = "1s", value_parser = values::positive_duration)]
    pub health_interval: Duration,
    /// Protocol to the backends: http1 (any server) or h2c (HTTP/2 with prior knowledge,
    /// one multiplexed connection per backend; `cutover node` speaks it).
    #[arg(long, value_enum, default_value_t = UpstreamArg::Http1)]
    pub upstream_protocol: UpstreamArg,
    /// Serve the client port (--listen) with TLS too, with --tls-cert and --tls-key; clients
    /// are not asked for certificates there.
    #[arg(long, requires = "tls_cert")]
    pub listen_tls: bool,
    /// Threads that serve client connections [default: one per core]. A sidecar next to
    /// each client wants 1.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub bounds: BoundsArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: super::DaemonTlsArgs,
}

/// `--upstream-protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpstreamArg {
    /// HTTP/1.1, pooled keep-alive connections.
    Http1,
    /// HTTP/2 with prior knowledge.
    H2c,
}

/// `cutover orchestrator`: the daemon that drives upgrades.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cutover orchestrator --journal /var/lib/cutover/journal --grpc 127.0.0.1:7171")]
pub struct OrchestratorArgs {
    /// Directory of the durable journal (plan, phase, watermarks, cycles, dead letters).
    #[arg(long, env = "CUTOVER_JOURNAL")]
    pub journal: PathBuf,
    /// Address of the gRPC Orchestrator service.
    #[arg(long, default_value = "127.0.0.1:7171", env = "CUTOVER_GRPC")]
    pub grpc: SocketAddr,
    /// Address of the status page (/, and its JSON at /api/status), /metrics, /healthz and
    /// /readyz. With --token-file the page asks for the token too.
    #[arg(long, default_value = "127.0.0.1:7172", env = "CUTOVER_HTTP")]
    pub http: SocketAddr,
    /// File holding the bearer token that Orchestrator calls must present.
    #[arg(long, env = "CUTOVER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Crash tests only: abort the process when the cutover passes this point.
    #[arg(long, hide = true)]
    pub fault_point: Option<String>,
    /// Fault tests only: NAME=DURATION stalls the engine at the point NAME.
    #[arg(long, hide = true, conflicts_with = "fault_point")]
    pub fault_stall: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub bounds: BoundsArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: super::DaemonTlsArgs,
}

/// Connections a proxy accepts beyond --max-held by default: requests that are not held.
const PROXY_SPARE_CONNECTIONS: usize = 1_000;

/// Where a node listens without --http, --grpc or --cluster.
const DEFAULT_NODE_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7070);
const DEFAULT_NODE_GRPC: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7071);

pub(super) async fn node(args: NodeArgs) -> Result<(), CliError> {
    arm_faults(args.fault_point.as_deref(), args.fault_stall.as_deref())?;
    let cluster = match (&args.cluster, &args.name) {
        (Some(path), Some(name)) => {
            let cluster = Cluster::load(path).map_err(anyhow::Error::from)?;
            Some(ClusterConfig::new(cluster, name).map_err(anyhow::Error::from)?)
        }
        _ => None,
    };
    let me = cluster.as_ref().map(|c| c.me().clone());
    let http_addr = args
        .http
        .or(me.as_ref().map(|m| listen_addr(&m.http, "http")))
        .unwrap_or(DEFAULT_NODE_HTTP);
    let grpc_addr = args
        .grpc
        .or(me.as_ref().map(|m| listen_addr(&m.grpc, "grpc")))
        .unwrap_or(DEFAULT_NODE_GRPC);
    let bounds = args.bounds.bounds(Bounds::default().max_connections)?;
    let (token, shutdown) = daemon_start(args.token_file.as_deref(), bounds)?;
    let tls = args.tls.apply("node", &shutdown.child_token())?;
    let config = NodeConfig {
        store: StoreConfig {
            path: args.data_dir,
            partitions: args.partitions,
            sync: args.sync.into(),
            max_queued_writes: args.max_queued_writes as usize,
        },
        max_body: args.max_body,
        token: token.clone(),
        bounds,
        cluster,
        tls,
    };
    let mut node = tokio::task::spawn_blocking(move || Node::open(config))
        .await
        .context("opening the store")?
        .map_err(anyhow::Error::from)?;
    let http = bind(http_addr, "HTTP (--http)").await?;
    let grpc = bind(grpc_addr, "gRPC (--grpc)").await?;
    tracing::info!(
        http = %http.local_addr().unwrap_or(http_addr),
        grpc = %grpc.local_addr().unwrap_or(grpc_addr),
        "node listening"
    );
    let mut extra = tonic::service::Routes::default();
    let mut engine = None;
    if let Some(journal) = args.journal.as_deref().filter(|_| args.orchestrate) {
        let opened = Engine::open(journal, Some(node.store().clone()))
            .with_context(|| format!("opening the journal in {}", journal.display()))?;
        extra = service::routes(Arc::clone(&opened), token.clone());
        node = node.with_pages(StatusPage::new(opened.clone(), token.as_deref()));
        engine = Some(opened);
        tracing::info!(
            journal = %journal.display(),
            page = %format!("http://{}/", http.local_addr().unwrap_or(http_addr)),
            "orchestrator runs inside this node; its status page is on the HTTP port"
        );
    }
    // Every node runs the copy pipelines into itself that an orchestrator asks for.
    let extra = hosted::serve(extra, node.store().clone(), token);
    let stopping = shutdown.child_token();
    // The engine stops first when the signal comes: its watchers end, it writes no more.
    let stopped = engine.map(|engine| {
        let stopping = stopping.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            engine.shutdown().await;
        })
    });
    let result = node.run_with(http, grpc, extra, stopping).await;
    if let Some(stopped) = stopped {
        let _ = stopped.await;
    }
    result.map_err(anyhow::Error::from)?;
    Ok(())
}

/// Where a node listens by default for its cluster entry's `field`: the entry's IP, or
/// 0.0.0.0 on its port when the entry is a name (a pod or container cannot tell which of its
/// interfaces its name resolves to, and its IP may change), which is logged.
fn listen_addr(entry: &Address, field: &str) -> SocketAddr {
    let addr = entry.listen_addr();
    if entry.dns_name().is_some() {
        tracing::info!(
            entry = %entry,
            listen = %addr,
            field,
            "this node's cluster entry names a host, not an IP: listening on every IPv4 \
             interface on its port (give --http/--grpc to choose)"
        );
    }
    addr
}

/// What every daemon does first: read its token, install the metrics recorder and the
/// signal handlers.
fn daemon_start(
    token_file: Option<&std::path::Path>,
    bounds: Bounds,
) -> Result<(Option<String>, Shutdown), CliError> {
    let token = token_file
        .map(read_token_file)
        .transpose()
        .map_err(anyhow::Error::from)?;
    cutover_daemon::metrics::install().map_err(anyhow::Error::from)?;
    let shutdown = Shutdown::install(bounds.grace).context("installing signal handlers")?;
    Ok((token, shutdown))
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, CliError> {
    Ok(TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))?)
}

pub(super) async fn proxy(args: ProxyArgs) -> Result<(), CliError> {
    // Every held request keeps its connection: a full hold needs --max-held of them.
    let held = usize::try_from(args.max_held).unwrap_or(usize::MAX);
    let bounds = args
        .bounds
        .bounds(held.saturating_add(PROXY_SPARE_CONNECTIONS))?;
    if bounds.max_connections < held {
        return Err(anyhow::anyhow!(
            "--max-connections {} is below --max-held {held}: every held request keeps its \
             connection open, so a full hold needs at least {held} (and a margin for requests \
             that are not held); give at least {}",
            bounds.max_connections,
            held.saturating_add(PROXY_SPARE_CONNECTIONS)
        )
        .into());
    }
    let (token, shutdown) = daemon_start(args.token_file.as_deref(), bounds)?;
    let tls = args.tls.apply("proxy", &shutdown.child_token())?;
    let mut config = ProxyConfig {
        token,
        listen_tls: tls.clone().filter(|_| args.listen_tls),
        tls,
        limits: Limits {
            max_held: args.max_held,
            max_held_bytes: args.max_held_bytes,
        },
        hold: HoldConfig {
            hold_timeout: args.hold_timeout,
            max_hold_timeout: args.max_hold_timeout.max(args.hold_timeout),
            drain_timeout: args.drain_timeout,
        },
        upstream_timeout: args.upstream_timeout,
        health_interval: args.health_interval,
        bounds,
        upstream_protocol: match args.upstream_protocol {
            UpstreamArg::Http1 => UpstreamProtocol::Http1,
            UpstreamArg::H2c => UpstreamProtocol::H2c,
        },
        ..ProxyConfig::new(args.blue, args.green, args.state_file)
    };
    if let Some(workers) = args.workers {
        config.workers = workers.into();
    }
    let proxy = Proxy::open(config).map_err(anyhow::Error::from)?;
    let listen = bind(args.listen, "clients (--listen)").await?;
    let admin = bind(args.admin, "the admin port (--admin)").await?;
    tracing::info!(
        listen = %listen.local_addr().unwrap_or(args.listen),
        admin = %admin.local_addr().unwrap_or(args.admin),
        "proxy listening"
    );
    proxy
        .run(listen, admin, shutdown.child_token())
        .await
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// Arms the hidden fault flags of the crash and fault tests.
fn arm_faults(point: Option<&str>, stall: Option<&str>) -> Result<(), CliError> {
    use crate::engine::fault;
    let armed = match (point, stall) {
        (Some(point), _) => fault::arm(point),
        (None, Some(stall)) => fault::arm_stall(stall),
        (None, None) => Ok(()),
    };
    armed.map_err(|e| CliError::Failed(anyhow::anyhow!(e)))
}

pub(super) async fn orchestrator(args: OrchestratorArgs) -> Result<(), CliError> {
    arm_faults(args.fault_point.as_deref(), args.fault_stall.as_deref())?;
    let bounds = args.bounds.bounds(Bounds::default().max_connections)?;
    let (token, shutdown) = daemon_start(args.token_file.as_deref(), bounds)?;
    let tls = args.tls.apply("orchestrator", &shutdown.child_token())?;
    let engine = Engine::open(&args.journal, None)
        .with_context(|| format!("opening the journal in {}", args.journal.display()))?;
    let grpc = bind(args.grpc, "gRPC (--grpc)").await?;
    let http = bind(args.http, "HTTP (--http)").await?;
    tracing::info!(
        grpc = %grpc.local_addr().unwrap_or(args.grpc),
        http = %http.local_addr().unwrap_or(args.http),
        page = %format!("http://{}/", http.local_addr().unwrap_or(args.http)),
        journal = %args.journal.display(),
        "orchestrator listening"
    );
    let readiness = Readiness::new();
    readiness.set_ready();
    let page: Arc<dyn cutover_daemon::Pages> = StatusPage::new(engine.clone(), token.as_deref());
    let ops = tokio::spawn(cutover_daemon::ops::serve(
        http,
        bounds,
        readiness.clone(),
        Some(page),
        tls.clone(),
        shutdown.child_token(),
    ));
    let stopping = shutdown.child_token();
    let stopped = tokio::spawn({
        let (engine, stopping, readiness) =
            (Arc::clone(&engine), stopping.clone(), readiness.clone());
        async move {
            stopping.cancelled().await;
            readiness.set_not_ready();
            // Ends the Watch streams too, which graceful shutdown would otherwise wait for.
            engine.shutdown().await;
        }
    });
    let served = service::serve(engine, token, grpc, bounds, tls, stopping.clone()).await;
    stopping.cancel(); // a server that stopped on an error stops the rest too
    let _ = stopped.await;
    let _ = ops.await;
    served.context("serving gRPC")?;
    tracing::info!("orchestrator stopped");
    Ok(())
}
