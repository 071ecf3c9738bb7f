//! Client connections: served by the HTTP/1.1 relay (`relay.rs`) when the backends speak
//! HTTP/1.1, by hyper otherwise and for what the relay leaves to it.
//!
//! A request held inside hyper costs ~19 KB over HTTP/1.1 (hyper gives each connection an
//! 8 KiB read and an 8 KiB write buffer once it reads a request), one held in the relay ~5 KB
//! (its read buffer), and a connection that waits as a bare socket, its request left unread in
//! the kernel's buffer, ~2.5 KB (`benches/RESULTS.md`). The bare socket costs more at the
//! release, though: the request still has to be read, ~10 ms more for 400 of them on two
//! cores. So the first [`HELD_IN_HYPER`] requests of a hold (the default of
//! `ProxyConfig::held_in_hyper`) wait read, ready to go, and connections accepted past that
//! wait as bare sockets, which keeps a hold of 10,000 requests on their own connections
//! within ~40 MiB. Clients open such connections in every hold: each held request keeps its
//! connection busy, so a client's next request needs a new one.
//!
//! Over TLS (`--listen-tls`) the same, once the handshake is done: the relay or hyper serve
//! the decrypted stream, and past the first `HELD_IN_HYPER` a held request waits with its
//! head read (it cannot wait unread in the kernel's buffer, encrypted), ~11 KB each with
//! rustls's state of the connection (its 4 KiB read buffer and keys among it).
//!
//! Each connection is served on one of the proxy's worker threads (`workers.rs`); the accept
//! loop and the hold's bookkeeping stay on the runtime `Proxy::run` was called on.
//!
//! The request's head is read with `MSG_PEEK` to learn what the gate counts (its declared body
//! bytes); a client that goes away meanwhile frees its slot at once (the socket's read side
//! closes). HTTP/2 connections go to hyper at once and are held stream by stream, which is
//! already cheap: their streams share the connection's buffers.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use cutover_daemon::{
    Bounds,
    closing::{self, Closing},
    serve::{ConnectionError, accept, finish, first_byte, http_builder},
    tls::{ClientCerts, Secured, Tls, TlsStream},
};
use http::{HeaderValue, header};
use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{
        conn::auto,
        graceful::{GracefulConnection, Watcher},
    },
};
use tokio::{
    io::Interest,
    net::{TcpListener, TcpStream},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

use crate::{
    forward::Forwarder,
    hold::{Admission, Gate, Release},
    metrics as m,
    relay::{Ended, Prefixed, Relay},
    workers::Workers,
};

/// Requests of a hold that wait read (in the relay or in hyper) before new connections wait
/// as bare sockets.
pub(crate) const HELD_IN_HYPER: u64 = 1_000;
/// Bytes peeked for a request's head: a head longer than this is held read instead.
const PEEK_BYTES: usize = 4096;
/// Headers parsed in a peeked head.
const MAX_HEADERS: usize = 100;
/// How long a connection whose hold ended in a shutdown gets to receive its 503.
const LAST_ANSWER: Duration = Duration::from_secs(1);

type Builder = auto::Builder<TokioExecutor>;

/// What becomes of a connection after the 503 of its expired hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The proxy is stopping: close it.
    Close,
    /// It serves the client's next requests as usual.
    KeepAlive,
}

/// Serves client connections on `listener` within `bounds` until `cancel` fires, then lets
/// open exchanges finish for at most the grace period. Each connection is served on one of
/// `workers`, round-robin. Past `in_hyper` held requests, connections accepted during a hold
/// wait as bare sockets. With `tls`, each connection is served the same way after its
/// handshake, except that past `in_hyper` it waits with its request's head read (decrypted).
#[allow(clippy::too_many_arguments)]
pub async fn serve_clients(
    listener: TcpListener,
    cancel: CancellationToken,
    bounds: Bounds,
    gate: Arc<Gate>,
    forwarder: Arc<Forwarder>,
    in_hyper: u64,
    tls: Option<Tls>,
    workers: &Workers,
) {
    let builder = Arc::new(http_builder(&bounds));
    let stopping = cancel.clone();
    accept(listener, "clients", bounds, cancel, |accepted, graceful| {
        let client = Client {
            peer: accepted.peer,
            forwarder: Arc::clone(&forwarder),
            builder: Arc::clone(&builder),
            bounds,
        };
        let (watcher, guard) = (graceful.watcher(), accepted.guard);
        let cancel = stopping.clone();
        if let Some(tls) = &tls {
            let (tls, gate) = (tls.clone(), Arc::clone(&gate));
            workers.serve(accepted.stream, move |stream| {
                guard.run(client.secured(stream, tls, gate, in_hyper, watcher, cancel))
            });
            return;
        }
        // Two tasks of their own sizes: one that waits in a hold stays small.
        if gate.holding_at_least(in_hyper) {
            let gate = Arc::clone(&gate);
            workers.serve(accepted.stream, |stream| {
                guard.run(client.held(stream, gate, watcher, cancel))
            });
        } else {
            workers.serve(accepted.stream, |stream| {
                guard.run(client.run(stream, Vec::new(), watcher, cancel))
            });
        }
    })
    .await;
}

