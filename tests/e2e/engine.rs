//! The migration engine end to end: real nodes, a real orchestrator process, the real CLI.
//! Cycles under a live write load end with green equal to transform(blue); a `kill -9` of
//! the orchestrator in the middle of cycle 1 loses and reorders nothing; a bad plan and a
//! failing transform give errors that say what is wrong.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use cutover_node::store::digest::{partition_of, term};
use cutover_proto::v1::{Document, PullRequest, pull_response, source_client::SourceClient};
use cutover_tests::harness::{Cluster, NodeProcess, OrchestratorProcess, http, wait_until};
use serde_json::{Value, json};

use crate::{apply, cluster, runtime, upgrade, wait_phase, write_plan};

/// Loads `count` documents `{"name": "user i", "n": i, ...}` into `collection` of a node
/// through its `Sink`.
fn load(node: &NodeProcess, collection: &str, count: u64, extra: impl Fn(u64) -> Value) {
    let documents = (0..count)
        .map(|i| {
            let mut body = json!({"name": format!("user {i}"), "n": i});
            if let (Some(map), Value::Object(more)) = (body.as_object_mut(), extra(i)) {
                map.extend(more);
            }
            Document {
                collection: collection.into(),
                id: format!("{collection}-{i:06}"),
                version: 1,
                seq: 0,
                body: body.to_string().into(),
                tombstone: false,
            }
        })
        .collect();
    apply(node, None, documents);
}

/// Every document of a node, tombstones included, by (collection, id).
fn documents(node: &NodeProcess) -> BTreeMap<(String, String), Document> {
    runtime().block_on(async {
        let mut source = SourceClient::connect(node.grpc_url())
            .await
            .expect("source")
            .max_decoding_message_size(64 << 20);
        let mut stream = source
            .pull(PullRequest::default())
            .await
            .expect("pull")
            .into_inner();
        let mut all = BTreeMap::new();
        while let Some(message) = stream.message().await.expect("pull stream") {
            if let Some(pull_response::Kind::Batch(batch)) = message.kind {
                for doc in batch.documents {
                    all.insert((doc.collection.clone(), doc.id.clone()), doc);
                }
            }
        }
        all
    })
}

/// Per-partition `(count, digest)` of a node.
fn digests(node: &NodeProcess) -> Vec<(u64, u64)> {
    crate::digest(node)
        .partitions
        .iter()
        .map(|p| (p.live_documents, p.digest))
        .collect()
}

/// Writes `plan.toml` copying from `blue` to `green`: `settings` (top-level fields) before
/// the node tables, `collections` after them.
fn plan(
    cluster: &Cluster,
    blue: &NodeProcess,
    green: &NodeProcess,
    settings: &str,
    collections: &str,
) -> String {
    let text = format!(
        "{settings}[blue]\nsources = [\"{}\"]\n[green]\nsinks = [\"{}\"]\n{collections}",
        blue.grpc_url(),
        green.grpc_url()
    );
    write_plan(cluster, "plan.toml", &text)
}

fn phase(cluster: &Cluster, orchestrator: &OrchestratorProcess) -> (String, Value) {
    let (code, status) = upgrade(cluster, orchestrator, &["status"]);
    assert_eq!(code, 0, "status answers: {status}");
    let phase = status["phase"].as_str().unwrap_or_default().to_owned();
    (phase, status)
}

/// What the plan of `cycles_under_live_writes_…` makes of a blue document.
fn expected_green(doc: &Document) -> Option<(String, Value)> {
    if doc.tombstone {
        return None;
    }
    let mut body: Value = serde_json::from_slice(&doc.body).expect("blue bodies are JSON");
    match doc.collection.as_str() {
        "users" => {
            body["schema"] = json!(2);
            Some(("users".into(), body))
        }
        "orders" => Some(("purchases".into(), body)),
        "tmp" if body["keep"] == json!(true) => Some(("tmp".into(), body)),
        "tmp" => None,
        other => panic!("unexpected collection {other}"),
    }
}

type Bodies = BTreeMap<(String, String), (u64, Value)>;

