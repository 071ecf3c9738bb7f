//! The per-cycle work: one copy cycle on every pipeline at once (copy, pending, watermarks,
//! progress report, the journaled record), and the two states that run them, CYCLING (with a
//! threshold decision after each cycle) and POSTPONED (delta cycles while the operator
//! decides).

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use tokio_util::task::AbortOnDropHandle;

use super::{
    board::now_unix_ms,
    copy::{Commit, CopyContext},
    driver::{Driver, FIRST_BACKOFF, MAX_BACKOFF},
    error::DriveError,
    journal::{CycleRecord, Direction, Journal, JournalError, Link, PipelineCycle},
    machine::Verdict,
    metrics as m,
    pipelines::{Doing, Tracker},
    routes::{Routes, Tally},
    threshold::{self, Cycle, Decision, Limits},
    world::Pipeline,
};

/// Wait between delta cycles while nothing forces the pace (postponed, or blocked by dead
/// letters).
const IDLE_CYCLE_INTERVAL: Duration = Duration::from_secs(1);
/// Largest batch of a final cycle, which runs while clients wait.
const FINAL_BATCH_DOCUMENTS: u32 = 500;
/// How often copy progress is published.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

impl Driver {
    /// CYCLING: one copy cycle, then the threshold engine's verdict.
    pub(super) async fn converge(&self) -> Result<Verdict, DriveError> {
        let run = self.discovered().await?;
        let plan = &self.plan;
        let journal = self.board.journal();
        let limits = Limits {
            pause_budget: plan.pause_budget,
            max_cycles: plan.max_cycles,
            deadline: plan.deadline,
            switch_overhead: journal.switch_overhead()?,
        };
        // The pending count the last decision of this process was made on is the next
        // cycle's delta. Not a journaled cycle's: after a restart the watermarks may have
        // moved past it (an interrupted cycle), so the first cycle counts its own.
        let decided = *self.decided.lock().expect("not poisoned");
        let into = self.next_cycle(Direction::Forward, false)?;
        let record = match self.cycle(&run.pairs, &run.routes, into, decided).await {
            // The deadline is the threshold engine's to enforce: it gives up, blue unchanged.
            Err(error @ DriveError::PastDeadline { .. }) => {
                return Ok(Verdict::GiveUp {
                    reason: format!(
                        "{error}; blue was not changed: bring the node back and start again, or \
                         raise the deadline"
                    ),
                });
            }
            record => record?,
        };
        *self.decided.lock().expect("not poisoned") = Some(record.pending_after);
        let cycles: Vec<CycleRecord> = journal
            .cycles()?
            .into_iter()
            .filter(|c| c.direction == Direction::Forward && !c.final_cycle)
            .collect();
        let elapsed =
            Duration::from_millis(now_unix_ms().saturating_sub(self.upgrade.started_unix_ms));
        let assessment = threshold::assess_slowest(&limits, &histories(&cycles), elapsed);
        tracing::info!(decision = %assessment, "threshold");
        *self.assessment.lock().expect("not poisoned") = Some(assessment.to_string());
        metrics::gauge!(m::PENDING).set(record.pending_after as f64);
        metrics::gauge!(m::PREDICTED).set(assessment.predicted_final.as_secs_f64());
        *self.predicted.lock().expect("not poisoned") = Some(assessment.predicted_cycle());
        self.board.decision(&assessment);
        let dead = self.board.refresh_dead_letters()?;
        let allowed = plan.allowed_transform_failures;
        Ok(match assessment.decision {
            Decision::AnotherCycle => Verdict::Again,
            Decision::CutoverReady if dead > allowed => {
                if cycles.len() as u32 >= plan.max_cycles {
                    return Ok(Verdict::GiveUp {
                        reason: format!(
                            "{dead} documents failed to transform (allowed_transform_failures = \
                             {allowed}) and {} cycles ran: see the dead letters in `cutover \
                             upgrade status`, fix the program or the documents, and start again",
                            plan.max_cycles
                        ),
                    });
                }
                self.board.detail(format!(
                    "cutover blocked: {dead} documents failed to transform (the plan allows \
                     {allowed}); see the dead letters, fix the program or the documents"
                ));
                tokio::time::sleep(IDLE_CYCLE_INTERVAL).await;
                Verdict::Again
            }
            Decision::CutoverReady if plan.postpone && !self.upgrade.rehearse => Verdict::Postpone,
            Decision::CutoverReady => Verdict::Ready {
                rehearse: self.upgrade.rehearse,
            },
            Decision::NotConverging { .. }
            | Decision::CycleLimit { .. }
            | Decision::DeadlineExceeded { .. } => Verdict::GiveUp {
                reason: format!(
                    "{assessment}; blue was not changed: run the upgrade when blue writes less, \
                     or raise pause_budget / max_cycles / deadline"
                ),
            },
        })
    }

