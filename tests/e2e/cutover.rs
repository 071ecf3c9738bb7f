//! The cutover and the rollback end to end: two real nodes, two real proxies, a real
//! orchestrator process and a client load through both proxies that records every
//! acknowledged write. Checked: no client error, no lost acknowledged write on either side,
//! an `ETag` from blue honoured by green, proxies routing to the right colour (also after a
//! restart), and an orchestrator killed after each cutover step that finishes by itself.

use std::{net::SocketAddr, time::Duration};

use cutover_orchestrator::demo::{
    load::{self, COLLECTION, Finished, Ledger, Load, LoadConfig},
    rig::{FORWARD, REVERSE},
};
use cutover_proto::v1::{Document, NodeStatusRequest, node_admin_client::NodeAdminClient};
use cutover_tests::harness::{
    Cluster, NodeProcess, OrchestratorProcess, ProxyProcess, http, wait_until,
};
use serde_json::Value;

use crate::{apply, cluster, runtime};

/// Documents blue starts with.
const DOCS: u64 = 5_000;
/// A document outside the load's keys, for the `ETag` check.
const PROBE: &str = "probe";

/// Blue, green, two proxies in front of them and a plan naming them all.
pub(crate) struct Stack {
    pub(crate) cluster: Cluster,
    pub(crate) blue: NodeProcess,
    pub(crate) green: NodeProcess,
    pub(crate) proxies: Vec<ProxyProcess>,
    pub(crate) plan: String,
}

impl Stack {
    pub(crate) fn start() -> Self {
        Self::start_with(true, &[])
    }

    /// A stack whose plan has the reverse program, or not, with `proxy_flags` on each proxy.
    fn start_with(reverse: bool, proxy_flags: &[&str]) -> Self {
        let cluster = cluster();
        let blue = cluster.start_node("blue", &[]).expect("blue starts");
        let green = cluster.start_node("green", &[]).expect("green starts");
        let backends = |n: &NodeProcess| vec![format!("http://{}", n.http)];
        let proxies: Vec<ProxyProcess> = ["proxy-1", "proxy-2"]
            .iter()
            .map(|name| {
                cluster
                    .start_proxy(
                        name,
                        &backends(&blue),
                        &backends(&green),
                        &[&["--upstream-protocol", "h2c"], proxy_flags].concat(),
                    )
                    .expect("proxy starts")
            })
            .collect();
        preload(&blue, None);
        let controls: Vec<String> = proxies
            .iter()
            .map(|p| format!("\"{}\"", p.admin_url()))
            .collect();
        let text = format!(
            "[blue]\nsources = [\"{}\"]\n[green]\nsinks = [\"{}\"]\n[proxies]\ncontrol = [{}]\n\
             [collections.{COLLECTION}]\nforward = '{FORWARD}'\n{}",
            blue.grpc_url(),
            green.grpc_url(),
            controls.join(", "),
            if reverse {
                format!("reverse = '{REVERSE}'\n")
            } else {
                String::new()
            }
        );
        let path = cluster.dir("plans").expect("plans").join("plan.toml");
        std::fs::write(&path, text).expect("plan written");
        Self {
            cluster,
            blue,
            green,
            proxies,
            plan: path.display().to_string(),
        }
    }

    pub(crate) fn load_config(&self) -> LoadConfig {
        LoadConfig {
            targets: self.proxies.iter().map(|p| p.listen).collect(),
            rate: 400,
            keys: DOCS,
            workers: 8,
        }
    }

    /// A `cutover orchestrator` with `flags`.
    pub(crate) fn orchestrator(&self, flags: &[&str]) -> OrchestratorProcess {
        self.cluster
            .start_orchestrator_with("orchestrator", flags)
            .expect("the orchestrator starts")
    }

