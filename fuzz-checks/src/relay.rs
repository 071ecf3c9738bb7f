//! The proxy's HTTP/1.1 relay: a request head it takes is one httparse reads the same way,
//! whose declared body the accept loop counts alike, and whose rewritten head it takes again
//! with the same body; a response head's rewritten form frames the body as the relay did, and
//! where a body ends does not depend on how its bytes arrive.

use std::net::{Ipv4Addr, SocketAddr};

use cutover_proxy::relay_wire::{self as wire, Body, Request};

/// Headers parsed when checking the relay's output: its rewrite may add three.
const MAX_HEADERS: usize = 128;
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000);
const AUTHORITY: &str = "backend.internal:8080";

/// Reads `data` both as the start of a client connection and as a backend's response.
pub fn relay(data: &[u8]) {
    request(data);
    response(data);
}

fn request(data: &[u8]) {
    let Request::Relayed {
        length,
        body,
        head_only,
        idempotent,
        ..
    } = wire::request(data)
    else {
        return;
    };
    assert!(
        length <= data.len() && body <= wire::MAX_BODY,
        "{length} {body}"
    );
    let head = &data[..length];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    assert_eq!(
        parsed.parse(data),
        Ok(httparse::Status::Complete(length)),
        "httparse ends the head elsewhere"
    );
    assert_eq!(parsed.version, Some(1));
    assert_eq!(
        wire::declared_bytes(head),
        Some(body),
        "the accept loop counts another body for a held request"
    );
    let rewritten = wire::rewrite(head, PEER, AUTHORITY);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut upstream = httparse::Request::new(&mut headers);
    assert_eq!(
        upstream.parse(&rewritten),
        Ok(httparse::Status::Complete(rewritten.len())),
        "the head sent upstream does not parse:\n{}",
        String::from_utf8_lossy(&rewritten)
    );
    assert_eq!(
        (upstream.method, upstream.path),
        (parsed.method, parsed.path)
    );
    let hop = [
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
    ];
    assert!(
        !upstream
            .headers
            .iter()
            .any(|h| hop.iter().any(|n| h.name.eq_ignore_ascii_case(n))),
        "a hop-by-hop header went upstream:\n{}",
        String::from_utf8_lossy(&rewritten)
    );
    if upstream.headers.len() <= wire::MAX_HEADERS {
        // The backend must find the same body the relay sends after the head.
        match wire::request(&rewritten) {
            Request::Relayed {
                length: again,
                body: upstream_body,
                head_only: h,
                idempotent: i,
                ..
            } => {
                assert_eq!(again, rewritten.len());
                assert_eq!((upstream_body, h, i), (body, head_only, idempotent));
            }
            other => panic!(
                "the head sent upstream reads as {other:?}:\n{}",
                String::from_utf8_lossy(&rewritten)
            ),
        }
    }
}

fn response(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(length)) = parsed.parse(data) else {
        return;
    };
    // 1xx heads are passed on as they are, never framed (the relay waits for the final one).
    if parsed.code.is_none_or(|code| code < 200) || length > wire::MAX_HEAD {
        return;
    }
    let (head, rest) = data.split_at(length);
    for head_only in [false, true] {
        let Ok(relayed) = wire::response(head, head_only) else {
            continue;
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut rewritten = httparse::Response::new(&mut headers);
        assert_eq!(
            rewritten.parse(&relayed.rewritten),
            Ok(httparse::Status::Complete(relayed.rewritten.len())),
            "the head the client gets does not parse:\n{}",
            String::from_utf8_lossy(&relayed.rewritten)
        );
        // `via` and `connection: close` may take a head of 99 or 100 headers past the relay's
        // limit (found by this target; hyper's client has the same limit, and a hyper proxy
        // adds `via` too): only a head within it can be read back by the relay's parser.
        if rewritten.headers.len() > wire::MAX_HEADERS {
            body(relayed.body, rest);
            continue;
        }
        let client = wire::response(&relayed.rewritten, head_only).unwrap_or_else(|e| {
            panic!(
                "the client gets a head the relay refuses ({e}):\n{}",
                String::from_utf8_lossy(&relayed.rewritten)
            )
        });
        assert_eq!(
            client.body,
            relayed.body,
            "the client frames the body otherwise:\n{}\n-- from --\n{}",
            String::from_utf8_lossy(&relayed.rewritten),
            String::from_utf8_lossy(head)
        );
        if relayed.body == Body::UntilClose {
            assert!(!client.reusable, "the client is told the connection closes");
        }
        body(relayed.body, rest);
    }
}

/// The end of the body in `rest` is the same whether it comes whole, a byte at a time or in
/// pieces of 7 bytes.
fn body(framing: Body, rest: &[u8]) {
    let whole = wire::body_end(framing, [rest]);
    let bytes = wire::body_end(framing, rest.chunks(1));
    let sevens = wire::body_end(framing, rest.chunks(7));
    assert_eq!(whole, bytes, "{framing:?} whole and byte by byte");
    assert_eq!(whole, sevens, "{framing:?} whole and by 7s");
    if let Ok(Some(end)) = whole {
        assert!(end <= rest.len());
        if let Body::Length(length) = framing {
            assert_eq!(end as u64, length);
        }
    }
    if let Body::Length(length) = framing
        && (rest.len() as u64) < length
    {
        assert_eq!(whole, Ok(None));
    }
}
