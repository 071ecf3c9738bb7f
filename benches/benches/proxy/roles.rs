//! The processes the proxy benchmark starts from its own binary: `CUTOVER_BENCH_ROLE=backend`
//! (a small HTTP server on two ports, one per colour) and `CUTOVER_BENCH_ROLE=proxy` (the
//! cutover proxy as `cutover proxy` runs it, metrics recorder included).

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use cutover_proxy::{Proxy, ProxyConfig, UpstreamProtocol};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Reaped, free_addr, spawn_role, wait_ready};

/// The body every backend answer carries, besides its colour: ~200 bytes like a document.
const PADDING: &str = r#"{"id":"1","name":"Ada Lovelace","email":"ada@example.com","padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

/// Runs this process's role when it has one; `None` in the benchmark's own process.
pub fn run_role() -> Option<anyhow::Result<()>> {
    let role = std::env::var("CUTOVER_BENCH_ROLE").ok()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return Some(Err(error.into())),
    };
    Some(runtime.block_on(async move {
        match role.as_str() {
            "backend" => backend(&args).await,
            "proxy" => proxy(&args).await,
            other => anyhow::bail!("unknown CUTOVER_BENCH_ROLE {other:?}"),
        }
    }))
}

async fn backend(args: &[String]) -> anyhow::Result<()> {
    let mut servers = Vec::new();
    for (addr, name) in args.iter().zip(["blue", "green"]) {
        let listener = TcpListener::bind(addr.as_str()).await?;
        servers.push(tokio::spawn(cutover_daemon::serve::serve_http(
            listener,
            "http",
            cutover_daemon::Bounds::default(),
            None,
            CancellationToken::new(),
            move |request: Request<Incoming>| answer(name, request),
        )));
    }
    for server in servers {
        server.await?;
    }
    Ok(())
}

async fn answer(
    name: &'static str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = if request.uri().path() == "/v1/users/1" {
        Bytes::from(format!("{name}{PADDING}"))
    } else {
        Bytes::from(name)
    };
    Ok(Response::new(Full::new(body)))
}

async fn proxy(args: &[String]) -> anyhow::Result<()> {
    let ([listen, admin, blue, green, state, protocol], tls) = match args {
        [first @ .., cert, key] if args.len() == 8 => (
            <&[String; 6]>::try_from(first)?,
            Some(cutover_daemon::tls::Tls::load(
                cutover_daemon::tls::TlsFiles {
                    cert: cert.into(),
                    key: key.into(),
                    client_ca: None,
                },
            )?),
        ),
        _ => (
            <&[String; 6]>::try_from(args).map_err(|_| {
                anyhow::anyhow!(
                    "proxy role: LISTEN ADMIN BLUE GREEN STATE_FILE http1|h2c [CERT KEY]"
                )
            })?,
            None,
        ),
    };
    cutover_daemon::metrics::install()?;
    let config = ProxyConfig {
        // Clients over TLS (`--listen-tls`) when a certificate is given; the admin port
        // stays plain, as the benchmark's control client speaks it.
        listen_tls: tls,
        upstream_protocol: if protocol == "h2c" {
            UpstreamProtocol::H2c
        } else {
            UpstreamProtocol::Http1
        },
        ..ProxyConfig::new(
            vec![format!("http://{blue}")],
            vec![format!("http://{green}")],
            state.into(),
        )
    };
    let proxy = Proxy::open(config)?;
    let listen = TcpListener::bind(listen.as_str()).await?;
    let admin = TcpListener::bind(admin.as_str()).await?;
    proxy.run(listen, admin, CancellationToken::new()).await?;
    Ok(())
}

/// A backend process: `blue` and `green` answer their colour's name.
pub struct Backend {
    pub blue: SocketAddr,
    pub green: SocketAddr,
    _process: Reaped,
}

impl Backend {
    pub async fn spawn() -> anyhow::Result<Self> {
        let (blue, green) = (free_addr()?, free_addr()?);
        let process = spawn_role("backend", &[blue.to_string(), green.to_string()])?;
        wait_ready(blue, "/").await?;
        wait_ready(green, "/").await?;
        Ok(Self {
            blue,
            green,
            _process: process,
        })
    }
}

/// A proxy process in front of a backend.
pub struct ProxyProcess {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    process: Reaped,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// `protocol`: `http1` or `h2c` to the backend.
    pub async fn spawn(backend: &Backend, protocol: &str) -> anyhow::Result<Self> {
        Self::spawn_with(backend, protocol, None).await
    }

    /// [`spawn`](Self::spawn), serving its clients over TLS with `tls` (certificate and key
    /// files) when given.
    pub async fn spawn_with(
        backend: &Backend,
        protocol: &str,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("cutover-bench-")
            .tempdir()?;
        let (listen, admin) = (free_addr()?, free_addr()?);
        let mut args = vec![
            listen.to_string(),
            admin.to_string(),
            backend.blue.to_string(),
            backend.green.to_string(),
            dir.path().join("route.json").display().to_string(),
            protocol.to_owned(),
        ];
        if let Some((cert, key)) = tls {
            args.extend([cert.display().to_string(), key.display().to_string()]);
        }
        let process = spawn_role("proxy", &args)?;
        if tls.is_some() {
            crate::wait_listening(listen).await?;
        } else {
            wait_ready(listen, "/").await?;
        }
        wait_ready(admin, "/readyz").await?;
        // Let the first health check pass before measuring.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(Self {
            listen,
            admin,
            process,
            _dir: dir,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// The process's resident set, from /proc.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        cutover_benches::system::resident_memory(self.process.0.id())
    }
}
