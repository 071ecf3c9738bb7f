//! Requests held as bare sockets (`accept.rs`), counted by `cutover_proxy_held_sockets_total`.
//! A test binary of its own: the metrics recorder is global to the process, and here no other
//! test holds a bare socket, so the count is exact.

#![allow(clippy::unwrap_used)]

mod common;

use common::{client, get, send, start};
use cutover_proto::v1::{Color, PauseRequest, SwitchRequest};
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::AsyncReadExt;

/// A request held on a connection opened before the Pause waits inside hyper; one on a
/// connection opened during the hold past `held_in_hyper` (here 0) waits as a bare socket
/// (`accept.rs`). Both count, both keep their bodies, both go to the new colour.
#[tokio::test]
async fn requests_on_old_and_new_connections_are_held_alike() {
    cutover_daemon::metrics::install().unwrap();
    let (blue, green, _dir, proxy) = start(|cfg| cfg.held_in_hyper = 0).await;
    let pooled = client();
    let url = proxy.url("/x");
    let warm = send(&pooled, Request::get(&url).body(Full::default()).unwrap()).await;
    assert_eq!(warm, (StatusCode::OK, "blue".to_owned()));
    let mut control = proxy.control().await;
    control
        .pause(PauseRequest {
            epoch: 1,
            hold_timeout_ms: 0,
            drain_timeout_ms: 0,
        })
        .await
        .unwrap();

    let old = tokio::spawn({
        let (pooled, url) = (pooled.clone(), url.clone());
        async move { send(&pooled, Request::get(&url).body(Full::default()).unwrap()).await }
    });
    proxy.wait_route("one held", |r| r["held"] == 1).await;
    let mut new = proxy
        .send_raw(
            b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
        )
        .await;
    proxy
        .wait_route("two held, 5 bytes", |r| {
            r["held"] == 2 && r["held_bytes"] == 5
        })
        .await;

    let switch = SwitchRequest {
        epoch: 1,
        color: Color::Green as i32,
    };
    let switched = control.switch(switch).await.unwrap();
    assert_eq!(switched.into_inner().released, 2);
    assert_eq!(old.await.unwrap(), (StatusCode::OK, "green".to_owned()));
    let mut answer = String::new();
    new.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("green"), "{answer}");
    assert_eq!(blue.seen().len(), 1, "only the warm-up");
    let bodies: Vec<usize> = green.seen().iter().map(|s| s.body_len).collect();
    assert_eq!(bodies.iter().sum::<usize>(), 5, "{bodies:?}");
    // The new connection did wait as a bare socket; the old one did not.
    let (_, metrics) = get(&format!("http://{}/metrics", proxy.admin)).await;
    let sockets = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cutover_proxy_held_sockets_total "))
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(sockets, Some(1.0), "{metrics}");
    proxy.stop().await;
}
