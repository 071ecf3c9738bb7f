//! Upgrades that resize a cluster: N blue nodes to M green ones, each colour a cluster of
//! real `cutover node` processes sharing a cluster file, two real proxies round-robin over
//! each colour's nodes, a real orchestrator, and a client load through both proxies that
//! records every acknowledged write. Checked: no client error, no lost acknowledged write on
//! either side, an `ETag` from blue honoured by green, a pipeline per pair of nodes that
//! share partitions, a blue node killed while the copy runs, an orchestrator killed after the
//! fence, and topologies that cannot work refused by name.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use cutover_node::{cluster::Cluster as ClusterFile, store::partition_of};
use cutover_orchestrator::demo::{
    load::{self, COLLECTION, Ledger, LoadConfig},
    rig::{FORWARD, REVERSE},
};
use cutover_proto::v1::Document;
use cutover_tests::harness::{
    Cluster, NodeProcess, OrchestratorProcess, ProxyProcess, http, wait_until,
};
use serde_json::Value;

use crate::{
    apply, cluster,
    cutover::{Background, blue_etag_honoured_on_green, killed_by_itself, lost, settle},
};

/// Partitions of both colours.
const PARTITIONS: u32 = 16;
/// Documents blue starts with.
const DOCS: u64 = 5_000;
/// A document outside the load's keys, for the `ETag` check.
const PROBE: &str = "probe";

/// One colour: its nodes and the cluster file they run with.
struct Colour {
    nodes: Vec<NodeProcess>,
    file: ClusterFile,
    path: PathBuf,
}

impl Colour {
    /// Starts `count` nodes named `name-1`… with a balanced cluster file.
    fn start(harness: &Cluster, name: &str, count: usize) -> Self {
        let addrs: Vec<(String, SocketAddr, SocketAddr)> = (1..=count)
            .map(|i| {
                let http = harness.free_addr().expect("a port");
                let grpc = harness.free_addr().expect("a port");
                (format!("{name}-{i}"), http, grpc)
            })
            .collect();
        let file = ClusterFile::balanced(PARTITIONS, addrs.clone()).expect("a balanced cluster");
        let path = harness
            .dir("clusters")
            .expect("a folder")
            .join(format!("{name}.toml"));
        std::fs::write(&path, file.to_toml()).expect("cluster file written");
        let nodes = addrs
            .iter()
            .map(|(name, http, grpc)| start_member(harness, &path, name, *http, *grpc))
            .collect();
        Self { nodes, file, path }
    }

    /// The index of the node that owns `id`.
    fn owner_of(&self, id: &str) -> usize {
        let name = &self
            .file
            .owner(partition_of(id, PARTITIONS))
            .expect("every partition has an owner")
            .name;
        self.file
            .members()
            .iter()
            .position(|m| &m.name == name)
            .expect("a member")
    }

