//! `cutover.v1.ProxyControl` over the [`Controller`]: decoding, and the figures each call
//! returns. Authentication is the caller's interceptor ([`cutover_daemon::auth::BearerAuth`]).

use std::{sync::Arc, time::Duration};

use cutover_daemon::Classify;
use cutover_proto::{
    Color,
    v1::{
        self, PauseRequest, PauseResponse, ProxyStatus, ProxyStatusRequest, ResumeRequest,
        ResumeResponse, RouteMode, SwitchRequest, SwitchResponse, proxy_control_server,
    },
};
use tonic::{Request, Response, Status};

use crate::{control::Controller, error::ControlError, hold::Released, route::Epoch};

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct ProxyControlService {
    controller: Arc<Controller>,
}

impl ProxyControlService {
    /// Serves `controller`.
    pub fn new(controller: Arc<Controller>) -> Self {
        Self { controller }
    }
}

/// Runs a control operation to its end even if the caller goes away: hyper drops a handler
/// whose client cancels, and a Pause or Switch abandoned between its file write and its
/// effect on the gate would leave the file and the traffic disagreeing.
async fn finish<T: Send + 'static>(
    operation: impl Future<Output = Result<T, ControlError>> + Send + 'static,
) -> Result<T, Status> {
    match tokio::spawn(operation).await {
        Ok(result) => result.map_err(|error| error.to_status()),
        Err(panic) => Err(Status::internal(format!(
            "control operation failed: {panic}"
        ))),
    }
}

fn millis(value: u64) -> Option<Duration> {
    (value > 0).then(|| Duration::from_millis(value))
}

#[tonic::async_trait]
impl proxy_control_server::ProxyControl for ProxyControlService {
    async fn pause(
        &self,
        request: Request<PauseRequest>,
    ) -> Result<Response<PauseResponse>, Status> {
        let request = request.into_inner();
        let controller = Arc::clone(&self.controller);
        let paused = finish(async move {
            controller
                .pause(
                    Epoch(request.epoch),
                    millis(request.hold_timeout_ms),
                    millis(request.drain_timeout_ms),
                )
                .await
        })
        .await?;
        Ok(Response::new(PauseResponse {
            drained: paused.drained,
            held: paused.held,
        }))
    }

    async fn switch(
        &self,
        request: Request<SwitchRequest>,
    ) -> Result<Response<SwitchResponse>, Status> {
        let request = request.into_inner();
        let color = Color::try_from(request.color)
            .map_err(|e| ControlError::InvalidArgument(format!("color: {e}")).to_status())?;
        let controller = Arc::clone(&self.controller);
        let released =
            finish(async move { controller.switch(Epoch(request.epoch), color).await }).await?;
        Ok(Response::new(released.into()))
    }

    async fn resume(
        &self,
        request: Request<ResumeRequest>,
    ) -> Result<Response<ResumeResponse>, Status> {
        let epoch = Epoch(request.into_inner().epoch);
        let controller = Arc::clone(&self.controller);
        let released = finish(async move { controller.resume(epoch).await }).await?;
        Ok(Response::new(released.into()))
    }

    async fn status(
        &self,
        _request: Request<ProxyStatusRequest>,
    ) -> Result<Response<ProxyStatus>, Status> {
        Ok(Response::new(status(&self.controller).await))
    }
}

impl From<Released> for SwitchResponse {
    fn from(released: Released) -> Self {
        Self {
            released: released.released,
            max_hold_micros: released.max_hold.as_micros() as u64,
        }
    }
}

impl From<Released> for ResumeResponse {
    fn from(released: Released) -> Self {
        let SwitchResponse {
            released,
            max_hold_micros,
        } = released.into();
        Self {
            released,
            max_hold_micros,
        }
    }
}

/// The proxy's status, as the gRPC `Status` call reports it.
async fn status(controller: &Controller) -> ProxyStatus {
    let (route, gate) = controller.status().await;
    let mode = if route.is_holding() {
        RouteMode::Holding
    } else {
        RouteMode::Forwarding
    };
    let deadline = route.hold_deadline().unwrap_or(0);
    ProxyStatus {
        epoch: route.epoch.0,
        active: v1::Color::from(route.active) as i32,
        mode: mode as i32,
        held: gate.held,
        held_bytes: gate.held_bytes,
        in_flight: gate.in_flight,
        hold_deadline_unix_ms: deadline,
    }
}
