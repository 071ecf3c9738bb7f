//! `cutover demo`: the whole story in one process on loopback. A blue node (or cluster)
//! loaded with N documents, a proxy in front of it, a client load through the proxy for the
//! whole run, a green node (or cluster of another size) with the engine inside it, a plan whose transform changes the schema (and its
//! reverse); then the upgrade with its cycle table, the pause the clients saw and a check of
//! every acknowledged write on green; then the rollback with the same report against blue.

pub mod ledger;
pub mod load;
pub mod report;
pub mod rig;

use std::{
    io::{IsTerminal, Write},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use cutover_proto::v1::{Phase, UpgradeStatus};

use crate::engine::Engine;
use load::{Ledger, Load, LoadConfig};
use rig::{Colour, Rig};

/// Concurrent clients of the load.
const CLIENTS: u32 = 32;
/// How long the load runs on each side after a switch before it is checked.
const AFTER_SWITCH: Duration = Duration::from_secs(2);
/// Longest an upgrade or rollback may take before the demo gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// What the demo is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct DemoConfig {
    /// Documents loaded into blue.
    pub docs: u64,
    /// Client requests per second through the proxy.
    pub rate: u32,
    /// Blue nodes: one, or a cluster.
    pub blue_nodes: usize,
    /// Green nodes: one, or a cluster of any size (the upgrade is then a resize).
    pub green_nodes: usize,
}

/// One side's outcome: what the checks found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Client requests that failed.
    pub errors: u64,
    /// Acknowledged writes not found with their last value.
    pub lost: usize,
}

