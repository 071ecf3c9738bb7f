//! A connection's last moments: answering a request head that came too slowly (`408`), and
//! closing without losing the answer.
//!
//! A server that answers before it has read the whole request (a `413` for a body over the
//! limit, a `431` for a head over it) and then closes the socket with the rest of the request
//! still arriving makes the kernel reset the connection, and a client that was still sending
//! (most HTTP libraries without `Expect: 100-continue`) gets a broken pipe instead of the
//! answer. So a connection is closed as nginx does it, lingering: its write side first, so the
//! answer is followed by a FIN, then what the client still sends is read and discarded, for at
//! most [`LINGER_BYTES`] or [`LINGER_TIME`], until the client closes too.
//!
//! hyper owns the socket while it serves a connection and only closes it, without a word, when
//! a request head does not arrive within its timeout; [`track`] wraps the socket so that it
//! comes back once hyper drops it, with whether the client was inside a request then.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Longest a closing connection is read and discarded.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// Most bytes read and discarded from a closing connection.
pub const LINGER_BYTES: usize = 64 << 20;
/// The answer to a request head that did not arrive in time.
pub const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
connection: close\r\ncontent-length: 93\r\n\r\n\
{\"error\":\"request_timeout\",\"detail\":\"the request head did not arrive in time; send it again\"}";

/// A socket served by hyper; it goes back to its [`Closing`] when dropped.
#[derive(Debug)]
pub struct Tracked<S> {
    stream: Option<S>,
    shared: Arc<Shared<S>>,
}

/// The socket of a [`Tracked`] connection once hyper is done with it.
#[derive(Debug)]
pub struct Closing<S> {
    shared: Arc<Shared<S>>,
}

#[derive(Debug)]
struct Shared<S> {
    returned: Mutex<Option<S>>,
    /// Bytes were read since the last write: the client is inside a request (or pipelining).
    mid_request: AtomicBool,
}

/// Wraps `stream` for hyper; the [`Closing`] gets it back when hyper drops it.
pub fn track<S>(stream: S) -> (Tracked<S>, Closing<S>) {
    let shared = Arc::new(Shared {
        returned: Mutex::new(None),
        mid_request: AtomicBool::new(false),
    });
    let tracked = Tracked {
        stream: Some(stream),
        shared: Arc::clone(&shared),
    };
    (tracked, Closing { shared })
}

impl<S> Tracked<S> {
    fn stream(&mut self) -> Pin<&mut S>
    where
        S: Unpin,
    {
        Pin::new(self.stream.as_mut().expect("taken only on drop"))
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take()
            && let Ok(mut returned) = self.shared.returned.lock()
        {
            *returned = Some(stream);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.stream().poll_read(cx, buf);
        // Blank lines between requests are allowed and ignored (RFC 9112, 2.2): not a head.
        let began = buf.filled()[before..]
            .iter()
            .any(|b| !matches!(b, b'\r' | b'\n'));
        if matches!(polled, Poll::Ready(Ok(()))) && began {
            self.shared.mid_request.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = self.stream().poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.stream().poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(S::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

impl<S> Tracked<S> {
    fn wrote(&self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.shared.mid_request.store(false, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Closing<S> {
    /// Once hyper dropped the socket: with `head_timed_out` (hyper gave up waiting for a
    /// request head) and bytes of a request read, answers `408`; then closes lingering. An
    /// idle keep-alive connection that timed out is closed without an answer, as nginx does.
    pub async fn close(self, head_timed_out: bool) {
        let returned = self.shared.returned.lock().ok().and_then(|mut s| s.take());
        let Some(mut stream) = returned else {
            return;
        };
        if head_timed_out && self.shared.mid_request.load(Ordering::Relaxed) {
            metrics::counter!(crate::metrics::HEAD_TIMEOUTS).increment(1);
            let answer = stream.write_all(REQUEST_TIMEOUT);
            if !matches!(tokio::time::timeout(LINGER_TIME, answer).await, Ok(Ok(()))) {
                return;
            }
        }
        linger(stream).await;
    }
}

/// Closes `stream` lingering: FIN after what was written, then reads and discards what the
/// client still sends, for at most [`LINGER_BYTES`] or [`LINGER_TIME`], until it closes.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    if tokio::time::timeout_at(deadline, stream.shutdown())
        .await
        .is_err()
    {
        return;
    }
    // On the heap: inline, the buffer would weigh on every connection task that may linger
    // (a proxy's held connections among them), not only on those that do.
    let mut discard = vec![0; 4 << 10];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut discard)).await {
            Ok(Ok(read)) if read > 0 => discarded += read,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_408_declares_its_body_length() {
        let text = std::str::from_utf8(REQUEST_TIMEOUT).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.starts_with("{\"error\":\"request_timeout\",\"detail\":\""));
        assert!(body.ends_with("\"}"));
    }

    #[tokio::test]
    async fn tracking_knows_whether_the_client_is_inside_a_request() {
        let (client, server) = tokio::io::duplex(1024);
        let (mut tracked, closing) = track(server);
        let mut client = client;
        client.write_all(b"GET / HT").await.expect("write");
        let mut buf = [0; 16];
        let read = tracked.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..read], b"GET / HT");
        assert!(closing.shared.mid_request.load(Ordering::Relaxed));
        tracked.write_all(b"HTTP/1.1 200").await.expect("write");
        assert!(!closing.shared.mid_request.load(Ordering::Relaxed));
        client.write_all(b"G").await.expect("write");
        let _ = tracked.read(&mut buf).await.expect("read");
        drop(tracked);
        let closed = tokio::spawn(closing.close(true));
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("read");
        drop(client);
        closed.await.expect("closed once the client closed too");
        assert_eq!(&answer[..12], b"HTTP/1.1 200");
        assert_eq!(&answer[12..], REQUEST_TIMEOUT);
    }
}
