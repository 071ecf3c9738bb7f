//! The commands that need no daemon: `plan check` (and the same check that `upgrade start
//! --dry-run` runs before it connects), `completions` and `man`.

use std::process::Command;

use cutover_tests::harness::Cluster;
use serde_json::Value;

use crate::{cluster, write_plan};

const NODES: &str = "[blue]\nsources = [\"http://127.0.0.1:1\"]\n\
                     [green]\nsinks = [\"http://127.0.0.1:2\"]\n";

/// Bad plans: file name, text, and the field its refusal must name.
const BAD: &[(&str, &str, &str)] = &[
    ("typo.toml", "pause_budjet = \"1s\"\n", "pause_budjet"),
    (
        "no-sources.toml",
        "[blue]\nsources = []\n[green]\nsinks = [\"http://127.0.0.1:2\"]\n",
        "blue.sources",
    ),
    (
        "endpoint.toml",
        "[blue]\nsources = [\"10.0.0.1:7001\"]\n[green]\nsinks = [\"http://127.0.0.1:2\"]\n",
        "blue.sources[0]",
    ),
    (
        "forward.toml",
        "[collections.users]\nforward = '.a |'\n",
        "collections.users.forward",
    ),
    (
        "reverse.toml",
        "[collections.users]\nforward = '.a = 1'\nreverse = 'del(.a'\n",
        "collections.users.reverse",
    ),
    (
        "rename.toml",
        "[collections.a]\nrename = \"c\"\n[collections.b]\nrename = \"c\"\n",
        "collections.b.rename",
    ),
    (
        "native.toml",
        "[collections.users]\nforward = '.a = 1'\nforward_native = \"split_name\"\n",
        "forward and forward_native are both given",
    ),
];

/// Writes a bad plan; those that only break a collection get valid nodes.
fn write_bad(cluster: &Cluster, name: &str, text: &str) -> String {
    let text = if text.starts_with("[collections") {
        format!("{NODES}{text}")
    } else {
        text.to_owned()
    };
    write_plan(cluster, name, &text)
}

#[test]
fn plan_check_reports_a_valid_plan_without_contacting_anything() {
    let cluster = cluster();
    // The endpoints point at nothing: the check must not try them.
    let plan = write_plan(
        &cluster,
        "good.toml",
        &format!(
            "pause_budget = \"250ms\"\n{NODES}[collections.users]\n\
             forward = '.schema = 2 | del(.legacy)'\nreverse = 'del(.schema)'\n\
             rename = \"people\"\n[collections.orders]\nforward = 'select(.ref | test(\"^A\"))'\n"
        ),
    );
    let out = cluster.run(["plan", "check", &plan]).expect("runs");
    assert_eq!(out.code, Some(0), "{out:?}");
    for part in [
        "good.toml: valid (every field checked, every program compiled)",
        "pause_budget                250ms",
        "collections.users\n  green_name                  people\n",
        "forward_runs_on             fast path",
        "forward_runs_on             jaq",
        "reverse                     none: a rollback would lose",
        "Endpoints were not contacted",
        "--dry-run",
    ] {
        assert!(out.stdout.contains(part), "{part:?} in:\n{}", out.stdout);
    }

    let out = cluster
        .run(["plan", "check", &plan, "--output", "json"])
        .expect("runs");
    assert_eq!(out.code, Some(0), "{out:?}");
    let report: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(report["valid"], true);
    assert_eq!(report["endpoints_contacted"], false);
    assert_eq!(report["settings"]["pause_budget"], "250ms");
    let collections = report["collections"].as_array().expect("a list");
    let runs_on: Vec<(&str, &str)> = collections
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or_default();
            (name, c["forward_runs_on"].as_str().unwrap_or_default())
        })
        .collect();
    assert_eq!(runs_on, [("orders", "jaq"), ("users", "fast_path")]);
    assert!(
        collections[0]["forward_off_fast_path"]
            .as_str()
            .is_some_and(|why| why.contains("regular expressions")),
        "{report}"
    );
}

