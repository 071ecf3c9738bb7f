//! An embedder's program: cutover's engine with a native transform written in Rust.
//!
//! One process runs a blue node, a green node and the migration engine on loopback. The plan
//! gives `users` the native transform `split_name` (`forward_native = "split_name"`) instead
//! of a jq program: [`SplitName`] splits `name` into `first_name` and `last_name` and adds
//! `"schema": 2`. It is registered twice, from one registry: on the engine, which checks the
//! plan at start (and refuses a name it does not know) and compiles it again when it resumes,
//! and on green's `Pipelines` service, which runs the copy into green and transforms each
//! document there (the engine is not handed green's store, so green copies as every green
//! node of a cluster would).
//!
//! It can be killed and run again. Everything lives in `--dir`: the nodes' stores
//! (`blue/`, `green/`), the engine's journal (`journal/`) and the gRPC ports the journaled plan
//! names (`ports`). Run again, it loads nothing, starts nothing, and the engine resumes the
//! journaled upgrade, resolving `split_name` in the new process. The plan postpones the
//! cutover after the copy cycles; the program then proceeds (unless `--no-proceed`), waits for
//! the switch, and checks every document of green against blue.
//!
//! ```text
//! cargo run --example native_transform -- --dir /tmp/x --documents 1000
//! ```
//!
//! What it prints, a line each: `loaded blue with N documents`, `upgrade ID started` (or
//! `upgrade ID resumed in phase P`), `postponed after cycle C: N documents copied`,
//! `proceeding`, `switched: green serves`, and last
//! `done: green holds N documents, N with first_name` (those whose `first_name` and
//! `last_name` make blue's `name`). A plan naming a transform the process did not register
//! (`--native typo`) prints `refused: ` and the engine's error. Exit codes: 0 when green is
//! right, 1 when it is not or something failed, 2 when the engine refused the plan.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use cutover_node::{
    Node, NodeConfig, NodeError,
    store::{Incoming, Store, StoreConfig, SyncPolicy, schema::DEFAULT_PARTITIONS},
};
use cutover_orchestrator::engine::{
    Engine, hosted,
    metrics::phase_name,
    transform::{Natives, Outcome, Transform},
};
use cutover_proto::v1::Phase;
use serde_json::{Map, Value};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// The collection the program loads and transforms.
const COLLECTION: &str = "users";
/// The name the transform is registered under.
const SPLIT_NAME: &str = "split_name";
/// Documents per store write while loading blue.
const LOAD_BATCH: u64 = 1_000;
/// Longest the upgrade may take to reach the next step the program waits for.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// What to run.
#[derive(Debug, Parser)]
#[command(about = "cutover's engine with a native transform, in one resumable process")]
struct Args {
    /// Where the nodes' stores, the journal and the ports live; run again with the same one
    /// to resume.
    #[arg(long)]
    dir: PathBuf,
    /// Documents loaded into blue when it is empty.
    #[arg(long, default_value_t = 1_000)]
    documents: u64,
    /// The native transform the plan names (one not registered shows the engine's refusal).
    #[arg(long, default_value = SPLIT_NAME)]
    native: String,
    /// Leave the upgrade postponed after its copy cycles: wait to be stopped (Ctrl-C, or
    /// kill -9), then run again to proceed.
    #[arg(long)]
    no_proceed: bool,
}

/// `name` split at its first space into `first_name` and `last_name`, and `"schema": 2`: the
/// demo's schema change (`cutover demo` runs it as a jq program), in Rust.
#[derive(Debug)]
struct SplitName;

