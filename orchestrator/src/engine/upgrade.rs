//! The engine as its callers see it (the gRPC service, `cutover node --orchestrate`, tests):
//! start, status, watch, proceed, abort, rollback, with at most one upgrade at a time. Opening
//! the engine on a journal whose upgrade was interrupted resumes it. Proceed, abort and
//! rollback are commands on the running driver's queue: the driver carries each out as a
//! transition of its state, between two effects, so none can race it.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use cutover_node::store::Store;
use cutover_proto::v1::{ProgressEvent, SampleResult, UpgradeStatus};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{
    board::{Board, now_unix_ms},
    check::{CheckedPlan, check},
    driver::{Command, Driver, Refused, Request},
    host::{EngineBuilder, Host},
    journal::{Journal, JournalError, UpgradeRecord},
    machine::{State, Undo},
    metrics as m,
    plan::{Plan, PlanError},
    reverse::count_changes,
    sample::{SampleError, sample},
    transform::Natives,
};

/// Commands waiting for the driver, at most (an operator's commands are rare; a full queue
/// answers "busy" rather than growing).
const COMMAND_QUEUE: usize = 8;

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The plan does not parse or check.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Another upgrade is in progress.
    #[error(
        "upgrade {upgrade_id} is in progress (phase {phase}): wait for it to end, or abort it \
         with `cutover upgrade abort`"
    )]
    Busy {
        /// The running upgrade.
        upgrade_id: String,
        /// Its phase.
        phase: &'static str,
    },
    /// The request does not fit the phase.
    #[error("{what}: the upgrade is in phase {phase}")]
    WrongPhase {
        /// What was asked and when it is allowed.
        what: &'static str,
        /// The phase it is in.
        phase: &'static str,
    },
    /// A dry run could not read blue.
    #[error(transparent)]
    Sample(#[from] SampleError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A rollback would lose green writes and was not told to.
    #[error(
        "rollback refused: {documents} documents written on green in {collections} would be \
         lost (no reverse program): add a reverse program to the plan, or roll back with \
         --discard-green-writes"
    )]
    WouldLose {
        /// Green writes that cannot flow back.
        documents: u64,
        /// The collections without a reverse program.
        collections: String,
    },
    /// A rollback was not confirmed.
    #[error(
        "rollback not confirmed: {documents} green writes would be lost; confirm (the CLI \
         asks, or pass --yes)"
    )]
    Unconfirmed {
        /// Green writes that would be lost.
        documents: u64,
    },
    /// A node the request needs did not answer.
    #[error("{0}")]
    Unreachable(String),
    /// The running upgrade refused the command (its state does not take it).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Proceed with more dead letters than the plan allows.
    #[error(
        "proceed refused: {dead} documents failed to transform (the plan allows {allowed}); fix \
         them on blue (the delta cycles carry the fix over) or the program, then proceed again"
    )]
    Blocked {
        /// Dead letters now.
        dead: u64,
        /// `allowed_transform_failures` of the plan.
        allowed: u64,
    },
}

struct Running {
    commands: mpsc::Sender<Request>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// The migration engine.
pub struct Engine {
    board: Board,
    /// The node it runs in and the native transforms of its process, lent to each driver.
    host: Host,
    running: Mutex<Option<Running>>,
    /// Held for the whole of a start: one at a time.
    starting: tokio::sync::Mutex<()>,
    closing: CancellationToken,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("journal", self.board.journal())
            .field("natives", &self.host.natives)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the journal in `path` and resumes an interrupted upgrade. `local` is the store of
    /// the green node the engine runs in, if any. No native transform is registered: see
    /// [`builder`](Self::builder). Must be called inside a tokio runtime.
    pub fn open(path: &Path, local: Option<Store>) -> Result<Arc<Self>, EngineError> {
        Self::open_with(
            path,
            Host {
                local,
                natives: Natives::default(),
            },
        )
    }

    /// An engine to open with native transforms, or inside a green node:
    /// `Engine::builder().native("split_name", Arc::new(SplitName)).open(path)`.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// [`open`](Self::open) with what `host` lends.
    pub(super) fn open_with(path: &Path, host: Host) -> Result<Arc<Self>, EngineError> {
        m::describe();
        let journal = Arc::new(Journal::open(path)?);
        let board = Board::load(journal)?;
        let engine = Arc::new(Self {
            board,
            host,
            running: Mutex::new(None),
            starting: tokio::sync::Mutex::new(()),
            closing: CancellationToken::new(),
        });
        tokio::spawn(super::reach::run(
            engine.board.clone(),
            engine.closing.clone(),
        ));
        let state = engine.board.state();
        if !state.is_terminal() {
            let upgrade =
                engine
                    .board
                    .journal()
                    .upgrade()?
                    .ok_or_else(|| JournalError::Corrupt {
                        path: format!("{}", path.display()),
                        what: "a state but no upgrade".into(),
                    })?;
            tracing::info!(
                upgrade_id = upgrade.id,
                state = state.name(),
                "resuming the upgrade from the journal"
            );
            engine.launch(upgrade, true);
        }
        Ok(engine)
    }

