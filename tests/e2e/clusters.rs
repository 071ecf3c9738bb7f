//! `cutover node --cluster`: three real node processes sharing a cluster file. Any node
//! answers any request (forwarding to the owner), lists cover the cluster, a node down
//! makes only its partitions 503, a node with another file is refused with 421 and makes its
//! peers unready, bad files stop a node at start, and a Sink refuses a partition it does not
//! own.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use cutover_node::{cluster::Cluster as Layout, store::partition_of};
use cutover_proto::v1::{
    ApplyRequest, DescribeRequest, Document, FenceRequest, LagRequest, fence_request,
    node_admin_client::NodeAdminClient, sink_client::SinkClient, source_client::SourceClient,
};
use cutover_tests::harness::{Cluster, NodeProcess, http, wait_until};
use tonic::Code;

use crate::{cluster, runtime, send};

/// The nodes of one colour and the file they share.
struct Colour {
    file: PathBuf,
    layout: Layout,
    nodes: Vec<Option<NodeProcess>>,
}

impl Colour {
    fn node(&self, i: usize) -> &NodeProcess {
        self.nodes[i].as_ref().expect("the node is running")
    }

    /// The index of the node that owns `id`.
    fn owner_of(&self, id: &str) -> usize {
        let owner = self
            .layout
            .owner(partition_of(id, self.layout.partitions()))
            .expect("an owner");
        let names: Vec<&str> = self
            .layout
            .members()
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        names
            .iter()
            .position(|n| *n == owner.name)
            .expect("a member")
    }

    /// `count` ids owned by node `i`.
    fn ids_of(&self, i: usize, count: usize) -> Vec<String> {
        (0..)
            .map(|n| format!("doc-{n}"))
            .filter(|id| self.owner_of(id) == i)
            .take(count)
            .collect()
    }
}

/// Loopback addresses held all at once, so no two are the same, then released.
fn distinct_addrs(count: usize) -> Vec<SocketAddr> {
    let held: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter().map(|l| l.local_addr().expect("addr")).collect()
}

/// Writes a balanced file for `names` over `partitions` with `cutover cluster init`.
pub(crate) fn init_file(
    cluster: &Cluster,
    names: &[&str],
    partitions: u32,
) -> (PathBuf, Vec<SocketAddr>) {
    init_file_on(cluster, "127.0.0.1", names, partitions)
}

/// Like [`init_file`], the file naming every node's host `host` (its ports those of the
/// loopback addresses returned).
fn init_file_on(
    cluster: &Cluster,
    host: &str,
    names: &[&str],
    partitions: u32,
) -> (PathBuf, Vec<SocketAddr>) {
    let addrs = distinct_addrs(2 * names.len());
    let file = cluster.dir("colour").expect("dir").join("cluster.toml");
    let mut args = vec![
        "cluster".to_owned(),
        "init".to_owned(),
        "--partitions".to_owned(),
        partitions.to_string(),
        "--output".to_owned(),
        file.display().to_string(),
    ];
    for (i, name) in names.iter().enumerate() {
        let (http, grpc) = (addrs[2 * i].port(), addrs[2 * i + 1].port());
        args.push(format!("{name}={host}:{http},{host}:{grpc}"));
    }
    let init = cluster.run(&args).expect("runs");
    assert_eq!(init.code, Some(0), "{}", init.stderr);
    assert!(init.stdout.starts_with("wrote "), "{}", init.stdout);
    (file, addrs)
}

/// Starts node `name` of the colour's file `file` (its addresses from the file).
pub(crate) fn start(
    cluster: &Cluster,
    file: &std::path::Path,
    name: &str,
    http: SocketAddr,
    grpc: SocketAddr,
) -> NodeProcess {
    let file = file.display().to_string();
    cluster
        .start_node_on(
            name,
            cluster.dir(name).expect("dir").join("data"),
            http,
            grpc,
            &["--cluster", &file, "--name", name],
        )
        .expect("node starts")
}

/// Three nodes over 8 partitions, started from one file.
fn three(cluster: &Cluster) -> Colour {
    let names = ["n0", "n1", "n2"];
    let (file, addrs) = init_file(cluster, &names, 8);
    let layout = Layout::load(&file).expect("the file init wrote parses");
    let nodes = names
        .iter()
        .enumerate()
        .map(|(i, name)| Some(start(cluster, &file, name, addrs[2 * i], addrs[2 * i + 1])))
        .collect();
    Colour {
        file,
        layout,
        nodes,
    }
}

