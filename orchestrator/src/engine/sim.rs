//! An in-memory fleet for the property tests: proxies with their route (the proxy's own pure
//! [`RouteState`]) and epoch, nodes with a fenced document store and a log of accepted
//! writes, copy pipelines between them, and clients writing through the proxies. The real
//! driver runs against it through the [`world`](super::world) traits, with failures, lost
//! replies, slow replies and crashes injected at chosen calls. Every call is checked against
//! the journaled state at that moment, so a violation names the call that broke an invariant.
//! The end-to-end tests stay on real processes; this is for the property tests only.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use cutover_node::store::{partition_of, term};
use cutover_proto::Color as Side;
use cutover_proto::v1::{
    Color, DigestResponse, FenceState, NodeStatus, PartitionDigest, ProxyStatus, ResumeResponse,
    RouteMode, SwitchResponse,
};
use cutover_proxy::route::{Command, Ending, Epoch, Mode, RouteState};
use futures_util::{FutureExt as _, future::BoxFuture};
use tokio::{sync::Notify, time::Instant};
use tonic::Status;

use super::{
    copy::{CopyContext, CopyError},
    discover::DiscoverError,
    journal::{BatchRecord, Journal},
    machine::{Handover, State, Step},
    peer::{PeerError, Token},
    routes::Tally,
    world::{Discovery, NodeControl, Pipeline, ProxyControl},
};

/// Digest partitions of every simulated node.
pub const PARTITIONS: u32 = 4;
/// The one collection the clients write.
const COLLECTION: &str = "docs";

/// What a call does, by its number in the run (calls past the script answer normally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers normally.
    None,
    /// Fails with UNAVAILABLE, changing nothing.
    Fail,
    /// Takes effect, then the reply is lost (UNAVAILABLE).
    LostReply,
    /// Takes effect, and the reply comes 30 s later as DEADLINE_EXCEEDED.
    Timeout,
    /// Takes effect, then the orchestrator crashes before the reply.
    Crash,
}

/// A node's fence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Fence {
    #[default]
    None,
    Lease {
        until_ms: u64,
    },
    Permanent,
}

#[derive(Debug, Default)]
struct Node {
    /// id → (version, seq).
    docs: BTreeMap<String, (u64, u64)>,
    head: u64,
    fence: Fence,
    epoch: u64,
}

impl Node {
    fn fenced(&self, now: u64) -> bool {
        match self.fence {
            Fence::None => false,
            Fence::Lease { until_ms } => now < until_ms,
            Fence::Permanent => true,
        }
    }

    fn put(&mut self, id: &str, version: u64) {
        self.head += 1;
        self.docs.insert(id.to_owned(), (version, self.head));
    }
}

#[derive(Debug)]
struct Proxy {
    route: RouteState,
    /// Held client writes: ids, in arrival order.
    held: Vec<String>,
}

#[derive(Debug)]
struct Inner {
    proxies: Vec<Proxy>,
    blue: Vec<Node>,
    green: Vec<Node>,
    faults: Vec<Fault>,
    calls: usize,
    /// id → the version a client was told was written.
    acknowledged: BTreeMap<String, u64>,
    /// Every broken invariant, with the call that broke it.
    violations: Vec<String>,
    /// Every call, in order: what it was and the journaled state it met.
    history: Vec<String>,
}

/// The fleet, shared by every client handle the driver holds.
#[derive(Debug)]
pub struct World {
    inner: Mutex<Inner>,
    journal: Arc<Journal>,
    base: Instant,
    /// Fires when a call of fault [`Fault::Crash`] took effect.
    pub crashed: Notify,
}

/// The outcome a call's fault asks for, once the call's effect (if any) is applied.
enum Reply {
    Answer,
    Lost,
    Late,
    Crash,
}

