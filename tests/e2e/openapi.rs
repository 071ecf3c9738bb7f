//! The node's OpenAPI description (`node/openapi.json`, served at `/openapi.json`) against
//! real node processes: it is the one served, it is OpenAPI 3.1 and self-consistent, every
//! status and error name it documents for each operation is one a node really answers (a
//! single node, and a two-node cluster for the forwarding answers), every answer conforms to
//! it, and every status the one error mapping lets the HTTP port answer is documented.

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use cutover_daemon::ErrorCode;
use cutover_node::cluster::Cluster as Layout;
use cutover_proto::v1::{
    Document, FenceRequest, fence_request, node_admin_client::NodeAdminClient,
};
use cutover_tests::harness::{
    NodeProcess, http,
    http::HttpResponse,
    openapi::{Description, Documented},
    wait_until,
};

use crate::{
    apply, cluster,
    clusters::{first_id_owned_by, init_file, start},
    runtime, send,
};

/// The description as the repository holds it.
const REPOSITORY_COPY: &str = include_str!("../../node/openapi.json");

const DOCUMENT: &str = "/v1/{collection}/{id}";
const LISTING: &str = "/v1/{collection}";

/// Statuses the HTTP layer answers before a request is routed, on every path.
const HTTP_LAYER: [(u16, &str); 3] = [
    (408, "the request head did not arrive in time"),
    (414, "the request target is over 64 KiB"),
    (431, "the request head is too large or has too many fields"),
];

/// Whether the node's HTTP port can answer `code`, and if not, why not. Exhaustive: a new
/// code does not compile until it is placed here, and one placed on the left must then be
/// documented (see `every_status_the_error_mapping_lets_the_node_answer_is_documented`).
fn over_http(code: ErrorCode) -> Result<(), &'static str> {
    match code {
        ErrorCode::InvalidArgument
        | ErrorCode::NotFound
        | ErrorCode::PreconditionFailed
        | ErrorCode::PayloadTooLarge
        | ErrorCode::MethodNotAllowed
        | ErrorCode::Fenced
        | ErrorCode::Misdirected
        | ErrorCode::Unavailable
        | ErrorCode::BadGateway
        | ErrorCode::Internal => Ok(()),
        ErrorCode::OutOfRange => Err("a `since` beyond the head: gRPC Pull and Lag only"),
        ErrorCode::Unauthenticated => {
            Err("the token guards gRPC Sink and NodeAdmin only; the HTTP port takes none")
        }
        ErrorCode::AlreadyExists => Err("an upgrade already in progress: the orchestrator's"),
        ErrorCode::DeadlineExceeded => Err("a drain or a slow upstream: the proxy's"),
    }
}

/// Documented answers no request of this test produces, and why. Each is printed when the
/// test runs, so that what is pending stays in sight.
fn waived(answer: &Answer) -> Option<&'static str> {
    match (answer.documented.status, answer.error.as_str()) {
        (503, "overloaded") => Some(
            "a full write queue: produced and checked against this description by \
             tests/e2e/bounds.rs (`past_max_queued_writes_…`) with bursts of PUTs; a DELETE \
             queues through the same writer",
        ),
        (500, _) if answer.documented.path == DOCUMENT => Some(
            "not producible against a healthy store: a RocksDB failure; the listing's 500 \
             (a stored body that is not JSON) shows the same answer",
        ),
        _ => None,
    }
}

/// One documented answer with one of its error names (empty for an answer without one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Answer {
    documented: Documented,
    error: String,
}

/// The answers a test has seen, each checked against the description as it came.
struct Seen<'d> {
    description: &'d Description,
    answers: BTreeSet<Answer>,
}

impl<'d> Seen<'d> {
    fn new(description: &'d Description) -> Self {
        Self {
            description,
            answers: BTreeSet::new(),
        }
    }

    /// Checks that `answer` to `method` on the operation `path` has `status` and, for an
    /// error with a JSON body, the error name `error`, and that it conforms to the
    /// description; records it.
    fn expect(&mut self, path: &str, method: &str, status: u16, error: &str, answer: HttpResponse) {
        let text = answer.text();
        assert_eq!(answer.status, status, "{method} {path}: {text}");
        if let Err(problem) = self.description.check(path, method, &answer) {
            panic!("{method} {path} answered {status} not as documented: {problem:#}\n{text}");
        }
        let json = answer.header("content-type") == Some("application/json");
        let name = match answer.json() {
            Ok(body) if json && status >= 400 && method != "HEAD" => {
                body["error"].as_str().unwrap_or_default().to_owned()
            }
            _ => String::new(),
        };
        assert_eq!(name, error, "{method} {path} {status}: {text}");
        self.answers.insert(Answer {
            documented: Documented {
                path: path.to_owned(),
                method: method.to_owned(),
                status,
            },
            error: name,
        });
    }

