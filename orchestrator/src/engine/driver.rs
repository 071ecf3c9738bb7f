//! The driver: executes what the upgrade's [`State`] asks for and feeds the outcome back to
//! [`step`] as an [`Event`]. Effect outcomes, the operator's commands (abort, proceed,
//! rollback) and restarts all arrive here, one at a time, so nothing can race the driver; each
//! transition is one synced journal write of the new state before anything acts on it. A
//! restarted driver reads the state and executes its effect again: every effect is idempotent
//! under the handover's epoch.
//!
//! The driver decides nothing on its own: which event an outcome is, and what a failure
//! means ([`State::on_error`]), are the machine's.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    board::Board,
    discover::GrpcDiscovery,
    error::DriveError,
    fault,
    fleet::Fleet,
    host::Host,
    journal::{Direction, Hold, UpgradeRecord},
    machine::{Event, Handover, InvalidTransition, OnError, State, Step, Undo, narrate, step},
    metrics as m,
    plan::Plan,
    routes::Routes,
    transform::Natives,
    world::{Discovery, Pipeline},
};

/// Failed attempts at one step before the copy cycles give up (the upgrade fails, blue
/// untouched).
const ATTEMPTS: u32 = 5;
/// First wait before a failed step is tried again; it doubles on each failure.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two tries of a step that must finish (an undo, a switch after the
/// commit, reverse sync).
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// An operator's command for the running upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Abandon the upgrade before its commit.
    Abort {
        /// Why (shown as the status's error).
        reason: String,
    },
    /// Let a postponed upgrade cut over.
    Proceed,
    /// Roll a switched upgrade back.
    Rollback {
        /// Discard green's writes that cannot flow back.
        discard: bool,
    },
}

impl Command {
    fn event(self) -> Event {
        match self {
            Self::Abort { reason } => Event::Abort { reason },
            Self::Proceed => Event::Proceed,
            Self::Rollback { discard } => Event::Rollback { discard },
        }
    }
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The state does not take it.
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
    /// The journal could not record it.
    #[error(transparent)]
    Journal(#[from] super::journal::JournalError),
}

/// A command and where its answer goes.
#[derive(Debug)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// Answered once the command's transition is journaled, or refused.
    pub reply: oneshot::Sender<Result<(), Refused>>,
}

/// Everything a driver runs with.
#[derive(Debug)]
pub struct Driver {
    /// Shown status and journal.
    pub(super) board: Board,
    /// The upgrade.
    pub(super) upgrade: UpgradeRecord,
    /// Its plan.
    pub(super) plan: Plan,
    /// The proxies and nodes it steers (from the plan: no discovery needed).
    pub(super) fleet: Fleet,
    /// Finds the copy pipelines.
    discovery: Arc<dyn Discovery>,
    /// The native transforms the plan's `*_native` names are looked up in: those of this
    /// process, which after a restart may not be those of the one that started the upgrade.
    pub(super) natives: Natives,
    /// Fires on shutdown: the driver stops where it is; the journal keeps the state.
    pub(super) cancel: CancellationToken,
    /// What discovery found, once it ran in this process.
    run: OnceCell<Run>,
    /// The pending count this process's last threshold decision was made on.
    pub(super) decided: Mutex<Option<u64>>,
    /// The threshold engine's last assessment, for the status of the handover it began.
    pub(super) assessment: Mutex<Option<String>>,
    /// What this process's last threshold decision predicted one more cycle would take: the
    /// next forward cycle's time is shown against it.
    pub(super) predicted: Mutex<Option<Duration>>,
    /// When this process paused the proxies of the current handover, and how long its final
    /// cycle took: the switch overhead, measured when the hold ends.
    pub(super) hold: Mutex<(Option<Instant>, Duration)>,
}

/// What discovery found: the copy pipelines and their transforms.
#[derive(Debug)]
pub(super) struct Run {
    /// The plan's forward transforms.
    pub routes: Arc<Routes>,
    /// Blue → green pipelines.
    pub pairs: Vec<Arc<dyn Pipeline>>,
}

/// How a wait for an effect ended.
enum Outcome {
    /// A command moved the state (already journaled).
    Moved(State),
    /// The effect finished.
    Done(Result<Event, DriveError>),
}

