//! The backends of each colour: round-robin over the healthy ones, pooled keep-alive HTTP/1.1
//! connections, and an active health check of `/healthz`. Backends at `https://` addresses are
//! reached over TLS (verified with the process's `ClientTls`), through hyper only.

use std::{
    fmt, io,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cutover_daemon::{Classify, ErrorCode};
use cutover_proto::Color;
use http::{
    Request, Uri,
    uri::{Authority, Scheme},
};
use http_body_util::Empty;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::{net::TcpStream, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{forward::Forwarded, metrics as m, workers};

/// The client of the backends: plain or TLS, by the URI's scheme.
pub type BackendClient<B> = Client<hyper_rustls::HttpsConnector<HttpConnector>, B>;

/// How long a connection to a backend may take before the request fails with 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an idle pooled connection is kept: less than `cutover node`'s default
/// `--header-timeout` (30 s), after which the node closes an idle keep-alive connection, so
/// that the proxy does not pick a connection the node is closing at that moment.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a health check may take before the backend counts as down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// A backend URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Not an `http://host:port` or `https://host:port` URL.
    #[error("{color} backend {url:?} is not a URL like http://127.0.0.1:7070 ({problem})")]
    BadUrl {
        /// Which list it was in.
        color: Color,
        /// The URL given.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// A colour without backends.
    #[error("no {color} backend given: pass at least one URL")]
    None {
        /// The colour.
        color: Color,
    },
}

impl Classify for BackendError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }
}

/// Idle connections kept per backend for the HTTP/1.1 relay.
const MAX_IDLE: usize = 1024;
/// Connections the relay opens to one backend at once. A released hold of thousands of
/// requests would otherwise connect all at once, past a backend's accept backlog (128 by
/// default), and wait out SYN retransmits (1 s, 3 s) or fail at the connect timeout.
const MAX_CONNECTING: usize = 64;

/// Idle connections to a backend and since when each idled, the most recently used last.
type Pool = Mutex<Vec<(TcpStream, Instant)>>;

/// One backend.
#[derive(Debug)]
pub struct Backend {
    color: Color,
    scheme: Scheme,
    authority: Authority,
    url: String,
    healthy: AtomicBool,
    /// The relay's idle keep-alive connections: a pool per worker (`workers.rs`), as a
    /// connection answers to the reactor of the worker that opened it.
    idle: Box<[Pool]>,
    /// Permits to open a connection ([`MAX_CONNECTING`]).
    connecting: Semaphore,
}

impl Backend {
    /// The colour it serves.
    pub fn color(&self) -> Color {
        self.color
    }

    /// Its URL, as configured (for errors and logs).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme.clone()
    }

    /// Its `host:port`.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// An idle pooled connection. One the backend has closed (or sent bytes on unasked) or
    /// that idled past the pool's timeout is dropped on the way.
    fn checkout(&self) -> Option<TcpStream> {
        let mut idle = self.pool().lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((stream, since)) = idle.pop() {
            if self.usable(&stream, Some(since)) {
                return Some(stream);
            }
        }
        None
    }

    /// This worker's pool of idle connections.
    fn pool(&self) -> &Pool {
        &self.idle[workers::current() % self.idle.len()]
    }

    /// Whether an idle connection (idle since `since`, if known) can take a request: not past
    /// the pool's idle timeout, and not readable. Readable while idle means the backend closed
    /// it (or sent bytes nobody asked for); the reactor saw that already, so this costs no
    /// syscall.
    pub(crate) fn usable(&self, stream: &TcpStream, since: Option<Instant>) -> bool {
        let mut context = Context::from_waker(Waker::noop());
        stream.poll_read_ready(&mut context).is_pending()
            && since.is_none_or(|since| since.elapsed() < IDLE_TIMEOUT)
    }

    /// Returns a connection whose exchange ended cleanly to the pool.
    pub(crate) fn checkin(&self, stream: TcpStream) {
        let mut idle = self.pool().lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((stream, Instant::now()));
        }
    }

    /// A pooled connection (unless `fresh`), else a new one: `true` with a pooled one. A
    /// request that waits for its turn to connect takes a connection returned meanwhile.
    pub(crate) async fn connection(&self, fresh: bool) -> io::Result<(TcpStream, bool)> {
        let pooled = || if fresh { None } else { self.checkout() };
        if let Some(stream) = pooled() {
            return Ok((stream, true));
        }
        let _turn = self.connecting.acquire().await.map_err(io::Error::other)?;
        if let Some(stream) = pooled() {
            return Ok((stream, true));
        }
        Ok((self.open().await?, false))
    }

    /// A new connection, opened in its turn ([`MAX_CONNECTING`]).
    pub(crate) async fn connect(&self) -> io::Result<TcpStream> {
        let _turn = self.connecting.acquire().await.map_err(io::Error::other)?;
        self.open().await
    }

    /// A new connection, `TCP_NODELAY` set, within the connect timeout.
    async fn open(&self) -> io::Result<TcpStream> {
        // An IPv6 host comes in brackets ("[::1]"), which a resolver does not take.
        let host = self
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let address = (host, self.authority.port_u16().unwrap_or(80));
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {CONNECT_TIMEOUT:?}"),
                )
            })??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Marks it down until the next health check passes (a connection to it failed).
    pub fn mark_down(&self) {
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(backend = %self.url, "backend marked down: connection failed");
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// How the proxy talks to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over pooled keep-alive connections: every HTTP server speaks it, but each
    /// concurrent request needs a connection of its own, so a hold released at once opens
    /// as many connections as it held requests.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c), one multiplexed connection per backend: a released
    /// hold reuses it. For backends that speak h2c, as `cutover node` does.
    H2c,
}

