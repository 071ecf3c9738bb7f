//! End-to-end tests: real processes of the built `cutover` binary on loopback.
//!
//! Compiled as the `e2e` integration test of `cutover-orchestrator` (see its Cargo.toml) so
//! that `CARGO_BIN_EXE_cutover` points at the binary cargo built for this run.

use cutover_proto::v1::{
    ApplyRequest, DigestRequest, DigestResponse, Document, sink_client::SinkClient,
    source_client::SourceClient,
};
use std::time::Duration;

use cutover_tests::harness::{Binary, Cluster, NodeProcess, OrchestratorProcess, wait_until};
use serde_json::Value;

mod bounds;
mod cli;
mod clusters;
mod cutover;
mod engine;
mod native;
mod node;
mod offline;
mod openapi;
mod page;
mod prometheus;
mod proxy;
mod resize;
mod tls;

/// `method path` with `headers` and `body` to `addr`, the answer read whole.
fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> cutover_tests::harness::http::HttpResponse {
    cutover_tests::harness::http::request(addr, method, path, headers, body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

/// A cluster running the binary under test.
fn cluster() -> Cluster {
    Cluster::new(Binary::new(env!("CARGO_BIN_EXE_cutover"))).expect("a temporary cluster root")
}

/// Writes the plan `text` as `name` in the cluster's `plans` folder; its path.
fn write_plan(cluster: &Cluster, name: &str, text: &str) -> String {
    let path = cluster.dir("plans").expect("plans dir").join(name);
    std::fs::write(&path, text).expect("plan written");
    path.display().to_string()
}

/// A single-threaded tokio runtime for a test's gRPC calls.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Writes `documents` (version set, seq ignored) into `node` through its `Sink`, in batches of
/// 1,000 (much faster than one HTTP PUT each), with its bearer `token` when it has one.
fn apply(node: &NodeProcess, token: Option<&str>, documents: Vec<Document>) {
    let endpoint = tonic::transport::Endpoint::from_shared(node.grpc_url()).expect("an endpoint");
    apply_over(endpoint, token, documents);
}

/// [`apply`] through `endpoint` (over TLS, say).
fn apply_over(endpoint: tonic::transport::Endpoint, token: Option<&str>, documents: Vec<Document>) {
    runtime().block_on(async {
        let channel = endpoint.connect().await.expect("sink");
        let bearer: Option<tonic::metadata::MetadataValue<_>> =
            token.map(|t| format!("Bearer {t}").parse().expect("ascii"));
        let mut sink =
            SinkClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
                if let Some(value) = &bearer {
                    request
                        .metadata_mut()
                        .insert("authorization", value.clone());
                }
                Ok(request)
            });
        let batches: Vec<ApplyRequest> = documents
            .chunks(1_000)
            .enumerate()
            .map(|(b, chunk)| ApplyRequest {
                batch_id: b as u64 + 1,
                documents: chunk.to_vec(),
            })
            .collect();
        let n = batches.len();
        let mut acks = sink
            .apply(tokio_stream::iter(batches))
            .await
            .expect("apply")
            .into_inner();
        for _ in 0..n {
            acks.message().await.expect("ack").expect("an ack a batch");
        }
    });
}

/// `cutover upgrade ARGS --orchestrator URL --output json` in `cluster`: the exit code and
/// the JSON (the output as a string when it is not JSON).
fn upgrade(cluster: &Cluster, orchestrator: &OrchestratorProcess, args: &[&str]) -> (i32, Value) {
    let url = orchestrator.url();
    let mut all = vec!["upgrade", "--orchestrator", &url, "--output", "json"];
    all.extend_from_slice(args);
    let out = cluster.run(&all).expect("cutover upgrade runs");
    let value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|_| Value::String(format!("{}{}", out.stdout, out.stderr)));
    (out.code.unwrap_or(-1), value)
}

/// Waits up to two minutes for the upgrade's phase to be one of `wanted`; its status. On a
/// timeout, panics showing the last status it saw.
fn wait_phase(cluster: &Cluster, orchestrator: &OrchestratorProcess, wanted: &[&str]) -> Value {
    let last = std::cell::RefCell::new(Value::Null);
    wait_until(
        &format!("phase {wanted:?}"),
        Duration::from_secs(120),
        || {
            let (code, status) = upgrade(cluster, orchestrator, &["status"]);
            let phase = status["phase"].as_str().unwrap_or_default();
            let reached = code == 0 && wanted.contains(&phase);
            *last.borrow_mut() = status.clone();
            reached.then_some(status)
        },
    )
    .unwrap_or_else(|e| panic!("{e}; the last status: {}", last.borrow()))
}

/// Waits up to two minutes for a rehearsal to end (its detail says `rehearsal done`); its
/// status.
fn wait_rehearsal(cluster: &Cluster, orchestrator: &OrchestratorProcess) -> Value {
    wait_until("the rehearsal", Duration::from_secs(120), || {
        let (_, status) = upgrade(cluster, orchestrator, &["status"]);
        let detail = status["phase_detail"].as_str().unwrap_or_default();
        detail.starts_with("rehearsal done").then_some(status)
    })
    .expect("the rehearsal ends")
}

/// `node`'s per-partition counts and digests, from its `Source`.
fn digest(node: &NodeProcess) -> DigestResponse {
    runtime().block_on(async {
        let mut source = SourceClient::connect(node.grpc_url())
            .await
            .expect("source");
        source
            .digest(DigestRequest::default())
            .await
            .expect("digest")
            .into_inner()
    })
}
