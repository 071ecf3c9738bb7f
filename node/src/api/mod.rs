//! The node's interfaces: the HTTP document API and the gRPC `Source`, `Sink` and `NodeAdmin`
//! services. Each handler runs its store call on the blocking pool.

pub mod admin;
pub mod forward;
pub mod http;
mod listing;
pub mod openapi;
mod request;
pub mod route;
pub mod sink;
pub mod source;

use cutover_daemon::Classify;
use tonic::Status;

use crate::store::StoreError;

/// Runs a blocking store call off the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        // The closure panicked: a bug, reported like any internal failure.
        Err(join) => Err(StoreError::Corrupt {
            what: if join.is_panic() {
                "a store call panicked"
            } else {
                "a store call was cancelled"
            },
        }),
    }
}

/// A store error as a gRPC status, through the one classification.
pub(crate) fn status(error: StoreError) -> Status {
    error.to_status()
}
