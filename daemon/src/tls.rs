//! TLS on every daemon's ports and in every client, with rustls and its `ring` provider only.
//!
//! A server ([`Tls`]) serves a certificate chain and key from PEM files; given a client CA it
//! also asks for client certificates (mutual TLS). The files are read again on SIGHUP and when
//! they change (checked every [`WATCH_INTERVAL`]); connections open keep the certificate they
//! began with, new ones get the new one, and files that do not load leave the old ones in
//! place. The serving certificate's expiry is the gauge [`NOT_AFTER`].
//!
//! A client ([`ClientTls`]) verifies servers against a CA file and presents a certificate when
//! given one. The process's client settings are installed once ([`ClientTls::install`]) and
//! read by every client the process makes ([`ClientTls::current`]). [`ClientTls::check_token`]
//! refuses to send a bearer token in clear text to an address outside the loopback range.
//!
//! [`explain`] turns a handshake failure into what to do about it.

use std::{
    error::Error as StdError,
    fmt, io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, OnceLock, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rustls::{
    AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Gauge: when the serving certificate expires, in seconds since the Unix epoch (label
/// `port`); alert on `cutover_tls_certificate_not_after_timestamp_seconds - time() < 14 * 86400`.
pub const NOT_AFTER: &str = "cutover_tls_certificate_not_after_timestamp_seconds";
/// Counter: certificate reloads (label `outcome`: `loaded` or `failed`).
pub const RELOADS: &str = "cutover_tls_reloads_total";
/// Counter: TLS handshakes that failed (labels `port` and `reason`).
pub const HANDSHAKE_FAILURES: &str = "cutover_tls_handshake_failures_total";

/// How often the certificate files are checked for a change.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The first byte of a TLS connection (a handshake record).
const HANDSHAKE_RECORD: u8 = 0x16;

/// What a client that sent plain HTTP to a TLS port reads in the `400` it gets back.
pub const PLAIN_HTTP_DETAIL: &str =
    "this port speaks TLS: connect with https:// (a plain HTTP request was sent to a TLS port)\n";

/// The one crypto provider of the whole binary: ring. (rustls 0.23.48 deprecates it for
/// lacking post-quantum key exchange, which only its aws-lc-rs provider offers; this project
/// builds with ring alone, see `.ci/run`.)
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the kind needed.
    #[error("{flag} {path}: {detail}")]
    File {
        /// The flag (or plan field) that named it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The files do not make a TLS configuration (e.g. the key is not the certificate's).
    #[error("{0}")]
    Config(String),
}

/// The files of a server's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, the server's own first (`--tls-cert`).
    pub cert: PathBuf,
    /// Its private key, PEM (`--tls-key`).
    pub key: PathBuf,
    /// CA certificates, PEM, that client certificates must chain to (`--tls-client-ca`);
    /// none: no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// What a port asks of a client's certificate when a client CA is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// The handshake fails without one (gRPC ports).
    Required,
    /// The handshake accepts a client without one; the server then admits it to its ops
    /// endpoints only (`/metrics`, `/healthz`, `/readyz`), so probes and scrapers work.
    Optional,
    /// None is asked for (a proxy's client port: the service's own clients).
    NotAsked,
}

/// A server's TLS, reloadable; cheap to clone.
#[derive(Clone)]
pub struct Tls {
    files: Arc<TlsFiles>,
    loaded: Arc<RwLock<Arc<Loaded>>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

struct Loaded {
    required: Arc<ServerConfig>,
    optional: Arc<ServerConfig>,
    not_asked: Arc<ServerConfig>,
    not_after: Option<SystemTime>,
}

/// A connection after its TLS handshake (not `serve::Accepted`, the TCP connection before
/// it), and whether the client presented a certificate.
pub struct Secured {
    /// The stream.
    pub stream: TlsStream<TcpStream>,
    /// A client certificate was presented and verified.
    pub client_certified: bool,
}

impl Tls {
    /// Reads `files`; errors name the flag and file at fault.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let loaded = Loaded::read(&files)?;
        let tls = Self {
            files: Arc::new(files),
            loaded: Arc::new(RwLock::new(Arc::new(loaded))),
        };
        Ok(tls)
    }

    /// Whether clients must present certificates (a client CA was given).
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    fn current(&self) -> Arc<Loaded> {
        Arc::clone(&self.loaded.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// When the serving certificate expires.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.current().not_after
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let outcome = Loaded::read(&self.files);
        let label = if outcome.is_ok() { "loaded" } else { "failed" };
        metrics::counter!(RELOADS, "outcome" => label).increment(1);
        let loaded = outcome?;
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// Sets the expiry gauge of `port`, then reloads on SIGHUP and whenever a file changes,
    /// until `cancel` fires. Needs a tokio runtime.
    pub fn watch(&self, port: &'static str, cancel: CancellationToken) {
        let tls = self.clone();
        tls.publish(port);
        // What the files were when last read. Taken before a read, so that a file written
        // meanwhile is read again at the next check; kept after a failed read too, since
        // reading the same files again would fail the same way.
        let mut seen = stamps(&tls.files);
        tokio::spawn(async move {
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let signalled = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let why = tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = signalled => "SIGHUP",
                    () = tokio::time::sleep(WATCH_INTERVAL) => {
                        if seen == stamps(&tls.files) {
                            continue;
                        }
                        "the files changed"
                    }
                };
                seen = stamps(&tls.files);
                match tls.reload() {
                    Ok(()) => {
                        tls.publish(port);
                        tracing::info!(
                            port,
                            why,
                            cert = %tls.files.cert.display(),
                            not_after = ?tls.not_after().map(humantime::format_rfc3339_seconds),
                            "TLS certificate reloaded"
                        );
                    }
                    Err(error) => {
                        tracing::error!(
                            port,
                            why,
                            %error,
                            "TLS certificate not reloaded: the one loaded before stays in use"
                        );
                    }
                }
            }
        });
    }

    fn publish(&self, port: &'static str) {
        if let Some(at) = self.not_after() {
            let seconds = at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            metrics::gauge!(NOT_AFTER, "port" => port).set(seconds);
        }
    }

    /// Runs the server side of a handshake on `stream` (whose first byte has arrived), within
    /// `timeout`. A client that sent plain HTTP gets a `400` that says to use TLS; every
    /// failure is logged with what to do and counted, and gives `None`.
    ///
    /// Boxed: a connection's task is as large as its largest state, so a handshake awaited
    /// inline would weigh on it for as long as the connection lives (thousands of them wait
    /// in a proxy's hold); boxed, it is freed once done.
    pub fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        port: &'static str,
        certs: ClientCerts,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Option<Secured>> + Send + '_>> {
        Box::pin(self.handshake(stream, peer, port, certs, timeout))
    }

    async fn handshake(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        port: &'static str,
        certs: ClientCerts,
        timeout: Duration,
    ) -> Option<Secured> {
        let mut first = [0u8; 1];
        if matches!(stream.peek(&mut first).await, Ok(1)) && first[0] != HANDSHAKE_RECORD {
            failed(port, "plain_http");
            tracing::info!(
                %peer,
                port,
                "a client sent plain text to a TLS port: it must connect with TLS (https://)"
            );
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\
                 content-length: {}\r\n\r\n{PLAIN_HTTP_DETAIL}",
                PLAIN_HTTP_DETAIL.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            crate::closing::linger(stream).await;
            return None;
        }
        let loaded = self.current();
        let config = match certs {
            ClientCerts::Required => &loaded.required,
            ClientCerts::Optional => &loaded.optional,
            ClientCerts::NotAsked => &loaded.not_asked,
        };
        let handshake = TlsAcceptor::from(Arc::clone(config))
            .accept(stream)
            .into_fallible();
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(stream)) => {
                let client_certified = stream.get_ref().1.peer_certificates().is_some();
                Some(Secured {
                    stream,
                    client_certified,
                })
            }
            Ok(Err((error, stream))) => {
                let reason = reason(&error);
                failed(port, reason);
                let advice = explain(&error).unwrap_or_else(|| error.to_string());
                tracing::info!(%peer, port, reason, "TLS handshake failed: {advice}");
                // The alert is sent; closed at once, the socket would reset and the client,
                // still writing its first request, would see a broken pipe instead of it.
                crate::closing::linger(stream).await;
                None
            }
            Err(_) => {
                failed(port, "timeout");
                tracing::debug!(%peer, port, "TLS handshake did not finish in time");
                None
            }
        }
    }
}

