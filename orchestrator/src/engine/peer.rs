//! The nodes an upgrade talks to: a `Source` to pull from and a `Sink` to apply to, which is
//! either a remote node over gRPC or, when the engine runs inside the green node, that node's
//! own store (no network hop for its own writes).

use std::{fmt, pin::Pin};

use cutover_node::{
    api::sink::{INGEST_BATCHES, apply_stream},
    store::Store,
};
use cutover_proto::v1::{
    ApplyAck, ApplyRequest, DescribeRequest, DescribeResponse, DigestRequest, DigestResponse,
    LagRequest, PullRequest, PullResponse, sink_client::SinkClient, source_client::SourceClient,
};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Status, Streaming, metadata::MetadataValue, transport::Channel};

/// Largest message a client accepts: a batch holding one document bigger than the batch byte
/// budget travels alone, so this is far above the plan's 3 MiB batch limit.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Batches sent to a sink before the first of them is acknowledged.
pub const APPLY_WINDOW: usize = 4;

/// A failed call to a node, with the node and the call.
#[derive(Debug, thiserror::Error)]
#[error("{endpoint}: {call}: {}", status.message())]
pub struct PeerError {
    /// The node's endpoint.
    pub endpoint: String,
    /// The RPC.
    pub call: &'static str,
    /// What it answered.
    pub status: Status,
}

impl PeerError {
    /// Turns a status answered by `endpoint` to `call` into a peer error.
    pub fn at(endpoint: &str, call: &'static str) -> impl FnOnce(Status) -> PeerError {
        let endpoint = endpoint.to_owned();
        move |status| PeerError {
            endpoint,
            call,
            status,
        }
    }
}

/// A bearer token as gRPC metadata, and the plan field it came from.
#[derive(Clone, Default)]
pub struct Token(Option<MetadataValue<tonic::metadata::Ascii>>, &'static str);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Token(..)"
        } else {
            "Token(none)"
        })
    }
}

impl Token {
    /// `token` (from `field`) as `authorization: Bearer <token>`; none sends no header.
    pub fn new(token: Option<&str>, field: &'static str) -> Result<Self, String> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| "the token holds characters a header cannot carry".to_owned())
            })
            .transpose()
            .map(|value| Self(value, field))
    }

    /// Refuses `endpoint` for this token when it would cross the network in clear text
    /// (`ClientTls::check_token`).
    pub fn check(&self, endpoint: &str) -> Result<(), String> {
        if self.0.is_none() {
            return Ok(());
        }
        cutover_daemon::tls::ClientTls::current().check_token(endpoint, self.1)
    }

    /// The token in the file at `path` (the plan's `field`), or none; an error names the
    /// field.
    pub fn from_file(path: Option<&std::path::Path>, field: &'static str) -> Result<Self, String> {
        let token = path
            .map(cutover_daemon::auth::read_token_file)
            .transpose()
            .map_err(|e| format!("{field}: {e}"))?;
        Self::new(token.as_deref(), field).map_err(|e| format!("{field}: {e}"))
    }

    /// `message` with the token attached.
    pub fn attach<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }
}

/// A blue node to copy from.
#[derive(Debug, Clone)]
pub struct SourcePeer {
    /// Its endpoint, as in the plan.
    pub endpoint: String,
    client: SourceClient<Channel>,
}

/// How long connecting to a node may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// HTTP/2 pings on every connection, so a frozen or partitioned node fails the stream
/// instead of leaving a cycle waiting forever.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

/// A lazily connected channel to `endpoint`, with the timeouts every peer uses, over TLS for
/// an `https://` endpoint (the process's `ClientTls`).
pub fn channel(endpoint: &str) -> Result<Channel, String> {
    let configured = cutover_proto::endpoint(endpoint.to_owned())
        .map(|e| {
            e.connect_timeout(CONNECT_TIMEOUT)
                .http2_keep_alive_interval(KEEPALIVE)
                .keep_alive_timeout(KEEPALIVE * 2)
                .keep_alive_while_idle(true)
        })
        .map_err(|e| format!("{endpoint}: not a usable endpoint: {e}"))?;
    let secured = cutover_daemon::tls::ClientTls::current().endpoint(configured, endpoint)?;
    Ok(secured.connect_lazy())
}

