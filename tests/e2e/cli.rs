//! The command line surface: help, version, usage errors, and a small `cutover demo`.

use crate::cluster;

const SUBCOMMANDS: &[&str] = &[
    "node",
    "proxy",
    "orchestrator",
    "upgrade",
    "plan",
    "demo",
    "completions",
    "man",
];

#[test]
fn help_lists_every_subcommand() {
    let out = cluster().run(["--help"]).expect("cutover --help runs");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for name in SUBCOMMANDS {
        assert!(
            out.stdout.lines().any(|l| l.trim_start().starts_with(name)),
            "--help does not list `{name}`:\n{}",
            out.stdout
        );
    }
}

#[test]
fn every_subcommand_help_shows_a_purpose_and_an_example() {
    let cluster = cluster();
    let mut commands: Vec<Vec<&str>> = SUBCOMMANDS.iter().map(|c| vec![*c]).collect();
    for op in ["start", "status", "proceed", "abort", "rollback"] {
        commands.push(vec!["upgrade", op]);
    }
    commands.push(vec!["plan", "check"]);
    for command in commands {
        let mut args = command.clone();
        args.push("--help");
        let out = cluster.run(&args).expect("help runs");
        assert_eq!(out.code, Some(0), "{command:?}: {}", out.stderr);
        let first = out.stdout.lines().next().unwrap_or_default();
        assert!(
            !first.trim().is_empty(),
            "{command:?} --help has no purpose line"
        );
        assert!(
            out.stdout.contains("Example:\n  cutover "),
            "{command:?} --help has no example:\n{}",
            out.stdout
        );
    }
}

#[test]
fn version_prints_the_package_version() {
    let out = cluster()
        .run(["--version"])
        .expect("cutover --version runs");
    assert_eq!(out.code, Some(0));
    assert_eq!(
        out.stdout.trim(),
        format!("cutover {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2_with_clap_message() {
    let cluster = cluster();
    let out = cluster.run(["frobnicate"]).expect("runs");
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("unrecognized subcommand 'frobnicate'"),
        "{}",
        out.stderr
    );

    let out = cluster
        .run(["node", "--data-dir", "d", "--http", "not-an-address"])
        .expect("runs");
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("not-an-address"), "{}", out.stderr);

    let out = cluster
        .run([
            "proxy",
            "--blue",
            "http://a",
            "--green",
            "http://b",
            "--state-file",
            "s",
            "--max-held-bytes",
            "3 parsecs",
        ])
        .expect("runs");
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("parsecs"), "{}", out.stderr);
}

#[test]
fn the_demo_refuses_bad_figures_and_runs_small() {
    let cluster = cluster();
    let out = cluster.run(["demo", "--docs", "0"]).expect("runs");
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--docs"), "{}", out.stderr);
    let out = cluster
        .run(["demo", "--docs", "2000", "--write-rate", "200"])
        .expect("runs");
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    for line in [
        "upgrade done",
        "rollback done",
        "all checks passed: 0 client errors, 0 lost acknowledged writes",
    ] {
        assert!(out.stdout.contains(line), "{line:?} in:\n{}", out.stdout);
    }
}
