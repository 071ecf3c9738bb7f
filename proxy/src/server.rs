//! A running proxy: client traffic on one listener; on the admin listener, gRPC
//! `ProxyControl` (told apart by its `application/grpc` content type) and HTTP `/metrics`,
//! `/healthz`, `/readyz` and `GET /route`.

use std::{convert::Infallible, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use cutover_daemon::{Bounds, Readiness, auth::BearerAuth, serve::serve_http};
use cutover_proto::{Color, v1::proxy_control_server::ProxyControlServer};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{
    accept,
    control::{Controller, HoldConfig},
    forward::Forwarder,
    grpc::ProxyControlService,
    hold::{Gate, Limits},
    metrics as m,
    route::{RouteFile, RouteFileError, RouteState},
    upstream::{BackendError, UpstreamProtocol, Upstreams},
    workers::Workers,
};

/// Everything a proxy is configured with.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Blue backend URLs (`http://host:port`).
    pub blue: Vec<String>,
    /// Green backend URLs.
    pub green: Vec<String>,
    /// Where the route persists.
    pub state_file: PathBuf,
    /// The bearer token ProxyControl calls must present, if any.
    pub token: Option<String>,
    /// Bounds of a hold.
    pub limits: Limits,
    /// Timeouts of a hold.
    pub hold: HoldConfig,
    /// Longest wait for a backend's response headers before answering 504.
    pub upstream_timeout: Duration,
    /// How often each backend's `/healthz` is checked.
    pub health_interval: Duration,
    /// HTTP/1.1 or h2c to the backends.
    pub upstream_protocol: UpstreamProtocol,
    /// Requests of a hold that wait read (in the relay or hyper), quick to release, before
    /// connections accepted during the hold wait as bare sockets, small to keep (`accept.rs`).
    pub held_in_hyper: u64,
    /// Threads that serve client connections, each a single-threaded runtime (`workers.rs`);
    /// 0 counts as 1. By default one per core.
    pub workers: usize,
    /// The bounds of both ports (connections, request heads, HTTP/2 streams, shutdown
    /// grace); `max_connections` should exceed `limits.max_held`, since each held request
    /// keeps its connection.
    pub bounds: Bounds,
    /// TLS on the admin port (`--tls-cert`, `--tls-key`, `--tls-client-ca`); none: plain
    /// text.
    pub tls: Option<cutover_daemon::tls::Tls>,
    /// TLS on the client port (`--listen-tls`: the certificate of `tls`); clients are not
    /// asked for certificates there.
    pub listen_tls: Option<cutover_daemon::tls::Tls>,
}

impl ProxyConfig {
    /// A configuration with the defaults of `cutover proxy`.
    pub fn new(blue: Vec<String>, green: Vec<String>, state_file: PathBuf) -> Self {
        Self {
            blue,
            green,
            state_file,
            token: None,
            limits: Limits {
                max_held: 10_000,
                max_held_bytes: 64 << 20,
            },
            hold: HoldConfig::default(),
            upstream_timeout: Duration::from_secs(30),
            health_interval: Duration::from_secs(1),
            upstream_protocol: UpstreamProtocol::Http1,
            held_in_hyper: accept::HELD_IN_HYPER,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            bounds: Bounds {
                max_connections: 11_000,
                ..Bounds::default()
            },
            tls: None,
            listen_tls: None,
        }
    }
}