impl SourcePeer {
    /// A lazily connected client of `endpoint`.
    pub fn new(endpoint: &str) -> Result<Self, String> {
        let client =
            SourceClient::new(channel(endpoint)?).max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            endpoint: endpoint.to_owned(),
            client,
        })
    }

    fn fail(&self, call: &'static str) -> impl FnOnce(Status) -> PeerError {
        PeerError::at(&self.endpoint, call)
    }

    /// `Source.Describe`.
    pub async fn describe(&self) -> Result<DescribeResponse, PeerError> {
        let mut client = self.client.clone();
        let answer = client.describe(DescribeRequest {}).await;
        answer
            .map(|r| r.into_inner())
            .map_err(self.fail("Describe"))
    }

    /// `Source.Lag(since)`: changes pending after `since` in `partitions` (empty: all).
    pub async fn lag(&self, since: u64, partitions: &[u32]) -> Result<u64, PeerError> {
        let mut client = self.client.clone();
        let request = LagRequest {
            since,
            partitions: partitions.to_vec(),
        };
        let answer = client.lag(request).await;
        answer
            .map(|r| r.into_inner().changed)
            .map_err(self.fail("Lag"))
    }

    /// `Source.Digest` of every partition.
    pub async fn digest(&self) -> Result<DigestResponse, PeerError> {
        let mut client = self.client.clone();
        let answer = client.digest(DigestRequest::default()).await;
        answer.map(|r| r.into_inner()).map_err(self.fail("Digest"))
    }

    /// `Source.Pull(since)` of `partitions` (empty: all) in batches of at most `documents`
    /// and `bytes`.
    pub async fn pull(
        &self,
        since: u64,
        partitions: &[u32],
        documents: u32,
        bytes: u64,
    ) -> Result<Streaming<PullResponse>, PeerError> {
        let mut client = self.client.clone();
        let request = PullRequest {
            since,
            partitions: partitions.to_vec(),
            max_batch_documents: documents,
            max_batch_bytes: bytes,
        };
        let answer = client.pull(request).await;
        answer.map(|r| r.into_inner()).map_err(self.fail("Pull"))
    }
}

/// Acknowledgements of an apply stream, in batch order.
pub type Acks = Pin<Box<dyn Stream<Item = Result<ApplyAck, Status>> + Send>>;

/// A green node to copy into.
#[derive(Debug, Clone)]
pub enum SinkPeer {
    /// Over gRPC.
    Remote {
        /// Its endpoint, as in the plan.
        endpoint: String,
        /// The client (boxed: with TLS a channel is larger than a store handle).
        client: Box<SinkClient<Channel>>,
        /// Its bearer token.
        token: Token,
    },
    /// The store of the node the engine runs in.
    Local {
        /// Its endpoint, as in the plan.
        endpoint: String,
        /// The store.
        store: Store,
    },
}

impl SinkPeer {
    /// A lazily connected client of `endpoint`.
    pub fn remote(endpoint: &str, token: Token) -> Result<Self, String> {
        let client =
            SinkClient::new(channel(endpoint)?).max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self::Remote {
            endpoint: endpoint.to_owned(),
            client: Box::new(client),
            token,
        })
    }

    /// The endpoint, as in the plan.
    pub fn endpoint(&self) -> &str {
        match self {
            Self::Remote { endpoint, .. } | Self::Local { endpoint, .. } => endpoint,
        }
    }

    /// Batches sent to the sink and not yet acknowledged, at most. A local store that has
    /// never held a document is filled by ingest, in chunks of up to [`INGEST_BATCHES`]: the
    /// window lets a whole chunk arrive while the one before is written.
    pub fn window(&self) -> usize {
        match self {
            Self::Local { store, .. } if store.ingest().is_some() => INGEST_BATCHES,
            Self::Local { .. } | Self::Remote { .. } => APPLY_WINDOW,
        }
    }

    fn fail(&self, call: &'static str) -> impl FnOnce(Status) -> PeerError {
        PeerError::at(self.endpoint(), call)
    }

    /// Opens an apply stream: batches go into the sender (at most [`window`](Self::window)
    /// waiting); the future gives the acknowledgements, in the same order. Await the future
    /// only once a batch can be sent meanwhile: a server may answer the call with its first
    /// ack.
    pub fn apply(
        &self,
    ) -> (
        mpsc::Sender<ApplyRequest>,
        impl Future<Output = Result<Acks, PeerError>> + Send + '_,
    ) {
        let (tx, rx) = mpsc::channel(self.window());
        let opened = async move {
            match self {
                Self::Remote { client, token, .. } => {
                    let answer = client
                        .clone()
                        .apply(token.attach(ReceiverStream::new(rx)))
                        .await
                        .map_err(self.fail("Apply"))?;
                    Ok(Box::pin(answer.into_inner()) as Acks)
                }
                Self::Local { store, .. } => {
                    let applied = apply_stream(store.clone(), ReceiverStream::new(rx).map(Ok));
                    Ok(Box::pin(applied.map(|applied| applied.map(|a| a.ack()))) as Acks)
                }
            }
        };
        (tx, opened)
    }
}
