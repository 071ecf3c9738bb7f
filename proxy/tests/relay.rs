//! The HTTP/1.1 relay against a backend that writes its responses byte by byte as scripted:
//! chunked bodies with trailers, bodies that end at the close, informational responses, HEAD,
//! pipelined requests, a backend that closes its idle connections (before a request, and as
//! one arrives), requests the relay leaves to hyper, the connections to green opened while
//! requests are held, and the same relay over TLS (`listen_tls`).

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Backend, LabTls, Running, config, get};
use cutover_daemon::tls::Tls;
use cutover_proto::v1::{Color, PauseRequest, SwitchRequest};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A backend speaking HTTP/1.1 by hand. By path:
/// - `/chunked`: a chunked body with a trailer, written in pieces;
/// - `/close`: a body without a length, ended by closing the connection;
/// - `/early`: a 103 before the 200;
/// - `/once`: an answer, then the connection closes with no `Connection: close` (as a
///   backend's idle timeout does);
/// - `/drop`: answered as the first request of a connection; a later one is read and the
///   connection closes unanswered (a backend's idle timeout firing as the request came);
/// - anything else: the path as the body (`Content-Length`), or no body to a HEAD.
struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Scripted {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream));
            }
        });
        Self { addr, accepted }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for the proxy's first health check (its connection stays open): the
    /// connections accepted so far.
    async fn after_health_check(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.accepted.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no health check");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream) {
    let mut input = Vec::new();
    for served in 0.. {
        let Some(end) = read_until(&mut stream, &mut input, b"\r\n\r\n").await else {
            return;
        };
        let head = String::from_utf8(input.drain(..end).collect()).unwrap();
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap(), words.next().unwrap().to_owned());
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(str::to_owned)
            })
            .map_or(0, |v| v.trim().parse().unwrap());
        while input.len() < length {
            let mut buffer = [0; 8192];
            let n = stream.read(&mut buffer).await.unwrap();
            input.extend_from_slice(&buffer[..n]);
        }
        input.drain(..length);
        if path == "/drop" && served > 0 {
            return;
        }
        let pieces: Vec<&[u8]> = match path.as_str() {
            "/chunked" => vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n",
                b"5\r\nhel",
                b"lo\r\n6;ext=1\r\n world\r",
                b"\n0\r\nX-Trailer: t\r\n",
                b"\r\n",
            ],
            "/close" => vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the close"],
            "/early" => vec![
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ],
            "/once" => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce"],
            _ => vec![],
        };
        if pieces.is_empty() {
            let body = if method == "HEAD" { "" } else { path.as_str() };
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                path.len()
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
            continue;
        }
        for piece in pieces {
            stream.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if path == "/close" || path == "/once" {
            return;
        }
    }
}

/// Reads from `stream` into `buffer` until it holds `end`: the length up to its end, or
/// `None` at EOF first.
async fn read_until<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    end: &[u8],
) -> Option<usize> {
    loop {
        if let Some(at) = buffer.windows(end.len()).position(|w| w == end) {
            return Some(at + end.len());
        }
        let mut piece = [0; 8192];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut piece))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&piece[..n]);
    }
}

/// Everything `stream` sends until it closes, as text.
async fn read_all<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
        .await
        .expect("closed within 5 s")
        .unwrap();
    String::from_utf8(all).unwrap()
}

/// A proxy in front of a scripted blue and a scripted green, its client port over `tls` if
/// given.
async fn proxy(tls: Option<Tls>) -> (Scripted, Scripted, tempfile::TempDir, Running) {
    let (blue, green) = (Scripted::start().await, Scripted::start().await);
    let dir = tempfile::tempdir().unwrap();
    let mut config = cutover_proxy::ProxyConfig::new(
        vec![blue.url()],
        vec![green.url()],
        dir.path().join("route.json"),
    );
    config.health_interval = Duration::from_secs(3600);
    config.listen_tls = tls;
    let proxy = Running::start(config).await;
    (blue, green, dir, proxy)
}

/// One whole response read from `stream`, as text: the head, and the body up to `body_end`.
async fn response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    body_end: &[u8],
) -> String {
    let end = read_until(stream, buffer, body_end)
        .await
        .expect("a whole response");
    String::from_utf8(buffer.drain(..end).collect()).unwrap()
}

