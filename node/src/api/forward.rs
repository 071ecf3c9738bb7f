//! Forwarding HTTP requests to the other nodes of the cluster, over pooled keep-alive
//! HTTP/1.1 connections (one pool per peer, shared by every request of this node).
//!
//! The pools are keyed by the peer's address as the cluster file writes it. A peer named by
//! DNS is looked up each time a connection to it is opened, never cached here: a pod that
//! restarts at another IP closes its old connections, and the next one finds the new IP. A
//! name that does not resolve is a peer that cannot be reached.
//!
//! A forwarded request carries two headers: [`CLUSTER_HEADER`], the sender's cluster file
//! hash, and [`FORWARDED_BY_HEADER`], its name. A node answers a request that carries them
//! from its own store or refuses it: it never forwards it again, so a disagreement about
//! owners is an error at once, never a loop.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{
        Client,
        connect::{HttpConnector, dns::Name},
    },
    rt::TokioExecutor,
};

use super::http::Reply;
use crate::{
    cluster::{Address, Member},
    metrics as m,
};

/// The sender's cluster file hash, on every forwarded request.
pub const CLUSTER_HEADER: HeaderName = HeaderName::from_static("cutover-cluster");
/// The sending node's name, on every forwarded request; its presence means "answer from
/// your own store": a request that carries it is never forwarded again.
pub const FORWARDED_BY_HEADER: HeaderName = HeaderName::from_static("cutover-forwarded-by");

/// How long looking up a peer's name may take before the request fails with 503.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long connecting to a peer may take before the request fails with 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a peer may take to answer a forwarded request, body included.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled connection to a peer is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per peer.
const MAX_IDLE: usize = 256;

/// Headers that describe one connection, not the request: never copied across a hop
/// (RFC 9110, 7.6.1), and `host` and `content-length`, which the next hop sets itself.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::HOST,
];

/// A peer that did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No connection, or it broke before the answer was complete.
    #[error("{name} ({addr}) cannot be reached: {reason}")]
    Unreachable {
        /// The peer.
        name: String,
        /// Its HTTP address, as the cluster file writes it.
        addr: Address,
        /// What failed.
        reason: String,
    },
    /// No complete answer in time.
    #[error("{name} ({addr}) did not answer within {timeout:?}")]
    Timeout {
        /// The peer.
        name: String,
        /// Its HTTP address, as the cluster file writes it.
        addr: Address,
        /// The time allowed.
        timeout: Duration,
    },
}

/// Sends requests to the cluster's other nodes.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector<Lookup>>, Full<Bytes>>,
    scheme: &'static str,
    hash: HeaderValue,
    me: HeaderValue,
}

impl Forwarder {
    /// A forwarder for node `me` of the cluster whose file has hash `hash`.
    pub fn new(me: &str, hash: &str) -> Self {
        let mut connector = HttpConnector::new_with_resolver(Lookup);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // Small request/response exchanges: do not wait to coalesce packets.
        connector.set_nodelay(true);
        connector.enforce_http(false);
        // Peers speak TLS when this node was given a CA to verify them with.
        let tls = cutover_daemon::tls::ClientTls::current();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE)
            .build(tls.https(connector));
        Self {
            client,
            scheme: tls.peer_scheme(),
            hash: HeaderValue::from_str(hash).expect("a hex hash is a header value"),
            me: HeaderValue::from_str(me).expect("node names are checked to fit a header"),
        }
    }

    /// Sends `method path_and_query` with the client's `headers` (less the hop-by-hop ones)
    /// and `body` to `to`, marked as forwarded; its answer, body read whole.
    pub async fn send(
        &self,
        to: &Member,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Bytes>, ForwardError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = format!("{}://{}{path_and_query}", self.scheme, to.http)
            .parse()
            .expect("a checked HOST:PORT and a path the server parsed make a URI");
        let out = request.headers_mut();
        copy_end_to_end(headers, out);
        out.insert(CLUSTER_HEADER, self.hash.clone());
        out.insert(FORWARDED_BY_HEADER, self.me.clone());
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| causes(&e))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("the answer broke off: {}", causes(&e)))?;
            Ok::<_, String>(Response::from_parts(parts, body.to_bytes()))
        };
        let outcome = tokio::time::timeout(ANSWER_TIMEOUT, exchange).await;
        let (label, result) = match outcome {
            Ok(Ok(response)) => ("answered", Ok(response)),
            Ok(Err(reason)) => (
                "unreachable",
                Err(ForwardError::Unreachable {
                    name: to.name.clone(),
                    addr: to.http.clone(),
                    reason,
                }),
            ),
            Err(_) => (
                "timeout",
                Err(ForwardError::Timeout {
                    name: to.name.clone(),
                    addr: to.http.clone(),
                    timeout: ANSWER_TIMEOUT,
                }),
            ),
        };
        metrics::counter!(m::FORWARDED_REQUESTS, "outcome" => label).increment(1);
        result
    }
}

