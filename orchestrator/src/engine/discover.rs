//! Discovery: every source and sink is described and checked against the plan before the
//! first document moves, and each source is paired with the sink its documents go to.

use std::sync::Arc;

use cutover_node::store::Store;
use cutover_proto::v1::DescribeResponse;
use futures_util::{FutureExt as _, future::BoxFuture};

use super::{
    copy::{CopyContext, CopyError, copy},
    peer::{PeerError, SinkPeer, SourcePeer, Token},
    plan::Plan,
    routes::Tally,
    world::{Discovery, Pipeline},
};

/// One pipeline of a cycle: a source, its journal key, and the sink it feeds.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The blue node.
    pub source: SourcePeer,
    /// Its node id: its key in the journal.
    pub source_id: String,
    /// The green node.
    pub sink: SinkPeer,
    /// Its node id.
    pub sink_id: String,
}

/// What discovery found wrong.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// A node could not be described.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The nodes do not fit the plan; the message says which and what to change.
    #[error("{0}")]
    Mismatch(String),
}

impl Pipeline for Pair {
    fn source_id(&self) -> &str {
        &self.source_id
    }

    fn sink_id(&self) -> &str {
        &self.sink_id
    }

    fn sink_endpoint(&self) -> &str {
        self.sink.endpoint()
    }

    fn lag(&self, since: u64) -> BoxFuture<'_, Result<u64, PeerError>> {
        self.source.lag(since, &[]).boxed()
    }

    fn live_documents(&self) -> BoxFuture<'_, Result<u64, PeerError>> {
        async {
            let described = self.source.describe().await?;
            Ok(described.collections.iter().map(|c| c.live_documents).sum())
        }
        .boxed()
    }

    fn copy<'a>(
        &'a self,
        since: u64,
        context: &'a CopyContext,
    ) -> BoxFuture<'a, Result<Tally, CopyError>> {
        copy(&self.source, &self.sink, since, context).boxed()
    }

    fn reversed(&self, token: &Token) -> Result<Arc<dyn Pipeline>, String> {
        Ok(Arc::new(Pair {
            source: SourcePeer::new(self.sink.endpoint())?,
            source_id: self.sink_id.clone(),
            sink: SinkPeer::remote(&self.source.endpoint, token.clone())?,
            sink_id: self.source_id.clone(),
        }))
    }
}

/// Discovery over gRPC of the nodes of a plan; the sink that is the node the engine runs in
/// (`local`) is written directly.
#[derive(Debug)]
pub struct GrpcDiscovery {
    /// The plan.
    pub plan: Plan,
    /// Green's token, for its `Sink`.
    pub sink_token: Token,
    /// The store of the node the engine runs in, if any.
    pub local: Option<Store>,
}

impl Discovery for GrpcDiscovery {
    fn discover(&self) -> BoxFuture<'_, Result<Vec<Arc<dyn Pipeline>>, DiscoverError>> {
        async {
            let pairs = discover(&self.plan, &self.sink_token, self.local.as_ref()).await?;
            Ok(pairs
                .into_iter()
                .map(|p| Arc::new(p) as Arc<dyn Pipeline>)
                .collect())
        }
        .boxed()
    }
}

/// Describes every node of `plan` and pairs sources with sinks: one sink takes every source,
/// or sources and sinks pair in order. `local` is the store of the node the engine runs in:
/// the sink that is that node is written directly.
pub async fn discover(
    plan: &Plan,
    sink_token: &Token,
    local: Option<&Store>,
) -> Result<Vec<Pair>, DiscoverError> {
    let (sources, sinks) = (&plan.blue.sources, &plan.green.sinks);
    if sinks.len() != 1 && sinks.len() != sources.len() {
        return Err(DiscoverError::Mismatch(format!(
            "green.sinks: {} sinks for {} sources: give one sink, or one sink per source (they \
             pair in order)",
            sinks.len(),
            sources.len()
        )));
    }
    let mut described_sinks = Vec::new();
    for endpoint in sinks {
        let node = SourcePeer::new(endpoint).map_err(DiscoverError::Mismatch)?;
        let about = node.describe().await?;
        let peer = match local {
            Some(store) if store.node_id() == about.node_id => SinkPeer::Local {
                endpoint: endpoint.clone(),
                store: store.clone(),
            },
            _ => SinkPeer::remote(endpoint, sink_token.clone()).map_err(DiscoverError::Mismatch)?,
        };
        described_sinks.push((peer, about));
    }
    let mut pairs = Vec::new();
    for (i, endpoint) in sources.iter().enumerate() {
        let source = SourcePeer::new(endpoint).map_err(DiscoverError::Mismatch)?;
        let about = source.describe().await?;
        let (sink, sink_about) = &described_sinks[if sinks.len() == 1 { 0 } else { i }];
        check(plan, endpoint, &about, sink.endpoint(), sink_about)?;
        if pairs.iter().any(|p: &Pair| p.source_id == about.node_id) {
            return Err(DiscoverError::Mismatch(format!(
                "blue.sources[{i}]: {endpoint} is node {} again: list every blue node once",
                about.node_id
            )));
        }
        pairs.push(Pair {
            source,
            source_id: about.node_id,
            sink: sink.clone(),
            sink_id: sink_about.node_id.clone(),
        });
    }
    Ok(pairs)
}

fn check(
    plan: &Plan,
    source: &str,
    about: &DescribeResponse,
    sink: &str,
    sink_about: &DescribeResponse,
) -> Result<(), DiscoverError> {
    let mismatch = |m: String| Err(DiscoverError::Mismatch(m));
    if about.node_id == sink_about.node_id {
        return mismatch(format!(
            "{source} and {sink} are the same node ({}): blue and green must be different nodes",
            about.node_id
        ));
    }
    if about.partition_count != sink_about.partition_count {
        return mismatch(format!(
            "{source} has {} partitions and {sink} has {}: start green with --partitions {} so \
             the copy can be verified partition by partition",
            about.partition_count, sink_about.partition_count, about.partition_count
        ));
    }
    for collection in &about.collections {
        let name = collection.name.as_str();
        if plan.collections.contains_key(name) {
            continue;
        }
        if let Some((listed, _)) = plan
            .collections
            .iter()
            .find(|(listed, _)| plan.green_name(listed) == name)
        {
            return mismatch(format!(
                "collections.{listed}.rename: {source} has a collection {name} too, and both \
                 would land in {name} on green: rename to another name, or list {name} with a \
                 rename of its own"
            ));
        }
    }
    Ok(())
}
