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
    journal::{Journal, JournalError, UpgradeRecord},
    metrics as m,
    plan::{Plan, PlanError},
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
            Phase::Discovering | Phase::Cycling | Phase::Postponed => {
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
                    "resuming the upgrade from the journal"
                );
                engine.launch(upgrade);
            }
            Phase::Aborting => engine.board.enter(Phase::Aborted, "aborted by operator")?,
            _ => {}
        }
        Ok(engine)
    }

    fn launch(&self, upgrade: UpgradeRecord) {
        let mut running = self.running.lock().expect("not poisoned");
        self.launch_locked(&mut running, upgrade);
    }

    fn launch_locked(&self, running: &mut Option<Running>, upgrade: UpgradeRecord) {
        let controls = Controls {
            cancel: CancellationToken::new(),
            proceed: Arc::new(Notify::new()),
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

    /// Abandons an upgrade that has not committed: stops its driver, then journals ABORTED.
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
            p if p as i32 >= Phase::Committed as i32 => {
                return Err(EngineError::WrongPhase {
                    what: "abort is only possible before the cutover commits (use rollback)",
                    phase: m::phase_name(phase),
                });
            }
            _ => {}
        }
        let reason = if reason.is_empty() {
            "aborted by operator"
        } else {
            reason
        };
        // Stop the driver first, so nothing it journals can follow the abort.
        let running = self.running.lock().expect("not poisoned").take();
        if let Some(running) = running {
            running.controls.cancel.cancel();
            let _ = running.task.await;
        }
        self.board.enter(Phase::Aborted, reason)?;
        Ok(self.status())
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

fn compile(plan: &Plan, plan_name: &str) -> Result<Routes, PlanError> {
    Routes::forward(plan).map_err(|CompileError { field, message }| PlanError {
        file: plan_name.to_owned(),
        what: format!("{field}: the jq program does not compile: {message}"),
    })
}
