//! Cluster benchmark: what the copy topology costs, not how it scales (this machine's cores
//! do not grow with the node count; scaling across machines is measured with CPU-capped
//! containers). Cycle 1 of an upgrade, identity transform, blue and green clusters on
//! loopback, 1 → 1, 2 → 2 and 3 → 2 in one run, each pipeline running inside its green node
//! (`Pipelines.Copy`); the N → M rates as ratios of the 1 → 1 rate of the same run. The cost
//! of forwarding a request inside a cluster is the node benchmark's (`--bench node -- forward`).
//!
//! `cargo bench --workspace --bench clusters` for the figures; `cargo test` runs it at smoke
//! size.

use std::time::Duration;

use anyhow::ensure;
use cutover_benches::{
    Size, first_cycle,
    fixture::{Running, cluster, load_cluster},
    rate, report, wanted,
};
use cutover_node::store::{SyncPolicy, schema::DEFAULT_PARTITIONS};
use cutover_orchestrator::engine::Engine;

fn main() -> anyhow::Result<()> {
    let size = Size::from_args();
    let documents = size.pick(1_000_000, 20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(size, documents))
}

async fn run(size: Size, documents: u64) -> anyhow::Result<()> {
    cutover_daemon::metrics::install()?;
    println!("# cluster benchmarks ({size:?} size, {documents} documents)");
    if wanted("topology") {
        let mut one_to_one = None;
        for (blue, green) in [(1, 1), (2, 2), (3, 2)] {
            let copied = cycle_one(blue, green, documents).await?;
            report(
                &format!("cycle 1, {blue} → {green}, identity, pipelines in the green nodes"),
                copied,
                "docs/s",
            );
            match one_to_one {
                None => one_to_one = Some(copied),
                Some(base) => report(
                    &format!("cycle 1, {blue} → {green} / 1 → 1"),
                    copied / base,
                    "ratio",
                ),
            }
        }
    }
    Ok(())
}

/// Cycle 1 from a blue cluster of `blue` nodes loaded with `documents` into a fresh green
/// cluster of `green` nodes; its documents per second, after checking that each green node
/// holds exactly its partitions' documents.
async fn cycle_one(blue: usize, green: usize, documents: u64) -> anyhow::Result<f64> {
    let (blues, blue_file) = cluster(blue, DEFAULT_PARTITIONS, SyncPolicy::Always).await?;
    load_cluster(&blues, blue_file.as_ref(), documents).await?;
    let (greens, green_file) = cluster(green, DEFAULT_PARTITIONS, SyncPolicy::Always).await?;
    let dir = tempfile::Builder::new()
        .prefix("cutover-bench-")
        .tempdir()?;
    // A standalone orchestrator: every pipeline runs inside its green node.
    let engine = Engine::open(&dir.path().join("journal"), None)?;
    let list = |nodes: &[Running]| {
        nodes
            .iter()
            .map(|n| format!("\"http://{}\"", n.grpc))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plan = format!(
        "pause_budget = \"10s\"\n[blue]\nsources = [{}]\n[green]\nsinks = [{}]\n",
        list(&blues),
        list(&greens)
    );
    engine.start(&plan, "bench.toml", true).await?;
    let status = first_cycle(&engine).await;
    engine.shutdown().await;
    let status = status?;
    let cycle = &status.cycles[0];
    ensure!(
        cycle.documents == documents,
        "cycle 1 copied {}",
        cycle.documents
    );
    ensure!(
        status.pipelines.iter().all(|p| p.run_by_sink),
        "every pipeline runs in its green node: {:?}",
        status.pipelines
    );
    let mut held = 0;
    for (i, node) in greens.iter().enumerate() {
        held += node.store.live_documents()?;
        if let Some(file) = &green_file {
            let owns = file.owned_by(&file.members()[i].name);
            let stray = node
                .store
                .digest(&[])?
                .partitions
                .iter()
                .filter(|p| !owns.contains(&p.partition))
                .map(|p| p.live_documents)
                .sum::<u64>();
            ensure!(
                stray == 0,
                "green node {i} holds {stray} documents it does not own"
            );
        }
    }
    ensure!(held == documents, "green holds {held} documents");
    for node in blues.into_iter().chain(greens) {
        node.stop().await?;
    }
    Ok(rate(
        cycle.documents,
        Duration::from_micros(cycle.duration_micros),
    ))
}