impl Driver {
    /// A driver of `upgrade` with what the process lends it (`host`); `Err` (with the status
    /// error) when its journaled plan cannot be used any more.
    pub fn new(
        board: Board,
        upgrade: UpgradeRecord,
        cancel: CancellationToken,
        host: Host,
    ) -> Result<Self, DriveError> {
        let plan = Plan::parse(&upgrade.plan_name, &upgrade.plan_toml)
            .map_err(|e| DriveError::Plan(e.to_string()))?;
        let fleet = Fleet::from_plan(&plan).map_err(DriveError::Plan)?;
        let discovery = Arc::new(GrpcDiscovery {
            plan: plan.clone(),
            plan_toml: upgrade.plan_toml.clone(),
            sink_token: fleet.green_token.clone(),
            local: host.local,
        });
        let mut driver = Self::with(board, upgrade, plan, fleet, discovery, cancel);
        driver.natives = host.natives;
        Ok(driver)
    }

    /// A driver of `upgrade` that steers `fleet` and copies through what `discovery` finds,
    /// with no native transform.
    pub fn with(
        board: Board,
        upgrade: UpgradeRecord,
        plan: Plan,
        fleet: Fleet,
        discovery: Arc<dyn Discovery>,
        cancel: CancellationToken,
    ) -> Self {
        m::plan(plan.pause_budget, plan.allowed_transform_failures);
        Self {
            board,
            upgrade,
            plan,
            fleet,
            discovery,
            natives: Natives::default(),
            cancel,
            run: OnceCell::new(),
            decided: Mutex::new(None),
            assessment: Mutex::new(None),
            predicted: Mutex::new(None),
            hold: Mutex::new((None, Duration::ZERO)),
        }
    }

