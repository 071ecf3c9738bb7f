//! Node benchmarks (issue #3), every figure over real loopback sockets against a real
//! RocksDB store:
//!
//! - `Pull(0)` of 1M documents of ~200 bytes over gRPC, against a raw scan of the same
//!   store in the same run (the limit the network path is compared with);
//! - a delta pull of 10K changes on a 1M-document store and on a 4M-document store, and the
//!   ratio of the two times (a delta must cost O(changes), not O(store));
//! - HTTP `PUT` throughput with 64 concurrent keep-alive clients, fsync on and off;
//! - `forward`: HTTP `GET`s of 200-byte documents through one node of a two-node cluster, of
//!   documents it owns and of documents the other node owns (forwarded to it), with 1 and with
//!   64 keep-alive clients: the latency a forward adds (issue #25).
//!
//! `cargo bench --workspace --bench node` for the figures; `cargo test` runs it at
//! smoke size.

use std::{
    net::SocketAddr,
    ops::ControlFlow,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use cutover_benches::{
    Size,
    fixture::{BODY_BYTES, Running, body, id, load, write},
    median, rate, report, wanted,
};
use cutover_node::store::{PullSpec, Store, SyncPolicy, partition_of};
use cutover_proto::v1::{PullRequest, pull_response::Kind, source_client::SourceClient};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

struct Plan {
    store_small: u64,
    store_large: u64,
    delta: u64,
    pull_repeats: usize,
    delta_repeats: usize,
    put_clients: usize,
    put_duration: Duration,
    forward_docs: u64,
}

fn main() -> anyhow::Result<()> {
    let size = Size::from_args();
    let plan = Plan {
        store_small: size.pick(1_000_000, 10_000),
        store_large: size.pick(4_000_000, 40_000),
        delta: size.pick(10_000, 500),
        pull_repeats: size.pick(3, 1),
        delta_repeats: size.pick(15, 2),
        put_clients: size.pick(64, 8),
        put_duration: size.pick(Duration::from_secs(10), Duration::from_millis(500)),
        forward_docs: size.pick(100_000, 1_000),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(size, plan))
}

async fn run(size: Size, plan: Plan) -> anyhow::Result<()> {
    cutover_daemon::metrics::install()?;
    println!("# node benchmarks ({size:?} size)");
    if wanted("pull") || wanted("delta") {
        pull_and_delta(&plan).await?;
    }
    if wanted("put") {
        // HTTP PUT, 64 keep-alive clients: fsync per acknowledged write (the default), then OS.
        for (policy, name) in [
            (SyncPolicy::Always, "sync=always"),
            (SyncPolicy::Os, "sync=os"),
        ] {
            let node = Running::start(policy).await?;
            let (done, elapsed) = put_load(node.http, plan.put_clients, plan.put_duration).await?;
            let live = node.store.live_documents()?;
            ensure!(
                live == done,
                "{done} PUTs acknowledged but {live} documents stored"
            );
            report(
                &format!("HTTP PUT, {} keep-alive clients, {name}", plan.put_clients),
                rate(done, elapsed),
                "docs/s",
            );
            node.stop().await?;
        }
    }
    if wanted("forward") {
        forwarding(&plan).await?;
    }
    Ok(())
}

/// GETs through node `a` of a two-node cluster, of documents it owns and of documents `b`
/// owns (each forwarded to `b` over a pooled connection): p50 latency and rate of each, with
/// 1 client and with `plan.put_clients`.
async fn forwarding(plan: &Plan) -> anyhow::Result<()> {
    const PARTITIONS: u32 = 64;
    let (cluster, nodes) = Running::start_cluster(SyncPolicy::Os, &["a", "b"], PARTITIONS).await?;
    let mut owned: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for n in 0..plan.forward_docs {
        let owner = cluster
            .owner(partition_of(&id(n), PARTITIONS))
            .context("every partition has an owner")?;
        owned[usize::from(owner.name == "b")].push(n);
    }
    for (node, numbers) in nodes.iter().zip(&owned) {
        let (store, numbers) = (node.store.clone(), numbers.clone());
        tokio::task::spawn_blocking(move || write(&store, &numbers, 1)).await??;
    }
    let paths = |numbers: &[u64]| -> Arc<Vec<String>> {
        Arc::new(
            numbers
                .iter()
                .map(|n| format!("/v1/bench/{}", id(*n)))
                .collect(),
        )
    };
    let (here, there) = (paths(&owned[0]), paths(&owned[1]));
    for clients in [1, plan.put_clients] {
        let local = get_load(nodes[0].http, &here, clients, plan.put_duration).await?;
        let forwarded = get_load(nodes[0].http, &there, clients, plan.put_duration).await?;
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        report(
            &format!("GET on the owner, {clients} clients, p50"),
            micros(local.p50),
            "us",
        );
        report(
            &format!("GET forwarded, {clients} clients, p50"),
            micros(forwarded.p50),
            "us",
        );
        report(
            &format!("GET forwarded, {clients} clients, added p50"),
            micros(forwarded.p50) - micros(local.p50),
            "us",
        );
        report(
            &format!("GET on the owner, {clients} clients"),
            local.rate,
            "req/s",
        );
        report(
            &format!("GET forwarded, {clients} clients"),
            forwarded.rate,
            "req/s",
        );
    }
    for node in nodes {
        node.stop().await?;
    }
    Ok(())
}

/// What a GET load measured.
struct Latency {
    p50: Duration,
    rate: f64,
}

/// `clients` keep-alive connections each GETting `paths` in turn (each from its own offset)
/// back to back for `duration`; every answer must be 200.
async fn get_load(
    addr: SocketAddr,
    paths: &Arc<Vec<String>>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (stop, paths) = (Arc::clone(&stop), Arc::clone(paths));
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut times = Vec::new();
            let mut i = client * 7919;
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::get(paths[i % paths.len()].as_str())
                    .header(http::header::HOST, "bench")
                    .body(Full::new(Bytes::new()))?;
                let sent = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                times.push(sent.elapsed());
                ensure!(status == http::StatusCode::OK, "GET answered {status}");
                i += 1;
            }
            anyhow::Ok(times)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.context("GET client")??);
    }
    let elapsed = started.elapsed();
    Ok(Latency {
        rate: rate(times.len() as u64, elapsed),
        p50: median(&mut times),
    })
}

