//! Discovery: every source and sink is described and checked against the plan before the
//! first document moves, and the copy topology is built from the partitions each owns.

use std::sync::Arc;

use cutover_node::store::Store;
use cutover_proto::v1::DescribeResponse;
use futures_util::{FutureExt as _, future::BoxFuture};

use super::{
    copy::{CopyContext, CopyError, copy},
    hosted::Hosted,
    journal::Link,
    peer::{PeerError, SinkPeer, SourcePeer, Token},
    plan::Plan,
    routes::Tally,
    topology::{self, Member},
    world::{Discovery, Pipeline},
};

/// One pipeline: a source node, the sink node it feeds, and the partitions they share.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The node pulled from.
    pub source: SourcePeer,
    /// The node applied to.
    pub sink: SinkPeer,
    /// Their node ids: the pipeline's key in the journal.
    pub link: Link,
    /// The partitions copied; empty for every partition.
    pub partitions: Vec<u32>,
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
    fn link(&self) -> &Link {
        &self.link
    }

    fn source_endpoint(&self) -> &str {
        &self.source.endpoint
    }

    fn sink_endpoint(&self) -> &str {
        self.sink.endpoint()
    }

    fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    fn lag(&self, since: u64) -> BoxFuture<'_, Result<u64, PeerError>> {
        self.source.lag(since, &self.partitions).boxed()
    }

    fn live_documents(&self) -> BoxFuture<'_, Result<u64, PeerError>> {
        async {
            let digest = self.source.digest().await?;
            Ok(digest
                .partitions
                .iter()
                .filter(|p| self.partitions.is_empty() || self.partitions.contains(&p.partition))
                .map(|p| p.live_documents)
                .sum())
        }
        .boxed()
    }

    fn copy<'a>(
        &'a self,
        since: u64,
        context: &'a CopyContext,
    ) -> BoxFuture<'a, Result<Tally, CopyError>> {
        copy(&self.source, &self.sink, since, &self.partitions, context)
            .map(|copied| copied.map(|c| c.tally))
            .boxed()
    }

    fn reversed(&self, token: &Token) -> Result<Arc<dyn Pipeline>, String> {
        Ok(Arc::new(self.turned(token)?))
    }
}

impl Pair {
    /// The same two nodes the other way, the new sink written with `token`.
    pub fn turned(&self, token: &Token) -> Result<Pair, String> {
        Ok(Pair {
            source: SourcePeer::new(self.sink.endpoint())?,
            sink: SinkPeer::remote(&self.source.endpoint, token.clone())?,
            link: self.link.reversed(),
            partitions: self.partitions.clone(),
        })
    }
}

/// Discovery over gRPC of the nodes of a plan; the sink that is the node the engine runs in
/// (`local`) is written directly.
#[derive(Debug)]
pub struct GrpcDiscovery {
    /// The plan.
    pub plan: Plan,
    /// Its text, sent to the sink nodes that run their pipelines.
    pub plan_toml: String,
    /// Green's token, for its `Sink` and `Pipelines`.
    pub sink_token: Token,
    /// The store of the node the engine runs in, if any.
    pub local: Option<Store>,
}

impl Discovery for GrpcDiscovery {
    fn discover(&self) -> BoxFuture<'_, Result<Vec<Arc<dyn Pipeline>>, DiscoverError>> {
        async {
            let pairs = discover(&self.plan, &self.sink_token, self.local.as_ref()).await?;
            pairs
                .into_iter()
                .map(|pair| {
                    // The sink that is the engine's own node is written in this process; any
                    // other runs its pipelines itself.
                    Ok(if matches!(pair.sink, SinkPeer::Local { .. }) {
                        Arc::new(pair) as Arc<dyn Pipeline>
                    } else {
                        let hosted =
                            Hosted::new(pair, self.plan_toml.clone(), self.sink_token.clone())
                                .map_err(DiscoverError::Mismatch)?;
                        Arc::new(hosted)
                    })
                })
                .collect()
        }
        .boxed()
    }
}

/// Describes every node of `plan` and builds the copy topology from what they own
/// ([`topology::routes`]). `local` is the store of the node the engine runs in: the sink that
/// is that node is written directly.
pub async fn discover(
    plan: &Plan,
    sink_token: &Token,
    local: Option<&Store>,
) -> Result<Vec<Pair>, DiscoverError> {
    let mut sources = Vec::new();
    for endpoint in &plan.blue.sources {
        let source = SourcePeer::new(endpoint).map_err(DiscoverError::Mismatch)?;
        let about = source.describe().await?;
        sources.push((source, about));
    }
    let mut sinks = Vec::new();
    for endpoint in &plan.green.sinks {
        let about = SourcePeer::new(endpoint)
            .map_err(DiscoverError::Mismatch)?
            .describe()
            .await?;
        let peer = match local {
            Some(store) if store.node_id() == about.node_id => SinkPeer::Local {
                endpoint: endpoint.clone(),
                store: store.clone(),
            },
            _ => SinkPeer::remote(endpoint, sink_token.clone()).map_err(DiscoverError::Mismatch)?,
        };
        sinks.push((peer, about));
    }
    for (source, about) in &sources {
        if let Some((sink, _)) = sinks.iter().find(|(_, a)| a.node_id == about.node_id) {
            return Err(DiscoverError::Mismatch(format!(
                "{} and {} are the same node ({}): blue and green must be different nodes",
                source.endpoint,
                sink.endpoint(),
                about.node_id
            )));
        }
        check(plan, &source.endpoint, about)?;
    }
    let blue: Vec<Member<'_>> = sources
        .iter()
        .map(|(s, about)| Member {
            endpoint: &s.endpoint,
            about,
        })
        .collect();
    let green: Vec<Member<'_>> = sinks
        .iter()
        .map(|(s, about)| Member {
            endpoint: s.endpoint(),
            about,
        })
        .collect();
    let routes = topology::routes(&blue, &green).map_err(DiscoverError::Mismatch)?;
    Ok(routes
        .into_iter()
        .map(|route| {
            let (source, source_about) = &sources[route.blue];
            let (sink, sink_about) = &sinks[route.green];
            Pair {
                source: source.clone(),
                sink: sink.clone(),
                link: Link::new(&source_about.node_id, &sink_about.node_id),
                partitions: route.partitions,
            }
        })
        .collect())
}

/// Checks a source's collections against the plan's renames.
fn check(plan: &Plan, source: &str, about: &DescribeResponse) -> Result<(), DiscoverError> {
    let mismatch = |m: String| Err(DiscoverError::Mismatch(m));
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
