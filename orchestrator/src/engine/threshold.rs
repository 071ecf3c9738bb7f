//! The threshold engine: after each cycle, decides whether the remaining delta fits the pause
//! budget. Pure: figures in, a decision with the figures that made it out; the caller logs it.
//!
//! A cycle's duration is modelled as `fixed + documents × per_document`, fitted to the two most
//! recent cycles. The fixed part is real: a delta cycle pays stream set-up, round trips and
//! fsyncs however few documents it moves, which is why a cycle of 90K documents can take as long
//! as a tenth of one of 6M. With one cycle known, the model has no fixed part yet (it cannot
//! tell it apart), and the first decision rests on throughput alone.
//!
//! `predicted_final = fixed + pending × per_document + switch_overhead`, where the switch
//! overhead is measured by an earlier attempt or rehearsal when there was one, and a stated
//! default until then.

use std::{fmt, time::Duration};

/// The switch overhead assumed until one has been measured: pausing and draining the proxies,
/// fencing, verifying digests and switching, on loopback.
pub const DEFAULT_SWITCH_OVERHEAD: Duration = Duration::from_millis(50);

/// Cycles without a new lowest pending count after which the copy is declared not converging.
pub const STALL_CYCLES: usize = 3;

/// What the engine is asked to achieve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The longest pause clients may see: the final cycle plus the switch must fit in it.
    pub pause_budget: Duration,
    /// Cycles after which the engine gives up if the delta never fits.
    pub max_cycles: u32,
    /// Time since the upgrade started after which the engine gives up.
    pub deadline: Option<Duration>,
    /// The measured switch overhead, once an attempt or rehearsal has measured it.
    pub switch_overhead: Option<Duration>,
}

/// One finished cycle, as the engine saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cycle {
    /// Documents the cycle copied (transformed and applied, dropped, or dead-lettered).
    pub documents: u64,
    /// Wall time of the cycle, first pull to last acknowledgement.
    pub duration: Duration,
    /// Documents changed on blue since the watermarks the cycle reached (Σ `Lag`).
    pub pending_after: u64,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// The predicted final cycle and switch fit the pause budget.
    CutoverReady,
    /// The delta is still too large: run another cycle.
    AnotherCycle,
    /// Pending has not reached a new low for [`STALL_CYCLES`] cycles: blue changes documents
    /// about as fast as, or faster than, they are copied.
    NotConverging {
        /// Documents blue changed per second during the last cycle.
        blue_change_rate: f64,
        /// Documents copied per second during the last cycle.
        copy_rate: f64,
    },
    /// `max_cycles` cycles ran and the delta never fitted.
    CycleLimit {
        /// The limit.
        max_cycles: u32,
    },
    /// The upgrade has run past its deadline.
    DeadlineExceeded {
        /// The deadline.
        deadline: Duration,
    },
}

/// A decision and the figures that made it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    /// The decision.
    pub decision: Decision,
    /// Cycles run so far.
    pub cycles: u32,
    /// Documents pending after the last cycle.
    pub pending: u64,
    /// Fitted per-cycle fixed cost.
    pub fixed: Duration,
    /// Fitted copy throughput, documents per second.
    pub rate: f64,
    /// Switch overhead used (measured, or the default).
    pub switch_overhead: Duration,
    /// Whether `switch_overhead` was measured.
    pub overhead_measured: bool,
    /// Predicted final cycle plus switch: what clients would see as a pause.
    pub predicted_final: Duration,
    /// The budget it is held against.
    pub pause_budget: Duration,
}

impl Decision {
    /// Every kind's name, as [`kind`](Self::kind) gives it.
    pub const KINDS: [&'static str; 5] = [
        "cutover_ready",
        "another_cycle",
        "not_converging",
        "max_cycles_reached",
        "deadline_exceeded",
    ];

    /// The decision's kind in lower case (`not_converging`), as in the status's `Decision`
    /// and the `kind` label of its metric.
    pub fn kind(&self) -> &'static str {
        let index = match self {
            Self::CutoverReady => 0,
            Self::AnotherCycle => 1,
            Self::NotConverging { .. } => 2,
            Self::CycleLimit { .. } => 3,
            Self::DeadlineExceeded { .. } => 4,
        };
        Self::KINDS[index]
    }
}

impl Assessment {
    /// How long one more cycle should take by the fitted model: the predicted final cycle
    /// without the switch. What the next cycle's measured time is held against.
    pub fn predicted_cycle(&self) -> Duration {
        self.predicted_final.saturating_sub(self.switch_overhead)
    }
}

