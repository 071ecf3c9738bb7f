//! gRPC `NodeAdmin`: fence (lease or permanent), unfence, status.

use cutover_proto::v1::{
    FenceRequest, FenceResponse, NodeStatus, NodeStatusRequest, UnfenceRequest,
    fence_request::Mode, node_admin_server::NodeAdmin,
};
use tonic::{Request, Response, Status};

use super::{blocking, status};
use crate::{
    metrics as m,
    store::{FenceMode, FenceState, Store, now_unix_ms},
};

/// The `NodeAdmin` service over a store.
#[derive(Debug, Clone)]
pub struct AdminService {
    store: Store,
}

impl AdminService {
    /// The service for `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// The wire form of a fence state.
pub fn fence_state(state: &FenceState) -> cutover_proto::v1::FenceState {
    let now = now_unix_ms();
    cutover_proto::v1::FenceState {
        fenced: state.is_fenced(now),
        permanent: state.is_permanent(),
        lease_remaining_ms: state.lease_remaining(now).as_millis() as u64,
        reason: state.reason.clone(),
        epoch: state.epoch,
    }
}

#[tonic::async_trait]
impl NodeAdmin for AdminService {
    #[tracing::instrument(skip_all, fields(reason, epoch))]
    async fn fence(
        &self,
        request: Request<FenceRequest>,
    ) -> Result<Response<FenceResponse>, Status> {
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("reason", request.reason.as_str());
        span.record("epoch", request.epoch);
        let mode = match request.mode {
            Some(Mode::Permanent(true)) => FenceMode::Permanent,
            Some(Mode::LeaseMs(ms)) if ms > 0 => FenceMode::Lease {
                until_unix_ms: now_unix_ms().saturating_add(ms),
            },
            _ => {
                return Err(Status::invalid_argument(
                    "fence needs a mode: lease_ms > 0 or permanent = true",
                ));
            }
        };
        let store = self.store.clone();
        let (epoch, reason) = (request.epoch, request.reason);
        let (state, head_seq) = blocking(move || store.fence(epoch, mode, reason))
            .await
            .map_err(status)?;
        metrics::gauge!(m::FENCED).set(1.0);
        tracing::info!(
            permanent = state.is_permanent(),
            lease_ms = state.lease_remaining(now_unix_ms()).as_millis() as u64,
            head_seq,
            "fenced: client writes refused"
        );
        Ok(Response::new(FenceResponse {
            state: Some(fence_state(&state)),
            head_seq,
        }))
    }

    #[tracing::instrument(skip_all, fields(epoch))]
    async fn unfence(
        &self,
        request: Request<UnfenceRequest>,
    ) -> Result<Response<FenceResponse>, Status> {
        let store = self.store.clone();
        let UnfenceRequest { reason, epoch } = request.into_inner();
        tracing::Span::current().record("epoch", epoch);
        let (state, head_seq) = blocking(move || store.unfence(epoch, reason))
            .await
            .map_err(status)?;
        metrics::gauge!(m::FENCED).set(0.0);
        tracing::info!(head_seq, "unfenced: client writes accepted");
        Ok(Response::new(FenceResponse {
            state: Some(fence_state(&state)),
            head_seq,
        }))
    }

    async fn status(
        &self,
        _request: Request<NodeStatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        let store = self.store.clone();
        let (live_documents, describe) =
            blocking(move || Ok((store.live_documents()?, store.describe()?)))
                .await
                .map_err(status)?;
        Ok(Response::new(NodeStatus {
            node_id: describe.node_id,
            fence: Some(fence_state(&self.store.fence_state())),
            head_seq: describe.head_seq,
            live_documents,
            partition_count: describe.partition_count,
            schema_version: describe.schema_version,
        }))
    }
}
