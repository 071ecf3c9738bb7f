//! Requests held on TLS connections (`--listen-tls`): within `held_in_hyper`, in the relay;
//! past it, a connection accepted during a hold has its request head read (decrypted) and
//! waits without the relay's or hyper's buffers (`accept.rs`), counted by
//! `cutover_proxy_held_sockets_total`. A test binary of its own: the metrics recorder is
//! global to the process.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{LabTls, Running, get, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_request_held_on_a_tls_connection_keeps_its_body_and_goes_to_the_new_colour() {
    cutover_daemon::metrics::install().unwrap();
    let (tls, lab) = LabTls::new();
    let (blue, green, _dir, proxy) = start(|cfg| {
        cfg.held_in_hyper = 0;
        cfg.listen_tls = Some(tls);
    })
    .await;
    let mut warm = lab.connect(proxy.listen).await;
    warm.write_all(b"GET /x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = warm.read_to_string(&mut answer).await;
    assert!(answer.ends_with("blue"), "{answer}");

    let mut control = proxy.pause().await;
    let mut held = lab.connect(proxy.listen).await;
    held.write_all(
        b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
    )
    .await
    .unwrap();
    proxy
        .wait_route("one held, 5 bytes", |r| {
            r["held"] == 1 && r["held_bytes"] == 5
        })
        .await;
    assert_eq!(Running::switch_to_green(&mut control).await, 1);
    let mut answer = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), held.read_to_string(&mut answer));
    let _ = read.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("green"), "{answer}");
    assert_eq!(blue.seen().len(), 1, "only the warm-up");
    let bodies: Vec<usize> = green.seen().iter().map(|s| s.body_len).collect();
    assert_eq!(bodies, [5], "the held request's body reached green");
    let (_, metrics) = get(&format!("http://{}/metrics", proxy.admin)).await;
    let waited = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cutover_proxy_held_sockets_total "))
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(waited, Some(1.0), "it waited outside hyper: {metrics}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_request_held_in_the_relay_over_tls_goes_to_the_new_colour_and_its_connection_goes_on() {
    let (tls, lab) = LabTls::new();
    let (_blue, green, _dir, proxy) = start(|cfg| cfg.listen_tls = Some(tls)).await;
    let mut control = proxy.pause().await;
    // Within the first `held_in_hyper` held requests: it waits in the relay, read.
    let mut held = lab.connect(proxy.listen).await;
    held.write_all(b"PUT /y HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabc")
        .await
        .unwrap();
    proxy
        .wait_route("one held, 3 bytes", |r| {
            r["held"] == 1 && r["held_bytes"] == 3
        })
        .await;
    assert_eq!(Running::switch_to_green(&mut control).await, 1);
    let first = answer(&mut held).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // The same TLS connection serves the next request.
    held.write_all(b"GET /z HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let second = answer(&mut held).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    let seen: Vec<(String, usize)> = green
        .seen()
        .iter()
        .map(|s| (s.path.clone(), s.body_len))
        .collect();
    assert_eq!(seen, [("/y".to_owned(), 3), ("/z".to_owned(), 0)]);
    proxy.stop().await;
}

/// One answer read off `stream`, up to the end of the body `green` (the backend's colour).
async fn answer<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut answer = Vec::new();
    while !answer.ends_with(b"green") {
        let mut piece = [0; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut piece));
        let n = read.await.expect("an answer within 10 s").unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&piece[..n]);
    }
    String::from_utf8(answer).unwrap()
}
