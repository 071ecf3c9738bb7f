//! The body of a request held inside hyper, read while it waits.
//!
//! hyper reads a request's body only as it is polled, and notices a client that left only
//! once that body is read: a held request whose body was still coming (chunked, or slower
//! than its head) would keep its place after its client left, and be sent to a backend at
//! the release, its head and whatever hyper had buffered of its body. Read during the wait,
//! the body ends in an error when the client leaves, so the place is freed at once; and a
//! body whole before the release lets hyper see the client leave as it does for a request
//! without one. What is read counts in the hold's bytes (the declared length was counted at
//! admission; a chunked body's bytes as they come), so the hold stays bounded: once they
//! pass the bound, the rest of the body stays unread until the release.

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::hold::{Release, Ticket};

/// A request body on its way to a backend: what was read of it while the request was held,
/// then the rest as the client sends it.
#[derive(Debug)]
pub struct Forwarded {
    read: VecDeque<Frame<Bytes>>,
    /// Data bytes in `read`.
    read_bytes: u64,
    rest: Incoming,
}

impl From<Incoming> for Forwarded {
    fn from(rest: Incoming) -> Self {
        Self {
            read: VecDeque::new(),
            read_bytes: 0,
            rest,
        }
    }
}

impl Body for Forwarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(frame) = self.read.pop_front() {
            self.read_bytes -= data_bytes(&frame);
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // The rest's hint counts what it has not given yet, so the sum is the whole.
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + self.read_bytes);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + self.read_bytes);
        }
        hint
    }
}

fn data_bytes(frame: &Frame<Bytes>) -> u64 {
    frame.data_ref().map_or(0, |data| data.len() as u64)
}

/// How a held request's wait ended.
#[derive(Debug)]
pub enum Waited {
    /// The hold ended: the request goes on with its body.
    Released(Release, Forwarded),
    /// Its body failed while it waited: the client left (or sent a body that does not
    /// parse). Its place is free.
    BodyFailed(hyper::Error),
}

/// Waits for `ticket`'s release while reading `body`, of which `declared` bytes were counted
/// when it was held.
pub async fn wait_reading(mut ticket: Ticket, body: Incoming, declared: u64) -> Waited {
    let mut body = Forwarded::from(body);
    // Reading stops at the end of the body, or at the hold's byte bound.
    let mut reading = !body.rest.is_end_stream();
    loop {
        tokio::select! {
            biased;
            release = ticket.released() => return Waited::Released(release, body),
            frame = body.rest.frame(), if reading => match frame {
                None => reading = false,
                Some(Ok(frame)) => {
                    let bytes = data_bytes(&frame);
                    let counted = declared.max(body.read_bytes);
                    let more = (body.read_bytes + bytes).saturating_sub(counted);
                    if more > 0 && !ticket.hold_more(more) {
                        // The hold's bytes are full: the rest waits in the socket.
                        reading = false;
                    }
                    body.read_bytes += bytes;
                    body.read.push_back(frame);
                }
                Some(Err(error)) => return Waited::BodyFailed(error),
            },
        }
    }
}
