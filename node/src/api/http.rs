//! The HTTP document API (hyper 1.x):
//!
//! - `PUT /v1/{collection}/{id}` → 201 created / 200 updated, `{"collection","id","version","seq"}`
//! - `GET /v1/{collection}/{id}` → 200 with exactly the stored JSON, or 404
//! - `DELETE /v1/{collection}/{id}` → 200 `{"version","seq"}`, or 404
//! - `GET /v1/{collection}?after={id}&limit={n}` → a page in id order
//! - `GET /openapi.json`: this API described in OpenAPI 3.1 ([`openapi`](super::openapi))
//! - `GET /healthz`, `/readyz`, `/metrics`, and the pages given to [`HttpApi::with_pages`]
//!   (the status page of an engine running inside the node), but not to a request that came
//!   through a proxy: the service's clients do not see it
//!
//! `ETag: "<version>"` on every document response; `If-Match` and `If-None-Match: *` honoured.
//! Errors are `{"error": "<code>", "detail": "<text>"}`.
//!
//! In a cluster (see [`crate::cluster`]) any node answers any request: a document request
//! for a partition this node does not own is forwarded to its owner and answered with the
//! owner's status, headers and body; `503` with `Retry-After` when the owner cannot be
//! reached. A listing is answered for the whole cluster: every node's page, merged in id
//! order. It is not a snapshot across nodes: each node reads its own snapshot, at slightly
//! different moments, so a page may show one node's write and miss another's made at the
//! same time. Any node unreachable makes a listing `503`, never a partial page. A request
//! another node forwarded (it carries `cutover-forwarded-by`) is answered from this node's
//! store or refused with `421`, never forwarded again (see [`route`](super::route)).

use std::{convert::Infallible, sync::Arc, time::Instant};

use bytes::Bytes;
use cutover_daemon::{Classify, ErrorCode, Pages, Readiness, ops, pages};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use super::{
    blocking,
    forward::relay,
    listing::{self, Entry, page_reply},
    openapi,
    request::{decode, list_query, precondition},
    route::{Place, Routing},
};
use crate::{
    metrics as m,
    store::{ClientWrite, Store, StoreError},
};

/// The methods of a document.
const DOCUMENT_METHODS: &str = "GET, HEAD, PUT, DELETE";

/// Default largest request body.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;

/// The document API over a store.
#[derive(Debug, Clone)]
pub struct HttpApi {
    store: Store,
    max_body: u64,
    readiness: Readiness,
    /// `None` for a cluster of one.
    cluster: Option<Routing>,
    /// Pages served beside the API (the status page of an engine running inside the node).
    pages: Option<Arc<dyn Pages>>,
}

pub(super) type Reply = Response<Full<Bytes>>;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub(super) struct ApiError {
    code: ErrorCode,
    name: &'static str,
    detail: String,
}

impl ApiError {
    pub(super) fn new(code: ErrorCode, name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            name,
            detail: detail.into(),
        }
    }

    pub(super) fn reply(self) -> Reply {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            detail: &'a str,
        }
        let mut reply = json(
            self.code.http_status(),
            &Body {
                error: self.name,
                detail: &self.detail,
            },
        );
        if matches!(self.code, ErrorCode::Fenced | ErrorCode::Unavailable) {
            reply
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.code == ErrorCode::PayloadTooLarge {
            // The rest of the body is not read: the connection closes after this answer
            // (lingering, so that a client still sending reads it: daemon `closing.rs`).
            reply
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        reply
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let name = match &error {
            StoreError::BadCollection { .. } => "bad_collection",
            StoreError::BadId { .. } => "bad_id",
            StoreError::Overloaded { .. } => "overloaded",
            other => other.code().as_str(),
        };
        if error.code() == ErrorCode::Internal {
            tracing::error!(%error, "store failure");
        }
        Self::new(error.code(), name, error.to_string())
    }
}

