//! The wire form of a pull, written as the scan reads the store: each document goes from the
//! store's bytes straight into the encoded batch. Building `Document`s instead cost two
//! `String`s a document (allocated on the scan's thread, freed on the network's) and prost's
//! passes over the batch (its length, then each document's length again as it writes). The
//! bytes are those prost writes for the same `PullResponse` (the tests compare them), so any
//! gRPC client of the contract reads them.
//!
//! It lives with the contract, not in the node, because it is the contract's wire format
//! written by hand: its fuzz target checks it against prost on whatever prost decodes, and
//! builds without RocksDB.

use bytes::{BufMut, Bytes, BytesMut};
use prost::{
    Message,
    encoding::{encode_varint, encoded_len_varint},
};
use tonic::{
    Status,
    codec::{Codec, EncodeBuf, Encoder},
};

use crate::v1::{PullComplete, PullRequest, PullResponse, pull_response::Kind};

/// Protobuf framing of one document besides its strings and body, counted against the batch's
/// byte budget (tags, lengths, version, seq, tombstone flag: at most about 30 bytes).
pub const DOCUMENT_OVERHEAD: usize = 32;

/// One document as a scan reads it, borrowed from the store's bytes: the fields of a
/// `Document` but its `seq`, which [`Batch::push`] takes beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentRef<'a> {
    /// The collection's name.
    pub collection: &'a str,
    /// The document's id.
    pub id: &'a str,
    /// The document's version.
    pub version: u64,
    /// The JSON body (empty for a tombstone).
    pub body: &'a [u8],
    /// Whether the change is a delete.
    pub tombstone: bool,
}

/// One message of a pull stream, ready for the wire.
#[derive(Debug)]
pub enum PullMessage {
    /// A `PullResponse` carrying a `DocumentBatch`.
    Batch(EncodedBatch),
    /// The `PullResponse` carrying the `PullComplete`.
    Complete(PullComplete),
}

/// A `DocumentBatch` whose documents are already encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// Field 1 of the batch, once per document: tag, length, the encoded `Document`.
    pub documents: Bytes,
    /// How many documents `documents` holds.
    pub count: usize,
    /// The batch's `last_seq`.
    pub last_seq: u64,
}

impl PullMessage {
    /// Writes the message as prost writes the `PullResponse` it stands for.
    pub fn encode(&self, out: &mut impl BufMut) {
        match self {
            Self::Batch(batch) => {
                let last_seq = field_len(batch.last_seq);
                out.put_u8(tag(1, LEN));
                encode_varint((batch.documents.len() + last_seq) as u64, out);
                out.put_slice(&batch.documents);
                if last_seq > 0 {
                    out.put_u8(tag(2, VARINT));
                    encode_varint(batch.last_seq, out);
                }
            }
            Self::Complete(complete) => PullResponse {
                kind: Some(Kind::Complete(*complete)),
            }
            .encode_raw(out),
        }
    }

    /// The generated type, for a caller that wants one (decodes the batch's documents).
    pub fn into_response(self) -> Result<PullResponse, prost::DecodeError> {
        let mut encoded = Vec::new();
        self.encode(&mut encoded);
        PullResponse::decode(encoded.as_slice())
    }
}

const VARINT: u8 = 0;
const LEN: u8 = 2;

const fn tag(field: u8, wire_type: u8) -> u8 {
    field << 3 | wire_type
}

/// Bytes of a varint field holding `value` (tag included), 0 for the default value.
fn field_len(value: u64) -> usize {
    if value == 0 {
        0
    } else {
        1 + encoded_len_varint(value)
    }
}

/// Bytes of a length-delimited field of `len` bytes (tag included), 0 when empty.
fn bytes_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + encoded_len_varint(len as u64) + len
    }
}

fn put_bytes(out: &mut BytesMut, field: u8, bytes: &[u8]) {
    if !bytes.is_empty() {
        out.put_u8(tag(field, LEN));
        encode_varint(bytes.len() as u64, out);
        out.put_slice(bytes);
    }
}

fn put_varint(out: &mut BytesMut, field: u8, value: u64) {
    if value != 0 {
        out.put_u8(tag(field, VARINT));
        encode_varint(value, out);
    }
}

