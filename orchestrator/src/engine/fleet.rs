//! What a cutover steers besides the copy: the proxies (`ProxyControl`) and the nodes' write
//! fences (`NodeAdmin`), as clients that name the endpoint and the call in every error.

use std::time::Duration;

use cutover_proto::v1::{
    Color, FenceRequest, NodeStatus, NodeStatusRequest, PauseRequest, PauseResponse, ProxyStatus,
    ProxyStatusRequest, ResumeRequest, ResumeResponse, SwitchRequest, SwitchResponse,
    UnfenceRequest, fence_request::Mode, node_admin_client::NodeAdminClient,
    proxy_control_client::ProxyControlClient,
};
use tonic::{Status, transport::Channel};

use super::{
    peer::{PeerError, SourcePeer, Token, channel},
    plan::Plan,
};

/// Longest any single control call may take: a Pause waits for the drain, which the proxy
/// bounds by its own drain timeout, so this is only a guard against a frozen peer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

async fn timed<T>(
    endpoint: &str,
    call: &'static str,
    answer: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, PeerError> {
    match tokio::time::timeout(CALL_TIMEOUT, answer).await {
        Ok(answer) => answer
            .map(|r| r.into_inner())
            .map_err(PeerError::at(endpoint, call)),
        Err(_) => Err(PeerError::at(endpoint, call)(Status::deadline_exceeded(
            format!("no answer within {CALL_TIMEOUT:?}"),
        ))),
    }
}

/// A proxy in front of the service.
#[derive(Debug, Clone)]
pub struct ProxyPeer {
    /// Its `ProxyControl` endpoint, as in the plan.
    pub endpoint: String,
    client: ProxyControlClient<Channel>,
    token: Token,
}

impl ProxyPeer {
    /// A lazily connected client of `endpoint`.
    pub fn new(endpoint: &str, token: Token) -> Result<Self, String> {
        Ok(Self {
            endpoint: endpoint.to_owned(),
            client: ProxyControlClient::new(channel(endpoint)?),
            token,
        })
    }

    /// `Pause(epoch)`: hold new requests, drain in-flight ones. `hold` bounds the hold.
    pub async fn pause(&self, epoch: u64, hold: Duration) -> Result<PauseResponse, PeerError> {
        let request = self.token.attach(PauseRequest {
            epoch,
            hold_timeout_ms: hold.as_millis() as u64,
            drain_timeout_ms: 0,
        });
        timed(&self.endpoint, "Pause", self.client.clone().pause(request)).await
    }

    /// `Switch(epoch, color)`: route to `color` and release the hold there.
    pub async fn switch(&self, epoch: u64, color: Color) -> Result<SwitchResponse, PeerError> {
        let request = self.token.attach(SwitchRequest {
            epoch,
            color: color as i32,
        });
        timed(
            &self.endpoint,
            "Switch",
            self.client.clone().switch(request),
        )
        .await
    }

    /// `Resume(epoch)`: release the hold on the current colour.
    pub async fn resume(&self, epoch: u64) -> Result<ResumeResponse, PeerError> {
        let request = self.token.attach(ResumeRequest { epoch });
        timed(
            &self.endpoint,
            "Resume",
            self.client.clone().resume(request),
        )
        .await
    }

    /// `Status`.
    pub async fn status(&self) -> Result<ProxyStatus, PeerError> {
        let request = self.token.attach(ProxyStatusRequest {});
        timed(
            &self.endpoint,
            "Status",
            self.client.clone().status(request),
        )
        .await
    }
}

/// A node's write fence.
#[derive(Debug, Clone)]
pub struct AdminPeer {
    /// Its gRPC endpoint, as in the plan.
    pub endpoint: String,
    client: NodeAdminClient<Channel>,
    token: Token,
}

impl AdminPeer {
    /// A lazily connected client of `endpoint`.
    pub fn new(endpoint: &str, token: Token) -> Result<Self, String> {
        Ok(Self {
            endpoint: endpoint.to_owned(),
            client: NodeAdminClient::new(channel(endpoint)?),
            token,
        })
    }

    /// Fences client writes under `epoch` for `lease` (renewing a lease; a permanent fence
    /// stays) and returns the node's head seq once every write accepted before is durable.
    /// A node that has seen a higher epoch refuses with FAILED_PRECONDITION.
    pub async fn fence_lease(
        &self,
        epoch: u64,
        lease: Duration,
        reason: &str,
    ) -> Result<u64, PeerError> {
        let mode = Mode::LeaseMs(lease.as_millis().max(1) as u64);
        self.fence(epoch, mode, reason).await
    }

    /// Fences client writes under `epoch` until [`unfence`](Self::unfence); returns the head
    /// seq.
    pub async fn fence_permanent(&self, epoch: u64, reason: &str) -> Result<u64, PeerError> {
        self.fence(epoch, Mode::Permanent(true), reason).await
    }

    async fn fence(&self, epoch: u64, mode: Mode, reason: &str) -> Result<u64, PeerError> {
        let request = self.token.attach(FenceRequest {
            mode: Some(mode),
            reason: reason.to_owned(),
            epoch,
        });
        let answer = timed(&self.endpoint, "Fence", self.client.clone().fence(request)).await?;
        Ok(answer.head_seq)
    }

    /// `NodeAdmin.Status`: the node's fence (with its epoch), head and size.
    pub async fn status(&self) -> Result<NodeStatus, PeerError> {
        let request = self.token.attach(NodeStatusRequest {});
        timed(
            &self.endpoint,
            "Status",
            self.client.clone().status(request),
        )
        .await
    }

    /// Lifts the fence under `epoch` (idempotent). A node that has seen a higher epoch
    /// refuses with FAILED_PRECONDITION and stays fenced.
    pub async fn unfence(&self, epoch: u64, reason: &str) -> Result<(), PeerError> {
        let request = self.token.attach(UnfenceRequest {
            reason: reason.to_owned(),
            epoch,
        });
        timed(
            &self.endpoint,
            "Unfence",
            self.client.clone().unfence(request),
        )
        .await
        .map(drop)
    }
}

/// A node of either side: its fence and its Source (for digests and reverse sync).
#[derive(Debug, Clone)]
pub struct Node {
    /// Its gRPC endpoint, as in the plan.
    pub endpoint: String,
    /// Its `NodeAdmin`.
    pub admin: AdminPeer,
    /// Its `Source`.
    pub source: SourcePeer,
}

impl Node {
    fn new(endpoint: &str, token: &Token) -> Result<Self, String> {
        Ok(Self {
            endpoint: endpoint.to_owned(),
            admin: AdminPeer::new(endpoint, token.clone())?,
            source: SourcePeer::new(endpoint)?,
        })
    }
}

/// How long proxies hold: long enough for the fence, the final cycle, the verification and
/// the switch of a delta that fits the pause budget, with room for a slow peer.
pub fn hold_timeout(pause_budget: Duration) -> Duration {
    (pause_budget * 10).clamp(Duration::from_secs(5), Duration::from_secs(60))
}

/// How long a fence lease lasts for proxies that hold `hold`: past the hold, so that a proxy
/// whose hold expired (the orchestrator died) meets a fenced node for a moment rather than
/// the other way round.
pub fn lease(hold: Duration) -> Duration {
    hold + Duration::from_secs(5)
}

/// Everything a cutover steers, from the plan alone (no discovery needed, so a switch after
/// the commit never waits for a node that is down).
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Every proxy, in plan order.
    pub proxies: Vec<ProxyPeer>,
    /// Every blue node, in plan order.
    pub blue: Vec<Node>,
    /// Every green node, in plan order.
    pub green: Vec<Node>,
    /// Blue's token, for its `Sink` in reverse sync.
    pub blue_token: Token,
    /// Green's token, for its `Sink` in the copy cycles.
    pub green_token: Token,
    /// How long a Pause holds ([`hold_timeout`] of the plan's pause budget).
    pub hold: Duration,
}

