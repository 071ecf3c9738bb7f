//! The node's metric names (all `cutover_node_*`), described once at start-up.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Documents created or updated by clients, counter.
pub const DOCUMENTS_WRITTEN: &str = "cutover_node_documents_written_total";
/// Documents deleted by clients, counter.
pub const DOCUMENTS_DELETED: &str = "cutover_node_documents_deleted_total";
/// HTTP requests by `route` and `status`, counter.
pub const HTTP_REQUESTS: &str = "cutover_node_http_requests_total";
/// HTTP request duration by `route` and `method`, histogram.
pub const HTTP_DURATION: &str = "cutover_node_http_request_duration_seconds";
/// Documents sent by `Source.Pull`, counter.
pub const PULLED_DOCUMENTS: &str = "cutover_node_pulled_documents_total";
/// Body bytes sent by `Source.Pull`, counter.
pub const PULLED_BYTES: &str = "cutover_node_pulled_bytes_total";
/// Documents written by `Sink.Apply`, counter.
pub const APPLIED_DOCUMENTS: &str = "cutover_node_applied_documents_total";
/// Body bytes written by `Sink.Apply`, counter.
pub const APPLIED_BYTES: &str = "cutover_node_applied_bytes_total";
/// Documents `Sink.Apply` skipped as stale redeliveries, counter.
pub const APPLY_SKIPPED: &str = "cutover_node_apply_skipped_total";
/// Client writes committed together in one batch (one WAL sync), histogram.
pub const WRITE_GROUP: &str = "cutover_node_write_group_size";
/// Client writes waiting for the group committer, gauge.
pub const QUEUED_WRITES: &str = "cutover_node_queued_writes";
/// Client writes refused because `--max-queued-writes` were waiting, counter.
pub const WRITES_OVERLOADED: &str = "cutover_node_writes_overloaded_total";
/// 1 while client writes are refused, gauge.
pub const FENCED: &str = "cutover_node_fenced";
/// The stable head seq, gauge.
pub const HEAD_SEQ: &str = "cutover_node_head_seq";
/// Live documents, gauge.
pub const LIVE_DOCUMENTS: &str = "cutover_node_live_documents";
/// Requests forwarded to another node of the cluster by `outcome` (`answered`: the node
/// answered, whatever its status; `unreachable`; `timeout`), counter.
pub const FORWARDED_REQUESTS: &str = "cutover_node_forwarded_requests_total";
/// Peers whose last `Describe` reported another cluster file hash, gauge.
pub const PEERS_DISAGREEING: &str = "cutover_node_cluster_peers_disagreeing";

/// Registers the descriptions of every node metric with the installed recorder.
pub fn describe() {
    describe_gauge!(
        QUEUED_WRITES,
        Unit::Count,
        "Client writes waiting for the group committer."
    );
    describe_counter!(
        WRITES_OVERLOADED,
        Unit::Count,
        "Client writes refused (503 overloaded) because --max-queued-writes were waiting."
    );
    describe_counter!(
        DOCUMENTS_WRITTEN,
        Unit::Count,
        "Documents created or updated by clients."
    );
    describe_counter!(
        DOCUMENTS_DELETED,
        Unit::Count,
        "Documents deleted by clients."
    );
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests by route and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request duration by route and method."
    );
    describe_counter!(
        PULLED_DOCUMENTS,
        Unit::Count,
        "Documents sent by Source.Pull."
    );
    describe_counter!(PULLED_BYTES, Unit::Bytes, "Body bytes sent by Source.Pull.");
    describe_counter!(
        APPLIED_DOCUMENTS,
        Unit::Count,
        "Documents written by Sink.Apply."
    );
    describe_counter!(
        APPLIED_BYTES,
        Unit::Bytes,
        "Body bytes written by Sink.Apply."
    );
    describe_counter!(
        APPLY_SKIPPED,
        Unit::Count,
        "Stale documents skipped by Sink.Apply."
    );
    describe_histogram!(
        WRITE_GROUP,
        Unit::Count,
        "Client writes committed together in one batch (one WAL sync)."
    );
    describe_gauge!(FENCED, "1 while client writes are refused.");
    describe_gauge!(HEAD_SEQ, "The stable head sequence number.");
    describe_gauge!(LIVE_DOCUMENTS, Unit::Count, "Live (non-deleted) documents.");
    describe_counter!(
        FORWARDED_REQUESTS,
        Unit::Count,
        "Requests forwarded to another node of the cluster, by outcome."
    );
    describe_gauge!(
        PEERS_DISAGREEING,
        Unit::Count,
        "Peers whose cluster file hash differs from this node's."
    );
}
