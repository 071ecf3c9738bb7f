//! The compose topology of `deploy/compose.yaml` under a test's control: brought up from the
//! image of the binary cargo built for the tests, driven with `docker` and `docker-compose`
//! (the v1 tool), and taken down with its volumes when the test ends.
//!
//! The topology runs over mutual TLS: its `pki` service makes a lab CA and certificate, which
//! the stack copies out so that the test can call the daemons' admin ports from the host with
//! a client certificate, as an operator would.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant},
};

use cutover_tests::harness::{http, tls::Pki};
use serde_json::Value;
use tempfile::TempDir;

/// The compose project every scenario uses (one at a time: the network's subnet is fixed).
const PROJECT: &str = "cutover-faults";
/// The image tag the tests build, so that they never replace a user's `cutover:<version>`.
const TAG: &str = "test";
/// Where a test reads and checks through: proxy-1's client port.
pub const PROXY_1: &str = "172.30.77.31:8080";
/// The host's address on the compose network (its gateway).
pub const GATEWAY: &str = "172.30.77.1";
/// Prometheus's address on the compose network.
pub const PROMETHEUS: &str = "172.30.77.51:9090";
/// Where the `pki` service writes the lab CA and certificate (in the volume `pki`).
const PKI_DIR: &str = "/var/lib/cutover";
/// The name of the one certificate every daemon serves and presents.
const CERTIFICATE: &str = "cutover";

/// Runs `program args`, returning its output (never fails: the caller judges the status).
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

/// Runs `program args` and panics with its output unless it exits 0; its standard output.
pub fn must(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `cutover ARGS` in a container of its own on the compose network, with `docker run`
/// options `options`.
fn cutover_in_network(options: &[&str], args: &[&str]) -> Output {
    let network = format!("{PROJECT}_cutover");
    let image = format!("cutover:{TAG}");
    let mut all = vec!["run", "--rm", "--network", &network];
    all.extend_from_slice(options);
    all.push(&image);
    all.extend_from_slice(args);
    run("docker", &all)
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the orchestrator crate is in the workspace")
        .to_path_buf()
}

/// Fails the test, saying what to do, when Docker or docker-compose is missing.
fn require_docker() {
    let docker = run("sh", &["-c", "docker info --format '{{.ServerVersion}}'"]);
    let compose = run("sh", &["-c", "docker-compose version --short"]);
    assert!(
        docker.status.success() && compose.status.success(),
        "these tests run containers: they need a running Docker Engine and docker-compose \
         (v1). docker: {}; docker-compose: {}",
        String::from_utf8_lossy(&docker.stderr).trim(),
        String::from_utf8_lossy(&compose.stderr).trim()
    );
}

/// Builds the images once per test process: cutover's from the test binary, Prometheus's from
/// Debian's package.
fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_docker();
        let script = root().join("deploy/image.sh");
        let script = script.to_str().expect("a UTF-8 path");
        let started = Instant::now();
        let out = Command::new(script)
            .args(["cutover", env!("CARGO_BIN_EXE_cutover")])
            .env("CUTOVER_IMAGE_TAG", TAG)
            .output()
            .expect("runs deploy/image.sh");
        assert!(
            out.status.success(),
            "deploy/image.sh cutover failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
        let present = run(
            "docker",
            &[
                "image",
                "inspect",
                "cutover-prometheus:2.42.0",
                "--format",
                "ok",
            ],
        );
        if !present.status.success() {
            eprint!("{}", must(script, &["prometheus"]));
        }
        eprintln!("images ready in {:.1} s", started.elapsed().as_secs_f64());
    });
}

