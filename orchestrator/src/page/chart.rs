//! The convergence charts as inline SVG: documents pending after each forward cycle, and
//! each cycle's duration against the pause budget and the threshold engine's prediction of
//! the final cycle. Both on a log scale (zero on the bottom line, a decade below 1): cycle 1
//! copies everything and takes seconds, the last deltas take milliseconds, and both must be
//! readable on one chart.

use std::fmt::Write as _;

use cutover_proto::v1::{CycleRecord, Decision};

use super::html::escape;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One value to plot at a cycle.
pub(super) struct Point {
    pub cycle: u32,
    pub value: f64,
    pub label: String,
}

/// A chart: its id, its unit, its points, and the optional budget line and prediction.
pub(super) struct Chart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub unit: &'a str,
    pub points: Vec<Point>,
    pub budget: Option<f64>,
    pub prediction: Option<Point>,
}

/// Most cycles a chart plots: the latest ones (a postponed upgrade under load runs a delta
/// cycle a second, and the page must stay small).
pub(super) const CHART_CYCLES: usize = 60;
/// Most cycle numbers written under a chart's axis.
const AXIS_LABELS: u32 = 15;

/// The latest [`CHART_CYCLES`] forward cycles: reverse ones (reverse sync, a rollback) run
/// the other way and would mix two convergences on one line.
pub(super) fn forward(cycles: &[CycleRecord]) -> impl Iterator<Item = &CycleRecord> {
    let forward: Vec<&CycleRecord> = cycles
        .iter()
        .filter(|c| c.direction.is_empty() || c.direction == "forward")
        .collect();
    let skip = forward.len().saturating_sub(CHART_CYCLES);
    forward.into_iter().skip(skip)
}

/// Documents pending after each forward cycle.
pub(super) fn pending(cycles: &[CycleRecord]) -> Chart<'static> {
    Chart {
        id: "chart-pending",
        title: "Documents pending after each cycle",
        unit: "documents",
        points: forward(cycles)
            .map(|c| Point {
                cycle: c.cycle,
                value: c.pending_after as f64,
                label: format!("cycle {}: {} pending", c.cycle, c.pending_after),
            })
            .collect(),
        budget: None,
        prediction: None,
    }
}

/// Each forward cycle's duration, the pause budget and the predicted final cycle.
pub(super) fn duration(cycles: &[CycleRecord], decision: Option<&Decision>) -> Chart<'static> {
    let points: Vec<Point> = forward(cycles)
        .map(|c| {
            let ms = c.duration_micros as f64 / 1e3;
            Point {
                cycle: c.cycle,
                value: ms,
                label: format!(
                    "cycle {}{}: {:.0} ms",
                    c.cycle,
                    if c.final_cycle { " (final)" } else { "" },
                    ms
                ),
            }
        })
        .collect();
    let next = points.last().map_or(1, |p| p.cycle + 1);
    let still_cycling = !forward(cycles).any(|c| c.final_cycle);
    Chart {
        id: "chart-duration",
        title: "Cycle duration (ms) against the pause budget",
        unit: "ms",
        budget: decision.map(|d| d.pause_budget_ms).filter(|b| *b > 0.0),
        prediction: decision
            .filter(|d| still_cycling && d.predicted_final_ms > 0.0)
            .map(|d| Point {
                cycle: next,
                value: d.predicted_final_ms,
                label: format!("predicted final cycle: {:.0} ms", d.predicted_final_ms),
            }),
        points,
    }
}

