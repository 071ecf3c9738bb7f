//! The controller: Pause, Switch, Resume and the hold's expiry, one at a time. Each steps the
//! route ([`RouteState::step`]), persists the new route, then acts on the gate; so a proxy
//! restarted at any moment comes back on the colour it last switched to.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cutover_proto::Color;
use tokio::sync::Mutex;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    error::ControlError,
    hold::{Gate, Released, Snapshot},
    metrics as m,
    route::{Change, Command, Ending, Epoch, Refusal, RouteFile, RouteState},
};

/// The timeouts of a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldConfig {
    /// Longest hold when a Pause asks for 0.
    pub hold_timeout: Duration,
    /// Longest hold a Pause may ask for; longer asks are lowered to it.
    pub max_hold_timeout: Duration,
    /// Longest drain when a Pause asks for 0.
    pub drain_timeout: Duration,
}

impl Default for HoldConfig {
    fn default() -> Self {
        Self {
            hold_timeout: Duration::from_secs(5),
            max_hold_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Figures of a Pause whose drain completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    /// Requests in flight when the hold began, all completed now.
    pub drained: u64,
    /// Requests held now.
    pub held: u64,
}

/// Drives the route and the gate.
#[derive(Debug)]
pub struct Controller {
    gate: Arc<Gate>,
    file: RouteFile,
    config: HoldConfig,
    state: Mutex<Control>,
    timers: TaskTracker,
    cancel: CancellationToken,
}

#[derive(Debug)]
struct Control {
    route: RouteState,
    /// Numbers holds, so an expiry timer only ends the hold it was set for.
    hold: u64,
    /// Requests in flight when the current hold began.
    drained: u64,
    /// The current hold's drain has not completed yet: if the hold expires first, it ends
    /// as a failed drain (held requests released), not as an expiry (held requests 503).
    draining: bool,
}

impl Controller {
    /// A controller over `gate`, starting from `route` (as loaded from `file`). A route that
    /// was holding when the proxy stopped holds again until its deadline, or ends at once if
    /// that has passed. Call it inside a tokio runtime (for the expiry timer).
    pub fn start(
        gate: Arc<Gate>,
        file: RouteFile,
        route: RouteState,
        config: HoldConfig,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let restored_hold = route.hold_deadline();
        let controller = Arc::new(Self {
            gate,
            file,
            config,
            state: Mutex::new(Control {
                route,
                hold: u64::from(restored_hold.is_some()),
                drained: 0,
                draining: false,
            }),
            timers: TaskTracker::new(),
            cancel,
        });
        m::route(route.epoch.0, route.active);
        if let Some(deadline_unix_ms) = restored_hold {
            tracing::info!(epoch = %route.epoch, deadline_unix_ms, "restarted inside a hold: holding until its deadline");
            controller.gate.hold();
            controller.arm_expiry(1, deadline_unix_ms);
        }
        controller
    }

    /// The route and the gate's figures, as `ProxyControl.Status` and `GET /route` report
    /// them.
    pub async fn status(&self) -> (RouteState, Snapshot) {
        let route = self.state.lock().await.route;
        (route, self.gate.snapshot())
    }

    /// Starts holding new requests (from this instant) and waits for the requests in flight
    /// to complete, at most the drain timeout; see the `ProxyControl.Pause` contract.
    #[tracing::instrument(skip_all, fields(epoch = epoch.0))]
    pub async fn pause(
        self: &Arc<Self>,
        epoch: Epoch,
        hold_timeout: Option<Duration>,
        drain_timeout: Option<Duration>,
    ) -> Result<Paused, ControlError> {
        let hold_timeout = hold_timeout
            .unwrap_or(self.config.hold_timeout)
            .min(self.config.max_hold_timeout);
        let drain_timeout = drain_timeout
            .unwrap_or(self.config.drain_timeout)
            .min(hold_timeout);
        let started = tokio::time::Instant::now();
        let (hold, drained) = {
            let mut state = self.state.lock().await;
            let deadline_unix_ms = unix_ms() + hold_timeout.as_millis() as u64;
            let (next, change) = state.route.step(Command::Pause {
                epoch,
                deadline_unix_ms,
            })?;
            if change == Change::StartHold {
                // Hold first: the contract says new requests are held from the instant the
                // call arrives, and writing the file takes milliseconds.
                let was_holding = state.route.is_holding();
                self.gate.hold();
                let in_flight = self.gate.snapshot().in_flight;
                if let Err(error) = self.persist(next).await {
                    if !was_holding {
                        self.gate.release(state.route.active);
                    }
                    return Err(error);
                }
                state.route = next;
                state.hold += 1;
                state.drained = in_flight;
                state.draining = true;
                m::route(next.epoch.0, next.active);
                tracing::info!(
                    in_flight = state.drained,
                    hold_timeout_ms = hold_timeout.as_millis() as u64,
                    "holding new requests; draining"
                );
                self.arm_expiry(state.hold, deadline_unix_ms);
            }
            (state.hold, state.drained)
        };
        let drained_in_time = tokio::time::timeout_at(started + drain_timeout, self.gate.drained())
            .await
            .is_ok();
        let mut state = self.state.lock().await;
        let same_hold = state.hold == hold && state.route.is_holding();
        if drained_in_time {
            if !same_hold {
                // The hold ended while this call waited (expiry, another caller's failed
                // drain): a Switch would be refused, so say so now.
                return Err(Refusal::HoldEnded {
                    epoch,
                    ended: state.route.ended.unwrap_or(Ending::Expired),
                }
                .into());
            }
            state.draining = false;
            let held = self.gate.snapshot().held;
            return Ok(Paused { drained, held });
        }
        let in_flight = self.gate.snapshot().in_flight;
        if same_hold {
            tracing::warn!(in_flight, ?drain_timeout, "drain timed out; resuming");
            self.end(&mut state, Ending::DrainFailed).await;
        }
        Err(ControlError::DrainTimeout {
            in_flight,
            timeout: drain_timeout,
            active: state.route.active,
        })
    }

    /// Ends the hold on `color`: persists it, then releases the held requests there.
    #[tracing::instrument(skip_all, fields(epoch = epoch.0, %color))]
    pub async fn switch(&self, epoch: Epoch, color: Color) -> Result<Released, ControlError> {
        let mut state = self.state.lock().await;
        let (next, change) = state.route.step(Command::Switch { epoch, color })?;
        if change != Change::Release {
            return Ok(Released::default());
        }
        let snapshot = self.gate.snapshot();
        if snapshot.in_flight > 0 {
            return Err(ControlError::StillInFlight {
                in_flight: snapshot.in_flight,
                active: snapshot.active,
            });
        }
        self.persist(next).await?;
        state.route = next;
        let released = self.gate.release(color);
        m::route(next.epoch.0, next.active);
        tracing::info!(
            released = released.released,
            max_hold_ms = released.max_hold.as_secs_f64() * 1e3,
            "switched; released the hold"
        );
        Ok(released)
    }

    /// Ends the hold on the active colour.
    #[tracing::instrument(skip_all, fields(epoch = epoch.0))]
    pub async fn resume(&self, epoch: Epoch) -> Result<Released, ControlError> {
        let mut state = self.state.lock().await;
        let (next, change) = state.route.step(Command::Resume { epoch })?;
        if change != Change::Release {
            return Ok(Released::default());
        }
        self.persist(next).await?;
        state.route = next;
        let released = self.gate.release(next.active);
        tracing::info!(
            released = released.released,
            max_hold_ms = released.max_hold.as_secs_f64() * 1e3,
            color = %next.active,
            "resumed; released the hold"
        );
        Ok(released)
    }

    /// Waits for the expiry timers to stop (after the cancel token fired).
    pub async fn stopped(&self) {
        self.timers.close();
        self.timers.wait().await;
    }

    /// Ends the current hold by itself (expiry or failed drain). It must end even when the
    /// file cannot be written: a proxy stuck holding would turn a disk error into an outage.
    async fn end(&self, state: &mut Control, ending: Ending) {
        let Ok((next, change)) = state.route.step(Command::End(ending)) else {
            return;
        };
        if change == Change::Nothing {
            return;
        }
        if let Err(error) = self.persist(next).await {
            tracing::error!(%error, "ending the hold without persisting it");
        }
        state.route = next;
        match change {
            Change::Expire => {
                let expired = self.gate.expire();
                tracing::warn!(expired, color = %next.active, "hold expired: no Switch or Resume came; forwarding again");
            }
            Change::Release => {
                self.gate.release(next.active);
            }
            _ => {}
        }
    }

    fn arm_expiry(self: &Arc<Self>, hold: u64, deadline_unix_ms: u64) {
        // Clamped: a wall clock stepped back must not stretch a hold restored from the file.
        let wait = Duration::from_millis(deadline_unix_ms.saturating_sub(unix_ms()))
            .min(self.config.max_hold_timeout);
        let controller = Arc::clone(self);
        let cancel = self.cancel.clone();
        self.timers.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let mut state = controller.state.lock().await;
            if state.hold == hold {
                let ending = if state.draining {
                    Ending::DrainFailed
                } else {
                    Ending::Expired
                };
                controller.end(&mut state, ending).await;
            }
        });
    }

    async fn persist(&self, route: RouteState) -> Result<(), ControlError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.store(&route))
            .await
            .expect("storing the route does not panic")?;
        Ok(())
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
