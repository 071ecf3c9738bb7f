//! What the proxy's tests share: small hyper backends that say which colour they are and
//! record what they received, a proxy on `127.0.0.1:0`, and clients for both its ports.

#![allow(dead_code, clippy::unwrap_used)]

pub mod raw;

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cutover_proto::v1::proxy_control_client::ProxyControlClient;
use cutover_proxy::{Proxy, ProxyConfig};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// A backend: answers its colour's name (the request's path in `x-path`), `/slow?ms=N` after
/// N ms, `/healthz` with 200. It records when each non-health request arrived, the headers it
/// saw and its body.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: &'static str,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    cancel: CancellationToken,
}

/// One request a backend received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    pub forwarded_for: Option<String>,
    pub via: Option<String>,
    pub host: Option<String>,
    pub body_len: usize,
    pub body: Bytes,
    /// Bytes of its head's header lines (names and values).
    pub header_bytes: usize,
    pub version: http::Version,
}

impl Backend {
    pub async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let log = Arc::clone(&seen);
        tokio::spawn(cutover_daemon::serve::serve_http(
            listener,
            "http",
            // Any head the proxy passes on (it adds `Via` and `X-Forwarded-For` to heads of up
            // to its own 64 KiB), so that a test sees what the proxy does.
            cutover_daemon::Bounds {
                max_header_bytes: 1 << 20,
                ..cutover_daemon::Bounds::default()
            },
            None,
            cancel.clone(),
            move |request| answer(name, Arc::clone(&log), request),
        ));
        Self {
            addr,
            name,
            seen,
            cancel,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn answer(
    name: &'static str,
    log: Arc<Mutex<Vec<Seen>>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/healthz" {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    log.lock().unwrap().push(Seen {
        at,
        path: parts.uri.path().to_owned(),
        forwarded_for: header("x-forwarded-for"),
        via: header("via"),
        host: header("host"),
        body_len: body.len(),
        body: body.clone(),
        header_bytes: parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum(),
        version: parts.version,
    });
    if let Some(ms) = parts
        .uri
        .query()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|ms| ms.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(name)));
    let headers = response.headers_mut();
    headers.insert("x-backend", name.parse().unwrap());
    headers.insert("x-path", parts.uri.path().parse().unwrap());
    Ok(response)
}

/// A proxy running in this process.
pub struct Running {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub state_file: PathBuf,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn start(config: ProxyConfig) -> Self {
        let state_file = config.state_file.clone();
        let proxy = Proxy::open(config).expect("proxy opens");
        let listen = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (listen_addr, admin_addr) = (listen.local_addr().unwrap(), admin.local_addr().unwrap());
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { proxy.run(listen, admin, cancel).await.expect("proxy runs") }
        });
        Self {
            listen: listen_addr,
            admin: admin_addr,
            state_file,
            cancel,
            task,
        }
    }

    /// Stops it and waits until it has.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }

    pub async fn control(&self) -> ProxyControlClient<Channel> {
        ProxyControlClient::connect(format!("http://{}", self.admin))
            .await
            .unwrap()
    }

    /// `Pause` at epoch 1, with the proxy's own hold timeout and no drain: a control client
    /// to end the hold with.
    pub async fn pause(&self) -> ProxyControlClient<Channel> {
        let mut control = self.control().await;
        let pause = cutover_proto::v1::PauseRequest {
            epoch: 1,
            hold_timeout_ms: 0,
            drain_timeout_ms: 0,
        };
        control.pause(pause).await.unwrap();
        control
    }

    /// `Switch` to green at epoch 1, ending the hold of [`pause`](Self::pause): the held
    /// requests it released.
    pub async fn switch_to_green(control: &mut ProxyControlClient<Channel>) -> u64 {
        let switch = cutover_proto::v1::SwitchRequest {
            epoch: 1,
            color: cutover_proto::v1::Color::Green as i32,
        };
        control.switch(switch).await.unwrap().into_inner().released
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    /// A new connection that has sent `request` as it is; read the answer from it.
    pub async fn send_raw(&self, request: &[u8]) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(self.listen).await.unwrap();
        stream.write_all(request).await.unwrap();
        stream
    }

    /// `GET /route` on the admin port, as JSON.
    pub async fn route(&self) -> serde_json::Value {
        let (status, body) = get(&format!("http://{}/route", self.admin)).await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until `GET /route` satisfies `check`, at most 5 s.
    pub async fn wait_route(&self, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let route = self.route().await;
            if check(&route) {
                return;
            }
            assert!(Instant::now() < deadline, "waited 5 s for {what}: {route}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A proxy configuration over one blue and one green backend, with its state in `dir`.
pub fn config(blue: &Backend, green: &Backend, dir: &tempfile::TempDir) -> ProxyConfig {
    ProxyConfig::new(
        vec![blue.url()],
        vec![green.url()],
        dir.path().join("route.json"),
    )
}

/// A blue and a green backend, a folder for the route file, and a proxy in front of them,
/// its configuration changed by `tweak` first.
pub async fn start(
    tweak: impl FnOnce(&mut ProxyConfig),
) -> (Backend, Backend, tempfile::TempDir, Running) {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&blue, &green, &dir);
    tweak(&mut config);
    let proxy = Running::start(config).await;
    (blue, green, dir, proxy)
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// One GET with a fresh pooled client: status and body text.
pub async fn get(url: &str) -> (StatusCode, String) {
    send(&client(), Request::get(url).body(Full::default()).unwrap()).await
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> (StatusCode, String) {
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A lab CA's certificate for the proxy's client port (`listen_tls`), and a client that
/// trusts it.
pub struct LabTls {
    connector: tokio_rustls::TlsConnector,
    _pki: tempfile::TempDir,
}

impl LabTls {
    /// The server side to put in `ProxyConfig::listen_tls`, and the client side.
    pub fn new() -> (cutover_daemon::tls::Tls, Self) {
        use cutover_daemon::tls::{ClientTls, Tls, TlsFiles, lab};
        let pki = tempfile::tempdir().unwrap();
        let ca = lab::Ca::open_or_create(pki.path()).unwrap();
        let sans = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (cert, key) = ca.issue_to(pki.path(), "proxy", &sans, 1).unwrap();
        let server = Tls::load(TlsFiles {
            cert,
            key,
            client_ca: None,
        })
        .unwrap();
        let ca_file = pki.path().join(lab::CA_CERT);
        let client = ClientTls::load(Some(&ca_file), None, false)
            .unwrap()
            .rustls("https://localhost", &[b"http/1.1"])
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(client);
        (
            server,
            Self {
                connector,
                _pki: pki,
            },
        )
    }

    /// A TLS connection to `addr`, handshake done.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        self.connector.connect(name, tcp).await.unwrap()
    }
}
