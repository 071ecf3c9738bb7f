//! The process-wide Prometheus recorder behind the `metrics` facade.
//!
//! We render `/metrics` ourselves (on each daemon's own HTTP port), so the exporter is built
//! without its HTTP listener. Without that listener nothing drains histogram samples between
//! scrapes, so [`install`] starts a small upkeep thread: memory stays bounded even when nobody
//! scrapes.

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Gauge: connections open on a listener (label `port`).
pub const CONNECTIONS: &str = "cutover_connections";
/// Counter: times a listener stopped accepting because `--max-connections` were open (label
/// `port`).
pub const CONNECTION_LIMIT_REACHED: &str = "cutover_connection_limit_reached_total";
/// Counter: requests answered `408` because their head did not arrive in time.
pub const HEAD_TIMEOUTS: &str = "cutover_request_head_timeouts_total";

/// Histogram buckets for every metric whose name ends in `_seconds`: 100 µs to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// How often histogram samples are folded into buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The exporter refused its configuration.
    #[error("cannot configure the Prometheus recorder: {0}")]
    Build(#[from] BuildError),
    /// Something other than [`install`] set the global `metrics` recorder first.
    #[error("another metrics recorder is installed in this process")]
    RecorderTaken,
    /// The upkeep thread could not be started.
    #[error("cannot start the metrics upkeep thread: {0}")]
    Upkeep(std::io::Error),
}

/// Installs the global recorder once per process and returns its handle; later calls return
/// the same handle, so in-process clusters (tests, `cutover demo`) share one registry.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    // Two threads racing here: the loser's recorder is dropped and it returns the winner's.
    if HANDLE.set(handle.clone()).is_err() {
        return Ok(HANDLE.get().expect("set by the racing winner").clone());
    }
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::RecorderTaken)?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
        .map_err(MetricsError::Upkeep)?;
    describe();
    Ok(handle)
}

/// Describes the metrics of the listeners every daemon shares (`serve.rs`).
fn describe() {
    metrics::describe_gauge!(CONNECTIONS, "Connections open on a listener (port).");
    metrics::describe_counter!(
        CONNECTION_LIMIT_REACHED,
        "Times a listener stopped accepting because --max-connections were open (port)."
    );
    metrics::describe_counter!(
        HEAD_TIMEOUTS,
        "Requests answered 408 because their head did not arrive within --header-timeout."
    );
}

/// The Prometheus text exposition of every metric recorded so far in this process, or an
/// empty exposition when no recorder was installed (a library embedded without telemetry).
pub fn render() -> String {
    HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_render_shows_recorded_metrics() {
        install().expect("first install");
        install().expect("second install returns the same handle");
        metrics::counter!("cutover_test_events_total", "outcome" => "ok").increment(3);
        metrics::histogram!("cutover_test_wait_seconds").record(0.002);
        let text = render();
        assert!(
            text.contains("cutover_test_events_total{outcome=\"ok\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("cutover_test_wait_seconds_bucket{le=\"0.0025\"} 1"),
            "{text}"
        );
    }
}
