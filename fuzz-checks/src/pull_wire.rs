//! The Pull wire: whatever prost decodes from a node's stream, the node's hand-written encoder
//! writes back to exactly the bytes prost writes for it, and those bytes decode to the same
//! message. The node's own decoding of a `PullRequest` round-trips too.

use cutover_proto::{
    pull_wire::{Batch, DocumentRef, PullMessage},
    v1::{PullRequest, PullResponse, pull_response::Kind},
};
use prost::Message;

/// Decodes `data` as a `PullResponse` and a `PullRequest` and checks both round trips.
pub fn pull_wire(data: &[u8]) {
    if let Ok(response) = PullResponse::decode(data) {
        let canonical = response.encode_to_vec();
        let decoded =
            PullResponse::decode(canonical.as_slice()).expect("prost reads back what prost wrote");
        assert_eq!(decoded, response, "prost round trip");
        if let Some(message) = ours(&response) {
            let mut written = Vec::new();
            message.encode(&mut written);
            assert_eq!(
                written, canonical,
                "the node's encoder and prost differ on {response:?}"
            );
            let back = message.into_response().expect("our bytes decode");
            assert_eq!(back, response, "into_response");
        }
    }
    if let Ok(request) = PullRequest::decode(data) {
        let again = PullRequest::decode(request.encode_to_vec().as_slice())
            .expect("prost reads back what prost wrote");
        assert_eq!(again, request, "PullRequest round trip");
    }
}

/// The message the node would build for `response`, through the batch the scan fills.
fn ours(response: &PullResponse) -> Option<PullMessage> {
    match response.kind.as_ref()? {
        Kind::Complete(complete) => Some(PullMessage::Complete(*complete)),
        Kind::Batch(batch) => {
            let mut building = Batch::new(usize::MAX, u64::MAX);
            for document in &batch.documents {
                let document_ref = DocumentRef {
                    collection: &document.collection,
                    id: &document.id,
                    version: document.version,
                    body: &document.body,
                    tombstone: document.tombstone,
                };
                assert!(building.fits(&document_ref), "an unbounded batch takes all");
                building.push(document.seq, &document_ref);
            }
            let mut encoded = building.take();
            assert!(building.is_empty(), "take empties the batch");
            assert_eq!(encoded.count, batch.documents.len());
            assert_eq!(
                encoded.last_seq,
                batch.documents.last().map_or(0, |d| d.seq),
                "a batch resumes after its last document"
            );
            // A node sends its last document's seq; the decoded batch may say otherwise.
            encoded.last_seq = batch.last_seq;
            Some(PullMessage::Batch(encoded))
        }
    }
}
