//! The cutover: pause every proxy → fence blue (a lease) → final delta cycle → verify → fence
//! blue for good → commit (phase COMMITTED, journaled) → switch every proxy to green. A failure
//! before the commit undoes the attempt (proxies resume on blue, blue unfenced); after it, the
//! switch is retried until every proxy routes to green.
//!
//! Blue's fence is made permanent before the commit rather than after: between the commit and
//! a permanent fence, a lease that lapsed (the orchestrator stalled, a blue node slow to
//! answer) would let blue take writes that green never sees. The other order has no such
//! window; an undo lifts a permanent fence like a lease.

use std::time::Duration;

use cutover_proto::v1::{Color, Phase};
use tokio::task::JoinSet;

use super::{
    driver::{DriveError, Driver, Run},
    fault,
    fleet::{Fleet, Node, ProxyPeer},
    journal::{CutoverRecord, Direction, Hold, Journal},
    metrics as m,
    peer::PeerError,
    state::Board,
    verify::{self, Allowances},
};

/// Cutover attempts undone (a proxy that could not drain, a node that did not answer) before
/// the upgrade gives up.
const CUTOVER_ATTEMPTS: u32 = 3;
/// Wait between two tries of a step that must eventually succeed (the switch after the
/// commit).
const RETRY: Duration = Duration::from_millis(250);

/// Runs `call` on every peer of `peers` at once; the answers in the peers' order.
pub(super) async fn on_each<P, T, F>(
    peers: &[P],
    call: impl Fn(P) -> F,
) -> Vec<Result<T, PeerError>>
where
    P: Clone,
    T: Send + 'static,
    F: Future<Output = Result<T, PeerError>> + Send + 'static,
{
    let mut calls = JoinSet::new();
    for (i, peer) in peers.iter().enumerate() {
        let call = call(peer.clone());
        calls.spawn(async move { (i, call.await) });
    }
    let mut answers: Vec<Option<Result<T, PeerError>>> = peers.iter().map(|_| None).collect();
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok((i, answer)) => answers[i] = Some(answer),
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(_) => {}
        }
    }
    answers
        .into_iter()
        .map(|a| a.expect("every call was joined"))
        .collect()
}

/// The first error of `answers`, as a step failure saying what was being done.
fn all_ok<T>(answers: Vec<Result<T, PeerError>>, doing: &str) -> Result<Vec<T>, DriveError> {
    answers
        .into_iter()
        .map(|a| a.map_err(|e| DriveError::Step(format!("{doing}: {e}"))))
        .collect()
}

/// Fences every node of `nodes` at once with a lease; their heads (endpoint, seq) once
/// every write they accepted before is durable.
pub(super) async fn fence_all(
    nodes: &[Node],
    lease: Duration,
    reason: &str,
) -> Result<Vec<(String, u64)>, DriveError> {
    let answers = on_each(nodes, |node| {
        let reason = reason.to_owned();
        async move { node.admin.fence_lease(lease, &reason).await }
    });
    let heads = all_ok(answers.await, "fencing")?;
    Ok(nodes
        .iter()
        .map(|n| n.endpoint.clone())
        .zip(heads)
        .collect())
}

/// Makes the fence of every node permanent, checking that none took a write since its lease
/// fence reported `fenced` heads (a lease that ran out would let one through).
pub(super) async fn fence_for_good(
    nodes: &[Node],
    fenced: &[(String, u64)],
    reason: &str,
) -> Result<(), DriveError> {
    for (node, (_, head)) in nodes.iter().zip(fenced) {
        let now = node
            .admin
            .fence_permanent(reason)
            .await
            .map_err(|e| DriveError::Step(format!("fencing for good: {e}")))?;
        if now != *head {
            return Err(DriveError::Step(format!(
                "{} took writes while fenced (seq {head} → {now}; its lease ran out?)",
                node.endpoint
            )));
        }
    }
    Ok(())
}

/// Pauses every proxy under `epoch`; returns once all have drained.
pub(super) async fn all_proxies_paused(fleet: &Fleet, epoch: u64) -> Result<(), DriveError> {
    let hold = fleet.hold;
    let answers = on_each(
        &fleet.proxies,
        |p| async move { p.pause(epoch, hold).await },
    );
    all_ok(answers.await, "pausing").map(drop)
}

/// A proxy epoch above every epoch any proxy has seen, journaled before use.
pub(super) async fn take_epoch(journal: &Journal, fleet: &Fleet) -> Result<u64, DriveError> {
    let statuses = all_ok(
        on_each(&fleet.proxies, |p| async move { p.status().await }).await,
        "reading the proxies' epochs",
    )?;
    let highest = statuses.iter().map(|s| s.epoch).max().unwrap_or(0);
    Ok(journal.next_epoch(highest + 1)?)
}