impl Transform for SplitName {
    fn apply(&self, body: &Bytes) -> Outcome {
        let mut document: Map<String, Value> = match serde_json::from_slice(body) {
            Ok(document) => document,
            Err(error) => return Outcome::Failed(format!("not a JSON object: {error}")),
        };
        let Some(Value::String(name)) = document.remove("name") else {
            return Outcome::Failed("no `name` string to split".to_owned());
        };
        let (first, last) = name.split_once(' ').unwrap_or((name.as_str(), ""));
        document.insert("first_name".to_owned(), first.into());
        document.insert("last_name".to_owned(), last.into());
        document.insert("schema".to_owned(), 2.into());
        match serde_json::to_vec(&document) {
            Ok(body) => Outcome::Body(Bytes::from(body)),
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    // One registry for the engine and the nodes: the engine checks and compiles the plan with
    // it, green's Pipelines service transforms the documents with it.
    let natives = Natives::new().with(SPLIT_NAME, Arc::new(SplitName));
    let ports = Ports::open(&args.dir)?;
    let cancel = CancellationToken::new();
    let blue = Running::start(&args.dir.join("blue"), ports.blue, &natives, &cancel).await?;
    let green = Running::start(&args.dir.join("green"), ports.green, &natives, &cancel).await?;
    ports.keep(&args.dir, &blue, &green)?;
    if blue.store.live_documents()? == 0 {
        load(&blue.store, args.documents).await?;
        println!("loaded blue with {} documents", args.documents);
    }
    let engine = Engine::builder()
        .natives(natives)
        .open(&args.dir.join("journal"))?;
    let status = engine.status();
    let end = if status.upgrade_id.is_empty() {
        let plan = plan(&blue, &green, &args.native);
        match engine.start(&plan, "plan.toml", false).await {
            Ok(status) => {
                println!("upgrade {} started", status.upgrade_id);
                follow(&engine, !args.no_proceed).await
            }
            Err(error) => {
                println!("refused: {error}");
                Ok(End::Refused)
            }
        }
    } else {
        println!(
            "upgrade {} resumed in phase {}",
            status.upgrade_id,
            phase_name(status.phase())
        );
        follow(&engine, !args.no_proceed).await
    };
    engine.shutdown().await;
    let code = match end {
        Ok(End::Switched) => check(&blue.store, &green.store),
        Ok(End::Refused) => Ok(ExitCode::from(2)),
        Ok(End::Stopped) => {
            println!("stopped, the upgrade postponed: run again to proceed");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Err(error),
    };
    cancel.cancel();
    blue.stopped().await?;
    green.stopped().await?;
    code
}

/// The plan: blue to green, `users` through the native transform `native`, postponed at the
/// cutover so that the program (or a person) decides when.
fn plan(blue: &Running, green: &Running, native: &str) -> String {
    format!(
        "postpone = true\npause_budget = \"5s\"\n\n\
         [blue]\nsources = [\"http://{}\"]\n\n[green]\nsinks = [\"http://{}\"]\n\n\
         [collections.{COLLECTION}]\nforward_native = \"{native}\"\n",
        blue.grpc, green.grpc
    )
}

/// How a run ends, before green is checked.
enum End {
    /// Green serves.
    Switched,
    /// The engine refused the plan.
    Refused,
    /// Stopped (Ctrl-C) with the upgrade postponed.
    Stopped,
}

/// Follows the upgrade: proceeds once it is postponed (when `proceed`; else waits for Ctrl-C)
/// and waits for the switch.
async fn follow(engine: &Engine, proceed: bool) -> anyhow::Result<End> {
    let mut events = engine.watch();
    let mut postponed = false;
    loop {
        let status = events
            .borrow_and_update()
            .status
            .clone()
            .unwrap_or_default();
        match status.phase() {
            Phase::Postponed if !postponed => {
                postponed = true;
                println!(
                    "postponed after cycle {}: {} documents copied",
                    status.cycles.len(),
                    status.cycles.iter().map(|c| c.documents).sum::<u64>()
                );
                if !proceed {
                    println!("not proceeding (--no-proceed): stop this program and run it again");
                    tokio::signal::ctrl_c().await?;
                    return Ok(End::Stopped);
                }
                engine.proceed().await?;
                println!("proceeding");
            }
            Phase::Switched | Phase::ReverseSync => {
                println!("switched: green serves");
                return Ok(End::Switched);
            }
            Phase::Failed | Phase::Aborted | Phase::RolledBack => {
                bail!(
                    "the upgrade ended in {}: {}",
                    phase_name(status.phase()),
                    status.error
                );
            }
            _ => {}
        }
        tokio::time::timeout(STEP_TIMEOUT, events.changed())
            .await
            .with_context(|| {
                format!(
                    "no progress in {STEP_TIMEOUT:?}, in phase {}",
                    phase_name(status.phase())
                )
            })?
            .context("the engine stopped")?;
    }
}

/// Every document of green against blue's: green must hold as many, each with `first_name`
/// and `last_name` that make blue's `name`, and `"schema": 2`.
fn check(blue: &Store, green: &Store) -> anyhow::Result<ExitCode> {
    let expected = blue.live_documents()?;
    let (mut held, mut split) = (0u64, 0u64);
    let mut after: Option<String> = None;
    loop {
        let page = green.list(COLLECTION, after.as_deref(), 1_000)?;
        for (id, _, body) in &page.documents {
            held += 1;
            let ours = blue.get(COLLECTION, id)?.context("a document blue lacks")?;
            let theirs: Value = serde_json::from_slice(&ours.body)?;
            let document: Value = serde_json::from_slice(body)?;
            let (first, last) = (&document["first_name"], &document["last_name"]);
            let joined = match (first.as_str(), last.as_str()) {
                (Some(first), Some("")) => Some(first.to_owned()),
                (Some(first), Some(last)) => Some(format!("{first} {last}")),
                _ => None,
            };
            if joined.as_deref() == theirs["name"].as_str() && document["schema"] == 2 {
                split += 1;
            } else {
                eprintln!("wrong on green: {id}: {document} (blue: {theirs})");
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    println!("done: green holds {held} documents, {split} with first_name");
    if held == expected && split == held {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("green should hold blue's {expected} documents, each split");
        Ok(ExitCode::FAILURE)
    }
}

/// Writes `count` documents `{"name": "First Last", "n": N}` at version 1 into `store`.
async fn load(store: &Store, count: u64) -> anyhow::Result<()> {
    const FIRST: [&str; 4] = ["Ada", "Grace", "Alan", "Radia"];
    const LAST: [&str; 3] = ["King Lovelace", "Hopper", "Turing"];
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        for first in (0..count).step_by(LOAD_BATCH as usize) {
            let numbers = first..(first + LOAD_BATCH).min(count);
            let ids: Vec<String> = numbers.clone().map(|n| format!("user-{n:06}")).collect();
            let bodies: Vec<Vec<u8>> = numbers
                .map(|n| {
                    let name = format!("{} {}", FIRST[n as usize % 4], LAST[n as usize % 3]);
                    serde_json::json!({"name": name, "n": n})
                        .to_string()
                        .into_bytes()
                })
                .collect();
            let batch: Vec<Incoming<'_>> = ids
                .iter()
                .zip(&bodies)
                .map(|(id, body)| Incoming {
                    collection: COLLECTION,
                    id,
                    version: 1,
                    tombstone: false,
                    body,
                })
                .collect();
            store.apply(&batch)?;
        }
        store.flush()?;
        anyhow::Ok(())
    })
    .await?
}

/// A node of this process, its copies transformed with the process's natives.
struct Running {
    store: Store,
    grpc: std::net::SocketAddr,
    task: JoinHandle<Result<(), NodeError>>,
}

impl Running {
    /// Opens the store in `dir` and serves it, gRPC on `grpc_port` (any when 0).
    async fn start(
        dir: &Path,
        grpc_port: u16,
        natives: &Natives,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let grpc = TcpListener::bind(("127.0.0.1", grpc_port))
            .await
            .with_context(|| format!("listening on 127.0.0.1:{grpc_port}, which the plan names"))?;
        let node = Node::open(NodeConfig {
            store: StoreConfig {
                path: dir.to_owned(),
                partitions: Some(DEFAULT_PARTITIONS),
                // Survives kill -9 (not power loss), which is what the program is run against.
                sync: SyncPolicy::Os,
                max_queued_writes: cutover_node::store::DEFAULT_MAX_QUEUED_WRITES,
            },
            max_body: 1 << 20,
            token: None,
            bounds: cutover_daemon::Bounds::default(),
            tls: None,
            cluster: None,
        })
        .with_context(|| format!("opening the node in {}", dir.display()))?;
        let store = node.store().clone();
        let services = hosted::serve_with_natives(
            tonic::service::Routes::default(),
            store.clone(),
            None,
            natives.clone(),
        );
        Ok(Self {
            store,
            grpc: grpc.local_addr()?,
            task: tokio::spawn(node.run_with(http, grpc, services, cancel.child_token())),
        })
    }

    /// Waits for the node to stop (cancelled) and flush its store.
    async fn stopped(self) -> anyhow::Result<()> {
        self.task.await??;
        Ok(())
    }
}

/// The gRPC ports of blue and green: the journaled plan names them, so a run after a crash
/// listens where the first run did.
struct Ports {
    blue: u16,
    green: u16,
}

impl Ports {
    /// The ports kept in `dir`, or 0 (any) for a first run.
    fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("ports");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self { blue: 0, green: 0 });
            }
            Err(error) => return Err(error).context(format!("reading {}", path.display())),
        };
        let ports: Vec<u16> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} holds two port numbers", path.display()))?;
        let [blue, green] = ports[..] else {
            bail!("{} holds two port numbers, not {text:?}", path.display());
        };
        Ok(Self { blue, green })
    }

    /// Keeps the ports `blue` and `green` listen on, for the next run.
    fn keep(&self, dir: &Path, blue: &Running, green: &Running) -> anyhow::Result<()> {
        if self.blue != 0 {
            return Ok(());
        }
        let text = format!("{} {}\n", blue.grpc.port(), green.grpc.port());
        std::fs::write(dir.join("ports"), text).context("keeping the ports")
    }
}
