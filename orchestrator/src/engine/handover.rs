//! The handover's effects, written once for both directions: take an epoch → pause every
//! proxy → fence the serving side with a lease → final cycle → verify → fence it for good →
//! commit → (a rollback: unfence blue) → switch every proxy; and the undo before the commit:
//! unfence the serving side, then resume every proxy on it (in that order, so no released
//! request meets a fence).
//!
//! The fence is made permanent before the commit is journaled rather than after: between the
//! commit and a permanent fence, a lease that lapsed (the orchestrator stalled, a node slow
//! to answer) would let the old side take writes the new side never sees. An undo lifts a
//! permanent fence like a lease. Every call carries the handover's epoch, so a repeated call
//! (a restart) is idempotent and a stale orchestrator's is refused.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cutover_proto::v1::{Color, RouteMode};
use tokio::task::JoinSet;

use super::{
    board::Board,
    driver::Driver,
    error::DriveError,
    fault,
    fleet::Fleet,
    journal::{Direction, Hold, Journal},
    machine::{Event, Handover, Heads, Step},
    peer::PeerError,
    world::{NodeControl, ProxyControl},
};

/// Wait between two tries of a proxy's switch, which must eventually succeed.
const RETRY: Duration = Duration::from_millis(250);

impl Driver {
    /// What step `step` of `handover` asks for; the event it ends with.
    pub(super) async fn handover(
        &self,
        handover: &Handover,
        step: &Step,
    ) -> Result<Event, DriveError> {
        let fleet = &self.fleet;
        let serving = fleet.nodes(handover.from());
        let reason = self.reason(handover.direction());
        match step {
            Step::Epoch => {
                if handover.direction() == Direction::Reverse {
                    // The reverse pipelines are built before anything is held.
                    self.reverse_pairs().await?;
                }
                let journal = self.board.journal();
                let epoch = self
                    .attempt("reading the proxies' epochs", || take_epoch(journal, fleet))
                    .await?;
                Ok(Event::EpochTaken(epoch))
            }
            Step::Pausing { epoch } => {
                *self.hold.lock().expect("not poisoned") = (Some(Instant::now()), Duration::ZERO);
                all_proxies_paused(fleet, *epoch).await?;
                Ok(Event::Paused)
            }
            Step::Fencing { epoch } => {
                let heads = fence_all(serving, fleet.lease(), &reason, *epoch).await?;
                Ok(Event::Fenced(heads))
            }
            Step::FinalCycle { .. } => {
                let took = self.final_cycle(handover.direction()).await?;
                self.hold.lock().expect("not poisoned").1 = took;
                Ok(Event::FinalCycleDone)
            }
            Step::Verifying { fenced, .. } => Ok(Event::Verified(match handover {
                Handover::Cutover { .. } => self.verify_forward(fenced).await?,
                Handover::Rollback {
                    discard,
                    reverse_from,
                } => self.verify_reverse(*discard, reverse_from, fenced).await?,
            })),
            Step::Sealing { epoch, fenced, .. } => {
                fence_for_good(handover.from(), serving, fenced, &reason, *epoch).await?;
                fault::point("sealed");
                Ok(Event::Sealed)
            }
            Step::Committed { epoch, .. } => {
                if handover.direction() == Direction::Reverse {
                    self.unfence_all(Color::Blue, *epoch).await?;
                }
                Ok(Event::Committed)
            }
            Step::Switching { epoch, .. } => {
                self.switch_all(handover.to(), *epoch).await?;
                if handover.direction() == Direction::Forward {
                    self.measured()?;
                }
                Ok(Event::Switched)
            }
        }
    }

    /// Undoes a handover that did not commit: unfences the side it fenced, then resumes every
    /// proxy of the hold of `epoch`; a rehearsal records its measured overhead.
    ///
    /// The unfence carries a fresh epoch, above the handover's: a fence call of the handover
    /// still on its way (an abort or a crash dropped its caller, not the request) lands after
    /// the unfence and is refused, instead of fencing the side that serves again. The proxies
    /// need no such care: a pause of an ended hold is refused under the same epoch.
    pub(super) async fn undo(
        &self,
        handover: &Handover,
        epoch: u64,
        rehearsed: bool,
    ) -> Result<(), DriveError> {
        let fresh = self.board.journal().next_epoch(epoch + 1)?;
        self.unfence_all(handover.from(), fresh).await?;
        let holds = release(&self.fleet, epoch).await;
        self.board.journal().set_holds(&holds)?;
        self.board.holds(&holds);
        if rehearsed {
            self.measured()?;
        }
        Ok(())
    }

    /// Records the switch overhead of the hold this process ran, if it ran the whole of it:
    /// all of the hold but the final cycle, which the threshold engine predicts on its own.
    fn measured(&self) -> Result<(), DriveError> {
        let (since, final_cycle) = *self.hold.lock().expect("not poisoned");
        let Some(since) = since else {
            return Ok(());
        };
        let held = since.elapsed();
        let overhead = held.saturating_sub(final_cycle);
        tracing::info!(
            held_ms = held.as_millis() as u64,
            overhead_ms = overhead.as_millis() as u64,
            "switch overhead measured"
        );
        self.board.journal().set_switch_overhead(overhead)?;
        Ok(())
    }

    /// Lifts the fence of every node of `color` under `epoch` (idempotent).
    async fn unfence_all(&self, color: Color, epoch: u64) -> Result<(), DriveError> {
        let reason = format!("undo of {}", self.upgrade.id);
        let answers = on_each(self.fleet.nodes(color), |node| {
            let reason = reason.clone();
            async move { node.unfence(epoch, &reason).await }
        });
        all_ok(answers.await, "unfencing").map(drop)
    }

