//! What a node is configured with.

use cutover_daemon::Bounds;

use crate::{cluster::ClusterConfig, store::StoreConfig};

/// A node's configuration (the CLI builds it from flags and environment).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The store.
    pub store: StoreConfig,
    /// Largest accepted HTTP request body, in bytes.
    pub max_body: u64,
    /// The bearer token `Sink` and `NodeAdmin` calls must present, if any.
    pub token: Option<String>,
    /// The node's cluster and its name in it; `None` for a cluster of one (owns every
    /// partition, forwards nothing).
    pub cluster: Option<ClusterConfig>,
    /// The bounds of both ports: connections, request heads, HTTP/2 streams, shutdown grace.
    pub bounds: Bounds,
    /// TLS on both ports (`--tls-cert`, `--tls-key`, `--tls-client-ca`); none: plain text.
    pub tls: Option<cutover_daemon::tls::Tls>,
}
