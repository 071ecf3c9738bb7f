//! The processes of one story: blue and green `cutover node`s, a `cutover proxy` in front of
//! them and a `cutover orchestrator`, each a process of the built binary in its own folder of
//! one temporary root, so that each one's peak memory and disk are its own.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use cutover_benches::system;
use cutover_tests::harness::{Cluster, Daemon, NodeProcess, OrchestratorProcess, ProxyProcess};

/// How long each process may take to stop after SIGTERM (a node flushes its memtables).
const STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of each process's log shown when a story fails.
const LOG_LINES: usize = 15;

/// The node flags of both colours: acknowledged writes reach the kernel, not the disk, as in
/// `cutover demo` and the in-process cutover bench (the copy's ingest syncs its files anyway).
const NODE_FLAGS: &[&str] = &["--sync", "os"];

/// One story's processes, and the root of their folders.
pub struct Stack {
    /// The temporary root: every folder goes when it drops.
    pub cluster: Cluster,
    /// The old version, started on the bulk-loaded folder `blue/data`.
    pub blue: NodeProcess,
    /// The new version, fresh; the copy pipelines run inside it.
    pub green: NodeProcess,
    /// Where the clients send their requests (h2c to the nodes).
    pub proxy: ProxyProcess,
    /// The standalone engine.
    pub orchestrator: OrchestratorProcess,
}

impl Stack {
    /// Starts the four processes in `cluster`, whose `blue/data` holds blue's store.
    pub fn start(cluster: Cluster) -> anyhow::Result<Self> {
        let blue = cluster
            .start_node("blue", NODE_FLAGS)
            .context("starting blue")?;
        let green = cluster
            .start_node("green", NODE_FLAGS)
            .context("starting green")?;
        let backend = |n: &NodeProcess| vec![format!("http://{}", n.http)];
        let proxy = cluster
            .start_proxy(
                "proxy",
                &backend(&blue),
                &backend(&green),
                &["--upstream-protocol", "h2c"],
            )
            .context("starting the proxy")?;
        let orchestrator = cluster
            .start_orchestrator("orchestrator")
            .context("starting the orchestrator")?;
        Ok(Self {
            cluster,
            blue,
            green,
            proxy,
            orchestrator,
        })
    }

    /// The plan: identity transform (no collection listed), the pause budget `budget`.
    pub fn plan(&self, budget: &str) -> String {
        format!(
            "pause_budget = \"{budget}\"\n\n[blue]\nsources = [\"{}\"]\n\n[green]\nsinks = \
             [\"{}\"]\n\n[proxies]\ncontrol = [\"{}\"]\n",
            self.blue.grpc_url(),
            self.green.grpc_url(),
            self.proxy.admin_url()
        )
    }

    /// Every process with its name, in the order they are reported.
    pub fn daemons(&self) -> [(&'static str, &Daemon); 4] {
        [
            ("blue node", &self.blue.daemon),
            ("green node", &self.green.daemon),
            ("proxy", &self.proxy.daemon),
            ("orchestrator", &self.orchestrator.daemon),
        ]
    }

    /// Each process's peak resident memory so far (`VmHWM`), bytes.
    pub fn peak_memory(&self) -> anyhow::Result<Vec<(&'static str, u64)>> {
        self.daemons()
            .into_iter()
            .map(|(name, daemon)| {
                system::peak_memory(daemon.pid())
                    .with_context(|| format!("the {name}'s peak memory"))
                    .map(|bytes| (name, bytes))
            })
            .collect()
    }

    /// The disk each data folder takes now, bytes: blue's and green's stores, the journal.
    pub fn disk(&self) -> anyhow::Result<Vec<(&'static str, u64)>> {
        Ok(vec![
            ("blue store", system::disk_used(&self.blue.data_dir)?),
            ("green store", system::disk_used(&self.green.data_dir)?),
            (
                "orchestrator journal",
                system::disk_used(&self.orchestrator.journal)?,
            ),
        ])
    }

    /// Prints the end of every process's log, for a story that failed.
    pub fn print_logs(&self) {
        for (name, daemon) in self.daemons() {
            let log = daemon.stderr().unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            println!("--- the last lines of the {name}'s log:");
            for line in &lines[lines.len().saturating_sub(LOG_LINES)..] {
                println!("  {line}");
            }
        }
    }

    /// Stops every process with SIGTERM, the engine first so that it does not see its nodes
    /// go, and kills one that does not exit in time (a node's store recovers from that);
    /// the root (still holding the folders) and green's data folder.
    pub fn stop(self) -> (Cluster, PathBuf) {
        let Self {
            cluster,
            mut blue,
            mut green,
            mut proxy,
            mut orchestrator,
        } = self;
        for daemon in [
            &mut orchestrator.daemon,
            &mut proxy.daemon,
            &mut blue.daemon,
            &mut green.daemon,
        ] {
            let stopped = daemon
                .terminate()
                .and_then(|()| daemon.wait_exit(STOP_TIMEOUT));
            if let Err(error) = stopped {
                println!("{} did not stop: {error:#}; killing it", daemon.name());
                let _ = daemon.kill9();
            }
        }
        (cluster, green.data_dir)
    }
}