/// transform(blue): the live documents green must hold, at blue's versions.
fn expected_green_of(blue: &NodeProcess) -> Bodies {
    documents(blue)
        .values()
        .filter_map(|doc| {
            expected_green(doc)
                .map(|(collection, body)| ((collection, doc.id.clone()), (doc.version, body)))
        })
        .collect()
}

/// Green's live documents.
fn live_bodies(green: &NodeProcess) -> Bodies {
    documents(green)
        .into_iter()
        .filter(|(_, d)| !d.tombstone)
        .map(|(k, d)| {
            let body: Value = serde_json::from_slice(&d.body).expect("green bodies are JSON");
            (k, (d.version, body))
        })
        .collect()
}

#[test]
fn cycles_under_live_writes_end_with_green_equal_to_the_transform_of_blue() {
    let cluster = cluster();
    let blue = cluster.start_node("blue", &[]).expect("blue starts");
    let green = cluster.start_node("green", &[]).expect("green starts");
    load(&blue, "users", 20_000, |_| json!({}));
    load(&blue, "orders", 3_000, |_| json!({}));
    load(&blue, "tmp", 1_000, |i| json!({"keep": i % 2 == 0}));
    let orchestrator = cluster.start_orchestrator("orchestrator").expect("starts");
    let plan = plan(
        &cluster,
        &blue,
        &green,
        "postpone = true\nbatch_documents = 500\n",
        "[collections.users]\nforward = '.schema = 2'\n\
         [collections.orders]\nrename = \"purchases\"\n\
         [collections.tmp]\nforward = 'select(.keep)'\n",
    );

    // A client updates, deletes and re-creates documents on blue for the whole copy.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let addr = blue.http;
        std::thread::spawn(move || {
            let mut writes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let i = writes % 5_000;
                let path = format!("/v1/users/users-{i:06}");
                let response = match writes % 4 {
                    0 | 1 => http::put(addr, &path, &format!(r#"{{"name":"w{writes}","n":{i}}}"#)),
                    2 => http::request(addr, "DELETE", &path, &[], b""),
                    _ => http::put(addr, &format!("/v1/tmp/tmp-{i:06}"), r#"{"keep":true}"#),
                };
                let status = response.expect("blue answers").status;
                assert!(status < 300 || status == 404, "write {writes}: {status}");
                writes += 1;
            }
            writes
        })
    };

    let (code, started) = upgrade(&cluster, &orchestrator, &["start", "--plan", &plan]);
    assert_eq!(code, 0, "start: {started}");
    wait_phase(&cluster, &orchestrator, &["postponed"]);
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("the writer ran");
    assert!(writes > 10, "the load wrote while cycles ran: {writes}");
    // Postponed: delta cycles go on, so green catches up with the last writes by itself.
    let expected = wait_until(
        "green to hold transform(blue)",
        Duration::from_secs(60),
        || {
            let expected = expected_green_of(&blue);
            (live_bodies(&green) == expected).then_some(expected)
        },
    )
    .expect("postponed delta cycles catch up with every acknowledged write");
    let (code, _) = upgrade(&cluster, &orchestrator, &["proceed"]);
    assert_eq!(code, 0, "proceed");
    // No proxy in the plan: the cutover fences blue, runs the final cycle, verifies (counts
    // only: a collection is renamed; the drops accounted for) and switches.
    let status = wait_phase(
        &cluster,
        &orchestrator,
        &["reverse_sync", "aborted", "failed"],
    );
    assert_eq!(status["phase"], json!("reverse_sync"), "{status}");
    let cycles = status["cycles"].as_array().expect("cycles listed");
    assert!(cycles.len() >= 2, "a full copy and deltas: {status}");
    // Every document crosses in some cycle: one written while cycle 1 took its snapshot
    // may get a seq past that snapshot's head and cross in cycle 2 instead.
    let total: u64 = cycles
        .iter()
        .map(|c| c["documents"].as_u64().unwrap_or(0))
        .sum();
    assert!(total >= 24_000, "every document crossed: {status}");
    let dropped: u64 = cycles
        .iter()
        .map(|c| c["dropped"].as_u64().unwrap_or(0))
        .sum();
    // 500 tmp documents lack `keep`, less those the writer re-created with it in time.
    assert!(
        dropped > 0,
        "the plan dropped the tmp documents without keep: {status}"
    );
    let green_docs = documents(&green);
    assert!(
        !green_docs.keys().any(|(c, _)| c == "orders"),
        "orders crossed renamed only"
    );
    assert!(
        green_docs.keys().any(|(c, _)| c == "purchases"),
        "orders crossed as purchases"
    );

    // Digests: green's equal the digest of transform(blue) computed here.
    let partitions = digests(&blue).len() as u32;
    let mut want = vec![(0u64, 0u64); partitions as usize];
    for ((collection, id), (version, _)) in &expected {
        let slot = &mut want[partition_of(id, partitions) as usize];
        slot.0 += 1;
        slot.1 = slot.1.wrapping_add(term(collection, id, *version));
    }
    assert_eq!(digests(&green), want, "green's digests");

    // The orchestrator's metrics say what it did.
    http::assert_metrics(
        orchestrator.http,
        &[
            "cutover_orchestrator_cycles_total",
            "cutover_orchestrator_documents_copied_total{collection=\"users\"}",
            "cutover_orchestrator_transform_drops_total",
            "cutover_orchestrator_phase{phase=\"reverse_sync\"} 1",
        ],
    );
}

#[test]
fn a_kill_9_in_cycle_1_resumes_from_the_journal_and_loses_nothing() {
    let cluster = cluster();
    let blue = cluster.start_node("blue", &[]).expect("blue starts");
    let green = cluster.start_node("green", &[]).expect("green starts");
    load(&blue, "users", 60_000, |_| json!({"pad": "x".repeat(150)}));
    let orchestrator = cluster.start_orchestrator("orchestrator").expect("starts");
    let plan = plan(&cluster, &blue, &green, "batch_documents = 50\n", "");
    let (code, started) = upgrade(&cluster, &orchestrator, &["start", "--plan", &plan]);
    assert_eq!(code, 0, "start: {started}");
    // Kill it once green holds part of the copy.
    wait_until("part of cycle 1 on green", Duration::from_secs(60), || {
        let live = digests(&green).iter().map(|p| p.0).sum::<u64>();
        // Past 80 batches (of 50), so that a restart from 0 would break the bound below.
        (live > 5_000).then_some(())
    })
    .expect("cycle 1 starts");
    let mut orchestrator = orchestrator;
    orchestrator.daemon.kill9().expect("kill -9");
    let copied = digests(&green).iter().map(|p| p.0).sum::<u64>();
    assert!(copied < 60_000, "killed mid-cycle: {copied} copied");

    let orchestrator = cluster
        .restart_orchestrator("orchestrator", orchestrator)
        .expect("restarts");
    let status = wait_phase(
        &cluster,
        &orchestrator,
        &["reverse_sync", "failed", "aborted"],
    );
    assert_eq!(status["phase"], json!("reverse_sync"), "{status}");
    // The restarted orchestrator went on from its journal, not from 0: it pulled again at
    // most the batches green had applied but the journal had not recorded. The copy runs
    // inside green, which reports what it applied to the orchestrator to journal: up to 16
    // reports queued in green, and, while green ingests, a chunk of up to 64 batches applied
    // at once before its report. So at most 80 such batches (a bound of 40, from before the
    // copy moved into green, was passed by one batch on a loaded machine).
    let resumed = status["cycles"][0]["documents"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        resumed <= 60_000 - copied + 80 * 50,
        "cycle 1 after the restart pulled {resumed} of 60000, {copied} were on green: {status}"
    );
    assert_eq!(
        digests(&green),
        digests(&blue),
        "every document, at its version"
    );
    let (blue_docs, green_docs) = (documents(&blue), documents(&green));
    assert_eq!(green_docs.len(), blue_docs.len());
    for (key, doc) in &blue_docs {
        let copy = &green_docs[key];
        assert_eq!(
            (copy.version, &copy.body),
            (doc.version, &doc.body),
            "{key:?}"
        );
    }
}

#[test]
fn a_failing_transform_lists_dead_letters_and_blocks_the_cutover() {
    let cluster = cluster();
    let blue = cluster.start_node("blue", &[]).expect("blue starts");
    let green = cluster.start_node("green", &[]).expect("green starts");
    load(&blue, "users", 500, |i| json!({"bad": i % 100 == 7}));
    let orchestrator = cluster.start_orchestrator("orchestrator").expect("starts");
    let plan = plan(
        &cluster,
        &blue,
        &green,
        "max_cycles = 3\n",
        "[collections.users]\nforward = 'if .bad then error(\"bad document\") else . end'\n",
    );
    // The dry run shows the failure first, and writes nothing.
    let (code, dry) = upgrade(
        &cluster,
        &orchestrator,
        &["start", "--plan", &plan, "--dry-run", "--sample", "10"],
    );
    assert_eq!(code, 1, "a dry run with a failing document fails: {dry}");
    assert_eq!(
        dry["plan"]["collections"][0]["forward_runs_on"],
        json!("fast_path"),
        "the offline report comes with the samples: {dry}"
    );
    assert_eq!(
        (dry["sampled"].clone(), dry["failed"].clone()),
        (json!(10), json!(1)),
        "{dry}"
    );
    let failed = dry["samples"]
        .as_array()
        .and_then(|s| s.iter().find(|s| !s["error"].is_null()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed["id"], json!("users-000007"), "{dry}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("bad document"),
        "{dry}"
    );
    assert_eq!(
        digests(&green).iter().map(|p| p.0).sum::<u64>(),
        0,
        "nothing written"
    );
    assert_eq!(phase(&cluster, &orchestrator).0, "idle", "nothing started");
    let (code, _) = upgrade(&cluster, &orchestrator, &["start", "--plan", &plan]);
    assert_eq!(code, 0);
    let status = wait_phase(&cluster, &orchestrator, &["aborted", "reverse_sync"]);
    assert_eq!(status["phase"], json!("aborted"), "{status}");
    assert_eq!(status["dead_letter_total"], json!(5), "{status}");
    let dead = status["dead_letters"]
        .as_array()
        .expect("dead letters listed");
    assert!(
        dead.iter().any(|d| d["id"] == json!("users-000007")),
        "{status}"
    );
    assert!(
        dead.iter().all(|d| d["error"]
            .as_str()
            .unwrap_or_default()
            .contains("bad document")),
        "{status}"
    );
    assert!(
        dead.iter()
            .all(|d| d["source"].as_str().is_some_and(|s| !s.is_empty())),
        "each dead letter names its source node: {status}"
    );
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains("5 documents failed to transform"), "{error}");
    let live = digests(&green).iter().map(|p| p.0).sum::<u64>();
    assert_eq!(live, 495, "the others crossed");
}

#[test]
fn a_bad_plan_is_refused_with_the_file_the_field_and_the_fix() {
    let cluster = cluster();
    let orchestrator = cluster.start_orchestrator("orchestrator").expect("starts");
    let url = orchestrator.url();
    let cases = [
        ("typo.toml", "pause_budjet = \"1s\"\n", "pause_budjet"),
        (
            "empty.toml",
            "[blue]\nsources = []\n[green]\nsinks = [\"http://127.0.0.1:2\"]\n",
            "blue.sources",
        ),
        (
            "jq.toml",
            "[blue]\nsources = [\"http://127.0.0.1:1\"]\n[green]\nsinks = [\"http://127.0.0.1:2\"]\n\
             [collections.users]\nforward = '.a |'\n",
            "collections.users.forward",
        ),
        (
            "reverse.toml",
            "[blue]\nsources = [\"http://127.0.0.1:1\"]\n[green]\nsinks = [\"http://127.0.0.1:2\"]\n\
             [collections.users]\nforward = '.a = 1'\nreverse = 'del(.a'\n",
            "collections.users.reverse",
        ),
    ];
    for (name, text, field) in cases {
        let plan = write_plan(&cluster, name, text);
        let out = cluster
            .run(["upgrade", "--orchestrator", &url, "start", "--plan", &plan])
            .expect("runs");
        assert_eq!(out.code, Some(1), "{name}: {out:?}");
        assert!(
            out.stderr.contains(name),
            "{name} names the file: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(field),
            "{name} names {field}: {}",
            out.stderr
        );
    }
    let (_, status) = phase(&cluster, &orchestrator);
    assert_eq!(status["phase"], json!("idle"), "nothing started: {status}");
    drop(orchestrator);
    let out = cluster
        .run(["upgrade", "--orchestrator", &url, "status"])
        .expect("runs");
    assert_eq!(out.code, Some(3), "unreachable: {out:?}");
}

#[test]
fn the_engine_inside_the_green_node_copies_into_its_own_store() {
    let cluster = cluster();
    let blue = cluster.start_node("blue", &[]).expect("blue starts");
    load(&blue, "users", 5_000, |_| json!({}));
    let journal = cluster.dir("green").expect("dir").join("journal");
    let journal = journal.display().to_string();
    let green = cluster
        .start_node("green", &["--orchestrate", "--journal", &journal])
        .expect("green starts with the engine inside");
    let plan = plan(&cluster, &blue, &green, "", "");
    let url = green.grpc_url();
    let run = |args: &[&str]| {
        let mut all = vec!["upgrade", "--orchestrator", &url, "--output", "json"];
        all.extend_from_slice(args);
        let out = cluster.run(&all).expect("cutover upgrade runs");
        (
            out.code,
            serde_json::from_str::<Value>(out.stdout.trim()).unwrap_or(Value::Null),
        )
    };
    let (code, started) = run(&["start", "--plan", &plan]);
    assert_eq!(code, Some(0), "start: {started}");
    let status = wait_until("the switch", Duration::from_secs(60), || {
        let (_, status) = run(&["status"]);
        matches!(
            status["phase"].as_str(),
            Some("reverse_sync" | "failed" | "aborted")
        )
        .then_some(status)
    })
    .expect("the upgrade ends");
    assert_eq!(status["phase"], json!("reverse_sync"), "{status}");
    assert_eq!(
        digests(&green),
        digests(&blue),
        "green holds blue's documents"
    );
    // The node's own store took the writes: its Sink served no Apply.
    let metrics = http::get(green.http, "/metrics").expect("metrics").text();
    let applied_over_grpc = metrics
        .lines()
        .find(|l| l.starts_with("cutover_node_applied_documents_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert_eq!(applied_over_grpc, 0.0, "no gRPC hop for green's own writes");
}

#[test]
fn sigterm_with_a_watcher_attached_stops_the_orchestrator_and_a_restart_resumes() {
    let cluster = cluster();
    let blue = cluster.start_node("blue", &[]).expect("blue starts");
    let green = cluster.start_node("green", &[]).expect("green starts");
    load(&blue, "users", 2_000, |_| json!({}));
    let orchestrator = cluster.start_orchestrator("orchestrator").expect("starts");
    let plan = plan(&cluster, &blue, &green, "postpone = true\n", "");
    let (code, _) = upgrade(&cluster, &orchestrator, &["start", "--plan", &plan]);
    assert_eq!(code, 0);
    wait_phase(&cluster, &orchestrator, &["postponed"]);
    // A watcher stays attached while postponed; it must not hold the daemon up.
    let url = orchestrator.url();
    let mut watcher = cluster
        .spawn(
            "watcher",
            ["upgrade", "--orchestrator", &url, "status", "--watch"],
        )
        .expect("watch starts");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        watcher.is_running(),
        "the watch follows a postponed upgrade"
    );
    let mut orchestrator = orchestrator;
    orchestrator.daemon.terminate().expect("SIGTERM");
    let exit = orchestrator
        .daemon
        .wait_exit(Duration::from_secs(15))
        .expect("the orchestrator stops within its grace period");
    assert!(exit.success(), "a clean stop: {exit:?}");
    let watched = watcher
        .wait_exit(Duration::from_secs(10))
        .expect("the watch ends");
    assert!(!watched.success(), "a watch cut short is not a success");
    let orchestrator = cluster
        .restart_orchestrator("orchestrator", orchestrator)
        .expect("restarts");
    let (phase, status) = phase(&cluster, &orchestrator);
    assert_eq!(
        phase, "postponed",
        "the upgrade resumed where it was: {status}"
    );
    let (code, _) = upgrade(&cluster, &orchestrator, &["proceed"]);
    assert_eq!(code, 0);
    wait_phase(&cluster, &orchestrator, &["reverse_sync"]);
    assert_eq!(digests(&green), digests(&blue));
}