/// Switches `proxy` to `color` under `epoch`, however long it takes: a hold that expired
/// meanwhile is paused again under a new epoch first. Returns (released, longest hold µs).
pub(super) async fn switch_until_done(
    board: &Board,
    proxy: &ProxyPeer,
    epoch: u64,
    color: Color,
    hold: Duration,
) -> (u64, u64) {
    let mut epoch = epoch;
    loop {
        match proxy.switch(epoch, color).await {
            Ok(answer) => {
                fault::point("first-switch");
                return (answer.released, answer.max_hold_micros);
            }
            Err(error) if error.status.code() == tonic::Code::FailedPrecondition => {
                // The hold ended without us (it expired), or a newer epoch took over: look.
                let renewed = async {
                    let status = proxy.status().await?;
                    if status.active == color as i32
                        && status.mode == cutover_proto::v1::RouteMode::Forwarding as i32
                    {
                        return Ok::<_, PeerError>(true);
                    }
                    epoch = board
                        .journal()
                        .next_epoch(status.epoch + 1)
                        .unwrap_or(status.epoch + 1);
                    proxy.pause(epoch, hold).await?;
                    Ok(false)
                };
                match renewed.await {
                    Ok(true) => return (0, 0),
                    Ok(false) => continue,
                    Err(error) => waiting(board, &error),
                }
            }
            Err(error) => waiting(board, &error),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// A proxy that has not switched yet: logged, and shown in the status until it has.
fn waiting(board: &Board, error: &PeerError) {
    tracing::warn!(%error, "switching a proxy; retrying");
    board.detail(format!(
        "waiting for a proxy to switch, retrying every {RETRY:?}: {error}"
    ));
}

impl Driver {
    /// One cutover attempt from READY_FOR_CUTOVER: ends COMMITTED and switched, or undone
    /// and back to CYCLING (ABORTED after [`CUTOVER_ATTEMPTS`] or a verification mismatch),
    /// or, for a rehearsal, undone after a passed verification and back at READY_FOR_CUTOVER.
    pub(super) async fn cut_over(&self, run: &Run, attempt: u32) -> Result<(), DriveError> {
        let journal = self.board.journal();
        let epoch = self
            .attempt("reading the proxies' epochs", || {
                take_epoch(journal, &run.fleet)
            })
            .await?;
        let mut record = CutoverRecord {
            direction: Direction::Forward,
            epoch,
            ..CutoverRecord::default()
        };
        journal.set_cutover(&record)?;
        let held_since = std::time::Instant::now();
        let final_cycle = match self.hold_and_verify(run, &mut record).await {
            Ok(final_cycle) => final_cycle,
            Err(DriveError::Cancelled) => return Err(DriveError::Cancelled),
            Err(error) => {
                tracing::warn!(%error, attempt, "cutover attempt failed; undoing it");
                m::attempt("forward", "undone");
                self.undo_forward(&run.fleet, &error.to_string()).await?;
                let why = format!(
                    "cutover attempt {attempt} undone ({error}); proxies resumed on blue, blue \
                     unfenced"
                );
                return if matches!(error, DriveError::Mismatch(_)) || attempt >= CUTOVER_ATTEMPTS {
                    self.board
                        .enter(Phase::Aborted, &format!("{why}: giving up"))?;
                    Ok(())
                } else {
                    self.board
                        .enter(Phase::Cycling, &format!("{why}: cycling again"))?;
                    Ok(())
                };
            }
        };
        if self.upgrade.rehearse {
            record.holds = self.end_hold(&run.fleet, &record, Color::Blue).await?;
            record.rehearsed = true;
            m::attempt("forward", "rehearsed");
            journal.set_cutover(&record)?;
            self.measured(held_since.elapsed(), final_cycle)?;
            self.board.holds(&record.holds);
            self.board.enter(
                Phase::ReadyForCutover,
                &format!(
                    "rehearsal done: {}; {}; proxies resumed on blue, blue unfenced",
                    record.verified,
                    Hold::summary(&record.holds)
                ),
            )?;
            return Ok(());
        }
        self.board.enter(
            Phase::Committed,
            &format!("{}; blue fenced for good", record.verified),
        )?;
        fault::point("committed");
        self.switch_forward(&run.fleet).await?;
        m::attempt("forward", "switched");
        self.measured(held_since.elapsed(), final_cycle)
    }

    /// Pause, fence, final cycle, verify, fence for good; returns how long the final cycle
    /// took. Any error leaves the undo to the caller.
    async fn hold_and_verify(
        &self,
        run: &Run,
        record: &mut CutoverRecord,
    ) -> Result<Duration, DriveError> {
        let journal = self.board.journal();
        let epoch = record.epoch;
        self.board.enter(
            Phase::Pausing,
            &format!(
                "epoch {epoch}: {} proxies hold new requests and drain",
                run.fleet.proxies.len()
            ),
        )?;
        all_proxies_paused(&run.fleet, epoch).await?;
        fault::point("paused");
        self.board
            .enter(Phase::Fencing, "fencing blue's client writes")?;
        let reason = format!("cutover {}", self.upgrade.id);
        record.fenced_heads = fence_all(&run.fleet.blue, run.fleet.lease(), &reason).await?;
        journal.set_cutover(record)?;
        fault::point("fenced");
        self.board.enter(
            Phase::FinalCycle,
            "copying what blue took since the last cycle",
        )?;
        let last = self
            .cycle(
                &run.plan,
                &run.pairs,
                &run.routes,
                self.next_cycle(Direction::Forward, true)?,
                None,
            )
            .await?;
        fault::point("final-cycle");
        self.board.enter(
            Phase::Verifying,
            "comparing per-partition counts and digests",
        )?;
        self.verify_forward(run, record).await?;
        let final_cycle = Duration::from_millis(last.duration_ms);
        if self.upgrade.rehearse {
            // A rehearsal resumes on blue next: its fence stays a lease.
            return Ok(final_cycle);
        }
        fence_for_good(&run.fleet.blue, &record.fenced_heads, &reason).await?;
        journal.set_cutover(record)?;
        Ok(final_cycle)
    }

    /// Records the switch overhead of a hold that lasted `held`: all of it but the final
    /// cycle, which the threshold engine predicts on its own.
    fn measured(&self, held: Duration, final_cycle: Duration) -> Result<(), DriveError> {
        let overhead = held.saturating_sub(final_cycle);
        tracing::info!(
            held_ms = held.as_millis() as u64,
            overhead_ms = overhead.as_millis() as u64,
            "switch overhead measured"
        );
        self.board.journal().set_switch_overhead(overhead)?;
        Ok(())
    }

    /// Blue's digests (fenced: its heads must not have moved) against green's.
    async fn verify_forward(
        &self,
        run: &Run,
        record: &mut CutoverRecord,
    ) -> Result<(), DriveError> {
        let journal = self.board.journal();
        let mut blue = Vec::new();
        for (node, (_, fenced)) in run.fleet.blue.iter().zip(&record.fenced_heads) {
            let digest = node
                .source
                .digest()
                .await
                .map_err(|e| DriveError::Step(format!("verifying: {e}")))?;
            if digest.head_seq != *fenced {
                return Err(DriveError::Step(format!(
                    "blue {} moved from seq {fenced} to {} while fenced (its lease ran out?)",
                    node.endpoint, digest.head_seq
                )));
            }
            blue.push(digest);
        }
        let dead = journal.dead_letters()?;
        let mut allowances = Allowances {
            only_from: journal.dropped()?,
            unknown: dead.into_iter().map(|d| d.id).collect(),
            renamed: run.plan.renamed(),
            ..Allowances::default()
        };
        if run.fleet.green.len() > 1 {
            // A drop's blue node is not journaled: with several groups, leave its partition
            // out rather than guess.
            let ids = allowances.only_from.drain(..).map(|(_, id, _)| id);
            allowances.unknown.extend(ids);
        }
        let (mut partitions, mut skipped, mut documents) = (0, 0, 0);
        for (g, green) in run.fleet.green.iter().enumerate() {
            let from: Vec<_> = blue
                .iter()
                .enumerate()
                .filter(|(i, _)| run.fleet.sink_of(*i) == g)
                .map(|(_, d)| d.clone())
                .collect();
            let to = green
                .source
                .digest()
                .await
                .map_err(|e| DriveError::Step(format!("verifying: {e}")))?;
            let verified = verify::compare(&from, &to, &allowances).map_err(|m| {
                DriveError::Mismatch(format!(
                    "verification failed on green {}: {m}",
                    green.endpoint
                ))
            })?;
            partitions += verified.partitions;
            skipped += verified.skipped;
            documents += verified.documents;
            record
                .reverse_from
                .push((green.endpoint.clone(), to.head_seq));
            // Everything green holds up to here came from blue: reverse sync starts after it.
            if let Some(pair) = run
                .pairs
                .iter()
                .find(|p| p.sink.endpoint() == green.endpoint)
            {
                journal.acknowledge(
                    &self.upgrade.id,
                    Direction::Reverse,
                    &pair.sink_id,
                    to.head_seq,
                    &Default::default(),
                )?;
            }
        }
        record.verified = format!(
            "verified {documents} documents in {partitions} partitions ({}{})",
            if allowances.renamed.is_some() {
                "counts; a collection is renamed"
            } else {
                "counts and digests"
            },
            if skipped > 0 {
                format!("; {skipped} partitions with dead letters skipped")
            } else {
                String::new()
            }
        );
        tracing::info!(verified = record.verified, "verification passed");
        Ok(())
    }

    /// Ends the hold of `record` without switching: unfences the `fenced` side first (a request
    /// released to a fenced node would be refused), then resumes every proxy on its current
    /// colour; returns their figures.
    pub(super) async fn end_hold(
        &self,
        fleet: &Fleet,
        record: &CutoverRecord,
        fenced: Color,
    ) -> Result<Vec<Hold>, DriveError> {
        self.unfence_all(fleet, fenced).await?;
        Ok(self.release(fleet, record).await)
    }

    /// Resumes the proxies of the journaled hold; returns their figures.
    async fn release(&self, fleet: &Fleet, record: &CutoverRecord) -> Vec<Hold> {
        let epoch = record.epoch;
        let answers = on_each(&fleet.proxies, |p| async move { p.resume(epoch).await }).await;
        fleet
            .proxies
            .iter()
            .zip(answers)
            .map(|(proxy, answer)| {
                let (released, max_hold_micros) = match answer {
                    Ok(r) => (r.released, r.max_hold_micros),
                    Err(error) => {
                        // A newer epoch took over, or the proxy is down: its hold expires
                        // alone.
                        tracing::warn!(%error, "resuming a proxy");
                        (0, 0)
                    }
                };
                Hold {
                    proxy: proxy.endpoint.clone(),
                    released,
                    max_hold_micros,
                }
            })
            .collect()
    }

    /// Lifts the fence of every node of `color`, retrying: a permanent fence never lifts by
    /// itself.
    pub(super) async fn unfence_all(&self, fleet: &Fleet, color: Color) -> Result<(), DriveError> {
        let nodes = match color {
            Color::Green => &fleet.green,
            _ => &fleet.blue,
        };
        let reason = format!("undo of {}", self.upgrade.id);
        for node in nodes {
            self.attempt("unfencing", || node.admin.unfence(&reason))
                .await?;
        }
        Ok(())
    }

    /// Undoes a cutover that did not commit: proxies resume on blue, blue is unfenced.
    pub(super) async fn undo_forward(&self, fleet: &Fleet, why: &str) -> Result<(), DriveError> {
        let Some(record) = self.board.journal().cutover()? else {
            return Ok(());
        };
        if record.direction != Direction::Forward {
            return Ok(());
        }
        self.board.detail(format!(
            "undoing the cutover ({why}): unfencing blue, resuming proxies on blue"
        ));
        let holds = self.end_hold(fleet, &record, Color::Blue).await?;
        self.board.holds(&holds);
        Ok(())
    }

    /// After the commit: switches every proxy to green, retrying until all have, then
    /// SWITCHED.
    pub(super) async fn switch_forward(&self, fleet: &Fleet) -> Result<(), DriveError> {
        if self.board.phase() == Phase::Committed {
            self.board
                .enter(Phase::Switching, "switching every proxy to green")?;
        }
        let holds = self.switch_all(fleet, Color::Green).await?;
        let detail = if fleet.proxies.is_empty() {
            "no proxy in the plan: blue is fenced for good, send clients to green".to_owned()
        } else {
            format!("every proxy routes to green; {}", Hold::summary(&holds))
        };
        self.board.enter(Phase::Switched, &detail)?;
        Ok(())
    }

    /// Switches every proxy to `color` under the journaled epoch, until all have.
    pub(super) async fn switch_all(
        &self,
        fleet: &Fleet,
        color: Color,
    ) -> Result<Vec<Hold>, DriveError> {
        let journal = std::sync::Arc::clone(self.board.journal());
        let mut record = journal.cutover()?.unwrap_or_default();
        let epoch = record.epoch;
        let hold = fleet.hold;
        let answers = tokio::select! {
            answers = on_each(&fleet.proxies, |p| {
                let board = self.board.clone();
                async move {
                    Ok::<_, PeerError>(switch_until_done(&board, &p, epoch, color, hold).await)
                }
            }) => answers,
            () = self.controls.cancel.cancelled() => return Err(DriveError::Cancelled),
        };
        let holds: Vec<_> = fleet
            .proxies
            .iter()
            .zip(answers)
            .map(|(p, a)| {
                let (released, max_hold_micros) = a.unwrap_or((0, 0));
                Hold {
                    proxy: p.endpoint.clone(),
                    released,
                    max_hold_micros,
                }
            })
            .collect();
        record.holds = holds.clone();
        journal.set_cutover(&record)?;
        self.board.holds(&holds);
        Ok(holds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_summary_counts_every_proxy_and_takes_the_longest() {
        let hold = |released, max_hold_micros| Hold {
            proxy: "p".into(),
            released,
            max_hold_micros,
        };
        assert_eq!(
            Hold::summary(&[hold(3, 41_000), hold(1, 7_000)]),
            "4 held requests released, longest hold 41 ms"
        );
    }
}
