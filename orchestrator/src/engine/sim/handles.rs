//! The driver's handles of the simulated fleet: each proxy, node and pipeline as the
//! [`world`](crate::engine::world) traits see it, every call going through [`World::call`].

use std::{sync::Arc, time::Duration};

use cutover_node::store::partition_of;
use cutover_proto::{
    Color as Side,
    v1::{
        Color, DigestResponse, FenceState, NodeStatus, ProxyStatus, ResumeResponse, RouteMode,
        SwitchResponse,
    },
};
use cutover_proxy::route::{Command, Epoch, Mode};
use futures_util::{FutureExt as _, future::BoxFuture};
use tonic::Status;

use super::{
    COLLECTION, Fence, Inner, Node, PARTITIONS, World, blue_must_be_fenced, endpoint,
    green_must_be_fenced, owner, refused, side, side_mut, write,
};
use crate::engine::{
    copy::{CopyContext, CopyError, Figures},
    discover::DiscoverError,
    journal::{BatchRecord, Link},
    machine::{Handover, State, Step},
    peer::{PeerError, Token},
    routes::Tally,
    verify::digest_of,
    world::{Discovery, NodeControl, Pipeline, ProxyControl},
};

#[derive(Debug)]
pub(super) struct ProxyHandle {
    pub(super) world: Arc<World>,
    pub(super) index: usize,
    pub(super) endpoint: String,
}

/// Steps the route of proxy `index` by `command`; a release lets the held writes through to
/// the new active colour.
fn route_step(
    inner: &mut Inner,
    index: usize,
    now: u64,
    state: &State,
    command: Command,
) -> Result<u64, Status> {
    let proxy = &mut inner.proxies[index];
    let (route, change) = proxy.route.step(command).map_err(refused)?;
    proxy.route = route;
    if change != cutover_proxy::route::Change::Release {
        return Ok(0);
    }
    let held = std::mem::take(&mut proxy.held);
    let color = Color::from(route.active);
    for id in &held {
        write(inner, color, id, now, state, true);
    }
    Ok(held.len() as u64)
}

impl ProxyControl for ProxyHandle {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn pause(&self, epoch: u64, hold: Duration) -> BoxFuture<'_, Result<(), PeerError>> {
        let what = format!("{} Pause({epoch})", self.endpoint);
        let index = self.index;
        self.world
            .call(what, move |inner, now, state| {
                let deadline_unix_ms = now + hold.as_millis() as u64;
                let command = Command::Pause {
                    epoch: Epoch(epoch),
                    deadline_unix_ms,
                };
                route_step(inner, index, now, state, command).map(drop)
            })
            .boxed()
    }

    fn switch(&self, epoch: u64, color: Color) -> BoxFuture<'_, Result<SwitchResponse, PeerError>> {
        let what = format!("{} Switch({epoch}, {color:?})", self.endpoint);
        let index = self.index;
        self.world
            .call(what.clone(), move |inner, now, state| {
                // A switch goes only where the journal has committed to.
                let allowed = matches!(
                    (color, state),
                    (
                        Color::Green,
                        State::Handover {
                            handover: Handover::Cutover { .. },
                            step: Step::Committed { .. } | Step::Switching { .. },
                        },
                    ) | (
                        Color::Blue,
                        State::Handover {
                            handover: Handover::Rollback { .. },
                            step: Step::Committed { .. } | Step::Switching { .. },
                        },
                    )
                );
                if !allowed {
                    inner.violations.push(format!(
                        "{what} before the commit, in state {}",
                        state.name()
                    ));
                }
                let side = Side::try_from(color as i32)
                    .map_err(|e| Status::invalid_argument(format!("{e:?}")))?;
                let command = Command::Switch {
                    epoch: Epoch(epoch),
                    color: side,
                };
                let released = route_step(inner, index, now, state, command)?;
                Ok(SwitchResponse {
                    released,
                    max_hold_micros: 0,
                })
            })
            .boxed()
    }

    fn resume(&self, epoch: u64) -> BoxFuture<'_, Result<ResumeResponse, PeerError>> {
        let what = format!("{} Resume({epoch})", self.endpoint);
        let index = self.index;
        self.world
            .call(what, move |inner, now, state| {
                let command = Command::Resume {
                    epoch: Epoch(epoch),
                };
                let released = route_step(inner, index, now, state, command)?;
                Ok(ResumeResponse {
                    released,
                    max_hold_micros: 0,
                })
            })
            .boxed()
    }

    fn status(&self) -> BoxFuture<'_, Result<ProxyStatus, PeerError>> {
        let what = format!("{} Status", self.endpoint);
        let index = self.index;
        self.world
            .call(what, move |inner, _, _| {
                let proxy = &inner.proxies[index];
                let (mode, deadline) = match proxy.route.mode {
                    Mode::Forwarding => (RouteMode::Forwarding, 0),
                    Mode::Holding { deadline_unix_ms } => (RouteMode::Holding, deadline_unix_ms),
                };
                Ok(ProxyStatus {
                    epoch: proxy.route.epoch.0,
                    active: Color::from(proxy.route.active) as i32,
                    mode: mode as i32,
                    held: proxy.held.len() as u64,
                    hold_deadline_unix_ms: deadline,
                    ..ProxyStatus::default()
                })
            })
            .boxed()
    }
}