    /// POSTPONED: at the threshold, waiting for proceed; a small delta cycle each second
    /// keeps the gap small.
    pub(super) async fn postponed(&self) -> Result<Verdict, DriveError> {
        tokio::time::sleep(IDLE_CYCLE_INTERVAL).await;
        let run = self.discovered().await?;
        // A node that does not answer makes the delta unknown: the cycle's pipelines wait
        // for it (the status says which), the others copy.
        let pending = match self.pending(&run.pairs).await {
            Ok(pending) => Some(pending),
            Err(error) if error.retryable() => None,
            Err(error) => return Err(error),
        };
        if pending != Some(0) {
            let into = self.next_cycle(Direction::Forward, false)?;
            self.cycle(&run.pairs, &run.routes, into, pending).await?;
            self.board.refresh_dead_letters()?;
        }
        Ok(Verdict::Again)
    }

    /// Changes after the committed watermarks, over every pipeline.
    pub(super) async fn pending(&self, pairs: &[Arc<dyn Pipeline>]) -> Result<u64, DriveError> {
        let watermarks = self.watermarks(pairs)?;
        Ok(self
            .pending_each(pairs, &watermarks, false)
            .await?
            .iter()
            .sum())
    }

    /// Changes after each of `watermarks` (one per pipeline, in `pairs`' order). With `wait`,
    /// a source that does not answer is asked again, backing off, until it does.
    async fn pending_each(
        &self,
        pairs: &[Arc<dyn Pipeline>],
        watermarks: &[u64],
        wait: bool,
    ) -> Result<Vec<u64>, DriveError> {
        let deadline = self.deadline();
        let lags = pairs
            .iter()
            .zip(watermarks)
            .map(|(pair, &watermark)| async move {
                let mut backoff = FIRST_BACKOFF;
                loop {
                    let error = match pair.lag(watermark).await {
                        Ok(pending) => return Ok(pending),
                        Err(error) => DriveError::call("measuring the delta")(error),
                    };
                    if !wait || !error.retryable() {
                        return Err(error);
                    }
                    let error = past_deadline(deadline, backoff, pair.link(), error)?;
                    tracing::warn!(pipeline = %pair.link(), %error, "waiting for the source");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            });
        futures_util::future::try_join_all(lags).await
    }

    /// When the plan's deadline passes, on this process's clock, and the deadline.
    fn deadline(&self) -> Option<(Instant, Duration)> {
        self.plan.deadline.map(|d| {
            let started = Duration::from_millis(self.upgrade.started_unix_ms);
            let now = Duration::from_millis(now_unix_ms());
            (Instant::now() + (started + d).saturating_sub(now), d)
        })
    }

    /// Each pipeline's committed watermark, in `pairs`' order.
    pub(super) fn watermarks(&self, pairs: &[Arc<dyn Pipeline>]) -> Result<Vec<u64>, DriveError> {
        pairs
            .iter()
            .map(|pair| Ok(self.board.journal().watermark(pair.link())?))
            .collect()
    }

    /// What a cycle from `watermarks` (one per pair) is to copy, for its progress: a
    /// pipeline's changes after its watermark, or, from 0, the live documents of its
    /// partitions (the same less its tombstones, from the source's counters, where counting
    /// its changes walks every document). A source that does not answer counts for nothing:
    /// its pipeline waits for it.
    async fn expected(&self, pairs: &[Arc<dyn Pipeline>], watermarks: &[u64]) -> u64 {
        let counts = pairs
            .iter()
            .zip(watermarks)
            .map(|(pair, &watermark)| async move {
                if watermark == 0 {
                    pair.live_documents().await
                } else {
                    pair.lag(watermark).await
                }
                .unwrap_or(0)
            });
        futures_util::future::join_all(counts).await.iter().sum()
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

    /// Runs a cycle on every pipeline at once and journals its record: `into`'s figures plus
    /// this cycle's, under `into`'s number, direction and finality. `into` is an empty record
    /// ([`next_cycle`](Self::next_cycle)) for a new cycle, or reverse sync's running totals.
    /// `pending` is the delta the caller just measured, shown as the cycle's expected count;
    /// without it, the cycle estimates its own while it copies.
    pub(super) async fn cycle(
        &self,
        pairs: &[Arc<dyn Pipeline>],
        routes: &Arc<Routes>,
        into: CycleRecord,
        pending: Option<u64>,
    ) -> Result<CycleRecord, DriveError> {
        let number = into.cycle;
        let batch_documents = if into.final_cycle {
            // Under the hold, small batches keep pull, transform and apply overlapped from
            // the first document to the last (measured: 12K documents in 75 ms instead of 93).
            self.plan.batch_documents.min(FINAL_BATCH_DOCUMENTS)
        } else {
            self.plan.batch_documents
        };
        let started = Instant::now();
        // Estimated while the copy runs, not before it: counting the delta walks blue's
        // change index after the watermark (measured: 2M documents, 0.4 s of a core before
        // cycle 1 pulled its first batch, and a core shared with the copy all through it).
        let watermarks = self.watermarks(pairs)?;
        let tracker = Arc::new(Tracker::new(pairs, &watermarks));
        let expected = Arc::new(AtomicU64::new(pending.unwrap_or(0)));
        // Aborted when dropped: a command may drop this cycle part-way.
        let reporter = AbortOnDropHandle::new(self.report(number, Arc::clone(&expected), &tracker));
        let count = async {
            if let Some(pending) = pending {
                return Ok(pending);
            }
            let estimate = self.expected(pairs, &watermarks).await;
            expected.store(estimate, Ordering::Relaxed);
            Ok::<_, DriveError>(estimate)
        };
        let what = format!("cycle {number}");
        let copy = self.attempt(&what, || {
            let batches = (batch_documents, self.plan.batch_bytes);
            let how = (into.direction, !into.final_cycle);
            self.copy_all(batches, pairs, routes, how, &tracker)
        });
        let result = tokio::try_join!(count, copy);
        drop(reporter);
        let (expected, tallies) = result?;
        let mut tally = Tally::default();
        for copied in &tallies {
            tally.add(copied);
        }
        self.board
            .progress(number, tally.documents, expected.max(tally.documents), 0.0);
        let wait = !into.final_cycle;
        let reached = self.watermarks(pairs)?;
        let pending_each = self
            .attempt("measuring the delta", || {
                self.pending_each(pairs, &reached, wait)
            })
            .await?;
        tracker.settle(&reached, &pending_each);
        self.board.pipelines(tracker.statuses());
        let duration_ms = started.elapsed().as_millis() as u64;
        let mut pipelines = into.pipelines.clone();
        for (i, (pair, copied)) in pairs.iter().zip(&tallies).enumerate() {
            let (_, took) = tracker.figures(i);
            let share = PipelineCycle {
                link: pair.link().clone(),
                documents: copied.documents,
                duration_ms: took.as_millis() as u64,
                pending_after: pending_each[i],
            };
            match pipelines.iter_mut().find(|p| p.link == share.link) {
                Some(sum) => {
                    sum.documents += share.documents;
                    sum.duration_ms += share.duration_ms;
                    sum.pending_after = share.pending_after;
                }
                None => pipelines.push(share),
            }
        }
        let record = CycleRecord {
            documents: into.documents + tally.documents,
            bytes: into.bytes + tally.bytes,
            tombstones: into.tombstones + tally.tombstones,
            dropped: into.dropped + tally.dropped,
            failed: into.failed + tally.failed,
            duration_ms: into.duration_ms + duration_ms,
            pending_after: pending_each.iter().sum(),
            pipelines,
            ..into
        };
        self.board.journal().record_cycle(&record)?;
        metrics::counter!(m::CYCLES).increment(1);
        metrics::histogram!(m::CYCLE_DURATION).record(started.elapsed().as_secs_f64());
        if record.direction == Direction::Forward {
            // Against the last decision's prediction: made for the cycle right after it, it
            // also stands for the small delta cycles while postponed and for the final cycle.
            let predicted = *self.predicted.lock().expect("not poisoned");
            m::cycle_timed(started.elapsed(), predicted);
        }
        log_cycle(&record, &tally, duration_ms);
        self.board.cycle(&record);
        Ok(record)
    }

    /// One attempt at copying every pipeline at once, at most `parallel_pipelines` of them
    /// at a time; each one's counts, in `pairs`' order. With `wait` (every cycle but a final
    /// one, which runs while clients wait), a pipeline whose node does not answer retries
    /// from its watermark with backoff while the others go on, until the node is back or the
    /// plan's deadline passes; otherwise, and on an error that would fail again, the other
    /// copies are stopped and awaited. A journal write already under way may still land,
    /// which is harmless: it records batches the sink acknowledged, and the journal refuses
    /// it once another upgrade has begun.
    async fn copy_all(
        &self,
        (batch_documents, batch_bytes): (u32, u64),
        pairs: &[Arc<dyn Pipeline>],
        routes: &Arc<Routes>,
        (direction, wait): (Direction, bool),
        tracker: &Arc<Tracker>,
    ) -> Result<Vec<Tally>, DriveError> {
        // A final cycle runs every pipeline at once: it lasts as long as the slowest, which is
        // what the threshold engine predicted.
        let at_once = match self.plan.parallel_pipelines {
            n if n == 0 || !wait => pairs.len(),
            n => n as usize,
        };
        let permits = Arc::new(Semaphore::new(at_once.max(1)));
        let deadline = self.deadline();
        let journal = Arc::clone(self.board.journal());
        let known = Arc::new(problems(&journal, direction)?);
        let mut copies = tokio::task::JoinSet::new();
        for (i, pair) in pairs.iter().enumerate() {
            let pair = Arc::clone(pair);
            let journal = Arc::clone(&journal);
            let mut context = CopyContext {
                commit: Commit::Journal {
                    journal: Arc::clone(&journal),
                    upgrade_id: self.upgrade.id.clone(),
                },
                link: pair.link().clone(),
                direction,
                routes: Arc::clone(routes),
                problems: Arc::clone(&known),
                batch_documents,
                batch_bytes,
                progress: tracker.counter(i),
            };
            let (tracker, permits) = (Arc::clone(tracker), Arc::clone(&permits));
            copies.spawn(async move {
                let mut tally = Tally::default();
                let mut backoff = FIRST_BACKOFF;
                let mut retry = false;
                loop {
                    let permit = permits.acquire().await.expect("never closed");
                    let started = Instant::now();
                    tracker.set(i, Doing::Copying, String::new());
                    let since = journal.watermark(pair.link())?;
                    // Read again on a retry: the attempt that failed may have recorded dead
                    // letters or drops, which a success now must clear.
                    if retry {
                        context.problems = Arc::new(problems(&journal, direction)?);
                    }
                    retry = true;
                    let error = match pair.copy(since, &context).await {
                        Ok(copied) => {
                            tally.add(&copied);
                            tracker.done(i, started.elapsed());
                            return Ok((i, tally));
                        }
                        Err(error) => DriveError::from(error),
                    };
                    drop(permit);
                    if !wait || !error.retryable() {
                        return Err(error);
                    }
                    let error = past_deadline(deadline, backoff, pair.link(), error)?;
                    tracing::warn!(
                        pipeline = %pair.link(),
                        %error,
                        retry_in_ms = backoff.as_millis() as u64,
                        "pipeline failed; retrying from its watermark, the others go on"
                    );
                    tracker.set(i, Doing::Waiting, error.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            });
        }
        let mut tallies = vec![Tally::default(); pairs.len()];
        let mut failure = None;
        while let Some(joined) = copies.join_next().await {
            match joined {
                Ok(Ok((i, copied))) => tallies[i] = copied,
                Ok(Err(error)) => {
                    if failure.is_none() {
                        failure = Some(error);
                        copies.abort_all();
                    }
                }
                Err(join) if join.is_cancelled() => {}
                Err(join) => std::panic::resume_unwind(join.into_panic()),
            }
        }
        failure.map_or(Ok(tallies), Err)
    }

    /// Publishes copy progress, the cycle's and each pipeline's, until aborted.
    fn report(
        &self,
        number: u32,
        expected: Arc<AtomicU64>,
        tracker: &Arc<Tracker>,
    ) -> tokio::task::JoinHandle<()> {
        let board = self.board.clone();
        let tracker = Arc::clone(tracker);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
            loop {
                tick.tick().await;
                let copied = tracker.copied();
                let rate = copied as f64 / started.elapsed().as_secs_f64().max(1e-3);
                board.progress(number, copied, expected.load(Ordering::Relaxed), rate);
                board.pipelines(tracker.statuses());
            }
        })
    }
}

/// `error`, for a pipeline to wait on for `backoff` more; [`DriveError::PastDeadline`] when
/// that would take it past `deadline`.
fn past_deadline(
    deadline: Option<(Instant, Duration)>,
    backoff: Duration,
    link: &Link,
    error: DriveError,
) -> Result<DriveError, DriveError> {
    match deadline {
        Some((at, deadline)) if Instant::now() + backoff >= at => Err(DriveError::PastDeadline {
            deadline,
            pipeline: link.to_string(),
            error: Box::new(error),
        }),
        _ => Ok(error),
    }
}

/// Keys that are dead letters or drops in `journal`.
fn problems(
    journal: &Journal,
    direction: Direction,
) -> Result<HashSet<(String, String)>, JournalError> {
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

/// Each pipeline's history, from the cycles that journaled their pipelines' shares (those
/// of a journal from before clusters did not: then the cycles' totals are one history).
fn histories(cycles: &[CycleRecord]) -> Vec<Vec<Cycle>> {
    let mut histories: Vec<(&Link, Vec<Cycle>)> = Vec::new();
    for share in cycles.iter().flat_map(|c| &c.pipelines) {
        let cycle = Cycle {
            documents: share.documents,
            duration: Duration::from_millis(share.duration_ms),
            pending_after: share.pending_after,
        };
        match histories.iter_mut().find(|(link, _)| *link == &share.link) {
            Some((_, history)) => history.push(cycle),
            None => histories.push((&share.link, vec![cycle])),
        }
    }
    if histories.is_empty() {
        let totals = cycles.iter().map(|c| Cycle {
            documents: c.documents,
            duration: Duration::from_millis(c.duration_ms),
            pending_after: c.pending_after,
        });
        return vec![totals.collect()];
    }
    histories.into_iter().map(|(_, history)| history).collect()
}

/// One line per finished cycle: at `info` for forward and final cycles, at `debug` for
/// reverse sync's small cycles every few hundred milliseconds.
fn log_cycle(record: &CycleRecord, tally: &Tally, duration_ms: u64) {
    macro_rules! cycle_done {
        ($level:ident) => {
            tracing::$level!(
                cycle = record.cycle,
                documents = tally.documents,
                bytes = tally.bytes,
                tombstones = tally.tombstones,
                dropped = tally.dropped,
                failed = tally.failed,
                duration_ms,
                pending_after = record.pending_after,
                direction = record.direction.as_str(),
                final_cycle = record.final_cycle,
                "cycle done"
            )
        };
    }
    if record.direction == Direction::Forward || record.final_cycle {
        cycle_done!(info);
    } else {
        cycle_done!(debug);
    }
}
