//! The HTTP/1.1 relay: a client connection (a socket, or a TLS stream once its handshake is
//! done) and a pooled plain backend connection driven by one task,
//! the request and response heads parsed in place (`httparse`) and rewritten into one buffer,
//! the bodies copied with their framing as the backend sent it (`Content-Length`, chunked or
//! until close). hyper's server and client cost ~15 µs of CPU a request here, nginx ~6 µs; the
//! relay ~5 µs (`benches/RESULTS.md`).
//!
//! It takes the common request: HTTP/1.1, a path, a body of at most [`MAX_BODY`] declared by
//! `Content-Length` (read whole before it is sent, so a request can go again on a fresh
//! connection when a pooled one turns out closed), no `Transfer-Encoding`, `Expect` or
//! `Upgrade`. Anything else (HTTP/2's preface, HTTP/1.0, CONNECT, a bigger or chunked body, a
//! head it cannot parse or longer than [`MAX_HEAD`]) goes to hyper with the bytes read so far,
//! and that connection stays with hyper, which streams bodies both ways at once: both paths
//! admit through the same gate, so a hold treats them alike.

#[doc(hidden)]
pub mod wire;

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use cutover_daemon::closing;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    time::{Duration, Sleep},
};
use tokio_util::sync::CancellationToken;

use crate::{
    error::ProxyError,
    forward::{Forwarder, HOP_BY_HOP},
    hold::{Admission, Release},
    upstream::Backend,
};

/// The longest request or response head the relay reads before it gives the request to hyper
/// (a request) or answers 502 (a response).
pub(crate) const MAX_HEAD: usize = 64 << 10;
/// The largest request body the relay takes; it reads it whole before sending the request.
pub(crate) const MAX_BODY: u64 = 64 << 10;
/// Headers parsed in a head; more and the request goes to hyper.
const MAX_HEADERS: usize = 100;
/// A client connection's first read buffer; it grows for longer heads.
const CLIENT_BUFFER: usize = 4 << 10;
/// The buffer a response is read into, a piece at a time.
const RESPONSE_BUFFER: usize = 16 << 10;

/// How a relayed connection ended.
pub(crate) enum Ended<S> {
    /// It is closed, or will be when dropped.
    Closed,
    /// The relay gives it to hyper: a request it does not take. `prefix` is what it read of
    /// that request so far.
    ToHyper {
        /// The client's connection.
        stream: S,
        /// Bytes read and not yet served.
        prefix: Vec<u8>,
    },
}

/// One client connection: a plain socket, or a TLS stream (flushed after every answer, as
/// TLS may keep written bytes until then).
pub(crate) struct Relay<S> {
    forwarder: Arc<Forwarder>,
    /// The proxy is stopping: close at the end of the exchange.
    cancel: CancellationToken,
    peer: SocketAddr,
    client: S,
    /// What the client sent and was not forwarded yet.
    input: Vec<u8>,
    /// The head being sent, to the backend and then to the client.
    out: Vec<u8>,
    /// A response, a piece at a time.
    response: Vec<u8>,
    /// The deadline of the response head being awaited.
    timer: Option<Pin<Box<Sleep>>>,
    /// Longest wait for a whole request the relay takes (head and body), and for the next
    /// one on an idle connection (`Bounds::header_timeout`).
    head_timeout: Duration,
    /// The deadline of the request being read: one timer for the connection's life, moved
    /// later for each request (which touches no timer wheel), armed only once a read waits.
    head_timer: Option<Pin<Box<Sleep>>>,
    /// The longest head the relay reads before it gives the request to hyper, which answers
    /// `431` past `Bounds::max_header_bytes`.
    max_head: usize,
}

/// A request head the relay takes, parsed.
#[derive(Debug)]
struct RequestHead {
    /// Its length in `input`.
    length: usize,
    /// Its `Content-Length`.
    body: u64,
    /// Whether the response may omit its body (HEAD).
    head_only: bool,
    /// Whether a failed exchange may be sent again on a fresh connection.
    idempotent: bool,
    /// The client asked to close after this exchange.
    close: bool,
}

impl RequestHead {
    /// The bytes of the head and its body.
    fn whole(&self) -> usize {
        // At most MAX_HEAD + MAX_BODY: parse_request refuses larger bodies.
        self.length + usize::try_from(self.body).unwrap_or(usize::MAX)
    }
}

/// What reading the next request gave.
enum Next {
    Request(RequestHead),
    ToHyper,
    /// The client went away, the proxy is stopping, or an idle connection timed out.
    Closed,
    /// A request began and did not arrive whole in time: answered `408`.
    TimedOut,
}

