//! `cutover node` as a real process: the HTTP document API with every status it answers,
//! durability across `kill -9`, a graceful stop, fencing with a lease and under an epoch,
//! replication over gRPC, and refusal of unauthenticated control calls.

use std::{net::SocketAddr, time::Duration};

use cutover_proto::v1::{
    ApplyRequest, Document, FenceRequest, NodeStatusRequest, PullRequest, UnfenceRequest,
    fence_request, node_admin_client::NodeAdminClient, pull_response, sink_client::SinkClient,
    source_client::SourceClient,
};
use cutover_tests::harness::{NodeProcess, http, wait_until};
use tonic::{Code, Request, metadata::MetadataValue};

use crate::{cluster, runtime, send};

fn put(addr: SocketAddr, path: &str, body: &str) -> http::HttpResponse {
    http::put(addr, path, body).expect("PUT answered")
}

/// The value of the unlabelled metric `name` on the node's `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = http::get(addr, "/metrics").expect("GET /metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

fn error_code(response: &http::HttpResponse) -> String {
    response.json().expect("errors are JSON")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_document_api_answers_every_status_it_documents() {
    let cluster = cluster();
    let node = cluster
        .start_node("n", &["--max-body", "1KiB"])
        .expect("node starts");
    let a = node.http;

    // Create, update, read back byte for byte.
    let created = put(a, "/v1/users/alice", r#"{"name": "Alice",  "n":[1, 2]}"#);
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("etag"), Some("\"1\""));
    let body = created.json().expect("JSON");
    assert_eq!(body["collection"], "users");
    assert_eq!(body["id"], "alice");
    assert_eq!(body["version"], 1);
    let first_seq = body["seq"].as_u64().expect("seq");
    let updated = put(a, "/v1/users/alice", r#"{"name":"Alice B."}"#);
    assert_eq!(updated.status, 200);
    assert_eq!(updated.json().expect("JSON")["version"], 2);
    assert!(updated.json().expect("JSON")["seq"].as_u64() > Some(first_seq));
    let read = http::get(a, "/v1/users/alice").expect("GET");
    assert_eq!(read.status, 200);
    assert_eq!(
        read.text(),
        r#"{"name":"Alice B."}"#,
        "exactly the stored JSON"
    );
    assert_eq!(read.header("etag"), Some("\"2\""));

    // Preconditions.
    let stale = send(a, "PUT", "/v1/users/alice", &[("if-match", "\"1\"")], "{}");
    assert_eq!(stale.status, 412);
    assert_eq!(error_code(&stale), "precondition_failed");
    let fresh = send(
        a,
        "PUT",
        "/v1/users/alice",
        &[("if-match", "\"2\"")],
        r#"{"v":3}"#,
    );
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.header("etag"), Some("\"3\""));
    let exists = send(a, "PUT", "/v1/users/alice", &[("if-none-match", "*")], "{}");
    assert_eq!(exists.status, 412);
    let absent = send(a, "PUT", "/v1/users/bob", &[("if-none-match", "*")], "{}");
    assert_eq!(absent.status, 201);
    let unquoted = send(a, "PUT", "/v1/users/alice", &[("if-match", "3")], "{}");
    assert_eq!(
        unquoted.status, 400,
        "an If-Match that is not an entity tag"
    );

    // Delete: precondition, tombstone, 404s, re-create continues the version.
    let stale_delete = send(a, "DELETE", "/v1/users/alice", &[("if-match", "\"2\"")], "");
    assert_eq!(stale_delete.status, 412);
    let deleted = send(a, "DELETE", "/v1/users/alice", &[("if-match", "\"3\"")], "");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json().expect("JSON")["version"], 4);
    assert_eq!(http::get(a, "/v1/users/alice").expect("GET").status, 404);
    let again = send(a, "DELETE", "/v1/users/alice", &[], "");
    assert_eq!(again.status, 404);
    assert_eq!(error_code(&again), "not_found");
    let recreated = put(a, "/v1/users/alice", "[]");
    assert_eq!(recreated.status, 201);
    assert_eq!(recreated.json().expect("JSON")["version"], 5);

    // Bad input: each refused with a code that names it, nothing written.
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("PUT", "/v1/users/x", "{not json", 400, "invalid_json"),
        ("PUT", "/v1/users/x", "", 400, "invalid_json"),
        ("PUT", "/v1/users/x", "{} {}", 400, "invalid_json"),
        ("PUT", "/v1/bad!name/x", "{}", 400, "bad_collection"),
        ("PUT", "/v1/users/%FF", "{}", 400, "bad_id"),
        ("GET", "/v1/users?limit=0", "", 400, "bad_query"),
        ("GET", "/v1/users?limit=1001", "", 400, "bad_query"),
        ("GET", "/v1/users?colour=blue", "", 400, "bad_query"),
        ("POST", "/v1/users/x", "{}", 405, "method_not_allowed"),
        ("DELETE", "/v1/users", "", 405, "method_not_allowed"),
        ("GET", "/v2/users/x", "", 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let response = send(a, method, path, &[], body);
        assert_eq!(
            response.status,
            *status,
            "{method} {path}: {}",
            response.text()
        );
        assert_eq!(error_code(&response), *code, "{method} {path}");
        assert!(
            !response.json().expect("JSON")["detail"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{method} {path} explains itself"
        );
    }
    let long_id = format!("/v1/users/{}", "i".repeat(513));
    assert_eq!(error_code(&put(a, &long_id, "{}")), "bad_id");
    let ok_id = format!("/v1/users/{}", "i".repeat(512));
    assert_eq!(
        put(a, &ok_id, "{}").status,
        201,
        "512 bytes is the limit, inclusive"
    );
    let too_large = put(a, "/v1/users/big", &format!("\"{}\"", "x".repeat(2000)));
    assert_eq!(too_large.status, 413);
    assert_eq!(error_code(&too_large), "body_too_large");
    assert_eq!(
        http::get(a, "/v1/users/x").expect("GET").status,
        404,
        "nothing was written"
    );
    assert_eq!(http::get(a, "/v1/users/big").expect("GET").status, 404);

    // Odd ids: percent-decoded, any UTF-8.
    for (path, id) in [
        ("/v1/odd/a%2Fb", "a/b"),
        ("/v1/odd/%E2%9C%93%20ok", "✓ ok"),
        ("/v1/odd/q%3Fx%3D1%26y", "q?x=1&y"),
        ("/v1/odd/%25", "%"),
        ("/v1/odd/..", ".."),
    ] {
        let response = put(a, path, r#"{"odd":true}"#);
        assert_eq!(response.status, 201, "{path}: {}", response.text());
        assert_eq!(response.json().expect("JSON")["id"], id, "{path}");
        assert_eq!(http::get(a, path).expect("GET").status, 200, "{path}");
    }

    // Listing in id order, paged.
    for id in ["c", "a", "d", "b"] {
        assert_eq!(
            put(
                a,
                &format!("/v1/letters/{id}"),
                &format!("{{\"l\":\"{id}\"}}")
            )
            .status,
            201
        );
    }
    let page = http::get(a, "/v1/letters?limit=3")
        .expect("GET")
        .json()
        .expect("JSON");
    let ids: Vec<&str> = page["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .map(|d| d["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(
        page["documents"][0]["body"]["l"], "a",
        "bodies inline as JSON"
    );
    assert_eq!(page["next"], "c");
    let rest = http::get(a, "/v1/letters?after=c")
        .expect("GET")
        .json()
        .expect("JSON");
    assert_eq!(rest["documents"].as_array().map(Vec::len), Some(1));
    assert!(rest["next"].is_null());
    let empty = http::get(a, "/v1/nothing")
        .expect("GET")
        .json()
        .expect("JSON");
    assert_eq!(empty["documents"].as_array().map(Vec::len), Some(0));

    // Operations endpoints.
    assert_eq!(http::get(a, "/healthz").expect("GET").status, 200);
    assert_eq!(http::get(a, "/readyz").expect("GET").status, 200);
    let metrics = http::get(a, "/metrics").expect("GET").text();
    for name in [
        "cutover_node_http_requests_total",
        "cutover_node_http_request_duration_seconds_bucket",
        "cutover_node_documents_written_total",
        "cutover_node_documents_deleted_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    assert!(metrics.contains("status=\"412\""), "statuses are labelled");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let cluster = cluster();
    let mut node = cluster.start_node("n", &[]).expect("node starts");
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let addr = node.http;
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..250 {
                    let id = format!("w{w}-{i}");
                    let response = put(
                        addr,
                        &format!("/v1/docs/{id}"),
                        &format!("{{\"w\":{w},\"i\":{i}}}"),
                    );
                    assert_eq!(response.status, 201, "{}", response.text());
                    if i % 10 == 0 {
                        let deleted = send(addr, "DELETE", &format!("/v1/docs/{id}"), &[], "");
                        assert_eq!(deleted.status, 200);
                    } else {
                        acked.push(id);
                    }
                }
                acked
            })
        })
        .collect();
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    node.daemon.kill9().expect("kill -9");

    let restarted = cluster.restart_node("n2", node, &[]).expect("restarts");
    for id in &acked {
        let (w, i) = id[1..].split_once('-').expect("w-i");
        let read = http::get(restarted.http, &format!("/v1/docs/{id}")).expect("GET");
        assert_eq!(read.status, 200, "acknowledged write {id} lost");
        assert_eq!(read.text(), format!("{{\"w\":{w},\"i\":{i}}}"));
        assert_eq!(read.header("etag"), Some("\"1\""));
    }
    for w in 0..4 {
        let read = http::get(restarted.http, &format!("/v1/docs/w{w}-10")).expect("GET");
        assert_eq!(read.status, 404, "an acknowledged delete came back");
    }
    // The sequence goes on from where it was: a new write gets a seq above all 1100 before.
    let after = put(restarted.http, "/v1/docs/after", "{}")
        .json()
        .expect("JSON");
    assert!(
        after["seq"].as_u64() > Some(1_100),
        "seq restarted: {after}"
    );
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    use std::io::{Read, Write};

    let cluster = cluster();
    let mut node = cluster.start_node("n", &[]).expect("node starts");
    assert_eq!(put(node.http, "/v1/c/x", "{}").status, 201);

    // A PUT whose body is half sent when SIGTERM arrives.
    let body = br#"{"in_flight":true}"#;
    let mut stream = std::net::TcpStream::connect(node.http).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "PUT /v1/c/late HTTP/1.1\r\nHost: n\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(&body[..5]).expect("half the body");
    std::thread::sleep(Duration::from_millis(200));
    node.daemon.terminate().expect("SIGTERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        node.daemon.is_running(),
        "the node exited with a request in flight"
    );
    stream.write_all(&body[5..]).expect("the rest of the body");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the answer, then close");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    let status = node
        .daemon
        .wait_exit(Duration::from_secs(20))
        .expect("exits");
    let logs = node.daemon.stderr().unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains("node stopped"), "{logs}");
    // The write it finished survives the stop.
    let restarted = cluster.restart_node("n2", node, &[]).expect("restarts");
    let read = http::get(restarted.http, "/v1/c/late").expect("GET");
    assert_eq!(read.status, 200, "the in-flight write was lost");
    assert_eq!(read.body, body.to_vec());
}