impl World {
    /// A fleet of `proxies` proxies, `blue` blue nodes holding `documents` documents between
    /// them and `green` empty green nodes; calls answer as `faults` says.
    pub fn new(
        proxies: usize,
        blue: usize,
        green: usize,
        documents: u32,
        faults: Vec<Fault>,
        journal: Arc<Journal>,
    ) -> Arc<Self> {
        let mut inner = Inner {
            proxies: (0..proxies)
                .map(|_| Proxy {
                    route: RouteState::new(Side::Blue),
                    held: Vec::new(),
                })
                .collect(),
            blue: (0..blue).map(|_| Node::default()).collect(),
            green: (0..green).map(|_| Node::default()).collect(),
            faults,
            calls: 0,
            acknowledged: BTreeMap::new(),
            violations: Vec::new(),
            history: Vec::new(),
        };
        for n in 0..documents {
            let id = format!("d{n}");
            let owner = owner(&id, blue);
            inner.blue[owner].put(&id, 1);
            inner.acknowledged.insert(id, 1);
        }
        Arc::new(Self {
            inner: Mutex::new(inner),
            journal,
            base: Instant::now(),
            crashed: Notify::new(),
        })
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    fn journaled(&self) -> State {
        self.journal
            .state()
            .ok()
            .flatten()
            .map_or(State::Idle, |r| r.state)
    }

    /// Runs one call: checks it against the journaled state, applies `effect` unless the
    /// call's fault says it fails first, and answers as the fault says.
    async fn call<T>(
        &self,
        what: String,
        effect: impl FnOnce(&mut Inner, u64, &State) -> Result<T, Status>,
    ) -> Result<T, PeerError> {
        let state = self.journaled();
        let now = self.now();
        let (answer, reply) = {
            let mut inner = self.inner.lock().expect("not poisoned");
            let fault = inner
                .faults
                .get(inner.calls)
                .copied()
                .unwrap_or(Fault::None);
            inner.calls += 1;
            inner.history.push(format!("{what} in {}", state.name()));
            expire(&mut inner, now);
            check_state(&mut inner, &state, &what);
            if fault == Fault::Fail {
                (Err(Status::unavailable("injected failure")), Reply::Answer)
            } else {
                let answer = effect(&mut inner, now, &state);
                let reply = match fault {
                    Fault::LostReply => Reply::Lost,
                    Fault::Timeout => Reply::Late,
                    Fault::Crash => Reply::Crash,
                    Fault::None | Fault::Fail => Reply::Answer,
                };
                (answer, reply)
            }
        };
        let answer = match reply {
            Reply::Answer => answer,
            Reply::Lost => Err(Status::unavailable("injected: the reply was lost")),
            Reply::Late => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err(Status::deadline_exceeded("injected: no answer in time"))
            }
            Reply::Crash => {
                self.crashed.notify_one();
                return std::future::pending().await;
            }
        };
        answer.map_err(|status| PeerError {
            endpoint: what,
            call: "sim",
            status,
        })
    }

    /// A client write of document `id` through proxy `proxy`: forwarded to its owner on the
    /// active colour (acknowledged unless that node is fenced), or held.
    pub fn client_write(&self, proxy: usize, id: &str) {
        let state = self.journaled();
        let now = self.now();
        let mut inner = self.inner.lock().expect("not poisoned");
        expire(&mut inner, now);
        let inner = &mut *inner;
        let Some(p) = inner.proxies.get_mut(proxy) else {
            return;
        };
        match p.route.mode {
            Mode::Holding { .. } => p.held.push(id.to_owned()),
            Mode::Forwarding => {
                let color = Color::from(p.route.active);
                write(inner, color, id, now, &state);
            }
        }
    }

    /// Broken invariants so far.
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().expect("not poisoned").violations.clone()
    }

    /// Every call so far, for a failure's message.
    pub fn history(&self) -> Vec<String> {
        self.inner.lock().expect("not poisoned").history.clone()
    }

    /// Checks the end of a run that settled in `state`: every acknowledged write is on the
    /// side that serves, and a rollback left green fenced and every proxy on blue.
    pub fn check_end(&self, state: &State) -> Vec<String> {
        let now = self.now();
        let mut inner = self.inner.lock().expect("not poisoned");
        expire(&mut inner, now);
        let mut problems = Vec::new();
        let serving = match state {
            State::Switched { .. } | State::ReverseSync { .. } => Color::Green,
            _ => Color::Blue,
        };
        let nodes = side(&inner, serving);
        for (id, version) in &inner.acknowledged {
            let node = &nodes[owner(id, nodes.len())];
            match node.docs.get(id) {
                Some((have, _)) if have >= version => {}
                have => problems.push(format!(
                    "acknowledged write {id} v{version} lost on {serving:?}: has {have:?}"
                )),
            }
        }
        if matches!(state, State::RolledBack { .. }) {
            if inner.green.iter().any(|n| n.fence != Fence::Permanent) {
                problems.push("rolled back, but green is not fenced for good".into());
            }
            if inner
                .proxies
                .iter()
                .any(|p| p.route.active != Side::Blue || p.route.mode != Mode::Forwarding)
            {
                problems.push("rolled back, but a proxy does not route to blue".into());
            }
        }
        problems
    }

    /// Handles of the fleet for the driver.
    pub fn handles(self: &Arc<Self>) -> Handles {
        let (proxies, blue, green) = {
            let inner = self.inner.lock().expect("not poisoned");
            (inner.proxies.len(), inner.blue.len(), inner.green.len())
        };
        let node = |color, index| {
            Arc::new(NodeHandle {
                world: Arc::clone(self),
                color,
                index,
                endpoint: endpoint(color, index),
            }) as Arc<dyn NodeControl>
        };
        Handles {
            proxies: (0..proxies)
                .map(|index| {
                    Arc::new(ProxyHandle {
                        world: Arc::clone(self),
                        index,
                        endpoint: format!("proxy-{index}"),
                    }) as Arc<dyn ProxyControl>
                })
                .collect(),
            blue: (0..blue).map(|i| node(Color::Blue, i)).collect(),
            green: (0..green).map(|i| node(Color::Green, i)).collect(),
            discovery: Arc::new(SimDiscovery {
                world: Arc::clone(self),
            }),
        }
    }
}