    /// Switches every proxy to `color` under `epoch`, until all have; journals and shows
    /// their figures.
    async fn switch_all(&self, color: Color, epoch: u64) -> Result<Vec<Hold>, DriveError> {
        let hold = self.fleet.hold;
        let answers = on_each(&self.fleet.proxies, |p| {
            let board = self.board.clone();
            async move {
                Ok::<_, PeerError>(switch_until_done(&board, p.as_ref(), epoch, color, hold).await)
            }
        })
        .await;
        let holds: Vec<_> = self
            .fleet
            .proxies
            .iter()
            .zip(answers)
            .map(|(p, a)| {
                let (released, max_hold_micros) = a.unwrap_or((0, 0));
                Hold {
                    proxy: p.endpoint().to_owned(),
                    released,
                    max_hold_micros,
                }
            })
            .collect();
        self.board.journal().set_holds(&holds)?;
        self.board.holds(&holds);
        Ok(holds)
    }
}

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

/// The answers of `answers`, or the first error, as a failure of `doing`.
fn all_ok<T>(
    answers: Vec<Result<T, PeerError>>,
    doing: &'static str,
) -> Result<Vec<T>, DriveError> {
    answers
        .into_iter()
        .map(|a| a.map_err(DriveError::call(doing)))
        .collect()
}

/// Fences every node of `nodes` at once with a lease under `epoch`; their heads (endpoint,
/// seq) once every write they accepted before is durable.
async fn fence_all(
    nodes: &[Arc<dyn NodeControl>],
    lease: Duration,
    reason: &str,
    epoch: u64,
) -> Result<Heads, DriveError> {
    let answers = on_each(nodes, |node| {
        let reason = reason.to_owned();
        async move { node.fence_lease(epoch, lease, &reason).await }
    });
    let heads = all_ok(answers.await, "fencing")?;
    Ok(nodes
        .iter()
        .map(|n| n.endpoint().to_owned())
        .zip(heads)
        .collect())
}

/// Makes the fence of every node permanent, checking that none took a write since its lease
/// fence reported `fenced` heads (a lease that ran out would let one through).
async fn fence_for_good(
    color: Color,
    nodes: &[Arc<dyn NodeControl>],
    fenced: &Heads,
    reason: &str,
    epoch: u64,
) -> Result<(), DriveError> {
    for (node, (_, head)) in nodes.iter().zip(fenced) {
        let now = node
            .fence_permanent(epoch, reason)
            .await
            .map_err(DriveError::call("fencing for good"))?;
        if now != *head {
            return Err(DriveError::Moved {
                color,
                endpoint: node.endpoint().to_owned(),
                fenced: *head,
                now,
            });
        }
    }
    Ok(())
}

/// Pauses every proxy under `epoch`; returns once all have drained.
async fn all_proxies_paused(fleet: &Fleet, epoch: u64) -> Result<(), DriveError> {
    let hold = fleet.hold;
    let answers = on_each(
        &fleet.proxies,
        |p| async move { p.pause(epoch, hold).await },
    );
    all_ok(answers.await, "pausing").map(drop)
}

/// An epoch above every epoch any proxy or node fence has seen (another orchestrator, or a
/// journal started afresh, may have used higher ones than this journal), journaled before use.
async fn take_epoch(journal: &Journal, fleet: &Fleet) -> Result<u64, DriveError> {
    let proxies = all_ok(
        on_each(&fleet.proxies, |p| async move { p.status().await }).await,
        "reading the proxies' epochs",
    )?;
    let nodes: Vec<Arc<dyn NodeControl>> = fleet.blue.iter().chain(&fleet.green).cloned().collect();
    let fences = all_ok(
        on_each(&nodes, |n| async move { n.status().await }).await,
        "reading the nodes' fence epochs",
    )?;
    let highest = proxies
        .iter()
        .map(|s| s.epoch)
        .chain(
            fences
                .iter()
                .filter_map(|s| s.fence.as_ref().map(|f| f.epoch)),
        )
        .max()
        .unwrap_or(0);
    Ok(journal.next_epoch(highest + 1)?)
}

/// Resumes every proxy of the hold of `epoch`; their figures. A proxy that does not answer
/// (down, or a newer epoch took over) ends its hold alone when the hold times out.
async fn release(fleet: &Fleet, epoch: u64) -> Vec<Hold> {
    let answers = on_each(&fleet.proxies, |p| async move { p.resume(epoch).await }).await;
    fleet
        .proxies
        .iter()
        .zip(answers)
        .map(|(proxy, answer)| {
            let (released, max_hold_micros) = match answer {
                Ok(r) => (r.released, r.max_hold_micros),
                Err(error) => {
                    tracing::warn!(%error, "resuming a proxy");
                    (0, 0)
                }
            };
            Hold {
                proxy: proxy.endpoint().to_owned(),
                released,
                max_hold_micros,
            }
        })
        .collect()
}

/// Switches `proxy` to `color` under `epoch`, however long it takes: a hold that expired
/// meanwhile is paused again under a new epoch first. Returns (released, longest hold µs).
async fn switch_until_done(
    board: &Board,
    proxy: &dyn ProxyControl,
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
                    if status.active == color as i32 && status.mode == RouteMode::Forwarding as i32
                    {
                        return Ok::<_, PeerError>(true);
                    }
                    match board.journal().next_epoch(status.epoch + 1) {
                        Ok(next) => epoch = next,
                        Err(error) => {
                            // An epoch is used only once journaled: try again later.
                            tracing::error!(%error, "taking an epoch to pause a proxy again");
                            tokio::time::sleep(RETRY).await;
                            return Ok(false);
                        }
                    }
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
