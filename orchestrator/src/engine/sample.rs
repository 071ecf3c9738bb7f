//! The dry run: the plan's programs over a sample of blue's documents, writing nothing.

use std::collections::HashMap;

use cutover_proto::v1::{SampleResult, pull_response::Kind};

use super::{
    peer::{PeerError, SourcePeer},
    routes::Routes,
    transform::Outcome,
};

/// Default documents sampled per collection.
pub const DEFAULT_SAMPLE: u32 = 20;
/// Documents read from one source at most while looking for samples.
const SCAN_LIMIT: u64 = 1_000_000;

/// What stopped a dry run.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// A source failed.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// A source's endpoint is unusable.
    #[error("{0}")]
    Endpoint(String),
}

/// Up to `per_collection` live documents of each collection of every source, each with what
/// its forward program makes of it.
pub async fn sample(
    sources: &[String],
    routes: &Routes,
    per_collection: u32,
) -> Result<Vec<SampleResult>, SampleError> {
    let per_collection = if per_collection == 0 {
        DEFAULT_SAMPLE
    } else {
        per_collection
    } as usize;
    let mut results = Vec::new();
    for endpoint in sources {
        let source = SourcePeer::new(endpoint).map_err(SampleError::Endpoint)?;
        let about = source.describe().await?;
        let wanted = about.collections.len();
        let mut taken: HashMap<String, usize> = HashMap::new();
        let mut stream = source.pull(0, &[], 1_000, 1 << 20).await?;
        let mut scanned = 0u64;
        'scan: while let Some(message) = stream.message().await.map_err(|status| PeerError {
            endpoint: endpoint.clone(),
            call: "Pull",
            status,
        })? {
            let Some(Kind::Batch(batch)) = message.kind else {
                break;
            };
            for doc in batch.documents {
                scanned += 1;
                let count = taken.entry(doc.collection.clone()).or_default();
                if doc.tombstone || *count >= per_collection {
                    continue;
                }
                *count += 1;
                results.push(try_one(routes, doc));
                let full = taken.values().filter(|n| **n >= per_collection).count();
                if full >= wanted {
                    break 'scan;
                }
            }
            if scanned >= SCAN_LIMIT {
                break;
            }
        }
    }
    Ok(results)
}

fn try_one(routes: &Routes, doc: cutover_proto::v1::Document) -> SampleResult {
    let mut result = SampleResult {
        collection: doc.collection.clone(),
        id: doc.id.clone(),
        before: doc.body.to_vec(),
        ..SampleResult::default()
    };
    match routes.transform(&doc.collection).apply(&doc.body) {
        Outcome::Body(body) => result.after = body.to_vec(),
        Outcome::Dropped => result.dropped = true,
        Outcome::Failed(error) => result.error = error,
    }
    result
}
