//! Replays every kept fuzz input through the checks its target runs: the minimised corpora
//! (`fuzz/corpus/<target>/`) and the inputs that once failed (`fuzz/regressions/<target>/`).
//! A change that breaks a parser on an input the fuzzer once reached fails here, in seconds,
//! on the stable toolchain.

use std::{
    fs,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    time::Instant,
};

use cutover_fuzz_checks::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted (none when it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file, collecting the files it panics on.
fn replay(check: fn(&[u8]), files: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for file in files {
        let data = fs::read(file).expect("a readable corpus file");
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    failed
}

#[test]
fn every_corpus_and_regression_input_passes_its_target() {
    let started = Instant::now();
    let mut failed = Vec::new();
    for (target, check) in TARGETS {
        let corpus = inputs(&fuzz_dir().join("corpus").join(target));
        // A missing corpus would make this test pass on nothing.
        assert!(
            corpus.len() >= 10,
            "fuzz/corpus/{target} holds {} inputs: run the fuzzer (docs/FUZZING.md)",
            corpus.len()
        );
        let regressions = inputs(&fuzz_dir().join("regressions").join(target));
        let began = Instant::now();
        failed.extend(replay(*check, &corpus));
        failed.extend(replay(*check, &regressions));
        println!(
            "{target}: {} corpus inputs, {} regressions in {:.1?}",
            corpus.len(),
            regressions.len(),
            began.elapsed()
        );
    }
    println!("replayed in {:.1?}", started.elapsed());
    assert!(failed.is_empty(), "inputs that fail: {failed:#?}");
}

/// Every regression input names a target that exists: a typo in a folder name would skip it.
#[test]
fn every_regression_folder_is_a_target() {
    let Ok(entries) = fs::read_dir(fuzz_dir().join("regressions")) else {
        return;
    };
    for entry in entries {
        let name = entry.expect("a readable entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.iter().any(|(target, _)| *target == name),
            "fuzz/regressions/{name} is not a target"
        );
    }
}
