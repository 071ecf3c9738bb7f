//! Fault tests across hosts: the compose topology of `deploy/compose.yaml` (blue = 3 nodes,
//! green = 2 with the orchestrator inside green-1, 2 proxies, a client load through both) as
//! containers of the image built from the binary cargo built for these tests, and a fault in
//! the middle of an upgrade: a link cut, a host killed or frozen, packets lost and delayed.
//! Every scenario ends by stopping the load and reading back every acknowledged write through
//! a proxy: none may be lost. Each prints its timeline and the client errors it saw.
//!
//! The topology runs over mutual TLS, as `deploy/compose.yaml` has it: the clients talk plain
//! HTTP to the proxies' client ports, everything else (the proxies to the nodes, the
//! orchestrator to every daemon, the nodes to their cluster peers, Prometheus, the test to the
//! admin ports) is TLS with the lab CA of the compose `pki` service.
//!
//! They need Docker Engine and docker-compose (v1), and fail saying so without them. The
//! shortest (a proxy restarted after the switch, then a rollback) runs in `cargo test`; the
//! others are `#[ignore]`d for time and run with
//! `cargo test --workspace --test containers -- --ignored`. They run one at a time (the
//! network's subnet is fixed).

mod relay;
mod stack;

use std::time::Duration;

use serde_json::Value;
use stack::{GATEWAY, Outcome, PROXY_1, Stack};

/// Proxy-1's admin port (mutual TLS).
const PROXY_1_ADMIN: &str = "172.30.77.31:8081";

/// Longest an upgrade or a rollback may take here.
const PHASE_TIMEOUT: Duration = Duration::from_secs(240);
/// The blue nodes' addresses, for partitions.
const BLUE: &str = "{ 172.30.77.11, 172.30.77.12, 172.30.77.13 }";

fn nothing_lost(outcome: &Outcome) {
    assert!(
        outcome.known > 0,
        "the load acknowledged nothing:\n{}",
        outcome.report
    );
    assert_eq!(
        outcome.lost, 0,
        "acknowledged writes were lost:\n{}",
        outcome.report
    );
}