/// How a response's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body.
    Empty,
    /// `Content-Length`: the bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`, passed on as it is.
    Chunked(Chunked),
    /// Until the backend closes.
    UntilClose,
}

/// Why an exchange with a backend failed.
enum Failure {
    /// Before the response head reached the client: the client gets a 502 or 504.
    Answer(ProxyError),
    /// A pooled connection the backend had closed, before any byte of a response, under an
    /// idempotent request not sent on a fresh connection yet: it goes again on one.
    Stale,
    /// After the head reached the client, or the client went away: close.
    Abort,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Relay<S> {
    /// A client connection of which `input` was read already, within `bounds`.
    pub(crate) fn new(
        forwarder: Arc<Forwarder>,
        cancel: CancellationToken,
        bounds: &cutover_daemon::Bounds,
        peer: SocketAddr,
        client: S,
        input: Vec<u8>,
    ) -> Self {
        Self {
            forwarder,
            cancel,
            peer,
            client,
            input,
            out: Vec::new(),
            response: Vec::new(),
            timer: None,
            head_timeout: bounds.header_timeout,
            head_timer: None,
            max_head: bounds.max_header_bytes.min(MAX_HEAD),
        }
    }

    /// Relays requests until the client closes, `cancel` fires between two exchanges, or a
    /// request needs hyper.
    pub(crate) async fn run(mut self) -> Ended<S> {
        loop {
            let head = match self.next_request().await {
                Next::Request(head) => head,
                Next::Closed => return Ended::Closed,
                Next::TimedOut => {
                    metrics::counter!(cutover_daemon::metrics::HEAD_TIMEOUTS).increment(1);
                    let answered = send(&mut self.client, closing::REQUEST_TIMEOUT).await;
                    if answered.is_ok() {
                        closing::linger(self.client).await;
                    }
                    return Ended::Closed;
                }
                Next::ToHyper => {
                    return Ended::ToHyper {
                        stream: self.client,
                        prefix: self.input,
                    };
                }
            };
            match self.exchange(&head).await {
                Ok(true) if !head.close && !self.cancel.is_cancelled() => {}
                _ => {
                    // Lingering: what the client still sends must not reset the answer; a
                    // shutdown does not wait for it.
                    let cancel = self.cancel.clone();
                    tokio::select! {
                        () = closing::linger(self.client) => {}
                        () = cancel.cancelled() => {}
                    }
                    return Ended::Closed;
                }
            }
        }
    }

    /// Reads until `input` holds a whole request head the relay takes.
    async fn next_request(&mut self) -> Next {
        let deadline = tokio::time::Instant::now() + self.head_timeout;
        loop {
            if !self.input.is_empty() {
                match parse_request(&self.input) {
                    // A head that came whole in a read past the bound: hyper answers 431.
                    Parsed::Complete(head) if head.length > self.max_head => {
                        return Next::ToHyper;
                    }
                    Parsed::Complete(head) if head.whole() <= self.input.len() => {
                        return Next::Request(head);
                    }
                    // Its body is still coming.
                    Parsed::Complete(_) => {}
                    Parsed::Other => return Next::ToHyper,
                    Parsed::Partial if self.input.len() >= self.max_head => return Next::ToHyper,
                    Parsed::Partial => {}
                }
            }
            if self.input.capacity() - self.input.len() < 1024 {
                self.input.reserve(CLIENT_BUFFER.max(self.input.capacity()));
            }
            let timer = match &mut self.head_timer {
                Some(timer) => {
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    timer
                }
                None => self
                    .head_timer
                    .insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            let read = tokio::select! {
                // Biased: a read that is ready does not poll (register) the timer.
                biased;
                read = self.client.read_buf(&mut self.input) => read,
                // Stopping: an idle connection, or one inside a head or body, closes.
                () = self.cancel.cancelled() => return Next::Closed,
                () = timer.as_mut() => {
                    return if self.input.is_empty() { Next::Closed } else { Next::TimedOut };
                }
            };
            match read {
                Ok(0) | Err(_) => return Next::Closed,
                Ok(_) => {}
            }
        }
    }

    /// One request and its response. `Ok(true)`: the connection can serve the next request.
    async fn exchange(&mut self, head: &RequestHead) -> io::Result<bool> {
        let arrived = Instant::now();
        let forwarder = Arc::clone(&self.forwarder);
        let mut warm_connection = None;
        let (color, in_flight) = match forwarder.gate().admit(head.body) {
            Admission::Forward(color, in_flight) => (color, in_flight),
            Admission::Refused(full) => {
                return self.refuse(ProxyError::not_held(full), head, arrived).await;
            }
            Admission::Held(ticket) => {
                // A hold may keep thousands of connections waiting: keep only the request.
                self.out = Vec::new();
                self.response = Vec::new();
                let waiting = ticket.wait();
                let warming = warm(&forwarder);
                tokio::pin!(waiting, warming);
                let mut warmed = None;
                let release = loop {
                    tokio::select! {
                        release = &mut waiting => break release,
                        // Whatever the client sends meanwhile (pipelined requests) is kept; a
                        // read of 0 is the client leaving: dropping the ticket frees its place.
                        read = self.client.read_buf(&mut self.input),
                            if self.input.len() < MAX_HEAD =>
                        {
                            if matches!(read, Ok(0) | Err(_)) {
                                return Ok(false);
                            }
                            self.input.reserve(CLIENT_BUFFER);
                        }
                        connection = &mut warming, if warmed.is_none() => {
                            warmed = Some(connection);
                        }
                    }
                };
                match release {
                    Release::Forward(color, in_flight) => {
                        forwarder.held_for(arrived.elapsed());
                        match warmed.flatten() {
                            Some((backend, stream)) if backend.color() == color => {
                                warm_connection = Some((backend, stream));
                            }
                            // Resumed on the colour it had: the connection waits in its pool.
                            Some((backend, stream)) => backend.checkin(stream),
                            None => {}
                        }
                        (color, in_flight)
                    }
                    Release::Expired => {
                        return self.refuse(ProxyError::HoldTimeout, head, arrived).await;
                    }
                }
            }
        };
        let mut fresh = false;
        loop {
            let (backend, stream) = match warm_connection.take() {
                Some((backend, stream)) => (backend, Some(stream)),
                None => (Arc::clone(forwarder.upstreams().pick(color)), None),
            };
            match self.forward(head, &backend, stream, fresh, arrived).await {
                Ok(reusable) => return Ok(reusable),
                Err(Failure::Stale) => fresh = true,
                Err(Failure::Answer(error)) => {
                    drop(in_flight);
                    return self.refuse(error, head, arrived).await;
                }
                Err(Failure::Abort) => return Ok(false),
            }
        }
    }

    /// Sends the request at the head of `input` to `backend` and its response to the client.
    /// `Ok(true)`: both connections can go on.
    async fn forward(
        &mut self,
        head: &RequestHead,
        backend: &Backend,
        warmed: Option<TcpStream>,
        fresh: bool,
        arrived: Instant,
    ) -> Result<bool, Failure> {
        let color = backend.color();
        let unreachable = |detail: String| {
            Failure::Answer(ProxyError::Unreachable {
                color,
                upstream: backend.url().to_owned(),
                detail,
            })
        };
        // A connection opened during a hold may have idled as long as the hold: as if pooled.
        let warmed = warmed.filter(|stream| backend.usable(stream, None));
        let (mut upstream, reused) = match warmed {
            Some(stream) => (stream, true),
            None => match backend.connection(fresh).await {
                Ok(connection) => connection,
                Err(error) => {
                    backend.mark_down();
                    return Err(unreachable(error.to_string()));
                }
            },
        };
        self.response.clear();
        let authority = backend.authority().as_str();
        rewrite_request(
            &self.input[..head.length],
            self.peer,
            authority,
            &mut self.out,
        );
        // The body came whole with the head (next_request).
        let body_end = head.whole();
        self.out
            .extend_from_slice(&self.input[head.length..body_end]);
        let timeout = self.forwarder.timeout();
        let (out, response, client) = (&self.out, &mut self.response, &mut self.client);
        let sent = async {
            upstream.write_all(out).await.map_err(ResponseError::Io)?;
            read_response_head(&mut upstream, response, client).await
        };
        // One timer a connection, moved later for each request: tokio then only stores the
        // new deadline, where a timer a request would take the timer wheel's lock twice.
        let deadline = tokio::time::Instant::now() + timeout;
        let timer = match &mut self.timer {
            Some(timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        let answered = tokio::select! {
            biased;
            answered = sent => Ok(answered),
            () = timer => Err(()),
        };
        let (status, head_length) = match answered {
            Err(()) => {
                return Err(Failure::Answer(ProxyError::Timeout {
                    color,
                    upstream: backend.url().to_owned(),
                    timeout,
                }));
            }
            Ok(Err(ResponseError::Io(error)))
                if reused && self.response.is_empty() && is_stale(&error) =>
            {
                if head.idempotent && !fresh {
                    return Err(Failure::Stale);
                }
                return Err(unreachable(
                    "the connection closed before a response".to_owned(),
                ));
            }
            Ok(Err(ResponseError::Client)) => return Err(Failure::Abort),
            Ok(Err(ResponseError::Io(error))) => return Err(unreachable(error.to_string())),
            Ok(Err(ResponseError::Invalid(what))) => return Err(unreachable(what.to_owned())),
            Ok(Ok(parsed)) => parsed,
        };
        let close = head.close || self.cancel.is_cancelled();
        let (response, close_client) = client_head(
            &self.response[..head_length],
            head.head_only,
            close,
            &mut self.out,
        )
        .map_err(|what| unreachable(what.to_owned()))?;
        // The request is answered: drop it and its body from `input`.
        self.input.drain(..body_end);
        let mut framing = response.framing;
        self.forwarder
            .answered(Some(color), status, arrived.elapsed());
        // The head and the body bytes that came with it, in one write.
        let (taken, mut done) = framing
            .take(&self.response[head_length..])
            .map_err(|_| Failure::Abort)?;
        let mut extra = head_length + taken < self.response.len();
        self.out
            .extend_from_slice(&self.response[head_length..head_length + taken]);
        send(&mut self.client, &self.out)
            .await
            .map_err(|_| Failure::Abort)?;
        while !done {
            self.response.clear();
            self.response.reserve(RESPONSE_BUFFER);
            let read = upstream
                .read_buf(&mut self.response)
                .await
                .map_err(|_| Failure::Abort)?;
            if read == 0 {
                if framing == Framing::UntilClose {
                    return Ok(false);
                }
                return Err(Failure::Abort);
            }
            let (taken, end) = framing.take(&self.response).map_err(|_| Failure::Abort)?;
            extra = taken < self.response.len();
            done = end;
            send(&mut self.client, &self.response[..taken])
                .await
                .map_err(|_| Failure::Abort)?;
        }
        if response.reusable && !extra {
            backend.checkin(upstream);
        }
        Ok(!close_client)
    }

    /// Answers the request at the head of `input` (its body read whole) with the proxy's own
    /// error; the connection goes on.
    async fn refuse(
        &mut self,
        error: ProxyError,
        head: &RequestHead,
        arrived: Instant,
    ) -> io::Result<bool> {
        let keep = !head.close && !self.cancel.is_cancelled();
        self.forwarder.refused(&error, arrived);
        self.out.clear();
        error.write_http1(!keep, head.head_only, &mut self.out);
        self.input.drain(..head.whole().min(self.input.len()));
        send(&mut self.client, &self.out).await?;
        Ok(keep)
    }
}

/// A connection to a backend of the colour a held request will most likely be released to
/// (the one a Switch goes to), opened while it waits: released at once, hundreds of held
/// requests would otherwise open their connections at the same instant, past the backend's
/// accept backlog (128 by default), and wait a second for SYN retransmits. `None` when the
/// backend cannot be reached (the release connects again, and fails with a 502 if it must).
async fn warm(forwarder: &Forwarder) -> Option<(Arc<Backend>, TcpStream)> {
    let color = forwarder.gate().snapshot().active.other();
    let backend = Arc::clone(forwarder.upstreams().pick(color));
    match backend.connect().await {
        Ok(stream) => Some((backend, stream)),
        Err(error) => {
            tracing::debug!(%error, backend = %backend, "no connection opened during the hold");
            None
        }
    }
}

/// Writes `bytes` to the client and flushes them: a no-op on a socket, and on a TLS stream
/// what sends the records it could not write at once.
async fn send<S: AsyncWrite + Unpin>(client: &mut S, bytes: &[u8]) -> io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await
}

/// Whether a pooled connection's failure means the backend had closed it before the request.
fn is_stale(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

enum ResponseError {
    Io(io::Error),
    Invalid(&'static str),
    /// The client went away (while it sent its body, or while a 1xx was passed on).
    Client,
}

impl From<io::Error> for ResponseError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// Reads from `upstream` into `buffer` until it holds a final response head (1xx heads are
/// passed to `client` on the way); returns its status and length.
async fn read_response_head<S: AsyncWrite + Unpin>(
    upstream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    client: &mut S,
) -> Result<(u16, usize), ResponseError> {
    // Once a 1xx reached the client, the request cannot go again.
    let mut informational = false;
    loop {
        if !buffer.is_empty() {
            match response_status(buffer)? {
                Some((101, _)) => {
                    return Err(ResponseError::Invalid(
                        "101 Switching Protocols to a request that asked for no upgrade",
                    ));
                }
                Some((status, length)) if (100..200).contains(&status) => {
                    // Informational: the client gets it as it is; the final head follows.
                    send(client, &buffer[..length])
                        .await
                        .map_err(|_| ResponseError::Client)?;
                    buffer.drain(..length);
                    informational = true;
                    continue;
                }
                Some(head) => return Ok(head),
                None => {}
            }
        }
        buffer.reserve(RESPONSE_BUFFER);
        if upstream.read_buf(buffer).await? == 0 {
            if informational {
                return Err(ResponseError::Invalid(
                    "the connection closed after an informational response",
                ));
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the backend closed the connection before a response",
            )
            .into());
        }
    }
}

/// The status and length of the response head at the start of `buffer`; `None` while it is
/// partial. Not async, so that its headers' array weighs on no connection's task.
fn response_status(buffer: &[u8]) -> Result<Option<(u16, usize)>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => Ok(Some((response.code.unwrap_or(0), length))),
        Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => Ok(None),
        Ok(httparse::Status::Partial) => Err(ResponseError::Invalid("a response head over 64 KiB")),
        Err(_) => Err(ResponseError::Invalid(
            "a response head that does not parse",
        )),
    }
}

enum Parsed {
    Complete(RequestHead),
    Partial,
    /// Not for the relay: hyper serves it.
    Other,
}

/// Headers a `Connection` header can not make hop-by-hop: dropping them would change where a
/// message ends (or where it goes).
const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// A `Content-Length` value: digits only (`+5` or `5 5` are not lengths).
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn is(name: &str, wanted: &str) -> bool {
    name.eq_ignore_ascii_case(wanted)
}

/// Whether a comma-separated header value lists `token`.
fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn parse_request(input: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(input) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(path), Some(1)) = (request.method, request.path, request.version)
    else {
        return Parsed::Other;
    };
    if method == "CONNECT" || !path.starts_with('/') {
        return Parsed::Other;
    }
    let mut body = None;
    let mut close = false;
    for header in request.headers.iter() {
        let name = header.name;
        if is(name, "transfer-encoding") || is(name, "expect") || is(name, "upgrade") {
            return Parsed::Other;
        }
        if is(name, "content-length") {
            let Some(length) = content_length(header.value) else {
                return Parsed::Other;
            };
            if body.is_some_and(|b| b != length) || length > MAX_BODY {
                return Parsed::Other;
            }
            body = Some(length);
        } else if is(name, "connection") {
            if FRAMING.iter().any(|name| lists(header.value, name)) {
                // A Connection header may not take the framing away: hyper refuses it.
                return Parsed::Other;
            }
            close |= lists(header.value, "close");
        }
    }
    Parsed::Complete(RequestHead {
        length,
        body: body.unwrap_or(0),
        head_only: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        ),
        close,
    })
}

