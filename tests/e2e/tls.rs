//! TLS end to end, on real processes with certificates made at run time by `cutover tls lab`:
//! a cutover and a rollback over mutual TLS under a live load; clients with a certificate of
//! another CA, an expired one, none, or plain text refused with nothing changed; a token
//! refused on its way in clear text to a host outside the loopback range (a network namespace
//! the test makes); a certificate rotated under load with no client error.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime},
};

use cutover_orchestrator::demo::{
    load::{self, COLLECTION, Ledger, LoadConfig},
    rig::{FORWARD, REVERSE},
};
use cutover_proto::v1::Document;
use cutover_tests::harness::{
    Cluster, NodeProcess, OrchestratorProcess, http,
    tls::{Pki, TlsClient},
    wait_until,
};
use serde_json::Value;

use crate::{
    cluster,
    cutover::{Background, lost_by, settle},
};

/// Documents blue starts with.
const DOCS: u64 = 2_000;
/// The bearer token of every daemon here.
const TOKEN: &str = "s3cret-token";

/// The strings of `flags`, as the harness takes them.
fn refs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// `cutover upgrade ARGS --output json` against `orchestrator` over TLS with `identity`'s
/// certificate: exit code and JSON (the output as text when it is not JSON).
fn upgrade(
    cluster: &Cluster,
    orchestrator: &OrchestratorProcess,
    pki: &Pki,
    identity: &str,
    token: &Path,
    args: &[&str],
) -> (i32, Value) {
    let url = format!("https://127.0.0.1:{}", orchestrator.grpc.port());
    let mut all: Vec<String> = ["upgrade", "--orchestrator", &url, "--output", "json"]
        .map(str::to_owned)
        .to_vec();
    all.extend(pki.operator_flags(identity));
    all.extend(["--token-file".to_owned(), token.display().to_string()]);
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let out = cluster.run(&all).expect("cutover upgrade runs");
    let value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|_| Value::String(format!("{}{}", out.stdout, out.stderr)));
    (out.code.unwrap_or(-1), value)
}

fn wait_phase(
    cluster: &Cluster,
    orchestrator: &OrchestratorProcess,
    pki: &Pki,
    token: &Path,
    wanted: &str,
) -> Value {
    let last = std::cell::RefCell::new(Value::Null);
    wait_until(&format!("phase {wanted}"), Duration::from_secs(120), || {
        let (code, status) = upgrade(cluster, orchestrator, pki, "operator", token, &["status"]);
        let reached = code == 0 && status["phase"] == wanted;
        *last.borrow_mut() = status.clone();
        reached.then_some(status)
    })
    .unwrap_or_else(|e| panic!("{e}; the last status: {}", last.borrow()))
}

/// Loads `node` with the demo's documents through its `Sink`, over mutual TLS.
fn preload(node: &NodeProcess, pki: &Pki) {
    let document = |n| Document {
        collection: COLLECTION.into(),
        id: load::id(n),
        version: 1,
        seq: 0,
        body: load::body(n).into(),
        tombstone: false,
    };
    let read = |path: std::path::PathBuf| std::fs::read(path).expect("pem");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(pki.ca())))
        .identity(tonic::transport::Identity::from_pem(
            read(pki.cert("operator")),
            read(pki.key("operator")),
        ));
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", node.grpc.port()))
            .expect("endpoint")
            .tls_config(tls)
            .expect("tls");
    crate::apply_over(endpoint, Some(TOKEN), (0..DOCS).map(document).collect());
}

/// The ids of `ledger` whose last acknowledged write `node` does not hold, read over TLS.
fn lost(ledger: &Ledger, node: &NodeProcess, client: &TlsClient) -> Vec<load::Lost> {
    lost_by(ledger, |path| client.request(node.http, "GET", path, b""))
}