/// The driver's handles of a [`World`].
#[derive(Debug)]
pub struct Handles {
    /// Every proxy.
    pub proxies: Vec<Arc<dyn ProxyControl>>,
    /// Every blue node.
    pub blue: Vec<Arc<dyn NodeControl>>,
    /// Every green node.
    pub green: Vec<Arc<dyn NodeControl>>,
    /// The copy pipelines.
    pub discovery: Arc<dyn Discovery>,
}

/// A node's endpoint, as a plan would name it.
pub fn endpoint(color: Color, index: usize) -> String {
    let side = if color == Color::Green {
        "green"
    } else {
        "blue"
    };
    format!("http://{side}-{index}:1")
}

/// The node of a side of `nodes` nodes that owns `id`.
fn owner(id: &str, nodes: usize) -> usize {
    partition_of(id, PARTITIONS) as usize % nodes.max(1)
}

fn side(inner: &Inner, color: Color) -> &[Node] {
    if color == Color::Green {
        &inner.green
    } else {
        &inner.blue
    }
}

fn side_mut(inner: &mut Inner, color: Color) -> &mut [Node] {
    if color == Color::Green {
        &mut inner.green
    } else {
        &mut inner.blue
    }
}

/// A client write reaching `color`: refused while its owner is fenced, else acknowledged.
/// After a forward commit and before a rollback's, blue must accept none.
fn write(inner: &mut Inner, color: Color, id: &str, now: u64, state: &State) {
    let nodes = side_mut(inner, color);
    let count = nodes.len();
    let node = &mut nodes[owner(id, count)];
    if node.fenced(now) {
        return;
    }
    let version = node.docs.get(id).map_or(1, |(v, _)| v + 1);
    node.put(id, version);
    inner.acknowledged.insert(id.to_owned(), version);
    if color == Color::Blue && blue_must_be_fenced(state) {
        inner.violations.push(format!(
            "blue accepted a client write of {id} in state {}",
            state.name()
        ));
    }
}

/// Ends the holds whose deadline passed: their held writes are answered 503.
fn expire(inner: &mut Inner, now: u64) {
    for proxy in &mut inner.proxies {
        if let Mode::Holding { deadline_unix_ms } = proxy.route.mode
            && now >= deadline_unix_ms
            && let Ok((route, _)) = proxy.route.step(Command::End(Ending::Expired))
        {
            proxy.route = route;
            proxy.held.clear();
        }
    }
}

/// The states in which blue has committed to green: blue's fence must be permanent.
fn blue_must_be_fenced(state: &State) -> bool {
    match state {
        State::Handover {
            handover: Handover::Cutover { .. },
            step,
        } => step.is_committed(),
        State::Handover {
            handover: Handover::Rollback { .. },
            step,
        } => !step.is_committed(),
        State::Undoing {
            handover: Handover::Rollback { .. },
            ..
        }
        | State::Switched { .. }
        | State::ReverseSync { .. } => true,
        _ => false,
    }
}

