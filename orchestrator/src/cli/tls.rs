//! The TLS flags: a daemon's (what it serves, and what it verifies as a client), the operator
//! commands' (what they verify), and `cutover tls lab`, which makes a CA and certificates for a
//! lab or a test.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use cutover_daemon::tls::{ClientTls, Tls, TlsFiles, lab::Ca};
use tokio_util::sync::CancellationToken;

use super::CliError;

/// A daemon's TLS: on its own ports, and towards the servers it calls.
#[derive(Debug, Args)]
pub struct DaemonTlsArgs {
    /// Serve TLS with this certificate chain (PEM, this server's certificate first), on every
    /// port; it is also presented as the client certificate when this daemon calls a TLS
    /// server. Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "CUTOVER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "CUTOVER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS. Clients without one
    /// still reach /metrics, /healthz and /readyz, so that probes and scrapers work.
    #[arg(long, env = "CUTOVER_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientTlsArgs,
}

/// `cutover tls`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cutover tls lab --dir ./pki --name blue --name green")]
pub struct TlsArgs {
    /// The operation.
    #[command(subcommand)]
    pub command: TlsCommand,
}

/// The `cutover tls` commands.
#[derive(Debug, clap::Subcommand)]
pub enum TlsCommand {
    /// Make a CA (or reuse the one in --dir) and a certificate for each --name.
    Lab(LabArgs),
}

/// The operator commands' TLS towards the orchestrator.
#[derive(Debug, Args)]
pub struct OperatorTlsArgs {
    /// The client certificate (PEM) to present to an orchestrator that requires one
    /// (mutual TLS).
    #[arg(long, global = true, env = "CUTOVER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, global = true, env = "CUTOVER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Verify an `https://` orchestrator against this CA (PEM).
    #[arg(long, global = true, env = "CUTOVER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Allow the token to go in clear text to an address outside the loopback range (a lab
    /// only).
    #[arg(long, global = true, env = "CUTOVER_INSECURE_TOKEN")]
    pub insecure_token: bool,
}

impl OperatorTlsArgs {
    /// Installs the process's client TLS from these flags.
    pub(super) fn install(&self) -> Result<(), CliError> {
        let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        ClientTls::load(self.tls_ca.as_deref(), identity, self.insecure_token)
            .map_err(anyhow::Error::from)?
            .install();
        Ok(())
    }
}

/// What a process verifies when it calls a server.
#[derive(Debug, Args)]
pub struct ClientTlsArgs {
    /// Verify the servers called at `https://` addresses against this CA (PEM); without it
    /// `https://` addresses are refused.
    #[arg(long, env = "CUTOVER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Allow bearer tokens to go in clear text to addresses outside the loopback range (a
    /// lab only: anyone on the path can read them).
    #[arg(long, env = "CUTOVER_INSECURE_TOKEN")]
    pub insecure_token: bool,
}

impl DaemonTlsArgs {
    /// Installs the client settings, and loads and watches the server's TLS (`role` names it
    /// in the expiry gauge). Needs a tokio runtime.
    pub(super) fn apply(
        &self,
        role: &'static str,
        cancel: &CancellationToken,
    ) -> Result<Option<Tls>, CliError> {
        let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        ClientTls::load(
            self.client.tls_ca.as_deref(),
            identity,
            self.client.insecure_token,
        )
        .map_err(anyhow::Error::from)?
        .install();
        let Some((cert, key)) = self.tls_cert.clone().zip(self.tls_key.clone()) else {
            return Ok(None);
        };
        let tls = Tls::load(TlsFiles {
            cert,
            key,
            client_ca: self.tls_client_ca.clone(),
        })
        .map_err(anyhow::Error::from)?;
        tls.watch(role, cancel.child_token());
        tracing::info!(
            mutual = tls.mutual(),
            not_after = ?tls.not_after().map(humantime::format_rfc3339_seconds),
            "serving TLS"
        );
        Ok(Some(tls))
    }
}

/// `cutover tls lab`: a CA and certificates for a lab or a test.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cutover tls lab --dir ./pki --name blue --name green --name proxy --name orchestrator \
    --name operator\n\n\
    Writes ./pki/ca.pem (give it as --tls-ca and --tls-client-ca) and NAME.pem, NAME.key for \
    each name (give them as --tls-cert and --tls-key). Each certificate is valid for its name, \
    localhost, 127.0.0.1 and every --san, as a server's and as a client's. Running it again \
    with the same --dir keeps the CA and issues new certificates: that is a rotation.")]
pub struct LabArgs {
    /// Folder of the files (created if missing); its ca.pem and ca.key are kept and reused.
    #[arg(long)]
    pub dir: PathBuf,
    /// A certificate to issue, for this name (repeat for more).
    #[arg(long = "name", required = true)]
    pub names: Vec<String>,
    /// Another host name or IP every certificate is valid for (repeat for more).
    #[arg(long = "san")]
    pub sans: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
}

pub(super) fn lab(args: LabArgs) -> Result<(), CliError> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let ca = Ca::open_or_create(&args.dir).map_err(anyhow::Error::from)?;
    println!(
        "CA: {}",
        args.dir.join(cutover_daemon::tls::lab::CA_CERT).display()
    );
    for name in &args.names {
        let mut sans = vec![name.clone(), "localhost".to_owned(), "127.0.0.1".to_owned()];
        sans.extend(args.sans.iter().cloned());
        sans.dedup();
        let (cert, key) = ca
            .issue_to(&args.dir, name, &sans, args.days)
            .map_err(anyhow::Error::from)?;
        println!("{name}: {} {}", cert.display(), key.display());
    }
    Ok(())
}