fn failed(port: &'static str, reason: &'static str) {
    metrics::counter!(HANDSHAKE_FAILURES, "port" => port, "reason" => reason).increment(1);
}

/// A short label for a failed handshake, for the metric.
fn reason(error: &io::Error) -> &'static str {
    match rustls_error(error) {
        Some(rustls::Error::NoCertificatesPresented) => "client_certificate_missing",
        // Another CA of the same name fails its signature check rather than its lookup.
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => "client_certificate_unknown_ca",
        Some(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "client_certificate_expired",
        Some(rustls::Error::InvalidCertificate(_)) => "client_certificate_invalid",
        Some(rustls::Error::AlertReceived(_)) => "refused_by_client",
        Some(_) => "protocol",
        None => "io",
    }
}

impl Loaded {
    fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        let chain = certificates(&files.cert, "--tls-cert")?;
        let key = private_key(&files.key, "--tls-key")?;
        let not_after = not_after(&chain[0]);
        let builder = || {
            ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Config(e.to_string()))
        };
        let single = |builder: rustls::ConfigBuilder<ServerConfig, _>| {
            let mut config =
                rustls::ConfigBuilder::with_single_cert(builder, chain.clone(), key.clone_key())
                    .map_err(|e| {
                        TlsError::Config(format!(
                            "--tls-key {} does not go with --tls-cert {}: {e}",
                            files.key.display(),
                            files.cert.display()
                        ))
                    })?;
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Ok::<_, TlsError>(Arc::new(config))
        };
        let not_asked = single(builder()?.with_no_client_auth())?;
        let (required, optional) = match &files.client_ca {
            None => (Arc::clone(&not_asked), Arc::clone(&not_asked)),
            Some(path) => {
                let roots = Arc::new(roots(path, "--tls-client-ca")?);
                let verifier = |optional: bool| {
                    let builder =
                        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider());
                    let builder = if optional {
                        builder.allow_unauthenticated()
                    } else {
                        builder
                    };
                    builder.build().map_err(|e| TlsError::File {
                        flag: "--tls-client-ca",
                        path: path.clone(),
                        detail: e.to_string(),
                    })
                };
                (
                    single(builder()?.with_client_cert_verifier(verifier(false)?))?,
                    single(builder()?.with_client_cert_verifier(verifier(true)?))?,
                )
            }
        };
        Ok(Self {
            required,
            optional,
            not_asked,
            not_after,
        })
    }
}

