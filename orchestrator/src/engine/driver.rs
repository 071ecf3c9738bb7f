//! The driver: runs one upgrade from the journal's phase to its end. [`Driver::drive`] is the
//! dispatch on the journaled phase: discovery, copy cycles with a threshold decision after
//! each, the cutover (`cutover.rs`), reverse sync and the rollback (`reverse.rs`), the undo
//! of an abort. Every step journals its phase before acting on it, so a restarted driver
//! picks up where the last one stopped: it undoes a cutover that had not committed and
//! finishes one that had.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cutover_node::store::Store;
use cutover_proto::v1::Phase;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    copy::{CopyContext, CopyError, copy},
    discover::{DiscoverError, Pair, discover},
    fleet::Fleet,
    journal::{CycleRecord, Direction, JournalError, UpgradeRecord},
    metrics as m,
    peer::PeerError,
    plan::Plan,
    routes::{Routes, Tally},
    state::{Board, now_unix_ms},
    threshold::{self, Cycle, Decision, Limits},
};

/// Failed attempts at one step (discovery, a cycle) before the upgrade fails.
const ATTEMPTS: u32 = 5;
/// Wait between delta cycles while nothing forces the pace (postponed, or blocked by dead
/// letters).
const IDLE_CYCLE_INTERVAL: Duration = Duration::from_secs(1);
/// Largest batch of a final cycle, which runs while clients wait.
const FINAL_BATCH_DOCUMENTS: u32 = 500;
/// Wait before a failed step of the cutover, reverse sync or rollback is tried again.
const STEP_RETRY: Duration = Duration::from_secs(1);
/// How often copy progress is published.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// What ended a driver early.
#[derive(Debug, thiserror::Error)]
pub(super) enum DriveError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("{0}")]
    Plan(String),
    #[error("cancelled")]
    Cancelled,
    /// A cutover or rollback step failed; the message says which and why.
    #[error("{0}")]
    Step(String),
    /// Verification found the two sides different.
    #[error("{0}")]
    Mismatch(String),
}

/// A running upgrade's handles.
#[derive(Debug, Clone)]
pub struct Controls {
    /// Fires on abort (and on shutdown, with `shutdown` set first).
    pub cancel: CancellationToken,
    /// Wakes a POSTPONED upgrade.
    pub proceed: Arc<Notify>,
    /// Wakes a driver that waits in REVERSE_SYNC (a rollback was asked for).
    pub wake: Arc<Notify>,
}

/// Everything a driver runs with.
#[derive(Debug)]
pub struct Driver {
    /// Shown status and journal.
    pub board: Board,
    /// The upgrade.
    pub upgrade: UpgradeRecord,
    /// Its controls.
    pub controls: Controls,
    /// The store of the node the engine runs in, if any.
    pub local: Option<Store>,
}

impl Driver {
    /// Runs the upgrade until it ends or is cancelled. An error before the cutover fails the
    /// upgrade (blue untouched); from the pause on, the step is retried from its journaled
    /// phase until it gets through, since only finishing or undoing it leaves the system as
    /// it should be.
    pub async fn run(self) {
        loop {
            let error = match self.drive().await {
                // Whoever cancelled (an abort, a shutdown) journals what comes next.
                Ok(()) | Err(DriveError::Cancelled) => return,
                Err(error) => error,
            };
            let phase = self.board.phase();
            if must_finish(phase) {
                tracing::warn!(%error, phase = m::phase_name(phase), "step failed; retrying");
                self.board.detail(format!("retrying after: {error}"));
                if self.pause(STEP_RETRY).await.is_err() {
                    return;
                }
                continue;
            }
            tracing::error!(%error, "upgrade failed");
            let failed = self.board.enter(
                Phase::Failed,
                &format!(
                    "{error}; blue was not changed: fix the cause and start the upgrade again"
                ),
            );
            if let Err(error) = failed {
                tracing::error!(%error, "cannot journal the end of the upgrade");
            }
            return;
        }
    }

