//! `cutover load run|check`: the demo's client load as its own process, for containers and
//! rehearsals. `run` preloads documents, then reads, updates (with `If-Match`), deletes and
//! creates through the given targets until SIGTERM, SIGINT or `--duration`, and writes what
//! it saw and every key's last acknowledged state to a file; `check` reads every key of that
//! file back and fails if one differs: an acknowledged write was lost.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use futures_util::{StreamExt, stream};
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use super::{CliError, values};
use crate::demo::load::{self, Answer, COLLECTION, HttpClient, Ledger, Load, LoadConfig, exchange};

/// `cutover load`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cutover load run --target 10.0.2.1:8080,10.0.2.2:8080 --rate 200 --out /var/lib/cutover/load.json\n  \
    cutover load check --out /var/lib/cutover/load.json --target 10.0.2.1:8080")]
pub struct LoadArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LoadCommand,
}

/// `cutover load` operations.
#[derive(Debug, Subcommand)]
pub enum LoadCommand {
    /// Send a client load until stopped; write the outcome and the ledger of acknowledged writes.
    #[command(after_help = "Example:\n  \
        cutover load run --target 127.0.0.1:8080 --rate 500 --duration 60s --out load.json")]
    Run(RunArgs),
    /// Read back every key of a ledger; fail if an acknowledged write is missing.
    #[command(
        after_help = "Example:\n  cutover load check --out load.json --target 127.0.0.1:8080"
    )]
    Check(CheckArgs),
}

/// `cutover load run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where requests go (a proxy or a node), `HOST:PORT`, comma-separated; worker `w` uses
    /// target `w mod n`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub target: Vec<String>,
    /// Requests per second, all workers together.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: u32,
    /// Documents `user-00000000…` the workers share; created first (spread over the
    /// targets) unless they exist.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Stop after this long, e.g. 60s [default: run until SIGTERM or SIGINT].
    #[arg(long, value_parser = values::positive_duration)]
    pub duration: Option<Duration>,
    /// Where the outcome and the ledger are written when the load stops (JSON). An existing
    /// file is read first, and the load goes on from its ledger.
    #[arg(long)]
    pub out: PathBuf,
}

/// `cutover load check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The file `cutover load run --out` wrote.
    #[arg(long)]
    pub out: PathBuf,
    /// Where to read the keys (a proxy or a node), `HOST:PORT`.
    #[arg(long)]
    pub target: String,
}

/// What `cutover load run` writes.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Requests answered or failed, over every run of this file.
    pub requests: u64,
    /// Writes acknowledged.
    pub writes: u64,
    /// Requests that failed: a 5xx, a transport error, or an answer contradicting an
    /// acknowledged write.
    pub errors: u64,
    /// The first errors of each run.
    pub error_samples: Vec<String>,
    /// The longest request, in milliseconds.
    pub max_latency_ms: f64,
    /// Every key's last acknowledged state.
    pub ledger: Ledger,
}

/// Concurrent requests of a preload or a check.
const CONCURRENCY: usize = 32;

pub(super) async fn run(args: LoadArgs) -> Result<(), CliError> {
    match args.command {
        LoadCommand::Run(args) => run_load(args).await,
        LoadCommand::Check(args) => check(args).await,
    }
}

async fn run_load(args: RunArgs) -> Result<(), CliError> {
    let mut targets = Vec::new();
    for target in &args.target {
        targets.push(resolve(target).await?);
    }
    let mut outcome = match read_outcome(&args.out) {
        Ok(outcome) => outcome,
        Err(_) if !args.out.exists() => Outcome::default(),
        Err(error) => return Err(error.into()),
    };
    let client = client();
    if outcome.ledger.keys.is_empty() {
        let preloading = Instant::now();
        let created = preload(&client, &targets, args.keys).await?;
        eprintln!(
            "load: {created} of {} documents created in {:.1} s",
            args.keys,
            preloading.elapsed().as_secs_f64()
        );
    }
    let config = LoadConfig {
        targets: targets.clone(),
        rate: args.rate,
        keys: args.keys,
        workers: args.workers,
    };
    eprintln!(
        "load: {} requests/s from {} workers through {} until {}",
        args.rate,
        args.workers,
        args.target.join(","),
        args.duration
            .map_or("SIGTERM or SIGINT".to_owned(), |d| format!("{d:?}"))
    );
    let running = Load::start(&config, std::mem::take(&mut outcome.ledger));
    stopped(args.duration).await?;
    let finished = running.stop().await;
    outcome.requests += finished.requests;
    outcome.writes += finished.writes;
    outcome.errors += finished.errors;
    outcome.error_samples.extend(finished.error_samples);
    let longest = finished.latencies.iter().map(|l| l.1).max().unwrap_or(0);
    outcome.max_latency_ms = outcome.max_latency_ms.max(longest as f64 / 1000.0);
    outcome.ledger = finished.ledger;
    write_outcome(&args.out, &outcome)?;
    println!(
        "load: {} requests, {} writes acknowledged, {} errors, longest request {:.0} ms; \
         {} keys in {}",
        finished.requests,
        finished.writes,
        finished.errors,
        longest as f64 / 1000.0,
        outcome.ledger.keys.len(),
        args.out.display()
    );
    for sample in &outcome.error_samples {
        println!("  error: {sample}");
    }
    if finished.errors > 0 {
        return Err(anyhow::anyhow!("{} client requests failed", finished.errors).into());
    }
    Ok(())
}