    /// Runs the upgrade until it reaches a terminal state or is cancelled, taking commands
    /// from `commands` meanwhile. `resumed`: the state was read from the journal by a
    /// restarted orchestrator.
    pub async fn run(self, mut commands: mpsc::Receiver<Request>, resumed: bool) {
        let mut state = self.board.state();
        let mut backoff = FIRST_BACKOFF;
        if resumed && !state.is_terminal() {
            let Some(next) = self.resume(state).await else {
                return;
            };
            state = next;
        }
        // A wait before the next effect (a retry's backoff), inside the select so that a
        // command is taken meanwhile.
        let mut delay = Duration::ZERO;
        while !state.is_terminal() {
            let outcome = {
                let effect = async {
                    tokio::time::sleep(delay).await;
                    self.effect(&state).await
                };
                tokio::pin!(effect);
                loop {
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        Some(request) = commands.recv() => {
                            let event = request.command.event();
                            match self.transit(state.clone(), event) {
                                Ok(next) => {
                                    let _ = request.reply.send(Ok(()));
                                    break Outcome::Moved(next);
                                }
                                Err(refused) => {
                                    let _ = request.reply.send(Err(refused));
                                }
                            }
                        }
                        outcome = &mut effect => break Outcome::Done(outcome),
                    }
                }
            };
            delay = Duration::ZERO;
            let event = match outcome {
                Outcome::Moved(next) => {
                    state = next;
                    continue;
                }
                Outcome::Done(Ok(event)) => event,
                Outcome::Done(Err(error)) => match state.on_error() {
                    OnError::Fail | OnError::Undo => {
                        tracing::warn!(%error, state = state.name(), "step failed");
                        Event::Failed {
                            error: self.failure(&state, &error),
                            again: error.again(),
                        }
                    }
                    OnError::Retry => {
                        tracing::warn!(%error, state = state.name(), "step failed; retrying");
                        self.board
                            .detail(format!("retrying in {backoff:?} after: {error}"));
                        delay = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            match self.transit(state.clone(), event) {
                Ok(next) => {
                    state = next;
                    backoff = FIRST_BACKOFF;
                }
                Err(error) => {
                    // An effect's outcome the state does not take is a bug; the journal
                    // still holds the state, so stay and try again rather than guess.
                    tracing::error!(%error, state = state.name(), "transition refused");
                    delay = MAX_BACKOFF;
                }
            }
        }
    }

    /// Builds the driver of `upgrade` and runs it (see [`run`](Self::run)). A journaled plan
    /// that can no longer be used (a token file gone) fails an upgrade that has not begun its
    /// handover; from the handover on it is tried again, backing off, until it can be used:
    /// only a driver can finish or undo what the handover started.
    pub async fn drive(
        board: Board,
        upgrade: UpgradeRecord,
        cancel: CancellationToken,
        host: Host,
        commands: mpsc::Receiver<Request>,
        resumed: bool,
    ) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let error =
                match Self::new(board.clone(), upgrade.clone(), cancel.clone(), host.clone()) {
                    Ok(driver) => return driver.run(commands, resumed).await,
                    Err(error) => error,
                };
            let state = board.state();
            if state.on_error() == OnError::Fail {
                let reason = format!(
                    "{error}; blue was not changed: fix the cause and start the upgrade again"
                );
                tracing::error!(reason, "cannot drive the upgrade");
                let failed = Event::Failed {
                    error: reason.clone(),
                    again: false,
                };
                if let Ok(next) = step(state, failed)
                    && let Err(error) = board.commit(&upgrade.id, &next, &reason)
                {
                    tracing::error!(%error, "cannot journal the failure");
                }
                return;
            }
            tracing::error!(%error, state = state.name(), "cannot drive the upgrade; retrying");
            board.detail(format!(
                "cannot drive the upgrade, retrying in {backoff:?}: {error}"
            ));
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Feeds [`Event::Resumed`] to `state`, read from the journal by a restarted
    /// orchestrator. A journal write that fails (a full disk) is tried again, backing off: the
    /// driver must stay up to take commands and finish or undo what was started. `None` when
    /// cancelled meanwhile.
    async fn resume(&self, state: State) -> Option<State> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.transit(state.clone(), Event::Resumed) {
                Ok(next) => return Some(next),
                // Every state `run` resumes takes `Resumed`: stay rather than spin if one
                // ever does not.
                Err(Refused::Invalid(_)) => return Some(state),
                Err(error) => {
                    tracing::error!(%error, "cannot resume the upgrade; retrying");
                    self.board
                        .detail(format!("cannot resume, retrying in {backoff:?}: {error}"));
                    self.sleep(backoff).await.ok()?;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The status error of a failure in `state`.
    fn failure(&self, state: &State, error: &DriveError) -> String {
        match state {
            State::Discovering | State::Cycling { .. } | State::Postponed { .. } => {
                format!("{error}; blue was not changed: fix the cause and start the upgrade again")
            }
            _ => error.to_string(),
        }
    }

    /// Steps `state` by `event`; a new state is journaled (one synced write) and shown
    /// before it is returned, and the fault point of the state is passed.
    fn transit(&self, state: State, event: Event) -> Result<State, Refused> {
        let next = step(state.clone(), event.clone())?;
        if next == state {
            return Ok(next);
        }
        let detail = self.detail(&state, &event, &next);
        self.board.commit(&self.upgrade.id, &next, &detail)?;
        self.count(&state, &event, &next);
        if matches!(event, Event::Undone | Event::Failed { .. }) {
            // The next cycle counts its own delta: the last decision's is stale.
            *self.decided.lock().expect("not poisoned") = None;
        }
        fault::passed(&next);
        Ok(next)
    }

    /// The status detail of entering `next`: the machine's narration, with the figures of
    /// the last hold where a hold ended.
    fn detail(&self, from: &State, event: &Event, next: &State) -> String {
        let told = narrate(from, event, next);
        let holds = || {
            self.board
                .journal()
                .holds()
                .map(|h| Hold::summary(&h))
                .unwrap_or_default()
        };
        match next {
            State::Handover {
                handover: Handover::Cutover { .. },
                step: Step::Epoch,
            } if matches!(event, Event::Cycled(_)) => {
                let assessment = self.assessment.lock().expect("not poisoned").clone();
                assessment.unwrap_or(told)
            }
            State::Handover {
                step: Step::Pausing { epoch },
                handover,
            } => format!(
                "{}epoch {epoch}: {} proxies hold new requests and drain",
                if handover.direction() == Direction::Reverse {
                    "rollback: "
                } else {
                    ""
                },
                self.fleet.proxies.len()
            ),
            State::Switched { .. } if self.fleet.proxies.is_empty() => {
                "no proxy in the plan: blue is fenced for good, send clients to green".to_owned()
            }
            State::Switched { .. } | State::RolledBack { .. } | State::Rehearsed { .. } => {
                format!("{told}; {}", holds())
            }
            _ => told,
        }
    }

    /// The attempt counters of a handover that ended.
    fn count(&self, from: &State, event: &Event, next: &State) {
        if let (
            State::Handover { handover, .. },
            Event::Failed { .. },
            State::Cycling { .. } | State::Aborted { .. } | State::ReverseSync { .. },
        ) = (from, event, next)
        {
            // Failed before anything was held: undone with nothing to undo.
            m::attempt(handover.direction().as_str(), "undone");
            return;
        }
        match next {
            State::Undoing {
                handover,
                why: Undo::Failed { .. },
                ..
            } => m::attempt(handover.direction().as_str(), "undone"),
            State::Switched { .. } => m::attempt("forward", "switched"),
            State::RolledBack { .. } => m::attempt("reverse", "switched"),
            State::Rehearsed { .. } => m::attempt("forward", "rehearsed"),
            _ => {}
        }
    }

    /// What `state` asks for, until it is done: the event it ends with.
    async fn effect(&self, state: &State) -> Result<Event, DriveError> {
        match state {
            State::Discovering => {
                self.discovered().await?;
                Ok(Event::Discovered)
            }
            State::Cycling { .. } => self.converge().await.map(Event::Cycled),
            State::Postponed { .. } => self.postponed().await.map(Event::Cycled),
            State::Handover { handover, step } => self.handover(handover, step).await,
            State::Undoing {
                handover,
                epoch,
                why,
                ..
            } => {
                let rehearsed = matches!(why, Undo::Rehearsed { .. });
                self.undo(handover, *epoch, rehearsed).await?;
                Ok(Event::Undone)
            }
            State::Switched { .. } => Ok(Event::ReverseSyncBegun),
            State::ReverseSync { .. } => self.reverse_sync().await,
            State::Rehearsed { .. }
            | State::Idle
            | State::RolledBack { .. }
            | State::Aborted { .. }
            | State::Failed { .. } => std::future::pending().await,
        }
    }

    /// Discovery, once per process: the copy pipelines of the plan.
    pub(super) async fn discovered(&self) -> Result<&Run, DriveError> {
        self.run
            .get_or_try_init(|| async {
                // Compiled in this process, its native transforms looked up in this process's
                // registry: a restarted engine resolves the journaled plan's names again.
                let routes = Routes::forward(&self.plan, &self.natives)
                    .map_err(|e| DriveError::Plan(e.to_string()))?;
                let pairs = self
                    .attempt("discovery", || self.discovery.discover())
                    .await?;
                Ok(Run {
                    routes: Arc::new(routes),
                    pairs,
                })
            })
            .await
    }

    /// Waits `how_long`; `Err` when the driver is cancelled meanwhile.
    pub(super) async fn sleep(&self, how_long: Duration) -> Result<(), ()> {
        tokio::select! {
            () = self.cancel.cancelled() => Err(()),
            () = tokio::time::sleep(how_long) => Ok(()),
        }
    }

    /// Retries `step` on a transient failure ([`DriveError::retryable`]), backing off, up to
    /// [`ATTEMPTS`] times.
    pub(super) async fn attempt<T, E, F>(
        &self,
        what: &str,
        mut step: impl FnMut() -> F,
    ) -> Result<T, DriveError>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<DriveError>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match step().await.map_err(Into::into) {
                Ok(value) => return Ok(value),
                Err(error) if attempt >= ATTEMPTS || !error.retryable() => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, attempt, "{what} failed; retrying");
                    self.board.detail(format!(
                        "{what} failed (attempt {attempt} of {ATTEMPTS}): {error}"
                    ));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
            }
        }
    }

    /// The direction's name for logs.
    pub(super) fn reason(&self, direction: Direction) -> String {
        match direction {
            Direction::Forward => format!("cutover {}", self.upgrade.id),
            Direction::Reverse => format!("rollback {}", self.upgrade.id),
        }
    }
}
