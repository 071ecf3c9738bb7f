//! Migration engine benchmark (issue #4): cycle 1 of an upgrade, blue → green over loopback
//! gRPC, for 2M documents of ~200 bytes, with the identity transform and with a jq program
//! that renames one field, next to the raw limit measured in the same run: a scan of blue's
//! change index written by `WriteBatch` into a plain RocksDB database, one process, no
//! network, no transform.
//!
//! The engine runs as it does in production (`cutover orchestrator`): its own journal, each
//! node a real server on 127.0.0.1, and the pipeline run inside green (`Pipelines.Copy`:
//! green pulls from blue's gRPC `Source` and writes its own store), or with the engine
//! inside green.
//! `sources`: cycle 1 from a blue cluster of two nodes (half of the partitions each) into one fresh
//! green, the engine inside green, next to one blue node with all of them, in the same run:
//! several sources feeding one store must keep the ingest path (issue #25).
//!
//! `programs` (issue #27): cycle 1 inside green with the demo's forward and reverse programs
//! and two more, each next to the identity of the same run (`cycle 1 NAME / identity`); each
//! line says which engine runs the program (`fast_path` or `jaq`).
//!
//! `tls` (issue #30): cycle 1 inside green pulled from a blue that serves mutual TLS, next to
//! plain text in the same run (`cycle 1 mutual TLS / plain text`, target ≥ 0.85).
//!
//! `cargo bench --workspace --bench engine` for the figures; `cargo test` runs it at smoke size.

