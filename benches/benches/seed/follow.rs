//! One upgrade under the client load: started and followed over the orchestrator's gRPC API
//! until green serves, printing the phases (and the copy's progress now and then, for a run
//! of half an hour) as they come.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cutover_orchestrator::{
    demo::{
        load::{Finished, Ledger, Load, LoadConfig},
        report::{Pause, cycles, pause},
    },
    engine::metrics::phase_name,
};
use cutover_proto::v1::{
    Phase, StartRequest, StatusRequest, UpgradeStatus, WatchRequest,
    orchestrator_client::OrchestratorClient,
};
use tonic::transport::Channel;

use super::{AFTER_SWITCH, stack::Stack};

/// How often the copy's progress is printed while a cycle runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);
/// How long to wait before watching again a stream that ended before green served.
const REWATCH_AFTER: Duration = Duration::from_millis(50);
/// How far before the last event of a copy phase arrived the switch window starts: the
/// event was sent a little earlier (loopback, milliseconds), and the pause may have begun in
/// between. A wider window would count slow requests of the last delta cycle as the pause.
const WINDOW_MARGIN: Duration = Duration::from_millis(100);

/// What an upgrade left: its status once green serves, the pause the clients saw, and what
/// the clients saw in all.
pub struct Upgraded {
    /// The status after the switch.
    pub status: UpgradeStatus,
    /// From the upgrade's start to green serving (phase `REVERSE_SYNC` seen).
    pub serving: Duration,
    /// The latency of the requests that started in the switch window.
    pub pause: Pause,
    /// The stopped load.
    pub finished: Finished,
}

/// Starts the client load, then the upgrade of `plan`, and follows it until green serves; the
/// load goes on [`AFTER_SWITCH`] more, then stops.
pub fn upgrade(
    runtime: &tokio::runtime::Runtime,
    stack: &Stack,
    plan: &str,
    config: &LoadConfig,
    documents: u64,
) -> anyhow::Result<Upgraded> {
    let load = runtime.block_on(async { Load::start(config, Ledger::default()) });
    let started = load.started;
    let followed = runtime.block_on(async {
        let mut client = OrchestratorClient::connect(stack.orchestrator.url()).await?;
        let starting = Instant::now();
        client
            .start(StartRequest {
                plan_toml: plan.to_owned(),
                plan_name: "seed.toml".to_owned(),
                ..StartRequest::default()
            })
            .await
            .context("starting the upgrade")?;
        let window = follow(&mut client, started, timeout(documents)).await?;
        let serving = starting.elapsed();
        tokio::time::sleep(AFTER_SWITCH).await;
        let status = client.status(StatusRequest {}).await?.into_inner();
        anyhow::Ok((status, serving, window))
    });
    // The load stops whatever happened, so a failed story leaves no clients behind.
    let finished = runtime.block_on(load.stop());
    let (status, serving, (from, to)) = followed?;
    let pause = pause(&finished.latencies, from, to);
    Ok(Upgraded {
        status,
        serving,
        pause,
        finished,
    })
}

/// The longest an upgrade of `documents` may take before the story gives up: 10 minutes, and
/// a minute more for each 1.2M documents (20K docs/s, far below any cycle 1 measured).
fn timeout(documents: u64) -> Duration {
    Duration::from_secs(600 + documents / 20_000)
}

/// Follows the upgrade over `Watch` until `REVERSE_SYNC`; the switch window in µs since the
/// load started: from [`WINDOW_MARGIN`] before the last event of a copy phase to the first
/// event after the switch. Watch keeps only the latest status, so the handover's own phases
/// may never be seen; the window holds the pause whichever were.
async fn follow(
    client: &mut OrchestratorClient<Channel>,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<(u64, u64)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let since = || started.elapsed().as_micros() as u64;
    let (mut copying, mut switched) = (0, None);
    let mut last_phase = Phase::Unspecified;
    let mut printed = Instant::now();
    loop {
        // The stream ends at a final phase; watch again if that was not the end of the story.
        let mut events = client.watch(WatchRequest {}).await?.into_inner();
        while let Some(event) = tokio::time::timeout_at(deadline, events.message())
            .await
            .map_err(|_| anyhow::anyhow!("green did not serve within {timeout:?}"))??
        {
            let status = event.status.clone().unwrap_or_default();
            let phase = status.phase();
            match phase {
                Phase::Discovering | Phase::Cycling | Phase::Postponed => copying = since(),
                Phase::Switched | Phase::ReverseSync => {
                    switched.get_or_insert_with(since);
                }
                Phase::Aborted | Phase::Failed | Phase::RolledBack => bail!(
                    "the upgrade ended in {}: {}\n{}",
                    phase_name(phase),
                    status.error,
                    cycles(&status)
                ),
                _ => {}
            }
            if phase != last_phase {
                println!(
                    "[{:>8.2} s] {:<18} {}",
                    started.elapsed().as_secs_f64(),
                    phase_name(phase),
                    status.phase_detail
                );
                last_phase = phase;
            } else if event.documents_expected > 0 && printed.elapsed() >= PROGRESS_EVERY {
                println!(
                    "[{:>8.2} s]   copied {}/{} documents, {:.0} docs/s",
                    started.elapsed().as_secs_f64(),
                    event.documents_copied,
                    event.documents_expected,
                    event.docs_per_sec
                );
                printed = Instant::now();
            }
            if phase == Phase::ReverseSync {
                let from = copying.saturating_sub(WINDOW_MARGIN.as_micros() as u64);
                return Ok((from, switched.unwrap_or_else(since)));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("green did not serve within {timeout:?}");
        }
        tokio::time::sleep(REWATCH_AFTER).await;
    }
}
