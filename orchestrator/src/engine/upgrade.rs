//! The engine as its callers see it (the gRPC service, `cutover node --orchestrate`, tests):
//! start, status, watch, proceed, abort, with at most one upgrade at a time. Opening the
//! engine on a journal whose upgrade was interrupted resumes it.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use cutover_node::store::Store;
use cutover_proto::v1::{Phase, ProgressEvent, SampleResult, UpgradeStatus};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{
    driver::{Controls, Driver},
    journal::{CutoverRecord, Direction, Journal, JournalError, UpgradeRecord},
    metrics as m,
    plan::{Plan, PlanError},
    reverse::count_changes,
    routes::{CompileError, Routes},
    sample::{SampleError, sample},
    state::{Board, is_terminal, now_unix_ms},
};

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
}

struct Running {
    controls: Controls,
    task: JoinHandle<()>,
}

/// The migration engine.
pub struct Engine {
    board: Board,
    local: Option<Store>,
    running: Mutex<Option<Running>>,
    closing: CancellationToken,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("journal", self.board.journal())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the journal in `path` and resumes an interrupted upgrade. `local` is the store of
    /// the green node the engine runs in, if any. Must be called inside a tokio runtime.
    pub fn open(path: &Path, local: Option<Store>) -> Result<Arc<Self>, EngineError> {
        m::describe();
        let journal = Arc::new(Journal::open(path)?);
        let board = Board::load(journal)?;
        let engine = Arc::new(Self {
            board,
            local,
            running: Mutex::new(None),
            closing: CancellationToken::new(),
        });
        match engine.board.phase() {
            Phase::Unspecified
            | Phase::Idle
            | Phase::RolledBack
            | Phase::Aborted
            | Phase::Failed => {}
            phase => {
                let upgrade =
                    engine
                        .board
                        .journal()
                        .upgrade()?
                        .ok_or_else(|| JournalError::Corrupt {
                            path: format!("{}", path.display()),
                            what: "a phase but no upgrade".into(),
                        })?;
                tracing::info!(
                    upgrade_id = upgrade.id,
                    phase = m::phase_name(phase),
                    "resuming the upgrade from the journal"
                );
                engine.launch(upgrade);
            }
        }
        Ok(engine)
    }

    fn launch(&self, upgrade: UpgradeRecord) {
        let mut running = self.running.lock().expect("not poisoned");
        self.launch_locked(&mut running, upgrade);
    }

    fn launch_locked(&self, running: &mut Option<Running>, upgrade: UpgradeRecord) {
        if let Some(previous) = running.take() {
            // A driver still running here is in reverse sync of an earlier upgrade, which a
            // new start ends.
            previous.controls.cancel.cancel();
            previous.task.abort();
        }
        let controls = Controls {
            cancel: CancellationToken::new(),
            proceed: Arc::new(Notify::new()),
            wake: Arc::new(Notify::new()),
        };
        let driver = Driver {
            board: self.board.clone(),
            upgrade,
            controls: controls.clone(),
            local: self.local.clone(),
        };
        let task = tokio::spawn(driver.run());
        *running = Some(Running { controls, task });
    }