#[test]
fn plan_check_refuses_bad_plans_exactly_as_the_orchestrator_does() {
    let cluster = cluster();
    let orchestrator = cluster.start_orchestrator("orchestrator").expect("starts");
    let url = orchestrator.url();
    for (name, text, field) in BAD {
        let plan = write_bad(&cluster, name, text);
        let offline = cluster.run(["plan", "check", &plan]).expect("runs");
        assert_eq!(offline.code, Some(1), "{name}: {offline:?}");
        assert!(offline.stdout.is_empty(), "{name}: {}", offline.stdout);
        assert!(
            offline.stderr.contains(&format!("{plan}: ")) && offline.stderr.contains(field),
            "{name}: the file and {field} in {}",
            offline.stderr
        );
        let online = cluster
            .run(["upgrade", "--orchestrator", &url, "start", "--plan", &plan])
            .expect("runs");
        assert_eq!(online.code, Some(1), "{name}: {online:?}");
        assert_eq!(
            offline.stderr, online.stderr,
            "{name}: the offline check and the orchestrator say the same"
        );
    }
}

#[test]
fn plan_check_leaves_a_native_transform_to_the_engine_which_refuses_one_it_lacks() {
    let cluster = cluster();
    let plan = write_plan(
        &cluster,
        "native.toml",
        &format!("{NODES}[collections.users]\nforward_native = \"split_name\"\n"),
    );
    let offline = cluster.run(["plan", "check", &plan]).expect("runs");
    assert_eq!(offline.code, Some(0), "{offline:?}");
    for part in [
        "collections.users\n  green_name                  users\n  \
         forward_native              split_name\n  \
         forward_runs_on             native `split_name` (resolved by the engine that runs the \
         plan)\n",
        "reverse                     none: a rollback would lose",
    ] {
        assert!(
            offline.stdout.contains(part),
            "{part:?} in:\n{}",
            offline.stdout
        );
    }
    // The `cutover` binary registers no native transform: its engine refuses the plan at
    // start, naming the field, the name, and what it has.
    let orchestrator = cluster.start_orchestrator("orchestrator").expect("starts");
    let url = orchestrator.url();
    let online = cluster
        .run(["upgrade", "--orchestrator", &url, "start", "--plan", &plan])
        .expect("runs");
    assert_eq!(online.code, Some(1), "{online:?}");
    assert!(
        online.stderr.contains(
            "collections.users.forward_native: no native transform `split_name` is registered \
             in this process (registered: none)"
        ),
        "{}",
        online.stderr
    );
}

#[test]
fn plan_check_of_a_missing_file_names_the_path() {
    let cluster = cluster();
    let out = cluster
        .run(["plan", "check", "nowhere/plan.toml"])
        .expect("runs");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("cannot read the plan file nowhere/plan.toml: "),
        "{}",
        out.stderr
    );
}