pub(super) fn json(status: StatusCode, body: &impl Serialize) -> Reply {
    let bytes = serde_json::to_vec(body).expect("response bodies serialise");
    let mut reply = Response::new(Full::new(Bytes::from(bytes)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

fn etag(reply: &mut Reply, version: u64) {
    let value = HeaderValue::try_from(format!("\"{version}\"")).expect("digits and quotes");
    reply.headers_mut().insert(header::ETAG, value);
}

/// A status code as a metric label, without an allocation for the ones this API answers.
fn status_label(status: StatusCode) -> metrics::SharedString {
    let label = match status.as_u16() {
        200 => "200",
        201 => "201",
        304 => "304",
        400 => "400",
        404 => "404",
        405 => "405",
        412 => "412",
        413 => "413",
        421 => "421",
        500 => "500",
        503 => "503",
        _ => return status.as_str().to_owned().into(),
    };
    label.into()
}

/// A method as a metric label: the ones this API serves, every other one as `other`, so
/// that a client cannot grow the label set. Writes and reads take different paths through
/// the store (a synced write group, or a snapshot read), so their latencies are told apart.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Whether a request came through a proxy.
fn proxied(headers: &HeaderMap) -> bool {
    headers.contains_key(header::VIA) || headers.contains_key("x-forwarded-for")
}

/// Which route a request took, for metrics (low cardinality).
#[derive(Clone, Copy)]
enum Route {
    Document,
    Collection,
    Ops,
    Page,
    Other,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Self::Document => "document",
            Self::Collection => "collection",
            Self::Ops => "ops",
            Self::Page => "page",
            Self::Other => "other",
        }
    }
}

impl HttpApi {
    /// The API for `store`, refusing bodies over `max_body` bytes; `cluster` routes requests
    /// to the other nodes (`None`: a cluster of one).
    pub fn new(
        store: Store,
        max_body: u64,
        readiness: Readiness,
        cluster: Option<Routing>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            max_body,
            readiness,
            cluster,
            pages: None,
        })
    }

    /// The API serving `pages` too (paths outside `/v1/` that `pages` claims).
    pub fn with_pages(self: Arc<Self>, pages: Option<Arc<dyn Pages>>) -> Arc<Self> {
        let mut api = Arc::unwrap_or_clone(self);
        api.pages = pages;
        Arc::new(api)
    }

    /// Answers one request; never fails (errors are answered as JSON).
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Result<Reply, Infallible> {
        let started = Instant::now();
        let method = method_label(request.method());
        let (route, reply) = self.route(request).await;
        let reply = reply.unwrap_or_else(ApiError::reply);
        let status = reply.status();
        metrics::counter!(m::HTTP_REQUESTS, "route" => route.label(), "status" => status_label(status))
            .increment(1);
        metrics::histogram!(m::HTTP_DURATION, "route" => route.label(), "method" => method)
            .record(started.elapsed().as_secs_f64());
        Ok(reply)
    }

    async fn route(&self, request: Request<Incoming>) -> (Route, Result<Reply, ApiError>) {
        let path = request.uri().path().to_owned();
        if path == "/readyz"
            && let Some(why) = self.cluster.as_ref().and_then(Routing::disagreement)
        {
            let mut reply = Response::new(Full::new(Bytes::from(format!("not ready: {why}\n"))));
            *reply.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            // As every other `/readyz` answer (`ops::respond`).
            reply
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return (Route::Ops, Ok(reply));
        }
        if let Some(reply) = ops::respond(request.method(), &path, &self.readiness) {
            return (Route::Ops, Ok(reply));
        }
        if path == openapi::PATH {
            return (Route::Ops, openapi::respond(request.method()));
        }
        // The page is for operators who reach this node directly, not for the service's
        // clients: a request that came through a proxy (it carries `Via` or
        // `X-Forwarded-For`, which the cutover proxy adds) is routed as any other path.
        if let Some(pages) = self.pages.as_ref().filter(|p| p.serves(&path))
            && !proxied(request.headers())
        {
            return (
                Route::Page,
                Ok(pages::respond(pages.as_ref(), request).await),
            );
        }
        let (me, mine) = self
            .cluster
            .as_ref()
            .map_or(("this node", ""), |c| (c.name(), c.hash()));
        let sender = match super::route::forwarded_by(request.headers(), me, mine) {
            Ok(sender) => sender,
            Err(error) => return (Route::Other, Err(error)),
        };
        let Some(rest) = path.strip_prefix("/v1/") else {
            let detail = format!("no route {path}: documents are under /v1/{{collection}}/{{id}}");
            return (
                Route::Other,
                Err(ApiError::new(ErrorCode::NotFound, "not_found", detail)),
            );
        };
        match rest.split_once('/') {
            Some((collection, id)) => (
                Route::Document,
                self.document(request, collection, id, sender.as_deref())
                    .await,
            ),
            None => (
                Route::Collection,
                self.collection(&request, rest, sender.is_some()).await,
            ),
        }
    }

    async fn document(
        &self,
        request: Request<Incoming>,
        collection: &str,
        id: &str,
        sender: Option<&str>,
    ) -> Result<Reply, ApiError> {
        // Refused before anything else, here as on the owner: forwarding it would only fetch
        // the owner's 405, or a 503 while the owner is down.
        if !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        ) {
            return Err(method_not_allowed(DOCUMENT_METHODS));
        }
        let collection = decode(collection, "bad_collection")?;
        let id = decode(id, "bad_id")?;
        if let Some(routing) = &self.cluster
            && let Place::Owner(owner, partition) = routing.place(sender, &collection, &id)?
        {
            let (parts, body) = request.into_parts();
            let body = self.read_body(&parts.headers, body).await?;
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            return match routing
                .forwarder()
                .send(owner, parts.method, path, &parts.headers, body)
                .await
            {
                Ok(answer) => Ok(relay(answer)),
                Err(error) => Err(ApiError::new(
                    ErrorCode::Unavailable,
                    "owner_unavailable",
                    format!(
                        "{collection}/{id} is in partition {partition}, owned by {}; {error}; \
                         retry shortly",
                        owner.name
                    ),
                )),
            };
        }
        let precondition = precondition(request.headers())?;
        let store = self.store.clone();
        match *request.method() {
            Method::GET | Method::HEAD => {
                let (c, i) = (collection.clone(), id.clone());
                let doc = blocking(move || store.get(&c, &i)).await?;
                let doc = doc.ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::NotFound,
                        "not_found",
                        format!("no document {collection}/{id}"),
                    )
                })?;
                let mut reply = Response::new(Full::new(Bytes::from(doc.body)));
                reply.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                etag(&mut reply, doc.version);
                Ok(reply)
            }
            Method::PUT => {
                let (parts, body) = request.into_parts();
                let body = self.read_body(&parts.headers, body).await?;
                if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                    return Err(ApiError::new(
                        ErrorCode::InvalidArgument,
                        "invalid_json",
                        format!("the body is not one JSON value: {error}"),
                    ));
                }
                let out = store
                    .write(ClientWrite {
                        collection: collection.clone(),
                        id: id.clone(),
                        body: Some(body),
                        precondition,
                    })
                    .await?;
                metrics::counter!(m::DOCUMENTS_WRITTEN).increment(1);
                #[derive(Serialize)]
                struct Written<'a> {
                    collection: &'a str,
                    id: &'a str,
                    version: u64,
                    seq: u64,
                }
                let status = if out.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                let mut reply = json(
                    status,
                    &Written {
                        collection: &collection,
                        id: &id,
                        version: out.version,
                        seq: out.seq,
                    },
                );
                etag(&mut reply, out.version);
                Ok(reply)
            }
            Method::DELETE => {
                let out = store
                    .write(ClientWrite {
                        collection,
                        id,
                        body: None,
                        precondition,
                    })
                    .await?;
                metrics::counter!(m::DOCUMENTS_DELETED).increment(1);
                #[derive(Serialize)]
                struct Deleted {
                    version: u64,
                    seq: u64,
                }
                let mut reply = json(
                    StatusCode::OK,
                    &Deleted {
                        version: out.version,
                        seq: out.seq,
                    },
                );
                etag(&mut reply, out.version);
                Ok(reply)
            }
            _ => Err(method_not_allowed(DOCUMENT_METHODS)),
        }
    }

    async fn collection(
        &self,
        request: &Request<Incoming>,
        collection: &str,
        forwarded: bool,
    ) -> Result<Reply, ApiError> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Err(method_not_allowed("GET, HEAD"));
        }
        let collection = decode(collection, "bad_collection")?;
        let (after, limit) = list_query(request.uri().query().unwrap_or_default())?;
        let store = self.store.clone();
        let local = blocking(move || store.list(&collection, after.as_deref(), limit));
        match &self.cluster {
            Some(routing) if !forwarded => {
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                listing::cluster_list(routing, path, local, limit).await
            }
            _ => {
                let page = local.await?;
                let documents = page
                    .documents
                    .iter()
                    .map(|(id, version, body)| Entry::new(id, *version, body))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(page_reply(&documents, page.next.as_deref()))
            }
        }
    }

    /// Reads the body, refusing more than `max_body` bytes (by its length header when it has
    /// one, before reading anything).
    async fn read_body(&self, headers: &HeaderMap, body: Incoming) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "body_too_large",
                format!(
                    "the body is larger than the limit of {} bytes",
                    self.max_body
                ),
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body) {
            return Err(too_large());
        }
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(error) => Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "bad_body",
                format!("the body could not be read: {error}"),
            )),
        }
    }
}

pub(super) fn method_not_allowed(allowed: &str) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method_not_allowed",
        format!("allowed here: {allowed}"),
    )
}