use std::{
    ops::ControlFlow,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use cutover_benches::{
    Size, first_cycle,
    fixture::{Running, cluster, load, load_cluster},
    rate, report, wanted,
};
use cutover_daemon::tls::{ClientTls, Tls, TlsFiles, lab::Ca};
use cutover_node::store::{PullSpec, Store, SyncPolicy, schema::DEFAULT_PARTITIONS};
use cutover_orchestrator::{
    demo::rig::{FORWARD, REVERSE},
    engine::{
        Engine,
        transform::{Jq, Outcome, Transform},
    },
};

/// The jq program that renames one field.
const RENAME: &str = "{n, v, padding: .pad}";

/// Schema changes that compute, cycle 1 inside green next to the identity of the same run:
/// the demo's two programs exactly as `cutover demo` runs them, and two more no test uses.
const PROGRAMS: &[(&str, &str)] = &[
    ("demo forward", FORWARD),
    ("demo reverse", REVERSE),
    (
        "normalise",
        r#".email = (.email | ascii_downcase) | .domain = (.email | split("@") | .[1]) | .tier = (if .n % 3 == 0 then "gold" else "basic" end) | .label = "\(.plan)-\(.v)""#,
    ),
    (
        "restructure",
        "{id: .n, version: .v, contact: {email, name: {first: .first_name, last: .last_name}}, plan: (.plan | ascii_upcase), size: (.pad | length)}",
    ),
];

fn main() -> anyhow::Result<()> {
    let size = Size::from_args();
    let documents = size.pick(2_000_000, 20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(size, documents))
}

async fn run(size: Size, documents: u64) -> anyhow::Result<()> {
    cutover_daemon::metrics::install()?;
    println!("# engine benchmarks ({size:?} size, {documents} documents)");
    let blue = Running::start(SyncPolicy::Always).await?;
    let started = Instant::now();
    load(&blue.store, 0, documents, 1).await?;
    report(
        "load: Store::apply in batches of 2000, one thread",
        rate(documents, started.elapsed()),
        "docs/s",
    );
    let raw = if wanted("raw") || wanted("identity") {
        let (copied, elapsed) = raw_copy(&blue.store).await?;
        ensure!(copied == documents, "the raw copy wrote {copied} documents");
        let raw = rate(copied, elapsed);
        report("raw limit: scan + WriteBatch, no network", raw, "docs/s");
        Some(raw)
    } else {
        None
    };
    let mut inside_identity = None;
    if wanted("identity") {
        let identity = cycle_one(&[&blue], documents, None, false, false).await?;
        report(
            "cycle 1, identity, standalone engine, pipeline in green",
            identity,
            "docs/s",
        );
        if let Some(raw) = raw {
            report("cycle 1 identity / raw limit", identity / raw, "ratio");
        }
        let inside = cycle_one(&[&blue], documents, None, true, false).await?;
        inside_identity = Some(inside);
        report("cycle 1, identity, engine inside green", inside, "docs/s");
        if let Some(raw) = raw {
            report(
                "cycle 1 identity inside green / raw limit",
                inside / raw,
                "ratio",
            );
        }
    }
    if wanted("jq") {
        let renamed = cycle_one(&[&blue], documents, Some(RENAME), false, false).await?;
        report("cycle 1, jq rename of one field", renamed, "docs/s");
    }
    if wanted("programs") {
        // The demo's program as jaq runs it, for a same-run "before": `label` keeps a program
        // off the fast path's reader, so jaq runs it as written, as it ran every program with
        // `split` before issue #27.
        let on_jaq = format!("label $jaq | {FORWARD}");
        let programs = PROGRAMS
            .iter()
            .copied()
            .chain([("demo forward on jaq", on_jaq.as_str())]);
        for (name, program) in programs {
            let runs_on = Jq::compile(program).map_err(anyhow::Error::msg)?.runner();
            let rate = cycle_one(&[&blue], documents, Some(program), true, false).await?;
            report(
                &format!("cycle 1, {name} ({}), engine inside green", runs_on.name()),
                rate,
                "docs/s",
            );
            if let Some(identity) = inside_identity {
                report(
                    &format!("cycle 1 {name} / identity inside green"),
                    rate / identity,
                    "ratio",
                );
            }
        }
    }
    if wanted("tls") {
        over_tls(&blue, documents).await?;
    }
    if wanted("sources") {
        several_sources(&blue, documents).await?;
    }
    blue.stop().await
}

/// Cycle 1 from two blue nodes holding half of `blue`'s documents each into one green, the
/// engine inside green, against `blue` alone into another: both in this run.
/// Cycle 1 pulled from blue over mutual TLS, next to plain text in the same run: a second
/// blue holding the same documents serves its ports with a certificate of a lab CA; the
/// engine inside green presents green's certificate and verifies blue's.
async fn over_tls(blue: &Running, documents: u64) -> anyhow::Result<()> {
    let pki = tempfile::Builder::new().prefix("cutover-pki-").tempdir()?;
    let ca = Ca::open_or_create(pki.path())?;
    let sans = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (blue_cert, blue_key) = ca.issue_to(pki.path(), "blue", &sans, 1)?;
    let (green_cert, green_key) = ca.issue_to(pki.path(), "green", &sans, 1)?;
    let ca_file = pki.path().join(cutover_daemon::tls::lab::CA_CERT);
    ClientTls::load(Some(&ca_file), Some((&green_cert, &green_key)), false)?.install();
    let tls = Tls::load(TlsFiles {
        cert: blue_cert,
        key: blue_key,
        client_ca: Some(ca_file),
    })?;
    let secured = Running::start_tls(SyncPolicy::Always, tls).await?;
    load(&secured.store, 0, documents, 1).await?;
    // Plain, TLS, plain, TLS: the machine's drift falls on both alike.
    let (mut plain, mut mutual) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        plain.push(cycle_one(&[blue], documents, None, true, false).await?);
        mutual.push(cycle_one(&[&secured], documents, None, true, true).await?);
    }
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    let (plain, mutual) = (mean(&plain), mean(&mutual));
    report(
        "cycle 1, identity, inside green, plain text",
        plain,
        "docs/s",
    );
    report(
        "cycle 1, identity, inside green, mutual TLS",
        mutual,
        "docs/s",
    );
    report("cycle 1 mutual TLS / plain text", mutual / plain, "ratio");
    secured.stop().await?;
    Ok(())
}

