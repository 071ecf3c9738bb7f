//! The native transform example (`examples/native_transform.rs`), an embedder's program with
//! a transform written in Rust, built and run as a process: killed (kill -9) with its upgrade
//! postponed, and run again after blue changed, it resumes and finishes with every document
//! transformed by its Rust code; a plan naming a transform it did not register is refused at
//! start with the name and the registered ones.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use cutover_node::store::{DEFAULT_MAX_QUEUED_WRITES, Incoming, Store, StoreConfig, SyncPolicy};
use cutover_tests::harness::{Binary, wait_until};

/// Documents the example loads.
const DOCUMENTS: u64 = 300;
/// Documents of blue renamed while the example is down.
const RENAMED: u64 = 20;
/// Longest a run may take (a few seconds on 2 cores).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The example, built for the profile of this test: `cargo test --workspace` builds the
/// examples, but a run of the e2e tests alone (`--test e2e`) does not, and one left by an
/// earlier build may be stale. Cargo finds it up to date in a second when it is.
fn example() -> &'static Binary {
    static BUILT: OnceLock<Binary> = OnceLock::new();
    BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        // TARGET/PROFILE/deps/e2e-HASH
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from TARGET/PROFILE/deps");
        let target_dir = profile_dir.parent().expect("TARGET/PROFILE");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => panic!("no profile in {}", exe.display()),
        };
        // `--workspace`, as every build of this repository: features resolve as for the test,
        // so nothing but the example is compiled.
        let built = Command::new(env!("CARGO"))
            .args(["build", "--workspace", "--example", "native_transform"])
            .args(["--profile", profile])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo runs");
        assert!(
            built.status.success(),
            "building the example: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        Binary::new(profile_dir.join("examples").join("native_transform"))
    })
}

fn store(path: PathBuf) -> Store {
    Store::open(&StoreConfig {
        path,
        partitions: None,
        sync: SyncPolicy::Os,
        max_queued_writes: DEFAULT_MAX_QUEUED_WRITES,
    })
    .expect("the store opens")
}

/// Renames the first `count` users of the example's blue store (stopped), at version 2.
fn rename_on_blue(data: &Path, count: u64) {
    let blue = store(data.join("blue"));
    let ids: Vec<String> = (0..count).map(|n| format!("user-{n:06}")).collect();
    let body = br#"{"name":"Grace Brewster Hopper","n":-1}"#;
    let documents: Vec<Incoming<'_>> = ids
        .iter()
        .map(|id| Incoming {
            collection: "users",
            id,
            version: 2,
            tombstone: false,
            body,
        })
        .collect();
    let applied = blue.apply(&documents).expect("written");
    assert_eq!(applied.applied as u64, count);
    blue.flush().expect("flushed");
}

#[test]
fn a_native_transform_resolves_again_after_kill_9_and_transforms_every_document() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("a UTF-8 path");
    let documents = DOCUMENTS.to_string();
    let args = ["--dir", data_arg, "--documents", &documents];
    let mut first = example()
        .spawn("first", dir.path(), args.iter().chain(&["--no-proceed"]))
        .expect("the example starts");
    let postponed = wait_until("the upgrade postponed", RUN_TIMEOUT, || {
        let out = first.stdout().unwrap_or_default();
        if out.contains("not proceeding") {
            Some(true)
        } else {
            (!first.is_running()).then_some(false)
        }
    })
    .expect("the first run reaches the postponed cutover");
    let out = first.stdout().expect("stdout");
    assert!(
        postponed,
        "the first run ended early:\n{out}{}",
        first.stderr().unwrap_or_default()
    );
    assert!(
        out.contains(&format!(
            "postponed after cycle 1: {DOCUMENTS} documents copied"
        )),
        "{out}"
    );
    first.kill9().expect("killed");

    // Written while the program is down, these cross in the resumed upgrade's final cycle:
    // through the native transform of the new process, or the upgrade fails.
    rename_on_blue(&data, RENAMED);
    let mut second = example()
        .spawn("second", dir.path(), args)
        .expect("the example starts again");
    let exit = second.wait_exit(RUN_TIMEOUT).expect("the second run ends");
    let out = second.stdout().expect("stdout");
    assert!(
        exit.success(),
        "{exit}:\n{out}{}",
        second.stderr().unwrap_or_default()
    );
    assert!(!out.contains("loaded blue"), "nothing loaded again: {out}");
    assert!(out.contains("resumed in phase postponed"), "{out}");
    assert!(
        out.ends_with(&format!(
            "done: green holds {DOCUMENTS} documents, {DOCUMENTS} with first_name\n"
        )),
        "{out}"
    );
    let green = store(data.join("green"));
    for n in [0, RENAMED - 1] {
        let doc = green
            .get("users", &format!("user-{n:06}"))
            .expect("read")
            .expect("on green");
        let body: serde_json::Value = serde_json::from_slice(&doc.body).expect("JSON");
        assert_eq!(doc.version, 2);
        assert_eq!(
            body,
            serde_json::json!({"first_name": "Grace", "last_name": "Brewster Hopper", "n": -1,
                               "schema": 2})
        );
    }
}

#[test]
fn a_plan_naming_a_transform_the_program_did_not_register_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = dir.path().join("data");
    let out = example()
        .run(
            dir.path(),
            [
                "--dir",
                data.to_str().expect("a UTF-8 path"),
                "--documents",
                "10",
                "--native",
                "split_nmae",
            ],
            RUN_TIMEOUT,
        )
        .expect("the example runs");
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stdout.contains(
            "refused: plan.toml: collections.users.forward_native: no native transform \
             `split_nmae` is registered in this process (registered: `split_name`)"
        ),
        "{out:?}"
    );
    assert!(!out.stdout.contains("started"), "nothing started: {out:?}");
}
