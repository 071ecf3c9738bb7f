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

use cutover_node::store::partition_of;
use cutover_proto::{Color as Side, v1::Color};
use cutover_proxy::route::{Command, Ending, Mode, RouteState};
use tokio::{sync::Notify, time::Instant};
use tonic::Status;

use super::{
    journal::Journal,
    machine::{Handover, State, Step},
    peer::PeerError,
    world::{Discovery, NodeControl, ProxyControl},
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
    /// Fails at once (UNAVAILABLE), and takes effect later: the request was on its way when
    /// its caller gave up, and lands after whatever the caller did next.
    Lands,
}

/// How long a call takes on the simulated network.
const LATENCY: Duration = Duration::from_millis(1);
/// How late a [`Fault::Lands`] request lands.
const LANDS_AFTER: Duration = Duration::from_millis(3);

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

    /// Runs one call: after a millisecond of (simulated) network, checks it against the
    /// journaled state, applies `effect` unless the call's fault says it fails first or lands
    /// late, and answers as the fault says.
    async fn call<T: Send + 'static>(
        self: &Arc<Self>,
        what: String,
        effect: impl FnOnce(&mut Inner, u64, &State) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, PeerError> {
        tokio::time::sleep(LATENCY).await;
        let fault = {
            let mut inner = self.inner.lock().expect("not poisoned");
            let fault = inner
                .faults
                .get(inner.calls)
                .copied()
                .unwrap_or(Fault::None);
            inner.calls += 1;
            fault
        };
        let failed = |status: Status| PeerError {
            endpoint: what.clone(),
            call: "sim",
            status,
        };
        match fault {
            Fault::Fail => return Err(failed(Status::unavailable("injected failure"))),
            Fault::Lands => {
                // The caller hears nothing; the request lands later, whatever happened since.
                let world = Arc::clone(self);
                let late = format!("{what} (landing late)");
                tokio::spawn(async move {
                    tokio::time::sleep(LANDS_AFTER).await;
                    let _ = world.apply(&late, effect);
                });
                return Err(failed(Status::unavailable("injected: no answer yet")));
            }
            Fault::None | Fault::LostReply | Fault::Timeout | Fault::Crash => {}
        }
        let answer = self.apply(&what, effect);
        match fault {
            Fault::LostReply => Err(failed(Status::unavailable("injected: the reply was lost"))),
            Fault::Timeout => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err(failed(Status::deadline_exceeded(
                    "injected: no answer in time",
                )))
            }
            Fault::Crash => {
                self.crashed.notify_one();
                std::future::pending().await
            }
            Fault::None | Fault::Fail | Fault::Lands => answer.map_err(failed),
        }
    }

    /// Applies a call's effect, checked against the journaled state of this moment.
    fn apply<T>(
        &self,
        what: &str,
        effect: impl FnOnce(&mut Inner, u64, &State) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let state = self.journaled();
        let now = self.now();
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.history.push(format!("{what} in {}", state.name()));
        expire(&mut inner, now);
        check_state(&mut inner, &state, what, now);
        effect(&mut inner, now, &state)
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
                write(inner, color, id, now, &state, false);
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

    /// Checks the end of a run that settled in `state` (call it once every hold and lease
    /// could have run out): every proxy forwards to the side that serves, that side is not
    /// fenced, the other is fenced for good if the handover committed, and every acknowledged
    /// write is on the side that serves.
    pub fn check_end(&self, state: &State) -> Vec<String> {
        let now = self.now();
        let mut inner = self.inner.lock().expect("not poisoned");
        expire(&mut inner, now);
        let mut problems = Vec::new();
        let (serving, other) = match state {
            State::Switched { .. } | State::ReverseSync { .. } => (Color::Green, Color::Blue),
            _ => (Color::Blue, Color::Green),
        };
        let committed = matches!(
            state,
            State::Switched { .. } | State::ReverseSync { .. } | State::RolledBack { .. }
        );
        for (i, proxy) in inner.proxies.iter().enumerate() {
            if Color::from(proxy.route.active) != serving || proxy.route.mode != Mode::Forwarding {
                problems.push(format!(
                    "ended {}, but proxy-{i} is at {:?} {:?}",
                    state.name(),
                    proxy.route.active,
                    proxy.route.mode
                ));
            }
        }
        if side(&inner, serving).iter().any(|n| n.fenced(now)) {
            problems.push(format!("ended {}, but {serving:?} is fenced", state.name()));
        }
        if committed
            && side(&inner, other)
                .iter()
                .any(|n| n.fence != Fence::Permanent)
        {
            problems.push(format!(
                "ended {}, but {other:?} is not fenced for good",
                state.name()
            ));
        }
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

/// A client write reaching `color`, `released` from a hold or forwarded: refused while its
/// owner is fenced, else acknowledged. After a forward commit and before a rollback's, blue
/// must accept none; a held request must never be released to a fenced node (an undo
/// unfences before it resumes, a rollback unfences blue before it switches).
fn write(inner: &mut Inner, color: Color, id: &str, now: u64, state: &State, released: bool) {
    let nodes = side_mut(inner, color);
    let count = nodes.len();
    let node = &mut nodes[owner(id, count)];
    if node.fenced(now) {
        if released {
            inner.violations.push(format!(
                "a held write of {id} was released to fenced {color:?} in state {}",
                state.name()
            ));
        }
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
pub(super) fn blue_must_be_fenced(state: &State) -> bool {
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

/// The states in which green has committed back to blue: green's fence must be permanent.
pub(super) fn green_must_be_fenced(state: &State) -> bool {
    matches!(
        state,
        State::Handover {
            handover: Handover::Rollback { .. },
            step: Step::Committed { .. } | Step::Switching { .. },
        } | State::RolledBack { .. }
    )
}

/// Invariants that hold whatever the call: a side's fence is permanent whenever the journal
/// says it committed to the other, and the orchestrator calls nothing once the upgrade is
/// over (a request landing late was sent before).
fn check_state(inner: &mut Inner, state: &State, what: &str, now: u64) {
    for (color, must) in [
        (Color::Blue, blue_must_be_fenced(state)),
        (Color::Green, green_must_be_fenced(state)),
    ] {
        if must
            && side(inner, color)
                .iter()
                .any(|n| n.fence != Fence::Permanent)
        {
            inner.violations.push(format!(
                "{what}: {color:?} is not fenced for good in state {}",
                state.name()
            ));
        }
    }
    // Outside a handover the side that serves takes writes: no fence may linger there (a
    // fence call that lands after the undo that lifted it must be refused).
    let open = match state {
        State::Discovering
        | State::Cycling { .. }
        | State::Postponed { .. }
        | State::Rehearsed { .. } => Some(Color::Blue),
        State::Switched { .. } | State::ReverseSync { .. } => Some(Color::Green),
        _ => None,
    };
    if let Some(color) = open
        && side(inner, color).iter().any(|n| n.fenced(now))
    {
        inner.violations.push(format!(
            "{what}: {color:?} is fenced in state {}",
            state.name()
        ));
    }
    if state.is_terminal() && !what.ends_with("(landing late)") {
        inner.violations.push(format!(
            "{what}: called after the terminal state {}",
            state.name()
        ));
    }
}

fn refused(refusal: impl std::fmt::Display) -> Status {
    Status::failed_precondition(refusal.to_string())
}

mod handles;

use handles::{NodeHandle, ProxyHandle, SimDiscovery};

#[cfg(test)]
mod tests;
