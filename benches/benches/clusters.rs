//! Cluster benchmarks: what the topology costs, not how it scales (this machine's cores do
//! not grow with the node count; scaling across machines is measured with CPU-capped
//! containers).
//!
//! - `topology`: cycle 1 of an upgrade, identity transform, blue and green clusters on
//!   loopback, 1 → 1, 2 → 2 and 3 → 2 in one run, each pipeline running inside its green
//!   node (`Pipelines.Copy`); the N → M rates as ratios of the 1 → 1 rate of the same run.
//! - `forward`: 64 keep-alive clients (then one) doing GETs of 200-byte documents on one
//!   node of a two-node cluster, of a document that node owns and of one its peer owns
//!   (forwarded); the p50 the forward adds, in rounds that take both in turn.
//!
//! `cargo bench --workspace --bench clusters` for the figures; `cargo test` runs it at smoke
//! size.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use cutover_benches::{
    Size, first_cycle,
    fixture::{self, Running, cluster, load_cluster},
    median, rate, report, wanted,
};
use cutover_node::{
    cluster::Cluster,
    store::{SyncPolicy, partition_of, schema::DEFAULT_PARTITIONS},
};
use cutover_orchestrator::engine::Engine;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use tokio::net::TcpStream;

/// Closed-loop clients of the forwarding benchmark.
const CLIENTS: usize = 64;

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
    if wanted("forward") {
        forwarded(size).await?;
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

/// The p50 a forward adds: GETs on one node of a two-node cluster of a document it owns and
/// of one its peer owns, in alternating rounds.
async fn forwarded(size: Size) -> anyhow::Result<()> {
    let (nodes, file) = cluster(2, DEFAULT_PARTITIONS, SyncPolicy::Always).await?;
    let file = file.context("a cluster of two")?;
    load_cluster(&nodes, Some(&file), 1_000).await?;
    let entry = &file.members()[0].name;
    let owned = |n: u64, mine: bool| owner_is(&file, &fixture::id(n), entry) == mine;
    let local = (0..).find(|n| owned(*n, true)).map(fixture::id);
    let remote = (0..).find(|n| owned(*n, false)).map(fixture::id);
    let (local, remote) = (local.context("a local id")?, remote.context("a remote id")?);
    let seconds = size.pick(5, 1);
    let rounds = size.pick(3, 1);
    // 64 clients saturate this machine's two cores, where a forward's second request
    // handling shows as queueing; one client shows the hop itself.
    for clients in [CLIENTS, 1] {
        let (mut on_owner, mut via_peer) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            on_owner.push(closed_loop(nodes[0].http, &local, clients, seconds).await?);
            via_peer.push(closed_loop(nodes[0].http, &remote, clients, seconds).await?);
        }
        let (owner_p50, peer_p50) = (median(&mut on_owner), median(&mut via_peer));
        let what = format!(
            "{clients} keep-alive client{}",
            if clients > 1 { "s" } else { "" }
        );
        report(
            &format!("GET p50 on the owner, {what}"),
            owner_p50.as_secs_f64() * 1e6,
            "µs",
        );
        report(
            &format!("GET p50 forwarded to the owner, {what}"),
            peer_p50.as_secs_f64() * 1e6,
            "µs",
        );
        report(
            &format!("p50 added by the forward, {what}"),
            peer_p50.saturating_sub(owner_p50).as_secs_f64() * 1e6,
            "µs",
        );
    }
    for node in nodes {
        node.stop().await?;
    }
    Ok(())
}

fn owner_is(cluster: &Cluster, id: &str, name: &str) -> bool {
    cluster
        .owner(partition_of(id, cluster.partitions()))
        .is_some_and(|m| m.name == name)
}

/// `clients` keep-alive HTTP/1.1 connections to `addr`, each sending `GET` of document `id`
/// as soon as the previous answer arrived, for `seconds`; the median latency.
async fn closed_loop(
    addr: SocketAddr,
    id: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Duration> {
    let uri = format!("http://{addr}/v1/bench/{id}");
    let until = Instant::now() + Duration::from_secs(seconds);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (uri, latencies) = (uri.clone(), Arc::clone(&latencies));
        running.spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let mut mine = Vec::new();
            while Instant::now() < until {
                let request = Request::get(&uri).body(Empty::<bytes::Bytes>::new())?;
                let started = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                ensure!(status == 200, "GET {uri}: {status}");
                mine.push(started.elapsed());
            }
            latencies.lock().expect("not poisoned").extend(mine);
            anyhow::Ok(())
        });
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    let mut all = std::mem::take(&mut *latencies.lock().expect("not poisoned"));
    ensure!(!all.is_empty(), "no request finished");
    Ok(median(&mut all))
}