/// Runs the demo, printing as it goes; fails when a check does not hold.
pub async fn run(config: DemoConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let rig = Rig::resize(config.blue_nodes, config.green_nodes).await?;
    if config.blue_nodes + config.green_nodes > 2 {
        println!(
            "a resize: {} blue nodes to {} green nodes, each colour a cluster of {} partitions",
            config.blue_nodes,
            config.green_nodes,
            cutover_node::store::schema::DEFAULT_PARTITIONS
        );
    }
    println!("loading blue with {} documents…", config.docs);
    let loading = Instant::now();
    rig.blue.preload(0..config.docs, 1, load::id).await?;
    println!("  loaded in {:.1} s", loading.elapsed().as_secs_f64());
    let plan = rig.plan("");
    println!("\nplan:\n{}", indent(&plan));

    let load_config = LoadConfig {
        targets: vec![rig.proxy],
        rate: config.rate,
        keys: config.docs,
        workers: CLIENTS,
    };
    println!(
        "client load: {} requests/s through the proxy at {} (reads, updates with If-Match, \
         deletes, creations)\n",
        config.rate, rig.proxy
    );
    let load = Load::start(&load_config, Ledger::default());
    rig.engine.start(&plan, "demo-plan.toml", false).await?;
    let (status, window) = follow(&rig.engine, &load, Phase::ReverseSync).await?;
    println!(
        "\nupgrade done in {:.1} s: green serves",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(AFTER_SWITCH).await;
    let (forward, ledger) = settle(load, &status, window, &rig.green, "green").await;

    println!("\nrolling back to blue…");
    let load = Load::start(&load_config, ledger);
    tokio::time::sleep(AFTER_SWITCH).await;
    let rolling = Instant::now();
    rig.engine.rollback(false, true).await?;
    let (status, window) = follow(&rig.engine, &load, Phase::RolledBack).await?;
    println!(
        "\nrollback done in {:.2} s: blue serves",
        rolling.elapsed().as_secs_f64()
    );
    tokio::time::sleep(AFTER_SWITCH).await;
    let (back, _) = settle(load, &status, window, &rig.blue, "blue").await;
    rig.stop().await;

    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if forward.errors + back.errors > 0 || forward.lost + back.lost > 0 {
        bail!(
            "checks failed: {} client errors, {} lost acknowledged writes",
            forward.errors + back.errors,
            forward.lost + back.lost
        );
    }
    println!("all checks passed: 0 client errors, 0 lost acknowledged writes");
    Ok(())
}

/// Follows the upgrade until `until`, printing phases and progress; returns the last status
/// and the switch window (from the pause to the switch, µs since the load began).
pub async fn follow(
    engine: &Arc<Engine>,
    load: &Load,
    until: Phase,
) -> anyhow::Result<(UpgradeStatus, (u64, u64))> {
    let tty = std::io::stdout().is_terminal();
    let mut events = engine.watch();
    let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
    let mut last_phase = Phase::Unspecified;
    let (mut from, mut to) = (u64::MAX, 0);
    let since = |load: &Load| load.started.elapsed().as_micros() as u64;
    loop {
        let event = events.borrow_and_update().clone();
        let status = event.status.clone().unwrap_or_default();
        let phase = status.phase();
        if phase != last_phase {
            if matches!(phase, Phase::Pausing | Phase::RollingBack) {
                from = from.min(since(load));
            }
            // The channel keeps only the latest status: SWITCHED may be skipped.
            if to == 0
                && matches!(
                    phase,
                    Phase::Switched | Phase::ReverseSync | Phase::RolledBack
                )
            {
                to = since(load);
            }
            println!(
                "{}[{:>6.2} s] {:<18} {}",
                if tty { "\r\x1b[K" } else { "" },
                load.started.elapsed().as_secs_f64(),
                crate::engine::metrics::phase_name(phase),
                status.phase_detail
            );
            last_phase = phase;
        } else if tty && event.documents_expected > 0 {
            print!(
                "\r\x1b[K  copying {}/{} documents, {:.0} docs/s",
                event.documents_copied, event.documents_expected, event.docs_per_sec
            );
            let _ = std::io::stdout().flush();
        }
        if phase == until {
            return Ok((status, (from, to.max(from))));
        }
        if matches!(phase, Phase::Aborted | Phase::Failed) {
            bail!("the upgrade ended in {phase:?}: {}", status.error);
        }
        tokio::select! {
            changed = events.changed() => changed.context("the engine stopped")?,
            () = tokio::time::sleep_until(deadline) => bail!("no {until:?} within {PHASE_TIMEOUT:?}"),
        }
    }
}

/// Stops the load, prints the cycle table and the pause, and checks every acknowledged write
/// against `store`.
pub async fn settle(
    load: Load,
    status: &UpgradeStatus,
    (from, to): (u64, u64),
    colour: &Colour,
    side: &str,
) -> (Checked, Ledger) {
    let seen = load.stop().await;
    let pause = report::pause(&seen.latencies, from, to);
    println!("\ncycles:\n{}", report::cycles(status));
    if status.pipelines.len() > 1 {
        println!(
            "pipelines (their last cycle):\n{}",
            report::pipelines(status)
        );
    }
    println!(
        "the pause clients saw: {} requests held by the proxy (longest hold {} ms); client \
         latency during the switch: max {:.1} ms, p99 {:.1} ms, added over the {:.2} ms median: \
         max {:.1} ms, p99 {:.1} ms",
        status.holds.iter().map(|h| h.held).sum::<u64>(),
        status
            .holds
            .iter()
            .map(|h| h.max_hold_micros)
            .max()
            .unwrap_or(0)
            / 1000,
        pause.max_micros as f64 / 1e3,
        pause.p99_micros as f64 / 1e3,
        pause.baseline_p50_micros as f64 / 1e3,
        pause.max_added_micros() as f64 / 1e3,
        pause.p99_added_micros() as f64 / 1e3,
    );
    println!(
        "client requests: {} ({} writes acknowledged), errors: {}",
        seen.requests, seen.writes, seen.errors
    );
    for sample in &seen.error_samples {
        println!("  error: {sample}");
    }
    let ledger = seen.ledger;
    let lost = ledger.check(|id| colour.stored(id));
    println!(
        "check: {} keys written by clients, {} on {side} with their last acknowledged value, {} \
         lost",
        ledger.known(),
        ledger.known() - lost.len(),
        lost.len()
    );
    for l in lost.iter().take(10) {
        println!("  lost: {} expected {} found {}", l.id, l.expected, l.found);
    }
    (
        Checked {
            errors: seen.errors,
            lost: lost.len(),
        },
        ledger,
    )
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect::<String>()
}
