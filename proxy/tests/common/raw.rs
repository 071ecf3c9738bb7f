//! A client that writes HTTP/1.1 by hand, for what a pooled client cannot do: a head or body
//! sent in pieces, requests pipelined in one write, a connection dropped at a chosen moment.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    task::JoinHandle,
};

/// How long a test waits for one response before it fails.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// One client connection and what it read and did not parse yet.
pub struct RawClient {
    reader: OwnedReadHalf,
    /// `None` once given to [`Self::send_aside`].
    writer: Option<OwnedWriteHalf>,
    input: Vec<u8>,
}

/// A response as the client read it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The head, lower-cased.
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of the header `name` (lower case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim())
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl RawClient {
    /// A new connection to `addr` that has sent `bytes`.
    pub async fn send_new(addr: SocketAddr, bytes: &[u8]) -> Self {
        let (reader, writer) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut client = Self {
            reader,
            writer: Some(writer),
            input: Vec::new(),
        };
        client.send(bytes).await;
        client
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let writer = self.writer.as_mut().expect("not given to send_aside");
        writer.write_all(bytes).await.unwrap();
    }

    /// Writes `bytes` on a task of its own, for a request the proxy may stop reading before
    /// its end (write errors are its answer, then); responses are read here meanwhile.
    pub fn send_aside(&mut self, bytes: Vec<u8>) -> JoinHandle<()> {
        let mut writer = self.writer.take().expect("not given to send_aside yet");
        tokio::spawn(async move {
            let _ = writer.write_all(&bytes).await;
            // Kept open until the end of the test: a FIN is not what is being tested.
            std::future::pending::<()>().await;
        })
    }

    /// Closes the connection the way a client that gives up does: a FIN.
    pub fn close(self) {
        drop(self);
    }

    /// Resets the connection (`SO_LINGER` 0): an RST, as a killed client or a middlebox.
    pub fn reset(self) {
        self.reader.as_ref().set_zero_linger().unwrap();
        drop(self);
    }

    /// Reads the next final response (1xx skipped), within [`ANSWER_WITHIN`].
    pub async fn response(&mut self) -> Answer {
        match tokio::time::timeout(ANSWER_WITHIN, self.read_response()).await {
            Ok(answer) => answer,
            Err(_) => panic!(
                "no response within {ANSWER_WITHIN:?}; read so far: {:?}",
                String::from_utf8_lossy(&self.input)
            ),
        }
    }

    /// Whether the proxy closed the connection (read 0 or a reset) within [`ANSWER_WITHIN`],
    /// with nothing more to read.
    pub async fn closed(&mut self) -> bool {
        let mut buffer = [0; 1024];
        match tokio::time::timeout(ANSWER_WITHIN, self.reader.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => true,
            Ok(Ok(_)) | Err(_) => false,
        }
    }

    async fn read_response(&mut self) -> Answer {
        loop {
            let end = self.fill_until_head().await;
            let head = String::from_utf8_lossy(&self.input[..end]).to_ascii_lowercase();
            self.input.drain(..end);
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("not a response: {head}"));
            if (100..200).contains(&status) {
                continue;
            }
            let mut answer = Answer {
                status,
                head,
                body: Vec::new(),
            };
            answer.body = if answer.header("transfer-encoding") == Some("chunked") {
                self.chunked().await
            } else if let Some(length) = answer.header("content-length") {
                let length: usize = length.parse().unwrap();
                self.fill(length).await;
                self.input.drain(..length).collect()
            } else {
                while self.read_more().await {}
                std::mem::take(&mut self.input)
            };
            return answer;
        }
    }

    /// Reads until `input` holds a whole head; its length.
    async fn fill_until_head(&mut self) -> usize {
        loop {
            if let Some(at) = self.input.windows(4).position(|w| w == b"\r\n\r\n") {
                return at + 4;
            }
            assert!(
                self.read_more().await,
                "closed before a response head: {:?}",
                String::from_utf8_lossy(&self.input)
            );
        }
    }

    async fn fill(&mut self, bytes: usize) {
        while self.input.len() < bytes {
            assert!(self.read_more().await, "closed inside a body");
        }
    }

    async fn chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(at) = self.input.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                assert!(self.read_more().await, "closed inside a chunk size");
            };
            let size = String::from_utf8_lossy(&self.input[..line]).into_owned();
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            self.input.drain(..line + 2);
            if size == 0 {
                // No trailers from these backends: the final CRLF.
                self.fill(2).await;
                self.input.drain(..2);
                return body;
            }
            self.fill(size + 2).await;
            body.extend(self.input.drain(..size));
            self.input.drain(..2);
        }
    }

    /// One read into `input`: false at the end of the stream (or a reset).
    async fn read_more(&mut self) -> bool {
        self.input.reserve(16 << 10);
        matches!(self.reader.read_buf(&mut self.input).await, Ok(n) if n > 0)
    }
}

/// `GET path` with a Host header.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").into_bytes()
}

/// `POST path` with `body` (`Content-Length`).
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = post_head(path, body.len());
    request.extend_from_slice(body);
    request
}

/// The head of a `POST path` whose body will be `length` bytes.
pub fn post_head(path: &str, length: usize) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {length}\r\n\r\n").into_bytes()
}

/// `POST path` with `body` in two chunks (`Transfer-Encoding: chunked`): the relay leaves it
/// to hyper.
pub fn chunked(path: &str, body: &[u8]) -> Vec<u8> {
    let (first, second) = body.split_at(body.len() / 2);
    let mut request =
        format!("POST {path} HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n")
            .into_bytes();
    for chunk in [first, second] {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

/// `GET path` with header lines `x-big-N` of `line` bytes each, `count` of them.
pub fn get_with_headers(path: &str, count: usize, line: usize) -> Vec<u8> {
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n").into_bytes();
    for i in 0..count {
        let name = format!("x-big-{i}: ");
        request.extend_from_slice(name.as_bytes());
        request.extend(std::iter::repeat_n(b'a', line - name.len() - 2));
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request
}