/// Looks up a peer's name for each new connection (IP addresses never get here: the
/// connector uses them as they are), through the system's resolver like any other program
/// on the machine, and within [`LOOKUP_TIMEOUT`]: a resolver that does not answer makes the
/// request a quick 503, not one that waits out the answer timeout.
#[derive(Debug, Clone, Copy)]
struct Lookup;

impl tower::Service<Name> for Lookup {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        Box::pin(async move {
            // Port 0: the connector puts the URI's port on every address found.
            let lookup = tokio::net::lookup_host((name.as_str(), 0));
            let found = tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("looking up {} took over {LOOKUP_TIMEOUT:?}", name.as_str()),
                    )
                })??;
            Ok(found.collect::<Vec<_>>().into_iter())
        })
    }
}

/// Another node's answer, as this node's: its status, end-to-end headers and body.
pub(super) fn relay(answer: Response<Bytes>) -> Reply {
    let (parts, body) = answer.into_parts();
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = parts.status;
    copy_end_to_end(&parts.headers, reply.headers_mut());
    reply
}

/// An error and its causes, `: `-separated: the client's own message ("client error
/// (Connect)") says little without them.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Copies the headers of `from` that concern the request or answer itself into `to`.
pub fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(name) && name != header::CONTENT_LENGTH {
            to.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn peer(http: &str) -> Member {
        Member {
            name: "n1".to_owned(),
            http: http.parse().expect("a good address"),
            grpc: "n1.test:7071".parse().expect("a good address"),
            owns: vec![0],
        }
    }

    async fn get(forwarder: &Forwarder, to: &Member) -> Result<Response<Bytes>, ForwardError> {
        let headers = HeaderMap::new();
        forwarder
            .send(to, Method::GET, "/v1/c/x", &headers, Bytes::new())
            .await
    }

    #[tokio::test]
    async fn a_peer_named_by_dns_is_looked_up_when_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("an address").port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("a connection");
            let mut request = vec![0; 4096];
            let read = stream.read(&mut request).await.expect("the request");
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
                .await
                .expect("the answer");
            String::from_utf8_lossy(&request[..read]).into_owned()
        });
        let forwarder = Forwarder::new("n0", "abc");
        let answer = get(&forwarder, &peer(&format!("localhost:{port}")))
            .await
            .expect("answered");
        assert_eq!(
            (answer.status().as_u16(), answer.body().as_ref()),
            (200, &b"hi"[..])
        );
        let request = server.await.expect("the server ran");
        assert!(request.starts_with("GET /v1/c/x HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains(&format!("host: localhost:{port}\r\n")),
            "{request}"
        );
        assert!(
            request.contains("cutover-forwarded-by: n0\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_peer_that_cannot_be_reached() {
        let forwarder = Forwarder::new("n0", "abc");
        let error = get(&forwarder, &peer("no-such-host.invalid:7070"))
            .await
            .expect_err("no such host");
        assert!(
            matches!(&error, ForwardError::Unreachable { addr, .. }
                if addr.to_string() == "no-such-host.invalid:7070"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with("n1 (no-such-host.invalid:7070) cannot be reached: ")
                && message.contains("dns error"),
            "{message}"
        );
    }
}