#[tokio::test]
async fn passes_on_chunked_informational_head_and_close_delimited_responses_as_framed() {
    let (_blue, _green, _dir, proxy) = proxy(None).await;
    let client = TcpStream::connect(proxy.listen).await.unwrap();
    framed_responses(client).await;
    proxy.stop().await;
}

/// Chunked with a trailer, a 103 then a 200, HEAD, and a body that ends at the close, on one
/// connection: each passed on as the backend framed it.
async fn framed_responses<S: AsyncRead + AsyncWrite + Unpin>(mut client: S) {
    client
        .write_all(b"GET /chunked HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let chunked = response(&mut client, &mut buffer, b"X-Trailer: t\r\n\r\n").await;
    let (head, body) = chunked.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert!(head.contains("via: 1.1 cutover"), "{head}");
    assert!(!head.contains("Keep-Alive"), "hop-by-hop: {head}");
    assert_eq!(
        body, "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        "the body as the backend framed it"
    );

    // The same connection goes on: a 103, then the 200.
    client
        .write_all(b"GET /early HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let early = response(&mut client, &mut buffer, b"\r\n\r\nok").await;
    assert!(early.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{early}");
    assert!(early.contains("HTTP/1.1 200 OK\r\n"), "{early}");

    // HEAD: a length and no body, then the next request on the same connection.
    client
        .write_all(
            b"HEAD /thirteen-byte HTTP/1.1\r\nhost: a\r\n\r\nGET /x HTTP/1.1\r\nhost: a\r\n\r\n",
        )
        .await
        .unwrap();
    let head = response(&mut client, &mut buffer, b"\r\n\r\n").await;
    assert!(head.contains("Content-Length: 14"), "{head}");
    let next = response(&mut client, &mut buffer, b"\r\n\r\n/x").await;
    assert!(next.starts_with("HTTP/1.1 200 OK"), "{next}");
    assert!(buffer.is_empty(), "no body after the HEAD's answer");

    // No length: the body ends at the close, and the proxy closes the client's connection.
    client
        .write_all(b"GET /close HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let closed = read_all(&mut client).await;
    assert!(closed.contains("connection: close\r\n"), "{closed}");
    assert!(closed.ends_with("\r\n\r\nuntil the close"), "{closed}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_with_their_bodies() {
    let (_blue, _green, _dir, proxy) = proxy(None).await;
    let mut client = proxy
        .send_raw(
            b"POST /first HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhelloGET /second HTTP/1.1\r\nhost: a\r\n\r\nGET /third HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await;
    let answers = read_all(&mut client).await;
    let bodies: Vec<&str> = answers
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|answer| answer.split_once("\r\n\r\n").unwrap().1)
        .collect();
    assert_eq!(bodies, ["/first", "/second", "/third"], "{answers}");
    assert!(
        answers.contains("connection: close"),
        "the last asked to close"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_backend_that_closes_its_idle_connections_fails_no_request() {
    let (blue, _green, _dir, proxy) = proxy(None).await;
    let before = blue.after_health_check().await;
    for _ in 0..20 {
        let (status, body) = get(&proxy.url("/once")).await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "once"));
    }
    assert_eq!(
        blue.accepted.load(Ordering::SeqCst) - before,
        20,
        "a connection the backend closed is not used again"
    );
    proxy.stop().await;
}

/// A pooled connection passes the pool's check and the backend closes it as the request
/// arrives: a GET goes again on a fresh connection, a POST is answered 502.
#[tokio::test]
async fn a_pooled_connection_closed_under_a_request_retries_only_idempotent_ones() {
    let (blue, _green, _dir, proxy) = proxy(None).await;
    let before = blue.after_health_check().await;
    // One client connection: its requests stay on one worker and its pool.
    let mut client = proxy
        .send_raw(b"GET /warm HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    let mut buffer = Vec::new();
    let answer = response(&mut client, &mut buffer, b"/warm").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    client
        .write_all(b"GET /drop HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let answer = response(&mut client, &mut buffer, b"/drop").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(
        blue.accepted.load(Ordering::SeqCst) - before,
        2,
        "the GET went again on a new connection"
    );
    client
        .write_all(
            b"POST /drop HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
        )
        .await
        .unwrap();
    let answer = read_all(&mut client).await;
    assert!(
        answer.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
        "{answer}"
    );
    assert!(answer.contains("closed before a response"), "{answer}");
    assert_eq!(
        blue.accepted.load(Ordering::SeqCst) - before,
        2,
        "the POST was not sent again"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn requests_the_relay_does_not_take_are_served_by_hyper() {
    let (_blue, _green, _dir, proxy) = proxy(None).await;
    // HTTP/1.0: hyper reads it and answers.
    let mut client = proxy
        .send_raw(b"GET /old HTTP/1.0\r\nhost: a\r\n\r\n")
        .await;
    let answer = read_all(&mut client).await;
    assert!(answer.contains(" 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("/old"), "{answer}");

    // An Upgrade: hyper forwards the request without it (the proxy tunnels nothing).
    let mut client = proxy
        .send_raw(
            b"GET /upgrade-asked HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        )
        .await;
    let mut buffer = Vec::new();
    let answer = response(&mut client, &mut buffer, b"/upgrade-asked").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    proxy.stop().await;
}

#[tokio::test]
async fn held_requests_open_their_connections_to_green_before_the_switch() {
    let (blue, green) = (Backend::start("blue").await, Scripted::start().await);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&blue, &Backend::start("unused").await, &dir);
    config.green = vec![green.url()];
    config.health_interval = Duration::from_secs(3600);
    let proxy = Running::start(config).await;
    let before = green.after_health_check().await;
    let mut control = proxy.control().await;
    control
        .pause(PauseRequest {
            epoch: 1,
            hold_timeout_ms: 5_000,
            drain_timeout_ms: 1_000,
        })
        .await
        .unwrap();
    let mut held = Vec::new();
    for i in 0..5 {
        let request = format!("GET /held-{i} HTTP/1.1\r\nhost: a\r\n\r\n");
        held.push(proxy.send_raw(request.as_bytes()).await);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while green.accepted.load(Ordering::SeqCst) - before < 5 {
        assert!(Instant::now() < deadline, "no connections to green opened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A request pipelined behind a held one, sent during the hold, is kept and answered.
    held[0]
        .write_all(b"GET /pipelined HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    control
        .switch(SwitchRequest {
            epoch: 1,
            color: Color::Green as i32,
        })
        .await
        .unwrap();
    let mut buffers: Vec<Vec<u8>> = held.iter().map(|_| Vec::new()).collect();
    for (i, (client, buffer)) in held.iter_mut().zip(&mut buffers).enumerate() {
        let path = format!("/held-{i}");
        let answer = response(client, buffer, path.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
    let pipelined = response(&mut held[0], &mut buffers[0], b"/pipelined").await;
    assert!(pipelined.starts_with("HTTP/1.1 200 OK\r\n"), "{pipelined}");
    assert_eq!(
        green.accepted.load(Ordering::SeqCst) - before,
        5,
        "the release used the connections opened during the hold"
    );
    assert!(blue.seen().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn relays_over_tls_as_over_plain_text() {
    let (tls, lab) = LabTls::new();
    let (_blue, _green, _dir, proxy) = proxy(Some(tls)).await;
    // The relay passes the backend's header names as they are, where hyper writes them in
    // lower case: `Transfer-Encoding` in the answer shows the relay served it.
    framed_responses(lab.connect(proxy.listen).await).await;

    let mut client = lab.connect(proxy.listen).await;
    client
        .write_all(
            b"POST /first HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhelloGET /second HTTP/1.1\r\nhost: a\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let first = response(&mut client, &mut buffer, b"/first").await;
    let second = response(&mut client, &mut buffer, b"/second").await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");

    // A request the relay leaves to hyper, on the same TLS connection: HTTP/1.0.
    client
        .write_all(b"GET /old HTTP/1.0\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    // The proxy closes after an HTTP/1.0 answer without a close_notify.
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut all)).await;
    let old = String::from_utf8(all).unwrap();
    assert!(old.contains(" 200 OK\r\n"), "{old}");
    assert!(old.ends_with("/old"), "{old}");
    proxy.stop().await;
}