/// One scenario's running topology. Dropping it takes everything down, volumes included
/// (set CUTOVER_KEEP_CONTAINERS=1 to look at them after a failure).
pub struct Stack {
    env: Vec<(String, String)>,
    started: Instant,
    /// The topology's lab CA and certificate, copied out of its `pki` volume.
    pki: Pki,
    _pki_dir: TempDir,
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// What a scenario ends with.
#[derive(Debug)]
pub struct Outcome {
    /// Requests the client load sent.
    pub requests: u64,
    /// Of which failed (a 5xx, a transport error, or an answer contradicting a write).
    pub errors: u64,
    /// Keys with an acknowledged state that were read back.
    pub known: u64,
    /// Acknowledged writes not found with their last value.
    pub lost: u64,
    /// The check's report, as printed.
    pub report: String,
}

impl Stack {
    /// Brings the topology up with `env` set for compose (e.g. `CUTOVER_LOAD_KEYS`), waits
    /// for every daemon's health check, and for the load to have preloaded its keys.
    pub fn up(env: &[(&str, &str)]) -> Self {
        static ONE: Mutex<()> = Mutex::new(());
        let guard = ONE.lock().unwrap_or_else(|p| p.into_inner());
        images();
        let mut all = vec![("CUTOVER_VERSION".to_owned(), TAG.to_owned())];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let pki_dir = tempfile::Builder::new()
            .prefix("cutover-containers-pki-")
            .tempdir()
            .expect("a temporary folder for the lab certificates");
        let stack = Self {
            env: all,
            started: Instant::now(),
            pki: Pki {
                dir: pki_dir.path().to_path_buf(),
            },
            _pki_dir: pki_dir,
            _one_at_a_time: guard,
        };
        // A run that died before its Drop left containers and volumes: start clean.
        stack.compose_quiet(&["down", "--volumes", "--remove-orphans", "--timeout", "1"]);
        stack.compose(&["up", "--detach", "--quiet-pull"]);
        // The `pki` service has made the lab CA and certificate (every daemon waited for it):
        // a copy here lets the test call the admin ports with a client certificate.
        must(
            "docker",
            &[
                "cp",
                &format!("{}:{PKI_DIR}/.", Self::container("pki")),
                &stack.pki.dir.display().to_string(),
            ],
        );
        stack.wait_log(
            "load",
            "documents created",
            Duration::from_secs(180),
            "the client load's preload",
        );
        stack.say("up: every daemon healthy, the load preloaded and running");
        stack
    }