/// Invariants that hold whatever the call: blue's fence is permanent whenever the journal
/// says blue committed to green, and nothing is called once the upgrade is over.
fn check_state(inner: &mut Inner, state: &State, what: &str) {
    if blue_must_be_fenced(state) && inner.blue.iter().any(|n| n.fence != Fence::Permanent) {
        inner.violations.push(format!(
            "{what}: blue is not fenced for good in state {}",
            state.name()
        ));
    }
    if state.is_terminal() {
        inner.violations.push(format!(
            "{what}: called after the terminal state {}",
            state.name()
        ));
    }
}

fn refused(refusal: impl std::fmt::Display) -> Status {
    Status::failed_precondition(refusal.to_string())
}

#[derive(Debug)]
struct ProxyHandle {
    world: Arc<World>,
    index: usize,
    endpoint: String,
}

impl ProxyHandle {
    /// Steps the route by `command`; a release lets the held writes through to the new
    /// active colour.
    fn step(
        &self,
        inner: &mut Inner,
        now: u64,
        state: &State,
        command: Command,
    ) -> Result<u64, Status> {
        let proxy = &mut inner.proxies[self.index];
        let (route, change) = proxy.route.step(command).map_err(refused)?;
        proxy.route = route;
        if change != cutover_proxy::route::Change::Release {
            return Ok(0);
        }
        let held = std::mem::take(&mut proxy.held);
        let color = Color::from(route.active);
        for id in &held {
            write(inner, color, id, now, state);
        }
        Ok(held.len() as u64)
    }
}