async fn pull_and_delta(plan: &Plan) -> anyhow::Result<()> {
    let node_small = Running::start(SyncPolicy::Always).await?;

    // 1M documents: Pull(0) against a raw scan of the same store.
    load(&node_small.store, 0, plan.store_small, 1).await?;
    if wanted("pull") {
        pull_full(&node_small, plan).await?;
    }
    if !wanted("delta") {
        return node_small.stop().await;
    }

    // The delta of 10K changes on a 1M-document store and on a 4M-document store, pulled in
    // turns (small, large, small, …) so that drift on a shared machine hits both alike.
    let large = Running::start(SyncPolicy::Always).await?;
    load(&large.store, 0, plan.store_large, 1).await?;
    let small_since = write_delta(&node_small, plan.store_small, plan).await?;
    let large_since = write_delta(&large, plan.store_large, plan).await?;
    let (mut small_times, mut large_times) = (Vec::new(), Vec::new());
    for _ in 0..plan.delta_repeats {
        small_times.push(delta_pull(&node_small, small_since, plan).await?);
        large_times.push(delta_pull(&large, large_since, plan).await?);
    }
    let (small, large_time) = (median(&mut small_times), median(&mut large_times));
    report(
        &format!("delta pull of {} on {} docs", plan.delta, plan.store_small),
        small.as_secs_f64() * 1e3,
        "ms",
    );
    report(
        &format!("delta pull of {} on {} docs", plan.delta, plan.store_large),
        large_time.as_secs_f64() * 1e3,
        "ms",
    );
    report(
        "delta time, large store / small store",
        large_time.as_secs_f64() / small.as_secs_f64(),
        "ratio",
    );
    large.stop().await?;
    node_small.stop().await
}

