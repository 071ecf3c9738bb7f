//! The relay's HTTP/1.1 parsing and body framing as plain public functions over bytes, for
//! the fuzz targets and their replay (`fuzz-checks`): the same private functions the relay
//! runs, with its types turned into public data. Nothing in the proxy calls it.

use std::net::SocketAddr;

use super::{
    Chunked, Framing, Parsed, parse_request, parse_response, response_framing, rewrite_request,
    rewrite_response,
};

/// The longest request or response head the relay reads.
pub const MAX_HEAD: usize = super::MAX_HEAD;
/// The largest request body the relay takes.
pub const MAX_BODY: u64 = super::MAX_BODY;
/// The most headers the relay parses in a head.
pub const MAX_HEADERS: usize = super::MAX_HEADERS;

/// What the relay makes of the bytes a client sent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A request the relay forwards itself.
    Relayed {
        /// The head's length in the input.
        length: usize,
        /// Its `Content-Length` (0 without one).
        body: u64,
        /// A HEAD request: its response has no body.
        head_only: bool,
        /// It may go again on a fresh connection.
        idempotent: bool,
        /// The client asked to close after it.
        close: bool,
    },
    /// The head is not complete yet.
    Partial,
    /// hyper serves it.
    ToHyper,
}

/// How a response's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the backend closes.
    UntilClose,
}

/// A final response head as the relay reads and rewrites it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// How its body is framed.
    pub body: Body,
    /// Whether the backend connection serves another request after it.
    pub reusable: bool,
    /// The head the client gets (with `Connection: close` when the relay closes after it).
    pub rewritten: Vec<u8>,
}

/// A chunked body that does not parse: the relay aborts the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedChunk;

/// The relay's reading of the start of a client connection.
pub fn request(input: &[u8]) -> Request {
    match parse_request(input) {
        Parsed::Complete(head) => Request::Relayed {
            length: head.length,
            body: head.body,
            head_only: head.head_only,
            idempotent: head.idempotent,
            close: head.close,
        },
        Parsed::Partial => Request::Partial,
        Parsed::Other => Request::ToHyper,
    }
}

/// The head the relay sends upstream for `head` (a head [`request`] relays) from `peer`.
pub fn rewrite(head: &[u8], peer: SocketAddr, authority: &str) -> Vec<u8> {
    let mut out = Vec::new();
    rewrite_request(head, peer, authority, &mut out);
    out
}

/// The body bytes the accept loop counts for a held request (see `accept`).
pub fn declared_bytes(head: &[u8]) -> Option<u64> {
    crate::accept::declared_bytes(head)
}

/// The relay's reading of a final response head (`head` ends at its blank line), to a HEAD
/// request when `head_only`; the client's connection closes after it when the framing says
/// so, as the relay does.
pub fn response(head: &[u8], head_only: bool) -> Result<Response, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = parse_response(head, &mut headers)?;
    let framed = response_framing(&parsed, head_only)?;
    let mut rewritten = Vec::new();
    rewrite_response(
        &parsed,
        framed.framing == Framing::UntilClose,
        &mut rewritten,
    );
    Ok(Response {
        body: match framed.framing {
            Framing::Empty => Body::Empty,
            Framing::Length(length) => Body::Length(length),
            Framing::Chunked(_) => Body::Chunked,
            Framing::UntilClose => Body::UntilClose,
        },
        reusable: framed.reusable,
        rewritten,
    })
}

/// Where a body framed as `body` ends when its bytes arrive as `pieces`: the offset just past
/// it in their concatenation, `None` if it has not ended, `Err` for a malformed chunked body.
pub fn body_end<'a>(
    body: Body,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<usize>, MalformedChunk> {
    let mut framing = match body {
        Body::Empty => Framing::Empty,
        Body::Length(length) => Framing::Length(length),
        Body::Chunked => Framing::Chunked(Chunked::default()),
        Body::UntilClose => Framing::UntilClose,
    };
    let mut offset = 0;
    for piece in pieces {
        let (taken, done) = framing.take(piece).map_err(|_| MalformedChunk)?;
        offset += taken;
        if done {
            return Ok(Some(offset));
        }
    }
    // An empty body ends before its first byte, even when no byte comes.
    let (_, done) = framing.take(&[]).map_err(|_| MalformedChunk)?;
    Ok(done.then_some(offset))
}