async fn check(args: CheckArgs) -> Result<(), CliError> {
    let outcome = read_outcome(&args.out)?;
    let target = resolve(&args.target).await?;
    let client = client();
    let ids: Vec<String> = outcome.ledger.keys.keys().cloned().collect();
    let reads: Vec<(String, anyhow::Result<Found>)> = stream::iter(ids)
        .map(|id| {
            let client = client.clone();
            async move {
                let found = read(&client, target, &id).await;
                (id, found)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut found = std::collections::HashMap::new();
    for (id, read) in reads {
        found.insert(id, read?);
    }
    let lost = outcome.ledger.check(|id| found.get(id).copied().flatten());
    println!(
        "check: {} keys read through {target}, {} with an acknowledged state, {} lost; \
         the load saw {} requests, {} errors",
        found.len(),
        outcome.ledger.known(),
        lost.len(),
        outcome.requests,
        outcome.errors
    );
    for lost in lost.iter().take(10) {
        println!(
            "  lost: {} acknowledged {}, found {}",
            lost.id, lost.expected, lost.found
        );
    }
    if !lost.is_empty() {
        return Err(anyhow::anyhow!("{} acknowledged writes were lost", lost.len()).into());
    }
    Ok(())
}

/// A key's `(version, visits)` as read back, or none when it is absent.
type Found = Option<(u64, u64)>;

fn client() -> HttpClient {
    load::http_client()
}

async fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(target)
        .await
        .with_context(|| format!("--target {target:?}: not a HOST:PORT that resolves"))?
        .next()
        .with_context(|| format!("--target {target:?}: the name has no address"))
}

/// Creates `user-…` documents `0..keys` that do not exist yet, document `n` through target
/// `n mod targets`; how many it created.
async fn preload(client: &HttpClient, targets: &[SocketAddr], keys: u64) -> anyhow::Result<u64> {
    let results: Vec<anyhow::Result<bool>> = stream::iter(0..keys)
        .map(|n| {
            let client = client.clone();
            let target = targets[(n % targets.len() as u64) as usize];
            async move {
                let id = load::id(n);
                let request = Request::builder()
                    .method(Method::PUT)
                    .uri(format!("http://{target}/v1/{COLLECTION}/{id}"))
                    .header(header::IF_NONE_MATCH, "*")
                    .body(Full::new(Bytes::from(load::body(n))))?;
                let answer = exchange(&client, request).await.map_err(|error| {
                    anyhow::anyhow!("preloading {id} through {target}: {error}")
                })?;
                match answer.status {
                    StatusCode::CREATED | StatusCode::OK => Ok(true),
                    StatusCode::PRECONDITION_FAILED => Ok(false),
                    status => bail!(
                        "preloading {id} through {target}: {status} {}",
                        String::from_utf8_lossy(&answer.body)
                    ),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut created = 0;
    for result in results {
        created += u64::from(result?);
    }
    Ok(created)
}

/// Reads a key back.
async fn read(client: &HttpClient, target: SocketAddr, id: &str) -> anyhow::Result<Found> {
    // The load's ids are `user-N` and `new-W-K`: nothing in them needs escaping.
    let uri = format!("http://{target}/v1/{COLLECTION}/{id}");
    let request = Request::builder().uri(&uri).body(Full::new(Bytes::new()))?;
    let Answer { status, etag, body } = exchange(client, request)
        .await
        .map_err(|error| anyhow::anyhow!("reading {uri}: {error}"))?;
    match status {
        StatusCode::NOT_FOUND => Ok(None),
        StatusCode::OK => {
            let version = etag
                .as_deref()
                .and_then(|e| e.trim_matches('"').parse::<u64>().ok())
                .with_context(|| format!("reading {uri}: no version in ETag {etag:?}"))?;
            let body: serde_json::Value = serde_json::from_slice(&body)
                .with_context(|| format!("reading {uri}: the body is not JSON"))?;
            let visits = body
                .get("visits")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            Ok(Some((version, visits)))
        }
        status => bail!(
            "reading {uri}: {status} {}; cannot check this key",
            String::from_utf8_lossy(&body)
        ),
    }
}

fn read_outcome(path: &Path) -> anyhow::Result<Outcome> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a file `cutover load run` wrote", path.display()))
}

fn write_outcome(path: &Path, outcome: &Outcome) -> anyhow::Result<()> {
    let text = serde_json::to_vec(outcome).context("encoding the outcome")?;
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

/// Waits for `duration`, SIGTERM or SIGINT, whichever comes first.
async fn stopped(duration: Option<Duration>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        () = timer => {}
    }
    Ok(())
}
