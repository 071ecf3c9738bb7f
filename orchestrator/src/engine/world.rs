//! What the driver acts on, as traits: the proxies' control planes, the nodes' fences and
//! digests, and the copy pipelines. The production implementations speak gRPC (`fleet.rs`,
//! `discover.rs`); the property tests run the same driver against an in-memory fleet
//! (`sim.rs`).

use std::{fmt, sync::Arc, time::Duration};

use cutover_proto::v1::{
    Color, DigestResponse, NodeStatus, ProxyStatus, ResumeResponse, SwitchResponse,
};
use futures_util::future::BoxFuture;

use super::{
    copy::{CopyContext, CopyError},
    discover::DiscoverError,
    journal::Link,
    peer::{PeerError, Token},
    routes::Tally,
};

/// A proxy's `ProxyControl`: every call carries the orchestrator's epoch.
pub trait ProxyControl: Send + Sync + fmt::Debug {
    /// Its control endpoint, as in the plan.
    fn endpoint(&self) -> &str;
    /// Hold new requests and drain in-flight ones under `epoch`, for at most `hold`.
    fn pause(&self, epoch: u64, hold: Duration) -> BoxFuture<'_, Result<(), PeerError>>;
    /// Route to `color` and release the hold there.
    fn switch(&self, epoch: u64, color: Color) -> BoxFuture<'_, Result<SwitchResponse, PeerError>>;
    /// Release the hold on the current colour.
    fn resume(&self, epoch: u64) -> BoxFuture<'_, Result<ResumeResponse, PeerError>>;
    /// The route: epoch, colour, mode.
    fn status(&self) -> BoxFuture<'_, Result<ProxyStatus, PeerError>>;
}

/// A node's `NodeAdmin` fence and its `Source.Digest`.
pub trait NodeControl: Send + Sync + fmt::Debug {
    /// Its endpoint, as in the plan.
    fn endpoint(&self) -> &str;
    /// Fence client writes for `lease` under `epoch`; the head seq once every write accepted
    /// before is durable.
    fn fence_lease<'a>(
        &'a self,
        epoch: u64,
        lease: Duration,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<u64, PeerError>>;
    /// Fence client writes until an unfence, under `epoch`; the head seq.
    fn fence_permanent<'a>(
        &'a self,
        epoch: u64,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<u64, PeerError>>;
    /// Lift the fence under `epoch` (idempotent).
    fn unfence<'a>(&'a self, epoch: u64, reason: &'a str) -> BoxFuture<'a, Result<(), PeerError>>;
    /// The node's fence (with its epoch), head and size.
    fn status(&self) -> BoxFuture<'_, Result<NodeStatus, PeerError>>;
    /// Per-partition counts and digests, and the head they cover.
    fn digest(&self) -> BoxFuture<'_, Result<DigestResponse, PeerError>>;
}

/// One copy pipeline: a source node, the sink node it feeds, and the partitions they share.
pub trait Pipeline: Send + Sync + fmt::Debug {
    /// The node ids at its two ends: its key in the journal.
    fn link(&self) -> &Link;
    /// The source's endpoint, as in the plan.
    fn source_endpoint(&self) -> &str;
    /// The sink's endpoint, as in the plan.
    fn sink_endpoint(&self) -> &str;
    /// The partitions it copies, in increasing order; empty for every partition.
    fn partitions(&self) -> &[u32];
    /// Whether the sink node runs it (`Pipelines.Copy`) rather than this process.
    fn run_by_sink(&self) -> bool {
        false
    }
    /// Changes on the source after `since`, in its partitions.
    fn lag(&self, since: u64) -> BoxFuture<'_, Result<u64, PeerError>>;
    /// Live documents on the source in its partitions (from its counters).
    fn live_documents(&self) -> BoxFuture<'_, Result<u64, PeerError>>;
    /// Copies every change of its partitions after `since`, committing the watermark to
    /// `context`'s journal after each acknowledged batch; the copy's counts.
    fn copy<'a>(
        &'a self,
        since: u64,
        context: &'a CopyContext,
    ) -> BoxFuture<'a, Result<Tally, CopyError>>;
    /// The same pair the other way (reverse sync): the sink becomes the source, written
    /// with `token`.
    fn reversed(&self, token: &Token) -> Result<Arc<dyn Pipeline>, String>;
}

/// Finds the copy pipelines of an upgrade.
pub trait Discovery: Send + Sync + fmt::Debug {
    /// Describes every node and builds the copy topology: one pipeline per (blue node, green
    /// node) pair that share partitions.
    fn discover(&self) -> BoxFuture<'_, Result<Vec<Arc<dyn Pipeline>>, DiscoverError>>;
}