#[test]
fn a_dry_run_refuses_a_bad_plan_before_it_contacts_the_orchestrator() {
    let cluster = cluster();
    let unused = format!("http://{}", cluster.free_addr().expect("a free port"));
    let dry_run = |plan: &str| {
        cluster
            .run([
                "upgrade",
                "start",
                "--dry-run",
                "--plan",
                plan,
                "--orchestrator",
                &unused,
            ])
            .expect("runs")
    };
    for (name, text, field) in BAD {
        let out = dry_run(&write_bad(&cluster, name, text));
        assert_eq!(
            out.code,
            Some(1),
            "{name}: refused, not unreachable: {out:?}"
        );
        assert!(
            out.stderr.contains(field),
            "{name}: {field} in {}",
            out.stderr
        );
        assert!(!out.stderr.contains("cannot reach"), "{}", out.stderr);
    }
    // A good plan shows the offline report, then goes on to the orchestrator.
    let good = write_plan(
        &cluster,
        "good.toml",
        &format!("{NODES}[collections.users]\nforward = '.schema = 2'\n"),
    );
    let out = dry_run(&good);
    assert_eq!(out.code, Some(3), "unreachable after the check: {out:?}");
    assert!(
        out.stdout.contains("good.toml: valid")
            && out.stdout.contains("forward_runs_on             fast path"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("cannot reach the orchestrator"),
        "{}",
        out.stderr
    );
}

#[test]
fn completions_are_scripts_the_shells_accept() {
    let cluster = cluster();
    let dir = cluster.dir("completions").expect("a folder");
    let bash = cluster.run(["completions", "bash"]).expect("runs");
    assert_eq!(bash.code, Some(0), "{bash:?}");
    for name in [
        "upgrade",
        "plan",
        "check",
        "completions",
        "man",
        "--dry-run",
    ] {
        assert!(bash.stdout.contains(name), "{name} in the bash script");
    }
    let script = dir.join("cutover.bash");
    std::fs::write(&script, &bash.stdout).expect("written");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );

    let zsh = cluster.run(["completions", "zsh"]).expect("runs");
    assert_eq!(zsh.code, Some(0), "{zsh:?}");
    assert!(zsh.stdout.starts_with("#compdef cutover"), "{}", zsh.stdout);
    assert!(zsh.stdout.contains("plan"), "{}", zsh.stdout);
    if let Ok(check) = Command::new("zsh").arg("-n").arg("/dev/null").output()
        && check.status.success()
    {
        let script = dir.join("_cutover");
        std::fs::write(&script, &zsh.stdout).expect("written");
        let syntax = Command::new("zsh")
            .arg("-n")
            .arg(&script)
            .output()
            .expect("zsh runs");
        assert!(
            syntax.status.success(),
            "zsh -n: {}",
            String::from_utf8_lossy(&syntax.stderr)
        );
    }

    let fish = cluster.run(["completions", "fish"]).expect("runs");
    assert_eq!(fish.code, Some(0), "{fish:?}");
    assert!(
        fish.stdout.contains("complete -c cutover"),
        "{}",
        fish.stdout
    );

    let unknown = cluster.run(["completions", "tcsh"]).expect("runs");
    assert_eq!(unknown.code, Some(2), "a usage error: {unknown:?}");
}

#[test]
fn the_man_page_is_roff_that_renders() {
    let cluster = cluster();
    let out = cluster.run(["man"]).expect("runs");
    assert_eq!(out.code, Some(0), "{out:?}");
    // clap_mangen defines the quote string first (`.ie`/`.el`); the title comes next.
    let first = out
        .stdout
        .lines()
        .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
        .unwrap_or_default();
    assert!(first.starts_with(".TH cutover 1"), "{first:?}");
    for name in ["upgrade", "plan", "completions", "man", ".SH SUBCOMMANDS"] {
        assert!(out.stdout.contains(name), "{name} in the page");
    }
    let dir = cluster.dir("man").expect("a folder");
    let page = dir.join("cutover.1");
    std::fs::write(&page, &out.stdout).expect("written");
    if Command::new("groff").arg("-v").output().is_ok() {
        let rendered = Command::new("groff")
            .args(["-man", "-Tutf8"])
            .arg(&page)
            .output()
            .expect("groff runs");
        assert!(rendered.status.success(), "groff: {rendered:?}");
        // Without overstrikes (grotty's bold is `X\bX`).
        let text =
            String::from_utf8_lossy(&rendered.stdout)
                .chars()
                .fold(String::new(), |mut text, c| {
                    if c == '\u{8}' {
                        text.pop();
                    } else {
                        text.push(c);
                    }
                    text
                });
        assert!(
            text.contains("SUBCOMMANDS") && text.contains("cutover-plan(1)"),
            "{text}"
        );
    }

    let pages = dir.join("pages");
    let out = cluster
        .run(["man", "--dir", &pages.display().to_string()])
        .expect("runs");
    assert_eq!(out.code, Some(0), "{out:?}");
    for name in [
        "cutover.1",
        "cutover-plan-check.1",
        "cutover-upgrade-start.1",
    ] {
        let page = std::fs::read_to_string(pages.join(name)).unwrap_or_default();
        assert!(page.contains(".TH "), "{name} written: {page:?}");
        assert!(out.stdout.contains(name), "{name} listed: {}", out.stdout);
    }
}
