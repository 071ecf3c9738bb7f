//! The threads that serve client connections (`workers.rs`): each serves the connections it
//! is given, and all of them end with the proxy. A test binary of its own: it counts this
//! process's threads by name, so no other proxy may run in it.

#![allow(clippy::unwrap_used)]

mod common;

use common::start;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// This process's threads named `proxy-worker-N`.
fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("proxy-worker-"))
        .count()
}

/// Reads one answer of the test backend (its body is its colour's name).
async fn answer(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    while !buffer.ends_with(b"\r\n\r\nblue") {
        assert_ne!(stream.read_buf(&mut buffer).await.unwrap(), 0, "closed");
    }
    String::from_utf8(buffer).unwrap()
}

#[tokio::test]
async fn each_worker_serves_its_connections_and_all_stop_with_the_proxy() {
    for workers in [1, 3] {
        let (blue, _green, _dir, proxy) = start(|config| config.workers = workers).await;
        // Seven connections, round-robin over the workers; each sends three requests in
        // turn, so each worker takes its backend connections from its own pool again.
        let mut connections = Vec::new();
        for _ in 0..7 {
            connections.push(TcpStream::connect(proxy.listen).await.unwrap());
        }
        for _ in 0..3 {
            for connection in &mut connections {
                connection
                    .write_all(b"GET /x HTTP/1.1\r\nhost: proxy\r\n\r\n")
                    .await
                    .unwrap();
            }
            for connection in &mut connections {
                let text = answer(connection).await;
                assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            }
        }
        assert_eq!(blue.seen().len(), 21);
        assert_eq!(worker_threads(), workers);
        drop(connections);
        proxy.stop().await;
        assert_eq!(worker_threads(), 0, "{workers} workers left running");
    }
}