impl fmt::Display for Assessment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decision = match self.decision {
            Decision::CutoverReady => "cutover ready".to_owned(),
            Decision::AnotherCycle => "another cycle".to_owned(),
            Decision::NotConverging {
                blue_change_rate,
                copy_rate,
            } => format!(
                "not converging: blue changes {blue_change_rate:.0} docs/s, copy runs at \
                 {copy_rate:.0} docs/s"
            ),
            Decision::CycleLimit { max_cycles } => {
                format!("gave up: {max_cycles} cycles and the delta never fitted")
            }
            Decision::DeadlineExceeded { deadline } => {
                format!("gave up: past the deadline of {}", seconds(deadline))
            }
        };
        write!(
            f,
            "{decision} after cycle {}: {} pending, predicted pause {} ({} fixed + {:.0} docs/s + \
             switch {} {}) against a budget of {}",
            self.cycles,
            self.pending,
            seconds(self.predicted_final),
            seconds(self.fixed),
            self.rate,
            seconds(self.switch_overhead),
            if self.overhead_measured {
                "measured"
            } else {
                "assumed"
            },
            seconds(self.pause_budget),
        )
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// Decides after the last of `history` (every cycle so far, oldest first), `elapsed` since the
/// upgrade started.
///
/// # Panics
///
/// Never: an empty history is answered with `AnotherCycle` (there is nothing to judge yet).
pub fn assess(limits: &Limits, history: &[Cycle], elapsed: Duration) -> Assessment {
    let switch_overhead = limits.switch_overhead.unwrap_or(DEFAULT_SWITCH_OVERHEAD);
    let (fixed, per_document) = fit(history);
    let pending = history.last().map_or(0, |c| c.pending_after);
    let predicted_final = fixed + per_document.mul_f64(pending as f64) + switch_overhead;
    let mut assessment = Assessment {
        decision: Decision::AnotherCycle,
        cycles: history.len() as u32,
        pending,
        fixed,
        rate: if per_document.is_zero() {
            f64::INFINITY
        } else {
            1.0 / per_document.as_secs_f64()
        },
        switch_overhead,
        overhead_measured: limits.switch_overhead.is_some(),
        predicted_final,
        pause_budget: limits.pause_budget,
    };
    let Some(last) = history.last() else {
        return assessment;
    };
    assessment.decision = if predicted_final <= limits.pause_budget {
        Decision::CutoverReady
    } else if let Some(deadline) = limits.deadline.filter(|d| elapsed >= *d) {
        Decision::DeadlineExceeded { deadline }
    } else if stalled(history) {
        let secs = last.duration.as_secs_f64().max(f64::MIN_POSITIVE);
        Decision::NotConverging {
            blue_change_rate: last.pending_after as f64 / secs,
            copy_rate: last.documents as f64 / secs,
        }
    } else if history.len() as u32 >= limits.max_cycles {
        Decision::CycleLimit {
            max_cycles: limits.max_cycles,
        }
    } else {
        Decision::AnotherCycle
    };
    assessment
}

/// Decides for pipelines that copy at once, each with its own `histories` entry: the final
/// cycle lasts as long as its slowest pipeline, so the assessment is the worst of each
/// pipeline's own (a refusal before another cycle before ready; then the longest predicted
/// pause). No pipeline at all is answered with `AnotherCycle`.
pub fn assess_slowest(limits: &Limits, histories: &[Vec<Cycle>], elapsed: Duration) -> Assessment {
    let severity = |a: &Assessment| match a.decision {
        Decision::CutoverReady => 0,
        Decision::AnotherCycle => 1,
        _ => 2,
    };
    histories
        .iter()
        .map(|history| assess(limits, history, elapsed))
        .max_by(|a, b| {
            severity(a)
                .cmp(&severity(b))
                .then(a.predicted_final.cmp(&b.predicted_final))
        })
        .unwrap_or_else(|| assess(limits, &[], elapsed))
}

/// `(fixed, per document)` from the two most recent cycles; through the origin when there is
/// one cycle, or when the two do not give a positive cost per document and a fixed part of at
/// least zero (timing noise on two cycles of similar size).
fn fit(history: &[Cycle]) -> (Duration, Duration) {
    let recent = &history[history.len().saturating_sub(2)..];
    if let [a, b] = recent {
        let (xa, xb) = (a.documents as f64, b.documents as f64);
        let (ya, yb) = (a.duration.as_secs_f64(), b.duration.as_secs_f64());
        if xa != xb {
            let slope = (ya - yb) / (xa - xb);
            let fixed = ya - slope * xa;
            if slope > 0.0 && fixed >= 0.0 {
                return (
                    Duration::from_secs_f64(fixed),
                    Duration::from_secs_f64(slope),
                );
            }
        }
    }
    let documents: u64 = recent.iter().map(|c| c.documents).sum();
    let time: Duration = recent.iter().map(|c| c.duration).sum();
    if documents == 0 {
        // Nothing was copied: every second went to the fixed part.
        let fixed = recent.last().map_or(Duration::ZERO, |c| c.duration);
        return (fixed, Duration::ZERO);
    }
    (Duration::ZERO, time.div_f64(documents as f64))
}

