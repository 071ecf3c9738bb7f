//! Listing pages: `{"documents": [{"id", "version", "body"}], "next"}`. In a cluster, a
//! listing is answered for the whole cluster: this node's page and every peer's, asked at
//! once (each a forwarded request, answered from the peer's own store), merged in id order.
//! Each node returns up to `limit` documents after `after`, so the first `limit` of the merge
//! are the cluster's; there is a next page when any node had more, or the merge did.

use std::borrow::Cow;

use bytes::Bytes;
use cutover_daemon::ErrorCode;
use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{
    forward::relay,
    http::{ApiError, Reply, json},
    route::Routing,
};
use crate::store::{Listing, StoreError};

/// One document of a listing page.
#[derive(Serialize)]
pub(super) struct Entry<'a> {
    pub(super) id: &'a str,
    pub(super) version: u64,
    pub(super) body: &'a RawValue,
}

impl<'a> Entry<'a> {
    /// A stored document as a page entry (its body was validated as JSON on the way in).
    pub(super) fn new(id: &'a str, version: u64, body: &'a [u8]) -> Result<Self, ApiError> {
        let body = serde_json::from_slice(body).map_err(|_| {
            ApiError::new(
                ErrorCode::Internal,
                "internal",
                format!("stored body of {id} is not JSON"),
            )
        })?;
        Ok(Self { id, version, body })
    }
}

/// A listing page: `{"documents": [...], "next": ...}`.
pub(super) fn page_reply(documents: &[Entry<'_>], next: Option<&str>) -> Reply {
    #[derive(Serialize)]
    struct Page<'p, 'a> {
        documents: &'p [Entry<'a>],
        next: Option<&'p str>,
    }
    json(StatusCode::OK, &Page { documents, next })
}

/// A peer's page as it sent it.
#[derive(Deserialize)]
struct PeerPage<'a> {
    #[serde(borrow)]
    documents: Vec<PeerEntry<'a>>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct PeerEntry<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    version: u64,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// Answers `path` (a listing of at most `limit`) with this node's page, `local`, merged with
/// every peer's. Any peer unreachable: `503`; any peer's error: that error, as it answered.
pub(super) async fn cluster_list(
    routing: &Routing,
    path: &str,
    local: impl Future<Output = Result<Listing, StoreError>>,
    limit: usize,
) -> Result<Reply, ApiError> {
    let headers = HeaderMap::new();
    let peers: Vec<_> = routing.peers().collect();
    let asked = peers.iter().map(|peer| {
        routing
            .forwarder()
            .send(peer, Method::GET, path, &headers, Bytes::new())
    });
    let (local, answers) = tokio::join!(local, futures_util::future::join_all(asked));
    let local = local?;
    let mut bodies = Vec::with_capacity(answers.len());
    for answer in answers {
        let answer = answer.map_err(|error| {
            ApiError::new(
                ErrorCode::Unavailable,
                "node_unavailable",
                format!("a listing needs every node of the cluster: {error}; retry shortly"),
            )
        })?;
        if answer.status() != StatusCode::OK {
            return Ok(relay(answer));
        }
        bodies.push(answer.into_body());
    }
    let mut pages = Vec::with_capacity(bodies.len());
    for (peer, body) in peers.iter().zip(&bodies) {
        let page: PeerPage<'_> = serde_json::from_slice(body).map_err(|error| {
            ApiError::new(
                ErrorCode::BadGateway,
                "bad_peer_answer",
                format!(
                    "{} answered a listing that does not parse: {error}",
                    peer.name
                ),
            )
        })?;
        pages.push(page);
    }
    let mut more = local.next.is_some() || pages.iter().any(|p| p.next.is_some());
    let mut documents = local
        .documents
        .iter()
        .map(|(id, version, body)| Entry::new(id, *version, body))
        .collect::<Result<Vec<_>, _>>()?;
    for page in &pages {
        documents.extend(page.documents.iter().map(|d| Entry {
            id: &d.id,
            version: d.version,
            body: d.body,
        }));
    }
    documents.sort_unstable_by(|a, b| a.id.cmp(b.id));
    if documents.len() > limit {
        documents.truncate(limit);
        more = true;
    }
    let next = more.then(|| documents.last().map(|d| d.id)).flatten();
    Ok(page_reply(&documents, next))
}