    async fn drive(&self) -> Result<(), DriveError> {
        let plan = Plan::parse(&self.upgrade.plan_name, &self.upgrade.plan_toml)
            .map_err(|e| DriveError::Plan(e.to_string()))?;
        let fleet = Fleet::from_plan(&plan).map_err(DriveError::Plan)?;
        // What must be finished or undone comes first.
        if self.settle(&fleet).await? {
            return Ok(());
        }
        let routes = Arc::new(Routes::forward(&plan).map_err(|e| DriveError::Plan(e.to_string()))?);
        let pairs = self
            .attempt("discovery", || {
                discover(&plan, &fleet.green_token, self.local.as_ref())
            })
            .await?;
        let run = Run {
            plan,
            routes,
            pairs,
            fleet,
        };
        let mut attempts = 0u32;
        loop {
            match self.board.phase() {
                Phase::Discovering => self.board.enter(Phase::Cycling, "")?,
                Phase::Cycling | Phase::Postponed => self.converge(&run).await?,
                Phase::ReadyForCutover => {
                    if self.upgrade.rehearse
                        && self.board.journal().cutover()?.is_some_and(|c| c.rehearsed)
                    {
                        return Ok(());
                    }
                    attempts += 1;
                    self.cut_over(&run, attempts).await?;
                }
                Phase::Pausing
                | Phase::Fencing
                | Phase::FinalCycle
                | Phase::Verifying
                | Phase::Committed
                | Phase::Switching
                | Phase::Aborting => {
                    if self.settle(&run.fleet).await? {
                        return Ok(());
                    }
                }
                Phase::Switched => {
                    // Unless a rollback was asked for meanwhile.
                    self.board.transition(
                        &[Phase::Switched],
                        Phase::ReverseSync,
                        "green serves; its changes flow back to blue",
                    )?;
                }
                Phase::ReverseSync => self.reverse_sync(&run).await?,
                Phase::RollingBack => self.roll_back(&run).await?,
                Phase::Unspecified
                | Phase::Idle
                | Phase::RolledBack
                | Phase::Aborted
                | Phase::Failed => return Ok(()),
            }
        }
    }

    /// Finishes or undoes what a cutover, a rollback or an abort left part-way. Needs no
    /// discovery, so it never waits for a node that is down; returns whether the upgrade is
    /// over.
    async fn settle(&self, fleet: &Fleet) -> Result<bool, DriveError> {
        match self.board.phase() {
            Phase::Committed | Phase::Switching => self.switch_forward(fleet).await?,
            Phase::Aborting => {
                self.abort_cutover(fleet).await?;
                return Ok(true);
            }
            Phase::Pausing | Phase::Fencing | Phase::FinalCycle | Phase::Verifying => {
                self.undo_forward(fleet, "interrupted").await?;
                self.board.enter(
                    Phase::Cycling,
                    "a cutover was interrupted and undone; cycling again",
                )?;
            }
            Phase::RollingBack => self.settle_rollback(fleet).await?,
            _ => {}
        }
        Ok(false)
    }