    /// Checks that every documented answer was seen, or is waived (and prints those).
    fn finish(self) {
        let mut missing = Vec::new();
        for documented in self.description.answers() {
            let (path, method, status) = (&documented.path, &documented.method, documented.status);
            let mut names = self.description.error_names(path, method, status);
            if names.is_empty() {
                names.push(String::new());
            }
            for error in names {
                let answer = Answer {
                    documented: documented.clone(),
                    error,
                };
                if self.answers.contains(&answer) {
                    continue;
                }
                match waived(&answer) {
                    Some(why) => eprintln!("{method} {path} {status} {}: {why}", answer.error),
                    None => missing.push(format!("{method} {path} {status} {}", answer.error)),
                }
            }
        }
        assert!(
            missing.is_empty(),
            "documented but never answered here (add a request that produces each, or fix \
             the description):\n{}",
            missing.join("\n")
        );
    }
}

fn description() -> Description {
    Description::parse(REPOSITORY_COPY).expect("node/openapi.json is OpenAPI 3.1 and consistent")
}

#[test]
fn the_node_serves_the_repository_s_description() {
    let cluster = cluster();
    let node = cluster.start_node("n", &[]).expect("node starts");
    let served = http::get(node.http, "/openapi.json").expect("GET /openapi.json");
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.header("content-type"), Some("application/json"));
    assert_eq!(served.text(), REPOSITORY_COPY);
    Description::parse(&served.text()).expect("consistent");
    // Served to whoever reaches the port, as the API it describes: a proxied request too.
    let proxied = send(
        node.http,
        "GET",
        "/openapi.json",
        &[("via", "1.1 proxy")],
        "",
    );
    assert_eq!(proxied.text(), REPOSITORY_COPY);
    let refused = send(node.http, "PUT", "/openapi.json", &[], "{}");
    assert_eq!(refused.status, 405, "{}", refused.text());
}

#[test]
fn every_status_the_error_mapping_lets_the_node_answer_is_documented() {
    let description = description();
    let documented: BTreeSet<u16> = description
        .answers()
        .into_iter()
        .filter(|d| d.path.starts_with("/v1/"))
        .map(|d| d.status)
        .collect();
    let mut answerable = BTreeSet::new();
    for code in ErrorCode::ALL {
        let status = code.http_status().as_u16();
        match over_http(*code) {
            Ok(()) => {
                answerable.insert(status);
                assert!(
                    documented.contains(&status),
                    "{code:?} is answered {status}, which node/openapi.json does not document"
                );
            }
            Err(why) => assert!(!why.is_empty(), "{code:?}"),
        }
    }
    for status in documented.iter().filter(|s| **s >= 400) {
        assert!(
            answerable.contains(status) || HTTP_LAYER.iter().any(|(s, _)| s == status),
            "node/openapi.json documents {status}, which no code the node answers maps to"
        );
    }
}

#[test]
fn every_documented_answer_is_one_a_real_node_gives() {
    let description = description();
    let mut seen = Seen::new(&description);
    let cluster = cluster();
    let node = cluster
        .start_node(
            "single",
            // A head bound above 64 KiB, so that a target over 64 KiB gets its 414 (with the
            // default bound the whole head is over it first: 431).
            &[
                "--max-body",
                "1KiB",
                "--header-timeout",
                "300ms",
                "--max-header-bytes",
                "128KiB",
            ],
        )
        .expect("node starts");
    documents(&mut seen, node.http);
    bad_requests(&mut seen, node.http);
    operations(&mut seen, node.http);
    http_layer(&mut seen, &description, node.http);
    broken_store(&mut seen, &node);
    fenced(&mut seen, &node);
    in_a_cluster(&mut seen, &cluster);
    seen.finish();
}

