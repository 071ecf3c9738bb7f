//! `cutover upgrade start --dry-run`: the sampled documents before and after their
//! transform, a summary, and whether the plan's transforms held.

use std::fmt::Write as _;

use cutover_proto::v1::SampleResult;
use serde_json::{Value, json};

use super::CliError;

/// What the transforms made of the sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Summary {
    /// Documents sampled.
    pub sampled: u64,
    /// Documents transformed into an output.
    pub transformed: u64,
    /// Documents the transform dropped on purpose.
    pub dropped: u64,
    /// Documents whose transform failed.
    pub failed: u64,
}

impl Summary {
    /// Counts the samples by outcome; an error wins over `dropped`.
    pub(super) fn of(samples: &[SampleResult]) -> Self {
        let mut summary = Self::default();
        for sample in samples {
            summary.sampled += 1;
            if !sample.error.is_empty() {
                summary.failed += 1;
            } else if sample.dropped {
                summary.dropped += 1;
            } else {
                summary.transformed += 1;
            }
        }
        summary
    }

    /// Err when any transform failed: a dry run with a failure exits 1.
    pub(super) fn check(self) -> Result<(), CliError> {
        if self.failed == 0 {
            Ok(())
        } else {
            Err(CliError::DryRunFailed {
                failed: self.failed,
                sampled: self.sampled,
            })
        }
    }
}

/// Each sample as `collection/id`, `before:` and `after:` (or `dropped`, or `error:`),
/// then the summary line.
pub(super) fn text(samples: &[SampleResult]) -> String {
    let mut out = String::new();
    for sample in samples {
        let _ = writeln!(out, "{}/{}", sample.collection, sample.id);
        let _ = writeln!(out, "  before: {}", String::from_utf8_lossy(&sample.before));
        if !sample.error.is_empty() {
            let _ = writeln!(out, "  error: {}", sample.error);
        } else if sample.dropped {
            out.push_str("  dropped\n");
        } else {
            let _ = writeln!(out, "  after:  {}", String::from_utf8_lossy(&sample.after));
        }
    }
    let summary = Summary::of(samples);
    let _ = writeln!(
        out,
        "{} documents sampled: {} transformed, {} dropped, {} failed",
        summary.sampled, summary.transformed, summary.dropped, summary.failed
    );
    out
}

/// The samples (bodies as JSON values when they parse, else as strings) and the summary.
pub(super) fn json(samples: &[SampleResult]) -> Value {
    let summary = Summary::of(samples);
    json!({
        "dry_run": true,
        "samples": samples.iter().map(sample).collect::<Vec<_>>(),
        "sampled": summary.sampled,
        "transformed": summary.transformed,
        "dropped": summary.dropped,
        "failed": summary.failed,
    })
}

fn sample(sample: &SampleResult) -> Value {
    json!({
        "collection": sample.collection,
        "id": sample.id,
        "before": body(&sample.before),
        "after": body(&sample.after),
        "dropped": sample.dropped,
        "error": (!sample.error.is_empty()).then_some(&sample.error),
    })
}

/// A document body: its JSON value, the text when it is not JSON, `null` when empty.
fn body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<SampleResult> {
        let sample = |id: &str, after: &str, dropped, error: &str| SampleResult {
            collection: "users".to_owned(),
            id: id.to_owned(),
            before: br#"{"name":"ada"}"#.to_vec(),
            after: after.as_bytes().to_vec(),
            error: error.to_owned(),
            dropped,
        };
        vec![
            sample("u1", r#"{"name":"ada","v":2}"#, false, ""),
            sample("u2", "", true, ""),
            sample("u3", "", false, "missing field `age`"),
        ]
    }

    #[test]
    fn the_text_shows_each_outcome_and_a_summary() {
        assert_eq!(
            text(&samples()),
            "users/u1\n  before: {\"name\":\"ada\"}\n  after:  {\"name\":\"ada\",\"v\":2}\n\
             users/u2\n  before: {\"name\":\"ada\"}\n  dropped\n\
             users/u3\n  before: {\"name\":\"ada\"}\n  error: missing field `age`\n\
             3 documents sampled: 1 transformed, 1 dropped, 1 failed\n"
        );
    }

    #[test]
    fn a_failure_fails_the_dry_run() {
        let summary = Summary::of(&samples());
        assert_eq!(
            summary,
            Summary {
                sampled: 3,
                transformed: 1,
                dropped: 1,
                failed: 1
            }
        );
        assert!(summary.check().is_err());
        assert!(Summary::of(&samples()[..2]).check().is_ok());
    }

    #[test]
    fn the_json_embeds_bodies_as_values() {
        let value = json(&samples());
        assert_eq!(value["dry_run"], true);
        assert_eq!(value["samples"][0]["after"]["v"], 2);
        assert_eq!(value["samples"][1]["after"], Value::Null);
        assert_eq!(value["samples"][1]["dropped"], true);
        assert_eq!(value["samples"][2]["error"], "missing field `age`");
        assert_eq!(value["samples"][0]["error"], Value::Null);
        assert_eq!(value["failed"], 1);
        assert_eq!(body(b"not json"), Value::String("not json".to_owned()));
    }
}
