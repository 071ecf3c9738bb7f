//! Serving on an already-bound listener within [`Bounds`]: at most `max_connections` open
//! (past it the listener stops accepting until one closes), request heads bounded in size
//! (`431`) and in time (`408`), HTTP/2 streams bounded per connection, closes that linger
//! (`closing.rs`); and a graceful shutdown with a deadline: once cancelled, stop accepting,
//! let open connections finish the request they are on for at most `grace`, then close the
//! rest and return. Given a [`Tls`], a listener serves TLS (`tls.rs`): HTTP ports take clients
//! without a certificate to their ops endpoints only, gRPC ports require one.

use std::{
    convert::Infallible,
    error::Error as StdError,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::{
    body::{Body, Incoming},
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::{
    bounds::Bounds,
    closing::{self, Closing},
    metrics as m,
    tls::{ClientCerts, Tls},
};

/// How long a listener waits after a failed accept (out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// How often a listener at its connection limit says so in the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The error of a served hyper connection.
pub type ConnectionError = Box<dyn StdError + Send + Sync>;

/// Serves `handler` on `listener` (HTTP/1.1 and h2c, or over `tls`) within `bounds` until
/// `cancel` fires, then drains open connections for at most `bounds.grace`. `port` names the
/// listener in metrics and logs. With mutual TLS, a client without a certificate reaches the
/// ops endpoints only (`/metrics`, `/healthz`, `/readyz`).
pub async fn serve_http<F, Fut, B>(
    listener: TcpListener,
    port: &'static str,
    bounds: Bounds,
    tls: Option<Tls>,
    cancel: CancellationToken,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let builder = Arc::new(http_builder(&bounds));
    let stopping = cancel.clone();
    accept(listener, port, bounds, cancel, |accepted, graceful| {
        let (builder, handler) = (Arc::clone(&builder), handler.clone());
        let (watcher, stopping, tls) = (graceful.watcher(), stopping.clone(), tls.clone());
        tokio::spawn(accepted.guard.run(async move {
            if !first_byte(&accepted.stream, bounds.header_timeout, &stopping).await {
                return;
            }
            let Some(tls) = tls else {
                return serve_one(accepted.stream, &builder, true, handler, watcher).await;
            };
            let timeout = bounds.header_timeout;
            let certs = ClientCerts::Optional;
            let Some(secured) = tls
                .accept(accepted.stream, accepted.peer, port, certs, timeout)
                .await
            else {
                return;
            };
            let admitted = !tls.mutual() || secured.client_certified;
            serve_one(secured.stream, &builder, admitted, handler, watcher).await;
        }));
    })
    .await;
}

/// Serves one connection `io` with `handler`; a client not `admitted` (no client certificate
/// on a mutual-TLS port) gets the ops endpoints only.
async fn serve_one<S, F, Fut, B>(
    io: S,
    builder: &auto::Builder<TokioExecutor>,
    admitted: bool,
    handler: F,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let (io, closing) = closing::track(io);
    let service = service_fn(move |request: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            if !admitted && !crate::ops::is_ops_path(request.uri().path()) {
                return Ok::<_, Infallible>(certificate_required(&request).map(Either::Right));
            }
            Ok(handler(request).await?.map(Either::Left))
        }
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    finish(watcher.watch(connection), closing).await;
}

/// What a client without a certificate gets on a mutual-TLS port beyond the ops endpoints: a
/// gRPC `UNAUTHENTICATED`, or a `403`.
fn certificate_required<T>(request: &Request<T>) -> Response<Full<Bytes>> {
    const DETAIL: &str = "this port requires a client certificate (mutual TLS) for everything \
                          but /metrics, /healthz and /readyz: give the client --tls-cert and \
                          --tls-key, signed by the server's --tls-client-ca";
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let mut response = Response::builder();
    let body = if grpc {
        response = response
            .header(header::CONTENT_TYPE, "application/grpc")
            .header("grpc-status", "16")
            .header("grpc-message", DETAIL.replace(' ', "%20"));
        Bytes::new()
    } else {
        response = response
            .status(StatusCode::FORBIDDEN)
            .header(header::CONTENT_TYPE, "application/json");
        Bytes::from(format!(
            "{{\"error\":\"client_certificate_required\",\"detail\":\"{DETAIL}\"}}\n"
        ))
    };
    response
        .body(Full::new(body))
        .expect("static headers make a response")
}

/// Waits for a new connection's first byte, for at most `timeout`: hyper's own head timeout
/// starts only once a byte has come, so a client that connects and sends nothing would keep
/// its place for ever. `false`: nothing came in time, or the daemon is stopping.
pub async fn first_byte(
    stream: &TcpStream,
    timeout: Duration,
    stopping: &CancellationToken,
) -> bool {
    tokio::select! {
        ready = tokio::time::timeout(timeout, stream.readable()) => matches!(ready, Ok(Ok(()))),
        () = stopping.cancelled() => false,
    }
}

/// hyper's server within `bounds`: HTTP/1.1 request heads of at most `max_header_bytes`
/// (`431` past it) arriving within `header_timeout`; at most `max_streams` streams per
/// HTTP/2 connection, and header lists of twice `max_header_bytes`.
pub fn http_builder(bounds: &Bounds) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout)
        .max_buf_size(bounds.max_header_bytes.max(Bounds::MIN_HEADER_BYTES));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(bounds.max_streams)
        .max_header_list_size(bounds.http2_header_list_bytes());
    builder
}