/// The backends of both colours and the client that reaches them.
#[derive(Debug)]
pub struct Upstreams {
    sides: [Side; 2],
    client: BackendClient<Forwarded>,
    /// Every backend speaks HTTP/1.1 in plain text: the relay can reach them.
    relayed: bool,
}

#[derive(Debug)]
struct Side {
    color: Color,
    backends: Vec<Arc<Backend>>,
    next: AtomicUsize,
}

impl Upstreams {
    /// Parses the URLs of each colour; each must be `http://host:port` or `https://host:port`
    /// (a trailing `/` is allowed; a path or a query is refused). `workers`: the proxy's
    /// worker threads, each with a pool of connections to every backend.
    pub fn new(
        blue: &[String],
        green: &[String],
        protocol: UpstreamProtocol,
        workers: usize,
    ) -> Result<Self, BackendError> {
        let side = |color, urls: &[String]| -> Result<Side, BackendError> {
            if urls.is_empty() {
                return Err(BackendError::None { color });
            }
            let backends = urls
                .iter()
                .map(|url| parse_backend(color, url, workers).map(Arc::new))
                .collect::<Result<_, _>>()?;
            Ok(Side {
                color,
                backends,
                next: AtomicUsize::new(0),
            })
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_keepalive(Some(Duration::from_secs(30)));
        connector.enforce_http(false);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(1024)
            .http2_only(protocol == UpstreamProtocol::H2c)
            .build(cutover_daemon::tls::ClientTls::current().https(connector));
        let sides = [side(Color::Blue, blue)?, side(Color::Green, green)?];
        let tls = sides
            .iter()
            .flat_map(|side| &side.backends)
            .any(|backend| backend.scheme == Scheme::HTTPS);
        Ok(Self {
            sides,
            client,
            relayed: protocol == UpstreamProtocol::Http1 && !tls,
        })
    }

    fn side(&self, color: Color) -> &Side {
        &self.sides[match color {
            Color::Blue => 0,
            Color::Green => 1,
        }]
    }

    /// The next backend of `color`, round-robin over the healthy ones; when none is healthy,
    /// over all of them (a stale check should not refuse traffic a backend could serve).
    pub fn pick(&self, color: Color) -> &Arc<Backend> {
        let side = self.side(color);
        let count = side.backends.len();
        let start = side.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|i| &side.backends[(start + i) % count])
            .find(|backend| backend.healthy.load(Ordering::Relaxed))
            .unwrap_or(&side.backends[start % count])
    }

    /// Whether clients' HTTP/1.1 requests go through the relay: the backends speak HTTP/1.1
    /// and none is reached over TLS (the relay speaks plain text to them; otherwise every
    /// request goes through hyper's client).
    pub fn relayed(&self) -> bool {
        self.relayed
    }

    /// The pooled client.
    pub fn client(&self) -> &BackendClient<Forwarded> {
        &self.client
    }

