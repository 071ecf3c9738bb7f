//! Seed benchmark (issue #27): the README's story at full size on this machine. Blue is a
//! `cutover node` process holding 50M documents of ~200 bytes (bulk-loaded into its folder
//! before it starts), green a fresh one, a `cutover proxy` (h2c upstream) in front of both and
//! a standalone `cutover orchestrator` whose copy pipeline runs inside green: four processes
//! of the built binary. A client load of 2,000 requests/s through the proxy (reads, updates
//! with `If-Match`, deletes, creations, every acknowledged write remembered) runs from before
//! cycle 1 until after the switch, so the deltas, the hold and the final cycle happen under
//! live writes. The plan's transform is identity (the seed's headline), its pause budget
//! 100 ms.
//!
//! Reported for each story: every cycle (documents, seconds, docs/s), the proxy's longest
//! hold, the latency clients saw during the switch, client errors and lost acknowledged writes
//! (both must be 0; checked against green's store), the disk each data folder takes and the
//! peak memory (`VmHWM`) of each process. The same story runs first with 1M documents
//! (`reference`), so that cycle 1 at 50M is compared with cycle 1 at 1M in the same run
//! (target ≥ 0.9: no slowdown at scale); a summary for `benches/RESULTS.md` ends the run.
//!
//! `cargo build --release --workspace && cargo bench --workspace --bench seed`: 20-40 minutes,
//! everything in the temporary folder (`TMPDIR`), removed at the end. It refuses to start
//! with less than 900 bytes free per document (45 GB for 50M; `SEED_MIN_FREE_GB` sets another
//! floor): a generous bound, as the documents' padding compresses and a 1M-document store
//! takes ~60 bytes a document. `-- reference` or `-- seed` runs one story; `SEED_DOCUMENTS`
//! and `SEED_REFERENCE_DOCUMENTS` change the sizes. `cargo test` runs both stories at smoke
//! size and checks the zeros.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use cutover_benches::{
    Size,
    bulk::{self, Documents},
    fixture, report, system, wanted,
};
use cutover_node::store::{DEFAULT_MAX_QUEUED_WRITES, Store, StoreConfig, SyncPolicy};
use cutover_orchestrator::demo::{
    load::{self, Ledger, LoadConfig, Lost},
    rig,
};
use cutover_tests::harness::{Binary, Cluster};

#[path = "seed/figures.rs"]
mod figures;
#[path = "seed/follow.rs"]
mod follow;
#[path = "seed/stack.rs"]
mod stack;

use figures::{Figures, summary};
use stack::Stack;

/// The longest pause the plan allows: the target of the final hold.
const PAUSE_BUDGET: &str = "100ms";
/// Concurrent clients of the load, as in the cutover bench.
const CLIENTS: u32 = 32;
/// Most documents of blue that the load reads and writes (collection `users`); the rest are
/// collection `bench`.
const MAX_LOAD_KEYS: u64 = 100_000;
/// Free disk asked for per document (45 GB for 50M): room for two stores of incompressible
/// ~250-byte documents, the files a compaction writes before it deletes, the logs and a
/// margin. The bench's documents compress, so the stores take far less.
const FREE_BYTES_PER_DOCUMENT: u64 = 900;
/// The seed's cycle 1: 50M documents in 25 s, on a cluster.
const SEED_RATE: f64 = 50e6 / 25.0;
/// How long the load goes on against green after the switch before it stops.
const AFTER_SWITCH: Duration = Duration::from_secs(1);
/// Bytes in a MiB.
const MIB: f64 = (1 << 20) as f64;

fn main() -> anyhow::Result<()> {
    let size = Size::from_args();
    let documents = count("SEED_DOCUMENTS", size.pick(50_000_000, 20_000))?;
    let reference = count("SEED_REFERENCE_DOCUMENTS", size.pick(1_000_000, 5_000))?;
    let rate = size.pick(2_000, 200);
    let binary = system::cutover_binary()?;
    println!(
        "# seed benchmark ({size:?} size): {documents} documents (reference {reference}), \
         {rate} requests/s, identity transform, pause budget {PAUSE_BUDGET}"
    );
    println!("machine: {}", system::machine());
    println!("binary: {}", binary.display());
    enough_disk(documents.max(reference))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut stories = Vec::new();
    for (name, documents) in [("reference", reference), ("seed", documents)] {
        if wanted(name) {
            let figures = story(&runtime, &binary, name, documents, rate)?;
            figures.print();
            stories.push((name, figures));
        }
    }
    let find = |wanted: &str| stories.iter().find(|(n, _)| *n == wanted).map(|(_, f)| f);
    summary(find("reference"), find("seed"));
    report(
        "peak memory (VmHWM), this process (bulk load, clients)",
        system::own_peak_memory()? as f64 / MIB,
        "MiB",
    );
    for (name, figures) in &stories {
        figures
            .check()
            .with_context(|| format!("the {name} story"))?;
    }
    Ok(())
}