/// One accepted connection, and what it holds of the listener's bounds.
#[derive(Debug)]
pub struct Accepted {
    /// The client socket (`TCP_NODELAY` set).
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its place among the listener's `max_connections`; run the connection inside it.
    pub guard: Guard,
}

/// A connection's place among its listener's `max_connections`, freed when dropped.
#[derive(Debug)]
pub struct Guard {
    _permit: OwnedSemaphorePermit,
    closed: CancellationToken,
    port: &'static str,
}

impl Guard {
    /// Runs `connection` until it ends, or until the listener's grace period after a
    /// shutdown is over (then it is dropped, which closes its socket).
    ///
    /// The connection's future is boxed: an `async fn` keeps its arguments in its own state
    /// and moves them again where it awaits them, so a future passed inline would take twice
    /// its size in every connection's task (7 KB instead of 3.5 for a held TLS connection).
    pub fn run(
        self,
        connection: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send {
        self.run_boxed(Box::pin(connection))
    }

    async fn run_boxed(self, connection: Pin<Box<dyn Future<Output = ()> + Send>>) {
        tokio::select! {
            () = connection => {}
            () = self.closed.cancelled() => {}
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        metrics::gauge!(m::CONNECTIONS, "port" => self.port).decrement(1.0);
    }
}

/// Accepts connections on `listener` until `cancel` fires, at most `bounds.max_connections`
/// open at once, handing each one to `connection`, which serves it inside its guard and
/// watches it with the `GracefulShutdown` given; then waits up to `bounds.grace` for every
/// watched connection to finish the request it is on, and closes the rest.
pub async fn accept(
    listener: TcpListener,
    port: &'static str,
    bounds: Bounds,
    cancel: CancellationToken,
    mut connection: impl FnMut(Accepted, &GracefulShutdown),
) {
    let graceful = GracefulShutdown::new();
    let places = Arc::new(Semaphore::new(bounds.max_connections.max(1)));
    let closed = CancellationToken::new();
    let mut warned = None;
    loop {
        let Some(permit) = place(&places, port, &bounds, &cancel, &mut warned).await else {
            break;
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // A connection reset before accept concerns that connection only; out of
                    // file descriptors (the process's limit is below --max-connections), the
                    // next accept would fail at once too: let connections close meanwhile.
                    tracing::warn!(%error, port, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        // Small request/response exchanges: do not wait to coalesce packets.
        let _ = stream.set_nodelay(true);
        metrics::gauge!(m::CONNECTIONS, "port" => port).increment(1.0);
        let guard = Guard {
            _permit: permit,
            closed: closed.clone(),
            port,
        };
        connection(
            Accepted {
                stream,
                peer,
                guard,
            },
            &graceful,
        );
    }
    drop(listener);
    if tokio::time::timeout(bounds.grace, graceful.shutdown())
        .await
        .is_err()
    {
        let open = bounds.max_connections.max(1) - places.available_permits();
        tracing::warn!(
            port,
            open,
            grace_ms = bounds.grace.as_millis() as u64,
            "shutdown grace period over: closing the connections still open"
        );
    }
    closed.cancel();
}

/// A place for one more connection; waits (not accepting) while every place is taken.
/// `None` once `cancel` fires. Warns at most every [`WARN_EVERY`] (`warned`: when it last did).
async fn place(
    places: &Arc<Semaphore>,
    port: &'static str,
    bounds: &Bounds,
    cancel: &CancellationToken,
    warned: &mut Option<Instant>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = Arc::clone(places).try_acquire_owned() {
        return Some(permit);
    }
    metrics::counter!(m::CONNECTION_LIMIT_REACHED, "port" => port).increment(1);
    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
        *warned = Some(Instant::now());
        tracing::warn!(
            port,
            max_connections = bounds.max_connections,
            "connection limit reached: not accepting until a connection closes"
        );
    }
    tokio::select! {
        () = cancel.cancelled() => None,
        permit = Arc::clone(places).acquire_owned() => permit.ok(),
    }
}

/// Runs a served hyper connection to its end, then closes its socket: a `408` if it ended
/// waiting for a request head, lingering in any case (`closing.rs`).
pub async fn finish<S>(
    connection: impl Future<Output = Result<(), ConnectionError>>,
    closing: Closing<S>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let head_timed_out = match connection.await {
        Ok(()) => false,
        Err(error) => {
            tracing::debug!(%error, "connection ended with an error");
            error
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout)
        }
    };
    // Boxed: allocated only at the close, instead of weighing on every connection task.
    Box::pin(closing.close(head_timed_out)).await;
}

/// The connections of a tonic server on `listener`, within `bounds.max_connections` (tonic
/// takes `bounds.max_streams` itself), over `tls` when given (a client certificate required
/// if it names a client CA); each closes when the grace period after `cancel` is over.
pub fn incoming(
    listener: TcpListener,
    port: &'static str,
    bounds: Bounds,
    tls: Option<Tls>,
    cancel: CancellationToken,
) -> impl Stream<Item = io::Result<Counted>> + Send + 'static {
    // As many as there are places: a connection never waits for room here.
    let (sender, receiver) = mpsc::channel(bounds.max_connections.max(1));
    // tonic drains its connections itself once `cancel` fires; what is still open when the
    // grace period is over is closed here.
    let over = CancellationToken::new();
    tokio::spawn({
        let (cancel, over) = (cancel.clone(), over.clone());
        async move {
            cancel.cancelled().await;
            tokio::time::sleep(bounds.grace).await;
            over.cancel();
        }
    });
    let stopping = cancel.clone();
    tokio::spawn(accept(
        listener,
        port,
        bounds,
        cancel,
        move |accepted, _| {
            let closed = Box::pin(over.clone().cancelled_owned());
            let Some(tls) = tls.clone() else {
                let counted = Counted {
                    stream: Io::Plain(accepted.stream),
                    peer: accepted.peer,
                    _guard: accepted.guard,
                    closed,
                };
                // Closed only once tonic stopped: the connection is dropped.
                let _ = sender.try_send(Ok(counted));
                return;
            };
            // The handshake runs on the connection's own task, not in the accept loop.
            let (sender, stopping) = (sender.clone(), stopping.clone());
            tokio::spawn(async move {
                let Accepted {
                    stream,
                    peer,
                    guard,
                } = accepted;
                if !first_byte(&stream, bounds.header_timeout, &stopping).await {
                    return;
                }
                let certs = ClientCerts::Required;
                let timeout = bounds.header_timeout;
                let Some(secured) = tls.accept(stream, peer, port, certs, timeout).await else {
                    return;
                };
                let counted = Counted {
                    stream: Io::Tls(Box::new(secured.stream)),
                    peer,
                    _guard: guard,
                    closed,
                };
                let _ = sender.send(Ok(counted)).await;
            });
        },
    ));
    ReceiverStream::new(receiver)
}

/// A connection of a tonic server that holds its place and closes at the end of the grace.
#[derive(Debug)]
pub struct Counted {
    stream: Io,
    peer: SocketAddr,
    _guard: Guard,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Counted {
    fn check_closed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.closed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the shutdown grace period is over",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.stream.tcp().local_addr().ok(),
            remote_addr: Some(self.peer),
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_closed(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_closed(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_closed(cx)?;
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A served socket: plain, or after its TLS handshake.
#[derive(Debug)]
pub enum Io {
    /// Plain text.
    Plain(TcpStream),
    /// TLS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(stream) => stream,
            Self::Tls(stream) => stream.get_ref().0,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
