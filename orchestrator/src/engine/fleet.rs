//! What a cutover steers besides the copy: the proxies (`ProxyControl`) and the nodes' write
//! fences (`NodeAdmin`) and digests, as gRPC clients that name the endpoint and the call in
//! every error ([`ProxyControl`] and [`NodeControl`] over the wire).

use std::{sync::Arc, time::Duration};

use cutover_proto::v1::DigestResponse;
use cutover_proto::v1::{
    Color, FenceRequest, NodeStatus, NodeStatusRequest, PauseRequest, ProxyStatus,
    ProxyStatusRequest, ResumeRequest, ResumeResponse, SwitchRequest, SwitchResponse,
    UnfenceRequest, fence_request::Mode, node_admin_client::NodeAdminClient,
    proxy_control_client::ProxyControlClient,
};
use futures_util::{FutureExt as _, future::BoxFuture};
use tonic::{Status, transport::Channel};

use super::{
    peer::{PeerError, SourcePeer, Token, channel},
    plan::Plan,
    world::{NodeControl, ProxyControl},
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
        token.check(endpoint)?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            client: ProxyControlClient::new(channel(endpoint)?),
            token,
        })
    }
}

impl ProxyControl for ProxyPeer {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn pause(&self, epoch: u64, hold: Duration) -> BoxFuture<'_, Result<(), PeerError>> {
        let request = self.token.attach(PauseRequest {
            epoch,
            hold_timeout_ms: hold.as_millis() as u64,
            drain_timeout_ms: 0,
        });
        let mut client = self.client.clone();
        async move {
            timed(&self.endpoint, "Pause", client.pause(request))
                .await
                .map(drop)
        }
        .boxed()
    }

    fn switch(&self, epoch: u64, color: Color) -> BoxFuture<'_, Result<SwitchResponse, PeerError>> {
        let request = self.token.attach(SwitchRequest {
            epoch,
            color: color as i32,
        });
        let mut client = self.client.clone();
        async move { timed(&self.endpoint, "Switch", client.switch(request)).await }.boxed()
    }

    fn resume(&self, epoch: u64) -> BoxFuture<'_, Result<ResumeResponse, PeerError>> {
        let request = self.token.attach(ResumeRequest { epoch });
        let mut client = self.client.clone();
        async move { timed(&self.endpoint, "Resume", client.resume(request)).await }.boxed()
    }

    fn status(&self) -> BoxFuture<'_, Result<ProxyStatus, PeerError>> {
        let request = self.token.attach(ProxyStatusRequest {});
        let mut client = self.client.clone();
        async move { timed(&self.endpoint, "Status", client.status(request)).await }.boxed()
    }
}

/// A node of either side over gRPC: its `NodeAdmin` fence and its `Source` (digests).
#[derive(Debug, Clone)]
pub struct NodePeer {
    /// Its gRPC endpoint, as in the plan.
    pub endpoint: String,
    admin: NodeAdminClient<Channel>,
    source: SourcePeer,
    token: Token,
}

impl NodePeer {
    /// Lazily connected clients of `endpoint`.
    pub fn new(endpoint: &str, token: Token) -> Result<Self, String> {
        token.check(endpoint)?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            admin: NodeAdminClient::new(channel(endpoint)?),
            source: SourcePeer::new(endpoint)?,
            token,
        })
    }

    fn fence<'a>(
        &'a self,
        epoch: u64,
        mode: Mode,
        reason: &str,
    ) -> BoxFuture<'a, Result<u64, PeerError>> {
        let request = self.token.attach(FenceRequest {
            mode: Some(mode),
            reason: reason.to_owned(),
            epoch,
        });
        let mut client = self.admin.clone();
        async move {
            timed(&self.endpoint, "Fence", client.fence(request))
                .await
                .map(|a| a.head_seq)
        }
        .boxed()
    }
}

/// A node that has seen a higher epoch refuses a fence or an unfence with
/// FAILED_PRECONDITION and changes nothing.
impl NodeControl for NodePeer {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn fence_lease<'a>(
        &'a self,
        epoch: u64,
        lease: Duration,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<u64, PeerError>> {
        self.fence(
            epoch,
            Mode::LeaseMs(lease.as_millis().max(1) as u64),
            reason,
        )
    }

    fn fence_permanent<'a>(
        &'a self,
        epoch: u64,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<u64, PeerError>> {
        self.fence(epoch, Mode::Permanent(true), reason)
    }

    fn unfence<'a>(&'a self, epoch: u64, reason: &'a str) -> BoxFuture<'a, Result<(), PeerError>> {
        let request = self.token.attach(UnfenceRequest {
            reason: reason.to_owned(),
            epoch,
        });
        let mut client = self.admin.clone();
        async move {
            timed(&self.endpoint, "Unfence", client.unfence(request))
                .await
                .map(drop)
        }
        .boxed()
    }

    fn status(&self) -> BoxFuture<'_, Result<NodeStatus, PeerError>> {
        let request = self.token.attach(NodeStatusRequest {});
        let mut client = self.admin.clone();
        async move { timed(&self.endpoint, "Status", client.status(request)).await }.boxed()
    }

    fn digest(&self) -> BoxFuture<'_, Result<DigestResponse, PeerError>> {
        self.source.digest().boxed()
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
    pub proxies: Vec<Arc<dyn ProxyControl>>,
    /// Every blue node, in plan order.
    pub blue: Vec<Arc<dyn NodeControl>>,
    /// Every green node, in plan order.
    pub green: Vec<Arc<dyn NodeControl>>,
    /// Blue's token, for its `Sink` in reverse sync.
    pub blue_token: Token,
    /// Green's token, for its `Sink` in the copy cycles.
    pub green_token: Token,
    /// How long a Pause holds ([`hold_timeout`] of the plan's pause budget).
    pub hold: Duration,
}

fn node(endpoint: &str, token: &Token) -> Result<Arc<dyn NodeControl>, String> {
    Ok(Arc::new(NodePeer::new(endpoint, token.clone())?))
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
                .map(|e| {
                    ProxyPeer::new(e, proxy_token.clone())
                        .map(|p| Arc::new(p) as Arc<dyn ProxyControl>)
                })
                .collect::<Result<_, _>>()?,
            blue: plan
                .blue
                .sources
                .iter()
                .map(|e| node(e, &blue_token))
                .collect::<Result<_, _>>()?,
            green: plan
                .green
                .sinks
                .iter()
                .map(|e| node(e, &green_token))
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
    pub fn nodes(&self, color: Color) -> &[Arc<dyn NodeControl>] {
        match color {
            Color::Green => &self.green,
            _ => &self.blue,
        }
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