/// Reads `user-00000001` through proxy-1 until it has green's shape (`green`) or blue's.
fn wait_shape(stack: &Stack, green: bool, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some((200, body)) = stack.get(PROXY_1, "/v1/users/user-00000001")
            && body.get("schema").is_some() == green
        {
            stack.say(&format!(
                "proxy-1 serves {}: {body}",
                if green { "green" } else { "blue" }
            ));
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "proxy-1 did not serve {} in {timeout:?}",
            if green { "green" } else { "blue" }
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Caps green-2's CPU so that cycle 1 (which ends with its slowest pipeline) lasts long
/// enough to be hit in its middle, or lifts the cap (`None`; `docker update --cpus 0` would
/// leave it). Green-1, where the orchestrator runs, keeps its speed, so that its status
/// answers promptly.
fn throttle_green_2(stack: &Stack, cpus: Option<&str>) {
    let all = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .to_string();
    let cpus = cpus.unwrap_or(&all);
    stack::must(
        "docker",
        &["update", "--cpus", cpus, &Stack::container("green-2")],
    );
    stack.say(&format!("green-2's CPU cap: {cpus}"));
}

/// The admin port of a proxy speaks only TLS, and answers only a client with a certificate of
/// the lab CA (but for the probes' and scrapers' paths); Prometheus scrapes every daemon.
fn mutual_tls_everywhere(stack: &Stack) {
    let (status, body) = stack
        .get(PROXY_1_ADMIN, "/route")
        .expect("proxy-1's admin port answers plain HTTP");
    assert_eq!(status, 400, "plain HTTP to a TLS port: {body}");
    let (status, body) = stack
        .get_tls(PROXY_1_ADMIN, "/route", false)
        .expect("proxy-1's admin port answers TLS");
    assert_eq!(status, 403, "no client certificate: {body}");
    assert_eq!(body["error"], "client_certificate_required", "{body}");
    let (status, _) = stack
        .get_tls(PROXY_1_ADMIN, "/healthz", false)
        .expect("proxy-1's admin port answers TLS");
    assert_eq!(status, 200, "/healthz needs no client certificate");
    let (status, route) = stack
        .get_tls(PROXY_1_ADMIN, "/route", true)
        .expect("proxy-1's admin port answers mutual TLS");
    assert_eq!(status, 200, "{route}");
    // Five nodes and two proxies, each scraped over https.
    assert_eq!(stack.wait_scraped(Duration::from_secs(60)), 7);
    stack.say("mutual TLS: plain HTTP refused, no certificate 403, the lab's 200; scraped");
}

/// Cycle 1's documents: it must not have started over after the fault.
fn first_cycle_documents(status: &Value) -> u64 {
    status["cycles"][0]["documents"].as_u64().unwrap_or(0)
}

#[test]
fn a_proxy_restarted_after_the_switch_routes_to_green_and_a_rollback_loses_nothing() {
    let stack = Stack::up(&[("CUTOVER_LOAD_KEYS", "5000")]);
    mutual_tls_everywhere(&stack);
    stack.start_upgrade();
    stack.wait_phase(&["reverse_sync"], PHASE_TIMEOUT);
    stack.docker("restart", "proxy-1");
    wait_shape(&stack, true, Duration::from_secs(30));
    let (_, route) = stack
        .get_tls(PROXY_1_ADMIN, "/route", true)
        .expect("proxy-1's admin port answers");
    assert_eq!(route["active"], "green", "{route}");

    let (code, out) = stack.exec("green-1", &["upgrade", "rollback"]);
    assert_eq!(code, 0, "cutover upgrade rollback failed:\n{out}");
    stack.wait_phase(&["rolled_back"], PHASE_TIMEOUT);
    wait_shape(&stack, false, Duration::from_secs(30));
    let outcome = stack.finish();
    nothing_lost(&outcome);
    // Half the clients talk to proxy-1: while it restarts, theirs fail (connection refused).
    eprintln!(
        "outcome: {} requests, {} client errors (proxy-1's restart), 0 lost of {} acknowledged",
        outcome.requests, outcome.errors, outcome.known
    );
}

#[test]
#[ignore = "minutes of containers: cargo test --workspace --test containers -- --ignored"]
fn a_partition_between_green_and_blue_mid_cycle_resumes_from_the_watermark() {
    let stack = Stack::up(&[("CUTOVER_LOAD_KEYS", "20000")]);
    throttle_green_2(&stack, Some("0.05"));
    stack.start_upgrade();
    stack.wait_copying(2_000, Duration::from_secs(120));
    // Both green nodes lose blue, both ways; clients, proxies and blue see nothing.
    let cut = format!(
        "add table inet fault\n\
         add chain inet fault out {{ type filter hook output priority 0; }}\n\
         add chain inet fault in {{ type filter hook input priority 0; }}\n\
         add rule inet fault out ip daddr {BLUE} drop\n\
         add rule inet fault in ip saddr {BLUE} drop\n"
    );
    for green in ["green-1", "green-2"] {
        stack.nft(green, &cut);
    }
    stack.say("green and blue partitioned (nft in both green nodes)");
    std::thread::sleep(Duration::from_secs(10));
    let during = stack.status().expect("the orchestrator answers");
    assert_eq!(
        during["cycles"].as_array().map_or(0, Vec::len),
        0,
        "cycle 1 cannot end while blue is cut off: {during:#}"
    );
    for green in ["green-1", "green-2"] {
        stack.nft(green, "delete table inet fault");
    }
    stack.say("partition healed");
    throttle_green_2(&stack, None);
    let done = stack.wait_phase(&["reverse_sync"], PHASE_TIMEOUT);
    let copied = first_cycle_documents(&done);
    stack.say(&format!("cycle 1 copied {copied} documents"));
    assert!(
        (20_000..30_000).contains(&copied),
        "cycle 1 should copy each of 20,000 documents about once (resuming from its \
         watermark, not from the start): {copied}"
    );
    let outcome = stack.finish();
    nothing_lost(&outcome);
    assert_eq!(outcome.errors, 0, "clients saw errors:\n{}", outcome.report);
}

#[test]
#[ignore = "minutes of containers: cargo test --workspace --test containers -- --ignored"]
fn a_blue_node_killed_mid_cycle_and_restarted() {
    let stack = Stack::up(&[("CUTOVER_LOAD_KEYS", "20000")]);
    throttle_green_2(&stack, Some("0.05"));
    stack.start_upgrade();
    stack.wait_copying(2_000, Duration::from_secs(120));
    stack.docker("kill", "blue-2");
    std::thread::sleep(Duration::from_secs(5));
    stack.docker("start", "blue-2");
    throttle_green_2(&stack, None);
    let done = stack.wait_phase(&["reverse_sync"], PHASE_TIMEOUT);
    stack.say(&format!(
        "cycle 1 copied {} documents",
        first_cycle_documents(&done)
    ));
    let outcome = stack.finish();
    nothing_lost(&outcome);
    // While blue-2 is down its partitions are unavailable: clients get 503 for them.
    eprintln!(
        "outcome: {} requests, {} client errors (blue-2 down for 5 s), 0 lost of {} acknowledged",
        outcome.requests, outcome.errors, outcome.known
    );
}

#[test]
#[ignore = "minutes of containers: cargo test --workspace --test containers -- --ignored"]
fn the_orchestrators_node_frozen_in_the_hold_lets_blue_serve_again_then_cuts_over() {
    let stack = Stack::up(&[("CUTOVER_GREEN_1_FLAGS", "--fault-stall cutover-sealing=40s")]);
    stack.start_upgrade();
    stack.wait_log(
        "green-1",
        "fault point reached: stalling",
        PHASE_TIMEOUT,
        "the engine reaching the seal",
    );
    stack.docker("pause", "green-1");
    // The proxies' hold (5 s for a 500 ms budget) ends with 503 to held clients, then blue's
    // lease (hold + 5 s) lapses and blue serves again.
    wait_shape(&stack, false, Duration::from_secs(60));
    let (status, _) = stack
        .get(PROXY_1, "/v1/users/user-00000002")
        .expect("proxy-1 answers");
    assert_eq!(status, 200, "blue serves reads again");
    std::thread::sleep(Duration::from_secs(3));
    stack.docker("unpause", "green-1");
    let done = stack.wait_phase(&["reverse_sync"], PHASE_TIMEOUT);
    let holds = done["holds"].as_array().map_or(0, Vec::len);
    stack.say(&format!("cut over after {holds} holds"));
    assert!(
        holds >= 2,
        "the frozen attempt is undone, a later one cuts over: {done:#}"
    );
    let outcome = stack.finish();
    nothing_lost(&outcome);
    eprintln!(
        "outcome: {} requests, {} client errors (held requests answered 503 when the hold \
         ended, writes to blue fenced until its lease lapsed), 0 lost of {} acknowledged",
        outcome.requests, outcome.errors, outcome.known
    );
}

#[test]
#[ignore = "minutes of containers: cargo test --workspace --test containers -- --ignored"]
fn loss_and_delay_between_proxies_and_nodes_through_the_switch() {
    let delay = Duration::from_millis(50);
    let relays = |nodes: &[&str]| -> String {
        nodes
            .iter()
            .map(|node| {
                // TLS end to end through the relay: the proxy verifies the gateway's address,
                // which the lab certificate holds.
                let relay = relay::Relay::start(&format!("{node}:7070"), delay);
                format!("https://{GATEWAY}:{}", relay.port)
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let blue = relays(&["172.30.77.11", "172.30.77.12", "172.30.77.13"]);
    let green = relays(&["172.30.77.21", "172.30.77.22"]);
    let stack = Stack::up(&[
        ("CUTOVER_BLUE_UPSTREAMS", &blue),
        ("CUTOVER_GREEN_UPSTREAMS", &green),
    ]);
    // 1% of the packets between each proxy and the relays dropped, each way.
    let loss = format!(
        "add table inet fault\n\
         add chain inet fault out {{ type filter hook output priority 0; }}\n\
         add chain inet fault in {{ type filter hook input priority 0; }}\n\
         add rule inet fault out ip daddr {GATEWAY} numgen random mod 100 0 counter drop\n\
         add rule inet fault in ip saddr {GATEWAY} numgen random mod 100 0 counter drop\n"
    );
    for proxy in ["proxy-1", "proxy-2"] {
        stack.nft(proxy, &loss);
    }
    stack.say("50 ms each way and 1% loss between the proxies and every node");
    std::thread::sleep(Duration::from_secs(5));
    stack.start_upgrade();
    stack.wait_phase(&["reverse_sync"], PHASE_TIMEOUT);
    wait_shape(&stack, true, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(5));
    let dropped: u64 = ["proxy-1", "proxy-2"]
        .iter()
        .map(|proxy| {
            let pid = Stack::pid(proxy);
            let rules = stack::must(
                "nsenter",
                &["-t", &pid, "-n", "nft", "list", "table", "inet", "fault"],
            );
            rules
                .split("counter packets ")
                .skip(1)
                .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum();
    stack.say(&format!(
        "packets dropped between proxies and nodes: {dropped}"
    ));
    assert!(dropped > 0, "the loss rules dropped nothing");
    let outcome = stack.finish();
    nothing_lost(&outcome);
    assert_eq!(outcome.errors, 0, "clients saw errors:\n{}", outcome.report);
}
