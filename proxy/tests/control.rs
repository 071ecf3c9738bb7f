//! ProxyControl against a real proxy and real backends on loopback: a switch under load,
//! drains, the hold's bounds and expiry, persistence, epochs, tokens, and clients that leave.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{Backend, Running, client, config, get, send, start};
use cutover_proto::v1::{
    Color, PauseRequest, ProxyStatusRequest, ResumeRequest, SwitchRequest,
    proxy_control_client::ProxyControlClient,
};
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::AsyncReadExt;

fn pause(epoch: u64) -> PauseRequest {
    PauseRequest {
        epoch,
        hold_timeout_ms: 0,
        drain_timeout_ms: 0,
    }
}

fn switch(epoch: u64, color: Color) -> SwitchRequest {
    SwitchRequest {
        epoch,
        color: color as i32,
    }
}

/// Runs `test` with the first 1,000 requests of a hold inside hyper (the default, so these
/// tests' holds stay there), then with every connection opened during a hold waiting as a
/// bare socket (`held_in_hyper` 0, see `accept.rs`).
async fn inside_hyper_and_as_bare_sockets<F: Future<Output = ()>>(test: impl Fn(u64) -> F) {
    for held_in_hyper in [1_000, 0] {
        test(held_in_hyper).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_under_load_fails_no_request_and_sends_none_to_blue_after_it() {
    let (blue, _green, _dir, proxy) = start(|_| {}).await;
    let mut control = proxy.control().await;

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (url, stop, failures) = (proxy.url("/v1/users/1"), stop.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let (status, body) =
                    send(&client, Request::get(&url).body(Full::default()).unwrap()).await;
                if status != StatusCode::OK {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                answers.push((sent, body));
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused = control.pause(pause(1)).await.unwrap().into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let switched = control
        .switch(switch(1, Color::Green))
        .await
        .unwrap()
        .into_inner();
    let switched_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }

    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no client saw an error"
    );
    assert!(paused.drained <= 16, "{paused:?}");
    assert!(switched.released >= 1, "clients were held: {switched:?}");
    assert!(
        switched.max_hold_micros >= 150_000,
        "the first held request waited the pause: {switched:?}"
    );
    let late_blue = blue.seen().iter().filter(|s| s.at >= switched_at).count();
    assert_eq!(late_blue, 0, "blue received requests after Switch returned");
    let sent_after = answers.iter().filter(|(sent, _)| *sent >= switched_at);
    assert!(sent_after.clone().count() > 0);
    assert!(sent_after.clone().all(|(_, body)| body == "green"));
    assert!(answers.iter().any(|(_, body)| body == "blue"));
    let route = proxy.route().await;
    assert_eq!(
        (route["active"].as_str(), route["epoch"].as_u64()),
        (Some("green"), Some(1))
    );
    proxy.stop().await;
}

#[tokio::test]
async fn pause_returns_only_once_slow_requests_in_flight_completed() {
    let (_blue, _green, _dir, proxy) = start(|_| {}).await;
    let mut control = proxy.control().await;
    let url = proxy.url("/slow?ms=500");
    let slow = tokio::spawn(async move {
        let answer = get(&url).await;
        (answer, Instant::now())
    });
    proxy
        .wait_route("the slow request in flight", |r| r["in_flight"] == 1)
        .await;
    let paused = control.pause(pause(1)).await.unwrap().into_inner();
    let paused_at = Instant::now();
    let ((status, body), completed_at) = slow.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "blue"));
    assert!(completed_at <= paused_at, "Pause returned before the drain");
    assert_eq!(paused.drained, 1);
    // A second Pause of the same epoch joins the hold and returns at once.
    let again = control.pause(pause(1)).await.unwrap().into_inner();
    assert_eq!(again.drained, 1);
    control.resume(ResumeRequest { epoch: 1 }).await.unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn a_drain_that_times_out_fails_the_pause_and_forwards_again() {
    let (_blue, _green, _dir, proxy) = start(|_| {}).await;
    let mut control = proxy.control().await;
    let url = proxy.url("/slow?ms=1500");
    let slow = tokio::spawn(async move { get(&url).await });
    proxy.wait_route("in flight", |r| r["in_flight"] == 1).await;
    let status = control
        .pause(PauseRequest {
            epoch: 1,
            hold_timeout_ms: 5_000,
            drain_timeout_ms: 200,
        })
        .await
        .expect_err("the drain cannot finish in 200 ms");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("resumed forwarding to blue"),
        "{status:?}"
    );
    let route = proxy.route().await;
    assert_eq!(route["mode"], "forwarding");
    assert_eq!(get(&proxy.url("/x")).await.1, "blue");
    assert_eq!(
        slow.await.unwrap().0,
        StatusCode::OK,
        "in-flight work is never cancelled"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn the_hold_answers_503_exactly_past_its_count_and_byte_bounds() {
    inside_hyper_and_as_bare_sockets(hold_bounds).await;
}

async fn hold_bounds(held_in_hyper: u64) {
    let (blue, _green, _dir, proxy) = start(|cfg| {
        cfg.limits.max_held = 3;
        cfg.limits.max_held_bytes = 1_000;
        cfg.held_in_hyper = held_in_hyper;
    })
    .await;
    let mut control = proxy.control().await;
    control.pause(pause(1)).await.unwrap();

    let post = |bytes: usize| {
        let url = proxy.url("/v1/items");
        async move {
            let client = client();
            let request = Request::post(url)
                .body(Full::new(Bytes::from(vec![b'x'; bytes])))
                .unwrap();
            let response = client.request(request).await.unwrap();
            (
                response.status(),
                response.headers().get("retry-after").cloned(),
            )
        }
    };
    let first = tokio::spawn(post(600));
    proxy.wait_route("one held", |r| r["held"] == 1).await;
    let (status, retry) = post(401).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "600 + 401 > 1000 bytes"
    );
    assert_eq!(retry.unwrap(), "1");
    let second = tokio::spawn(post(400));
    let third = tokio::spawn(post(0));
    proxy
        .wait_route("three held, 1000 bytes", |r| {
            r["held"] == 3 && r["held_bytes"] == 1_000
        })
        .await;
    let (status, retry) = post(0).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a fourth request");
    assert_eq!(retry.unwrap(), "1");

    let resumed = control.resume(ResumeRequest { epoch: 1 }).await.unwrap();
    assert_eq!(resumed.into_inner().released, 3);
    for held in [first, second, third] {
        assert_eq!(held.await.unwrap().0, StatusCode::OK, "released to blue");
    }
    assert_eq!(blue.seen().iter().map(|s| s.body_len).sum::<usize>(), 1_000);
    proxy.stop().await;
}

#[tokio::test]
async fn a_hold_nobody_ends_answers_503_and_returns_to_forwarding() {
    inside_hyper_and_as_bare_sockets(expired_hold).await;
}

async fn expired_hold(held_in_hyper: u64) {
    let (_blue, _green, _dir, proxy) = start(|cfg| cfg.held_in_hyper = held_in_hyper).await;
    let mut control = proxy.control().await;
    control
        .pause(PauseRequest {
            epoch: 3,
            hold_timeout_ms: 300,
            drain_timeout_ms: 0,
        })
        .await
        .unwrap();
    let started = Instant::now();
    let response = client()
        .request(Request::get(proxy.url("/x")).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "held about 300 ms"
    );
    proxy
        .wait_route("forwarding again", |r| r["mode"] == "forwarding")
        .await;
    assert_eq!(
        get(&proxy.url("/x")).await,
        (StatusCode::OK, "blue".to_owned())
    );
    // The expired hold cannot be switched; a new one needs a new epoch.
    let status = control
        .switch(switch(3, Color::Green))
        .await
        .expect_err("expired");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("expired"), "{status:?}");
    assert!(control.pause(pause(3)).await.is_err());
    assert!(control.pause(pause(4)).await.is_ok());
    proxy.stop().await;
}

