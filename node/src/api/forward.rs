//! Forwarding HTTP requests to the other nodes of the cluster, over pooled keep-alive
//! HTTP/1.1 connections (one pool per peer, shared by every request of this node).
//!
//! A forwarded request carries two headers: [`CLUSTER_HEADER`], the sender's cluster file
//! hash, and [`FORWARDED_BY_HEADER`], its name. A node answers a request that carries them
//! from its own store or refuses it: it never forwards it again, so a disagreement about
//! owners is an error at once, never a loop.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
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
    client: Client<HttpConnector, Full<Bytes>>,
    hash: HeaderValue,
    me: HeaderValue,
}

impl Forwarder {
    /// A forwarder for node `me` of the cluster whose file has hash `hash`.
    pub fn new(me: &str, hash: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // Small request/response exchanges: do not wait to coalesce packets.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE)
            .build(connector);
        Self {
            client,
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
        *request.uri_mut() = format!("http://{}{path_and_query}", to.http)
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
