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
    /// The largest `max_header_bytes` a daemon takes.
    pub const MAX_HEADER_BYTES: usize = 16 << 20;

    /// The bound of an HTTP/2 header list: twice `max_header_bytes`, since HTTP/2 counts 32
    /// bytes more a field, and a proxy in front (h2c to its backends) adds its own fields to a
    /// head it took within the same bound. An h2c client over a server's bound gets its whole
    /// connection closed, every stream on it failing, so a head the proxy passes on must not
    /// meet it.
    pub fn http2_header_list_bytes(&self) -> u32 {
        u32::try_from(self.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX)
    }
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
