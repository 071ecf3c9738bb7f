//! Which node answers an HTTP request in a cluster. A document request is answered by the
//! owner of the document's partition: here, or forwarded to it ([`forward`](super::forward)).
//! A request another node forwarded is answered here or refused, never forwarded again: by
//! `421` when the sender has another cluster file, or when this node does not own the
//! document after all (the two nodes disagree on the owners, which equal hashes rule out).

use cutover_daemon::ErrorCode;
use http::HeaderMap;

use super::{
    forward::{CLUSTER_HEADER, FORWARDED_BY_HEADER, Forwarder},
    http::ApiError,
};
use crate::{
    cluster::{ClusterConfig, Member, peers::Agreement},
    store::partition_of,
};

/// A node's routing in its cluster.
#[derive(Debug, Clone)]
pub struct Routing {
    config: ClusterConfig,
    forwarder: Forwarder,
    agreement: Agreement,
}

/// Where a document request is answered.
pub(super) enum Place<'a> {
    /// From this node's store.
    Here,
    /// By the owner.
    Owner(&'a Member, u32),
}

impl Routing {
    /// Routing for this node of `config`, with the peers' `agreement` on the file.
    pub fn new(config: ClusterConfig, agreement: Agreement) -> Self {
        let forwarder = Forwarder::new(config.name(), config.cluster().hash());
        Self {
            config,
            forwarder,
            agreement,
        }
    }

    /// This node's name.
    pub(super) fn name(&self) -> &str {
        self.config.name()
    }

    /// The cluster file's hash.
    pub(super) fn hash(&self) -> &str {
        self.config.cluster().hash()
    }

    pub(super) fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Why this node is not ready, when a peer has another cluster file.
    pub(super) fn disagreement(&self) -> Option<String> {
        self.agreement.disagreement()
    }

    /// Every other node of the cluster.
    pub(super) fn peers(&self) -> impl Iterator<Item = &Member> {
        self.config
            .cluster()
            .members()
            .iter()
            .filter(|m| m.name != self.config.name())
    }

    /// Where `collection/id` is answered, for a request forwarded by `sender` (if any).
    pub(super) fn place(
        &self,
        sender: Option<&str>,
        collection: &str,
        id: &str,
    ) -> Result<Place<'_>, ApiError> {
        let cluster = self.config.cluster();
        let partition = partition_of(id, cluster.partitions());
        let owner = cluster
            .owner(partition)
            .expect("partition_of is below the partition count");
        if owner.name == self.config.name() {
            return Ok(Place::Here);
        }
        match sender {
            None => Ok(Place::Owner(owner, partition)),
            Some(sender) => Err(ApiError::new(
                ErrorCode::Misdirected,
                "not_owner",
                format!(
                    "{sender} forwarded {collection}/{id} (partition {partition}) to {me}, \
                     but {me} does not own it: {owner} does; a forwarded request is never \
                     forwarded again",
                    me = self.config.name(),
                    owner = owner.name,
                ),
            )),
        }
    }
}

/// The node that forwarded this request, when it was forwarded: refused with `421` when the
/// sender's cluster hash is not `mine` (`me` names this node in the message).
pub(super) fn forwarded_by(
    headers: &HeaderMap,
    me: &str,
    mine: &str,
) -> Result<Option<String>, ApiError> {
    let Some(sender) = headers.get(FORWARDED_BY_HEADER) else {
        return Ok(None);
    };
    let sender = String::from_utf8_lossy(sender.as_bytes()).into_owned();
    let theirs = headers
        .get(CLUSTER_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if theirs != mine {
        return Err(ApiError::new(
            ErrorCode::Misdirected,
            "cluster_mismatch",
            format!(
                "{sender} forwarded this request with cluster hash {theirs:?}, but {me} has \
                 cluster hash {mine:?}: the two nodes were started with different cluster \
                 files; start every node of the colour with the same file"
            ),
        ));
    }
    Ok(Some(sender))
}
