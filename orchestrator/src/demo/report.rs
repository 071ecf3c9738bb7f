//! What the demo prints: the cycle table and the pause the clients saw, computed from the
//! upgrade's status and the load's latencies. Pure, so it is unit-tested.

use std::fmt::Write as _;

use cutover_proto::v1::UpgradeStatus;

/// The pause clients saw during one switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pause {
    /// Requests that started during the switch window.
    pub requests: usize,
    /// Longest latency of those, microseconds.
    pub max_micros: u64,
    /// Their 99th percentile latency, microseconds.
    pub p99_micros: u64,
    /// Median latency of every request outside the window, microseconds: the baseline.
    pub baseline_p50_micros: u64,
}

impl Pause {
    /// Longest latency added by the switch, microseconds.
    pub fn max_added_micros(&self) -> u64 {
        self.max_micros.saturating_sub(self.baseline_p50_micros)
    }

    /// 99th percentile latency added by the switch, microseconds.
    pub fn p99_added_micros(&self) -> u64 {
        self.p99_micros.saturating_sub(self.baseline_p50_micros)
    }
}

/// The pipelines of the last direction: source → sink, partitions, documents and rate of
/// the last cycle, watermark.
pub fn pipelines(status: &UpgradeStatus) -> String {
    let mut out =
        String::from("  source → sink          partitions   documents     docs/s    watermark\n");
    for p in &status.pipelines {
        let _ = writeln!(
            out,
            "  {:<22} {:<10} {:>11} {:>10.0} {:>12}",
            format!("{} → {}", short(&p.source), short(&p.sink)),
            p.partitions,
            p.documents,
            p.docs_per_sec,
            p.watermark
        );
    }
    out
}

/// A node id cut to 8 characters (the reference node's ids are long).
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The `q`-quantile (0..=1) of `values`, sorted in place; 0 when empty.
pub fn quantile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// The pause of the requests (start, latency µs) that started in `[from, to]` (µs).
pub fn pause(latencies: &[(u64, u64)], from: u64, to: u64) -> Pause {
    let (mut inside, mut outside): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    for &(start, latency) in latencies {
        if (from..=to).contains(&start) {
            inside.push(latency);
        } else {
            outside.push(latency);
        }
    }
    Pause {
        requests: inside.len(),
        max_micros: inside.iter().copied().max().unwrap_or(0),
        p99_micros: quantile(&mut inside, 0.99),
        baseline_p50_micros: quantile(&mut outside, 0.5),
    }
}

/// The cycle table of `status`: cycle, direction, documents, MB, seconds, docs/s, pending
/// after.
pub fn cycles(status: &UpgradeStatus) -> String {
    let mut out = String::from(
        "  cycle  direction      documents       MB   seconds      docs/s  pending after\n",
    );
    for c in &status.cycles {
        let seconds = c.duration_micros as f64 / 1e6;
        let rate = if seconds > 0.0 {
            c.documents as f64 / seconds
        } else {
            0.0
        };
        let kind = match (c.direction.as_str(), c.final_cycle) {
            ("reverse", true) => "reverse final",
            ("reverse", false) => "reverse sync",
            (_, true) => "final",
            _ => "forward",
        };
        let _ = writeln!(
            out,
            "  {:>5}  {:<13} {:>10} {:>8.1} {:>9.2} {:>11.0} {:>14}",
            c.cycle,
            kind,
            c.documents,
            c.bytes as f64 / 1e6,
            seconds,
            rate,
            c.pending_after
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use cutover_proto::v1::CycleRecord;

    use super::*;

    #[test]
    fn quantiles_and_the_pause_of_a_window() {
        assert_eq!(quantile(&mut [], 0.99), 0);
        let mut values: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&mut values, 0.5), 50);
        assert_eq!(quantile(&mut values, 0.99), 99);
        // Baseline of 1 ms; three requests held during [10, 20] ms.
        let mut latencies: Vec<(u64, u64)> = (0..50).map(|i| (i * 1_000, 1_000)).collect();
        latencies.extend([(12_000, 40_000), (15_000, 30_000), (19_000, 5_000)]);
        let p = pause(&latencies, 10_000, 20_000);
        assert_eq!(p.requests, 3 + 11);
        assert_eq!((p.max_micros, p.baseline_p50_micros), (40_000, 1_000));
        assert_eq!(p.max_added_micros(), 39_000);
        assert_eq!(p.p99_added_micros(), 39_000);
    }

    #[test]
    fn the_cycle_table_names_each_kind_of_cycle() {
        let cycle = |cycle, documents, micros, final_cycle, direction: &str| CycleRecord {
            cycle,
            documents,
            bytes: documents * 200,
            duration_micros: micros,
            final_cycle,
            direction: direction.to_owned(),
            ..CycleRecord::default()
        };
        let status = UpgradeStatus {
            cycles: vec![
                cycle(1, 1_000_000, 4_000_000, false, "forward"),
                cycle(2, 9_000, 50_000, false, "forward"),
                cycle(3, 40, 3_000, true, "forward"),
                cycle(4, 3_000, 900_000, false, "reverse"),
            ],
            ..UpgradeStatus::default()
        };
        let table = cycles(&status);
        assert!(table.contains("      1  forward          1000000    200.0      4.00      250000"));
        assert!(table.contains("final"), "{table}");
        assert!(table.contains("reverse sync"), "{table}");
    }
}