    /// Checks every backend's `/healthz` each `interval` until cancelled.
    pub async fn check_health(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(HEALTH_TIMEOUT));
        connector.enforce_http(false);
        let connector = cutover_daemon::tls::ClientTls::current().https(connector);
        let client: BackendClient<Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            for side in &self.sides {
                // Concurrently, so one backend that does not answer delays no other check.
                let mut probes = tokio::task::JoinSet::new();
                for backend in &side.backends {
                    let (client, backend) = (client.clone(), Arc::clone(backend));
                    probes.spawn(async move { probe(&client, &backend).await });
                }
                let healthy = probes.join_all().await.into_iter().filter(|ok| *ok).count();
                metrics::gauge!(m::HEALTHY_BACKENDS, "color" => side.color.as_str())
                    .set(healthy as f64);
            }
        }
    }
}

async fn probe(client: &BackendClient<Empty<Bytes>>, backend: &Backend) -> bool {
    let uri = Uri::builder()
        .scheme(backend.scheme())
        .authority(backend.authority.clone())
        .path_and_query("/healthz")
        .build()
        .expect("scheme, authority and a fixed path make a URI");
    let request = Request::get(uri)
        .body(Empty::new())
        .expect("a GET with no headers is valid");
    let outcome = tokio::time::timeout(HEALTH_TIMEOUT, client.request(request)).await;
    let healthy = matches!(&outcome, Ok(Ok(response)) if response.status().is_success());
    let was = backend.healthy.swap(healthy, Ordering::Relaxed);
    if was != healthy {
        let why = match &outcome {
            Ok(Ok(response)) => format!("status {}", response.status()),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer in {HEALTH_TIMEOUT:?}"),
        };
        if healthy {
            tracing::info!(backend = %backend.url, "backend healthy again");
        } else {
            tracing::warn!(backend = %backend.url, %why, "backend failed its health check");
        }
    }
    healthy
}

fn parse_backend(color: Color, url: &str, workers: usize) -> Result<Backend, BackendError> {
    let bad = |problem: &str| BackendError::BadUrl {
        color,
        url: url.to_owned(),
        problem: problem.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        Some(other) => {
            return Err(bad(&format!(
                "scheme {other} is not supported; use http or https"
            )));
        }
        None => return Err(bad("no scheme; start it with http:// or https://")),
    };
    let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
    if authority.port_u16().is_none() {
        return Err(bad("no port"));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(bad("a path or query is not supported"));
    }
    Ok(Backend {
        color,
        url: format!("{scheme}://{authority}"),
        scheme,
        authority,
        healthy: AtomicBool::new(true),
        idle: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
        connecting: Semaphore::new(MAX_CONNECTING),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn refuses_what_is_not_http_host_port() {
        for (url, says) in [
            ("ftp://a:1", "scheme ftp"),
            ("a:1", "no scheme"),
            ("http://a", "no port"),
            ("http://a:1/x", "path"),
            ("http://", ""),
        ] {
            let error =
                Upstreams::new(&urls(&[url]), &urls(&["http://b:2"]), Default::default(), 1)
                    .expect_err(url)
                    .to_string();
            assert!(error.contains(url) && error.contains(says), "{error}");
            assert!(error.starts_with("blue backend"), "{error}");
        }
        let error = Upstreams::new(&urls(&["http://a:1/"]), &[], Default::default(), 1)
            .expect_err("no green");
        assert_eq!(
            error,
            BackendError::None {
                color: Color::Green
            }
        );
    }

    #[tokio::test]
    async fn round_robin_skips_backends_that_are_down_unless_all_are() {
        let upstreams = Upstreams::new(
            &urls(&["http://a:1", "http://b:2", "http://c:3"]),
            &urls(&["http://g:4"]),
            Default::default(),
            1,
        )
        .expect("valid");
        let picks = |n| {
            (0..n)
                .map(|_| upstreams.pick(Color::Blue).url().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(3), ["http://a:1", "http://b:2", "http://c:3"]);
        upstreams.pick(Color::Blue); // a
        upstreams.pick(Color::Blue); // b
        upstreams.pick(Color::Blue); // c
        upstreams.side(Color::Blue).backends[1].mark_down();
        let seen = picks(4);
        assert!(!seen.contains(&"http://b:2".to_owned()), "{seen:?}");
        for backend in &upstreams.side(Color::Blue).backends {
            backend.mark_down();
        }
        assert_eq!(picks(3).len(), 3, "all down: still picks");
        assert_eq!(upstreams.pick(Color::Green).url(), "http://g:4");
    }
}
