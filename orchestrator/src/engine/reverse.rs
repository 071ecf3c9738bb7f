//! Reverse sync: after the switch, green's changes flow back to blue through the reverse
//! programs, so a rollback (the handover reversed, `handover.rs`) loses nothing.

use std::{sync::Arc, time::Duration};

use cutover_proto::v1::pull_response::Kind;

use super::{
    board::now_unix_ms,
    driver::Driver,
    error::DriveError,
    journal::Direction,
    machine::Event,
    metrics as m,
    peer::{PeerError, SourcePeer},
    routes::Routes,
    world::Pipeline,
};

/// How often reverse sync looks for green's changes.
const REVERSE_INTERVAL: Duration = Duration::from_millis(200);

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
        let mut stream = source.pull(*from, &[], 0, 0).await?;
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
    /// Green → blue pipelines: the forward topology mirrored, each green node feeding back
    /// the partitions it took from each blue node.
    pub(super) async fn reverse_pairs(&self) -> Result<Vec<Arc<dyn Pipeline>>, DriveError> {
        let run = self.discovered().await?;
        run.pairs
            .iter()
            .map(|pair| {
                pair.reversed(&self.fleet.blue_token)
                    .map_err(DriveError::Plan)
            })
            .collect()
    }

    /// REVERSE_SYNC: copies green's changes back to blue every [`REVERSE_INTERVAL`], for as
    /// long as the state lasts (a rollback command ends it). Accumulates into one cycle
    /// record; a node that does not answer is waited for, never failing the upgrade: green
    /// serves either way.
    pub(super) async fn reverse_sync(&self) -> Result<Event, DriveError> {
        let pairs = self.reverse_pairs().await?;
        let routes = Arc::new(
            Routes::reverse(&self.plan, &self.natives)
                .map_err(|e| DriveError::Plan(e.to_string()))?,
        );
        let mut total = match self.board.journal().cycles()?.last() {
            Some(c) if c.direction == Direction::Reverse && !c.final_cycle => c.clone(),
            _ => self.next_cycle(Direction::Reverse, false)?,
        };
        // Blue held everything at the switch; after a restart the lag counts from here, so
        // that a reverse sync that never gets through still shows a growing lag.
        let mut synced = now_unix_ms();
        m::reverse(0, synced);
        loop {
            tokio::time::sleep(REVERSE_INTERVAL).await;
            // Everything green had when the delta is measured is on blue once the pass ends.
            let began = now_unix_ms();
            // A node that does not answer makes the delta unknown: the cycle copies what the
            // other pipelines have while that node's wait for it (the status says which).
            let pending = match self.pending(&pairs).await {
                Ok(0) => {
                    synced = began;
                    m::reverse(0, synced);
                    continue;
                }
                Ok(pending) => {
                    m::reverse(pending, synced);
                    Some(pending)
                }
                Err(error) if error.retryable() => {
                    self.board.detail(format!("reverse sync waiting: {error}"));
                    None
                }
                Err(error) => {
                    self.board.detail(format!("reverse sync waiting: {error}"));
                    continue;
                }
            };
            match self.cycle(&pairs, &routes, total.clone(), pending).await {
                Ok(cycle) => {
                    synced = began;
                    m::reverse(cycle.pending_after, synced);
                    total = cycle;
                    self.board
                        .detail("green serves; its changes flow back to blue".to_owned());
                }
                Err(DriveError::Journal(error)) => return Err(error.into()),
                Err(error) => {
                    tracing::warn!(%error, "reverse sync cycle failed; retrying");
                    self.board.detail(format!("reverse sync waiting: {error}"));
                }
            }
        }
    }
}