    fn backends(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.http))
            .collect()
    }

    fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("\"{}\"", n.grpc_url()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn start_member(
    harness: &Cluster,
    file: &std::path::Path,
    name: &str,
    http: SocketAddr,
    grpc: SocketAddr,
) -> NodeProcess {
    let data_dir = harness.dir(name).expect("a folder").join("data");
    let file = file.display().to_string();
    harness
        .start_node_on(
            name,
            data_dir,
            http,
            grpc,
            &[
                "--cluster",
                &file,
                "--name",
                name,
                "--partitions",
                &PARTITIONS.to_string(),
            ],
        )
        .expect("a cluster node starts")
}

/// Two clusters, two proxies in front of them and a plan naming every node.
struct Resize {
    harness: Cluster,
    blue: Colour,
    green: Colour,
    proxies: Vec<ProxyProcess>,
    plan: String,
}

impl Resize {
    fn start(blue: usize, green: usize, settings: &str) -> Self {
        let programs = format!("forward = '{FORWARD}'\nreverse = '{REVERSE}'\n");
        Self::start_with(blue, green, settings, &programs)
    }

    /// Clusters of `blue` and `green` nodes and a plan with `settings` and `programs` (the
    /// fields of `[collections.users]`).
    fn start_with(blue: usize, green: usize, settings: &str, programs: &str) -> Self {
        let harness = cluster();
        let blue = Colour::start(&harness, "blue", blue);
        let green = Colour::start(&harness, "green", green);
        let proxies: Vec<ProxyProcess> = ["proxy-1", "proxy-2"]
            .iter()
            .map(|name| {
                harness
                    .start_proxy(
                        name,
                        &blue.backends(),
                        &green.backends(),
                        &["--upstream-protocol", "h2c"],
                    )
                    .expect("proxy starts")
            })
            .collect();
        preload(&blue);
        let controls: Vec<String> = proxies
            .iter()
            .map(|p| format!("\"{}\"", p.admin_url()))
            .collect();
        let text = format!(
            "{settings}[blue]\nsources = [{}]\n[green]\nsinks = [{}]\n[proxies]\ncontrol = [{}]\n\
             [collections.{COLLECTION}]\n{programs}",
            blue.endpoints(),
            green.endpoints(),
            controls.join(", "),
        );
        let path = harness.dir("plans").expect("plans").join("plan.toml");
        std::fs::write(&path, text).expect("plan written");
        Self {
            harness,
            blue,
            green,
            proxies,
            plan: path.display().to_string(),
        }
    }

    fn load_config(&self) -> LoadConfig {
        LoadConfig {
            targets: self.proxies.iter().map(|p| p.listen).collect(),
            rate: 400,
            keys: DOCS,
            workers: 8,
        }
    }

    fn orchestrator(&self, flags: &[&str]) -> OrchestratorProcess {
        self.harness
            .start_orchestrator_with("orchestrator", flags)
            .expect("the orchestrator starts")
    }

    fn upgrade(&self, orchestrator: &OrchestratorProcess, args: &[&str]) -> (i32, Value) {
        crate::upgrade(&self.harness, orchestrator, args)
    }

    fn start_upgrade(&self, orchestrator: &OrchestratorProcess) {
        let (code, started) = self.upgrade(orchestrator, &["start", "--plan", &self.plan]);
        assert_eq!(code, 0, "start: {started}");
    }

    fn wait_phase(&self, orchestrator: &OrchestratorProcess, wanted: &str) -> Value {
        crate::wait_phase(&self.harness, orchestrator, &[wanted])
    }

    fn assert_routes(&self, colour: &str) {
        for proxy in &self.proxies {
            let route = http::get(proxy.admin, "/route")
                .expect("route")
                .json()
                .expect("json");
            assert_eq!(route["active"], colour, "{route}");
        }
    }
}

/// Loads blue with the demo's documents and the probe, each through its owner's `Sink`
/// (version 1): a node refuses a document of a partition it does not own.
fn preload(blue: &Colour) {
    let document = |id: String, n| Document {
        collection: COLLECTION.into(),
        id,
        version: 1,
        seq: 0,
        body: load::body(n).into(),
        tombstone: false,
    };
    let mut shares: Vec<Vec<Document>> = vec![Vec::new(); blue.nodes.len()];
    let ids = (0..DOCS)
        .map(|n| (load::id(n), n))
        .chain([(PROBE.to_owned(), DOCS)]);
    for (id, n) in ids {
        shares[blue.owner_of(&id)].push(document(id, n));
    }
    for (node, share) in blue.nodes.iter().zip(shares) {
        apply(node, None, share);
    }
}

/// Stops the load and asserts it saw no error (unless `errors_allowed`) and that `colour`
/// holds every acknowledged write; returns the ledger to go on from.
fn nothing_lost(background: Background, colour: &Colour, errors_allowed: bool) -> Ledger {
    settle(Duration::from_millis(500));
    let seen = background.stop();
    if !errors_allowed {
        assert_eq!(seen.errors, 0, "client errors: {:?}", seen.error_samples);
    }
    let ledger = seen.ledger;
    assert!(ledger.known() > 10, "the load wrote: {}", ledger.known());
    // Read from the colour's first node, which forwards to each owner.
    let missing = lost(&ledger, &colour.nodes[0]);
    assert!(
        missing.is_empty(),
        "lost: {:?}",
        &missing[..missing.len().min(5)]
    );
    ledger
}

/// Each green node holds exactly the documents of the partitions it owns.
fn placed_by_owner(green: &Colour) {
    for (i, node) in green.nodes.iter().enumerate() {
        let owns = green.file.owned_by(&green.file.members()[i].name);
        let digest = crate::digest(node);
        for partition in digest.partitions {
            if !owns.contains(&partition.partition) {
                assert_eq!(
                    partition.live_documents,
                    0,
                    "{} holds documents of partition {} it does not own",
                    green.file.members()[i].name,
                    partition.partition
                );
            }
        }
    }
}

/// N → M and back, under live writes through both proxies.
fn resize_and_back(blue: usize, green: usize) {
    let stack = Resize::start(blue, green, "");
    let orchestrator = stack.orchestrator(&[]);
    let probe_path = format!("/v1/{COLLECTION}/{PROBE}");
    let probe = http::get(stack.proxies[0].listen, &probe_path).expect("probe read");
    let blue_etag = probe.header("etag").expect("an etag").to_owned();
    let config = stack.load_config();
    let background = Background::start(&config, Ledger::default());
    settle(Duration::from_secs(1));

    stack.start_upgrade(&orchestrator);
    let status = stack.wait_phase(&orchestrator, "reverse_sync");
    stack.assert_routes("green");
    let pipelines = status["pipelines"].as_array().expect("pipelines");
    // Balanced contiguous ranges: N + M - 1 pipelines at most, one per pair sharing partitions.
    assert!(
        (blue.max(green)..blue + green).contains(&pipelines.len()),
        "{blue} → {green}: {} pipelines: {status}",
        pipelines.len()
    );
    assert!(
        pipelines.iter().all(|p| p["run_by_sink"] == true),
        "every pipeline runs inside its green node: {status}"
    );
    http::assert_metrics(
        orchestrator.http,
        &[
            "cutover_orchestrator_cutover_attempts_total{direction=\"forward\",outcome=\"switched\"} 1",
            "cutover_orchestrator_pipeline_watermark{",
        ],
    );
    let ledger = nothing_lost(background, &stack.green, false);
    placed_by_owner(&stack.green);

    // The ETag read from blue before the upgrade is honoured by green, whichever node the
    // request lands on.
    blue_etag_honoured_on_green(stack.proxies[1].listen, &probe_path, &blue_etag);

    let background = Background::start(&config, ledger);
    settle(Duration::from_secs(1));
    let (code, answer) = stack.upgrade(&orchestrator, &["rollback"]);
    assert_eq!(code, 0, "rollback: {answer}");
    stack.wait_phase(&orchestrator, "rolled_back");
    stack.assert_routes("blue");
    nothing_lost(background, &stack.blue, false);
}

#[test]
fn three_blue_nodes_become_two_green_ones_and_back_under_live_writes() {
    resize_and_back(3, 2);
}

#[test]
fn two_blue_nodes_become_three_green_ones_and_back_under_live_writes() {
    resize_and_back(2, 3);
}

#[test]
fn a_blue_node_killed_while_the_copy_runs_fails_only_its_partitions_and_the_upgrade_completes() {
    let mut stack = Resize::start(3, 2, "postpone = true\n");
    let orchestrator = stack.orchestrator(&[]);
    let background = Background::start(&stack.load_config(), Ledger::default());
    stack.start_upgrade(&orchestrator);
    stack.wait_phase(&orchestrator, "postponed");

    // Blue-2 dies while delta cycles run every second.
    let victim = stack.blue.nodes.remove(1);
    let mut daemon_holder = victim;
    daemon_holder.daemon.kill9().expect("kill -9");
    let (down_http, down_grpc) = (daemon_holder.http, daemon_holder.grpc);
    // Its pipelines wait on it; the status says which node.
    let status = wait_until(
        "a pipeline waits on blue-2",
        Duration::from_secs(30),
        || {
            let (_, status) = stack.upgrade(&orchestrator, &["status"]);
            let waits = status["pipelines"].as_array()?.iter().any(|p| {
                p["state"] == "waiting"
                    && p["waiting_on"]
                        .as_str()
                        .is_some_and(|w| w.contains(&down_grpc.to_string()))
            });
            waits.then_some(status)
        },
    )
    .expect("the status names the lost node");
    assert_eq!(status["phase"], "postponed", "{status}");
    // Every request for its partitions is 503 with Retry-After; every other one succeeds.
    let survivor = stack.blue.nodes[0].http;
    let (mut refused, mut served) = (0, 0);
    for n in 0..200 {
        let id = load::id(n);
        let response = http::get(survivor, &format!("/v1/{COLLECTION}/{id}")).expect("answers");
        if stack
            .blue
            .file
            .owner(partition_of(&id, PARTITIONS))
            .map(|m| m.http.ip())
            == Some(Some(down_http))
        {
            assert_eq!(response.status, 503, "{id}: {}", response.text());
            assert!(response.header("retry-after").is_some(), "{id}");
            refused += 1;
        } else {
            // Found, or deleted by the load: answered either way.
            assert!(
                response.status == 200 || response.status == 404,
                "{id}: {} {}",
                response.status,
                response.text()
            );
            served += 1;
        }
    }
    assert!(
        refused > 0 && served > 0,
        "{refused} refused, {served} served"
    );

    // Back on the same data: the pipelines catch up from their watermarks.
    let back = start_member(
        &stack.harness,
        &stack.blue.path,
        "blue-2",
        down_http,
        down_grpc,
    );
    stack.blue.nodes.insert(1, back);
    wait_until("no pipeline waits", Duration::from_secs(30), || {
        let (_, status) = stack.upgrade(&orchestrator, &["status"]);
        let pipelines = status["pipelines"].as_array()?.clone();
        pipelines
            .iter()
            .all(|p| p["state"] != "waiting")
            .then_some(())
    })
    .expect("the pipelines resume");
    let (code, answer) = stack.upgrade(&orchestrator, &["proceed"]);
    assert_eq!(code, 0, "proceed: {answer}");
    stack.wait_phase(&orchestrator, "reverse_sync");
    stack.assert_routes("green");
    // Requests that met the dead node through a proxy may have failed; none was lost.
    nothing_lost(background, &stack.green, true);
}

#[test]
fn an_orchestrator_killed_after_the_fence_of_a_two_to_three_cutover_finishes_after_a_restart() {
    let stack = Resize::start(2, 3, "");
    let orchestrator = stack.orchestrator(&["--fault-point", "fenced"]);
    let background = Background::start(&stack.load_config(), Ledger::default());
    stack.start_upgrade(&orchestrator);
    let orchestrator = killed_by_itself(orchestrator, "fenced");
    let orchestrator = stack
        .harness
        .restart_orchestrator("orchestrator", orchestrator)
        .expect("restarts");
    stack.wait_phase(&orchestrator, "reverse_sync");
    stack.assert_routes("green");
    nothing_lost(background, &stack.green, true);
    placed_by_owner(&stack.green);
}

#[test]
fn a_plan_missing_a_node_of_a_cluster_is_refused_naming_the_partitions() {
    let stack = Resize::start(3, 2, "");
    // The plan without blue-3: its partitions have no owner among the sources.
    let text = std::fs::read_to_string(&stack.plan).expect("plan");
    let third = format!(", \"{}\"", stack.blue.nodes[2].grpc_url());
    std::fs::write(&stack.plan, text.replace(&third, "")).expect("plan written");
    let orchestrator = stack.orchestrator(&[]);
    let (code, answer) = stack.upgrade(&orchestrator, &["start", "--plan", &stack.plan]);
    let status = if code == 0 {
        stack.wait_phase(&orchestrator, "failed")
    } else {
        answer
    };
    let owned = stack.blue.file.owned_by("blue-3");
    let (first, last) = (owned[0], owned[owned.len() - 1]);
    let text = status.to_string();
    assert!(
        text.contains(&format!(
            "blue: partitions {first}-{last} have no owner among blue.sources"
        )),
        "{text}"
    );
    stack.assert_routes("blue");
}

#[test]
fn a_resize_with_a_rename_drops_and_dead_letters_rehearses_then_aborts_with_blue_serving() {
    // User 0 fails to transform (a dead letter), every Grace Hopper is dropped, the rest
    // loses a field and moves to `people`.
    let program = r#"if .email == "user0@example.com" then error("no user 0") elif .name == "Grace Hopper" then empty else del(.plan) end"#;
    let stack = Resize::start_with(
        2,
        3,
        "allowed_transform_failures = 1000\n",
        &format!("forward = '{program}'\nrename = \"people\"\n"),
    );
    let orchestrator = stack.orchestrator(&[]);
    let (code, started) = stack.upgrade(
        &orchestrator,
        &["start", "--plan", &stack.plan, "--rehearse"],
    );
    assert_eq!(code, 0, "start: {started}");
    // A rehearsal ends ready for the real cutover, blue serving.
    let status = crate::wait_rehearsal(&stack.harness, &orchestrator);
    assert_eq!(status["phase"], "ready_for_cutover", "{status}");
    assert_eq!(
        status["dead_letter_total"], 1,
        "user 0 is a dead letter: {status}"
    );
    let grace = (0..=DOCS)
        .filter(|n| {
            let body: Value = serde_json::from_slice(&load::body(*n)).expect("json");
            body["name"] == "Grace Hopper"
        })
        .count() as u64;
    let kept = DOCS + 1 - 1 - grace;
    let detail = status["phase_detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("verified {kept} documents in 15 partitions")),
        "every partition but the dead letter's is verified, owner against owner: {detail}"
    );
    stack.assert_routes("blue");
    // Green holds the rest, renamed, each document on the node that owns it.
    placed_by_owner(&stack.green);
    let listed = http::get(stack.green.nodes[0].http, "/v1/people?limit=10").expect("list");
    assert_eq!(listed.status, 200, "a list across green: {}", listed.text());
    let people: u64 = stack
        .green
        .nodes
        .iter()
        .map(|n| {
            let digest = crate::digest(n);
            digest
                .partitions
                .iter()
                .map(|p| p.live_documents)
                .sum::<u64>()
        })
        .sum();
    assert_eq!(people, kept, "green's documents");
    let sample = http::get(
        stack.green.nodes[0].http,
        &format!("/v1/people/{}", load::id(2)),
    )
    .expect("read")
    .json()
    .expect("json");
    assert!(
        sample.get("plan").is_none() && sample["name"].is_string(),
        "{sample}"
    );

    let (code, answer) = stack.upgrade(&orchestrator, &["abort", "--reason", "rehearsed"]);
    assert_eq!(code, 0, "abort: {answer}");
    stack.wait_phase(&orchestrator, "aborted");
    stack.assert_routes("blue");
    let written = http::put(
        stack.proxies[0].listen,
        &format!("/v1/{COLLECTION}/after-abort"),
        r#"{"name":"x y"}"#,
    )
    .expect("a write");
    assert!(
        written.status < 300,
        "blue takes writes again: {}",
        written.text()
    );
}

#[test]
fn a_node_that_stays_down_past_the_deadline_makes_the_upgrade_give_up_with_blue_serving() {
    // A budget no cycle can meet keeps the copy cycling until the deadline.
    let mut stack = Resize::start(2, 2, "deadline = \"6s\"\npause_budget = \"1ms\"\n");
    let orchestrator = stack.orchestrator(&[]);
    stack.start_upgrade(&orchestrator);
    stack.wait_phase(&orchestrator, "cycling");
    let mut victim = stack.blue.nodes.remove(1);
    victim.daemon.kill9().expect("kill -9");
    let status = stack.wait_phase(&orchestrator, "aborted");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("past the plan's deadline of 6s while pipeline")
            && error.contains(&victim.grpc.to_string())
            && error.contains("blue was not changed"),
        "the reason names the deadline and the node: {status}"
    );
    stack.assert_routes("blue");
    let written = http::put(
        stack.blue.nodes[0].http,
        &format!("/v1/{COLLECTION}/{}", load::id(0)),
        r#"{"name":"x y"}"#,
    )
    .expect("a write");
    // Blue-1 serves; the id may belong to blue-2, which is down (503), never fenced.
    assert!(
        written.status < 300 || written.text().contains("owner_unavailable"),
        "blue takes writes: {} {}",
        written.status,
        written.text()
    );
}