/// The count in the environment variable `name` (`50000000`, `50_000_000`), or `default`.
fn count(name: &str, default: u64) -> anyhow::Result<u64> {
    let Ok(text) = std::env::var(name) else {
        return Ok(default);
    };
    let digits: String = text.chars().filter(|c| !matches!(c, '_' | ',')).collect();
    let value: u64 = digits
        .parse()
        .with_context(|| format!("{name}={text:?} is not a count: write e.g. 50000000"))?;
    ensure!(
        value >= 1_000,
        "{name}={value}: give at least 1000 documents"
    );
    Ok(value)
}

/// Refuses to start when the temporary folder's disk cannot hold a story of `documents`.
fn enough_disk(documents: u64) -> anyhow::Result<()> {
    let root = std::env::temp_dir();
    let free = system::disk_free(&root)?;
    let gib = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
    let needed = match std::env::var("SEED_MIN_FREE_GB") {
        Ok(text) => {
            let gb: f64 = text.parse().with_context(|| {
                format!("SEED_MIN_FREE_GB={text:?} is not a number of GiB: write e.g. 20")
            })?;
            (gb * (1u64 << 30) as f64) as u64
        }
        Err(_) => documents * FREE_BYTES_PER_DOCUMENT,
    };
    println!(
        "disk: {:.1} GiB free under {}, {:.1} GiB wanted",
        gib(free),
        root.display(),
        gib(needed)
    );
    ensure!(
        free >= needed,
        "only {:.1} GiB free under {} (the temporary folder): {documents} documents need about \
         {:.1} GiB (blue's and green's stores, their compactions and logs). Free some disk, set \
         TMPDIR to a folder on a larger disk, lower SEED_DOCUMENTS, or set SEED_MIN_FREE_GB to \
         what you know it needs (a 1M-document story takes ~60 bytes a document a store: its \
         bodies compress)",
        gib(free),
        root.display(),
        gib(needed)
    );
    Ok(())
}

/// Blue's documents: `keys` of collection `users` for the load, the rest `bench`, all
/// ~200 bytes.
fn collections(documents: u64, keys: u64) -> [Documents; 2] {
    [
        Documents {
            collection: "bench",
            count: documents - keys,
            id: fixture::id,
            body: |n| fixture::body(n, 1),
        },
        Documents {
            collection: load::COLLECTION,
            count: keys,
            id: load::id,
            body: load::body,
        },
    ]
}

/// Runs the story with `documents` on blue in a fresh temporary root, removed at the end.
fn story(
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    name: &str,
    documents: u64,
    rate: u32,
) -> anyhow::Result<Figures> {
    println!("\n## {name}: {documents} documents of ~200 bytes on blue");
    let cluster = Cluster::new(Binary::new(binary))?;
    let keys = (documents / 10).min(MAX_LOAD_KEYS);
    let blue_dir = cluster.dir("blue")?.join("data");
    println!("loading blue…");
    let started = Instant::now();
    bulk::load(&blue_dir, &collections(documents, keys))?;
    let bulk_load = started.elapsed();
    let blue_loaded = system::disk_used(&blue_dir)?;
    println!(
        "blue bulk-loaded in {:.1} s, {:.0} MiB",
        bulk_load.as_secs_f64(),
        blue_loaded as f64 / MIB
    );
    let stack = Stack::start(cluster)?;
    let plan = stack.plan(PAUSE_BUDGET);
    println!("plan:\n{}", plan.trim_end());
    let config = LoadConfig {
        targets: vec![stack.proxy.listen],
        rate,
        keys,
        workers: CLIENTS,
    };
    let upgraded = follow::upgrade(runtime, &stack, &plan, &config, documents)
        .and_then(|upgraded| Ok((upgraded, stack.peak_memory()?, stack.disk()?)));
    let (upgraded, memory, disk) = match upgraded {
        Ok(figures) => figures,
        Err(error) => {
            stack.print_logs();
            return Err(error);
        }
    };
    let (cluster, green_dir) = stack.stop();
    let lost = lost_on(&green_dir, &upgraded.finished.ledger);
    drop(cluster);
    Ok(Figures {
        documents,
        bulk_load,
        blue_loaded,
        status: upgraded.status,
        serving: upgraded.serving,
        pause: upgraded.pause,
        finished: upgraded.finished,
        lost,
        memory,
        disk,
    })
}

/// The keys of `ledger` whose state in the (stopped) green store at `dir` differs from the
/// last acknowledged write.
fn lost_on(dir: &Path, ledger: &Ledger) -> anyhow::Result<Vec<Lost>> {
    let store = Store::open(&StoreConfig {
        path: dir.to_owned(),
        partitions: None,
        sync: SyncPolicy::Os,
        max_queued_writes: DEFAULT_MAX_QUEUED_WRITES,
    })
    .with_context(|| format!("opening green's store at {}", dir.display()))?;
    Ok(ledger.check(|id| rig::stored(&store, id)))
}