#[derive(Debug)]
pub(super) struct NodeHandle {
    pub(super) world: Arc<World>,
    pub(super) color: Color,
    pub(super) index: usize,
    pub(super) endpoint: String,
}

/// Node `index` of `color`.
fn node_mut(inner: &mut Inner, color: Color, index: usize) -> &mut Node {
    &mut side_mut(inner, color)[index]
}

impl NodeHandle {
    /// Fences under `epoch` (refused below the node's epoch); a lease never downgrades a
    /// permanent fence.
    fn fence(&self, epoch: u64, fence: Fence) -> BoxFuture<'_, Result<u64, PeerError>> {
        let what = format!("{} Fence({epoch}, {fence:?})", self.endpoint);
        let (color, index) = (self.color, self.index);
        self.world
            .call(what, move |inner, _, _| {
                let node = node_mut(inner, color, index);
                if epoch < node.epoch {
                    return Err(refused(format!("epoch {epoch} < {}", node.epoch)));
                }
                node.epoch = epoch;
                if node.fence != Fence::Permanent || fence == Fence::Permanent {
                    node.fence = fence;
                }
                Ok(node.head)
            })
            .boxed()
    }
}

impl NodeControl for NodeHandle {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn fence_lease<'a>(
        &'a self,
        epoch: u64,
        lease: Duration,
        _reason: &'a str,
    ) -> BoxFuture<'a, Result<u64, PeerError>> {
        let until_ms = self.world.now() + lease.as_millis() as u64;
        self.fence(epoch, Fence::Lease { until_ms })
    }

    fn fence_permanent<'a>(
        &'a self,
        epoch: u64,
        _reason: &'a str,
    ) -> BoxFuture<'a, Result<u64, PeerError>> {
        self.fence(epoch, Fence::Permanent)
    }

    fn unfence<'a>(&'a self, epoch: u64, _reason: &'a str) -> BoxFuture<'a, Result<(), PeerError>> {
        let what = format!("{} Unfence({epoch})", self.endpoint);
        let (color, index) = (self.color, self.index);
        self.world
            .call(what.clone(), move |inner, _, state| {
                let committed = match color {
                    Color::Green => green_must_be_fenced(state),
                    _ => blue_must_be_fenced(state),
                };
                if committed {
                    inner.violations.push(format!(
                        "{what}: {color:?} unfenced after it committed to the other side, in \
                         state {}",
                        state.name()
                    ));
                }
                let node = node_mut(inner, color, index);
                if epoch < node.epoch {
                    return Err(refused(format!("epoch {epoch} < {}", node.epoch)));
                }
                node.epoch = epoch;
                node.fence = Fence::None;
                Ok(())
            })
            .boxed()
    }

    fn status(&self) -> BoxFuture<'_, Result<NodeStatus, PeerError>> {
        let what = format!("{} Status", self.endpoint);
        let (color, index) = (self.color, self.index);
        self.world
            .call(what, move |inner, now, _| {
                let node = node_mut(inner, color, index);
                Ok(NodeStatus {
                    fence: Some(FenceState {
                        fenced: node.fenced(now),
                        permanent: node.fence == Fence::Permanent,
                        epoch: node.epoch,
                        ..FenceState::default()
                    }),
                    head_seq: node.head,
                    live_documents: node.docs.len() as u64,
                    partition_count: PARTITIONS,
                    ..NodeStatus::default()
                })
            })
            .boxed()
    }

    fn digest(&self) -> BoxFuture<'_, Result<DigestResponse, PeerError>> {
        let what = format!("{} Digest", self.endpoint);
        let (color, index) = (self.color, self.index);
        self.world
            .call(what, move |inner, _, _| {
                Ok(digest(node_mut(inner, color, index)))
            })
            .boxed()
    }
}

/// A node's per-partition counts and digests, as the node computes them.
fn digest(node: &Node) -> DigestResponse {
    let docs: Vec<(&str, &str, u64)> = node
        .docs
        .iter()
        .map(|(id, (version, _))| (COLLECTION, id.as_str(), *version))
        .collect();
    digest_of(PARTITIONS, &docs, node.head)
}

#[derive(Debug)]
pub(super) struct SimDiscovery {
    pub(super) world: Arc<World>,
}

impl Discovery for SimDiscovery {
    fn discover(&self) -> BoxFuture<'_, Result<Vec<Arc<dyn Pipeline>>, DiscoverError>> {
        let what = "discovery".to_owned();
        self.world
            .call(what, |inner, _, _| {
                Ok((inner.blue.len(), inner.green.len()))
            })
            .map(|answer| {
                let (blue, green) = answer?;
                // Node i of n owns the partitions p with p mod n = i, as clients write them.
                let mut pipelines = Vec::new();
                for b in 0..blue {
                    for g in 0..green {
                        let partitions: Vec<u32> = (0..PARTITIONS)
                            .filter(|p| *p as usize % blue == b && *p as usize % green == g)
                            .collect();
                        if !partitions.is_empty() {
                            pipelines.push(Arc::new(SimPipeline::new(
                                &self.world,
                                (Color::Blue, b),
                                (Color::Green, g),
                                partitions,
                            )) as Arc<dyn Pipeline>);
                        }
                    }
                }
                Ok(pipelines)
            })
            .boxed()
    }
}

