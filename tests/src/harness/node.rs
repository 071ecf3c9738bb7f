//! A `cutover node` process with its addresses, started and waited for until ready.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::{Cluster, Daemon};

/// How long a node may take to open its store and become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `cutover node`.
#[derive(Debug)]
pub struct NodeProcess {
    /// The process.
    pub daemon: Daemon,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The HTTP document API.
    pub http: SocketAddr,
    /// The gRPC services.
    pub grpc: SocketAddr,
}

impl NodeProcess {
    /// The gRPC endpoint as a URL, for tonic clients.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

impl Cluster {
    /// Starts `cutover node` named `name` on fresh loopback ports with its data in the
    /// cluster folder `name/data`, plus `extra` flags, and waits until `/readyz` says ready.
    pub fn start_node(&self, name: &str, extra: &[&str]) -> anyhow::Result<NodeProcess> {
        let data_dir = self.dir(name)?.join("data");
        self.on_fresh_ports(|http, grpc| {
            self.start_node_on(name, data_dir.clone(), http, grpc, extra)
        })
    }

    /// Starts `cutover node` again on the data directory and addresses of one that stopped
    /// or was killed.
    pub fn restart_node(
        &self,
        name: &str,
        stopped: NodeProcess,
        extra: &[&str],
    ) -> anyhow::Result<NodeProcess> {
        let NodeProcess {
            data_dir,
            http,
            grpc,
            ..
        } = stopped;
        self.start_node_on(name, data_dir, http, grpc, extra)
    }

    /// Starts `cutover node` on a given data directory and addresses (a restart).
    pub fn start_node_on(
        &self,
        name: &str,
        data_dir: PathBuf,
        http_addr: SocketAddr,
        grpc: SocketAddr,
        extra: &[&str],
    ) -> anyhow::Result<NodeProcess> {
        let mut args = vec![
            "node".to_owned(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--http".to_owned(),
            http_addr.to_string(),
            "--grpc".to_owned(),
            grpc.to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let daemon = self.spawn_ready(name, &args, http_addr, READY_TIMEOUT)?;
        Ok(NodeProcess {
            daemon,
            data_dir,
            http: http_addr,
            grpc,
        })
    }
}