    /// Starts a driver of `upgrade` (none may be running).
    fn launch(&self, upgrade: UpgradeRecord, resumed: bool) {
        let cancel = CancellationToken::new();
        let (commands, queue) = mpsc::channel(COMMAND_QUEUE);
        let task = tokio::spawn(Driver::drive(
            self.board.clone(),
            upgrade,
            cancel.clone(),
            self.host.clone(),
            queue,
            resumed,
        ));
        let previous = self.running.lock().expect("not poisoned").replace(Running {
            commands,
            cancel,
            task,
        });
        debug_assert!(previous.is_none(), "one driver at a time");
    }

    /// Starts an upgrade from `plan_toml` (read from `plan_name`), once the plan has passed
    /// its check (its native transforms found in this engine's registry). A driver still
    /// running is in reverse sync of an earlier upgrade, which a new start ends: it is
    /// stopped, and waited for, before the new upgrade is journaled, so nothing it does can
    /// follow.
    pub async fn start(
        &self,
        plan_toml: &str,
        plan_name: &str,
        rehearse: bool,
    ) -> Result<UpgradeStatus, EngineError> {
        let checked = check(plan_name, plan_toml, &self.host.natives)?;
        // The clients of every node and proxy, made once here so that what keeps them from
        // being made (a token that would cross the network in clear text, an https://
        // address with no CA to verify it) refuses the start before anything is journaled.
        super::fleet::Fleet::from_plan(&checked.plan).map_err(|what| PlanError {
            file: plan_name.to_owned(),
            what,
        })?;
        let _one_start = self.starting.lock().await;
        let busy = || EngineError::Busy {
            upgrade_id: self.status().upgrade_id,
            phase: m::phase_name(self.board.phase()),
        };
        if !self.board.state().allows_start() {
            return Err(busy());
        }
        let previous = self.running.lock().expect("not poisoned").take();
        if let Some(previous) = previous {
            previous.cancel.cancel();
            let _ = previous.task.await;
        }
        if !self.board.state().allows_start() {
            // The stopped driver took a command first (a rollback): it must go on.
            if let Some(upgrade) = self.board.journal().upgrade()? {
                self.launch(upgrade, true);
            }
            return Err(busy());
        }
        let started = now_unix_ms();
        let upgrade = UpgradeRecord {
            id: format!("u{started}"),
            plan_name: plan_name.to_owned(),
            plan_toml: plan_toml.to_owned(),
            rehearse,
            started_unix_ms: started,
        };
        self.board.journal().begin(&upgrade)?;
        self.board.begin(&upgrade.id, started);
        super::fault::passed(&State::Discovering);
        tracing::info!(
            upgrade_id = upgrade.id,
            plan = plan_name,
            rehearse,
            "upgrade started"
        );
        self.launch(upgrade, false);
        Ok(self.status())
    }

    /// Runs the plan's forward programs over up to `per_collection` documents of each blue
    /// collection; changes nothing.
    pub async fn dry_run(
        &self,
        plan_toml: &str,
        plan_name: &str,
        per_collection: u32,
    ) -> Result<Vec<SampleResult>, EngineError> {
        let CheckedPlan { plan, forward, .. } = check(plan_name, plan_toml, &self.host.natives)?;
        Ok(sample(&plan.blue.sources, &forward, per_collection).await?)
    }

    /// The native transforms plans may name.
    pub fn natives(&self) -> &Natives {
        &self.host.natives
    }

    /// The current upgrade's status.
    pub fn status(&self) -> UpgradeStatus {
        self.board.current().status.unwrap_or_default()
    }

    /// Every change of status and progress, starting with the current one.
    pub fn watch(&self) -> watch::Receiver<ProgressEvent> {
        self.board.subscribe()
    }

    /// Waits up to `timeout` for the upgrade to record its first cycle or to fail; its status
    /// then, or none when the time ran out or the engine stopped.
    pub async fn first_cycle(&self, timeout: std::time::Duration) -> Option<UpgradeStatus> {
        let mut events = self.watch();
        let waiting = async {
            loop {
                let status = events
                    .borrow_and_update()
                    .status
                    .clone()
                    .unwrap_or_default();
                if !status.cycles.is_empty() || status.phase() == cutover_proto::v1::Phase::Failed {
                    return Some(status);
                }
                events.changed().await.ok()?;
            }
        };
        tokio::time::timeout(timeout, waiting).await.ok().flatten()
    }