#[test]
fn a_cutover_and_a_rollback_over_mutual_tls_lose_nothing_and_strangers_change_nothing() {
    let mut cluster = cluster();
    let names = ["blue", "green", "proxy", "orchestrator", "operator"];
    let pki = Pki::make(&cluster, "pki", &names).expect("a lab CA");
    cluster.ready_over_tls(pki.client(None).expect("a client"));
    let token = cluster.dir("secrets").expect("dir").join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let token_flag = ["--token-file".to_owned(), token.display().to_string()];
    let flags = |name: &str| [pki.daemon_flags(name), token_flag.to_vec()].concat();
    let start = |name: &str| {
        cluster
            .start_node(name, &refs(&flags(name)))
            .expect("a node starts")
    };
    let (blue, green) = (start("blue"), start("green"));
    let https = |n: &NodeProcess| vec![format!("https://localhost:{}", n.http.port())];
    let proxy_flags = [
        flags("proxy"),
        ["--upstream-protocol", "h2c", "--listen-tls"]
            .map(str::to_owned)
            .to_vec(),
    ]
    .concat();
    let proxy_args = refs(&proxy_flags);
    let proxies: Vec<_> = ["proxy-1", "proxy-2"]
        .iter()
        .map(|name| {
            let args: Vec<&str> = if *name == "proxy-1" {
                // proxy-1 serves its clients in plain text, proxy-2 over TLS.
                proxy_args[..proxy_args.len() - 1].to_vec()
            } else {
                proxy_args.clone()
            };
            cluster
                .start_proxy(name, &https(&blue), &https(&green), &args)
                .expect("a proxy starts")
        })
        .collect();
    preload(&blue, &pki);
    let orchestrator = cluster
        .start_orchestrator_with("orchestrator", &refs(&flags("orchestrator")))
        .expect("the orchestrator starts");
    let plan = cluster.dir("plans").expect("plans").join("plan.toml");
    let token_path = token.display();
    std::fs::write(
        &plan,
        format!(
            "[blue]\nsources = [\"https://localhost:{}\"]\ntoken_file = \"{token_path}\"\n\
             [green]\nsinks = [\"https://localhost:{}\"]\ntoken_file = \"{token_path}\"\n\
             [proxies]\ncontrol = [\"https://localhost:{}\", \"https://localhost:{}\"]\n\
             token_file = \"{token_path}\"\n\
             [collections.{COLLECTION}]\nforward = '{FORWARD}'\nreverse = '{REVERSE}'\n",
            blue.grpc.port(),
            green.grpc.port(),
            proxies[0].admin.port(),
            proxies[1].admin.port(),
        ),
    )
    .expect("plan");
    let plan = plan.display().to_string();
    let operator = pki.client(Some("operator")).expect("operator client");

    // The load writes through the plain-text client port of proxy-1; the proxy reaches the
    // nodes over mutual TLS.
    let config = LoadConfig {
        targets: vec![proxies[0].listen],
        rate: 300,
        keys: DOCS,
        workers: 4,
    };
    let background = Background::start(&config, Ledger::default());
    settle(Duration::from_secs(1));
    let run = |identity: &str, args: &[&str]| {
        upgrade(&cluster, &orchestrator, &pki, identity, &token, args)
    };
    let (code, started) = run("operator", &["start", "--plan", &plan]);
    assert_eq!(code, 0, "start over mutual TLS: {started}");
    let status = wait_phase(&cluster, &orchestrator, &pki, &token, "reverse_sync");
    assert!(
        status["cycles"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["final_cycle"] == true)),
        "a final cycle ran: {status}"
    );
    background.wait_writes(100);
    let seen = background.stop();
    assert_eq!(seen.errors, 0, "client errors: {:?}", seen.error_samples);
    let missing = lost(&seen.ledger, &green, &operator);
    assert!(
        missing.is_empty(),
        "lost on green: {:?}",
        &missing[..missing.len().min(5)]
    );

    // proxy-2's clients speak TLS, and reach green through it.
    let through = pki
        .client(None)
        .expect("client")
        .request(
            proxies[1].listen,
            "GET",
            &format!("/v1/{COLLECTION}/{}", load::id(1)),
            b"",
        )
        .expect("a GET over TLS through proxy-2");
    assert_eq!(through.status, 200, "{}", through.text());

    // The rollback, under the same load.
    let background = Background::start(&config, seen.ledger);
    settle(Duration::from_secs(1));
    let (code, answer) = run("operator", &["rollback"]);
    assert_eq!(code, 0, "rollback over mutual TLS: {answer}");
    wait_phase(&cluster, &orchestrator, &pki, &token, "rolled_back");
    background.wait_writes(100);
    let seen = background.stop();
    assert_eq!(seen.errors, 0, "client errors: {:?}", seen.error_samples);
    let missing = lost(&seen.ledger, &blue, &operator);
    assert!(
        missing.is_empty(),
        "lost on blue: {:?}",
        &missing[..missing.len().min(5)]
    );

    // A client with a certificate of another CA: refused, with what to do, and nothing
    // changed (the orchestrator still reports the rollback; green holds no document it sent).
    let other = Pki::make(&cluster, "other", &["operator"]).expect("another CA");
    let stranger = [
        "--tls-cert".to_owned(),
        other.cert("operator").display().to_string(),
        "--tls-key".to_owned(),
        other.key("operator").display().to_string(),
        "--tls-ca".to_owned(),
        pki.ca().display().to_string(),
        "--token-file".to_owned(),
        token.display().to_string(),
    ];
    let url = format!("https://127.0.0.1:{}", orchestrator.grpc.port());
    let mut abort = vec![
        "upgrade".to_owned(),
        "--orchestrator".to_owned(),
        url.clone(),
    ];
    abort.extend(stranger.iter().cloned());
    abort.extend(["start".to_owned(), "--plan".to_owned(), plan.clone()]);
    let out = cluster.run(&abort).expect("runs");
    assert_ne!(out.code, Some(0), "a stranger's start is refused");
    assert!(
        out.stderr.contains("TLS") && out.stderr.contains("not signed by"),
        "the refusal says why: {}",
        out.stderr
    );
    let (_, status) = run("operator", &["status"]);
    assert_eq!(status["phase"], "rolled_back", "nothing changed: {status}");
    let write = other.client(Some("operator")).expect("client").request(
        green.http,
        "PUT",
        "/v1/users/stranger",
        br#"{"name":"x"}"#,
    );
    assert!(
        write.is_err(),
        "green refuses another CA's client: {write:?}"
    );
    let absent = operator
        .request(green.http, "GET", "/v1/users/stranger", b"")
        .expect("a GET");
    assert_eq!(absent.status, 404, "nothing was written: {}", absent.text());

    // An expired certificate of the right CA.
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    pki.issue("expired", now - 2 * day, now - day)
        .expect("an expired certificate");
    let (code, answer) = run("expired", &["status"]);
    assert_ne!(code, 0, "an expired certificate is refused: {answer}");
    assert!(answer.to_string().contains("expired"), "{answer}");

    // No client certificate: the ops endpoints only; plain text: told to use TLS.
    let anonymous = pki.client(None).expect("client");
    let refused = anonymous
        .request(green.http, "GET", "/v1/users/x", b"")
        .expect("an answer");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("client_certificate_required"));
    let metrics = anonymous
        .request(green.http, "GET", "/metrics", b"")
        .expect("metrics without a client certificate");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text()
            .contains("cutover_tls_certificate_not_after_timestamp_seconds{port=\"node\"}"),
        "the expiry gauge: {}",
        metrics.text()
    );
    let plain = http::get(green.http, "/healthz").expect("an answer");
    assert_eq!(plain.status, 400);
    assert!(plain.text().contains("speaks TLS"), "{}", plain.text());
}

