//! A cluster under test: one temporary root with a folder per process, loopback addresses,
//! and the binary to run.

use std::{
    ffi::OsStr,
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context;
use tempfile::TempDir;

use super::{Binary, Daemon, RunOutput};

/// How long a one-shot command may run before the harness kills it.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A set of processes under test. Dropping it kills the processes (through their handles,
/// which the test holds) and removes every folder.
#[derive(Debug)]
pub struct Cluster {
    root: TempDir,
    binary: Binary,
    ready_over: Option<super::tls::TlsClient>,
}

impl Cluster {
    /// A cluster that runs `binary`, rooted in a fresh temporary folder.
    pub fn new(binary: Binary) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("cutover-test-")
            .tempdir()
            .context("creating the cluster's temporary root")?;
        Ok(Self {
            root,
            binary,
            ready_over: None,
        })
    }

    /// Daemons started from now on serve TLS: their readiness is asked over it with `client`.
    pub fn ready_over_tls(&mut self, client: super::tls::TlsClient) {
        self.ready_over = Some(client);
    }

    /// The folder of process `name` (created on first use).
    pub fn dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Runs `start` with two fresh loopback addresses, again with new ones (up to 5 times)
    /// when the daemon could not listen because another process took an address between
    /// [`free_addr`](Self::free_addr) and its bind: tests run in parallel, and their clients'
    /// outgoing connections draw from the same port range.
    pub fn on_fresh_ports<T>(
        &self,
        mut start: impl FnMut(SocketAddr, SocketAddr) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut tries = 0;
        loop {
            tries += 1;
            match start(self.free_addr()?, self.free_addr()?) {
                Err(error) if tries < 5 && format!("{error:#}").contains("cannot listen") => {}
                outcome => return outcome,
            }
        }
    }

    /// A loopback address that was free a moment ago: bound on `127.0.0.1:0`, read, released,
    /// so a child process can bind it. (A child cannot inherit the listener without `unsafe`.)
    pub fn free_addr(&self) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        Ok(listener.local_addr()?)
    }

    /// Starts a daemon `cutover ARGS` in its own folder, killed when the handle drops.
    pub fn spawn<I, S>(&self, name: &str, args: I) -> anyhow::Result<Daemon>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.binary.spawn(name, &self.dir(name)?, args)
    }

    /// Starts a daemon like [`spawn`](Self::spawn) and waits until its `/readyz` on `http`
    /// answers 200; fails with its logs if it exits first.
    pub fn spawn_ready<I, S>(
        &self,
        name: &str,
        args: I,
        http_addr: SocketAddr,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Daemon>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut daemon = self.spawn(name, args)?;
        let ready = super::wait_until(&format!("{name} to be ready"), timeout, || {
            if !daemon.is_running() {
                return Some(false);
            }
            let answer = match &self.ready_over {
                None => super::http::get(http_addr, "/readyz"),
                Some(tls) => tls.request(http_addr, "GET", "/readyz", b""),
            };
            answer.ok().filter(|r| r.status == 200).map(|_| true)
        })?;
        if !ready {
            let logs = daemon.stderr().unwrap_or_default();
            anyhow::bail!("{name} exited before it was ready:\n{logs}");
        }
        Ok(daemon)
    }

    /// Runs a one-shot `cutover ARGS` to completion in the root folder.
    pub fn run<I, S>(&self, args: I) -> anyhow::Result<RunOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.binary.run(self.root.path(), args, RUN_TIMEOUT)
    }
}