/// The successful answers, and those about a document's state (404, 412, 413, 405).
fn documents(seen: &mut Seen<'_>, a: SocketAddr) {
    seen.expect(
        DOCUMENT,
        "PUT",
        201,
        "",
        http::put(a, "/v1/c/x", r#"{"n":1}"#).expect("PUT"),
    );
    seen.expect(
        DOCUMENT,
        "PUT",
        200,
        "",
        http::put(a, "/v1/c/x", "[2]").expect("PUT"),
    );
    seen.expect(DOCUMENT, "GET", 200, "", send(a, "GET", "/v1/c/x", &[], ""));
    seen.expect(
        DOCUMENT,
        "HEAD",
        200,
        "",
        send(a, "HEAD", "/v1/c/x", &[], ""),
    );
    seen.expect(
        LISTING,
        "GET",
        200,
        "",
        send(a, "GET", "/v1/c?limit=1", &[], ""),
    );
    seen.expect(LISTING, "HEAD", 200, "", send(a, "HEAD", "/v1/c", &[], ""));
    let stale = [("if-match", "\"1\"")];
    seen.expect(
        DOCUMENT,
        "PUT",
        412,
        "precondition_failed",
        send(a, "PUT", "/v1/c/x", &stale, "{}"),
    );
    seen.expect(
        DOCUMENT,
        "DELETE",
        412,
        "precondition_failed",
        send(a, "DELETE", "/v1/c/x", &stale, ""),
    );
    seen.expect(
        DOCUMENT,
        "DELETE",
        200,
        "",
        send(a, "DELETE", "/v1/c/x", &[], ""),
    );
    for method in ["GET", "DELETE"] {
        seen.expect(
            DOCUMENT,
            method,
            404,
            "not_found",
            send(a, method, "/v1/c/x", &[], ""),
        );
    }
    seen.expect(
        DOCUMENT,
        "HEAD",
        404,
        "",
        send(a, "HEAD", "/v1/c/x", &[], ""),
    );
    let large = format!("\"{}\"", "x".repeat(2_000));
    seen.expect(
        DOCUMENT,
        "PUT",
        413,
        "body_too_large",
        send(a, "PUT", "/v1/c/x", &[], &large),
    );
    seen.expect(
        DOCUMENT,
        "POST",
        405,
        "method_not_allowed",
        send(a, "POST", "/v1/c/x", &[], "{}"),
    );
    seen.expect(
        LISTING,
        "POST",
        405,
        "method_not_allowed",
        send(a, "POST", "/v1/c", &[], "{}"),
    );
}

/// Each `400` name of each operation, and `421 cluster_mismatch` (a node outside a cluster
/// has the empty hash: a request marked forwarded from another cluster is refused).
fn bad_requests(seen: &mut Seen<'_>, a: SocketAddr) {
    let unquoted = [("if-match", "3")];
    for method in ["GET", "PUT", "DELETE"] {
        let cases = [
            ("/v1/bad!name/x", &[][..], "bad_collection"),
            ("/v1/c/%FF", &[][..], "bad_id"),
            ("/v1/c/x", &unquoted[..], "bad_precondition"),
        ];
        for (path, headers, error) in cases {
            seen.expect(
                DOCUMENT,
                method,
                400,
                error,
                send(a, method, path, headers, "{}"),
            );
        }
    }
    seen.expect(
        DOCUMENT,
        "HEAD",
        400,
        "",
        send(a, "HEAD", "/v1/c/%FF", &[], ""),
    );
    seen.expect(
        DOCUMENT,
        "PUT",
        400,
        "invalid_json",
        send(a, "PUT", "/v1/c/x", &[], "{"),
    );
    let broken_chunks =
        b"PUT /v1/c/x HTTP/1.1\r\nhost: n\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
    let bad_body = http::raw(a, broken_chunks).expect("answered");
    seen.expect(DOCUMENT, "PUT", 400, "bad_body", bad_body);
    seen.expect(
        LISTING,
        "GET",
        400,
        "bad_collection",
        send(a, "GET", "/v1/bad!name", &[], ""),
    );
    seen.expect(
        LISTING,
        "GET",
        400,
        "bad_query",
        send(a, "GET", "/v1/c?limit=0", &[], ""),
    );
    seen.expect(
        LISTING,
        "HEAD",
        400,
        "",
        send(a, "HEAD", "/v1/c?colour=blue", &[], ""),
    );
    let elsewhere = [
        ("cutover-forwarded-by", "n9"),
        ("cutover-cluster", "another"),
    ];
    for (path, template) in [("/v1/c/x", DOCUMENT), ("/v1/c", LISTING)] {
        for method in ["GET", "PUT", "DELETE", "POST"]
            .into_iter()
            .filter(|m| template == DOCUMENT || matches!(*m, "GET" | "POST"))
        {
            let answer = send(a, method, path, &elsewhere, "{}");
            seen.expect(template, method, 421, "cluster_mismatch", answer);
        }
        seen.expect(
            template,
            "HEAD",
            421,
            "",
            send(a, "HEAD", path, &elsewhere, ""),
        );
    }
}

/// The operational paths and the description itself.
fn operations(seen: &mut Seen<'_>, a: SocketAddr) {
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        seen.expect(path, "GET", 200, "", send(a, "GET", path, &[], ""));
    }
}