    /// `cutover upgrade start --plan PLAN EXTRA`, which must succeed.
    pub(crate) fn start_upgrade(&self, orchestrator: &OrchestratorProcess, extra: &[&str]) {
        let mut args = vec!["start", "--plan", &self.plan];
        args.extend_from_slice(extra);
        let (code, started) = self.upgrade(orchestrator, &args);
        assert_eq!(code, 0, "start: {started}");
    }

    /// `cutover upgrade ARGS --orchestrator URL --output json`: exit code and JSON.
    pub(crate) fn upgrade(
        &self,
        orchestrator: &OrchestratorProcess,
        args: &[&str],
    ) -> (i32, Value) {
        crate::upgrade(&self.cluster, orchestrator, args)
    }

    pub(crate) fn wait_phase(&self, orchestrator: &OrchestratorProcess, wanted: &str) -> Value {
        crate::wait_phase(&self.cluster, orchestrator, &[wanted])
    }

    /// Asserts that every proxy routes to `colour`.
    fn assert_routes(&self, colour: &str) {
        let routes = self.routes();
        assert!(
            routes.iter().all(|(c, _)| c == colour),
            "every proxy routes to {colour}: {routes:?}"
        );
    }

    /// The colour and epoch of every proxy's `GET /route`.
    fn routes(&self) -> Vec<(String, u64)> {
        self.proxies
            .iter()
            .map(|p| {
                let route = http::get(p.admin, "/route")
                    .expect("route")
                    .json()
                    .expect("json");
                (
                    route["active"].as_str().unwrap_or_default().to_owned(),
                    route["epoch"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// Loads blue with the demo's documents, and the probe, through its `Sink` (version 1), with
/// its bearer token when it has one.
fn preload(blue: &NodeProcess, token: Option<&str>) {
    let document = |id: String, n| Document {
        collection: COLLECTION.into(),
        id,
        version: 1,
        seq: 0,
        body: load::body(n).into(),
        tombstone: false,
    };
    let mut documents: Vec<Document> = (0..DOCS).map(|n| document(load::id(n), n)).collect();
    documents.push(document(PROBE.into(), DOCS));
    apply(blue, token, documents);
}

/// Checks every key of `ledger` against `node` over HTTP: the ids whose stored version or
/// `visits` differ from the last acknowledged write.
pub(crate) fn lost(ledger: &Ledger, node: &NodeProcess) -> Vec<load::Lost> {
    lost_by(ledger, |path| http::get(node.http, path))
}

/// [`lost`], each document read by `get` (its path).
pub(crate) fn lost_by(
    ledger: &Ledger,
    get: impl Fn(&str) -> anyhow::Result<http::HttpResponse>,
) -> Vec<load::Lost> {
    ledger.check(|id| {
        let response = get(&format!("/v1/{COLLECTION}/{id}")).ok()?;
        if response.status != 200 {
            return None;
        }
        let version = response.header("etag")?.trim_matches('"').parse().ok()?;
        let visits = response.json().ok()?.get("visits")?.as_u64()?;
        Some((version, visits))
    })
}

/// A load on a runtime of its own threads, so the test thread can call the CLI meanwhile.
pub(crate) struct Background {
    runtime: tokio::runtime::Runtime,
    load: Option<Load>,
}

impl Background {
    pub(crate) fn start(config: &LoadConfig, ledger: Ledger) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let load = runtime.block_on(async { Load::start(config, ledger) });
        Self {
            runtime,
            load: Some(load),
        }
    }

    /// Waits until the load has had `writes` writes acknowledged (at most 30 s): a test whose
    /// upgrade ends quickly still checks a load of some size.
    pub(crate) fn wait_writes(&self, writes: u64) {
        let load = self.load.as_ref().expect("running");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while load.writes() < writes && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the load: what it saw.
    pub(crate) fn stop(mut self) -> Finished {
        let load = self.load.take().expect("running");
        self.runtime.block_on(load.stop())
    }
}

/// Stops the load and asserts it saw no error and that `node` holds every acknowledged
/// write; returns the ledger to go on from.
fn nothing_failed_or_lost(background: Background, node: &NodeProcess) -> Ledger {
    background.wait_writes(150);
    let seen = background.stop();
    assert_eq!(seen.errors, 0, "client errors: {:?}", seen.error_samples);
    let ledger = seen.ledger;
    assert!(ledger.known() > 50, "the load wrote: {}", ledger.known());
    let missing = lost(&ledger, node);
    assert!(
        missing.is_empty(),
        "lost: {:?}",
        &missing[..missing.len().min(5)]
    );
    ledger
}

pub(crate) fn settle(how_long: Duration) {
    // The load runs on its own threads; this only lets it make requests.
    std::thread::sleep(how_long);
}

#[test]
fn cutover_and_rollback_under_live_writes_lose_nothing_and_show_no_error() {
    let stack = Stack::start();
    let orchestrator = stack.orchestrator(&[]);
    // A client reads a document from blue before the upgrade and keeps its ETag.
    let probe_path = format!("/v1/{COLLECTION}/{PROBE}");
    let probe = http::get(stack.proxies[0].listen, &probe_path).expect("probe read");
    let blue_etag = probe.header("etag").expect("an etag").to_owned();
    let config = stack.load_config();
    let background = Background::start(&config, Ledger::default());
    settle(Duration::from_secs(1));

    stack.start_upgrade(&orchestrator, &[]);
    let status = stack.wait_phase(&orchestrator, "reverse_sync");
    let cycles = status["cycles"].as_array().expect("cycles");
    assert!(
        cycles.iter().any(|c| c["final_cycle"] == true),
        "a final cycle ran: {status}"
    );
    stack.assert_routes("green");
    http::assert_metrics(
        orchestrator.http,
        &[
            "cutover_orchestrator_cutover_attempts_total{direction=\"forward\",outcome=\"switched\"} 1",
            "cutover_orchestrator_last_hold_seconds",
            "cutover_orchestrator_last_hold_requests",
            "cutover_orchestrator_phase{phase=\"reverse_sync\"} 1",
        ],
    );
    settle(Duration::from_secs(1));
    let ledger = nothing_failed_or_lost(background, &stack.green);
    // Blue is fenced for good: after the decision it takes no client write.
    let refused =
        http::put(stack.blue.http, "/v1/users/after", r#"{"name":"x y"}"#).expect("blue answers");
    assert_eq!(
        refused.status,
        503,
        "blue refuses client writes: {}",
        refused.text()
    );

    // The ETag read from blue before the upgrade is honoured by green.
    blue_etag_honoured_on_green(stack.proxies[1].listen, &probe_path, &blue_etag);

    // Rollback under the same load, going on from the same ledger.
    let background = Background::start(&config, ledger);
    settle(Duration::from_secs(1));
    let (code, answer) = stack.upgrade(&orchestrator, &["rollback"]);
    assert_eq!(code, 0, "rollback: {answer}");
    let status = stack.wait_phase(&orchestrator, "rolled_back");
    stack.assert_routes("blue");
    // Reverse sync copied green's own writes back, not the documents green got from blue.
    let reverse: u64 = status["cycles"]
        .as_array()
        .expect("cycles")
        .iter()
        .filter(|c| c["direction"] == "reverse")
        .map(|c| c["documents"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        (1..DOCS / 2).contains(&reverse),
        "reverse cycles copied {reverse} documents: {status}"
    );
    settle(Duration::from_secs(1));
    nothing_failed_or_lost(background, &stack.blue);
}

/// Asserts that green, through the proxy at `proxy`, serves `path` with `blue_etag` (the
/// ETag a client read on blue before the upgrade) and in green's schema, and takes a write
/// with `If-Match: blue_etag`.
pub(crate) fn blue_etag_honoured_on_green(proxy: SocketAddr, path: &str, blue_etag: &str) {
    let now = http::get(proxy, path).expect("read on green");
    assert_eq!(now.header("etag"), Some(blue_etag), "{}", now.text());
    let mut body = now.json().expect("json");
    assert_eq!(body["schema"], 2, "green's schema: {body}");
    body["visits"] = 1000.into();
    let put = http::request(
        proxy,
        "PUT",
        path,
        &[("if-match", blue_etag)],
        body.to_string().as_bytes(),
    )
    .expect("conditional write");
    assert_eq!(
        put.status,
        200,
        "If-Match with blue's ETag on green: {}",
        put.text()
    );
}

/// Waits for `orchestrator` to kill itself (SIGKILL) at its `--fault-point` `point`.
pub(crate) fn killed_by_itself(
    mut orchestrator: OrchestratorProcess,
    point: &str,
) -> OrchestratorProcess {
    let exited = orchestrator
        .daemon
        .wait_exit(Duration::from_secs(120))
        .expect("the orchestrator dies at the fault point");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&exited),
        Some(9),
        "{point}: killed by SIGKILL"
    );
    orchestrator
}

/// Kills the orchestrator (SIGKILL, by itself at `--fault-point`) at `point`, restarts it, and checks the
/// upgrade ends switched with every acknowledged write on green. Client errors are allowed
/// here (a proxy whose hold expires answers 503 with Retry-After); lost writes are not.
fn killed_at(point: &str) {
    let stack = Stack::start();
    let orchestrator = stack.orchestrator(&["--fault-point", point]);
    let background = Background::start(&stack.load_config(), Ledger::default());
    stack.start_upgrade(&orchestrator, &[]);
    let orchestrator = killed_by_itself(orchestrator, point);
    // Whatever it left: a proxy on green means blue is fenced (never both colours open).
    let colours: Vec<String> = stack.routes().into_iter().map(|r| r.0).collect();
    if colours.iter().any(|c| c == "green") {
        assert!(
            fenced(&stack.blue),
            "{point}: a proxy routes to green, so blue must be fenced"
        );
    }
    let orchestrator = stack
        .cluster
        .restart_orchestrator("orchestrator", orchestrator)
        .expect("restarts");
    stack.wait_phase(&orchestrator, "reverse_sync");
    stack.assert_routes("green");
    nothing_lost_on(point, background, &stack.green);
}

/// Stops the load and checks that it wrote, and that every write it was acknowledged is on
/// `node`. Client errors are allowed (a hold that expires answers 503 with Retry-After).
fn nothing_lost_on(point: &str, background: Background, node: &NodeProcess) {
    settle(Duration::from_millis(500));
    let ledger = background.stop().ledger;
    assert!(
        ledger.known() > 10,
        "{point}: the load wrote: {}",
        ledger.known()
    );
    let missing = lost(&ledger, node);
    assert!(
        missing.is_empty(),
        "{point}: lost: {:?}",
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn an_orchestrator_killed_after_the_pause_finishes_the_cutover_after_a_restart() {
    killed_at("paused");
}

#[test]
fn an_orchestrator_killed_after_the_fence_finishes_the_cutover_after_a_restart() {
    killed_at("fenced");
}

#[test]
fn an_orchestrator_killed_after_the_final_cycle_finishes_the_cutover_after_a_restart() {
    killed_at("final-cycle");
}

#[test]
fn an_orchestrator_killed_after_the_commit_finishes_the_cutover_after_a_restart() {
    killed_at("committed");
}

#[test]
fn an_orchestrator_killed_after_switching_one_of_two_proxies_finishes_after_a_restart() {
    killed_at("first-switch");
}

#[test]
fn an_orchestrator_killed_once_blue_is_fenced_for_good_undoes_and_finishes_after_a_restart() {
    killed_at("sealed");
}

/// Cuts over, then rolls back with the orchestrator killed (by itself, at `--fault-point`)
/// at `point` of the rollback, restarts it, and checks that the rollback ends rolled back
/// (a rollback killed before its commit is undone, green keeps serving, and a second
/// rollback goes through) with every acknowledged write on blue.
fn rollback_killed_at(point: &str, committed: bool) {
    let stack = Stack::start();
    let orchestrator = stack.orchestrator(&["--fault-point", point]);
    let background = Background::start(&stack.load_config(), Ledger::default());
    stack.start_upgrade(&orchestrator, &[]);
    stack.wait_phase(&orchestrator, "reverse_sync");
    settle(Duration::from_millis(300));
    // The answer may or may not arrive before the kill: the journal decides, not the reply.
    let _ = stack.upgrade(&orchestrator, &["rollback"]);
    let orchestrator = killed_by_itself(orchestrator, point);
    let orchestrator = stack
        .cluster
        .restart_orchestrator("orchestrator", orchestrator)
        .expect("restarts");
    if !committed {
        let status = stack.wait_phase(&orchestrator, "reverse_sync");
        let detail = status["phase_detail"].as_str().unwrap_or_default();
        assert!(detail.contains("interrupted"), "{point}: {status}");
        stack.assert_routes("green");
        let (code, answer) = stack.upgrade(&orchestrator, &["rollback"]);
        assert_eq!(code, 0, "{point}: a second rollback: {answer}");
    }
    let status = stack.wait_phase(&orchestrator, "rolled_back");
    assert!(status["handover_step"].is_null(), "{status}");
    stack.assert_routes("blue");
    assert!(
        fenced(&stack.green),
        "{point}: green is fenced after the rollback"
    );
    nothing_lost_on(point, background, &stack.blue);
}

#[test]
fn a_rollback_killed_before_its_commit_is_undone_and_runs_again_after_a_restart() {
    rollback_killed_at("rollback-fencing", false);
}

#[test]
fn a_rollback_killed_after_its_commit_finishes_after_a_restart() {
    rollback_killed_at("rollback-committed", true);
}

#[test]
fn a_proxy_restarted_after_the_switch_routes_to_green() {
    let mut stack = Stack::start();
    let orchestrator = stack.orchestrator(&[]);
    stack.start_upgrade(&orchestrator, &[]);
    stack.wait_phase(&orchestrator, "reverse_sync");
    let mut proxy = stack.proxies.remove(0);
    proxy.daemon.kill9().expect("killed");
    let proxy = stack
        .cluster
        .restart_proxy("proxy-1", proxy)
        .expect("restarts");
    let route = http::get(proxy.admin, "/route")
        .expect("route")
        .json()
        .expect("json");
    assert_eq!(route["active"], "green", "{route}");
    // A write through it lands on green.
    let put = http::put(
        proxy.listen,
        "/v1/users/after-restart",
        r#"{"first_name":"a","last_name":"b","visits":0,"schema":2}"#,
    )
    .expect("write");
    assert!(put.status < 300, "{}", put.text());
    let on_green = http::get(stack.green.http, "/v1/users/after-restart").expect("read");
    assert_eq!(on_green.status, 200);
}

/// Whether `node` is fenced, per `NodeAdmin.Status`.
fn fenced(node: &NodeProcess) -> bool {
    runtime().block_on(async {
        let mut admin = NodeAdminClient::connect(node.grpc_url())
            .await
            .expect("admin");
        let status = admin
            .status(NodeStatusRequest {})
            .await
            .expect("status")
            .into_inner();
        status.fence.is_some_and(|f| f.fenced)
    })
}

#[test]
fn a_rehearsal_pauses_fences_verifies_and_resumes_on_blue_and_abort_ends_it() {
    let stack = Stack::start();
    let orchestrator = stack.orchestrator(&[]);
    let background = Background::start(&stack.load_config(), Ledger::default());
    stack.start_upgrade(&orchestrator, &["--rehearse"]);
    let status = crate::wait_rehearsal(&stack.cluster, &orchestrator);
    assert_eq!(status["phase"], "ready_for_cutover", "{status}");
    let detail = status["phase_detail"].as_str().unwrap_or_default();
    assert!(detail.contains("verified"), "{detail}");
    assert_eq!(
        status["holds"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    assert!(
        stack
            .routes()
            .iter()
            .all(|(c, epoch)| c == "blue" && *epoch >= 1),
        "paused under an epoch, resumed on blue: {:?}",
        stack.routes()
    );
    assert!(!fenced(&stack.blue), "blue unfenced after the rehearsal");
    let (code, refused) = stack.upgrade(&orchestrator, &["proceed"]);
    assert_eq!(code, 1, "proceed is refused after a rehearsal: {refused}");
    let (code, aborted) = stack.upgrade(&orchestrator, &["abort"]);
    assert_eq!(code, 0, "abort: {aborted}");
    stack.wait_phase(&orchestrator, "aborted");
    nothing_failed_or_lost(background, &stack.blue);
    assert_takes_writes(&stack);
}

/// A write through the first proxy succeeds (after an abort: blue serves again).
fn assert_takes_writes(stack: &Stack) {
    let put = http::put(
        stack.proxies[0].listen,
        "/v1/users/after",
        r#"{"name":"a b"}"#,
    )
    .expect("write");
    assert!(put.status < 300, "blue takes writes again: {}", put.text());
}

#[test]
fn a_rollback_that_would_lose_green_writes_is_refused_with_their_number_unless_discarded() {
    let stack = Stack::start_with(false, &[]);
    let orchestrator = stack.orchestrator(&[]);
    stack.start_upgrade(&orchestrator, &[]);
    stack.wait_phase(&orchestrator, "reverse_sync");
    for i in 0..3 {
        let put = http::put(
            stack.proxies[0].listen,
            &format!("/v1/users/green-only-{i}"),
            r#"{"first_name":"a","last_name":"b","schema":2}"#,
        )
        .expect("write on green");
        assert!(put.status < 300, "{}", put.text());
    }
    let (code, refused) = stack.upgrade(&orchestrator, &["rollback"]);
    assert_eq!(code, 1, "refused: {refused}");
    let message = refused.to_string();
    assert!(
        message.contains("3 documents") && message.contains("users"),
        "the refusal names the number and the collection: {message}"
    );
    stack.wait_phase(&orchestrator, "reverse_sync");
    let (code, answer) = stack.upgrade(
        &orchestrator,
        &["rollback", "--discard-green-writes", "--yes"],
    );
    assert_eq!(code, 0, "discarding rollback: {answer}");
    stack.wait_phase(&orchestrator, "rolled_back");
    stack.assert_routes("blue");
    assert_eq!(
        http::get(stack.blue.http, "/v1/users/green-only-0")
            .expect("read")
            .status,
        404,
        "the discarded write is not on blue"
    );
}

#[test]
fn a_cutover_whose_proxy_cannot_drain_is_undone_and_blue_keeps_serving() {
    let stack = Stack::start_with(true, &["--drain-timeout", "300ms"]);
    let orchestrator = stack.orchestrator(&[]);
    // A request that never finishes: its headers are in, its body never completes.
    let mut stuck = std::net::TcpStream::connect(stack.proxies[1].listen).expect("connect");
    std::io::Write::write_all(
        &mut stuck,
        b"PUT /v1/users/stuck HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\n{",
    )
    .expect("a partial request");
    stack.start_upgrade(&orchestrator, &[]);
    let status = stack.wait_phase(&orchestrator, "aborted");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cutover attempt 3 undone") && error.contains("Pause"),
        "three attempts, each undone, naming the pause that failed: {status}"
    );
    assert!(!fenced(&stack.blue), "blue is unfenced");
    stack.assert_routes("blue");
    assert_takes_writes(&stack);
    drop(stuck);
}

#[test]
fn after_the_commit_a_proxy_that_is_down_is_switched_once_it_is_back() {
    let mut stack = Stack::start();
    let orchestrator = stack.orchestrator(&["--fault-point", "committed"]);
    stack.start_upgrade(&orchestrator, &[]);
    let mut orchestrator = orchestrator;
    orchestrator
        .daemon
        .wait_exit(Duration::from_secs(120))
        .expect("killed at the commit");
    // Proxy 2 goes down too, before the restarted orchestrator can switch it.
    let mut down = stack.proxies.remove(1);
    down.daemon.kill9().expect("killed");
    let orchestrator = stack
        .cluster
        .restart_orchestrator("orchestrator", orchestrator)
        .expect("restarts");
    let status = wait_until("the wait for proxy 2", Duration::from_secs(60), || {
        let (_, status) = stack.upgrade(&orchestrator, &["status"]);
        let detail = status["phase_detail"].as_str().unwrap_or_default();
        detail
            .contains("waiting for a proxy to switch")
            .then_some(status)
    })
    .expect("the status says what it waits for");
    assert_eq!(status["phase"], "switching", "{status}");
    stack.assert_routes("green");
    let back = stack
        .cluster
        .restart_proxy("proxy-2", down)
        .expect("restarts");
    stack.proxies.push(back);
    stack.wait_phase(&orchestrator, "reverse_sync");
    stack.assert_routes("green");
}

#[test]
fn every_control_plane_behind_its_own_token_cuts_over_and_rolls_back() {
    let cluster = cluster();
    let tokens = cluster.dir("tokens").expect("dir");
    let token = |name: &str, secret: &str| {
        let path = tokens.join(name);
        std::fs::write(&path, format!("{secret}\n")).expect("token file");
        path.display().to_string()
    };
    let (blue_token, green_token, proxy_token) = (
        token("blue", "blue-secret"),
        token("green", "green-secret"),
        token("proxy", "proxy-secret"),
    );
    let blue = cluster
        .start_node("blue", &["--token-file", &blue_token])
        .expect("blue starts");
    let green = cluster
        .start_node("green", &["--token-file", &green_token])
        .expect("green starts");
    let proxy = cluster
        .start_proxy(
            "proxy",
            &[format!("http://{}", blue.http)],
            &[format!("http://{}", green.http)],
            &["--upstream-protocol", "h2c", "--token-file", &proxy_token],
        )
        .expect("proxy starts");
    preload(&blue, Some("blue-secret"));
    let plan = cluster.dir("plans").expect("plans").join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "[blue]\nsources = [\"{}\"]\ntoken_file = \"{blue_token}\"\n\
             [green]\nsinks = [\"{}\"]\ntoken_file = \"{green_token}\"\n\
             [proxies]\ncontrol = [\"{}\"]\ntoken_file = \"{proxy_token}\"\n\
             [collections.{COLLECTION}]\nforward = '{FORWARD}'\nreverse = '{REVERSE}'\n",
            blue.grpc_url(),
            green.grpc_url(),
            proxy.admin_url()
        ),
    )
    .expect("plan written");
    let stack = Stack {
        cluster,
        blue,
        green,
        proxies: vec![proxy],
        plan: plan.display().to_string(),
    };
    let orchestrator = stack.orchestrator(&[]);
    stack.start_upgrade(&orchestrator, &[]);
    stack.wait_phase(&orchestrator, "reverse_sync");
    stack.assert_routes("green");
    let put = http::put(
        stack.proxies[0].listen,
        "/v1/users/on-green",
        r#"{"first_name":"a","last_name":"b","visits":0,"schema":2}"#,
    )
    .expect("write");
    assert!(put.status < 300, "{}", put.text());
    let (code, answer) = stack.upgrade(&orchestrator, &["rollback"]);
    assert_eq!(code, 0, "rollback: {answer}");
    stack.wait_phase(&orchestrator, "rolled_back");
    stack.assert_routes("blue");
    let back = http::get(stack.blue.http, "/v1/users/on-green").expect("read");
    assert_eq!(
        back.status,
        200,
        "the write on green is on blue: {}",
        back.text()
    );
    assert_eq!(
        back.json().expect("json")["name"],
        "a b",
        "reverse program applied"
    );
}
