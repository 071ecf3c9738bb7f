//! The bounds every daemon keeps, against real processes and raw sockets: a shutdown within
//! its grace with stuck and idle clients, `413` read by a client that sends the whole body at
//! once (straight and through the proxy), `408` for a slow head, `431` for a large one, a
//! connection limit, HTTP/2 streams per connection, and `503 overloaded` past the write queue.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use cutover_tests::harness::{Daemon, http, openapi::Description, wait_until};

use crate::cluster;

/// A raw client connection with a read timeout.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream
}

/// Reads until the server closes (or the read times out): what the client got.
fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A keep-alive connection that made one request and was answered: idle now.
fn idle_keep_alive(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("request");
    let mut buffer = [0; 1024];
    let read = stream.read(&mut buffer).expect("answer");
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    stream
}

/// A PUT whose head and half its body were sent, the rest never.
fn stuck_mid_body(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = connect(addr);
    let head = format!("PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(b"{\"half\":").expect("half a body");
    stream
}

/// SIGTERMs `daemon` and returns how long it took to exit, asserting it exited 0.
fn terminate_timed(daemon: &mut Daemon) -> Duration {
    let began = Instant::now();
    daemon.terminate().expect("SIGTERM");
    let status = daemon.wait_exit(Duration::from_secs(30)).expect("it exits");
    let took = began.elapsed();
    let logs = daemon.stderr().unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{logs}");
    took
}

/// Within the grace (2 s) plus the second the issue allows.
const GRACE: Duration = Duration::from_secs(2);

fn assert_within_grace(what: &str, took: Duration, logs: &str) {
    assert!(
        took <= GRACE + Duration::from_secs(1),
        "{what} took {took:?} to exit with a 2 s grace\n{logs}"
    );
}

#[test]
fn every_daemon_exits_within_its_grace_with_stuck_and_idle_clients() {
    let cluster = cluster();
    let grace = ["--shutdown-grace", "2s"];
    let mut node = cluster.start_node("n", &grace).expect("node");
    let green = cluster.start_node("g", &[]).expect("green");
    let blue_url = format!("http://{}", node.http);
    let green_url = format!("http://{}", green.http);
    let mut proxy = cluster
        .start_proxy("p", &[blue_url], &[green_url], &grace)
        .expect("proxy");
    let mut orchestrator = cluster
        .start_orchestrator_with("o", &grace)
        .expect("orchestrator");

    // The proxy: one client stuck mid-body (chunked, so hyper streams it to the node, where
    // it waits in flight), one idle. It stops first, since the node is its backend.
    let mut stuck = connect(proxy.listen);
    stuck
        .write_all(
            b"PUT /v1/c/via-proxy HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\n{\"a\":\r\n",
        )
        .expect("a chunk of the body");
    wait_until(
        "the stuck request in flight",
        Duration::from_secs(10),
        || {
            let route = http::get(proxy.admin, "/route").ok()?.json().ok()?;
            (route["in_flight"].as_u64()? >= 1).then_some(())
        },
    )
    .expect("the proxy forwards the stuck request");
    let _idle = idle_keep_alive(proxy.listen);
    let took = terminate_timed(&mut proxy.daemon);
    let logs = proxy.daemon.stderr().unwrap_or_default();
    assert_within_grace("the proxy", took, &logs);
    assert!(
        took >= GRACE,
        "the proxy did not wait for the request in flight: {took:?}"
    );

    // The orchestrator's HTTP port: a sign-in whose body never ends, and an idle client.
    let mut stuck = connect(orchestrator.http);
    stuck
        .write_all(b"POST /login HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\ntoken=")
        .expect("half a form");
    let _idle = idle_keep_alive(orchestrator.http);
    let took = terminate_timed(&mut orchestrator.daemon);
    let logs = orchestrator.daemon.stderr().unwrap_or_default();
    assert_within_grace("the orchestrator", took, &logs);

    // The node: a stuck client, an idle one, and one that completes its PUT within the grace:
    // it is answered, and its write survives the stop.
    let _stuck = stuck_mid_body(node.http, "/v1/c/never");
    let _idle = idle_keep_alive(node.http);
    let body = br#"{"in_grace":true}"#;
    let mut late = connect(node.http);
    let head = format!(
        "PUT /v1/c/late HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    late.write_all(head.as_bytes()).expect("head");
    late.write_all(&body[..4]).expect("part of the body");
    let began = Instant::now();
    node.daemon.terminate().expect("SIGTERM");
    std::thread::sleep(Duration::from_millis(300));
    late.write_all(&body[4..])
        .expect("the rest, within the grace");
    let answer = read_all(&mut late);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let status = node
        .daemon
        .wait_exit(Duration::from_secs(30))
        .expect("exits");
    let took = began.elapsed();
    let logs = node.daemon.stderr().unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert_within_grace("the node", took, &logs);
    assert!(
        took >= GRACE,
        "the node did not wait for the stuck client: {took:?}"
    );
    assert!(logs.contains("shutdown grace period over"), "{logs}");
    assert!(
        logs.contains("node stopped"),
        "the store was not flushed: {logs}"
    );
    let restarted = cluster.restart_node("n2", node, &[]).expect("restarts");
    let read = http::get(restarted.http, "/v1/c/late").expect("GET");
    assert_eq!(
        read.status, 200,
        "the write answered within the grace was lost"
    );
    assert_eq!(read.body, body.to_vec());
    let never = http::get(restarted.http, "/v1/c/never").expect("GET");
    assert_eq!(never.status, 404, "half a body was written");
}

#[test]
fn a_node_inside_which_the_engine_runs_exits_within_its_grace() {
    let cluster = cluster();
    let journal = cluster.dir("journal").expect("dir");
    let journal = journal.display().to_string();
    let mut node = cluster
        .start_node(
            "g",
            &[
                "--orchestrate",
                "--journal",
                &journal,
                "--shutdown-grace",
                "2s",
            ],
        )
        .expect("node");
    let _stuck = stuck_mid_body(node.http, "/v1/c/never");
    let _idle = idle_keep_alive(node.http);
    let took = terminate_timed(&mut node.daemon);
    assert_within_grace("the node", took, &node.daemon.stderr().unwrap_or_default());
}

/// Sends a PUT with a body of `size` bytes in one go, as clients without
/// `Expect: 100-continue` do, and returns the status line it reads back.
fn put_whole(addr: SocketAddr, size: usize) -> String {
    let mut stream = connect(addr);
    let mut request = format!(
        "PUT /v1/c/big HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    request.resize(request.len() + size, b'x');
    // A broken pipe here is what the lingering close prevents; the answer must be readable.
    if let Err(error) = stream.write_all(&request) {
        return format!("write failed: {error}");
    }
    let answer = read_all(&mut stream);
    answer.lines().next().unwrap_or("no answer").to_owned()
}

#[test]
fn an_oversized_body_sent_at_once_reads_its_413_straight_and_through_the_proxy() {
    let cluster = cluster();
    let node = cluster.start_node("n", &[]).expect("node");
    let urls = [format!("http://{}", node.http)];
    let proxy = cluster.start_proxy("p", &urls, &urls, &[]).expect("proxy");
    for (to, addr) in [("the node", node.http), ("the proxy", proxy.listen)] {
        for size in [(1 << 20) + 1, 16 << 20] {
            let answers: Vec<String> = (0..20).map(|_| put_whole(addr, size)).collect();
            let read = answers
                .iter()
                .filter(|a| a.starts_with("HTTP/1.1 413"))
                .count();
            assert_eq!(read, 20, "{size} bytes to {to}: {answers:?}");
        }
    }
    // With Expect: 100-continue the node answers 413 before any of the body is sent.
    let mut stream = connect(node.http);
    stream
        .write_all(
            b"PUT /v1/c/big HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .expect("head");
    let answer = read_all(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert_eq!(http::get(node.http, "/v1/c/big").expect("GET").status, 404);
}

#[test]
fn a_slow_head_gets_408_and_a_large_one_431_at_the_node_and_the_proxy() {
    let cluster = cluster();
    let bounds = ["--header-timeout", "1s", "--max-header-bytes", "16KiB"];
    let node = cluster.start_node("n", &bounds).expect("node");
    let urls = [format!("http://{}", node.http)];
    let proxy = cluster
        .start_proxy("p", &urls, &urls, &bounds)
        .expect("proxy");
    for (to, addr) in [("the node", node.http), ("the proxy", proxy.listen)] {
        // Half a head, then nothing: 408 once the timeout passes, then the close.
        let mut slow = connect(addr);
        slow.write_all(b"GET /v1/c/x HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .expect("half a head");
        let answer = read_all(&mut slow);
        assert!(answer.starts_with("HTTP/1.1 408"), "{to}: {answer:?}");
        assert!(answer.contains("request_timeout"), "{to}: {answer}");

        // An idle keep-alive connection is closed without a word, and so is one that never
        // sent a byte.
        let mut idle = idle_keep_alive(addr);
        assert_eq!(read_all(&mut idle), "", "{to} answered an idle connection");
        let mut silent = connect(addr);
        assert_eq!(
            read_all(&mut silent),
            "",
            "{to} answered a silent connection"
        );

        // A head over 16 KiB: 431; one under it is served.
        for (size, status) in [(20 << 10, "HTTP/1.1 431"), (12 << 10, "HTTP/1.1 404")] {
            let mut stream = connect(addr);
            let head = format!(
                "GET /v1/c/absent HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                "a".repeat(size)
            );
            stream.write_all(head.as_bytes()).expect("head");
            let answer = read_all(&mut stream);
            assert!(answer.starts_with(status), "{to}, {size} B: {answer:?}");
        }
    }
    let timeouts = |addr| {
        let text = http::get(addr, "/metrics").expect("metrics").text();
        text.lines()
            .find_map(|l| {
                l.strip_prefix("cutover_request_head_timeouts_total ")
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    assert!(timeouts(node.http) >= 1.0);
    assert!(timeouts(proxy.admin) >= 1.0);
}

#[test]
fn past_max_connections_a_port_stops_accepting_until_one_closes() {
    let cluster = cluster();
    let node = cluster
        .start_node("n", &["--max-connections", "3"])
        .expect("node");
    // The harness's readiness probe has closed its connection; take every place.
    let first = idle_keep_alive(node.http);
    let _second = idle_keep_alive(node.http);
    let _third = idle_keep_alive(node.http);
    let mut waiting = connect(node.http);
    waiting
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("request (the kernel's backlog takes it)");
    let mut buffer = [0; 64];
    let early = waiting.read(&mut buffer);
    assert!(
        early.is_err(),
        "answered past the limit: {:?}",
        early.map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned())
    );
    drop(first);
    waiting
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let answer = read_all(&mut waiting);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    drop(waiting);
    let text = wait_until("the limit in /metrics", Duration::from_secs(10), || {
        // Another place frees as the waiting connection closes: /metrics gets through.
        let text = http::get(node.http, "/metrics").ok()?.text();
        text.contains("cutover_connection_limit_reached_total")
            .then_some(text)
    })
    .expect("the limit is counted");
    assert!(
        text.contains("cutover_connections{port=\"http\"}"),
        "{text}"
    );
}

#[test]
fn http2_clients_may_open_only_max_streams_at_once_on_every_port() {
    let cluster = cluster();
    let node = cluster
        .start_node("n", &["--max-streams", "7"])
        .expect("node");
    let runtime = crate::runtime();
    for (port, addr) in [("grpc", node.grpc), ("http", node.http)] {
        let streams = runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (client, mut connection) = h2::client::handshake(tcp).await.expect("handshake");
            // The server's SETTINGS arrive with its first frames; a request makes sure.
            let request = ::http::Request::get(format!("http://{addr}/healthz"))
                .body(())
                .expect("request");
            let exchange = async move {
                let mut client = client.ready().await.expect("ready");
                let (response, _) = client.send_request(request, true).expect("send");
                let _ = response.await;
            };
            tokio::select! {
                _ = &mut connection => {}
                () = exchange => {}
            }
            connection.max_concurrent_send_streams()
        });
        assert_eq!(streams, 7, "the {port} port");
    }
}

#[test]
fn past_max_queued_writes_a_write_is_refused_503_overloaded_and_not_written() {
    let cluster = cluster();
    let node = cluster
        .start_node("n", &["--max-queued-writes", "1", "--sync", "always"])
        .expect("node");
    let description = Description::parse(include_str!("../../node/openapi.json"))
        .expect("the node's description");
    // Bursts of concurrent writes until one finds the queue full (each group commit waits
    // for an fsync, so a burst of 64 fills a queue of 1 almost at once).
    let mut refused = Vec::new();
    let mut accepted = Vec::new();
    for burst in 0..20 {
        let answers: Vec<(String, http::HttpResponse)> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..64)
                .map(|i| {
                    scope.spawn(move || {
                        let path = format!("/v1/c/b{burst}-{i}");
                        let answer = http::put(node.http, &path, "{}").expect("answered");
                        (path, answer)
                    })
                })
                .collect();
            calls
                .into_iter()
                .map(|c| c.join().expect("thread"))
                .collect()
        });
        for (path, answer) in answers {
            match answer.status {
                201 => accepted.push(path),
                503 => {
                    if let Err(problem) = description.check("/v1/{collection}/{id}", "PUT", &answer)
                    {
                        panic!("{path}: the 503 is not as node/openapi.json says: {problem:#}");
                    }
                    assert_eq!(answer.header("retry-after"), Some("1"));
                    let body = answer.json().expect("JSON");
                    assert_eq!(body["error"], "overloaded", "{body}");
                    refused.push(path);
                }
                other => panic!("{path}: {other} {}", answer.text()),
            }
        }
        if !refused.is_empty() {
            break;
        }
    }
    assert!(
        !refused.is_empty(),
        "no write was refused in 20 bursts of 64"
    );
    for path in &refused {
        assert_eq!(
            http::get(node.http, path).expect("GET").status,
            404,
            "{path}"
        );
    }
    for path in &accepted {
        assert_eq!(
            http::get(node.http, path).expect("GET").status,
            200,
            "{path}"
        );
    }
    let text = http::get(node.http, "/metrics").expect("metrics").text();
    assert!(
        text.contains("cutover_node_writes_overloaded_total"),
        "{text}"
    );
}

#[test]
fn bounds_that_cannot_be_kept_are_refused_at_start() {
    let cluster = cluster();
    let refused = cluster
        .run([
            "proxy",
            "--blue",
            "http://127.0.0.1:1",
            "--green",
            "http://127.0.0.1:2",
            "--state-file",
            "/nonexistent/route.json",
            "--max-held",
            "100",
            "--max-connections",
            "50",
        ])
        .expect("runs");
    assert_ne!(refused.code, Some(0));
    assert!(
        refused
            .stderr
            .contains("--max-connections 50 is below --max-held 100"),
        "{}",
        refused.stderr
    );
    let small = cluster
        .run([
            "node",
            "--data-dir",
            "/nonexistent",
            "--max-header-bytes",
            "1KiB",
        ])
        .expect("runs");
    assert!(
        small.stderr.contains("give at least 8KiB"),
        "{}",
        small.stderr
    );
}