#[derive(Debug)]
struct SimPipeline {
    world: Arc<World>,
    from: (Color, usize),
    to: (Color, usize),
    /// Source and sink node ids.
    link: Link,
    /// Source and sink endpoints.
    endpoints: (String, String),
    /// The partitions both own.
    partitions: Vec<u32>,
}

impl SimPipeline {
    fn new(
        world: &Arc<World>,
        from: (Color, usize),
        to: (Color, usize),
        partitions: Vec<u32>,
    ) -> Self {
        let id = |(color, index): (Color, usize)| {
            let side = if color == Color::Green {
                "green"
            } else {
                "blue"
            };
            format!("{side}-{index}")
        };
        Self {
            world: Arc::clone(world),
            from,
            to,
            link: Link::new(id(from), id(to)),
            endpoints: (endpoint(from.0, from.1), endpoint(to.0, to.1)),
            partitions,
        }
    }

    /// Whether document `id` is in this pipeline's partitions.
    fn carries(partitions: &[u32], id: &str) -> bool {
        partitions.contains(&partition_of(id, PARTITIONS))
    }
}

impl Pipeline for SimPipeline {
    fn link(&self) -> &Link {
        &self.link
    }

    fn source_endpoint(&self) -> &str {
        &self.endpoints.0
    }

    fn sink_endpoint(&self) -> &str {
        &self.endpoints.1
    }

    fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    fn lag(&self, since: u64) -> BoxFuture<'_, Result<u64, PeerError>> {
        let what = format!("{} Lag({since})", self.link.source);
        let (from, partitions) = (self.from, self.partitions.clone());
        self.world
            .call(what, move |inner, _, _| {
                let source = node_mut(inner, from.0, from.1);
                Ok(source
                    .docs
                    .iter()
                    .filter(|(id, (_, seq))| *seq > since && Self::carries(&partitions, id))
                    .count() as u64)
            })
            .boxed()
    }

    fn live_documents(&self) -> BoxFuture<'_, Result<u64, PeerError>> {
        let what = format!("{} Describe", self.link.source);
        let (from, partitions) = (self.from, self.partitions.clone());
        self.world
            .call(what, move |inner, _, _| {
                let source = node_mut(inner, from.0, from.1);
                Ok(source
                    .docs
                    .keys()
                    .filter(|id| Self::carries(&partitions, id))
                    .count() as u64)
            })
            .boxed()
    }

    fn copy<'a>(
        &'a self,
        since: u64,
        context: &'a CopyContext,
    ) -> BoxFuture<'a, Result<Tally, CopyError>> {
        let what = format!("{} copy({since})", self.link);
        let (from, to, partitions) = (self.from, self.to, self.partitions.clone());
        async move {
            let (head, documents) = self
                .world
                .call(what, move |inner, _, _| {
                    let source = node_mut(inner, from.0, from.1);
                    let changed: Vec<(String, u64)> = source
                        .docs
                        .iter()
                        .filter(|(id, (_, seq))| *seq > since && Self::carries(&partitions, id))
                        .map(|(id, (version, _))| (id.clone(), *version))
                        .collect();
                    let head = source.head;
                    let owners = side(inner, to.0).len();
                    // A sink refuses a document of a partition it does not own, as
                    // `Sink.Apply` does: a wrong topology fails instead of hiding data.
                    if let Some((id, _)) = changed.iter().find(|(id, _)| owner(id, owners) != to.1)
                    {
                        return Err(Status::failed_precondition(format!(
                            "{id}: partition {} is not this node's",
                            partition_of(id, PARTITIONS)
                        )));
                    }
                    let sink = node_mut(inner, to.0, to.1);
                    for (id, version) in &changed {
                        // Applying keeps the newest version, like `Sink.Apply`.
                        if sink.docs.get(id).is_none_or(|(have, _)| have < version) {
                            sink.put(id, *version);
                        }
                    }
                    Ok((head, changed.len() as u64))
                })
                .await?;
            context
                .commit
                .batch(
                    context.direction,
                    &context.link,
                    head,
                    BatchRecord::default(),
                    Figures {
                        documents,
                        ..Figures::default()
                    },
                )
                .await?;
            Ok(Tally {
                documents,
                ..Tally::default()
            })
        }
        .boxed()
    }

    fn reversed(&self, _token: &Token) -> Result<Arc<dyn Pipeline>, String> {
        Ok(Arc::new(SimPipeline::new(
            &self.world,
            self.to,
            self.from,
            self.partitions.clone(),
        )))
    }
}
