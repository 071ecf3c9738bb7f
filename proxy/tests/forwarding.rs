//! Forwarding through a real proxy to real HTTP backends on loopback: headers, HTTP/2,
//! bodies, upstream failures, health checks and the admin port.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Running, client, config, get, send, start};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

#[tokio::test]
async fn forwards_to_blue_with_forwarding_headers_and_bodies() {
    let (blue, green, _dir, proxy) = start(|_| {}).await;

    let body = "x".repeat(100_000);
    let request = Request::post(proxy.url("/v1/users/1?x=1"))
        .header("x-forwarded-for", "10.0.0.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-backend"], "blue");
    assert_eq!(response.headers()["via"], "1.1 cutover");
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "blue"
    );

    let seen = blue.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/users/1");
    assert_eq!(seen[0].body_len, 100_000);
    assert_eq!(
        seen[0].forwarded_for.as_deref(),
        Some("10.0.0.9, 127.0.0.1")
    );
    assert_eq!(seen[0].via.as_deref(), Some("1.1 cutover"));
    assert_eq!(
        seen[0].host.as_deref(),
        Some(proxy.listen.to_string().as_str()),
        "the client's Host is passed through"
    );
    assert!(green.seen().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn forwards_h2c_requests() {
    let (blue, _green, _dir, proxy) = start(|_| {}).await;
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    for _ in 0..3 {
        let (status, body) = send(
            &h2,
            Request::get(proxy.url("/v1/users/2"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "blue"));
    }
    let seen = blue.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].via.as_deref(), Some("2 cutover"));
    assert_eq!(
        seen[0].host.as_deref(),
        Some(proxy.listen.to_string().as_str()),
        "HTTP/2's :authority becomes the Host header"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_unreachable_backend_is_a_502_and_a_slow_one_a_504_each_naming_the_side() {
    let green = Backend::start("green").await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = cutover_proxy::ProxyConfig::new(
        vec![dead.clone()],
        vec![green.url()],
        dir.path().join("route.json"),
    );
    cfg.upstream_timeout = Duration::from_millis(300);
    let proxy = Running::start(cfg).await;
    let (status, body) = get(&proxy.url("/v1/users/1")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "bad_gateway");
    assert_eq!(json["color"], "blue");
    assert_eq!(json["upstream"], dead.as_str());
    proxy.stop().await;

    let blue = Backend::start("blue").await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&blue, &green, &dir);
    cfg.upstream_timeout = Duration::from_millis(200);
    let proxy = Running::start(cfg).await;
    let (status, body) = get(&proxy.url("/slow?ms=2000")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "deadline_exceeded");
    assert_eq!(json["color"], "blue");
    assert!(json["detail"].as_str().unwrap().contains("200ms"), "{json}");
    // The timed-out request is not left counted in flight.
    proxy
        .wait_route("nothing in flight", |r| r["in_flight"] == 0)
        .await;
    proxy.stop().await;
}

#[tokio::test]
async fn round_robin_skips_a_backend_that_fails_its_health_check() {
    let (b1, b2, green) = (
        Backend::start("blue").await,
        Backend::start("blue").await,
        Backend::start("green").await,
    );
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = cutover_proxy::ProxyConfig::new(
        vec![b1.url(), dead, b2.url()],
        vec![green.url()],
        dir.path().join("route.json"),
    );
    cfg.health_interval = Duration::from_millis(50);
    cutover_daemon::metrics::install().unwrap();
    let proxy = Running::start(cfg).await;
    // Wait for the first health check (the only proxy here with 2 healthy blue backends of
    // 3); after it no request goes to the dead backend.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !get(&format!("http://{}/metrics", proxy.admin))
        .await
        .1
        .contains("cutover_proxy_healthy_backends{color=\"blue\"} 2")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no health check in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = client();
    for _ in 0..20 {
        let (status, body) = send(
            &client,
            Request::get(proxy.url("/x")).body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "blue"));
    }
    let (n1, n2) = (b1.seen().len(), b2.seen().len());
    assert_eq!(n1 + n2, 20);
    assert!(
        n1 >= 5 && n2 >= 5,
        "spread over both live backends: {n1} and {n2}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn the_admin_port_serves_route_health_readiness_and_metrics() {
    cutover_daemon::metrics::install().unwrap();
    let (_blue, _green, _dir, proxy) = start(|_| {}).await;
    let route = proxy.route().await;
    assert_eq!(route["epoch"], 0);
    assert_eq!(route["active"], "blue");
    assert_eq!(route["mode"], "forwarding");
    assert_eq!(route["held"], 0);
    let admin = |path: &str| format!("http://{}{path}", proxy.admin);
    assert_eq!(get(&admin("/healthz")).await.0, StatusCode::OK);
    assert_eq!(get(&admin("/readyz")).await.0, StatusCode::OK);
    assert_eq!(get(&admin("/nope")).await.0, StatusCode::NOT_FOUND);
    get(&proxy.url("/v1/users/1")).await;
    let (status, metrics) = get(&admin("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "cutover_proxy_requests_total{color=\"blue\",class=\"2xx\"}",
        "cutover_proxy_request_duration_seconds_bucket{color=\"blue\"",
        "cutover_proxy_active_color{color=\"blue\"} 1",
        "cutover_proxy_epoch 0",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_bad_backend_url_or_route_file_is_refused_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("route.json");
    let error = cutover_proxy::Proxy::open(cutover_proxy::ProxyConfig::new(
        vec!["http://127.0.0.1:1".into()],
        vec!["127.0.0.1:2".into()],
        state.clone(),
    ))
    .expect_err("no scheme")
    .to_string();
    assert!(error.contains("green backend \"127.0.0.1:2\""), "{error}");

    std::fs::write(&state, "{\"epoch\": \"seven\"}").unwrap();
    let error = cutover_proxy::Proxy::open(cutover_proxy::ProxyConfig::new(
        vec!["http://127.0.0.1:1".into()],
        vec!["http://127.0.0.1:2".into()],
        state,
    ))
    .expect_err("corrupt route")
    .to_string();
    assert!(
        error.contains("route.json") && error.contains("unreadable"),
        "{error}"
    );
}

#[tokio::test]
async fn connect_is_refused_not_forwarded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (blue, _green, _dir, proxy) = start(|_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
    stream
        .write_all(b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0; 4096];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(answer.contains("not supported"), "{answer}");
    assert!(blue.seen().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn forwards_over_h2c_to_backends_that_speak_it() {
    let (blue, _green, _dir, proxy) = start(|cfg| {
        cfg.upstream_protocol = cutover_proxy::UpstreamProtocol::H2c;
    })
    .await;
    let client = client();
    for i in 0..3 {
        let request = Request::post(proxy.url(&format!("/v1/users/{i}")))
            .header("x-forwarded-for", "10.0.0.9")
            .body(Full::new(Bytes::from("y".repeat(50_000))))
            .unwrap();
        let (status, body) = send(&client, request).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "blue"));
    }
    let seen = blue.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.body_len == 50_000));
    assert!(
        seen.iter().all(|s| s.version == http::Version::HTTP_2),
        "the backend answers HTTP/1.1 too: the proxy must have spoken h2c"
    );
    assert_eq!(
        seen[0].forwarded_for.as_deref(),
        Some("10.0.0.9, 127.0.0.1")
    );
    assert_eq!(seen[0].via.as_deref(), Some("1.1 cutover"));
    proxy.stop().await;
}

#[tokio::test]
async fn the_admin_port_serves_grpc_reflection_for_tools_like_grpcurl() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let (_blue, _green, _dir, proxy) = start(|cfg| {
        cfg.token = Some("s3cret".to_owned());
    })
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.admin))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"cutover.v1.ProxyControl"), "{names:?}");
    proxy.stop().await;
}