/// `GET path` from `addr`'s own store only: marked as forwarded within the cluster `hash`.
fn local_get(addr: SocketAddr, path: &str, hash: &str) -> http::HttpResponse {
    http::request(
        addr,
        "GET",
        path,
        &[
            ("cutover-cluster", hash),
            ("cutover-forwarded-by", "the-test"),
        ],
        b"",
    )
    .expect("answered")
}

fn error_of(response: &http::HttpResponse) -> (String, String) {
    let body = response.json().expect("errors are JSON");
    (
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn any_node_of_a_cluster_answers_every_document_request_from_its_owner() {
    let cluster = cluster();
    let colour = three(&cluster);
    let hash = colour.layout.hash().to_owned();
    let ids: Vec<String> = (0..3).flat_map(|i| colour.ids_of(i, 4)).collect();
    for (n, id) in ids.iter().enumerate() {
        // Through every node in turn: most land on a node that does not own them.
        let via = colour.node(n % 3).http;
        let created =
            http::put(via, &format!("/v1/c/{id}"), &format!(r#"{{"n":{n}}}"#)).expect("PUT");
        assert_eq!(
            created.status,
            201,
            "{id} via node {}: {}",
            n % 3,
            created.text()
        );
        assert_eq!(created.header("etag"), Some("\"1\""));
        assert_eq!(created.json().expect("JSON")["id"], id.as_str());
        // On its owner, and only there.
        let owner = colour.owner_of(id);
        for i in 0..3 {
            let local = local_get(colour.node(i).http, &format!("/v1/c/{id}"), &hash);
            if i == owner {
                assert_eq!(local.status, 200, "{id} on its owner n{i}");
            } else {
                assert_eq!(local.status, 421, "{id} is not on n{i}");
                let (code, detail) = error_of(&local);
                assert_eq!(code, "not_owner");
                assert!(
                    detail.contains(&format!("n{owner} does"))
                        && detail.contains(&format!("to n{i}")),
                    "{detail}"
                );
            }
        }
    }
    for i in 0..3 {
        let read = http::get(colour.node(i).http, &format!("/v1/c/{}", ids[0])).expect("GET");
        assert_eq!((read.status, read.text().as_str()), (200, r#"{"n":0}"#));
        assert_eq!(read.header("etag"), Some("\"1\""));
    }

    // If-Match across a forward: the owner checks it and its ETag comes back.
    let id = &colour.ids_of(2, 1)[0];
    let path = format!("/v1/c/{id}");
    let via = colour.node(0).http;
    let updated = send(via, "PUT", &path, &[("if-match", "\"1\"")], r#"{"v":2}"#);
    assert_eq!(
        (updated.status, updated.header("etag")),
        (200, Some("\"2\"")),
        "{}",
        updated.text()
    );
    let stale = send(via, "PUT", &path, &[("if-match", "\"1\"")], r#"{"v":3}"#);
    assert_eq!(stale.status, 412, "{}", stale.text());
    let deleted = send(
        colour.node(1).http,
        "DELETE",
        &path,
        &[("if-match", "\"2\"")],
        "",
    );
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(http::get(via, &path).expect("GET").status, 404);

    // Describe: each node its own share, the file's hash; together they hold every document.
    runtime().block_on(async {
        let mut live = 0;
        for (i, member) in colour.layout.members().iter().enumerate() {
            let mut source = SourceClient::connect(colour.node(i).grpc_url())
                .await
                .expect("connect");
            let about = source
                .describe(DescribeRequest {})
                .await
                .expect("describe")
                .into_inner();
            assert_eq!(about.partitions, member.owns, "{}", member.name);
            assert_eq!(about.cluster_hash, hash);
            live += about
                .collections
                .iter()
                .map(|c| c.live_documents)
                .sum::<u64>();
            let lag = source
                .lag(LagRequest {
                    since: 0,
                    partitions: vec![member.owns[0]],
                })
                .await
                .expect("lag")
                .into_inner();
            let all = source
                .lag(LagRequest {
                    since: 0,
                    partitions: vec![],
                })
                .await
                .expect("lag");
            assert!(lag.changed <= all.into_inner().changed);
        }
        assert_eq!(live, ids.len() as u64 - 1);
    });
    http::assert_metrics(
        via,
        &["cutover_node_forwarded_requests_total{outcome=\"answered\"}"],
    );
}

#[test]
fn a_cluster_list_is_complete_and_in_id_order_across_pages() {
    let cluster = cluster();
    let colour = three(&cluster);
    let mut ids: Vec<String> = (0..40).map(|n| format!("k{n:03}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let put = http::put(colour.node(n % 3).http, &format!("/v1/list/{id}"), "{}").expect("PUT");
        assert_eq!(put.status, 201);
    }
    assert!(
        (0..3).all(|i| ids.iter().any(|id| colour.owner_of(id) == i)),
        "every node holds some"
    );
    ids.sort();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = after
            .as_ref()
            .map_or(String::new(), |a| format!("&after={a}"));
        let page = http::get(
            colour.node(pages % 3).http,
            &format!("/v1/list?limit=7{query}"),
        )
        .expect("GET");
        assert_eq!(page.status, 200, "{}", page.text());
        let body = page.json().expect("JSON");
        let documents = body["documents"].as_array().expect("documents").clone();
        assert!(documents.len() <= 7);
        seen.extend(
            documents
                .iter()
                .map(|d| d["id"].as_str().expect("id").to_owned()),
        );
        assert_eq!(
            documents.first().map(|d| d["body"].clone()),
            Some(serde_json::json!({}))
        );
        pages += 1;
        match body["next"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), seen.last().map(String::as_str));
                after = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(seen, ids, "every document once, in id order");
    assert_eq!(pages, 6);
    // A forwarded listing is the node's own page only.
    let own = local_get(
        colour.node(0).http,
        "/v1/list?limit=1000",
        colour.layout.hash(),
    );
    let own = own.json().expect("JSON")["documents"]
        .as_array()
        .expect("documents")
        .len();
    assert_eq!(
        own,
        ids.iter().filter(|id| colour.owner_of(id) == 0).count()
    );
}

#[test]
fn a_node_down_makes_its_partitions_503_while_the_others_serve() {
    let cluster = cluster();
    let mut colour = three(&cluster);
    let theirs = colour.ids_of(2, 2);
    let ours = [colour.ids_of(0, 1), colour.ids_of(1, 1)].concat();
    for id in theirs.iter().chain(&ours) {
        assert_eq!(
            http::put(colour.node(0).http, &format!("/v1/c/{id}"), "{}")
                .expect("PUT")
                .status,
            201
        );
    }
    // A write forwarded to a fenced owner gets the owner's 503 as it is.
    runtime().block_on(async {
        let mut admin = NodeAdminClient::connect(colour.node(2).grpc_url())
            .await
            .expect("connect");
        admin
            .fence(FenceRequest {
                mode: Some(fence_request::Mode::LeaseMs(60_000)),
                reason: "test".to_owned(),
                epoch: 1,
            })
            .await
            .expect("fence");
    });
    let fenced =
        http::put(colour.node(0).http, &format!("/v1/c/{}", theirs[0]), "{}").expect("PUT");
    assert_eq!(
        (fenced.status, fenced.header("retry-after")),
        (503, Some("1"))
    );
    assert_eq!(error_of(&fenced).0, "fenced");

    let mut down = colour.nodes[2].take().expect("running");
    down.daemon.kill9().expect("kill -9");
    for via in 0..2 {
        let addr = colour.node(via).http;
        for id in &theirs {
            let refused = http::get(addr, &format!("/v1/c/{id}")).expect("GET");
            assert_eq!(refused.status, 503, "{}", refused.text());
            assert_eq!(refused.header("retry-after"), Some("1"));
            let (code, detail) = error_of(&refused);
            assert_eq!(code, "owner_unavailable");
            assert!(detail.contains(&format!("n2 ({})", down.http)), "{detail}");
        }
        for id in &ours {
            assert_eq!(
                http::get(addr, &format!("/v1/c/{id}")).expect("GET").status,
                200
            );
        }
        let list = http::get(addr, "/v1/c").expect("GET");
        assert_eq!(
            (list.status, list.header("retry-after")),
            (503, Some("1")),
            "{}",
            list.text()
        );
        assert!(error_of(&list).1.contains("n2"), "{}", list.text());
        assert_eq!(
            http::get(addr, "/readyz").expect("readyz").status,
            200,
            "a peer down is no disagreement"
        );
    }
    http::assert_metrics(
        colour.node(0).http,
        &["cutover_node_forwarded_requests_total{outcome=\"unreachable\"}"],
    );

    // Back on its data: everything answers again.
    let back = cluster
        .restart_node(
            "n2",
            down,
            &[
                "--cluster",
                &colour.file.display().to_string(),
                "--name",
                "n2",
            ],
        )
        .expect("restarts");
    colour.nodes[2] = Some(back);
    let read = http::get(colour.node(0).http, &format!("/v1/c/{}", theirs[1])).expect("GET");
    assert_eq!(read.status, 200, "{}", read.text());
    let list = http::get(colour.node(1).http, "/v1/c").expect("GET");
    assert_eq!(
        list.json().expect("JSON")["documents"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
}

#[test]
fn a_node_with_another_cluster_file_gets_421_and_its_peers_are_not_ready() {
    let cluster = cluster();
    let names = ["n0", "n1", "n2"];
    let (file, addrs) = init_file(&cluster, &names, 8);
    let layout = Layout::load(&file).expect("parses");
    // The same nodes, n2's share moved by one partition.
    let mut members = layout.members().to_vec();
    let moved = members[2].owns.remove(0);
    members[1].owns.push(moved);
    let other = Layout::new(8, members).expect("a valid cluster");
    let other_file = cluster.dir("other").expect("dir").join("cluster.toml");
    std::fs::write(&other_file, other.to_toml()).expect("write");
    let mut nodes: Vec<NodeProcess> = (0..2)
        .map(|i| start(&cluster, &file, names[i], addrs[2 * i], addrs[2 * i + 1]))
        .collect();
    // n2 is never ready (its peers disagree with it), so it is waited for on /healthz.
    let (http_addr, grpc) = (addrs[4], addrs[5]);
    let data_dir = cluster.dir("n2").expect("dir").join("data");
    let other_path = other_file.display().to_string();
    let args = [
        "node",
        "--data-dir",
        &data_dir.display().to_string(),
        "--cluster",
        &other_path,
        "--name",
        "n2",
    ];
    let daemon = cluster.spawn("n2", args).expect("spawns");
    wait_until("n2 to serve", Duration::from_secs(30), || {
        http::get(http_addr, "/healthz")
            .ok()
            .filter(|r| r.status == 200)
    })
    .expect("n2 serves");
    nodes.push(NodeProcess {
        daemon,
        data_dir,
        http: http_addr,
        grpc,
    });
    let colour = Colour {
        file,
        layout,
        nodes: nodes.into_iter().map(Some).collect(),
    };
    let id = colour
        .ids_of(2, 50)
        .into_iter()
        .find(|id| {
            other
                .owner(partition_of(id, 8))
                .is_some_and(|o| o.name == "n2")
        })
        .expect("an id both files give n2");
    let refused = http::put(colour.node(0).http, &format!("/v1/c/{id}"), "{}").expect("PUT");
    assert_eq!(refused.status, 421, "{}", refused.text());
    let (code, detail) = error_of(&refused);
    assert_eq!(code, "cluster_mismatch");
    assert!(
        detail.contains(colour.layout.hash()) && detail.contains(other.hash()),
        "{detail}"
    );
    assert!(
        detail.contains("n0 forwarded") && detail.contains("but n2"),
        "{detail}"
    );
    for i in 0..3 {
        let addr = colour.node(i).http;
        let ready = wait_until(&format!("n{i} not ready"), Duration::from_secs(10), || {
            let ready = http::get(addr, "/readyz").ok()?;
            (ready.status == 503).then_some(ready)
        })
        .expect("not ready");
        assert!(ready.text().contains("cluster hash"), "{}", ready.text());
        assert_eq!(ready.header("content-type"), Some("text/plain"));
    }
    http::assert_metrics(
        colour.node(0).http,
        &["cutover_node_cluster_peers_disagreeing 1"],
    );
}

#[test]
fn bad_cluster_files_stop_the_node_naming_the_line_and_partitions() {
    let cluster = cluster();
    let (file, _) = init_file(&cluster, &["n0", "n1"], 8);
    let good = std::fs::read_to_string(&file).expect("read");
    let data = cluster
        .dir("n")
        .expect("dir")
        .join("data")
        .display()
        .to_string();
    let node = |file: &std::path::Path, name: &str, extra: &[&str]| {
        let mut args = vec![
            "node",
            "--data-dir",
            &data,
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
        ];
        let file = file.display().to_string();
        args.extend(["--cluster", file.as_str(), "--name", name]);
        args.extend(extra);
        cluster.run(&args).expect("runs")
    };
    let cases = [
        (
            "gap",
            good.replace("owns = \"4-7\"", "owns = \"4-5\""),
            "partitions 6-7 have no owner",
        ),
        (
            "overlap",
            good.replace("owns = \"4-7\"", "owns = \"3-7\""),
            "line 16: partition 3 is owned by n0 (line 10) and n1",
        ),
        (
            "duplicate",
            good.replace("name = \"n1\"", "name = \"n0\""),
            "line 13: the name n0 is taken by another node (line 7)",
        ),
        (
            "range",
            good.replace("owns = \"4-7\"", "owns = \"7-4\""),
            "line 16: owns = \"7-4\" of n1",
        ),
    ];
    for (what, text, wanted) in cases {
        let path = cluster
            .dir("files")
            .expect("dir")
            .join(format!("{what}.toml"));
        std::fs::write(&path, text).expect("write");
        let refused = node(&path, "n0", &[]);
        assert_eq!(refused.code, Some(1), "{what}: {}", refused.stderr);
        assert!(
            refused.stderr.contains(wanted),
            "{what}: {}",
            refused.stderr
        );
        let checked = cluster
            .run(["cluster", "check", &path.display().to_string()])
            .expect("runs");
        assert_eq!(checked.code, Some(1), "{what}");
    }
    let unknown = node(&file, "n7", &[]);
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown
            .stderr
            .contains("no node is named \"n7\" (the file names n0, n1)"),
        "{}",
        unknown.stderr
    );
    let flag = node(&file, "n0", &["--partitions", "16"]);
    assert_eq!(flag.code, Some(1));
    assert!(
        flag.stderr
            .contains("--partitions 16 differs from partitions = 8"),
        "{}",
        flag.stderr
    );
    // A store made with 16 partitions cannot join a cluster of 8.
    let alone = cluster
        .start_node("n", &["--partitions", "16"])
        .expect("starts");
    let NodeProcess { mut daemon, .. } = alone;
    daemon.kill9().expect("kill");
    let store = node(&file, "n0", &[]);
    assert_eq!(store.code, Some(1));
    assert!(
        store.stderr.contains("partitions = 8 but the store at")
            && store.stderr.contains("created with 16"),
        "{}",
        store.stderr
    );
    let checked = cluster
        .run(["cluster", "check", &file.display().to_string()])
        .expect("runs");
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    assert!(
        checked.stdout.contains("2 nodes, 8 partitions") && checked.stdout.contains("owns 4-7 (4)"),
        "{}",
        checked.stdout
    );
    let usage = cluster
        .run(["cluster", "init", "n0=127.0.0.1:1"])
        .expect("runs");
    assert_eq!(usage.code, Some(2));
    assert!(
        usage.stderr.contains("NAME=HTTP_ADDR,GRPC_ADDR"),
        "{}",
        usage.stderr
    );
}

/// The first id `d0`, `d1`, … whose partition `layout` gives to node `name`.
pub(crate) fn first_id_owned_by(layout: &Layout, name: &str) -> String {
    (0..)
        .map(|n| format!("d{n}"))
        .find(|id| {
            layout
                .owner(partition_of(id, layout.partitions()))
                .is_some_and(|o| o.name == name)
        })
        .expect("an id")
}

#[test]
fn a_sink_refuses_a_document_of_a_partition_its_node_does_not_own() {
    let cluster = cluster();
    let (file, addrs) = init_file(&cluster, &["n0", "n1"], 8);
    let layout = Layout::load(&file).expect("parses");
    let node = start(&cluster, &file, "n0", addrs[0], addrs[1]);
    let owned_by = |name: &str| first_id_owned_by(&layout, name);
    let (mine, theirs) = (owned_by("n0"), owned_by("n1"));
    let doc = |id: &str| Document {
        collection: "c".to_owned(),
        id: id.to_owned(),
        version: 1,
        seq: 0,
        body: bytes::Bytes::from_static(b"{}"),
        tombstone: false,
    };
    let theirs_partition = partition_of(&theirs, 8);
    runtime().block_on(async {
        let mut sink = SinkClient::connect(node.grpc_url()).await.expect("connect");
        // A fresh store ingests (the refused batch alone, then after a good one); once it
        // holds a document, it applies. Every path refuses the same way.
        for (stream, batches) in [
            vec![vec![doc(&mine), doc(&theirs)]],
            vec![vec![doc(&mine)], vec![doc(&theirs)]],
            vec![vec![doc(&theirs)]],
        ]
        .into_iter()
        .enumerate()
        {
            let n = batches.len();
            let requests: Vec<ApplyRequest> = batches
                .into_iter()
                .enumerate()
                .map(|(b, documents)| ApplyRequest {
                    batch_id: b as u64 + 1,
                    documents,
                })
                .collect();
            let mut acks = sink
                .apply(tokio_stream::iter(requests))
                .await
                .expect("apply")
                .into_inner();
            for _ in 1..n {
                acks.message()
                    .await
                    .expect("the good batch is acked")
                    .expect("an ack");
            }
            let refused = acks.message().await.expect_err("refused");
            assert_eq!(
                refused.code(),
                Code::FailedPrecondition,
                "stream {stream}: {refused}"
            );
            let wanted = format!(
                "c/{theirs} is in partition {theirs_partition}, which this node does not own"
            );
            assert!(
                refused.message().contains(&wanted),
                "stream {stream}: {}",
                refused.message()
            );
        }
        let mut source = SourceClient::connect(node.grpc_url())
            .await
            .expect("connect");
        let about = source
            .describe(DescribeRequest {})
            .await
            .expect("describe")
            .into_inner();
        let live: u64 = about.collections.iter().map(|c| c.live_documents).sum();
        assert_eq!(live, 1, "only the second stream's first batch");
    });
}

/// Starts node `name` of `file` with no --http or --grpc: it listens where its own entry
/// says (`http`, the loopback address of the entry's port, is where it is waited for).
fn start_as_the_file_says(
    cluster: &Cluster,
    file: &std::path::Path,
    name: &str,
    http: SocketAddr,
    grpc: SocketAddr,
) -> NodeProcess {
    let data_dir = cluster.dir(name).expect("dir").join("data");
    let args = [
        "node",
        "--data-dir",
        &data_dir.display().to_string(),
        "--cluster",
        &file.display().to_string(),
        "--name",
        name,
    ]
    .map(str::to_owned);
    let daemon = cluster
        .spawn_ready(name, args, http, Duration::from_secs(30))
        .expect("node starts");
    NodeProcess {
        daemon,
        data_dir,
        http,
        grpc,
    }
}

#[test]
fn nodes_named_by_dns_listen_on_every_interface_and_forward_to_each_other() {
    let cluster = cluster();
    let names = ["n0", "n1", "n2"];
    let (file, addrs) = init_file_on(&cluster, "localhost", &names, 8);
    let layout = Layout::load(&file).expect("the file init wrote parses");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(
        text.contains(&format!("http = \"localhost:{}\"", addrs[0].port())),
        "{text}"
    );
    assert_eq!(layout.members()[2].grpc.dns_name(), Some("localhost"));
    let nodes = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Some(start_as_the_file_says(
                &cluster,
                &file,
                name,
                addrs[2 * i],
                addrs[2 * i + 1],
            ))
        })
        .collect();
    let colour = Colour {
        file,
        layout,
        nodes,
    };
    let logs = colour.node(1).daemon.stderr().expect("logs");
    assert!(
        logs.contains("names a host, not an IP: listening on every IPv4 interface")
            && logs.contains(&format!("0.0.0.0:{}", addrs[2].port())),
        "{logs}"
    );

    // Written through n0, read through n1: most of them owned by neither.
    let ids: Vec<String> = (0..3).flat_map(|i| colour.ids_of(i, 3)).collect();
    for (n, id) in ids.iter().enumerate() {
        let put = http::put(
            colour.node(0).http,
            &format!("/v1/c/{id}"),
            &format!("{{\"n\":{n}}}"),
        )
        .expect("PUT");
        assert_eq!(put.status, 201, "{id}: {}", put.text());
    }
    let theirs = &colour.ids_of(2, 1)[0];
    let read = http::get(colour.node(1).http, &format!("/v1/c/{theirs}")).expect("GET");
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.header("etag"), Some("\"1\""));
    let on_owner = local_get(
        colour.node(2).http,
        &format!("/v1/c/{theirs}"),
        colour.layout.hash(),
    );
    assert_eq!(on_owner.body, read.body, "the owner's document");

    // A list through any node merges all three.
    let list = http::get(colour.node(1).http, "/v1/c?limit=100").expect("GET");
    assert_eq!(list.status, 200, "{}", list.text());
    let listed: Vec<String> = list.json().expect("JSON")["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect();
    let mut wanted = ids.clone();
    wanted.sort();
    assert_eq!(listed, wanted);
    http::assert_metrics(
        colour.node(1).http,
        &["cutover_node_forwarded_requests_total{outcome=\"answered\"}"],
    );
    // Its Describe loop reaches both peers at their names (over gRPC) and hears the same file.
    let node = colour.node(0);
    wait_until("n0 to hear n1 and n2", Duration::from_secs(10), || {
        let logs = node.daemon.stderr().ok()?;
        (logs.matches("peer agrees on the cluster file").count() == 2).then_some(())
    })
    .expect("both peers agree");
}

#[test]
fn a_peer_whose_name_does_not_resolve_is_a_peer_down() {
    let cluster = cluster();
    let addrs = distinct_addrs(2);
    let text = format!(
        "partitions = 8\n\n[[node]]\nname = \"n0\"\nhttp = \"{}\"\ngrpc = \"{}\"\nowns = \"0-3\"\n\n\
         [[node]]\nname = \"n1\"\nhttp = \"no-such-host.invalid:7070\"\n\
         grpc = \"no-such-host.invalid:7071\"\nowns = \"4-7\"\n",
        addrs[0], addrs[1]
    );
    let file = cluster.dir("colour").expect("dir").join("cluster.toml");
    std::fs::write(&file, text).expect("write");
    let layout = Layout::load(&file).expect("parses");
    let node = start(&cluster, &file, "n0", addrs[0], addrs[1]);
    let owned_by = |name: &str| first_id_owned_by(&layout, name);
    let (mine, theirs) = (owned_by("n0"), owned_by("n1"));

    for method in ["GET", "PUT"] {
        let refused = send(node.http, method, &format!("/v1/c/{theirs}"), &[], "{}");
        assert_eq!(refused.status, 503, "{method}: {}", refused.text());
        assert_eq!(refused.header("retry-after"), Some("1"));
        let (code, detail) = error_of(&refused);
        assert_eq!(code, "owner_unavailable");
        assert!(
            detail.contains("owned by n1; n1 (no-such-host.invalid:7070) cannot be reached: "),
            "{detail}"
        );
    }
    let list = http::get(node.http, "/v1/c").expect("GET");
    assert_eq!(list.status, 503, "{}", list.text());
    let (code, detail) = error_of(&list);
    assert_eq!(code, "node_unavailable");
    assert!(
        detail.contains("n1 (no-such-host.invalid:7070)"),
        "{detail}"
    );
    // Its own partitions are served, and the peer it cannot find does not make it unready.
    let put = http::put(node.http, &format!("/v1/c/{mine}"), "{}").expect("PUT");
    assert_eq!(put.status, 201, "{}", put.text());
    let logs = wait_until("n0 to ask n1", Duration::from_secs(10), || {
        let logs = node.daemon.stderr().ok()?;
        logs.contains("peer does not answer Describe")
            .then_some(logs)
    })
    .expect("the Describe loop tried n1");
    assert!(logs.contains("n1"), "{logs}");
    assert_eq!(http::get(node.http, "/readyz").expect("readyz").status, 200);
    http::assert_metrics(
        node.http,
        &["cutover_node_forwarded_requests_total{outcome=\"unreachable\"}"],
    );
}