/// Why a proxy could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A backend URL is unusable.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The route file cannot be read.
    #[error(transparent)]
    Route(#[from] RouteFileError),
    /// A worker thread could not start.
    #[error("cannot start the proxy's worker threads: {0}")]
    Workers(#[source] std::io::Error),
}

/// A proxy, configured and with its route loaded, ready to run.
#[derive(Debug)]
pub struct Proxy {
    config: ProxyConfig,
    upstreams: Arc<Upstreams>,
    route: RouteState,
    readiness: Readiness,
}

impl Proxy {
    /// Checks the backends and loads the route (a missing file starts on blue at epoch 0).
    pub fn open(config: ProxyConfig) -> Result<Self, ServeError> {
        let upstreams = Arc::new(Upstreams::new(
            &config.blue,
            &config.green,
            config.upstream_protocol,
            config.workers,
        )?);
        let file = RouteFile::new(&config.state_file);
        let route = file.load()?.unwrap_or_else(|| RouteState::new(Color::Blue));
        Ok(Self {
            config,
            upstreams,
            route,
            readiness: Readiness::new(),
        })
    }

    /// The route as loaded.
    pub fn route(&self) -> RouteState {
        self.route
    }

    /// Serves clients on `listen` and the admin port on `admin` until `cancel` fires, then
    /// lets open exchanges finish.
    pub async fn run(
        self,
        listen: TcpListener,
        admin: TcpListener,
        cancel: CancellationToken,
    ) -> Result<(), ServeError> {
        m::describe();
        let workers = Workers::start(self.config.workers).map_err(ServeError::Workers)?;
        let gate = Gate::new(self.route.active, self.config.limits);
        let controller = Controller::start(
            Arc::clone(&gate),
            RouteFile::new(&self.config.state_file),
            self.route,
            self.config.hold,
            cancel.child_token(),
        );
        // A stop inside a hold answers the held requests 503 instead of keeping them until
        // the grace period runs out; the file keeps the hold for the restarted proxy.
        let stopper = tokio::spawn({
            let (gate, cancel) = (Arc::clone(&gate), cancel.clone());
            async move {
                cancel.cancelled().await;
                gate.stop();
            }
        });
        let forwarder = Forwarder::new(
            Arc::clone(&gate),
            Arc::clone(&self.upstreams),
            self.config.upstream_timeout,
        );
        let health = tokio::spawn(
            Arc::clone(&self.upstreams)
                .check_health(self.config.health_interval, cancel.child_token()),
        );
        let admin_task = tokio::spawn(serve_admin(
            admin,
            Arc::clone(&controller),
            BearerAuth::new(self.config.token.clone()),
            self.readiness.clone(),
            self.config.bounds,
            self.config.tls.clone(),
            cancel.child_token(),
        ));
        self.readiness.set_ready();
        tracing::info!(
            epoch = %self.route.epoch,
            active = %self.route.active,
            holding = self.route.is_holding(),
            "proxy serving"
        );
        let in_hyper = self.config.held_in_hyper;
        let clients = cancel.child_token();
        let bounds = self.config.bounds;
        let tls = self.config.listen_tls.clone();
        accept::serve_clients(
            listen, clients, bounds, gate, forwarder, in_hyper, tls, &workers,
        )
        .await;
        workers.stop().await;
        self.readiness.set_not_ready();
        cancel.cancel();
        let _ = admin_task.await;
        let _ = health.await;
        let _ = stopper.await;
        controller.stopped().await;
        tracing::info!("proxy stopped");
        Ok(())
    }
}

async fn serve_admin(
    listener: TcpListener,
    controller: Arc<Controller>,
    auth: BearerAuth,
    readiness: Readiness,
    bounds: Bounds,
    tls: Option<cutover_daemon::tls::Tls>,
    cancel: CancellationToken,
) {
    let grpc = tonic::service::Routes::new(ProxyControlServer::with_interceptor(
        ProxyControlService::new(Arc::clone(&controller)),
        auth,
    ))
    .add_service(cutover_proto::reflection())
    .prepare();
    serve_http(
        listener,
        "admin",
        bounds,
        tls,
        cancel,
        move |request: Request<Incoming>| {
            let (grpc, controller, readiness) =
                (grpc.clone(), Arc::clone(&controller), readiness.clone());
            async move {
                let is_grpc = request
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                if is_grpc {
                    return grpc.oneshot(request).await;
                }
                let response = admin_http(&request, &controller, &readiness).await;
                Ok::<_, Infallible>(response.map(tonic::body::Body::new))
            }
        },
    )
    .await;
}

async fn admin_http(
    request: &Request<Incoming>,
    controller: &Controller,
    readiness: &Readiness,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if let Some(response) = cutover_daemon::ops::respond(request.method(), path, readiness) {
        return response;
    }
    let (status, text) = match (request.method(), path) {
        (&Method::GET | &Method::HEAD, "/route") => (StatusCode::OK, route_json(controller).await),
        (_, "/route") => (
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method_not_allowed","detail":"GET /route; change the route with gRPC ProxyControl"}"#.to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            r#"{"error":"not_found","detail":"try /route, /metrics, /healthz or /readyz"}"#.to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(text + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

async fn route_json(controller: &Controller) -> String {
    let (route, gate) = controller.status().await;
    let deadline = route.hold_deadline();
    let mode = if deadline.is_some() {
        "holding"
    } else {
        "forwarding"
    };
    serde_json::json!({
        "epoch": route.epoch.0,
        "active": route.active.as_str(),
        "mode": mode,
        "held": gate.held,
        "held_bytes": gate.held_bytes,
        "in_flight": gate.in_flight,
        "hold_deadline_unix_ms": deadline,
    })
    .to_string()
}
