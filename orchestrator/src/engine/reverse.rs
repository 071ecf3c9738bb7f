//! After the switch: reverse sync (green's changes flow back to blue, through the reverse
//! programs, while blue stays fenced to clients) and the rollback, the same protocol as the
//! cutover in the other direction: pause → fence green → final reverse cycle → verify →
//! commit → unfence blue → switch every proxy to blue.

use std::{sync::Arc, time::Duration};

use cutover_proto::v1::{Color, Phase, pull_response::Kind};

use super::{
    cutover::{all_proxies_paused, fence_all, fence_for_good, take_epoch},
    discover::Pair,
    driver::{DriveError, Driver, Run},
    fleet::Fleet,
    journal::{CutoverRecord, Direction, Hold},
    metrics as m,
    peer::{PeerError, SinkPeer, SourcePeer},
    routes::Routes,
    verify::{self, Allowances},
};

/// How often reverse sync looks for green's changes.
const REVERSE_INTERVAL: Duration = Duration::from_millis(200);

/// Green → blue pipelines: each green node feeds the blue node it was copied from. `None`
/// when several blue nodes fed one green node (green's documents cannot be told apart).
fn reverse_pairs(run: &Run) -> Result<Option<Vec<Pair>>, DriveError> {
    if run.fleet.blue.len() > 1 && run.fleet.green.len() == 1 {
        return Ok(None);
    }
    run.pairs
        .iter()
        .map(|pair| {
            Ok(Pair {
                source: SourcePeer::new(pair.sink.endpoint()).map_err(DriveError::Plan)?,
                source_id: pair.sink_id.clone(),
                sink: SinkPeer::remote(&pair.source.endpoint, run.fleet.blue_token.clone())
                    .map_err(DriveError::Plan)?,
                sink_id: pair.source_id.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Documents changed on green since `since` (per endpoint) in `collections`: the green writes
/// a rollback without their reverse programs would lose. One pull of green's changes since
/// the switch, O(changes).
pub async fn count_changes(
    since: &[(String, u64)],
    collections: &[String],
) -> Result<u64, PeerError> {
    let mut count = 0;
    for (endpoint, from) in since {
        let source = SourcePeer::new(endpoint)
            .map_err(|e| PeerError::at(endpoint, "Pull")(tonic::Status::invalid_argument(e)))?;
        let mut stream = source.pull(*from, 0, 0).await?;
        while let Some(message) = stream
            .message()
            .await
            .map_err(PeerError::at(endpoint, "Pull"))?
        {
            if let Some(Kind::Batch(batch)) = message.kind {
                count += batch
                    .documents
                    .iter()
                    .filter(|d| collections.contains(&d.collection))
                    .count() as u64;
            }
        }
    }
    Ok(count)
}

impl Driver {
    /// Copies green's changes back to blue until the phase changes (a rollback) or the driver
    /// is cancelled. Reverse sync accumulates into one cycle record; a node that does not
    /// answer is retried, never failing the upgrade: green serves either way.
    pub(super) async fn reverse_sync(&self, run: &Run) -> Result<(), DriveError> {
        let Some(pairs) = reverse_pairs(run)? else {
            self.board.detail(
                "green serves; reverse sync is off: several blue nodes feed one green node, so \
                 green's writes cannot be sent back (rollback is not possible)"
                    .to_owned(),
            );
            return self.wait_for_phase_change(Phase::ReverseSync).await;
        };
        let routes =
            Arc::new(Routes::reverse(&run.plan).map_err(|e| DriveError::Plan(e.to_string()))?);
        let mut total = match self.board.journal().cycles()?.last() {
            Some(c) if c.direction == Direction::Reverse && !c.final_cycle => c.clone(),
            _ => self.next_cycle(Direction::Reverse, false)?,
        };
        while self.board.phase() == Phase::ReverseSync {
            tokio::select! {
                () = self.controls.cancel.cancelled() => return Err(DriveError::Cancelled),
                () = self.controls.wake.notified() => continue,
                () = tokio::time::sleep(REVERSE_INTERVAL) => {}
            }
            let pending = match self.pending(&pairs).await {
                Ok(0) => continue,
                Ok(pending) => pending,
                Err(error) => {
                    self.board.detail(format!("reverse sync waiting: {error}"));
                    continue;
                }
            };
            let cycle = self.cycle(&run.plan, &pairs, &routes, total.clone(), Some(pending));
            match cycle.await {
                Ok(cycle) => {
                    total = cycle;
                    self.board
                        .detail("green serves; its changes flow back to blue".to_owned());
                }
                Err(DriveError::Cancelled) => return Err(DriveError::Cancelled),
                Err(DriveError::Journal(error)) => return Err(error.into()),
                Err(error) => {
                    tracing::warn!(%error, "reverse sync cycle failed; retrying");
                    self.board.detail(format!("reverse sync waiting: {error}"));
                }
            }
        }
        Ok(())
    }

    async fn wait_for_phase_change(&self, phase: Phase) -> Result<(), DriveError> {
        while self.board.phase() == phase {
            tokio::select! {
                () = self.controls.cancel.cancelled() => return Err(DriveError::Cancelled),
                () = self.controls.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        Ok(())
    }

    /// The rollback, from ROLLING_BACK (the engine journaled its request): ends ROLLED_BACK,
    /// or undone and back in REVERSE_SYNC with the reason.
    pub(super) async fn roll_back(&self, run: &Run) -> Result<(), DriveError> {
        let journal = self.board.journal();
        let mut record = journal.cutover()?.unwrap_or_default();
        if record.direction != Direction::Reverse {
            return Err(DriveError::Plan(
                "the journal holds a rollback phase without its record".into(),
            ));
        }
        if record.committed || record.epoch != 0 {
            return self.settle_rollback(&run.fleet).await;
        }
        record.epoch = self
            .attempt("reading the proxies' epochs", || {
                take_epoch(journal, &run.fleet)
            })
            .await?;
        journal.set_cutover(&record)?;
        match self.reverse_hold_and_verify(run, &mut record).await {
            Ok(()) => {}
            Err(DriveError::Cancelled) => return Err(DriveError::Cancelled),
            Err(error) => {
                tracing::warn!(%error, "rollback failed; undoing it");
                m::attempt("reverse", "undone");
                self.undo_reverse(&run.fleet, &record).await?;
                self.board.enter(
                    Phase::ReverseSync,
                    &format!(
                        "rollback failed and was undone ({error}); green still serves and \
                         nothing was lost: fix the cause and roll back again"
                    ),
                )?;
                return Ok(());
            }
        }
        record.committed = true;
        journal.set_cutover(&record)?;
        tracing::info!(verified = record.verified, "rollback committed");
        self.switch_back(&run.fleet).await
    }

    /// A rollback found in the journal part-way: finishes it when committed, undoes it when
    /// it had paused the proxies but not committed (back to REVERSE_SYNC). A rollback that
    /// has not begun is left for [`roll_back`](Self::roll_back).
    pub(super) async fn settle_rollback(&self, fleet: &Fleet) -> Result<(), DriveError> {
        let Some(record) = self.board.journal().cutover()? else {
            return Ok(());
        };
        if record.direction != Direction::Reverse {
            return Ok(());
        }
        if record.committed {
            return self.switch_back(fleet).await;
        }
        if record.epoch != 0 {
            self.undo_reverse(fleet, &record).await?;
            self.board.enter(
                Phase::ReverseSync,
                "a rollback was interrupted and undone; green still serves: roll back again",
            )?;
        }
        Ok(())
    }

    async fn reverse_hold_and_verify(
        &self,
        run: &Run,
        record: &mut CutoverRecord,
    ) -> Result<(), DriveError> {
        let Some(pairs) = reverse_pairs(run)? else {
            return Err(DriveError::Step(
                "several blue nodes feed one green node: green's writes cannot be sent back".into(),
            ));
        };
        let routes =
            Arc::new(Routes::reverse(&run.plan).map_err(|e| DriveError::Plan(e.to_string()))?);
        let epoch = record.epoch;
        self.board.detail(format!(
            "rollback, epoch {epoch}: proxies hold new requests and drain"
        ));
        all_proxies_paused(&run.fleet, epoch).await?;
        self.board.detail("rollback: fencing green".to_owned());
        let reason = format!("rollback {}", self.upgrade.id);
        record.fenced_heads = fence_all(&run.fleet.green, run.fleet.lease(), &reason).await?;
        self.board.journal().set_cutover(record)?;
        self.board
            .detail("rollback: final reverse cycle".to_owned());
        self.cycle(
            &run.plan,
            &pairs,
            &routes,
            self.next_cycle(Direction::Reverse, true)?,
            None,
        )
        .await?;
        self.board.detail("rollback: verifying".to_owned());
        self.verify_reverse(run, record).await?;
        fence_for_good(&run.fleet.green, &record.fenced_heads, &reason).await
    }

    /// Green's digests (fenced) against blue's, each pair on its own.
    async fn verify_reverse(
        &self,
        run: &Run,
        record: &mut CutoverRecord,
    ) -> Result<(), DriveError> {
        let journal = self.board.journal();
        let unreversible = run.plan.unreversible();
        if !record.discard && !unreversible.is_empty() {
            // Counted again under green's fence: writes since the request would be lost too.
            let lost = count_changes(&record.reverse_from, &unreversible)
                .await
                .map_err(|e| DriveError::Step(format!("counting green's writes: {e}")))?;
            if lost > 0 {
                return Err(DriveError::Step(format!(
                    "{lost} documents written on green in {} have no reverse program and would \
                     be lost; roll back with --discard-green-writes to accept that",
                    unreversible.join(", ")
                )));
            }
        }
        let unknown: Vec<String> = journal
            .dead_letters_of(Direction::Forward)?
            .into_iter()
            .chain(journal.dead_letters_of(Direction::Reverse)?)
            .map(|d| d.id)
            .collect();
        let allowances = Allowances {
            only_from: journal.dropped_of(Direction::Reverse)?,
            only_to: journal.dropped_of(Direction::Forward)?,
            unknown,
            renamed: run.plan.renamed(),
        };
        let mut documents = 0;
        for (i, blue) in run.fleet.blue.iter().enumerate() {
            let green = &run.fleet.green[run.fleet.sink_of(i)];
            let failed = |e: PeerError| DriveError::Step(format!("verifying: {e}"));
            let from = green.source.digest().await.map_err(failed)?;
            let fenced = record
                .fenced_heads
                .iter()
                .find(|(e, _)| *e == green.endpoint)
                .map_or(from.head_seq, |f| f.1);
            if from.head_seq != fenced {
                return Err(DriveError::Step(format!(
                    "green {} moved from seq {fenced} to {} while fenced (its lease ran out?)",
                    green.endpoint, from.head_seq
                )));
            }
            if record.discard {
                continue;
            }
            let to = blue.source.digest().await.map_err(failed)?;
            let verified = verify::compare(&[from], &to, &allowances).map_err(|m| {
                DriveError::Mismatch(format!(
                    "verification failed on blue {}: {m}",
                    blue.endpoint
                ))
            })?;
            documents += verified.documents;
        }
        record.verified = if record.discard {
            "green's head checked; digests not compared: green's writes to collections without \
             a reverse program were discarded on request"
                .to_owned()
        } else {
            format!("verified {documents} documents back on blue")
        };
        Ok(())
    }

    async fn undo_reverse(&self, fleet: &Fleet, record: &CutoverRecord) -> Result<(), DriveError> {
        self.end_hold(fleet, record, Color::Green).await.map(drop)
    }

    /// After the rollback's commit: blue unfenced, every proxy switched to blue, ROLLED_BACK.
    async fn switch_back(&self, fleet: &Fleet) -> Result<(), DriveError> {
        self.board
            .detail("rollback committed: unfencing blue, switching proxies to blue".to_owned());
        self.unfence_all(fleet, Color::Blue).await?;
        let holds = self.switch_all(fleet, Color::Blue).await?;
        m::attempt("reverse", "switched");
        let verified = self
            .board
            .journal()
            .cutover()?
            .map(|r| r.verified)
            .unwrap_or_default();
        self.board.enter(
            Phase::RolledBack,
            &format!(
                "{verified}; every proxy routes to blue; {}",
                Hold::summary(&holds)
            ),
        )?;
        Ok(())
    }
}