/// Appends `change`, at `seq`, as field 1 of a `DocumentBatch` (a `Document`).
fn put_document(out: &mut BytesMut, seq: u64, change: &DocumentRef<'_>) {
    let len = bytes_len(change.collection.len())
        + bytes_len(change.id.len())
        + field_len(change.version)
        + field_len(seq)
        + bytes_len(change.body.len())
        + field_len(u64::from(change.tombstone));
    out.put_u8(tag(1, LEN));
    encode_varint(len as u64, out);
    put_bytes(out, 1, change.collection.as_bytes());
    put_bytes(out, 2, change.id.as_bytes());
    put_varint(out, 3, change.version);
    put_varint(out, 4, seq);
    put_bytes(out, 5, change.body);
    put_varint(out, 6, u64::from(change.tombstone));
}

/// A batch being filled. Its buffer is reserved at the first document, so an empty batch
/// (after the last send) costs nothing.
#[derive(Debug)]
pub struct Batch {
    encoded: BytesMut,
    count: usize,
    last_seq: u64,
    /// Budgeted size of the documents so far (bodies, strings, framing).
    size: usize,
    max_documents: usize,
    max_bytes: usize,
}

impl Batch {
    /// An empty batch of at most `max_documents` (at least 1) and `max_bytes` of budget.
    pub fn new(max_documents: usize, max_bytes: u64) -> Self {
        Self {
            encoded: BytesMut::new(),
            count: 0,
            last_seq: 0,
            size: 0,
            max_documents: max_documents.max(1),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        }
    }

    /// Whether no document was pushed since the last [`take`](Self::take).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// What `change` counts against the byte budget.
    pub fn cost(change: &DocumentRef<'_>) -> usize {
        change.body.len() + change.collection.len() + change.id.len() + DOCUMENT_OVERHEAD
    }

    /// Whether `change` may join: a batch stays within its document count and its bytes, but
    /// for a single document larger than the byte budget, which goes alone.
    pub fn fits(&self, change: &DocumentRef<'_>) -> bool {
        self.is_empty()
            || (self.count < self.max_documents && self.size + Self::cost(change) <= self.max_bytes)
    }

    /// Encodes `change` at `seq` into the batch (whether it [`fits`](Self::fits) is the
    /// caller's to ask first).
    pub fn push(&mut self, seq: u64, change: &DocumentRef<'_>) {
        if self.is_empty() {
            let documents = self.max_documents.min(4096);
            let bytes = self.max_bytes.min(4 << 20);
            self.encoded.reserve(bytes.min(documents * 256));
        }
        self.size += Self::cost(change);
        self.count += 1;
        self.last_seq = seq;
        put_document(&mut self.encoded, seq, change);
    }

    /// The batch so far, leaving it empty.
    pub fn take(&mut self) -> EncodedBatch {
        self.size = 0;
        EncodedBatch {
            documents: std::mem::take(&mut self.encoded).freeze(),
            count: std::mem::take(&mut self.count),
            last_seq: std::mem::take(&mut self.last_seq),
        }
    }
}

/// The codec of `Source.Pull` as the node serves it: a [`PullRequest`] in, [`PullMessage`]s
/// out.
#[derive(Debug, Default, Clone, Copy)]
pub struct PullCodec;

impl Codec for PullCodec {
    type Encode = PullMessage;
    type Decode = PullRequest;
    type Encoder = PullEncoder;
    type Decoder = tonic_prost::ProstDecoder<PullRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        PullEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// Writes [`PullMessage`]s.
#[derive(Debug, Clone, Copy)]
pub struct PullEncoder;

impl Encoder for PullEncoder {
    type Item = PullMessage;
    type Error = Status;

    fn encode(&mut self, item: PullMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Document, DocumentBatch};

