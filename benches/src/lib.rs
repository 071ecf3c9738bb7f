//! Whole-system benchmarks: each one runs real nodes, proxies and orchestrators on loopback
//! and compares against a limit measured in the same run (a raw RocksDB copy, nginx, the
//! backend reached directly). Results and the machine they ran on go to `benches/RESULTS.md`.
//! Speed targets live here, never in timed unit tests.
//!
//! Every benchmark is a plain program (`harness = false`). `cargo bench` passes `--bench` and
//! gets the full size; `cargo test` runs the same program without it, at smoke size, so CI
//! checks that each benchmark still works and computes right without timing anything.

use std::time::Duration;

pub mod bulk;
pub mod fixture;
pub mod peers;
pub mod system;

/// Full size or smoke size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// `cargo bench`: the sizes the targets are stated for.
    Full,
    /// `cargo test`: tiny, checks correctness only.
    Smoke,
}

impl Size {
    /// From the process arguments: `--bench` means full size.
    pub fn from_args() -> Self {
        if std::env::args().any(|a| a == "--bench") {
            Self::Full
        } else {
            Self::Smoke
        }
    }

    /// `full` or `smoke`, whichever applies.
    pub fn pick<T>(self, full: T, smoke: T) -> T {
        match self {
            Self::Full => full,
            Self::Smoke => smoke,
        }
    }
}

/// Whether the section `name` of a benchmark should run: every section when the command line
/// names none (`cargo bench --workspace --bench node -- pull put` runs two of them).
pub fn wanted(name: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    named.is_empty() || named.iter().any(|n| n == name)
}

/// Per-second rate of `count` events in `elapsed`.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The median of `samples` (sorted in place); zero when empty.
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Waits up to 10 minutes for `engine`'s upgrade to record its first cycle; its status then.
pub async fn first_cycle(
    engine: &cutover_orchestrator::engine::Engine,
) -> anyhow::Result<cutover_proto::v1::UpgradeStatus> {
    let status = engine
        .first_cycle(Duration::from_secs(600))
        .await
        .ok_or_else(|| anyhow::anyhow!("cycle 1 took over 10 minutes"))?;
    anyhow::ensure!(
        status.phase() != cutover_proto::v1::Phase::Failed,
        "the upgrade failed: {}",
        status.error
    );
    Ok(status)
}

/// Prints one result line: `name  value unit`, aligned, for copying into RESULTS.md.
pub fn report(name: &str, value: f64, unit: &str) {
    println!("{name:<48} {value:>14.2} {unit}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_sample() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(median(&mut []), Duration::ZERO);
    }

    #[test]
    fn rate_is_per_second() {
        assert!((rate(500, Duration::from_millis(250)) - 2000.0).abs() < 1e-6);
    }
}
