//! Cutover benchmark (issue #6): blue loaded with 1M documents (~200 bytes), a live client
//! load of 2,000 requests/s through the proxy (reads, updates with `If-Match`, deletes,
//! creations), the engine inside green, with two schema changes: a field renamed plus a
//! version tag (`rename`, the transform's fast path) and the demo's split of `name` into two
//! fields (`split`, the jq engine). Reported: the cycle series,
//! then the cutover with a final delta of ~10K documents (10,000 documents rewritten on blue
//! while the upgrade is postponed at the threshold, then `proceed`): the final cycle, the
//! hold the proxy measured, the latency the clients saw (max and p99 added over the median),
//! client errors and lost acknowledged writes (both must be 0).
//!
//! `cargo bench --workspace --bench cutover` for the figures; `cargo test` runs it at smoke
//! size and checks the zeros.

use std::time::Duration;

use anyhow::{bail, ensure};
use cutover_benches::{Size, report, wanted};
use cutover_orchestrator::demo::{
    follow,
    load::{self, Ledger, Load, LoadConfig},
    report::{cycles, pause},
    rig::{FORWARD, REVERSE, Rig},
};
use cutover_proto::v1::Phase;

/// Ids of the documents rewritten to make the final delta (outside the load's keys).
fn bulk_id(n: u64) -> String {
    format!("bulk-{n:08}")
}

/// A schema change the fast path runs (a renamed field and a version tag), and its reverse.
const RENAME: (&str, &str) = (
    ".full_name = .name | del(.name) | .schema = 2",
    ".name = .full_name | del(.full_name, .schema)",
);

fn main() -> anyhow::Result<()> {
    let size = Size::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let figures = (
        size.pick(1_000_000, 5_000),
        size.pick(10_000, 500),
        size.pick(2_000, 200),
    );
    runtime.block_on(async {
        if wanted("rename") {
            run("rename (fast path)", RENAME, figures).await?;
        }
        if wanted("split") {
            run("split name (jq engine)", (FORWARD, REVERSE), figures).await?;
        }
        Ok(())
    })
}

async fn run(
    name: &str,
    (forward, reverse): (&str, &str),
    (documents, delta, rate): (u64, u64, u32),
) -> anyhow::Result<()> {
    println!(
        "# cutover benchmark, {name}: {documents} documents, {rate} req/s, final delta {delta}"
    );
    let rig = Rig::start().await?;
    rig.blue.preload(0..documents, 1, load::id).await?;
    rig.blue.preload(0..delta, 1, bulk_id).await?;
    let config = LoadConfig {
        targets: vec![rig.proxy],
        rate,
        keys: documents,
        workers: 32,
    };
    let load = Load::start(&config, Ledger::default());
    rig.engine
        .start(
            &rig.plan_with("postpone = true\n", forward, reverse),
            "bench.toml",
            false,
        )
        .await?;
    let (status, _) = follow(&rig.engine, &load, Phase::Postponed).await?;
    // The final delta: `delta` documents rewritten on blue, then proceed at once.
    rig.blue.preload(0..delta, 2, bulk_id).await?;
    rig.engine.proceed().await?;
    let (status_after, (from, to)) = follow(&rig.engine, &load, Phase::ReverseSync).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let finished = load.stop().await;
    let seen = pause(&finished.latencies, from, to);

    println!("\ncycles until the threshold:\n{}", cycles(&status));
    println!("all cycles:\n{}", cycles(&status_after));
    let last = status_after
        .cycles
        .iter()
        .find(|c| c.final_cycle)
        .cloned()
        .unwrap_or_default();
    report("final cycle, documents", last.documents as f64, "docs");
    report(
        "final cycle, duration",
        last.duration_micros as f64 / 1e3,
        "ms",
    );
    let max_hold = status_after
        .holds
        .iter()
        .map(|h| h.max_hold_micros)
        .max()
        .unwrap_or(0);
    let held: u64 = status_after.holds.iter().map(|h| h.held).sum();
    report("requests held by the proxy", held as f64, "requests");
    report("longest hold (proxy)", max_hold as f64 / 1e3, "ms");
    report(
        "client latency during the switch, max",
        seen.max_micros as f64 / 1e3,
        "ms",
    );
    report(
        "client latency added, max",
        seen.max_added_micros() as f64 / 1e3,
        "ms",
    );
    report(
        "client latency added, p99",
        seen.p99_added_micros() as f64 / 1e3,
        "ms",
    );
    report(
        "client median latency outside the switch",
        seen.baseline_p50_micros as f64 / 1e3,
        "ms",
    );
    let errors = finished.errors;
    report("client requests", finished.requests as f64, "requests");
    report("client errors", errors as f64, "errors");
    let lost = finished.ledger.check(|id| rig.green.stored(id));
    report("lost acknowledged writes", lost.len() as f64, "writes");
    rig.stop().await;
    ensure!(errors == 0, "client errors: {:?}", finished.error_samples);
    if !lost.is_empty() {
        bail!("lost acknowledged writes: {:?}", &lost[..lost.len().min(5)]);
    }
    ensure!(last.documents >= 1, "the final cycle copied something");
    Ok(())
}