/// What serving one client connection takes; small, because thousands of them wait in a hold.
struct Client {
    peer: SocketAddr,
    forwarder: Arc<Forwarder>,
    builder: Arc<Builder>,
    bounds: Bounds,
}

impl Client {
    /// A connection to serve over TLS: its handshake, then the relay or hyper as for plain
    /// text. During a hold past its first `in_hyper` requests, the request's head is read
    /// (decrypted) and the connection waits without the relay's or hyper's buffers, like the
    /// bare sockets of plain text.
    async fn secured(
        self,
        stream: TcpStream,
        tls: Tls,
        gate: Arc<Gate>,
        in_hyper: u64,
        watcher: Watcher,
        cancel: CancellationToken,
    ) {
        let timeout = self.bounds.header_timeout;
        if !first_byte(&stream, timeout, &cancel).await {
            return;
        }
        let certs = ClientCerts::NotAsked;
        let handshake = tls.accept(stream, self.peer, "clients", certs, timeout);
        // Bound to its field at once: a whole `Secured` kept beside it would double the TLS
        // state in this task.
        let Some(Secured { mut stream, .. }) = handshake.await else {
            return;
        };
        if !gate.holding_at_least(in_hyper) {
            return Box::pin(self.run(stream, Vec::new(), watcher, cancel)).await;
        }
        let arrived = Instant::now();
        let Some((head, declared)) = Box::pin(read_head(&mut stream, timeout)).await else {
            return;
        };
        let Admission::Held(ticket) = gate.admit(declared) else {
            // Not held (the hold ended meanwhile, or is full): admitted again once read.
            return Box::pin(self.run(stream, head, watcher, cancel)).await;
        };
        metrics::counter!(m::HELD_SOCKETS).increment(1);
        // Whatever follows the wait is boxed, allocated once it is reached: this task's size
        // is that of its largest state, and thousands of them wait here.
        let ending = match ticket.wait().await {
            Release::Forward(_, in_flight) => {
                // Admitted again once the relay or hyper reads it, as for a bare socket.
                drop(in_flight);
                self.forwarder.held_for(arrived.elapsed());
                return Box::pin(self.run(stream, head, watcher, cancel)).await;
            }
            Release::Expired if cancel.is_cancelled() => Ending::Close,
            Release::Expired => Ending::KeepAlive,
        };
        let stream = Prefixed::new(head, stream);
        Box::pin(self.expired(stream, (arrived, ending), watcher)).await;
    }

    /// Answers the request of a bare socket whose hold ended in a shutdown (503), within
    /// [`LAST_ANSWER`], holding `watcher` so that the shutdown waits for that.
    async fn last_answer(self, stream: Prefixed<TcpStream>, arrived: Instant, watcher: Watcher) {
        let (serving, _) = self.serve(stream, Some((arrived, Ending::Close)));
        let _ = tokio::time::timeout(LAST_ANSWER, serving).await;
        drop(watcher);
    }

    /// Serves a connection whose held request's hold expired: hyper answers that request
    /// 503, then the connection ends or goes on as `expired` says.
    async fn expired<S: Connection>(
        self,
        stream: Prefixed<S>,
        expired: (Instant, Ending),
        watcher: Watcher,
    ) {
        let (serving, closing) = self.serve(stream, Some(expired));
        finish(Box::pin(watcher.watch(serving)), closing).await;
    }

