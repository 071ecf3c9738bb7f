//! A `cutover orchestrator` process with its addresses, started and waited for until ready.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::{Cluster, Daemon};

/// How long an orchestrator may take to open its journal and become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `cutover orchestrator`.
#[derive(Debug)]
pub struct OrchestratorProcess {
    /// The process.
    pub daemon: Daemon,
    /// Its journal directory.
    pub journal: PathBuf,
    /// The gRPC `Orchestrator` service.
    pub grpc: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub http: SocketAddr,
}

impl OrchestratorProcess {
    /// The gRPC endpoint as a URL, for `--orchestrator` and tonic clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

impl Cluster {
    /// Starts `cutover orchestrator` named `name` with its journal in `name/journal` on fresh
    /// loopback ports, and waits until `/readyz` says ready.
    pub fn start_orchestrator(&self, name: &str) -> anyhow::Result<OrchestratorProcess> {
        self.start_orchestrator_with(name, &[])
    }

    /// [`start_orchestrator`](Self::start_orchestrator) with `extra` flags (e.g. the hidden
    /// `--fault-point NAME` of the crash tests).
    pub fn start_orchestrator_with(
        &self,
        name: &str,
        extra: &[&str],
    ) -> anyhow::Result<OrchestratorProcess> {
        let journal = self.dir(name)?.join("journal");
        self.on_fresh_ports(|grpc, http| {
            self.start_orchestrator_on(name, journal.clone(), grpc, http, extra)
        })
    }

    /// Starts `cutover orchestrator` again on the journal and addresses of one that stopped.
    pub fn restart_orchestrator(
        &self,
        name: &str,
        stopped: OrchestratorProcess,
    ) -> anyhow::Result<OrchestratorProcess> {
        let OrchestratorProcess {
            journal,
            grpc,
            http,
            ..
        } = stopped;
        self.start_orchestrator_on(name, journal, grpc, http, &[])
    }

    fn start_orchestrator_on(
        &self,
        name: &str,
        journal: PathBuf,
        grpc: SocketAddr,
        http_addr: SocketAddr,
        extra: &[&str],
    ) -> anyhow::Result<OrchestratorProcess> {
        let mut args = vec![
            "orchestrator".to_owned(),
            "--journal".to_owned(),
            journal.display().to_string(),
            "--grpc".to_owned(),
            grpc.to_string(),
            "--http".to_owned(),
            http_addr.to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let daemon = self.spawn_ready(name, &args, http_addr, READY_TIMEOUT)?;
        Ok(OrchestratorProcess {
            daemon,
            journal,
            grpc,
            http: http_addr,
        })
    }
}