impl Fleet {
    /// The clients of every node and proxy of `plan`.
    pub fn from_plan(plan: &Plan) -> Result<Self, String> {
        let blue_token = Token::from_file(plan.blue.token_file.as_deref(), "blue.token_file")?;
        let green_token = Token::from_file(plan.green.token_file.as_deref(), "green.token_file")?;
        let proxy_token =
            Token::from_file(plan.proxies.token_file.as_deref(), "proxies.token_file")?;
        Ok(Self {
            proxies: plan
                .proxies
                .control
                .iter()
                .map(|e| ProxyPeer::new(e, proxy_token.clone()))
                .collect::<Result<_, _>>()?,
            blue: plan
                .blue
                .sources
                .iter()
                .map(|e| Node::new(e, &blue_token))
                .collect::<Result<_, _>>()?,
            green: plan
                .green
                .sinks
                .iter()
                .map(|e| Node::new(e, &green_token))
                .collect::<Result<_, _>>()?,
            blue_token,
            green_token,
            hold: hold_timeout(plan.pause_budget),
        })
    }

    /// How long a fence lease lasts ([`lease`] of the hold).
    pub fn lease(&self) -> Duration {
        lease(self.hold)
    }

    /// The nodes of `color`.
    pub fn nodes(&self, color: Color) -> &[Node] {
        match color {
            Color::Green => &self.green,
            _ => &self.blue,
        }
    }

    /// The green node blue node `i` is copied to (one sink for all, or pairs in order).
    pub fn sink_of(&self, i: usize) -> usize {
        if self.green.len() == 1 { 0 } else { i }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_outlasts_the_budget_and_the_lease_outlasts_the_hold() {
        assert_eq!(
            hold_timeout(Duration::from_millis(500)),
            Duration::from_secs(5)
        );
        assert_eq!(
            hold_timeout(Duration::from_secs(2)),
            Duration::from_secs(20)
        );
        assert_eq!(
            hold_timeout(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        let hold = hold_timeout(Duration::from_millis(500));
        assert!(lease(hold) > hold);
    }
}