/// Whether `name` is hop-by-hop: in [`HOP_BY_HOP`] or, when the head has a `Connection`
/// header (`named`, looked up once a head), named by it.
fn hop_by_hop(name: &str, headers: &[httparse::Header<'_>], named: bool) -> bool {
    HOP_BY_HOP.iter().any(|h| is(name, h))
        || (named
            && !FRAMING.iter().any(|f| is(name, f))
            && headers
                .iter()
                .filter(|h| is(h.name, "connection"))
                .any(|h| lists(h.value, name)))
}

/// The request head to send upstream: the client's, without hop-by-hop headers, with its
/// `X-Forwarded-For` lines joined into one that ends with the client, `Via` added, and
/// `Host: authority` when it had none (as hyper's client adds it).
fn rewrite_request(head: &[u8], peer: SocketAddr, authority: &str, out: &mut Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    // parse_request took this head, so it parses the same again.
    let _ = request.parse(head);
    out.clear();
    out.extend_from_slice(request.method.unwrap_or("GET").as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let connection_names = request.headers.iter().any(|h| is(h.name, "connection"));
    if !request.headers.iter().any(|h| is(h.name, "host")) {
        push_header(out, b"host", authority.as_bytes());
    }
    let mut forwarded: Vec<&[u8]> = Vec::new();
    for header in request.headers.iter() {
        if is(header.name, "x-forwarded-for") {
            forwarded.push(header.value);
            continue;
        }
        if !hop_by_hop(header.name, request.headers, connection_names) {
            push_header(out, header.name.as_bytes(), header.value);
        }
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    for earlier in forwarded {
        out.extend_from_slice(earlier);
        out.extend_from_slice(b", ");
    }
    let ip = peer.ip();
    let _ = io::Write::write_fmt(out, format_args!("{ip}\r\n"));
    out.extend_from_slice(b"via: 1.1 cutover\r\n\r\n");
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A final response head, parsed.
#[derive(Debug, PartialEq, Eq)]
struct ResponseHead {
    framing: Framing,
    /// Whether the backend connection can serve another request after this response.
    reusable: bool,
}

/// Parses the response head `head` once, for its framing and for the head the client gets,
/// written into `out`; `close`: the client's connection closes after it anyway. Returns the
/// framing and whether the client's connection closes. Not async, so that its headers'
/// array (3 KiB) weighs on no connection's task.
fn client_head(
    head: &[u8],
    head_only: bool,
    close: bool,
    out: &mut Vec<u8>,
) -> Result<(ResponseHead, bool), &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = parse_response(head, &mut headers)?;
    let response = response_framing(&parsed, head_only)?;
    let close = close || response.framing == Framing::UntilClose;
    rewrite_response(&parsed, close, out);
    Ok((response, close))
}

/// The response head `head`, its headers parsed into `headers`.
fn parse_response<'h, 'b>(
    head: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<httparse::Response<'h, 'b>, &'static str> {
    let mut response = httparse::Response::new(headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => Ok(response),
        _ => Err("a response head that does not parse"),
    }
}

/// How the body of a response to a request (a HEAD request when `head_only`) is framed
/// (RFC 9112, section 6.3), and whether the backend keeps the connection.
fn response_framing(
    response: &httparse::Response<'_, '_>,
    head_only: bool,
) -> Result<ResponseHead, &'static str> {
    let status = response.code.unwrap_or(0);
    let mut length = None;
    let mut chunked = None;
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        if is(header.name, "content-length") {
            let value =
                content_length(header.value).ok_or("a Content-Length that is not a number")?;
            if length.is_some_and(|l| l != value) {
                return Err("two different Content-Length headers");
            }
            length = Some(value);
        } else if is(header.name, "transfer-encoding") {
            // Only the last coding says how the message ends.
            let last = header.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if is(header.name, "connection") {
            if lists(header.value, "close") {
                close = true;
            } else if lists(header.value, "keep-alive") && response.version == Some(0) {
                close = false;
            }
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked(Chunked::default()),
            (Some(false), _) => Framing::UntilClose,
            (None, Some(0)) => Framing::Empty,
            (None, Some(length)) => Framing::Length(length),
            (None, None) => Framing::UntilClose,
        }
    };
    Ok(ResponseHead {
        reusable: !close && framing != Framing::UntilClose,
        framing,
    })
}

/// The response head for the client: the backend's, without hop-by-hop headers (its framing,
/// `Content-Length` or `Transfer-Encoding`, kept: the body goes on as the backend framed it),
/// with `Via` and, when the relay closes after it, `Connection: close`.
fn rewrite_response(response: &httparse::Response<'_, '_>, close: bool, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    let _ = io::Write::write_fmt(out, format_args!("{:03}", response.code.unwrap_or(502)));
    out.push(b' ');
    out.extend_from_slice(response.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let connection_names = response.headers.iter().any(|h| is(h.name, "connection"));
    // With both, the transfer coding frames the body and the length must go (RFC 9112, 6.3).
    let chunked = response
        .headers
        .iter()
        .any(|h| is(h.name, "transfer-encoding"));
    for header in response.headers.iter() {
        let drop = hop_by_hop(header.name, response.headers, connection_names)
            || (chunked && is(header.name, "content-length"));
        if !drop {
            push_header(out, header.name.as_bytes(), header.value);
        }
    }
    out.extend_from_slice(b"via: 1.1 cutover\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

impl Framing {
    /// Of `bytes` (the next ones of the body), how many belong to it, and whether the body
    /// ends with them.
    fn take(&mut self, bytes: &[u8]) -> Result<(usize, bool), BadChunk> {
        match self {
            Self::Empty => Ok((0, true)),
            Self::UntilClose => Ok((bytes.len(), false)),
            Self::Length(left) => {
                let taken = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                *left -= taken as u64;
                Ok((taken, *left == 0))
            }
            Self::Chunked(chunked) => chunked.take(bytes),
        }
    }
}

/// A chunked body that does not parse.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadChunk;

/// Where a chunked body is (RFC 9112, section 7.1): it is passed on unchanged, this only finds
/// its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// In a chunk's size: its value so far and how many digits.
    Size(u64, u8),
    /// In a chunk extension, up to its CR.
    Extension(u64),
    /// After the size line's CR.
    SizeLf(u64),
    /// In a chunk's data: the bytes still to come.
    Data(u64),
    /// After a chunk's data, before its CR and LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// In a trailer line.
    Trailer,
    TrailerLf,
    /// After the final empty line's CR.
    FinalLf,
    Done,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::Size(0, 0)
    }
}

impl Chunked {
    fn take(&mut self, bytes: &[u8]) -> Result<(usize, bool), BadChunk> {
        let mut at = 0;
        while at < bytes.len() {
            if let Self::Data(left) = self {
                let taken = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - at);
                at += taken;
                *left -= taken as u64;
                if *left == 0 {
                    *self = Self::DataCr;
                }
                continue;
            }
            let byte = bytes[at];
            at += 1;
            *self = match (*self, byte) {
                (Self::Size(value, digits), _) if byte.is_ascii_hexdigit() => {
                    if digits >= 15 {
                        return Err(BadChunk);
                    }
                    let digit = u64::from(char::from(byte).to_digit(16).unwrap_or(0));
                    Self::Size(value * 16 + digit, digits + 1)
                }
                (Self::Size(value, digits), b';' | b' ' | b'\t') if digits > 0 => {
                    Self::Extension(value)
                }
                (Self::Size(value, digits), b'\r') if digits > 0 => Self::SizeLf(value),
                (Self::Extension(value), b'\r') => Self::SizeLf(value),
                (Self::Extension(value), _) => Self::Extension(value),
                (Self::SizeLf(0), b'\n') => Self::TrailerStart,
                (Self::SizeLf(value), b'\n') => Self::Data(value),
                (Self::DataCr, b'\r') => Self::DataLf,
                (Self::DataLf, b'\n') => Self::Size(0, 0),
                (Self::TrailerStart, b'\r') => Self::FinalLf,
                (Self::Trailer, b'\r') => Self::TrailerLf,
                (Self::TrailerStart | Self::Trailer, _) => Self::Trailer,
                (Self::TrailerLf, b'\n') => Self::TrailerStart,
                (Self::FinalLf, b'\n') => {
                    *self = Self::Done;
                    return Ok((at, true));
                }
                _ => return Err(BadChunk),
            };
        }
        Ok((at, *self == Self::Done))
    }
}

/// A client socket (or TLS stream) with the bytes read of it before giving it to hyper.
pub(crate) struct Prefixed<S = TcpStream> {
    prefix: Vec<u8>,
    at: usize,
    stream: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, stream: S) -> Self {
        Self {
            prefix,
            at: 0,
            stream,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `check` of the response head `head`, parsed.
    fn with_response<R>(head: &[u8], check: impl FnOnce(&httparse::Response<'_, '_>) -> R) -> R {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        check(&parse_response(head, &mut headers).expect("a response head"))
    }

    fn head(input: &[u8]) -> RequestHead {
        match parse_request(input) {
            Parsed::Complete(head) => head,
            Parsed::Partial => panic!("partial: {}", String::from_utf8_lossy(input)),
            Parsed::Other => panic!("other: {}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn takes_plain_http11_requests_and_leaves_the_rest_to_hyper() {
        let get = head(b"GET /v1/users/1 HTTP/1.1\r\nhost: a\r\n\r\nGET /next");
        assert_eq!((get.length, get.body, get.head_only), (37, 0, false));
        assert!(get.idempotent && !get.close);
        let post = head(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nConnection: Close\r\n\r\nhello");
        assert_eq!(post.body, 5);
        assert!(post.close && !post.idempotent);
        assert!(head(b"HEAD / HTTP/1.1\r\n\r\n").head_only);
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nhost: a\r\n"),
            Parsed::Partial
        ));
        for other in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\n\r\n",
            b"GET http://a/x HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",
            b"POST / HTTP/1.1\r\nConnection: content-length\r\nContent-Length: 4\r\n\r\n",
            b"\x00\x01 nonsense\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(other), Parsed::Other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn rewrites_a_request_without_hop_by_hop_headers_with_forwarded_for_and_via() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().expect("addr");
        let mut out = Vec::new();
        rewrite_request(
            b"PUT /v1/x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Private\r\n\
              Keep-Alive: timeout=5\r\nX-Private: 1\r\nX-Forwarded-For: 192.0.2.1\r\n\
              If-Match: \"3\"\r\nx-forwarded-for: 192.0.2.2\r\nTE: trailers\r\n\r\n",
            peer,
            "backend:1",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "PUT /v1/x?y=1 HTTP/1.1\r\nHost: a\r\nIf-Match: \"3\"\r\n\
             x-forwarded-for: 192.0.2.1, 192.0.2.2, 10.1.2.3\r\nvia: 1.1 cutover\r\n\r\n"
        );
        let mut out = Vec::new();
        rewrite_request(b"GET / HTTP/1.1\r\n\r\n", peer, "backend:1", &mut out);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "GET / HTTP/1.1\r\nhost: backend:1\r\nx-forwarded-for: 10.1.2.3\r\n\
             via: 1.1 cutover\r\n\r\n",
            "a Host is added when the client sent none"
        );
    }

    #[test]
    fn frames_responses_as_rfc_9112_says() {
        let framing =
            |head: &[u8], head_only| with_response(head, |r| response_framing(r, head_only));
        let ok = |framing, reusable| Ok(ResponseHead { framing, reusable });
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", false),
            ok(Framing::Length(12), true)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", true),
            ok(Framing::Empty, true),
            "a response to HEAD has no body"
        );
        assert_eq!(
            framing(b"HTTP/1.1 204 No Content\r\n\r\n", false),
            ok(Framing::Empty, true)
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false
            ),
            ok(Framing::Empty, true)
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
                false
            ),
            ok(Framing::Chunked(Chunked::default()), true),
            "chunked wins over a length"
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            ok(Framing::UntilClose, false)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\n\r\n", false),
            ok(Framing::UntilClose, false)
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false
            ),
            ok(Framing::Length(1), false)
        );
        assert_eq!(
            framing(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false),
            ok(Framing::Length(1), false),
            "HTTP/1.0 closes unless asked to keep alive"
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Err("two different Content-Length headers")
        );
        assert!(framing(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false).is_err());
    }

    #[test]
    fn a_response_keeps_the_headers_that_frame_it_whatever_connection_names() {
        let mut out = Vec::new();
        with_response(
            b"HTTP/1.1 200 OK\r\nConnection: content-length, transfer-encoding\r\n\
              Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            |r| rewrite_response(r, false, &mut out),
        );
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nvia: 1.1 cutover\r\n\r\n",
            "chunked kept; the length dropped because chunked frames the body"
        );
    }

    #[test]
    fn rewrites_a_response_keeping_its_framing() {
        let mut out = Vec::new();
        with_response(
            b"HTTP/1.1 201 Created\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
              Transfer-Encoding: chunked\r\nETag: \"4\"\r\n\r\n",
            |r| rewrite_response(r, true, &mut out),
        );
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nETag: \"4\"\r\n\
             via: 1.1 cutover\r\nconnection: close\r\n\r\n"
        );
    }

    /// Feeds `body` to a chunked parser in pieces of `step` bytes: where it ended.
    fn chunked_end(body: &[u8], step: usize) -> Result<Option<usize>, BadChunk> {
        let mut chunked = Chunked::default();
        let mut at = 0;
        for piece in body.chunks(step) {
            let (taken, done) = chunked.take(piece)?;
            at += taken;
            if done {
                return Ok(Some(at));
            }
            assert_eq!(taken, piece.len(), "all taken until the end");
        }
        Ok(None)
    }

    #[test]
    fn finds_the_end_of_a_chunked_body_in_any_pieces() {
        let body = b"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\
                     Trailer-One: 1\r\nTrailer-Two: 2\r\n\r\nHTTP/1.1 200 OK";
        let end = body.len() - b"HTTP/1.1 200 OK".len();
        for step in 1..=body.len() {
            assert_eq!(chunked_end(body, step), Ok(Some(end)), "step {step}");
        }
        assert_eq!(chunked_end(b"0\r\n\r\n", 1), Ok(Some(5)));
        assert_eq!(chunked_end(b"5\r\nhel", 2), Ok(None));
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloX",
            b"\r\n",
            b"5\nhello",
            b"fffffffffffffffff\r\n",
        ] {
            assert_eq!(
                chunked_end(bad, 1),
                Err(BadChunk),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_length_takes_only_its_bytes() {
        let mut framing = Framing::Length(5);
        assert_eq!(framing.take(b"abc"), Ok((3, false)));
        assert_eq!(framing.take(b"defgh"), Ok((2, true)));
        assert_eq!(Framing::UntilClose.take(b"abc"), Ok((3, false)));
        assert_eq!(Framing::Empty.take(b"abc"), Ok((0, true)));
    }

    #[test]
    fn proxy_errors_encode_as_http1() {
        let mut out = Vec::new();
        ProxyError::HoldTimeout.write_http1(true, false, &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("retry-after: 1") && head.contains("connection: close"));
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(body.contains("\"error\""), "{body}");

        let mut out = Vec::new();
        ProxyError::HoldTimeout.write_http1(false, true, &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.ends_with("\r\n\r\n"), "no body to a HEAD: {text}");
        assert!(
            text.contains(&format!("content-length: {}", body.len())),
            "{text}"
        );
    }
}
