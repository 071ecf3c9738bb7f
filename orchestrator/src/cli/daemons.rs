//! The daemon roles: `cutover node`, `cutover proxy`, `cutover orchestrator`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

use super::{CliError, values};

/// `cutover node`: a reference stateful node.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cutover node --data-dir /var/lib/cutover/blue-1 --http 127.0.0.1:7070 --grpc 127.0.0.1:7071")]
pub struct NodeArgs {
    /// Directory of the node's RocksDB store (created if missing).
    #[arg(long, env = "CUTOVER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the HTTP document API, /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:7070", env = "CUTOVER_HTTP")]
    pub http: SocketAddr,
    /// Address of the gRPC Source, Sink and NodeAdmin services.
    #[arg(long, default_value = "127.0.0.1:7071", env = "CUTOVER_GRPC")]
    pub grpc: SocketAddr,
    /// File holding the bearer token that NodeAdmin and Sink calls must present.
    #[arg(long, env = "CUTOVER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Virtual partitions of a new store (fixed once the store exists).
    #[arg(long, default_value_t = 64)]
    pub partitions: u32,
    /// Largest accepted request body, e.g. 1MiB.
    #[arg(long, default_value = "1MiB", value_parser = values::bytes)]
    pub max_body: u64,
    /// Also run the migration engine inside this (green) node.
    #[arg(long, requires = "journal")]
    pub orchestrate: bool,
    /// Directory of the orchestrator journal, with --orchestrate.
    #[arg(long)]
    pub journal: Option<PathBuf>,
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
    /// Default longest hold of one request, e.g. 5s.
    #[arg(long, default_value = "5s", value_parser = values::duration)]
    pub hold_timeout: Duration,
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
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:7172", env = "CUTOVER_HTTP")]
    pub http: SocketAddr,
    /// File holding the bearer token that Orchestrator calls must present.
    #[arg(long, env = "CUTOVER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

pub(super) async fn node(_args: NodeArgs) -> Result<(), CliError> {
    Err(CliError::NotImplemented {
        command: "node",
        issue: 3,
    })
}

pub(super) async fn proxy(_args: ProxyArgs) -> Result<(), CliError> {
    Err(CliError::NotImplemented {
        command: "proxy",
        issue: 5,
    })
}

pub(super) async fn orchestrator(_args: OrchestratorArgs) -> Result<(), CliError> {
    Err(CliError::NotImplemented {
        command: "orchestrator",
        issue: 4,
    })
}
