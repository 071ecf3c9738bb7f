//! Prometheus and Grafana against the real daemons: `promtool` checks the compose
//! configuration, the alert rules and their unit tests (`deploy/prometheus/`); Debian's
//! `prometheus` scrapes blue, green, two proxies and the orchestrator, each its own process,
//! through an upgrade and loads the rules; every metric name the rules and the dashboard
//! (`deploy/grafana/cutover.json`) query must be one the daemons export.
//!
//! They need Debian's `prometheus` package (`prometheus` and `promtool` on the `PATH`), and
//! fail saying so without it: `.ci/run` installs it.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use cutover_tests::harness::{Binary, Daemon, http, wait_until};
use serde_json::Value;

use crate::cutover::{Background, Stack, settle};

/// How long Prometheus may take to start, scrape every target and evaluate the rules.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the orchestrator crate is in the workspace")
        .to_path_buf()
}

/// Where `tool` is on the `PATH`. A missing tool fails the test, saying what to install:
/// a test that cannot run must not pass.
fn installed(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(tool))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{tool} is not installed: this test runs Debian's `prometheus` package (it has \
                 `prometheus` and `promtool`); `apt-get install prometheus` (.ci/run does)"
            )
        })
}

/// Runs `promtool ARGS` in `deploy/prometheus/`; asserts it succeeded and returns what it
/// printed (both streams: it reports on either).
fn promtool(promtool: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(root().join("deploy/prometheus"))
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    eprintln!("$ promtool {}\n{text}", args.join(" "));
    text
}

/// The alert names of the rules file.
fn alerts(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// `(alert, fires)` for every case of a `promtool test rules` file: `fires` unless the case
/// expects `exp_alerts: []`.
fn cases(tests: &str) -> Vec<(String, bool)> {
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let name = line.strip_prefix("alertname: ")?;
            let expected = lines[i + 1..]
                .iter()
                .find(|l| l.starts_with("exp_alerts:"))?;
            Some((name.to_owned(), *expected != "exp_alerts: []"))
        })
        .collect()
}

#[test]
fn promtool_checks_the_configuration_the_rules_and_their_tests() {
    let tool = installed("promtool");
    let config = promtool(&tool, &["check", "config", "prometheus.yml"]);
    assert!(
        config.contains("SUCCESS: 1 rule files found"),
        "prometheus.yml loads the rules: {config}"
    );
    let dir = root().join("deploy/prometheus/rules");
    let rules = std::fs::read_to_string(dir.join("cutover.yml")).expect("the rules");
    let names = alerts(&rules);
    assert_eq!(names.len(), 6, "{names:?}");
    let checked = promtool(&tool, &["check", "rules", "rules/cutover.yml"]);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{checked}"
    );
    let tested = promtool(&tool, &["test", "rules", "rules/cutover.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // promtool checks the cases it is given: that each alert has both kinds is ours to check.
    let tests = std::fs::read_to_string(dir.join("cutover.test.yml")).expect("the tests");
    let cases = cases(&tests);
    for name in &names {
        for fires in [true, false] {
            assert!(
                cases.contains(&(name.clone(), fires)),
                "cutover.test.yml has no case where {name} {}",
                if fires { "fires" } else { "stays quiet" }
            );
        }
    }
}

/// Percent-encodes `text` for a URL's query.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running Prometheus (killed when dropped) and its HTTP API.
struct Prometheus {
    _daemon: Daemon,
    addr: SocketAddr,
}

impl Prometheus {
    /// Starts `binary` in `dir` scraping `jobs` (name, targets) every second with the rules
    /// of `deploy/prometheus/rules/cutover.yml`, and waits until it is ready.
    fn start(
        binary: &Path,
        dir: &Path,
        addr: SocketAddr,
        jobs: &[(&str, Vec<SocketAddr>)],
    ) -> Self {
        let rules = root().join("deploy/prometheus/rules/cutover.yml");
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n",
            rules.display()
        );
        for (job, targets) in jobs {
            let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ));
        }
        std::fs::write(dir.join("prometheus.yml"), config).expect("the configuration");
        let daemon = Binary::new(binary)
            .spawn(
                "prometheus",
                dir,
                [
                    "--config.file=prometheus.yml".to_owned(),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    format!("--web.listen-address={addr}"),
                ],
            )
            .expect("prometheus starts");
        wait_until("prometheus to be ready", PROMETHEUS_TIMEOUT, || {
            http::get(addr, "/-/ready").ok().filter(|r| r.status == 200)
        })
        .unwrap_or_else(|e| panic!("{e}:\n{}", daemon.stderr().unwrap_or_default()));
        Self {
            _daemon: daemon,
            addr,
        }
    }

    /// `GET PATH` of the API: its `data`.
    fn api(&self, path: &str) -> Value {
        let response = http::get(self.addr, path).expect("the API answers");
        let body = response.json().expect("JSON");
        assert_eq!(body["status"], "success", "{path}: {body}");
        body["data"].clone()
    }

    /// The instant vector of `query`: each series' labels and value.
    fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(query)));
        data["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|s| {
                let value = s["value"][1].as_str().and_then(|v| v.parse().ok());
                (s["metric"].clone(), value.unwrap_or(f64::NAN))
            })
            .collect()
    }

    /// Waits until `query` gives a series whose value passes `ok`; that value.
    fn wait_for(&self, query: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let last = std::cell::RefCell::new(Vec::new());
        wait_until(query, PROMETHEUS_TIMEOUT, || {
            let result = self.query(query);
            let found = result.iter().map(|(_, v)| *v).find(|v| ok(*v));
            *last.borrow_mut() = result;
            found
        })
        .unwrap_or_else(|e| panic!("{e}; the last answer: {:?}", last.borrow()))
    }
}