#[tokio::test]
async fn a_restarted_proxy_routes_to_the_colour_it_last_switched_to() {
    let (blue, green, dir, proxy) = start(|_| {}).await;
    let mut control = proxy.control().await;
    control.pause(pause(7)).await.unwrap();
    control.switch(switch(7, Color::Green)).await.unwrap();
    proxy.stop().await;

    let proxy = Running::start(config(&blue, &green, &dir)).await;
    let route = proxy.route().await;
    assert_eq!(
        (route["active"].as_str(), route["epoch"].as_u64()),
        (Some("green"), Some(7))
    );
    assert_eq!(get(&proxy.url("/x")).await.1, "green");
    // The switch is remembered: repeating it is idempotent, an older epoch is stale.
    let mut control = proxy.control().await;
    let again = control.switch(switch(7, Color::Green)).await.unwrap();
    assert_eq!(again.into_inner().released, 0);
    let stale = control.pause(pause(6)).await.expect_err("stale");
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
    proxy.stop().await;
}

#[tokio::test]
async fn stale_epochs_and_calls_without_the_token_change_nothing() {
    let (_blue, _green, _dir, proxy) = start(|cfg| {
        cfg.token = Some("s3cret".to_owned());
    })
    .await;

    let mut anonymous = proxy.control().await;
    let refused = anonymous.pause(pause(1)).await.expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(proxy.route().await["mode"], "forwarding");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.admin))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut wrong =
        ProxyControlClient::with_interceptor(channel.clone(), |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("authorization", "Bearer nope".parse().unwrap());
            Ok(r)
        });
    let refused = wrong
        .switch(switch(0, Color::Green))
        .await
        .expect_err("wrong token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let mut control = ProxyControlClient::with_interceptor(channel, |mut r: tonic::Request<()>| {
        r.metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().unwrap());
        Ok(r)
    });
    control.pause(pause(5)).await.unwrap();
    control.switch(switch(5, Color::Green)).await.unwrap();
    for stale in [
        control.pause(pause(4)).await.map(|_| ()),
        control.switch(switch(4, Color::Blue)).await.map(|_| ()),
        control.resume(ResumeRequest { epoch: 4 }).await.map(|_| ()),
    ] {
        let status = stale.expect_err("stale epoch");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status.message().contains("stale"), "{status:?}");
    }
    let unspecified = control
        .switch(switch(5, Color::Unspecified))
        .await
        .expect_err("no colour");
    assert_eq!(unspecified.code(), tonic::Code::InvalidArgument);
    let status = control
        .status(ProxyStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((status.epoch, status.active), (5, Color::Green as i32));
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_while_held_frees_its_slot() {
    inside_hyper_and_as_bare_sockets(a_client_leaves).await;
}

/// With `held_in_hyper` 0, every connection opened during the hold waits as a bare socket.
async fn a_client_leaves(held_in_hyper: u64) {
    let (blue, _green, _dir, proxy) = start(|cfg| {
        cfg.limits.max_held = 1;
        cfg.held_in_hyper = held_in_hyper;
    })
    .await;
    let mut control = proxy.control().await;
    control.pause(pause(1)).await.unwrap();

    let leaving = proxy
        .send_raw(b"GET /x HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    proxy.wait_route("one held", |r| r["held"] == 1).await;
    assert_eq!(
        get(&proxy.url("/x")).await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "the one slot is taken"
    );
    drop(leaving);
    proxy.wait_route("the slot freed", |r| r["held"] == 0).await;

    let mut staying = proxy
        .send_raw(b"GET /x HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await;
    proxy.wait_route("held again", |r| r["held"] == 1).await;
    let released = control.resume(ResumeRequest { epoch: 1 }).await.unwrap();
    assert_eq!(
        released.into_inner().released,
        1,
        "the client that left is not released"
    );
    let mut answer = String::new();
    staying.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(blue.seen().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn a_proxy_restarted_inside_a_hold_holds_until_its_deadline_and_can_be_switched() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&blue, &green, &dir);
    let deadline = cutover_proxy::control::unix_ms() + 5_000;
    std::fs::write(
        &cfg.state_file,
        format!(
            r#"{{"epoch": 4, "active": "blue", "holding_until_unix_ms": {deadline}, "ended": null}}"#
        ),
    )
    .unwrap();
    let proxy = Running::start(cfg).await;
    let route = proxy.route().await;
    assert_eq!(
        (route["mode"].as_str(), route["epoch"].as_u64()),
        (Some("holding"), Some(4))
    );
    let url = proxy.url("/x");
    let held = tokio::spawn(async move { get(&url).await });
    proxy
        .wait_route("the request held", |r| r["held"] == 1)
        .await;
    let mut control = proxy.control().await;
    let paused = control.pause(pause(4)).await.unwrap().into_inner();
    assert_eq!(
        paused.held, 1,
        "the orchestrator's repeated Pause joins the hold"
    );
    let switched = control.switch(switch(4, Color::Green)).await.unwrap();
    assert_eq!(switched.into_inner().released, 1);
    assert_eq!(held.await.unwrap(), (StatusCode::OK, "green".to_owned()));
    assert!(blue.seen().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn a_drain_as_long_as_the_hold_releases_the_held_requests_instead_of_refusing_them() {
    let (_blue, _green, _dir, proxy) = start(|_| {}).await;
    let mut control = proxy.control().await;
    let url = proxy.url("/slow?ms=1500");
    let slow = tokio::spawn(async move { get(&url).await });
    proxy.wait_route("in flight", |r| r["in_flight"] == 1).await;
    // drain_timeout 0 = the default (5 s), lowered to the hold's 400 ms: both end together.
    let pausing = tokio::spawn(async move {
        control
            .pause(PauseRequest {
                epoch: 1,
                hold_timeout_ms: 400,
                drain_timeout_ms: 0,
            })
            .await
    });
    proxy
        .wait_route("holding", |r| r["mode"] == "holding")
        .await;
    let url = proxy.url("/x");
    let held = tokio::spawn(async move { get(&url).await });
    let status = pausing.await.unwrap().expect_err("the drain cannot finish");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        held.await.unwrap(),
        (StatusCode::OK, "blue".to_owned()),
        "a failed drain releases the held requests"
    );
    assert_eq!(slow.await.unwrap().0, StatusCode::OK);
    proxy.stop().await;
}

/// A proxy stopped inside a hold answers what it holds 503, inside hyper or as bare sockets.
#[tokio::test]
async fn a_stop_inside_a_hold_answers_the_held_requests_503() {
    inside_hyper_and_as_bare_sockets(stop_inside_a_hold).await;
}

async fn stop_inside_a_hold(held_in_hyper: u64) {
    let (blue, _green, _dir, proxy) = start(|cfg| cfg.held_in_hyper = held_in_hyper).await;
    let mut control = proxy.control().await;
    control.pause(pause(1)).await.unwrap();
    let mut held = proxy.send_raw(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n").await;
    proxy.wait_route("held", |r| r["held"] == 1).await;
    proxy.stop().await;
    let mut answer = String::new();
    held.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(blue.seen().is_empty());
}