    /// A connection accepted during a hold past its first requests: waits for its request,
    /// holds it as a bare socket, then serves it like any other.
    async fn held(
        self,
        stream: TcpStream,
        gate: Arc<Gate>,
        watcher: Watcher,
        cancel: CancellationToken,
    ) {
        let arrived = Instant::now();
        // A client that sends nothing within the head timeout is closed, hold or not.
        if !first_byte(&stream, self.bounds.header_timeout, &cancel).await {
            return;
        }
        let admitted = head(&stream).await.map(|bytes| gate.admit(bytes));
        let Some(Admission::Held(ticket)) = admitted else {
            // Not held (HTTP/2, a long head; or the hold ended or is full, and the request is
            // admitted again): the usual way.
            // Boxed: this task waits with thousands of others, and serving takes a larger
            // future than waiting; it is allocated only once this connection is served.
            return Box::pin(self.run(stream, Vec::new(), watcher, cancel)).await;
        };
        metrics::counter!(m::HELD_SOCKETS).increment(1);
        let release = tokio::select! {
            release = ticket.wait() => release,
            // The client left: dropping the ticket frees its slot.
            () = read_closed(&stream) => return,
        };
        // Waiting for the read side to close consumed the socket's readiness without reading
        // the request: a new registration with the reactor finds the request there again.
        let Ok(stream) = stream.into_std().and_then(TcpStream::from_std) else {
            return;
        };
        match release {
            Release::Forward(_, in_flight) => {
                // The request is admitted again once read: forwarded to the colour active
                // then (a new Pause meanwhile holds it again), and counted in flight then.
                // Kept, this count would last as long as the connection, and a later Pause
                // would wait for idle keep-alive connections in its drain.
                drop(in_flight);
                self.forwarder.held_for(arrived.elapsed());
                Box::pin(self.run(stream, Vec::new(), watcher, cancel)).await;
            }
            Release::Expired if cancel.is_cancelled() => {
                // A shutdown: hyper's graceful close would drop the unread request, so answer
                // it (503), holding `watcher` so that the shutdown waits for that.
                let stream = Prefixed::new(Vec::new(), stream);
                Box::pin(self.last_answer(stream, arrived, watcher)).await;
            }
            Release::Expired => {
                let stream = Prefixed::new(Vec::new(), stream);
                Box::pin(self.expired(stream, (arrived, Ending::KeepAlive), watcher)).await;
            }
        }
    }

    /// Serves a connection whose first `prefix` bytes were read already: the HTTP/1.1 relay
    /// when the backends speak HTTP/1.1, and hyper for what the relay does not take.
    async fn run<S: Connection>(
        self,
        stream: S,
        prefix: Vec<u8>,
        watcher: Watcher,
        cancel: CancellationToken,
    ) {
        let (stream, prefix) = if self.forwarder.upstreams().relayed() {
            let forwarder = Arc::clone(&self.forwarder);
            match Relay::new(forwarder, cancel, &self.bounds, self.peer, stream, prefix)
                .run()
                .await
            {
                Ended::Closed => return,
                Ended::ToHyper { stream, prefix } => (stream, prefix),
            }
        } else {
            // hyper's head timeout starts at the first byte: a silent client is closed here.
            if prefix.is_empty()
                && let Some(socket) = stream.socket()
                && !first_byte(socket, self.bounds.header_timeout, &cancel).await
            {
                return;
            }
            (stream, prefix)
        };
        let stream = Prefixed::new(prefix, stream);
        let (serving, closing) = self.serve(stream, None);
        finish(Box::pin(watcher.watch(serving)), closing).await;
    }

    /// hyper serving `stream` (HTTP/1.1 or h2c), and where the socket goes once hyper is done
    /// with it; with `expired`, the first request is answered 503 (its hold expired while it
    /// waited as a bare socket), then the connection ends or goes on.
    fn serve<S>(
        self,
        stream: S,
        expired: Option<(Instant, Ending)>,
    ) -> (
        impl GracefulConnection<Error = ConnectionError> + Send + 'static,
        Closing<S>,
    )
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            peer,
            forwarder,
            builder,
            bounds: _,
        } = self;
        let expired = expired.map(|expired| (expired, Arc::new(AtomicBool::new(true))));
        let service = service_fn(move |request| {
            let forwarder = Arc::clone(&forwarder);
            let refuse = expired
                .as_ref()
                .filter(|(_, first)| first.swap(false, Ordering::Relaxed))
                .map(|(expired, _)| *expired);
            async move {
                let Some((arrived, ending)) = refuse else {
                    return forwarder.handle(peer, request).await;
                };
                let mut response = forwarder.hold_expired(arrived);
                if ending == Ending::Close {
                    let close = HeaderValue::from_static("close");
                    response.headers_mut().insert(header::CONNECTION, close);
                }
                Ok(response)
            }
        });
        let (stream, closing) = closing::track(stream);
        let serving = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        (serving, closing)
    }
}