/// What identifies each file's content cheaply: its modification time and length.
fn stamps(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
    .collect()
}

fn file_error(flag: &'static str, path: &Path, detail: impl fmt::Display) -> TlsError {
    TlsError::File {
        flag,
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// The content of the file `flag` names.
fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(flag, path, format!("cannot read it: {e}")))
}

/// The certificates of a PEM file, at least one.
pub fn certificates(
    path: &Path,
    flag: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates_in(&read(path, flag)?, path, flag)
}

/// The certificates of `pem`, read from `path`, at least one.
fn certificates_in(
    pem: &[u8],
    path: &Path,
    flag: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(flag, path, pem_error(e)))?;
    if chain.is_empty() {
        return Err(file_error(
            flag,
            path,
            "holds no certificate (a PEM block -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(chain)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path, flag: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    private_key_in(&read(path, flag)?, path, flag)
}

/// The private key in `pem`, read from `path`.
fn private_key_in(
    pem: &[u8],
    path: &Path,
    flag: &'static str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => file_error(
            flag,
            path,
            "holds no private key (a PEM block -----BEGIN PRIVATE KEY-----, \
             -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)",
        ),
        e => file_error(flag, path, pem_error(e)),
    })
}

fn pem_error(error: rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(e) => format!("cannot read it: {e}"),
        e => format!("not a PEM file: {e}"),
    }
}