impl ProxyControl for ProxyHandle {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn pause(&self, epoch: u64, hold: Duration) -> BoxFuture<'_, Result<(), PeerError>> {
        let what = format!("{} Pause({epoch})", self.endpoint);
        self.world
            .call(what, move |inner, now, state| {
                let deadline_unix_ms = now + hold.as_millis() as u64;
                let command = Command::Pause {
                    epoch: Epoch(epoch),
                    deadline_unix_ms,
                };
                self.step(inner, now, state, command).map(drop)
            })
            .boxed()
    }

    fn switch(&self, epoch: u64, color: Color) -> BoxFuture<'_, Result<SwitchResponse, PeerError>> {
        let what = format!("{} Switch({epoch}, {color:?})", self.endpoint);
        self.world
            .call(what.clone(), move |inner, now, state| {
                let forward = matches!(
                    state,
                    State::Handover {
                        handover: Handover::Cutover { .. },
                        step,
                    } if step.is_committed()
                );
                if color == Color::Green && !forward {
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
                let released = self.step(inner, now, state, command)?;
                Ok(SwitchResponse {
                    released,
                    max_hold_micros: 0,
                })
            })
            .boxed()
    }

    fn resume(&self, epoch: u64) -> BoxFuture<'_, Result<ResumeResponse, PeerError>> {
        let what = format!("{} Resume({epoch})", self.endpoint);
        self.world
            .call(what, move |inner, now, state| {
                let command = Command::Resume {
                    epoch: Epoch(epoch),
                };
                let released = self.step(inner, now, state, command)?;
                Ok(ResumeResponse {
                    released,
                    max_hold_micros: 0,
                })
            })
            .boxed()
    }

    fn status(&self) -> BoxFuture<'_, Result<ProxyStatus, PeerError>> {
        let what = format!("{} Status", self.endpoint);
        self.world
            .call(what, move |inner, _, _| {
                let proxy = &inner.proxies[self.index];
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
struct NodeHandle {
    world: Arc<World>,
    color: Color,
    index: usize,
    endpoint: String,
}

impl NodeHandle {
    fn node<'a>(&self, inner: &'a mut Inner) -> &'a mut Node {
        &mut side_mut(inner, self.color)[self.index]
    }

    /// Fences under `epoch` (refused below the node's epoch); a lease never downgrades a
    /// permanent fence.
    fn fence(&self, epoch: u64, fence: Fence) -> BoxFuture<'_, Result<u64, PeerError>> {
        let what = format!("{} Fence({epoch}, {fence:?})", self.endpoint);
        self.world
            .call(what, move |inner, _, _| {
                let node = self.node(inner);
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
        self.world
            .call(what.clone(), move |inner, _, state| {
                let rollback_committed = matches!(
                    state,
                    State::Handover {
                        handover: Handover::Rollback { .. },
                        step: Step::Committed { .. } | Step::Switching { .. },
                    }
                );
                if self.color == Color::Blue && state.is_committed() && !rollback_committed {
                    inner.violations.push(format!(
                        "{what}: blue unfenced after the forward commit, in state {}",
                        state.name()
                    ));
                }
                let node = self.node(inner);
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
        self.world
            .call(what, move |inner, now, _| {
                let node = self.node(inner);
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
        self.world
            .call(what, move |inner, _, _| Ok(digest(self.node(inner))))
            .boxed()
    }
}

/// A node's per-partition counts and digests, as the node computes them.
fn digest(node: &Node) -> DigestResponse {
    let mut partitions: Vec<PartitionDigest> = (0..PARTITIONS)
        .map(|partition| PartitionDigest {
            partition,
            ..PartitionDigest::default()
        })
        .collect();
    for (id, (version, _)) in &node.docs {
        let p = &mut partitions[partition_of(id, PARTITIONS) as usize];
        p.live_documents += 1;
        p.digest = p.digest.wrapping_add(term(COLLECTION, id, *version));
    }
    DigestResponse {
        partition_count: PARTITIONS,
        partitions,
        head_seq: node.head,
    }
}

#[derive(Debug)]
struct SimDiscovery {
    world: Arc<World>,
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
                Ok((0..blue)
                    .map(|i| {
                        let g = if green == 1 { 0 } else { i };
                        Arc::new(SimPipeline::new(
                            &self.world,
                            (Color::Blue, i),
                            (Color::Green, g),
                        )) as Arc<dyn Pipeline>
                    })
                    .collect())
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
    ids: (String, String),
    /// Source and sink endpoints.
    endpoints: (String, String),
}

impl SimPipeline {
    fn new(world: &Arc<World>, from: (Color, usize), to: (Color, usize)) -> Self {
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
            ids: (id(from), id(to)),
            endpoints: (endpoint(from.0, from.1), endpoint(to.0, to.1)),
        }
    }

    fn source<'a>(&self, inner: &'a mut Inner) -> &'a mut Node {
        &mut side_mut(inner, self.from.0)[self.from.1]
    }
}

impl Pipeline for SimPipeline {
    fn source_id(&self) -> &str {
        &self.ids.0
    }

    fn sink_id(&self) -> &str {
        &self.ids.1
    }

    fn source_endpoint(&self) -> &str {
        &self.endpoints.0
    }

    fn sink_endpoint(&self) -> &str {
        &self.endpoints.1
    }

    fn lag(&self, since: u64) -> BoxFuture<'_, Result<u64, PeerError>> {
        let what = format!("{} Lag({since})", self.ids.0);
        self.world
            .call(what, move |inner, _, _| {
                let source = self.source(inner);
                Ok(source.docs.values().filter(|(_, seq)| *seq > since).count() as u64)
            })
            .boxed()
    }

    fn live_documents(&self) -> BoxFuture<'_, Result<u64, PeerError>> {
        let what = format!("{} Describe", self.ids.0);
        self.world
            .call(what, move |inner, _, _| {
                Ok(self.source(inner).docs.len() as u64)
            })
            .boxed()
    }

    fn copy<'a>(
        &'a self,
        since: u64,
        context: &'a CopyContext,
    ) -> BoxFuture<'a, Result<Tally, CopyError>> {
        let what = format!("{} → {} copy({since})", self.ids.0, self.ids.1);
        async move {
            let (head, documents) = self
                .world
                .call(what, move |inner, _, _| {
                    let source = self.source(inner);
                    let changed: Vec<(String, u64)> = source
                        .docs
                        .iter()
                        .filter(|(_, (_, seq))| *seq > since)
                        .map(|(id, (version, _))| (id.clone(), *version))
                        .collect();
                    let head = source.head;
                    let sink = &mut side_mut(inner, self.to.0)[self.to.1];
                    for (id, version) in &changed {
                        // Applying keeps the newest version, like `Sink.Apply`.
                        if sink.docs.get(id).is_none_or(|(have, _)| have < version) {
                            sink.put(id, *version);
                        }
                    }
                    Ok((head, changed.len() as u64))
                })
                .await?;
            context.journal.acknowledge(
                &context.upgrade_id,
                context.direction,
                &context.source_id,
                head,
                &BatchRecord::default(),
            )?;
            Ok(Tally {
                documents,
                ..Tally::default()
            })
        }
        .boxed()
    }

    fn reversed(&self, _token: &Token) -> Result<Arc<dyn Pipeline>, String> {
        Ok(Arc::new(SimPipeline::new(&self.world, self.to, self.from)))
    }
}

#[cfg(test)]
mod tests;
