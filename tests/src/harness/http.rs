//! A minimal blocking HTTP/1.1 client for tests: one request per connection
//! (`Connection: close`), read to the end of the response. Enough to see every status,
//! header and byte of the answer, with nothing between the test and the wire.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context, bail};

/// How long one request may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A response as it came off the wire.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked when the server chunked it).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("body of a {} is not JSON: {}", self.status, self.text()))
    }
}

/// Asserts that the `/metrics` page of `addr` holds every line fragment of `wanted`.
pub fn assert_metrics(addr: SocketAddr, wanted: &[&str]) {
    let metrics = get(addr, "/metrics").expect("GET /metrics").text();
    for name in wanted {
        assert!(metrics.contains(name), "{name} in /metrics:\n{metrics}");
    }
}

/// Sends `METHOD PATH` with `headers` and `body` to `addr`. `path` goes on the wire as given,
/// so tests can send percent-encoded and malformed paths.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).with_context(|| format!("connecting {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // The server may answer (413, 400) and close before reading a large body: not an error.
    let _ = stream.write_all(body);
    let raw = read_response(&mut stream);
    parse(&raw).with_context(|| format!("{method} {path}"))
}

/// Sends `raw`, a whole request exactly as given (a malformed one, a head that is too
/// large), to `addr` and reads the answer. Writing may fail when the server answers and
/// closes before reading everything: what it answered is still read.
pub fn raw(addr: SocketAddr, raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).with_context(|| format!("connecting {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let _ = stream.write_all(raw);
    let answer = read_response(&mut stream);
    let line = raw.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    parse(&answer).with_context(|| format!("{line}…"))
}

/// Reads one response: until its body is complete (by `Content-Length`, or the last chunk),
/// or until the server closes or the read times out. A server may keep the connection open
/// after answering, despite `Connection: close` (chromedriver does), so reading to the end
/// of the stream would wait for the timeout.
fn read_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !complete(&raw) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    raw
}

/// Whether `raw` holds a whole response with a body delimited by length or chunks.
pub(super) fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    let header = |name: &str| {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    if header("transfer-encoding").is_some_and(|v| v == "chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|length| body.len() >= length)
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<HttpResponse> {
    request(addr, "GET", path, &[], b"")
}

/// `PUT path` with a JSON body.
pub fn put(addr: SocketAddr, path: &str, body: &str) -> anyhow::Result<HttpResponse> {
    request(
        addr,
        "PUT",
        path,
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
}

pub(super) fn parse(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!(
            "no complete response head in {} bytes: {:?}",
            raw.len(),
            String::from_utf8_lossy(raw)
        );
    };
    let head = std::str::from_utf8(&raw[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            bail!("truncated chunk");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"3\"\r\n\r\n\
                    4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n";
        let response = parse(raw).expect("parses");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("etag"), Some("\"3\""));
        assert_eq!(response.body, b"abcdef");
    }

    #[test]
    fn a_response_is_complete_at_the_end_of_its_body() {
        assert!(!complete(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{"));
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length:2\r\n\r\n{}"));
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n"
        ));
        assert!(complete(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        ));
        assert!(
            !complete(b"HTTP/1.1 200 OK\r\n\r\nuntil close"),
            "read to the close"
        );
    }

    #[test]
    fn parses_a_plain_response() {
        let response =
            parse(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}").expect("parses");
        assert_eq!(response.status, 404);
        assert_eq!(response.body, b"{}");
    }
}