#[test]
fn a_certificate_rotated_under_load_costs_no_client_an_error() {
    let mut cluster = cluster();
    let pki = Pki::make(&cluster, "pki", &["node", "client"]).expect("a lab CA");
    cluster.ready_over_tls(pki.client(None).expect("client"));
    let node = cluster
        .start_node("node", &refs(&pki.daemon_flags("node")))
        .expect("node");
    let client = pki.client(Some("client")).expect("client");
    let served = |client: &TlsClient| {
        client
            .exchange(node.http, "GET", "/healthz", b"")
            .expect("an answer")
            .1
    };
    let first = served(&client);

    // A load of new connections (each request a handshake) and keep-alive-free writes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = std::thread::spawn({
        let (client, stop, addr) = (client.clone(), stop.clone(), node.http);
        move || {
            let (mut ok, mut errors) = (0u64, Vec::new());
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = format!(r#"{{"name":"n{n}"}}"#);
                let path = format!("/v1/rotation/k{}", n % 50);
                match client.request(addr, "PUT", &path, body.as_bytes()) {
                    Ok(r) if r.status < 300 => ok += 1,
                    Ok(r) => errors.push(format!("{} {}", r.status, r.text())),
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            (ok, errors)
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    // A new certificate in place: picked up when the files change.
    let reissue = |pki: &Pki| {
        let dir = pki.dir.display().to_string();
        let out = cluster
            .run(["tls", "lab", "--dir", &dir, "--name", "node"])
            .expect("runs");
        assert_eq!(out.code, Some(0), "{out:?}");
    };
    reissue(&pki);
    let second = wait_until(
        "the new certificate served",
        Duration::from_secs(10),
        || {
            let now = served(&client);
            (now != first).then_some(now)
        },
    )
    .expect("the node serves the rotated certificate");
    // Another, announced with SIGHUP.
    reissue(&pki);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.daemon.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    wait_until(
        "the third certificate served",
        Duration::from_secs(10),
        || {
            let now = served(&client);
            (now != second && now != first).then_some(())
        },
    )
    .expect("the node serves the certificate of the SIGHUP");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, errors) = load.join().expect("the load");
    assert!(
        errors.is_empty(),
        "{} errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    assert!(ok > 20, "the load ran: {ok} writes");
    let metrics = client
        .request(node.http, "GET", "/metrics", b"")
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("cutover_tls_reloads_total{outcome=\"loaded\"}"),
        "{metrics}"
    );
}

/// A host of its own: a network namespace joined to this one by a veth pair, torn down when
/// dropped.
struct NamespaceHost {
    name: String,
    /// Its address, outside the loopback range.
    address: std::net::Ipv4Addr,
    node: Option<Child>,
}

impl NamespaceHost {
    fn create() -> Result<Self, String> {
        let id = std::process::id() % 200 + 20;
        let name = format!("cutover-tls-{}", std::process::id());
        let (outer, inner) = (format!("ct{id}o"), format!("ct{id}i"));
        let address = std::net::Ipv4Addr::new(10, 213, id as u8, 2);
        let host = Self {
            name: name.clone(),
            address,
            node: None,
        };
        let ns = |args: &str| format!("netns exec {name} ip {args}");
        for args in [
            format!("netns add {name}"),
            format!("link add {outer} type veth peer name {inner}"),
            format!("link set {inner} netns {name}"),
            format!("addr add 10.213.{id}.1/30 dev {outer}"),
            format!("link set {outer} up"),
            ns(&format!("addr add {address}/30 dev {inner}")),
            ns(&format!("link set {inner} up")),
            ns("link set lo up"),
        ] {
            let out = Command::new("ip")
                .args(args.split(' '))
                .output()
                .map_err(|e| format!("`ip` cannot run ({e}): this test needs iproute2 and root"))?;
            if !out.status.success() {
                return Err(format!(
                    "`ip {args}` failed: {} (this test needs root to make a network namespace)",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(host)
    }

    /// Starts `binary node` inside the namespace on its address.
    fn start_node(&mut self, binary: &str, dir: &Path, token: &Path) -> (SocketAddr, SocketAddr) {
        let http = SocketAddr::from((self.address, 17070));
        let grpc = SocketAddr::from((self.address, 17071));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, binary, "node", "--data-dir"])
            .arg(dir)
            .args(["--http", &http.to_string(), "--grpc", &grpc.to_string()])
            .arg("--token-file")
            .arg(token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the node starts in the namespace");
        self.node = Some(child);
        wait_until("the namespace's node", Duration::from_secs(30), || {
            http::get(http, "/readyz").ok().filter(|r| r.status == 200)
        })
        .expect("the node in the namespace is ready");
        (http, grpc)
    }
}

impl Drop for NamespaceHost {
    fn drop(&mut self) {
        if let Some(mut node) = self.node.take() {
            let _ = node.kill();
            let _ = node.wait();
        }
        // Deleting the namespace deletes its end of the veth pair, and so the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn a_token_is_never_sent_in_clear_text_beyond_loopback() {
    let mut host = NamespaceHost::create().unwrap_or_else(|why| panic!("{why}"));
    let cluster = cluster();
    let token = cluster.dir("secrets").expect("dir").join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let data = cluster.dir("far").expect("dir").join("data");
    let (_, grpc) = host.start_node(env!("CARGO_BIN_EXE_cutover"), &data, &token);
    let plan = crate::write_plan(
        &cluster,
        "far.toml",
        &format!(
            "[blue]\nsources = [\"http://{grpc}\"]\ntoken_file = \"{}\"\n\
             [green]\nsinks = [\"http://127.0.0.1:1\"]\n",
            token.display()
        ),
    );
    let orchestrator = cluster
        .start_orchestrator("orchestrator")
        .expect("orchestrator");
    let (code, answer) = crate::upgrade(&cluster, &orchestrator, &["start", "--plan", &plan]);
    assert_ne!(code, 0, "refused: {answer}");
    let text = answer.to_string();
    assert!(
        text.contains(&format!(
            "refusing to send blue.token_file in clear text to http://{grpc}"
        )) && text.contains("--insecure-token"),
        "the refusal names the address and the flag: {text}"
    );
    let (_, status) = crate::upgrade(&cluster, &orchestrator, &["status"]);
    assert!(
        status["upgrade_id"].as_str().unwrap_or_default().is_empty(),
        "nothing was started: {status}"
    );

    // The same plan with --insecure-token (a lab): the token may go.
    let lab = cluster
        .start_orchestrator_with("lab", &["--insecure-token"])
        .expect("orchestrator");
    let (code, answer) = crate::upgrade(&cluster, &lab, &["start", "--plan", &plan]);
    assert_eq!(code, 0, "allowed with --insecure-token: {answer}");
}

#[test]
fn the_nodes_of_a_cluster_forward_to_each_other_over_mutual_tls() {
    let mut cluster = cluster();
    let pki = Pki::make(&cluster, "pki", &["n0", "n1", "client"]).expect("a lab CA");
    cluster.ready_over_tls(pki.client(None).expect("client"));
    let names = ["n0", "n1"];
    let (file, addrs) = crate::clusters::init_file(&cluster, &names, 8);
    let layout = cutover_node::cluster::Cluster::load(&file).expect("the file parses");
    let file = file.display().to_string();
    let nodes: Vec<NodeProcess> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut flags = vec!["--cluster".to_owned(), file.clone(), "--name".to_owned()];
            flags.push((*name).to_owned());
            flags.extend(pki.daemon_flags(name));
            let data = cluster.dir(name).expect("dir").join("data");
            cluster
                .start_node_on(name, data, addrs[2 * i], addrs[2 * i + 1], &refs(&flags))
                .expect("a node of the cluster starts")
        })
        .collect();
    let client = pki.client(Some("client")).expect("client");
    // A document n1 owns, written and read through n0: n0 forwards it over TLS.
    let id = crate::clusters::first_id_owned_by(&layout, "n1");
    let path = format!("/v1/users/{id}");
    let written = client
        .request(nodes[0].http, "PUT", &path, br#"{"name":"Ada"}"#)
        .expect("a PUT through n0");
    assert!(
        written.status < 300,
        "{} {}",
        written.status,
        written.text()
    );
    for node in &nodes {
        let read = client.request(node.http, "GET", &path, b"").expect("a GET");
        assert_eq!(read.status, 200, "{}", read.text());
        assert!(read.text().contains("Ada"), "{}", read.text());
    }
}