/// A root store of the CA certificates in a PEM file.
pub fn roots(path: &Path, flag: &'static str) -> Result<RootCertStore, TlsError> {
    roots_in(&read(path, flag)?, path, flag)
}

/// A root store of the CA certificates in `pem`, read from `path`.
fn roots_in(pem: &[u8], path: &Path, flag: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates_in(pem, path, flag)? {
        roots
            .add(cert)
            .map_err(|e| file_error(flag, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A process's TLS as a client: the CA that servers' certificates must chain to, the
/// certificate it presents, and whether a token may go to a non-loopback address in clear.
#[derive(Clone, Default)]
pub struct ClientTls {
    config: Option<Arc<ClientConfig>>,
    /// The CA and the identity as PEM, for tonic's own TLS.
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Bearer tokens may be sent in clear text beyond the loopback range (`--insecure-token`,
    /// for a lab).
    pub insecure_token: bool,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("configured", &self.config.is_some())
            .field("insecure_token", &self.insecure_token)
            .finish()
    }
}

static CLIENT: OnceLock<RwLock<Arc<ClientTls>>> = OnceLock::new();

impl ClientTls {
    /// Verifies servers against the CAs in `ca` (`--tls-ca`) and presents `cert` and `key`
    /// (`--tls-cert`, `--tls-key`) when given.
    pub fn load(
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
        insecure_token: bool,
    ) -> Result<Self, TlsError> {
        let Some(ca) = ca else {
            return Ok(Self {
                insecure_token,
                ..Self::default()
            });
        };
        // Each file read once: rustls parses the bytes, tonic is given the same bytes.
        let ca_pem = read(ca, "--tls-ca")?;
        let identity_pem = match identity {
            None => None,
            Some((cert, key)) => Some((read(cert, "--tls-cert")?, read(key, "--tls-key")?)),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots_in(&ca_pem, ca, "--tls-ca")?);
        let config = match (identity, &identity_pem) {
            (Some((cert, key)), Some((cert_pem, key_pem))) => builder
                .with_client_auth_cert(
                    certificates_in(cert_pem, cert, "--tls-cert")?,
                    private_key_in(key_pem, key, "--tls-key")?,
                )
                .map_err(|e| {
                    TlsError::Config(format!(
                        "--tls-key {} does not go with --tls-cert {}: {e}",
                        key.display(),
                        cert.display()
                    ))
                })?,
            _ => builder.with_no_client_auth(),
        };
        Ok(Self {
            config: Some(Arc::new(config)),
            ca_pem: Some(ca_pem),
            identity_pem,
            insecure_token,
        })
    }

    /// Makes these the settings of every client this process makes from now on.
    pub fn install(self) {
        let slot = CLIENT.get_or_init(|| RwLock::new(Arc::default()));
        *slot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(self);
    }

    /// The settings installed, or none (plain text only, tokens to loopback only).
    pub fn current() -> Arc<Self> {
        CLIENT.get().map_or_else(Arc::default, |slot| {
            Arc::clone(&slot.read().unwrap_or_else(|e| e.into_inner()))
        })
    }

    /// Whether a CA was given, so that `https://` addresses can be verified.
    pub fn verifies(&self) -> bool {
        self.config.is_some()
    }

    /// `endpoint` (for `address`) with TLS when `address` is `https://`: verified against the
    /// CA, presenting the certificate if one was given; an error for `https://` without a CA.
    pub fn endpoint(
        &self,
        endpoint: tonic::transport::Endpoint,
        address: &str,
    ) -> Result<tonic::transport::Endpoint, String> {
        if !is_https(address) {
            return Ok(endpoint);
        }
        let ca = self.ca_pem.as_ref().ok_or_else(|| no_ca(address))?;
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.identity_pem {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint
            .tls_config(config)
            .map_err(|e| format!("{address}: cannot use TLS: {e}"))
    }

    /// `inner` made able to call `https://` URIs too, verified with these settings (with no
    /// CA given, every server certificate is refused as unknown).
    pub fn https<C>(&self, inner: C) -> hyper_rustls::HttpsConnector<C> {
        let config = match &self.config {
            Some(config) => ClientConfig::clone(config),
            None => ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
        };
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(inner)
    }

    /// The scheme of a peer's address when the cluster file gives none: `https` once a CA is
    /// given to verify peers with.
    pub fn peer_scheme(&self) -> &'static str {
        if self.verifies() { "https" } else { "http" }
    }

    /// Checks that a TLS connection to the gRPC server at `address` (`https://host:port`) is
    /// accepted, before a client uses it: the handshake, then an HTTP/2 preface and the
    /// server's first frame. With TLS 1.3 a server that refuses this client's certificate says
    /// so only after the client's handshake is over, and an HTTP/2 client that meets that
    /// mid-request reports a broken pipe or a cancelled call; here it is read as what it is.
    pub async fn preflight(&self, address: &str, timeout: Duration) -> Result<(), String> {
        use tokio::io::AsyncReadExt as _;
        const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
        let uri: http::Uri = address
            .parse()
            .map_err(|e| format!("{address}: not a URL: {e}"))?;
        let host = uri.host().ok_or_else(|| format!("{address}: no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let config = self.rustls(address, &[b"h2"])?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{address}: {e}"))?;
        let exchange = async {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let mut tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            tls.write_all(PREFACE).await?;
            tls.flush().await?;
            let mut first = [0u8; 9];
            tls.read_exact(&mut first).await?;
            Ok::<_, io::Error>(())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(explain(&error).unwrap_or_else(|| error.to_string())),
            // Too slow to tell: the client's own call will say what happens.
            Err(_) => Ok(()),
        }
    }

    /// The rustls configuration for `address` (`https://…`), with `alpn` protocols; an error
    /// when no CA was given.
    pub fn rustls(&self, address: &str, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
        let config = self.config.as_ref().ok_or_else(|| no_ca(address))?;
        let mut config = ClientConfig::clone(config);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Refuses to send a bearer token (`what`, e.g. `blue.token_file`) to `address` in clear
    /// text, unless the address is in the loopback range or `--insecure-token` was given.
    pub fn check_token(&self, address: &str, what: &str) -> Result<(), String> {
        let Some(host) = plain_host(address) else {
            return Ok(());
        };
        if self.insecure_token || is_loopback(&host) {
            return Ok(());
        }
        Err(format!(
            "refusing to send {what} in clear text to {address}, which is not a loopback \
             address: serve TLS there and write https://, or pass --insecure-token to allow \
             it (a lab only)"
        ))
    }
}

fn no_ca(address: &str) -> String {
    format!(
        "{address}: no CA to verify its certificate with: give --tls-ca FILE (the CA that \
         signed the server's certificate)"
    )
}

/// Whether `address` is `https://…`.
pub fn is_https(address: &str) -> bool {
    address
        .split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("https"))
}

/// The host of a plain-text `address` (`http://host:port/…` or `host:port`); `None` for
/// `https://`.
fn plain_host(address: &str) -> Option<String> {
    let rest = match address.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return None,
        None => address,
    };
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or(bracketed)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    Some(host.to_owned())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What to do about a TLS failure found anywhere in `error`'s chain of causes (a handshake
/// that failed, or a server that did not speak TLS); `None` when no TLS error is in it.
pub fn explain(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(advice(found));
        }
        // io::Error and h2's error do not give their inner error as a source.
        let io = error.downcast_ref::<io::Error>().or_else(|| {
            error
                .downcast_ref::<h2::Error>()
                .and_then(h2::Error::get_io)
        });
        if let Some(found) = io.and_then(rustls_error) {
            return Some(advice(found));
        }
        // hyper's HTTP/2 client passes the error on as its text only.
        if let Some(found) = from_text(&error.to_string()) {
            return Some(advice(&found));
        }
        next = error.source();
    }
    None
}

/// The rustls error that wrote `text` (its `Display`), for the failures [`advice`] knows.
fn from_text(text: &str) -> Option<rustls::Error> {
    use AlertDescription as A;
    use CertificateError as C;
    if let Some((_, alert)) = text.split_once("received fatal alert: ") {
        let alert = alert.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
        let known = [
            ("UnknownCA", A::UnknownCA),
            ("BadCertificate", A::BadCertificate),
            ("DecryptError", A::DecryptError),
            ("CertificateExpired", A::CertificateExpired),
            ("CertificateRequired", A::CertificateRequired),
            ("HandshakeFailure", A::HandshakeFailure),
        ];
        let (_, found) = known.into_iter().find(|(name, _)| *name == alert)?;
        return Some(rustls::Error::AlertReceived(found));
    }
    let (_, cause) = text.split_once("invalid peer certificate: ")?;
    let known = [
        ("UnknownIssuer", C::UnknownIssuer),
        ("BadSignature", C::BadSignature),
        ("Expired", C::Expired),
        ("NotValidYet", C::NotValidYet),
        ("NotValidForName", C::NotValidForName),
        ("certificate expired", C::Expired),
        ("certificate not valid for name", C::NotValidForName),
    ];
    let (_, found) = known
        .into_iter()
        .find(|(name, _)| cause.starts_with(name))?;
    Some(rustls::Error::InvalidCertificate(found))
}

fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

fn advice(error: &rustls::Error) -> String {
    use CertificateError as C;
    use rustls::Error as E;
    let what = match error {
        E::NoCertificatesPresented => "no client certificate was presented, and this port \
            requires one (mutual TLS): give the client --tls-cert and --tls-key, signed by \
            the server's --tls-client-ca"
            .to_owned(),
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => "the peer's certificate \
            is not signed by a CA this side trusts: give the CA that signed it (--tls-ca on a \
            client, --tls-client-ca on a server)"
            .to_owned(),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => format!(
            "the peer's certificate has expired ({error}): issue a new one and put it in \
             place; a daemon picks it up on SIGHUP or within {WATCH_INTERVAL:?}"
        ),
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            format!("the peer's certificate is not valid yet ({error}): check the clocks")
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!(
                "the server's certificate does not name the host connected to ({error}): \
                 connect by a name or IP the certificate holds, or issue one that holds it"
            )
        }
        E::InvalidCertificate(C::Revoked) => "the peer's certificate is revoked".to_owned(),
        // A CA of the same name as the server's but another key fails the signature check.
        E::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::DecryptError,
        ) => "the server refused this client's certificate: it is not signed by the server's \
             --tls-client-ca"
            .to_owned(),
        E::AlertReceived(AlertDescription::CertificateExpired) => {
            "the server refused this client's certificate: it has expired".to_owned()
        }
        E::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
        ) => "the server requires a client certificate (mutual TLS): give --tls-cert and \
              --tls-key"
            .to_owned(),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => "the peer does not speak \
            TLS, or not the TLS expected: is it a plain-text port? write http:// for those"
            .to_owned(),
        other => format!("TLS failed: {other}"),
    };
    format!("TLS: {what}")
}

/// When the certificate `der` expires (its `notAfter`), read from its DER encoding.
pub fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, certificate, _) = tlv(der)?;
    let (_, tbs, _) = tlv(certificate)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2; // version
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial number, signature algorithm, issuer
    }
    let (_, validity, _) = tlv(rest)?;
    let (_, _, after) = tlv(validity)?; // notBefore
    let (tag, time, _) = tlv(after)?;
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let digits = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, rest) = match tag {
        0x17 => {
            let yy = digits(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        0x18 => (digits(0..4)?, 4),
        _ => return None,
    };
    let field = |i: usize| digits(rest + 2 * i..rest + 2 * i + 2);
    let days = days_from_civil(year, field(0)?, field(1)?);
    let seconds = days * 86_400 + field(2)? * 3_600 + field(3)? * 60 + field(4)?;
    u64::try_from(seconds)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// One DER item: its tag, its content and what follows it.
fn tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub mod lab;

#[cfg(test)]
mod tests;