async fn pull_full(node: &Running, plan: &Plan) -> anyhow::Result<()> {
    let head = node.store.head_seq();
    let (scan_docs, scan_elapsed) = raw_scan(&node.store, 0).await?;
    ensure!(
        scan_docs == plan.store_small,
        "raw scan saw {scan_docs} documents"
    );
    report(
        "raw scan of the change index (limit)",
        rate(scan_docs, scan_elapsed),
        "docs/s",
    );
    let mut pulls = Vec::new();
    for _ in 0..plan.pull_repeats {
        let pulled = pull(node.grpc, 0).await?;
        ensure!(
            pulled.documents == plan.store_small,
            "Pull(0) delivered {} documents",
            pulled.documents
        );
        ensure!(
            pulled.high_watermark == head,
            "Pull(0) ended at {} not {head}",
            pulled.high_watermark
        );
        pulls.push(pulled.elapsed);
    }
    let pull_time = median(&mut pulls);
    let pull_rate = rate(plan.store_small, pull_time);
    report("Pull(0) over loopback gRPC", pull_rate, "docs/s");
    report(
        "Pull(0) over loopback gRPC, bodies",
        rate(plan.store_small * BODY_BYTES as u64, pull_time) / 1e6,
        "MB/s",
    );
    report(
        "Pull(0) / raw scan",
        pull_rate / rate(scan_docs, scan_elapsed),
        "ratio",
    );
    Ok(())
}

/// Updates `plan.delta` documents spread over a store of `size` (to version 2); returns the
/// head before them, the `since` of a pull of exactly those changes.
async fn write_delta(node: &Running, size: u64, plan: &Plan) -> anyhow::Result<u64> {
    let since = node.store.head_seq();
    let stride = size / plan.delta;
    let store = node.store.clone();
    let count = plan.delta;
    tokio::task::spawn_blocking(move || {
        let numbers: Vec<u64> = (0..count).map(|k| k * stride + k % stride.max(1)).collect();
        write(&store, &numbers, 2)
    })
    .await??;
    Ok(since)
}

/// One timed pull of the delta written by [`write_delta`].
async fn delta_pull(node: &Running, since: u64, plan: &Plan) -> anyhow::Result<Duration> {
    let pulled = pull(node.grpc, since).await?;
    ensure!(
        pulled.documents == plan.delta,
        "delta pull delivered {} of {}",
        pulled.documents,
        plan.delta
    );
    Ok(pulled.elapsed)
}

struct Pulled {
    documents: u64,
    high_watermark: u64,
    elapsed: Duration,
}

async fn pull(grpc: SocketAddr, since: u64) -> anyhow::Result<Pulled> {
    let channel = cutover_proto::endpoint(format!("http://{grpc}"))?
        .connect()
        .await?;
    let mut client = SourceClient::new(channel);
    let started = Instant::now();
    let mut stream = client
        .pull(PullRequest {
            since,
            partitions: vec![],
            max_batch_documents: 0,
            max_batch_bytes: 0,
        })
        .await?
        .into_inner();
    let mut documents = 0u64;
    let mut last = since;
    while let Some(message) = stream.message().await? {
        match message.kind {
            Some(Kind::Batch(batch)) => {
                for doc in &batch.documents {
                    ensure!(doc.seq > last, "seq {} after {last}", doc.seq);
                    last = doc.seq;
                }
                documents += batch.documents.len() as u64;
            }
            Some(Kind::Complete(complete)) => {
                ensure!(
                    complete.documents == documents,
                    "complete says {} but {documents} came",
                    complete.documents
                );
                return Ok(Pulled {
                    documents,
                    high_watermark: complete.high_watermark,
                    elapsed: started.elapsed(),
                });
            }
            None => bail!("an empty Pull message"),
        }
    }
    bail!("the Pull stream ended without PullComplete")
}

/// The same scan `Pull` does, without the network: the limit the gRPC path is compared with.
async fn raw_scan(store: &Store, since: u64) -> anyhow::Result<(u64, Duration)> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut bytes = 0u64;
        let summary = store.scan_changes(
            &PullSpec {
                since,
                partitions: vec![],
            },
            |_, change| {
                bytes += change.body.len() as u64;
                ControlFlow::Continue(())
            },
        )?;
        std::hint::black_box(bytes);
        Ok((summary.documents, started.elapsed()))
    })
    .await?
}

/// `clients` keep-alive connections each PUTting new documents back to back for `duration`.
async fn put_load(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::put(format!("/v1/bench/c{client}-{i}"))
                    .header(http::header::HOST, "bench")
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body(i, 1))))?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                ensure!(status == http::StatusCode::CREATED, "PUT answered {status}");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.context("PUT client")??;
    }
    Ok((done.load(Ordering::Relaxed), started.elapsed()))
}

/// One HTTP/1.1 connection to `addr` without Nagle's delay, its driver spawned.
async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
