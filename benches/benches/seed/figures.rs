//! What a story measured, printed per story and summed up against the targets at the end.

use std::time::Duration;

use anyhow::ensure;
use cutover_benches::{rate, report};
use cutover_orchestrator::demo::{
    load::{Finished, Lost},
    report::{Pause, cycles},
};
use cutover_proto::v1::{CycleRecord, UpgradeStatus};

use super::{MIB, SEED_RATE};

/// What one story measured.
pub struct Figures {
    /// Documents bulk-loaded into blue.
    pub documents: u64,
    /// How long the bulk load took.
    pub bulk_load: Duration,
    /// Disk blue's store took after the bulk load, bytes.
    pub blue_loaded: u64,
    /// The upgrade's status once green served.
    pub status: UpgradeStatus,
    /// From the upgrade's start to green serving.
    pub serving: Duration,
    /// What the clients saw during the switch.
    pub pause: Pause,
    /// What the clients saw in all.
    pub finished: Finished,
    /// The acknowledged writes green does not hold, or why they could not be checked.
    pub lost: anyhow::Result<Vec<Lost>>,
    /// Each process's peak resident memory, bytes.
    pub memory: Vec<(&'static str, u64)>,
    /// The disk each data folder took after the switch, bytes.
    pub disk: Vec<(&'static str, u64)>,
}

impl Figures {
    /// Cycle 1's record.
    fn cycle_one(&self) -> CycleRecord {
        self.status.cycles.first().cloned().unwrap_or_default()
    }

    /// The proxy's longest hold, milliseconds.
    fn hold_ms(&self) -> f64 {
        let micros = self.status.holds.iter().map(|h| h.max_hold_micros).max();
        micros.unwrap_or(0) as f64 / 1e3
    }

    /// Prints every figure of the story.
    pub fn print(&self) {
        report(
            "bulk load of blue (ingest, before its node starts)",
            rate(self.documents, self.bulk_load),
            "docs/s",
        );
        self.print_cycles();
        self.print_clients();
        self.print_resources();
    }

    /// The cycle table, then cycle 1 and the final cycle on lines of their own.
    fn print_cycles(&self) {
        println!("\ncycles:\n{}", cycles(&self.status));
        let first = self.cycle_one();
        report("cycle 1, documents", first.documents as f64, "docs");
        report("cycle 1, seconds", seconds(&first), "s");
        report("cycle 1, docs/s", cycle_rate(&first), "docs/s");
        report(
            "upgrade, from start to green serving",
            self.serving.as_secs_f64(),
            "s",
        );
        let last = self.status.cycles.iter().find(|c| c.final_cycle);
        let last = last.cloned().unwrap_or_default();
        report("final cycle, documents", last.documents as f64, "docs");
        report("final cycle, duration", seconds(&last) * 1e3, "ms");
    }

    /// The hold and what the clients saw.
    fn print_clients(&self) {
        let held: u64 = self.status.holds.iter().map(|h| h.held).sum();
        report("requests held by the proxy", held as f64, "requests");
        report("longest hold (proxy)", self.hold_ms(), "ms");
        let ms = |micros: u64| micros as f64 / 1e3;
        let seen = &self.pause;
        let window = seen.requests as f64;
        report(
            "client requests started during the switch",
            window,
            "requests",
        );
        let added = ms(seen.max_added_micros());
        report("client latency added, max", added, "ms");
        let added = ms(seen.p99_added_micros());
        report("client latency added, p99", added, "ms");
        let median = ms(seen.baseline_p50_micros);
        report("client median latency outside the switch", median, "ms");
        let done = &self.finished;
        report("client requests", done.requests as f64, "requests");
        report("client writes acknowledged", done.writes as f64, "writes");
        report("client errors", done.errors as f64, "errors");
        for sample in &done.error_samples {
            println!("  error: {sample}");
        }
        match &self.lost {
            Ok(lost) => report("lost acknowledged writes", lost.len() as f64, "writes"),
            Err(error) => println!("lost acknowledged writes: not checked: {error:#}"),
        }
    }

    /// The disk of each data folder and the peak memory of each process.
    fn print_resources(&self) {
        let mib = |bytes: u64| bytes as f64 / MIB;
        let loaded = mib(self.blue_loaded);
        report("disk, blue store after the bulk load", loaded, "MiB");
        for (name, bytes) in &self.disk {
            let label = format!("disk, {name} after the switch");
            report(&label, mib(*bytes), "MiB");
        }
        for (name, bytes) in &self.memory {
            let label = format!("peak memory (VmHWM), {name}");
            report(&label, mib(*bytes), "MiB");
        }
    }

    /// Fails unless client errors and lost acknowledged writes are both 0 and cycle 1
    /// copied blue's documents.
    pub fn check(&self) -> anyhow::Result<()> {
        ensure!(
            self.finished.errors == 0,
            "client errors: {:?}",
            self.finished.error_samples
        );
        let lost = self.lost.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        ensure!(
            lost.is_empty(),
            "lost acknowledged writes: {:?}",
            &lost[..lost.len().min(5)]
        );
        // Cycle 1 copies every document but those the clients rewrote after it passed them
        // (the next cycle copies those).
        let copied = self.cycle_one().documents;
        ensure!(
            copied + self.finished.writes >= self.documents,
            "cycle 1 copied {copied} of {} documents",
            self.documents
        );
        Ok(())
    }
}

fn seconds(cycle: &CycleRecord) -> f64 {
    cycle.duration_micros as f64 / 1e6
}

fn cycle_rate(cycle: &CycleRecord) -> f64 {
    rate(
        cycle.documents,
        Duration::from_micros(cycle.duration_micros),
    )
}

/// A unit with its target and whether a figure met it: `unit (target …: met)`.
fn against(unit: &str, target: &str, met: bool) -> String {
    format!(
        "{unit} (target {target}: {})",
        if met { "met" } else { "NOT met" }
    )
}

/// The figures RESULTS.md states, with their targets.
pub fn summary(reference: Option<&Figures>, seed: Option<&Figures>) {
    println!("\n# summary for benches/RESULTS.md");
    if let Some(seed) = seed {
        let first = seed.cycle_one();
        let label = format!("cycle 1, {} documents, identity", seed.documents);
        report(&format!("{label}, seconds"), seconds(&first), "s");
        report(&format!("{label}, docs/s"), cycle_rate(&first), "docs/s");
        report(
            "cycle 1 docs/s / the seed's (50M in 25 s, a cluster)",
            cycle_rate(&first) / SEED_RATE,
            "ratio",
        );
    }
    if let (Some(reference), Some(seed)) = (reference, seed) {
        let reference_rate = cycle_rate(&reference.cycle_one());
        report(
            &format!(
                "cycle 1, {} documents (reference), docs/s",
                reference.documents
            ),
            reference_rate,
            "docs/s",
        );
        let ratio = cycle_rate(&seed.cycle_one()) / reference_rate;
        report(
            &format!(
                "cycle 1 docs/s, {} / {} documents",
                seed.documents, reference.documents
            ),
            ratio,
            &against("ratio", ">= 0.9", ratio >= 0.9),
        );
    }
    for (name, figures) in [("reference", reference), ("seed", seed)] {
        let Some(figures) = figures else { continue };
        let hold = figures.hold_ms();
        report(
            &format!("final hold under live writes (proxy), {name}"),
            hold,
            &against("ms", "<= 100 ms", hold <= 100.0),
        );
        report(
            &format!("client-visible added latency, max, {name}"),
            figures.pause.max_added_micros() as f64 / 1e3,
            "ms",
        );
        let label = format!("client errors + lost acknowledged writes, {name}");
        match &figures.lost {
            Ok(lost) => {
                let errors = figures.finished.errors + lost.len() as u64;
                report(&label, errors as f64, &against("count", "0", errors == 0));
            }
            Err(_) => println!("{label}: the lost writes were not checked"),
        }
    }
}