/// `408`, `414` and `431` on every documented operation, from the HTTP layer.
fn http_layer(seen: &mut Seen<'_>, description: &Description, a: SocketAddr) {
    let operations: BTreeSet<(String, String)> = description
        .answers()
        .into_iter()
        .map(|d| (d.path, d.method))
        .collect();
    let many_fields: String = (0..120).map(|i| format!("x-field-{i}: {i}\r\n")).collect();
    for (template, method) in operations {
        let path = template.replace("{collection}", "c").replace("{id}", "x");
        let long = format!(
            "{method} {path}?{} HTTP/1.1\r\nhost: n\r\n\r\n",
            "a".repeat(70_000)
        );
        seen.expect(
            &template,
            &method,
            414,
            "",
            http::raw(a, long.as_bytes()).expect("answered"),
        );
        // A head that stops short of its end: 408 once the node's --header-timeout passes.
        let slow = format!("{method} {path} HTTP/1.1\r\nhost: n\r\n");
        seen.expect(
            &template,
            &method,
            408,
            // This test reads no error name from an answer to HEAD.
            if method == "HEAD" {
                ""
            } else {
                "request_timeout"
            },
            http::raw(a, slow.as_bytes()).expect("answered"),
        );
        let large = format!("{method} {path} HTTP/1.1\r\nhost: n\r\n{many_fields}\r\n");
        seen.expect(
            &template,
            &method,
            431,
            "",
            http::raw(a, large.as_bytes()).expect("answered"),
        );
    }
}

/// `500 internal` on the listing: a stored body that is not JSON (the Sink stores the
/// bytes it is given; only the HTTP API checks them).
fn broken_store(seen: &mut Seen<'_>, node: &NodeProcess) {
    let document = Document {
        collection: "broken".to_owned(),
        id: "b".to_owned(),
        version: 1,
        seq: 0,
        body: bytes::Bytes::from_static(b"not json"),
        tombstone: false,
    };
    apply(node, None, vec![document]);
    seen.expect(
        LISTING,
        "GET",
        500,
        "internal",
        send(node.http, "GET", "/v1/broken", &[], ""),
    );
    seen.expect(
        LISTING,
        "HEAD",
        500,
        "",
        send(node.http, "HEAD", "/v1/broken", &[], ""),
    );
}

/// `503 fenced` with `Retry-After` on writes while the node is fenced.
fn fenced(seen: &mut Seen<'_>, node: &NodeProcess) {
    fence(node);
    let a = node.http;
    seen.expect(
        DOCUMENT,
        "PUT",
        503,
        "fenced",
        http::put(a, "/v1/c/y", "{}").expect("PUT"),
    );
    seen.expect(
        DOCUMENT,
        "DELETE",
        503,
        "fenced",
        send(a, "DELETE", "/v1/c/y", &[], ""),
    );
}

fn fence(node: &NodeProcess) {
    runtime().block_on(async {
        let mut admin = NodeAdminClient::connect(node.grpc_url())
            .await
            .expect("connect");
        let fence = FenceRequest {
            mode: Some(fence_request::Mode::LeaseMs(600_000)),
            reason: "the OpenAPI test".to_owned(),
            epoch: 1,
        };
        admin.fence(fence).await.expect("fenced");
    });
}