/// Whether the lowest pending count is at least [`STALL_CYCLES`] cycles old.
fn stalled(history: &[Cycle]) -> bool {
    // Nothing pending is not a stall, however long the last (empty) cycle took.
    if history.len() <= STALL_CYCLES || history.last().is_some_and(|c| c.pending_after == 0) {
        return false;
    }
    let (before, recent) = history.split_at(history.len() - STALL_CYCLES);
    let best_before = before.iter().map(|c| c.pending_after).min();
    let best_recent = recent.iter().map(|c| c.pending_after).min();
    best_recent >= best_before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            pause_budget: Duration::from_millis(500),
            max_cycles: 20,
            deadline: None,
            switch_overhead: None,
        }
    }

    fn cycle(documents: u64, secs: f64, pending_after: u64) -> Cycle {
        Cycle {
            documents,
            duration: Duration::from_secs_f64(secs),
            pending_after,
        }
    }

    fn decisions(limits: &Limits, series: &[Cycle]) -> Vec<Decision> {
        (1..=series.len())
            .map(|n| assess(limits, &series[..n], Duration::from_secs(n as u64)).decision)
            .collect()
    }

    #[test]
    fn pipelines_in_parallel_are_judged_by_the_slowest() {
        let fast = vec![cycle(1_000_000, 2.0, 10_000), cycle(10_000, 0.05, 100)];
        let slow = vec![
            cycle(1_000_000, 10.0, 100_000),
            cycle(100_000, 1.0, 100_000),
        ];
        let one = assess(&limits(), &fast, Duration::from_secs(3));
        assert_eq!(one.decision, Decision::CutoverReady);
        let both = assess_slowest(
            &limits(),
            &[fast.clone(), slow.clone()],
            Duration::from_secs(3),
        );
        assert_eq!(both, assess(&limits(), &slow, Duration::from_secs(3)));
        assert_eq!(both.decision, Decision::AnotherCycle);
        // Ready on both: the longer predicted pause is the one reported.
        let slow_ready = vec![cycle(1_000_000, 10.0, 1_000), cycle(1_000, 0.02, 20_000)];
        let both = assess_slowest(
            &limits(),
            &[fast, slow_ready.clone()],
            Duration::from_secs(3),
        );
        assert_eq!(both, assess(&limits(), &slow_ready, Duration::from_secs(3)));
        assert_eq!(
            assess_slowest(&limits(), &[], Duration::ZERO).decision,
            Decision::AnotherCycle
        );
    }

    #[test]
    fn the_field_series_cuts_over_after_the_third_cycle() {
        // 50M documents in 25 s, then 6M in 5 s, then 90K in 0.5 s; blue writes ~10K docs/s.
        let series = [
            cycle(50_000_000, 25.0, 6_000_000),
            cycle(6_000_000, 5.0, 90_000),
            cycle(90_000, 0.5, 5_000),
        ];
        assert_eq!(
            decisions(&limits(), &series),
            [
                Decision::AnotherCycle,
                Decision::AnotherCycle,
                Decision::CutoverReady
            ]
        );
        // After cycle 2 the bulk rate alone would promise 90K in 75 ms; the fitted fixed
        // part (the cost of any cycle) says otherwise.
        let second = assess(&limits(), &series[..2], Duration::from_secs(30));
        assert!(second.fixed > Duration::from_secs(2), "{second}");
        let third = assess(&limits(), &series, Duration::from_secs(31));
        assert!(
            third.predicted_final <= Duration::from_millis(500),
            "{third}"
        );
        assert!(
            third.to_string().contains("cutover ready after cycle 3"),
            "{third}"
        );
    }

    #[test]
    fn blue_writing_faster_than_the_copy_is_not_converging() {
        // Each cycle copies 100K docs/s while blue changes 150K docs/s.
        let series = [
            cycle(1_000_000, 10.0, 1_500_000),
            cycle(1_500_000, 15.0, 2_250_000),
            cycle(2_250_000, 22.5, 3_375_000),
            cycle(3_375_000, 33.75, 5_062_500),
        ];
        let got = decisions(&limits(), &series);
        assert_eq!(got[..3], [Decision::AnotherCycle; 3]);
        let Decision::NotConverging {
            blue_change_rate,
            copy_rate,
        } = got[3]
        else {
            panic!("{:?}", got[3]);
        };
        assert!(
            (blue_change_rate - 150_000.0).abs() < 1.0,
            "{blue_change_rate}"
        );
        assert!((copy_rate - 100_000.0).abs() < 1.0, "{copy_rate}");
        let text = assess(&limits(), &series, Duration::from_secs(90)).to_string();
        assert!(text.contains("blue changes 150000 docs/s"), "{text}");
    }

    #[test]
    fn a_copy_that_still_shrinks_is_given_more_cycles_up_to_the_limit() {
        let mut series = Vec::new();
        let mut pending = 10_000_000u64;
        for _ in 0..5 {
            let next = pending * 9 / 10;
            series.push(cycle(pending, pending as f64 / 100_000.0 + 2.0, next));
            pending = next;
        }
        let mut limits = limits();
        limits.max_cycles = 5;
        assert_eq!(
            decisions(&limits, &series),
            [
                Decision::AnotherCycle,
                Decision::AnotherCycle,
                Decision::AnotherCycle,
                Decision::AnotherCycle,
                Decision::CycleLimit { max_cycles: 5 }
            ]
        );
    }

    #[test]
    fn the_deadline_and_a_measured_overhead_are_honoured() {
        let series = [cycle(1_000_000, 1.0, 1_000_000)];
        let mut limits = limits();
        limits.deadline = Some(Duration::from_secs(60));
        let late = assess(&limits, &series, Duration::from_secs(61));
        assert_eq!(
            late.decision,
            Decision::DeadlineExceeded {
                deadline: Duration::from_secs(60)
            }
        );
        // 1K pending at 1M docs/s is 1 ms: ready with the assumed 50 ms overhead, not with a
        // measured 600 ms one.
        let small = [cycle(1_000_000, 1.0, 1_000)];
        assert_eq!(
            assess(&limits, &small, Duration::ZERO).decision,
            Decision::CutoverReady
        );
        limits.switch_overhead = Some(Duration::from_millis(600));
        let slow = assess(&limits, &small, Duration::ZERO);
        assert_eq!(slow.decision, Decision::AnotherCycle);
        assert!(
            slow.to_string().contains("switch 0.600 s measured"),
            "{slow}"
        );
    }

    #[test]
    fn the_predicted_cycle_is_the_fitted_model_without_the_switch() {
        // Fixed 2 s and 10 µs a document (from 1M in 12 s and 100K in 3 s): 50K pending is
        // 2.5 s of cycle, plus the assumed 50 ms switch for the pause.
        let series = [cycle(1_000_000, 12.0, 100_000), cycle(100_000, 3.0, 50_000)];
        let a = assess(&limits(), &series, Duration::from_secs(15));
        assert!(
            (a.predicted_cycle().as_secs_f64() - 2.5).abs() < 1e-6,
            "{a}"
        );
        assert_eq!(
            a.predicted_final - a.predicted_cycle(),
            DEFAULT_SWITCH_OVERHEAD
        );
    }

    #[test]
    fn each_decision_kind_has_its_own_name() {
        let decisions = [
            Decision::CutoverReady,
            Decision::AnotherCycle,
            Decision::NotConverging {
                blue_change_rate: 2.0,
                copy_rate: 1.0,
            },
            Decision::CycleLimit { max_cycles: 3 },
            Decision::DeadlineExceeded {
                deadline: Duration::from_secs(1),
            },
        ];
        let kinds: Vec<_> = decisions.iter().map(Decision::kind).collect();
        assert_eq!(kinds, Decision::KINDS);
        assert_eq!(kinds[2], "not_converging");
    }

    #[test]
    fn degenerate_histories_never_panic_or_divide_by_zero() {
        let limits = limits();
        assert_eq!(
            assess(&limits, &[], Duration::ZERO).decision,
            Decision::AnotherCycle
        );
        let empty = [cycle(0, 0.2, 0), cycle(0, 0.1, 0)];
        let a = assess(&limits, &empty, Duration::ZERO);
        assert_eq!(a.decision, Decision::CutoverReady, "{a}");
        // Two cycles of one size: the fit falls back to throughput.
        let same = [cycle(1_000, 1.0, 1_000), cycle(1_000, 0.5, 1_000)];
        let b = assess(&limits, &same, Duration::ZERO);
        assert_eq!(b.fixed, Duration::ZERO, "{b}");
        assert!((b.rate - 1_333.3).abs() < 1.0, "{b}");
    }
}
