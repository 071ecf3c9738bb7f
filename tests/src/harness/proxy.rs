//! A `cutover proxy` process with its addresses, started and waited for until ready.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::{Cluster, Daemon};

/// How long a proxy may take to load its route and become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `cutover proxy`.
#[derive(Debug)]
pub struct ProxyProcess {
    /// The process.
    pub daemon: Daemon,
    /// Where clients send requests.
    pub listen: SocketAddr,
    /// gRPC ProxyControl, `/route`, `/metrics`, `/healthz`, `/readyz`.
    pub admin: SocketAddr,
    /// Its route file.
    pub state_file: PathBuf,
    /// The backend flags it was started with (kept for a restart).
    backends: Vec<String>,
}

impl ProxyProcess {
    /// The admin endpoint as a URL, for tonic clients and plans.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }
}

impl Cluster {
    /// Starts `cutover proxy` named `name` in front of `blue` and `green` (base URLs) on fresh
    /// loopback ports, with its route in `name/route.json` plus `extra` flags, and waits
    /// until `/readyz` says ready.
    pub fn start_proxy(
        &self,
        name: &str,
        blue: &[String],
        green: &[String],
        extra: &[&str],
    ) -> anyhow::Result<ProxyProcess> {
        let mut backends = vec![
            "--blue".to_owned(),
            blue.join(","),
            "--green".to_owned(),
            green.join(","),
        ];
        backends.extend(extra.iter().map(|s| (*s).to_owned()));
        let state_file = self.dir(name)?.join("route.json");
        self.on_fresh_ports(|listen, admin| {
            self.start_proxy_on(name, state_file.clone(), listen, admin, backends.clone())
        })
    }

    /// Starts `cutover proxy` again with the route file, addresses and flags of one that
    /// stopped or was killed.
    pub fn restart_proxy(&self, name: &str, stopped: ProxyProcess) -> anyhow::Result<ProxyProcess> {
        let ProxyProcess {
            state_file,
            listen,
            admin,
            backends,
            ..
        } = stopped;
        self.start_proxy_on(name, state_file, listen, admin, backends)
    }

    fn start_proxy_on(
        &self,
        name: &str,
        state_file: PathBuf,
        listen: SocketAddr,
        admin: SocketAddr,
        backends: Vec<String>,
    ) -> anyhow::Result<ProxyProcess> {
        let mut args = vec![
            "proxy".to_owned(),
            "--listen".to_owned(),
            listen.to_string(),
            "--admin".to_owned(),
            admin.to_string(),
            "--state-file".to_owned(),
            state_file.display().to_string(),
        ];
        args.extend(backends.iter().cloned());
        let daemon = self.spawn_ready(name, &args, admin, READY_TIMEOUT)?;
        Ok(ProxyProcess {
            daemon,
            listen,
            admin,
            state_file,
            backends,
        })
    }
}