    /// Starts an upgrade from `plan_toml` (read from `plan_name`).
    pub fn start(
        &self,
        plan_toml: &str,
        plan_name: &str,
        rehearse: bool,
    ) -> Result<UpgradeStatus, EngineError> {
        let plan = Plan::parse(plan_name, plan_toml)?;
        compile(&plan, plan_name)?;
        let mut running = self.running.lock().expect("not poisoned");
        let phase = self.board.phase();
        if !is_terminal(phase) {
            return Err(EngineError::Busy {
                upgrade_id: self.status().upgrade_id,
                phase: m::phase_name(phase),
            });
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
        tracing::info!(
            upgrade_id = upgrade.id,
            plan = plan_name,
            rehearse,
            "upgrade started"
        );
        // The previous driver has ended (its phase is terminal); launch under the lock, so an
        // abort cannot slip in between and miss the new driver.
        self.launch_locked(&mut running, upgrade);
        drop(running);
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
        let plan = Plan::parse(plan_name, plan_toml)?;
        let routes = compile(&plan, plan_name)?;
        Ok(sample(&plan.blue.sources, &routes, per_collection).await?)
    }

    /// The current upgrade's status.
    pub fn status(&self) -> UpgradeStatus {
        self.board.current().status.unwrap_or_default()
    }

    /// Every change of status and progress, starting with the current one.
    pub fn watch(&self) -> watch::Receiver<ProgressEvent> {
        self.board.subscribe()
    }

    /// Fires when the engine shuts down (ends `Watch` streams).
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// Lets a POSTPONED upgrade cut over.
    pub fn proceed(&self) -> Result<UpgradeStatus, EngineError> {
        let phase = self.board.phase();
        if phase != Phase::Postponed {
            return Err(EngineError::WrongPhase {
                what: "proceed is for a postponed upgrade",
                phase: m::phase_name(phase),
            });
        }
        if let Some(running) = &*self.running.lock().expect("not poisoned") {
            running.controls.proceed.notify_one();
        }
        Ok(self.status())
    }

    /// Abandons an upgrade that has not committed: stops its driver, then journals ABORTING
    /// and lets a new driver undo what the cutover did (proxies resume on blue, blue is
    /// unfenced) and end in ABORTED.
    pub async fn abort(&self, reason: &str) -> Result<UpgradeStatus, EngineError> {
        let phase = self.board.phase();
        match phase {
            Phase::Aborted | Phase::Aborting => return Ok(self.status()),
            Phase::Idle | Phase::Unspecified | Phase::Failed => {
                return Err(EngineError::WrongPhase {
                    what: "abort needs an upgrade in progress",
                    phase: m::phase_name(phase),
                });
            }
            p if committed(p) => return Err(too_late(p)),
            _ => {}
        }
        let reason = if reason.is_empty() {
            "aborted by operator"
        } else {
            reason
        };
        let Some(upgrade) = self.board.journal().upgrade()? else {
            return Err(EngineError::WrongPhase {
                what: "abort needs an upgrade in progress",
                phase: m::phase_name(phase),
            });
        };
        // Stop the driver first, so nothing it journals can follow the abort.
        let previous = self.running.lock().expect("not poisoned").take();
        if let Some(previous) = previous {
            previous.controls.cancel.cancel();
            let _ = previous.task.await;
        }
        let mut running = self.running.lock().expect("not poisoned");
        let phase = self.board.phase();
        let same = self
            .board
            .journal()
            .upgrade()?
            .is_some_and(|u| u.id == upgrade.id);
        if !same || is_terminal(phase) {
            // It ended by itself meanwhile (and maybe another one started): nothing to abort.
            return Ok(self.status());
        }
        if committed(phase) {
            // The driver committed before it saw the cancel: it must go on.
            self.launch_locked(&mut running, upgrade);
            return Err(too_late(phase));
        }
        self.board.enter(Phase::Aborting, reason)?;
        self.launch_locked(&mut running, upgrade);
        drop(running);
        Ok(self.status())
    }

    /// Rolls a switched upgrade back to blue (see `Orchestrator.Rollback`): journals
    /// ROLLING_BACK and wakes the driver, which runs the reverse cutover.
    pub async fn rollback(
        &self,
        discard_green_writes: bool,
        confirmed: bool,
    ) -> Result<UpgradeStatus, EngineError> {
        let phase = self.board.phase();
        if !matches!(phase, Phase::Switched | Phase::ReverseSync) {
            return Err(EngineError::WrongPhase {
                what: "rollback is for a switched upgrade (SWITCHED or REVERSE_SYNC)",
                phase: m::phase_name(phase),
            });
        }
        let journal = self.board.journal();
        let upgrade = journal.upgrade()?.ok_or(EngineError::WrongPhase {
            what: "rollback needs an upgrade",
            phase: m::phase_name(phase),
        })?;
        let plan = Plan::parse(&upgrade.plan_name, &upgrade.plan_toml)?;
        let forward = journal.cutover()?.unwrap_or_default();
        let unreversible = plan.unreversible();
        let mut lost = 0;
        if !unreversible.is_empty() {
            lost = count_changes(&forward.reverse_from, &unreversible)
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
        // The count above awaited: check again, under the lock `start` takes too, that the
        // same upgrade is still switched, then move it with a conditional transition (the
        // driver's own SWITCHED → REVERSE_SYNC is conditional as well).
        let running = self.running.lock().expect("not poisoned");
        let phase = self.board.phase();
        let same = journal.upgrade()?.is_some_and(|u| u.id == upgrade.id);
        if !same || !matches!(phase, Phase::Switched | Phase::ReverseSync) {
            return Err(EngineError::WrongPhase {
                what: "rollback is for a switched upgrade (SWITCHED or REVERSE_SYNC)",
                phase: m::phase_name(phase),
            });
        }
        journal.set_cutover(&CutoverRecord {
            direction: Direction::Reverse,
            discard: discard_green_writes && lost > 0,
            reverse_from: forward.reverse_from,
            ..CutoverRecord::default()
        })?;
        let detail = if lost > 0 {
            format!("rolling back to blue; {lost} green writes discarded on request")
        } else {
            "rolling back to blue".to_owned()
        };
        self.board.transition(
            &[Phase::Switched, Phase::ReverseSync],
            Phase::RollingBack,
            &detail,
        )?;
        if let Some(running) = &*running {
            running.controls.wake.notify_one();
        }
        drop(running);
        Ok(self.status())
    }

    /// Whether `status` is the last a `Watch` stream sends: a terminal phase, or a rehearsal
    /// that has run its cutover and resumed.
    pub fn is_final(&self, status: &UpgradeStatus) -> bool {
        let phase = Phase::try_from(status.phase).unwrap_or(Phase::Idle);
        if is_terminal(phase) {
            return true;
        }
        phase == Phase::ReadyForCutover
            && matches!(self.board.journal().upgrade(), Ok(Some(u)) if u.rehearse)
            && matches!(self.board.journal().cutover(), Ok(Some(c)) if c.rehearsed)
    }

    /// Stops the running driver without ending the upgrade (the daemon is stopping); the
    /// journal keeps it for the next start.
    pub async fn shutdown(&self) {
        self.closing.cancel();
        let running = self.running.lock().expect("not poisoned").take();
        if let Some(running) = running {
            running.controls.cancel.cancel();
            let _ = running.task.await;
        }
    }
}

/// Whether an upgrade in `phase` has committed its cutover (abort no longer applies).
fn committed(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Committed
            | Phase::Switching
            | Phase::Switched
            | Phase::ReverseSync
            | Phase::RollingBack
            | Phase::RolledBack
    )
}

fn too_late(phase: Phase) -> EngineError {
    EngineError::WrongPhase {
        what: "abort is only possible before the cutover commits (use rollback)",
        phase: m::phase_name(phase),
    }
}

/// Compiles the plan's programs, both ways (a reverse program that does not compile would
/// otherwise surface only after the switch, in reverse sync); returns the forward routes.
fn compile(plan: &Plan, plan_name: &str) -> Result<Routes, PlanError> {
    let refused = |CompileError { field, message }| PlanError {
        file: plan_name.to_owned(),
        what: format!("{field}: the jq program does not compile: {message}"),
    };
    Routes::reverse(plan).map_err(refused)?;
    Routes::forward(plan).map_err(refused)
}