async fn several_sources(blue: &Running, documents: u64) -> anyhow::Result<()> {
    // A blue cluster of two nodes, each owning half of the partitions and their documents.
    let (halves, file) = cluster(2, DEFAULT_PARTITIONS, SyncPolicy::Always).await?;
    load_cluster(&halves, file.as_ref(), documents).await?;
    let one = cycle_one(&[blue], documents, None, true, false).await?;
    report("cycle 1, identity, 1 source -> green inside", one, "docs/s");
    let two = cycle_one(&[&halves[0], &halves[1]], documents, None, true, false).await?;
    report(
        "cycle 1, identity, 2 sources -> green inside",
        two,
        "docs/s",
    );
    report("cycle 1, 2 sources / 1 source", two / one, "ratio");
    for node in halves {
        node.stop().await?;
    }
    Ok(())
}

/// Runs an upgrade from the `blue` nodes to one fresh green node until cycle 1 is recorded;
/// returns its documents per second, after checking that green holds every document.
async fn cycle_one(
    blue: &[&Running],
    documents: u64,
    program: Option<&str>,
    inside_green: bool,
    tls: bool,
) -> anyhow::Result<f64> {
    let green = Running::start(SyncPolicy::Always).await?;
    let dir = tempfile::Builder::new()
        .prefix("cutover-bench-")
        .tempdir()?;
    let local = inside_green.then(|| green.store.clone());
    let engine = Engine::open(&dir.path().join("journal"), local)?;
    let collection = program.map_or(String::new(), |p| {
        format!("[collections.bench]\nforward = '{p}'\n")
    });
    let sources: Vec<String> = blue
        .iter()
        .map(|b| match tls {
            // The certificate names localhost (and 127.0.0.1).
            true => format!("\"https://localhost:{}\"", b.grpc.port()),
            false => format!("\"http://{}\"", b.grpc),
        })
        .collect();
    let plan = format!(
        "pause_budget = \"10s\"\n[blue]\nsources = [{}]\n[green]\nsinks = \
         [\"http://{}\"]\n{collection}",
        sources.join(", "),
        green.grpc
    );
    engine.start(&plan, "bench.toml", true).await?;
    let status = first_cycle(&engine).await?;
    let cycle = &status.cycles[0];
    ensure!(
        cycle.documents == documents,
        "cycle 1 copied {}",
        cycle.documents
    );
    engine.shutdown().await;
    let live = green.store.live_documents()?;
    ensure!(live == documents, "green holds {live} documents");
    if let Some(program) = program {
        // Green holds what the program makes of blue's document, as the transform computes it.
        let sample = green
            .store
            .get("bench", &cutover_benches::fixture::id(7))?
            .context("document 7 on green")?;
        let blue_body = bytes::Bytes::from(cutover_benches::fixture::body(7, 1));
        let Outcome::Body(expected) = Jq::compile(program)
            .map_err(anyhow::Error::msg)?
            .apply(&blue_body)
        else {
            anyhow::bail!("{program} gives no body for document 7");
        };
        ensure!(
            sample.body[..] == expected[..],
            "transformed body: {}",
            String::from_utf8_lossy(&sample.body)
        );
    }
    green.stop().await?;
    Ok(rate(
        cycle.documents,
        Duration::from_micros(cycle.duration_micros),
    ))
}

/// The raw limit: every document of `store`'s change index, read in seq order and written by
/// `WriteBatch`es of 2,000 into a plain RocksDB database in a temporary folder.
async fn raw_copy(store: &Store) -> anyhow::Result<(u64, Duration)> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::Builder::new()
            .prefix("cutover-bench-")
            .tempdir()?;
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        let target = rocksdb::DB::open(&options, dir.path())?;
        let started = Instant::now();
        let mut batch = rocksdb::WriteBatch::default();
        let mut copied = 0u64;
        let mut failure = None;
        store.scan_changes(
            &PullSpec {
                since: 0,
                partitions: vec![],
            },
            |_, change| {
                let mut key = Vec::with_capacity(change.collection.len() + 1 + change.id.len());
                key.extend_from_slice(change.collection.as_bytes());
                key.push(0);
                key.extend_from_slice(change.id.as_bytes());
                batch.put(key, change.body);
                copied += 1;
                if batch.len() >= 2_000
                    && let Err(e) = target.write(std::mem::take(&mut batch))
                {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            },
        )?;
        if let Some(error) = failure {
            return Err(error.into());
        }
        target.write(batch)?;
        target.flush()?;
        Ok((copied, started.elapsed()))
    })
    .await?
}
