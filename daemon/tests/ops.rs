//! The ops endpoints served on a real loopback listener.

use std::time::Duration;

use cutover_daemon::{Readiness, ops};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    (status, response)
}

#[tokio::test]
async fn serves_health_readiness_and_metrics_until_cancelled() {
    cutover_daemon::metrics::install().expect("recorder");
    metrics::counter!("cutover_ops_test_total").increment(1);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let readiness = Readiness::new();
    let cancel = CancellationToken::new();
    let server = tokio::spawn(ops::serve(
        listener,
        cutover_daemon::Bounds::default(),
        readiness.clone(),
        None,
        None,
        cancel.clone(),
    ));

    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 503);
    readiness.set_ready();
    assert_eq!(get(addr, "/readyz").await.0, 200);
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("cutover_ops_test_total 1"), "{body}");
    assert!(body.contains(ops::PROMETHEUS_CONTENT_TYPE), "{body}");
    assert_eq!(get(addr, "/nope").await.0, 404);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns once cancelled")
        .expect("serve did not panic");
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}