    /// ABORTING: undoes whatever the cutover did, then ABORTED with the abort's reason.
    async fn abort_cutover(&self, fleet: &Fleet) -> Result<(), DriveError> {
        let why = self
            .board
            .journal()
            .phase()?
            .map(|p| p.reason)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "aborted by operator".to_owned());
        self.undo_forward(fleet, &why).await?;
        self.board.enter(Phase::Aborted, &why)?;
        Ok(())
    }

    /// Copy cycles until the threshold engine says the final cycle fits the pause budget
    /// (READY_FOR_CUTOVER) or gives up (ABORTED).
    async fn converge(&self, run: &Run) -> Result<(), DriveError> {
        let Run {
            plan,
            routes,
            pairs,
            ..
        } = run;
        let mut history: Vec<Cycle> = self
            .board
            .journal()
            .cycles()?
            .iter()
            .filter(|c| c.direction == Direction::Forward && !c.final_cycle)
            .map(|c| Cycle {
                documents: c.documents,
                duration: Duration::from_millis(c.duration_ms),
                pending_after: c.pending_after,
            })
            .collect();
        let limits = Limits {
            pause_budget: plan.pause_budget,
            max_cycles: plan.max_cycles,
            deadline: plan.deadline,
            switch_overhead: self.board.journal().switch_overhead()?,
        };
        // The pending count the last decision of this process was made on: the next cycle's
        // delta. Not a journaled cycle's: after a restart the watermarks may have moved past
        // it (an interrupted cycle), so the first cycle counts its own.
        let mut decided = None;
        loop {
            let phase = self.board.phase();
            if phase == Phase::Postponed {
                return self.postponed(run).await;
            }
            let record = self
                .cycle(
                    plan,
                    pairs,
                    routes,
                    self.next_cycle(Direction::Forward, false)?,
                    decided,
                )
                .await?;
            decided = Some(record.pending_after);
            history.push(Cycle {
                documents: record.documents,
                duration: Duration::from_millis(record.duration_ms),
                pending_after: record.pending_after,
            });
            let elapsed =
                Duration::from_millis(now_unix_ms().saturating_sub(self.upgrade.started_unix_ms));
            let assessment = threshold::assess(&limits, &history, elapsed);
            tracing::info!(decision = %assessment, "threshold");
            metrics::gauge!(m::PENDING).set(assessment.pending as f64);
            metrics::gauge!(m::PREDICTED).set(assessment.predicted_final.as_secs_f64());
            self.board.decision(&assessment);
            let dead = self.board.refresh_dead_letters()?;
            let blocked = dead > plan.allowed_transform_failures;
            match assessment.decision {
                Decision::AnotherCycle => {}
                Decision::CutoverReady if blocked => {
                    self.board.detail(format!(
                        "cutover blocked: {dead} documents failed to transform (the plan allows \
                         {}); see the dead letters, fix the program or the documents",
                        plan.allowed_transform_failures
                    ));
                    if history.len() as u32 >= plan.max_cycles {
                        return self.give_up(format!(
                            "{dead} documents failed to transform (allowed_transform_failures = \
                             {}) and {} cycles ran: see the dead letters in `cutover upgrade \
                             status`, fix the program or the documents, and start again",
                            plan.allowed_transform_failures, plan.max_cycles
                        ));
                    }
                    self.pause(IDLE_CYCLE_INTERVAL).await?;
                }
                Decision::CutoverReady if plan.postpone && !self.upgrade.rehearse => {
                    self.board.enter(
                        Phase::Postponed,
                        "at the threshold: `cutover upgrade proceed` cuts over; delta cycles go on",
                    )?;
                }
                Decision::CutoverReady => {
                    self.board
                        .enter(Phase::ReadyForCutover, &assessment.to_string())?;
                    return Ok(());
                }
                Decision::NotConverging { .. }
                | Decision::CycleLimit { .. }
                | Decision::DeadlineExceeded { .. } => {
                    return self.give_up(format!(
                        "{assessment}; blue was not changed: run the upgrade when blue writes \
                         less, or raise pause_budget / max_cycles / deadline"
                    ));
                }
            }
        }
    }

    fn give_up(&self, why: String) -> Result<(), DriveError> {
        self.board.enter(Phase::Aborted, &why)?;
        Ok(())
    }

    /// At the threshold, waiting for Proceed: small delta cycles keep the gap small.
    async fn postponed(&self, run: &Run) -> Result<(), DriveError> {
        let Run {
            plan,
            routes,
            pairs,
            ..
        } = run;
        loop {
            tokio::select! {
                () = self.controls.proceed.notified() => {
                    let dead = self.board.refresh_dead_letters()?;
                    if dead <= plan.allowed_transform_failures {
                        self.board.enter(Phase::ReadyForCutover, "proceed by operator")?;
                        return Ok(());
                    }
                    self.board.detail(format!(
                        "proceed refused: {dead} documents failed to transform (the plan allows \
                         {}); fix them on blue, the delta cycles carry the fix over",
                        plan.allowed_transform_failures
                    ));
                }
                () = self.controls.cancel.cancelled() => return Err(DriveError::Cancelled),
                () = tokio::time::sleep(IDLE_CYCLE_INTERVAL) => {}
            }
            let pending = self
                .attempt("measuring the delta", || self.pending(pairs))
                .await?;
            if pending > 0 {
                self.cycle(
                    plan,
                    pairs,
                    routes,
                    self.next_cycle(Direction::Forward, false)?,
                    Some(pending),
                )
                .await?;
                self.board.refresh_dead_letters()?;
            }
        }
    }

    pub(super) async fn pause(&self, how_long: Duration) -> Result<(), DriveError> {
        tokio::select! {
            () = self.controls.cancel.cancelled() => Err(DriveError::Cancelled),
            () = tokio::time::sleep(how_long) => Ok(()),
        }
    }

    /// Retries `step` on a node failure, with backoff, up to [`ATTEMPTS`] times.
    pub(super) async fn attempt<T, E, F>(
        &self,
        what: &str,
        mut step: impl FnMut() -> F,
    ) -> Result<T, DriveError>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<DriveError>,
    {
        let mut backoff = Duration::from_millis(200);
        for attempt in 1.. {
            let result = tokio::select! {
                result = step() => result,
                () = self.controls.cancel.cancelled() => return Err(DriveError::Cancelled),
            };
            match result.map_err(Into::into) {
                Ok(value) => return Ok(value),
                Err(error) if attempt >= ATTEMPTS || !error.retryable() => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, attempt, "{what} failed; retrying");
                    self.board.detail(format!(
                        "{what} failed (attempt {attempt} of {ATTEMPTS}): {error}"
                    ));
                    self.pause(backoff).await?;
                    backoff *= 2;
                }
            }
        }
        unreachable!("the loop returns")
    }

    pub(super) async fn pending(&self, pairs: &[Pair]) -> Result<u64, DriveError> {
        let mut pending = 0;
        for (pair, watermark) in pairs.iter().zip(self.watermarks(pairs)?) {
            pending += pair.source.lag(watermark).await?;
        }
        Ok(pending)
    }

    /// Each source's committed watermark, in `pairs`' order.
    fn watermarks(&self, pairs: &[Pair]) -> Result<Vec<u64>, DriveError> {
        pairs
            .iter()
            .map(|pair| Ok(self.board.journal().watermark(&pair.source_id)?))
            .collect()
    }

    /// What a cycle from `watermarks` (one per pair) is to copy, for its progress: a source's
    /// changes after its watermark, or, from 0, its live documents (the same less its
    /// tombstones, from its counters, where counting its changes walks every document).
    async fn expected(&self, pairs: &[Pair], watermarks: &[u64]) -> Result<u64, DriveError> {
        let mut expected = 0;
        for (pair, &watermark) in pairs.iter().zip(watermarks) {
            expected += if watermark == 0 {
                let described = pair.source.describe().await?;
                described.collections.iter().map(|c| c.live_documents).sum()
            } else {
                pair.source.lag(watermark).await?
            };
        }
        Ok(expected)
    }

    /// The next cycle's record, still empty: its number follows every journaled cycle.
    pub(super) fn next_cycle(
        &self,
        direction: Direction,
        final_cycle: bool,
    ) -> Result<CycleRecord, DriveError> {
        let last = self.board.journal().cycles()?.last().map_or(0, |c| c.cycle);
        Ok(CycleRecord {
            cycle: last + 1,
            final_cycle,
            direction,
            ..CycleRecord::default()
        })
    }

    /// Runs a cycle on every pair at once and journals its record: `into`'s figures plus this
    /// cycle's, under `into`'s number, direction and finality. `into` is an empty record
    /// ([`next_cycle`](Self::next_cycle)) for a new cycle, or reverse sync's running totals.
    /// `pending` is the delta the caller just measured, shown as the cycle's expected count;
    /// without it, the cycle estimates its own while it copies.
    pub(super) async fn cycle(
        &self,
        plan: &Plan,
        pairs: &[Pair],
        routes: &Arc<Routes>,
        into: CycleRecord,
        pending: Option<u64>,
    ) -> Result<CycleRecord, DriveError> {
        let number = into.cycle;
        let batch_documents = if into.final_cycle {
            // Under the hold, small batches keep pull, transform and apply overlapped from
            // the first document to the last (measured: 12K documents in 75 ms instead of 93).
            plan.batch_documents.min(FINAL_BATCH_DOCUMENTS)
        } else {
            plan.batch_documents
        };
        let started = Instant::now();
        // Estimated while the copy runs, not before it: counting the delta walks blue's
        // change index after the watermark (measured: 2M documents, 0.4 s of a core before
        // cycle 1 pulled its first batch, and a core shared with the copy all through it).
        let watermarks = self.watermarks(pairs)?;
        let expected = Arc::new(AtomicU64::new(pending.unwrap_or(0)));
        let progress = Arc::new(AtomicU64::new(0));
        let reporter = self.report(number, Arc::clone(&expected), Arc::clone(&progress));
        let count = async {
            if let Some(pending) = pending {
                return Ok(pending);
            }
            let estimate = self
                .attempt("estimating the delta", || self.expected(pairs, &watermarks))
                .await?;
            expected.store(estimate, Ordering::Relaxed);
            Ok::<_, DriveError>(estimate)
        };
        let what = format!("cycle {number}");
        let copy = self.attempt(&what, || {
            progress.store(0, Ordering::Relaxed);
            let batches = (batch_documents, plan.batch_bytes);
            self.copy_all(batches, pairs, routes, into.direction, &progress)
        });
        let result = tokio::try_join!(count, copy);
        reporter.abort();
        let _ = reporter.await;
        let (expected, tally) = result?;
        self.board
            .progress(number, tally.documents, expected.max(tally.documents), 0.0);
        let pending_after = self
            .attempt("measuring the delta", || self.pending(pairs))
            .await?;
        let duration_ms = started.elapsed().as_millis() as u64;
        let record = CycleRecord {
            documents: into.documents + tally.documents,
            bytes: into.bytes + tally.bytes,
            tombstones: into.tombstones + tally.tombstones,
            dropped: into.dropped + tally.dropped,
            failed: into.failed + tally.failed,
            duration_ms: into.duration_ms + duration_ms,
            pending_after,
            ..into
        };
        self.board.journal().record_cycle(&record)?;
        metrics::counter!(m::CYCLES).increment(1);
        metrics::histogram!(m::CYCLE_DURATION).record(started.elapsed().as_secs_f64());
        // Reverse sync runs a small cycle every few hundred milliseconds: those are debug.
        let level_info = record.direction == Direction::Forward || record.final_cycle;
        macro_rules! cycle_done {
            ($level:ident) => {
                tracing::$level!(
                    cycle = number,
                    documents = tally.documents,
                    bytes = tally.bytes,
                    tombstones = tally.tombstones,
                    dropped = tally.dropped,
                    failed = tally.failed,
                    duration_ms,
                    pending_after,
                    direction = record.direction.as_str(),
                    final_cycle = record.final_cycle,
                    "cycle done"
                )
            };
        }
        if level_info {
            cycle_done!(info);
        } else {
            cycle_done!(debug);
        }
        self.board.cycle(&record);
        Ok(record)
    }

    /// One attempt at copying every pair at once. On an error the other copies are stopped
    /// and awaited; a journal write already under way may still land, which is harmless: it
    /// records batches the sink acknowledged, and the journal refuses it once another upgrade
    /// has begun.
    async fn copy_all(
        &self,
        (batch_documents, batch_bytes): (u32, u64),
        pairs: &[Pair],
        routes: &Arc<Routes>,
        direction: Direction,
        progress: &Arc<AtomicU64>,
    ) -> Result<Tally, DriveError> {
        // Read per attempt: an attempt that failed may have recorded dead letters.
        let problems = Arc::new(self.problems(direction)?);
        let mut copies = tokio::task::JoinSet::new();
        for pair in pairs {
            let pair = pair.clone();
            let context = CopyContext {
                journal: Arc::clone(self.board.journal()),
                upgrade_id: self.upgrade.id.clone(),
                source_id: pair.source_id.clone(),
                direction,
                routes: Arc::clone(routes),
                problems: Arc::clone(&problems),
                batch_documents,
                batch_bytes,
                progress: Arc::clone(progress),
            };
            copies.spawn(async move {
                let since = context.journal.watermark(&pair.source_id)?;
                copy(&pair.source, &pair.sink, since, &context).await
            });
        }
        let mut tally = Tally::default();
        let mut failure = None;
        while let Some(joined) = copies.join_next().await {
            match joined {
                Ok(Ok(copied)) => tally.add(&copied),
                Ok(Err(error)) => {
                    if failure.is_none() {
                        failure = Some(DriveError::from(error));
                        copies.abort_all();
                    }
                }
                Err(join) if join.is_cancelled() => {}
                Err(join) => std::panic::resume_unwind(join.into_panic()),
            }
        }
        failure.map_or(Ok(tally), Err)
    }

    /// Keys that are dead letters or drops in the journal.
    fn problems(&self, direction: Direction) -> Result<HashSet<(String, String)>, JournalError> {
        let journal = self.board.journal();
        let mut keys: HashSet<_> = journal
            .dead_letters_of(direction)?
            .into_iter()
            .map(|d| (d.collection, d.id))
            .collect();
        keys.extend(
            journal
                .dropped_of(direction)?
                .into_iter()
                .map(|(c, id, _)| (c, id)),
        );
        Ok(keys)
    }

    /// Publishes copy progress until aborted.
    fn report(
        &self,
        number: u32,
        expected: Arc<AtomicU64>,
        progress: Arc<AtomicU64>,
    ) -> tokio::task::JoinHandle<()> {
        let board = self.board.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
            loop {
                tick.tick().await;
                let copied = progress.load(Ordering::Relaxed);
                let rate = copied as f64 / started.elapsed().as_secs_f64().max(1e-3);
                board.progress(number, copied, expected.load(Ordering::Relaxed), rate);
            }
        })
    }
}

