//! The bounds every listener of every daemon keeps, so that no client (a burst of connections,
//! a slow or oversized request head, a flood of HTTP/2 streams) and no stuck request at
//! shutdown can hold memory, a task or the process for as long as it likes.

use std::time::Duration;

use crate::shutdown::DEFAULT_GRACE;

/// The limits of one listener (each daemon applies the same to all of its ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// After shutdown begins: how long open connections get to finish the request they are
    /// on, before they are closed.
    pub grace: Duration,
    /// Most connections open at once; past it the listener stops accepting (new connections
    /// wait in the kernel's backlog) until one closes.
    pub max_connections: usize,
    /// Longest time from a request's first byte to the end of its head (and from the end of
    /// the previous response, on an idle keep-alive connection); past it `408` and close.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; past it `431` and close.
    pub max_header_bytes: usize,
    /// Most concurrent HTTP/2 streams a client may open on one connection.
    pub max_streams: u32,
}

impl Bounds {
    /// The smallest `max_header_bytes` hyper can work with.
    pub const MIN_HEADER_BYTES: usize = 8 << 10;
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            max_connections: 10_000,
            header_timeout: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
            max_streams: 256,
        }
    }
}