/// The names of the series on `addr`'s `/metrics` (a histogram's `_bucket`, `_sum` and
/// `_count` each).
fn exported(addr: SocketAddr) -> BTreeSet<String> {
    let text = http::get(addr, "/metrics").expect("/metrics").text();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The metric names a PromQL expression reads: `cutover_*` identifiers, and `up`.
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for word in expr.split(|c: char| !ident(c)) {
        if word.starts_with("cutover_") || word == "up" {
            names.insert(word.to_owned());
        }
    }
    names
}

/// Every `expr` of a Grafana dashboard (its panels' queries, at any depth).
fn exprs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => into.push(expr.clone()),
                    _ => exprs(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, into)),
        _ => {}
    }
}

#[test]
fn prometheus_scrapes_every_daemon_and_loads_the_rules_during_an_upgrade() {
    let binary = installed("prometheus");
    let stack = Stack::start();
    let orchestrator = stack.orchestrator(&[]);
    let dir = stack.cluster.dir("prometheus").expect("its folder");
    let addr = stack.cluster.free_addr().expect("a port");
    let proxies: Vec<SocketAddr> = stack.proxies.iter().map(|p| p.admin).collect();
    let prometheus = Prometheus::start(
        &binary,
        &dir,
        addr,
        &[
            ("node", vec![stack.blue.http, stack.green.http]),
            ("proxy", proxies.clone()),
            ("orchestrator", vec![orchestrator.http]),
        ],
    );
    // Clients write through the proxies all along: the proxies' and the nodes' request
    // series, and a hold with requests in it.
    let background = Background::start(&stack.load_config(), Default::default());
    settle(Duration::from_millis(500));
    stack.start_upgrade(&orchestrator, &[]);
    stack.wait_phase(&orchestrator, "reverse_sync");

    // Every target scraped, and up: two nodes, two proxies, the orchestrator.
    prometheus.wait_for("count(up == 1)", |v| v == 5.0);
    let up = prometheus.query("up");
    assert!(up.iter().all(|(_, v)| *v == 1.0), "{up:?}");
    prometheus.wait_for(r#"cutover_orchestrator_phase{phase="reverse_sync"}"#, |v| {
        v == 1.0
    });
    let copied = prometheus.wait_for("sum(cutover_orchestrator_documents_copied_total)", |v| {
        v >= 5_000.0
    });
    eprintln!("prometheus: {copied} documents copied");
    prometheus.wait_for(r#"sum(cutover_proxy_requests_total{class="2xx"})"#, |v| {
        v > 0.0
    });
    prometheus.wait_for(
        r#"sum(cutover_node_http_request_duration_seconds_count{method="PUT"})"#,
        |v| v > 0.0,
    );
    prometheus.wait_for("cutover_orchestrator_pause_budget_seconds", |v| v == 0.5);
    let finished = background.stop();
    assert_eq!(finished.errors, 0, "{:?}", finished.error_samples);

    // The rules are loaded and evaluated without error.
    let rules = wait_until("every rule evaluated", PROMETHEUS_TIMEOUT, || {
        let groups = prometheus.api("/api/v1/rules")["groups"].clone();
        let rules: Vec<Value> = groups
            .as_array()?
            .iter()
            .filter(|g| g["name"] == "cutover")
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == 6 && rules.iter().all(|r| r["health"] == "ok")).then_some(rules)
    })
    .unwrap_or_else(|e| panic!("{e}: {}", prometheus.api("/api/v1/rules")));

    // Every name the rules and the dashboard read is exported by a daemon (`up`: by
    // Prometheus, seen above).
    let mut names = BTreeSet::from(["up".to_owned()]);
    let daemons = [stack.blue.http, stack.green.http, orchestrator.http];
    for addr in daemons.into_iter().chain(proxies) {
        names.extend(exported(addr));
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/cutover.json"))
            .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    exprs(&dashboard["panels"], &mut queries);
    assert!(queries.len() >= 10, "the dashboard's queries: {queries:?}");
    for query in &queries {
        // Grafana's own variable, as Grafana would set it for a short range.
        prometheus.query(&query.replace("$__rate_interval", "1m"));
    }
    queries.extend(
        rules
            .iter()
            .filter_map(|r| r["query"].as_str().map(str::to_owned)),
    );
    let mut read = BTreeSet::new();
    for query in &queries {
        let used = names_in(query);
        assert!(!used.is_empty(), "{query} reads no metric");
        let missing: Vec<_> = used.difference(&names).collect();
        assert!(
            missing.is_empty(),
            "{query} reads {missing:?}, which no daemon exports"
        );
        read.extend(used);
    }
    eprintln!(
        "the rules and the dashboard read {} metrics, all exported",
        read.len()
    );
}