/// The forwarding answers of a two-node cluster: `421 not_owner`, then with `n1` down
/// `503 owner_unavailable` and `node_unavailable`, then with something else on `n1`'s port
/// `502 bad_peer_answer`, then with `n1` on another cluster file `/readyz` `503`.
fn in_a_cluster(seen: &mut Seen<'_>, cluster: &crate::Cluster) {
    let (file, addrs) = init_file(cluster, &["n0", "n1"], 8);
    let layout = Layout::load(&file).expect("the file init wrote parses");
    let n0 = start(cluster, &file, "n0", addrs[0], addrs[1]);
    let mut n1 = start(cluster, &file, "n1", addrs[2], addrs[3]);
    let theirs = format!("/v1/c/{}", first_id_owned_by(&layout, "n1"));
    let a = n0.http;
    let only_here = [
        ("cutover-forwarded-by", "the-test"),
        ("cutover-cluster", layout.hash()),
    ];
    for method in ["GET", "PUT", "DELETE"] {
        seen.expect(
            DOCUMENT,
            method,
            421,
            "not_owner",
            send(a, method, &theirs, &only_here, "{}"),
        );
    }
    seen.expect(
        DOCUMENT,
        "HEAD",
        421,
        "",
        send(a, "HEAD", &theirs, &only_here, ""),
    );

    n1.daemon.kill9().expect("kill -9");
    for method in ["GET", "PUT", "DELETE"] {
        let answer = send(a, method, &theirs, &[], "{}");
        seen.expect(DOCUMENT, method, 503, "owner_unavailable", answer);
    }
    seen.expect(DOCUMENT, "HEAD", 503, "", send(a, "HEAD", &theirs, &[], ""));
    // A method no node serves is refused where it lands, not forwarded to the owner.
    let post = send(a, "POST", &theirs, &[], "{}");
    seen.expect(DOCUMENT, "POST", 405, "method_not_allowed", post);
    seen.expect(
        LISTING,
        "GET",
        503,
        "node_unavailable",
        send(a, "GET", "/v1/c", &[], ""),
    );
    seen.expect(LISTING, "HEAD", 503, "", send(a, "HEAD", "/v1/c", &[], ""));

    let impostor = impostor(n1.http, 2);
    seen.expect(
        LISTING,
        "GET",
        502,
        "bad_peer_answer",
        send(a, "GET", "/v1/c", &[], ""),
    );
    seen.expect(LISTING, "HEAD", 502, "", send(a, "HEAD", "/v1/c", &[], ""));
    impostor.join().expect("the impostor answered");

    let _other = start_on_another_file(cluster, &layout, &n1);
    let not_ready = wait_until("n0 not ready", Duration::from_secs(15), || {
        let ready = http::get(a, "/readyz").ok()?;
        (ready.status == 503).then_some(ready)
    })
    .expect("n0 sees n1's other file");
    seen.expect("/readyz", "GET", 503, "", not_ready);
}

/// Answers `count` requests on `addr` with a `200` that is not a listing page.
fn impostor(addr: SocketAddr, count: usize) -> std::thread::JoinHandle<()> {
    let listener = TcpListener::bind(addr).expect("n1's port is free once it is killed");
    std::thread::spawn(move || {
        for _ in 0..count {
            let (mut stream, _) = listener.accept().expect("a connection");
            let mut request = [0; 4096];
            let _ = stream.read(&mut request).expect("a request");
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nnot a page",
                )
                .expect("answered");
        }
    })
}

/// Starts `n1` again, on a fresh store and a file that moves one of its partitions to `n0`;
/// waits until it serves (it is never ready: its peer disagrees).
fn start_on_another_file(
    cluster: &crate::Cluster,
    layout: &Layout,
    n1: &NodeProcess,
) -> NodeProcess {
    let mut members = layout.members().to_vec();
    let moved = members[1].owns.remove(0);
    members[0].owns.push(moved);
    let other = Layout::new(layout.partitions(), members).expect("a valid cluster");
    let file = cluster.dir("other").expect("dir").join("cluster.toml");
    std::fs::write(&file, other.to_toml()).expect("written");
    let data_dir = cluster.dir("n1-other").expect("dir").join("data");
    let (file, data) = (file.display().to_string(), data_dir.display().to_string());
    let (http_addr, grpc) = (n1.http.to_string(), n1.grpc.to_string());
    let args = [
        "node",
        "--data-dir",
        &data,
        "--cluster",
        &file,
        "--name",
        "n1",
        "--http",
        &http_addr,
        "--grpc",
        &grpc,
    ];
    let daemon = cluster.spawn("n1-other", args).expect("spawns");
    wait_until("n1 to serve", Duration::from_secs(30), || {
        http::get(n1.http, "/healthz")
            .ok()
            .filter(|r| r.status == 200)
    })
    .expect("n1 serves");
    NodeProcess {
        daemon,
        data_dir,
        http: n1.http,
        grpc: n1.grpc,
    }
}