#[test]
fn a_fence_lease_refuses_writes_until_it_expires() {
    let cluster = cluster();
    let node = cluster.start_node("n", &[]).expect("node starts");
    assert_eq!(put(node.http, "/v1/c/x", "{}").status, 201);
    let rt = runtime();
    let state = rt.block_on(async {
        let mut admin = NodeAdminClient::connect(node.grpc_url())
            .await
            .expect("connect");
        admin
            .fence(FenceRequest {
                mode: Some(fence_request::Mode::LeaseMs(1_500)),
                reason: "test".to_owned(),
                epoch: 1,
            })
            .await
            .expect("fence")
            .into_inner()
    });
    assert!(state.state.is_some_and(|s| s.fenced && !s.permanent));
    let refused = put(node.http, "/v1/c/x", r#"{"during":"fence"}"#);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(error_code(&refused), "fenced");
    let delete = send(node.http, "DELETE", "/v1/c/x", &[], "");
    assert_eq!(delete.status, 503, "deletes are writes");
    assert_eq!(
        http::get(node.http, "/v1/c/x").expect("GET").text(),
        "{}",
        "reads go on"
    );
    wait_until("the lease to expire", Duration::from_secs(10), || {
        (put(node.http, "/v1/c/x", r#"{"after":"lease"}"#).status == 200).then_some(())
    })
    .expect("writes resume after the lease");

    // Permanent, under a newer epoch (adopted): stays until Unfence.
    rt.block_on(async {
        let mut admin = NodeAdminClient::connect(node.grpc_url())
            .await
            .expect("connect");
        admin
            .fence(FenceRequest {
                mode: Some(fence_request::Mode::Permanent(true)),
                reason: String::new(),
                epoch: 5,
            })
            .await
            .expect("fence");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = admin
            .status(NodeStatusRequest {})
            .await
            .expect("status")
            .into_inner();
        assert!(
            status
                .fence
                .is_some_and(|f| f.fenced && f.permanent && f.epoch == 5)
        );
    });
    assert_eq!(put(node.http, "/v1/c/x", "{}").status, 503);
    // An orchestrator still at an older epoch cannot lift it.
    rt.block_on(async {
        let mut admin = NodeAdminClient::connect(node.grpc_url())
            .await
            .expect("connect");
        let stale = admin
            .unfence(UnfenceRequest {
                reason: "stale undo".to_owned(),
                epoch: 4,
            })
            .await
            .expect_err("an older epoch is refused");
        assert_eq!(stale.code(), Code::FailedPrecondition, "{stale}");
        assert!(
            stale.message().contains("epoch 4") && stale.message().contains("epoch 5"),
            "{stale}"
        );
        let status = admin
            .status(NodeStatusRequest {})
            .await
            .expect("status")
            .into_inner();
        assert!(
            status
                .fence
                .as_ref()
                .is_some_and(|f| f.fenced && f.permanent && f.epoch == 5),
            "the node stays fenced at epoch 5: {status:?}"
        );
    });
    assert_eq!(
        put(node.http, "/v1/c/x", "{}").status,
        503,
        "still refusing client writes"
    );
    rt.block_on(async {
        let mut admin = NodeAdminClient::connect(node.grpc_url())
            .await
            .expect("connect");
        admin
            .unfence(UnfenceRequest {
                reason: String::new(),
                epoch: 5,
            })
            .await
            .expect("unfence");
    });
    assert_eq!(put(node.http, "/v1/c/x", "{}").status, 200);
}

#[test]
fn control_calls_without_the_token_are_refused_and_change_nothing() {
    let cluster = cluster();
    let token_file = cluster.dir("n").expect("dir").join("token");
    std::fs::write(&token_file, "s3cret\n").expect("token file");
    let token_arg = token_file.display().to_string();
    let node = cluster
        .start_node("n", &["--token-file", &token_arg])
        .expect("node starts");
    let rt = runtime();
    rt.block_on(async {
        let mut admin = NodeAdminClient::connect(node.grpc_url())
            .await
            .expect("connect");
        let fence = || FenceRequest {
            mode: Some(fence_request::Mode::Permanent(true)),
            reason: String::new(),
            epoch: 1,
        };
        let missing = admin.fence(fence()).await.expect_err("no token");
        assert_eq!(missing.code(), Code::Unauthenticated, "{missing}");
        let mut wrong = Request::new(fence());
        wrong
            .metadata_mut()
            .insert("authorization", MetadataValue::from_static("Bearer s3cre7"));
        let wrong = admin.fence(wrong).await.expect_err("wrong token");
        assert_eq!(wrong.code(), Code::Unauthenticated);

        let mut sink = SinkClient::connect(node.grpc_url()).await.expect("connect");
        let batch = ApplyRequest {
            batch_id: 1,
            documents: vec![Document {
                collection: "c".to_owned(),
                id: "injected".to_owned(),
                version: 7,
                seq: 0,
                body: bytes::Bytes::from_static(b"{}"),
                tombstone: false,
            }],
        };
        let refused = sink
            .apply(tokio_stream::iter(vec![batch.clone()]))
            .await
            .expect_err("no token");
        assert_eq!(refused.code(), Code::Unauthenticated);

        // Source is the read side and stays open; Status needs the token.
        let mut status = Request::new(NodeStatusRequest {});
        status
            .metadata_mut()
            .insert("authorization", MetadataValue::from_static("Bearer s3cret"));
        let status = admin
            .status(status)
            .await
            .expect("status with the token")
            .into_inner();
        assert!(
            status.fence.is_some_and(|f| !f.fenced),
            "the refused fence changed nothing"
        );
        assert_eq!(status.live_documents, 0, "the refused apply wrote nothing");
    });
    assert_eq!(put(node.http, "/v1/c/x", "{}").status, 201, "not fenced");
}

#[test]
fn pull_then_apply_copies_one_node_into_another_with_versions_kept() {
    let cluster = cluster();
    let blue = cluster.start_node("blue", &[]).expect("blue starts");
    let green = cluster.start_node("green", &[]).expect("green starts");
    for i in 0..50 {
        assert_eq!(
            put(blue.http, &format!("/v1/c/{i}"), &format!("{{\"i\":{i}}}")).status,
            201
        );
    }
    assert_eq!(put(blue.http, "/v1/c/7", r#"{"i":"seven"}"#).status, 200);
    assert_eq!(send(blue.http, "DELETE", "/v1/c/8", &[], "").status, 200);
    let rt = runtime();
    let copied = rt.block_on(async {
        let mut source = SourceClient::connect(blue.grpc_url())
            .await
            .expect("connect");
        let mut stream = source
            .pull(PullRequest {
                since: 0,
                partitions: vec![],
                max_batch_documents: 16,
                max_batch_bytes: 0,
            })
            .await
            .expect("pull")
            .into_inner();
        let mut batches = Vec::new();
        let mut complete = None;
        while let Some(message) = stream.message().await.expect("stream") {
            match message.kind {
                Some(pull_response::Kind::Batch(batch)) => {
                    assert!(batch.documents.len() <= 16);
                    batches.push(ApplyRequest {
                        batch_id: batches.len() as u64 + 1,
                        documents: batch.documents,
                    });
                }
                Some(pull_response::Kind::Complete(c)) => complete = Some(c),
                None => panic!("empty message"),
            }
        }
        let complete = complete.expect("a PullComplete ends the stream");
        assert_eq!(
            complete.documents, 50,
            "latest state of each key, tombstone included"
        );
        let mut sink = SinkClient::connect(green.grpc_url())
            .await
            .expect("connect");
        let sent = batches.len();
        let mut acks = sink
            .apply(tokio_stream::iter(batches))
            .await
            .expect("apply")
            .into_inner();
        let mut acked = 0;
        while let Some(ack) = acks.message().await.expect("acks") {
            acked += 1;
            assert_eq!(ack.batch_id, acked as u64);
        }
        assert_eq!(acked, sent);
        complete.high_watermark
    });
    assert!(copied >= 52);
    assert_eq!(
        metric(blue.http, "cutover_node_pulled_documents_total"),
        50.0
    );
    assert_eq!(
        metric(green.http, "cutover_node_applied_documents_total"),
        50.0
    );
    assert_eq!(
        metric(blue.http, "cutover_node_documents_written_total"),
        51.0
    );
    let seven = http::get(green.http, "/v1/c/7").expect("GET");
    assert_eq!(seven.text(), r#"{"i":"seven"}"#);
    assert_eq!(
        seven.header("etag"),
        Some("\"2\""),
        "blue's version, so blue's ETags hold on green"
    );
    assert_eq!(http::get(green.http, "/v1/c/8").expect("GET").status, 404);
    // The tombstone travelled: re-creating on green continues from blue's version.
    assert_eq!(
        put(green.http, "/v1/c/8", "{}").json().expect("JSON")["version"],
        3
    );
}

#[test]
fn a_sink_applies_batches_at_once_acks_them_in_order_and_keeps_the_newest_version() {
    let cluster = cluster();
    let green = cluster.start_node("green", &[]).expect("green starts");
    let batch = |batch_id: u64, version: u64| ApplyRequest {
        batch_id,
        documents: (0..50)
            .map(|i| Document {
                collection: "c".to_owned(),
                id: i.to_string(),
                version,
                seq: 0,
                body: bytes::Bytes::from(format!(r#"{{"v":{version}}}"#)),
                tombstone: false,
            })
            .collect(),
    };
    // Every batch rewrites the same 50 keys one version up, so batches applied at once
    // contend for every key; then a batch id that does not increase.
    let mut batches: Vec<ApplyRequest> = (1..=40).map(|k| batch(k, k)).collect();
    batches.push(batch(40, 41));
    let (acked, refusal) = runtime().block_on(async {
        let mut sink = SinkClient::connect(green.grpc_url())
            .await
            .expect("connect");
        let mut acks = sink
            .apply(tokio_stream::iter(batches))
            .await
            .expect("apply")
            .into_inner();
        let mut acked = Vec::new();
        loop {
            match acks.message().await {
                Ok(Some(ack)) => acked.push(ack.batch_id),
                Ok(None) => panic!("the stream ended without refusing batch id 40 again"),
                Err(status) => break (acked, status),
            }
        }
    });
    assert_eq!(
        acked,
        (1..=40).collect::<Vec<u64>>(),
        "every batch, in order"
    );
    assert_eq!(refusal.code(), Code::InvalidArgument);
    assert!(
        refusal.message().contains("batch_id 40 does not increase"),
        "{}",
        refusal.message()
    );
    for i in 0..50 {
        let document = http::get(green.http, &format!("/v1/c/{i}")).expect("GET");
        assert_eq!(document.text(), r#"{"v":40}"#, "document {i}");
        assert_eq!(document.header("etag"), Some("\"40\""), "document {i}");
    }
    assert_eq!(
        http::get(green.http, "/v1/c/50").expect("GET").status,
        404,
        "nothing else"
    );
    assert_eq!(
        metric(green.http, "cutover_node_applied_documents_total")
            + metric(green.http, "cutover_node_apply_skipped_total"),
        2000.0,
        "each of the 40 batches' documents applied or skipped as stale"
    );
}

#[test]
fn grpc_health_reports_every_node_service_as_serving() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let cluster = cluster();
    let node = cluster.start_node("n", &[]).expect("node starts");
    runtime().block_on(async {
        let channel = tonic::transport::Channel::from_shared(node.grpc_url())
            .expect("a URL")
            .connect()
            .await
            .expect("connect");
        let mut health = HealthClient::new(channel);
        for service in [
            "cutover.v1.Source",
            "cutover.v1.Sink",
            "cutover.v1.NodeAdmin",
        ] {
            let answer = health
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .unwrap_or_else(|e| panic!("health of {service}: {e}"))
                .into_inner();
            assert_eq!(answer.status, ServingStatus::Serving as i32, "{service}");
        }
    });
}

#[test]
fn bad_node_configuration_is_refused_clearly() {
    let cluster = cluster();
    let node = cluster
        .start_node("n", &["--partitions", "16"])
        .expect("node starts");
    let NodeProcess {
        mut daemon,
        data_dir,
        ..
    } = node;
    daemon.kill9().expect("kill");
    let data = data_dir.display().to_string();
    let mismatch = cluster
        .run([
            "node",
            "--data-dir",
            &data,
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
            "--partitions",
            "64",
        ])
        .expect("runs");
    assert_eq!(mismatch.code, Some(1), "{}", mismatch.stderr);
    assert!(
        mismatch.stderr.contains("16 partitions but 64"),
        "{}",
        mismatch.stderr
    );

    let missing = cluster
        .run([
            "node",
            "--data-dir",
            &data,
            "--token-file",
            "/nonexistent/token",
        ])
        .expect("runs");
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("/nonexistent/token"),
        "{}",
        missing.stderr
    );

    let zero = cluster
        .run(["node", "--data-dir", &data, "--partitions", "0"])
        .expect("runs");
    assert_eq!(zero.code, Some(2), "a usage error: {}", zero.stderr);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    let busy = cluster
        .run([
            "node",
            "--data-dir",
            &data,
            "--http",
            &port,
            "--grpc",
            "127.0.0.1:0",
        ])
        .expect("runs");
    assert_eq!(busy.code, Some(1));
    assert!(busy.stderr.contains(&port), "{}", busy.stderr);
}