    /// Prints `what` with the time since the stack started.
    pub fn say(&self, what: &str) {
        eprintln!("[{:6.1} s] {what}", self.started.elapsed().as_secs_f64());
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .args(["--project-name", PROJECT, "--file"])
            .arg(root().join("deploy/compose.yaml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// `docker-compose args`; panics with the output unless it succeeds.
    pub fn compose(&self, args: &[&str]) -> String {
        let output = self.command(args).output().expect("runs docker-compose");
        assert!(
            output.status.success(),
            "`docker-compose {}` failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn compose_quiet(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("runs docker-compose")
    }

    /// The container of `service`.
    pub fn container(service: &str) -> String {
        format!("{PROJECT}_{service}_1")
    }

    /// The process id of `service`'s daemon on the host (for `nsenter`).
    pub fn pid(service: &str) -> String {
        must(
            "docker",
            &[
                "inspect",
                "--format",
                "{{.State.Pid}}",
                &Self::container(service),
            ],
        )
        .trim()
        .to_owned()
    }

    /// `cutover ARGS` inside `service`: (exit status, standard output).
    pub fn exec(&self, service: &str, args: &[&str]) -> (i32, String) {
        let mut all = vec!["exec", "-T", service, "cutover"];
        all.extend_from_slice(args);
        let output = self.compose_quiet(&all);
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    }

    /// The upgrade's status as `cutover upgrade status --output json` prints it.
    pub fn status(&self) -> Option<Value> {
        let (code, out) = self.exec("green-1", &["upgrade", "status", "--output", "json"]);
        if code != 0 {
            return None;
        }
        let start = out.find('{')?;
        serde_json::from_str(&out[start..]).ok()
    }

    /// Waits until the upgrade's phase is one of `wanted`; its status.
    pub fn wait_phase(&self, wanted: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            if let Some(status) = self.status() {
                if wanted.contains(&status["phase"].as_str().unwrap_or_default()) {
                    self.say(&format!("phase {}", status["phase"]));
                    return status;
                }
                last = status;
            }
            assert!(
                Instant::now() < deadline,
                "no phase {wanted:?} in {timeout:?}; last status: {last:#}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the first cycle has copied at least `documents` (summed over pipelines).
    pub fn wait_copying(&self, documents: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status() {
                let copied: u64 = status["pipelines"]
                    .as_array()
                    .map(|p| {
                        p.iter()
                            .filter_map(|p| p["documents"].as_u64())
                            .sum::<u64>()
                    })
                    .unwrap_or(0);
                let cycles = status["cycles"].as_array().map_or(0, Vec::len);
                if copied >= documents && cycles == 0 {
                    self.say(&format!("cycle 1 under way: {copied} documents copied"));
                    return;
                }
                assert!(
                    cycles == 0,
                    "cycle 1 ended before {documents} documents were seen copied: make it longer ({status:#})"
                );
            }
            assert!(
                Instant::now() < deadline,
                "cycle 1 did not copy {documents} documents in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the upgrade with the compose plan.
    pub fn start_upgrade(&self) {
        let (code, out) = self.exec(
            "green-1",
            &["upgrade", "start", "--plan", "/etc/cutover/plan.toml"],
        );
        assert_eq!(code, 0, "cutover upgrade start failed:\n{out}");
        self.say("upgrade started");
    }

    /// `service`'s logs.
    pub fn logs(service: &str) -> String {
        let output = run("docker", &["logs", &Self::container(service)]);
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    }

    /// Waits until `service` has logged `needle`.
    pub fn wait_log(&self, service: &str, needle: &str, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        while !Self::logs(service).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{what}: `{needle}` not in {service}'s log after {timeout:?}:\n{}",
                Self::logs(service)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `docker ACTION service`: kill, start, pause, unpause, restart.
    pub fn docker(&self, action: &str, service: &str) {
        must("docker", &[action, &Self::container(service)]);
        self.say(&format!("docker {action} {service}"));
    }

    /// `nft` inside `service`'s network namespace.
    pub fn nft(&self, service: &str, script: &str) {
        let pid = Self::pid(service);
        must("nsenter", &["-t", &pid, "-n", "nft", script]);
    }

    /// A document read through `target` (HOST:PORT) from inside the network, with the load's
    /// image: (status, body), or none when it could not be asked.
    pub fn get(&self, target: &str, path: &str) -> Option<(u16, Value)> {
        let url = format!("http://{target}{path}");
        let output = cutover_in_network(&[], &["health", "--print", &url]);
        let text = String::from_utf8_lossy(&output.stdout);
        let (status, body) = text.split_once('\n')?;
        Some((
            status.trim().parse().ok()?,
            serde_json::from_str(body).unwrap_or(Value::Null),
        ))
    }

    /// `GET path` on a daemon's TLS port at `addr` (HOST:PORT) from the host, presenting the
    /// lab certificate (`identity`, as every daemon does) or none: (status, body as JSON, or
    /// the text as a JSON string), or none when it could not be asked (the error printed).
    pub fn get_tls(&self, addr: &str, path: &str, identity: bool) -> Option<(u16, Value)> {
        let addr: SocketAddr = addr.parse().expect("an IP:PORT address");
        let client = self
            .pki
            .client(identity.then_some(CERTIFICATE))
            .expect("a TLS client with the lab CA");
        match client.request(addr, "GET", path, b"") {
            Ok(answer) => Some((
                answer.status,
                answer.json().unwrap_or_else(|_| Value::from(answer.text())),
            )),
            Err(error) => {
                eprintln!("GET {path} on {addr} over TLS: {error:#}");
                None
            }
        }
    }

    /// Waits until Prometheus has scraped each of its targets successfully (over TLS, with
    /// the lab CA); their count.
    pub fn wait_scraped(&self, timeout: Duration) -> usize {
        let addr: SocketAddr = PROMETHEUS.parse().expect("an IP:PORT address");
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok(answer) = http::get(addr, "/api/v1/targets?state=active")
                && let Ok(body) = answer.json()
                && let Some(targets) = body["data"]["activeTargets"].as_array()
            {
                if !targets.is_empty() && targets.iter().all(|t| t["health"] == "up") {
                    self.say(&format!("Prometheus scrapes its {} targets", targets.len()));
                    return targets.len();
                }
                last = targets
                    .iter()
                    .map(|t| format!("{} {} {}", t["scrapeUrl"], t["health"], t["lastError"]))
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not scrape every target in {timeout:?}:\n{last}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Stops the load (it writes its ledger), reads every acknowledged key back through
    /// proxy-1, and returns what it found.
    pub fn finish(&self) -> Outcome {
        self.compose(&["stop", "--timeout", "60", "load"]);
        let volume = format!("{PROJECT}_load:/var/lib/cutover");
        let output = cutover_in_network(
            &["--volume", &volume],
            &[
                "load",
                "check",
                "--out",
                "/var/lib/cutover/load.json",
                "--target",
                PROXY_1,
            ],
        );
        let report = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let number = |before: &str| -> u64 {
            report
                .split(before)
                .next()
                .and_then(|head| head.split_whitespace().last())
                .and_then(|n| n.trim_matches(',').parse().ok())
                .unwrap_or_else(|| panic!("no `{before}` figure in the check's report:\n{report}"))
        };
        let outcome = Outcome {
            requests: number(" requests,"),
            errors: number(" errors"),
            known: number(" with an acknowledged state"),
            lost: number(" lost;"),
            report: report.clone(),
        };
        self.say(&format!(
            "load stopped: {} requests, {} client errors; check: {} acknowledged keys, {} lost",
            outcome.requests, outcome.errors, outcome.known, outcome.lost
        ));
        if outcome.errors > 0 {
            eprintln!("{}", Self::logs("load"));
        }
        outcome
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::env::var_os("CUTOVER_KEEP_CONTAINERS").is_some() {
            eprintln!("CUTOVER_KEEP_CONTAINERS: leaving project {PROJECT} up");
            return;
        }
        self.compose_quiet(&["down", "--volumes", "--remove-orphans", "--timeout", "5"]);
    }
}