/// Whether a driver stopped by an error in `phase` must try again rather than fail: from the
/// pause on, blue (or green) may be fenced or proxies holding, and only finishing or undoing
/// the step puts that right.
fn must_finish(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Pausing
            | Phase::Fencing
            | Phase::FinalCycle
            | Phase::Verifying
            | Phase::Committed
            | Phase::Switching
            | Phase::Switched
            | Phase::ReverseSync
            | Phase::RollingBack
            | Phase::Aborting
    )
}

impl DriveError {
    /// Whether another attempt may succeed (a node unreachable, a stream broken), as opposed
    /// to an error that would come back the same way.
    fn retryable(&self) -> bool {
        match self {
            Self::Copy(CopyError::Peer(peer)) | Self::Peer(peer) => transient(&peer.status),
            Self::Discover(DiscoverError::Peer(peer)) => transient(&peer.status),
            Self::Copy(CopyError::PullBroken { .. } | CopyError::ApplyBroken { .. }) => true,
            Self::Copy(CopyError::Journal(_))
            | Self::Journal(_)
            | Self::Discover(DiscoverError::Mismatch(_))
            | Self::Plan(_)
            | Self::Step(_)
            | Self::Mismatch(_)
            | Self::Cancelled => false,
        }
    }
}

fn transient(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

/// What a running upgrade works with, found once per driver.
#[derive(Debug)]
pub(super) struct Run {
    /// The plan.
    pub plan: Plan,
    /// Its forward transforms.
    pub routes: Arc<Routes>,
    /// Blue → green pipelines.
    pub pairs: Vec<Pair>,
    /// The proxies and the nodes' fences.
    pub fleet: Fleet,
}