/// The chart as an `<svg>` element (or a line saying there is nothing to plot yet).
pub(super) fn svg(chart: &Chart<'_>) -> String {
    let mut out = format!(
        r#"<figure class="chart"><figcaption>{}</figcaption>"#,
        escape(chart.title)
    );
    if chart.points.is_empty() {
        let _ = write!(
            out,
            r#"<p class="empty" id="{}">No cycle has finished yet.</p></figure>"#,
            chart.id
        );
        return out;
    }
    let values = chart
        .points
        .iter()
        .chain(&chart.prediction)
        .map(|p| p.value)
        .chain(chart.budget);
    let top = log_ceiling(values.fold(1.0, f64::max));
    let last = chart
        .prediction
        .as_ref()
        .or(chart.points.last())
        .map_or(1, |p| p.cycle);
    let first = chart.points[0].cycle;
    let x = |cycle: u32| {
        let span = f64::from((last - first).max(1));
        LEFT + (WIDTH - LEFT - RIGHT) * f64::from(cycle.saturating_sub(first)) / span
    };
    // Zero has no logarithm: it sits on the bottom line, one decade below 1.
    let decades = top.log10() + 1.0;
    let y = |value: f64| {
        let fraction = if value < 1.0 {
            0.0
        } else {
            (value.log10() + 1.0) / decades
        };
        HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * fraction
    };
    let _ = write!(
        out,
        r#"<svg id="{}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        chart.id,
        escape(chart.title)
    );
    // A grid line for zero and for each power of ten.
    let _ = write!(
        out,
        r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">0</text>"#,
        WIDTH - RIGHT,
        LEFT - 6.0,
        y(0.0) + 4.0,
        y = y(0.0)
    );
    let mut decade = 1.0;
    while decade <= top {
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(decade) + 4.0,
            short(decade),
            y = y(decade)
        );
        decade *= 10.0;
    }
    let step = ((last - first) / AXIS_LABELS + 1) as usize;
    for cycle in (first..=last).step_by(step) {
        let _ = write!(
            out,
            r#"<text class="tick" x="{:.1}" y="{}" text-anchor="middle">{cycle}</text>"#,
            x(cycle),
            HEIGHT - 8.0
        );
    }
    if let Some(budget) = chart.budget {
        let _ = write!(
            out,
            r#"<line class="budget" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"><title>pause budget: {budget:.0} {}</title></line><text class="budget-label" x="{}" y="{:.1}" text-anchor="end">budget {budget:.0} {}</text>"#,
            WIDTH - RIGHT,
            chart.unit,
            WIDTH - RIGHT,
            y(budget) - 4.0,
            chart.unit,
            y = y(budget)
        );
    }
    let line: Vec<String> = chart
        .points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.cycle), y(p.value)))
        .collect();
    let _ = write!(
        out,
        r#"<polyline class="series" points="{}"/>"#,
        line.join(" ")
    );
    let circles = chart.points.iter().map(|p| ("point", 4, p));
    let prediction = chart.prediction.iter().map(|p| ("prediction", 5, p));
    for (class, radius, point) in circles.chain(prediction) {
        let _ = write!(
            out,
            r#"<circle class="{class}" data-cycle="{}" data-value="{}" cx="{:.1}" cy="{:.1}" r="{radius}"><title>{}</title></circle>"#,
            point.cycle,
            point.value,
            x(point.cycle),
            y(point.value),
            escape(&point.label)
        );
    }
    out.push_str("</svg></figure>");
    out
}

/// The smallest power of ten at or above `value` (at least 10).
fn log_ceiling(value: f64) -> f64 {
    10f64.powf(value.max(10.0).log10().ceil())
}

/// 1, 10, 100, 1k, 10k, 1M…
fn short(value: f64) -> String {
    match value {
        v if v >= 1e9 => format!("{:.0}G", v / 1e9),
        v if v >= 1e6 => format!("{:.0}M", v / 1e6),
        v if v >= 1e3 => format!("{:.0}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::fixtures;

    #[test]
    fn a_point_per_forward_cycle_and_the_prediction_after_them() {
        let mut cycles = vec![fixtures::cycle(1, false), fixtures::cycle(2, false)];
        let mut reverse = fixtures::cycle(1, false);
        reverse.direction = "reverse".to_owned();
        cycles.push(reverse);
        let decision = fixtures::another_cycle();
        let svg = svg(&duration(&cycles, Some(&decision)));
        assert_eq!(svg.matches(r#"class="point""#).count(), 2, "{svg}");
        assert!(
            svg.contains(r#"class="prediction" data-cycle="3""#),
            "{svg}"
        );
        assert!(svg.contains(r#"class="budget""#), "{svg}");
        let svg = super::svg(&pending(&cycles));
        assert_eq!(svg.matches(r#"class="point""#).count(), 2);
        assert!(svg.contains(r#"data-value="1200""#), "{svg}");
    }

    #[test]
    fn only_the_latest_cycles_are_plotted_with_a_few_labels() {
        let cycles: Vec<CycleRecord> = (1..=500).map(|n| fixtures::cycle(n, false)).collect();
        let svg = svg(&pending(&cycles));
        assert_eq!(svg.matches(r#"class="point""#).count(), CHART_CYCLES);
        assert!(svg.contains(r#"data-cycle="441""#) && !svg.contains(r#"data-cycle="440""#));
        let labels = svg.matches(r#"text-anchor="middle""#).count();
        assert!(labels <= 16, "{labels} axis labels");
    }

    #[test]
    fn no_cycle_yet_says_so() {
        let svg = svg(&pending(&[]));
        assert!(svg.contains("No cycle has finished yet"), "{svg}");
        assert!(!svg.contains("<svg"));
    }

    #[test]
    fn the_scale_reaches_the_largest_value() {
        assert_eq!(log_ceiling(4_500.0), 10_000.0);
        assert_eq!(log_ceiling(3.0), 10.0);
        assert_eq!(short(1e6), "1M");
    }
}