    /// Fires when the engine shuts down (ends `Watch` streams).
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// Lets a POSTPONED upgrade cut over, unless more documents failed to transform than the
    /// plan allows.
    pub async fn proceed(&self) -> Result<UpgradeStatus, EngineError> {
        let state = self.board.state();
        if !matches!(state, State::Postponed { .. }) {
            return Err(self.wrong(&state, "proceed is for a postponed upgrade"));
        }
        if let Some(upgrade) = self.board.journal().upgrade()? {
            let plan = Plan::parse(&upgrade.plan_name, &upgrade.plan_toml)?;
            let dead = self.board.refresh_dead_letters()?;
            if dead > plan.allowed_transform_failures {
                return Err(EngineError::Blocked {
                    dead,
                    allowed: plan.allowed_transform_failures,
                });
            }
        }
        self.command(Command::Proceed).await
    }

    /// Abandons an upgrade that has not committed: the driver undoes what the cutover did
    /// (blue unfenced, then every proxy resumed on blue) and ends in ABORTED.
    pub async fn abort(&self, reason: &str) -> Result<UpgradeStatus, EngineError> {
        let state = self.board.state();
        match &state {
            State::Aborted { .. } => return Ok(self.status()),
            State::Undoing {
                why: Undo::Aborted { .. },
                ..
            } => return Ok(self.status()),
            State::Idle | State::Failed { .. } => {
                return Err(self.wrong(&state, "abort needs an upgrade in progress"));
            }
            s if s.is_committed() => {
                return Err(self.wrong(
                    s,
                    "abort is only possible before the cutover commits (use rollback)",
                ));
            }
            _ => {}
        }
        let reason = if reason.is_empty() {
            "aborted by operator"
        } else {
            reason
        };
        self.command(Command::Abort {
            reason: reason.to_owned(),
        })
        .await
    }

    /// Rolls a switched upgrade back to blue (see `Orchestrator.Rollback`): refused when green
    /// holds writes that cannot flow back, unless they are to be discarded; then the driver
    /// runs the handover reversed.
    pub async fn rollback(
        &self,
        discard_green_writes: bool,
        confirmed: bool,
    ) -> Result<UpgradeStatus, EngineError> {
        const WHEN: &str = "rollback is for a switched upgrade (SWITCHED or REVERSE_SYNC)";
        let state = self.board.state();
        let reverse_from = match &state {
            State::Switched { reverse_from } | State::ReverseSync { reverse_from } => {
                reverse_from.clone()
            }
            other => return Err(self.wrong(other, WHEN)),
        };
        let journal = self.board.journal();
        let upgrade = journal.upgrade()?.ok_or_else(|| self.wrong(&state, WHEN))?;
        let plan = Plan::parse(&upgrade.plan_name, &upgrade.plan_toml)?;
        let unreversible = plan.unreversible();
        let mut lost = 0;
        if !unreversible.is_empty() {
            lost = count_changes(&reverse_from, &unreversible)
                .await
                .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        }
        if lost > 0 && !discard_green_writes {
            return Err(EngineError::WouldLose {
                documents: lost,
                collections: unreversible.join(", "),
            });
        }
        if !confirmed {
            return Err(EngineError::Unconfirmed { documents: lost });
        }
        self.command(Command::Rollback {
            discard: discard_green_writes && lost > 0,
        })
        .await
    }

    /// Sends `command` to the running driver and waits until it is journaled or refused.
    async fn command(&self, command: Command) -> Result<UpgradeStatus, EngineError> {
        let sender = self
            .running
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|r| r.commands.clone());
        let refused = || {
            let state = self.board.state();
            self.wrong(&state, "no upgrade is running")
        };
        let Some(sender) = sender else {
            return Err(refused());
        };
        let (reply, answer) = oneshot::channel();
        sender
            .send(Request { command, reply })
            .await
            .map_err(|_| refused())?;
        answer.await.map_err(|_| refused())??;
        Ok(self.status())
    }

    fn wrong(&self, state: &State, what: &'static str) -> EngineError {
        EngineError::WrongPhase {
            what,
            phase: m::phase_name(state.phase()),
        }
    }

    /// Whether `status` is the last a `Watch` stream sends: a terminal phase, green serving,
    /// or a rehearsal that has run its cutover and resumed (READY_FOR_CUTOVER with no
    /// handover step).
    pub fn is_final(&self, status: &UpgradeStatus) -> bool {
        use cutover_proto::v1::Phase;
        match status.phase() {
            Phase::Unspecified
            | Phase::Idle
            | Phase::ReverseSync
            | Phase::RolledBack
            | Phase::Aborted
            | Phase::Failed => true,
            Phase::ReadyForCutover => status.handover_step.is_empty(),
            _ => false,
        }
    }

    /// Stops the running driver without ending the upgrade (the daemon is stopping); the
    /// journal keeps it for the next start.
    pub async fn shutdown(&self) {
        self.closing.cancel();
        let running = self.running.lock().expect("not poisoned").take();
        if let Some(running) = running {
            running.cancel.cancel();
            let _ = running.task.await;
        }
    }
}