/// A client connection the relay and hyper serve: a plain socket or a TLS stream.
trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {
    /// The plain socket, whose readiness says whether the client sent anything; `None` over
    /// TLS, where the handshake waited for the client and decrypted bytes may wait in the
    /// stream instead of the socket.
    fn socket(&self) -> Option<&TcpStream>;
}

impl Connection for TcpStream {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Connection for TlsStream<TcpStream> {
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

/// Reads a request's head off a TLS stream, within `timeout`: what was read (the head, and
/// maybe more) and its declared body bytes (0 for HTTP/2 or a head [`declared_bytes`] cannot
/// read: hyper answers those). `None` when the client closed or took too long.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Option<(Vec<u8>, u64)> {
    use tokio::io::AsyncReadExt as _;
    let reading = async {
        let mut head = Vec::with_capacity(512);
        loop {
            if head.len() >= PEEK_BYTES || head.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            // HTTP/2 sends its preface and settings first: no head to wait for.
            if head.len() >= 14 && head.starts_with(b"PRI * HTTP/2.0") {
                break;
            }
            let read = stream.read_buf(&mut head).await.ok()?;
            if read == 0 {
                return None;
            }
        }
        let declared = declared_bytes(&head).unwrap_or(0);
        // It waits for as long as the hold: only its bytes.
        head.shrink_to_fit();
        Some((head, declared))
    };
    tokio::time::timeout(timeout, reading).await.ok().flatten()
}

/// The declared body bytes of the HTTP/1 request whose head is in `stream`'s buffer; `None`
/// for HTTP/2, a head not complete in [`PEEK_BYTES`], or one that does not parse (hyper
/// answers it).
async fn head(stream: &TcpStream) -> Option<u64> {
    let mut buffer = vec![0; PEEK_BYTES];
    let peeked = stream.peek(&mut buffer).await.ok()?;
    declared_bytes(&buffer[..peeked])
}

pub(crate) fn declared_bytes(head: &[u8]) -> Option<u64> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0";
    if head.is_empty() || PREFACE.starts_with(&head[..head.len().min(PREFACE.len())]) {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if !request.parse(head).ok()?.is_complete() {
        return None;
    }
    let length = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"));
    match length {
        // What hyper's body reports: an exact length, or none (chunked) counted as 0.
        Some(h) => std::str::from_utf8(h.value).ok()?.trim().parse().ok(),
        None => Some(0),
    }
}

/// Resolves once the client closed its side (or the socket failed), without reading.
async fn read_closed(stream: &TcpStream) {
    loop {
        match stream.ready(Interest::READABLE).await {
            Ok(ready) if !ready.is_read_closed() => {
                // Bytes, not the end: forget this readiness and wait for the next event.
                let _ = stream.try_io(Interest::READABLE, || {
                    Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
                });
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::declared_bytes;

    #[test]
    fn reads_the_declared_body_of_a_complete_http1_head() {
        assert_eq!(
            declared_bytes(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n"),
            Some(0)
        );
        assert_eq!(
            declared_bytes(b"POST /x HTTP/1.1\r\nContent-Length: 600\r\n\r\nxx"),
            Some(600)
        );
        assert_eq!(
            declared_bytes(b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"),
            Some(0)
        );
    }

    #[test]
    fn leaves_http2_partial_and_malformed_heads_to_hyper() {
        assert_eq!(declared_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
        assert_eq!(declared_bytes(b"PR"), None);
        assert_eq!(declared_bytes(b"GET /x HTTP/1.1\r\nhost: a\r\n"), None);
        assert_eq!(declared_bytes(b"\x00\x01 nonsense\r\n\r\n"), None);
        assert_eq!(
            declared_bytes(b"POST /x HTTP/1.1\r\ncontent-length: lots\r\n\r\n"),
            None
        );
    }
}