    fn change<'a>(collection: &'a str, id: &'a str, body: &'a [u8]) -> DocumentRef<'a> {
        DocumentRef {
            version: 1,
            tombstone: false,
            collection,
            id,
            body,
        }
    }

    /// Fills batches as the scan does and returns them, each decoded by prost.
    fn batches(max_documents: usize, max_bytes: u64, bodies: &[&[u8]]) -> Vec<Vec<Document>> {
        let mut batch = Batch::new(max_documents, max_bytes);
        let mut sent = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let id = format!("d{i}");
            let change = change("c", &id, body);
            if !batch.fits(&change) {
                sent.push(batch.take());
            }
            batch.push(i as u64 + 1, &change);
        }
        if !batch.is_empty() {
            sent.push(batch.take());
        }
        sent.into_iter()
            .map(|b| {
                let count = b.count;
                let response = PullMessage::Batch(b).into_response().expect("decodes");
                let Some(Kind::Batch(batch)) = response.kind else {
                    panic!("not a batch: {response:?}");
                };
                assert_eq!(batch.documents.len(), count);
                assert_eq!(batch.last_seq, batch.documents.last().map_or(0, |d| d.seq));
                batch.documents
            })
            .collect()
    }

    #[test]
    fn every_document_gets_its_own_body_and_batches_keep_their_bounds() {
        let bodies: Vec<&[u8]> = vec![b"{}", b"[1]", b"", b"\"x\"", b"{\"a\":1}"];
        let sent = batches(2, 1 << 20, &bodies);
        assert_eq!(sent.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        let all: Vec<&Document> = sent.iter().flatten().collect();
        for (i, doc) in all.iter().enumerate() {
            assert_eq!(doc.body.as_ref(), bodies[i], "document {i}");
            assert_eq!(doc.seq, i as u64 + 1);
            assert_eq!(doc.id, format!("d{i}"));
            assert_eq!(doc.collection, "c");
        }
    }

    #[test]
    fn a_batch_never_goes_over_its_bytes_but_a_huge_document_goes_alone() {
        let big: &[u8] = &[b'x'; 300];
        let small: &[u8] = &[b'y'; 40];
        let budget = 200u64;
        let sent = batches(100, budget, &[small, small, small, big, small, small]);
        for batch in &sent {
            let size: usize = batch
                .iter()
                .map(|d| d.body.len() + d.collection.len() + d.id.len() + DOCUMENT_OVERHEAD)
                .sum();
            assert!(
                size as u64 <= budget || batch.len() == 1,
                "a batch of {} documents and {size} bytes",
                batch.len()
            );
        }
        assert_eq!(sent.iter().map(Vec::len).sum::<usize>(), 6);
        assert!(sent.iter().any(|b| b.len() == 1 && b[0].body.len() == 300));
    }

    /// Every field at its default, at a varint length boundary or beyond: the bytes are
    /// prost's for the same message, document by document and for the whole response.
    #[test]
    fn the_bytes_are_those_prost_writes() {
        let long_id = "i".repeat(200);
        let long_body = vec![b'b'; 20_000];
        let changes = [
            change("c", "a", b"{}"),
            DocumentRef {
                tombstone: true,
                body: b"",
                ..change("users", "gone", b"")
            },
            DocumentRef {
                version: u64::MAX,
                ..change("x", &long_id, &long_body)
            },
            DocumentRef {
                version: 0,
                ..change("", "", b"")
            },
            change("c", "127", &long_body[..127]),
            change("c", "128", &long_body[..128]),
        ];
        let seqs = [1, 2, u64::MAX, 0, 127, 128];
        let mut batch = Batch::new(100, u64::MAX);
        let mut documents = Vec::new();
        for (change, seq) in changes.iter().zip(seqs) {
            batch.push(seq, change);
            documents.push(Document {
                collection: change.collection.to_owned(),
                id: change.id.to_owned(),
                version: change.version,
                seq,
                body: Bytes::copy_from_slice(change.body),
                tombstone: change.tombstone,
            });
        }
        // The last document's seq is the batch's resume point; both 128 and 0 are tried.
        for last_seq in [128, 0] {
            let mut encoded = batch.take();
            let expected = PullResponse {
                kind: Some(Kind::Batch(DocumentBatch {
                    documents: documents.clone(),
                    last_seq,
                })),
            };
            encoded.last_seq = last_seq;
            let mut ours = Vec::new();
            let message = PullMessage::Batch(encoded.clone());
            message.encode(&mut ours);
            assert_eq!(ours, expected.encode_to_vec(), "last_seq {last_seq}");
            assert_eq!(message.into_response().expect("decodes"), expected);
            for (change, seq) in changes.iter().zip(seqs) {
                batch.push(seq, change);
            }
        }
        let complete = PullComplete {
            high_watermark: 9,
            documents: 0,
            bytes: 300,
        };
        let mut ours = Vec::new();
        PullMessage::Complete(complete).encode(&mut ours);
        let expected = PullResponse {
            kind: Some(Kind::Complete(complete)),
        };
        assert_eq!(ours, expected.encode_to_vec());
    }

    #[test]
    fn an_empty_batch_costs_nothing() {
        let batch = Batch::new(10, 100);
        assert!(batch.is_empty());
        assert_eq!(batch.encoded.capacity(), 0);
    }
}
