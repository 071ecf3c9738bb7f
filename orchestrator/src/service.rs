//! The gRPC `Orchestrator` service over the [`Engine`], and the daemon that serves it
//! (`cutover orchestrator`, or inside a green node with `cutover node --orchestrate`).

use std::{pin::Pin, sync::Arc};

use cutover_daemon::code::{Classify, ErrorCode};
use cutover_proto::v1::{
    AbortRequest, ProceedRequest, ProgressEvent, RollbackRequest, StartRequest, StartResponse,
    StatusRequest, UpgradeStatus, WatchRequest,
    orchestrator_server::{Orchestrator, OrchestratorServer},
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::engine::{Engine, EngineError, sample::SampleError};

impl Classify for EngineError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Plan(_) => ErrorCode::InvalidArgument,
            Self::Busy { .. } => ErrorCode::AlreadyExists,
            Self::WrongPhase { .. } => ErrorCode::PreconditionFailed,
            Self::Sample(SampleError::Endpoint(_)) => ErrorCode::InvalidArgument,
            Self::Sample(SampleError::Peer(_)) => ErrorCode::Unavailable,
            Self::Journal(_) => ErrorCode::Internal,
            Self::WouldLose { .. } | Self::Unconfirmed { .. } => ErrorCode::PreconditionFailed,
            Self::Unreachable(_) => ErrorCode::Unavailable,
            Self::Refused(crate::engine::driver::Refused::Invalid(_)) | Self::Blocked { .. } => {
                ErrorCode::PreconditionFailed
            }
            Self::Refused(crate::engine::driver::Refused::Journal(_)) => ErrorCode::Internal,
        }
    }
}

/// The `Orchestrator` service.
#[derive(Debug, Clone)]
pub struct OrchestratorService {
    engine: Arc<Engine>,
}

impl OrchestratorService {
    /// The service over `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// Events of a `Watch` stream.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<ProgressEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Orchestrator for OrchestratorService {
    async fn start(
        &self,
        request: Request<StartRequest>,
    ) -> Result<Response<StartResponse>, Status> {
        let request = request.into_inner();
        let name = if request.plan_name.is_empty() {
            "plan"
        } else {
            request.plan_name.as_str()
        };
        if request.dry_run {
            let samples = self
                .engine
                .dry_run(&request.plan_toml, name, request.sample)
                .await
                .map_err(|e| e.to_status())?;
            return Ok(Response::new(StartResponse {
                samples,
                ..StartResponse::default()
            }));
        }
        let status = self
            .engine
            .start(&request.plan_toml, name, request.rehearse)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(StartResponse {
            upgrade_id: status.upgrade_id.clone(),
            status: Some(status),
            samples: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<UpgradeStatus>, Status> {
        Ok(Response::new(self.engine.status()))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        _request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut events = self.engine.watch();
        let closing = self.engine.closing();
        let engine = Arc::clone(&self.engine);
        let stream = async_stream(move |tx| async move {
            loop {
                let event = events.borrow_and_update().clone();
                let last = event.status.as_ref().is_some_and(|s| engine.is_final(s));
                if tx.send(Ok(event)).await.is_err() || last {
                    return;
                }
                tokio::select! {
                    changed = events.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    () = closing.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable(
                            "the orchestrator is shutting down; watch again once it is back",
                        ))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn proceed(
        &self,
        _request: Request<ProceedRequest>,
    ) -> Result<Response<UpgradeStatus>, Status> {
        self.engine
            .proceed()
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn abort(
        &self,
        request: Request<AbortRequest>,
    ) -> Result<Response<UpgradeStatus>, Status> {
        self.engine
            .abort(&request.into_inner().reason)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<UpgradeStatus>, Status> {
        let request = request.into_inner();
        self.engine
            .rollback(request.discard_green_writes, request.confirmed)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }
}

/// A stream fed by `produce` through a small bounded channel.
fn async_stream<F, Fut>(produce: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<ProgressEvent, Status>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// The gRPC route of the `Orchestrator` service, behind the bearer token when one is set.
pub fn routes(engine: Arc<Engine>, token: Option<String>) -> tonic::service::Routes {
    let auth = cutover_daemon::auth::BearerAuth::new(token);
    tonic::service::Routes::new(OrchestratorServer::with_interceptor(
        OrchestratorService::new(engine),
        auth,
    ))
}

/// The gRPC server of the standalone daemon, with reflection.
pub async fn serve(
    engine: Arc<Engine>,
    token: Option<String>,
    listener: tokio::net::TcpListener,
    bounds: cutover_daemon::Bounds,
    tls: Option<cutover_daemon::tls::Tls>,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<OrchestratorServer<OrchestratorService>>()
        .await;
    tonic::transport::Server::builder()
        .max_concurrent_streams(bounds.max_streams)
        .http2_max_header_list_size(bounds.http2_header_list_bytes())
        .add_routes(routes(engine, token))
        .add_service(health_service)
        .add_service(cutover_proto::reflection())
        .serve_with_incoming_shutdown(
            // TCP_NODELAY set: small answers must not wait for the peer's delayed ACK.
            cutover_daemon::serve::incoming(listener, "grpc", bounds, tls, cancel.child_token()),
            cancel.cancelled_owned(),
        )
        .await
}
