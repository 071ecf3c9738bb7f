use super::*;

fn upgrade(id: &str) -> UpgradeRecord {
    UpgradeRecord {
        id: id.to_owned(),
        plan_name: "plan.toml".to_owned(),
        plan_toml: "[blue]\n".to_owned(),
        rehearse: false,
        started_unix_ms: 1_000,
    }
}

fn dead(id: &str, version: u64) -> DeadLetter {
    DeadLetter {
        source: "blue-1".to_owned(),
        collection: "users".to_owned(),
        id: id.to_owned(),
        version,
        error: "jq error: boom".to_owned(),
    }
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let journal = Journal::open(dir.path()).expect("open");
        assert_eq!(journal.upgrade().expect("read"), None);
        assert_eq!(journal.state().expect("read"), None);
        journal.begin(&upgrade("u1")).expect("begin");
        journal.set_state("u1", &cycling(2_000)).expect("state");
        journal
            .acknowledge(
                "u1",
                Direction::Forward,
                &Link::new("http://blue:1", "green-1"),
                500,
                &BatchRecord {
                    failed: vec![dead("a", 3)],
                    dropped: vec![("users".into(), "b".into(), 1)],
                    copied: vec![],
                },
            )
            .expect("ack");
        journal
            .record_cycle(&CycleRecord {
                cycle: 1,
                documents: 500,
                bytes: 100_000,
                tombstones: 2,
                dropped: 1,
                failed: 1,
                duration_ms: 40,
                pending_after: 7,
                final_cycle: false,
                direction: Direction::Forward,
                pipelines: vec![],
            })
            .expect("cycle");
    }
    let journal = Journal::open(dir.path()).expect("reopen");
    assert_eq!(journal.upgrade().expect("read"), Some(upgrade("u1")));
    assert_eq!(journal.state().expect("read"), Some(cycling(2_000)));
    assert_eq!(
        journal
            .watermark(&Link::new("http://blue:1", "green-1"))
            .expect("read"),
        500
    );
    assert_eq!(
        journal
            .watermark(&Link::new("http://blue:2", "green-1"))
            .expect("read"),
        0
    );
    assert_eq!(journal.dead_letters().expect("read"), vec![dead("a", 3)]);
    assert_eq!(
        journal.dropped().expect("read"),
        vec![("users".to_owned(), "b".to_owned(), 1)]
    );
    assert_eq!(journal.cycles().expect("read").len(), 1);
}

#[test]
fn a_later_version_supersedes_a_dead_letter_and_watermarks_never_go_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(dir.path()).expect("open");
    journal.begin(&upgrade("u1")).expect("begin");
    let failed = BatchRecord {
        failed: vec![dead("a", 3), dead("c", 1)],
        ..BatchRecord::default()
    };
    journal
        .acknowledge(
            "u1",
            Direction::Forward,
            &Link::new("s", "green-1"),
            10,
            &failed,
        )
        .expect("ack");
    // Redelivery of the same batch records nothing twice.
    journal
        .acknowledge(
            "u1",
            Direction::Forward,
            &Link::new("s", "green-1"),
            10,
            &failed,
        )
        .expect("same watermark again");
    assert_eq!(journal.dead_letters().expect("read").len(), 2);
    let fixed = BatchRecord {
        copied: vec![("users".into(), "a".into())],
        dropped: vec![("users".into(), "c".into(), 2)],
        ..BatchRecord::default()
    };
    journal
        .acknowledge(
            "u1",
            Direction::Forward,
            &Link::new("s", "green-1"),
            20,
            &fixed,
        )
        .expect("ack");
    assert_eq!(journal.dead_letters().expect("read"), Vec::new());
    assert_eq!(journal.dropped().expect("read").len(), 1);
    journal
        .acknowledge(
            "u1",
            Direction::Forward,
            &Link::new("s", "green-1"),
            15,
            &BatchRecord::default(),
        )
        .expect("a late, lower watermark is harmless");
    assert_eq!(
        journal.watermark(&Link::new("s", "green-1")).expect("read"),
        20
    );
    let err = journal
        .acknowledge(
            "u0",
            Direction::Forward,
            &Link::new("s", "green-1"),
            30,
            &BatchRecord::default(),
        )
        .expect_err("a write of another upgrade");
    assert!(matches!(err, JournalError::Superseded { .. }), "{err}");
    assert_eq!(
        journal.watermark(&Link::new("s", "green-1")).expect("read"),
        20
    );
}

#[test]
fn a_new_upgrade_forgets_the_previous_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(dir.path()).expect("open");
    journal.begin(&upgrade("u1")).expect("begin");
    journal
        .acknowledge(
            "u1",
            Direction::Forward,
            &Link::new("s", "green-1"),
            10,
            &BatchRecord {
                failed: vec![dead("a", 1)],
                ..BatchRecord::default()
            },
        )
        .expect("ack");
    journal.begin(&upgrade("u2")).expect("begin again");
    assert_eq!(
        journal.upgrade().expect("read").map(|u| u.id),
        Some("u2".into())
    );
    assert_eq!(
        journal.watermark(&Link::new("s", "green-1")).expect("read"),
        0
    );
    assert!(journal.dead_letters().expect("read").is_empty());
    assert_eq!(
        journal.state().expect("read").map(|r| r.state),
        Some(State::Discovering)
    );
}

#[test]
fn epochs_and_the_switch_overhead_outlive_an_upgrade_its_holds_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(dir.path()).expect("open");
    journal.begin(&upgrade("u1")).expect("begin");
    assert_eq!(journal.next_epoch(1).expect("epoch"), 1);
    assert_eq!(
        journal.next_epoch(1).expect("epoch"),
        2,
        "never handed out twice"
    );
    assert_eq!(
        journal.next_epoch(7).expect("epoch"),
        7,
        "above every proxy's"
    );
    journal
        .set_switch_overhead(std::time::Duration::from_millis(6))
        .expect("overhead");
    let holds = vec![Hold {
        proxy: "p".into(),
        released: 3,
        max_hold_micros: 41_000,
    }];
    journal.set_holds(&holds).expect("holds");
    assert_eq!(journal.holds().expect("read"), holds);
    journal.begin(&upgrade("u2")).expect("begin again");
    assert_eq!(journal.holds().expect("read"), Vec::new());
    assert_eq!(journal.next_epoch(1).expect("epoch"), 8);
    assert_eq!(
        journal.switch_overhead().expect("read"),
        Some(std::time::Duration::from_millis(6))
    );
}

fn cycling(since_unix_ms: u64) -> StateRecord {
    StateRecord {
        state: State::Cycling { undone: 0 },
        since_unix_ms,
        detail: String::new(),
    }
}

#[test]
fn a_journal_of_a_newer_layout_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = DB::open_default(dir.path()).expect("rocksdb");
        db.put(LAYOUT_KEY, (LAYOUT + 1).to_be_bytes()).expect("put");
    }
    let error = Journal::open(dir.path()).expect_err("a newer layout");
    assert!(
        matches!(error, JournalError::Layout { found, .. } if found == LAYOUT + 1),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("layout {}", LAYOUT + 1))
            && message.contains("move the folder aside"),
        "{message}"
    );
    // A new journal is written with this layout, and opens again.
    let fresh = tempfile::tempdir().expect("tempdir");
    drop(Journal::open(fresh.path()).expect("new"));
    let journal = Journal::open(fresh.path()).expect("reopen");
    assert_eq!(
        journal.number(LAYOUT_KEY, String::new).expect("read"),
        Some(LAYOUT)
    );
}

/// A journal of layout 1 as a fixture file holds it: every key and value that release wrote.
fn load_fixture(name: &str, into: &std::path::Path) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/journal-layout-1")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    let entries: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&text).expect("fixture json");
    let bytes = |entry: &serde_json::Map<String, serde_json::Value>, field: &str| {
        if let Some(text) = entry.get(field).and_then(|v| v.as_str()) {
            return text.as_bytes().to_vec();
        }
        let hex = entry[&format!("{field}_hex")].as_str().expect("hex");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
            .collect()
    };
    let db = DB::open_default(into).expect("rocksdb");
    for entry in &entries {
        db.put(bytes(entry, "key"), bytes(entry, "value"))
            .expect("put");
    }
}

#[test]
fn a_journal_of_layout_1_is_migrated_in_every_phase() {
    use crate::engine::machine::{Handover, Step, StepName, Undo, Verified};
    let fenced = || vec![("http://127.0.0.1:7071".to_owned(), 2_030)];
    let green = || vec![("http://127.0.0.1:7081".to_owned(), 2_030)];
    let verified = || Verified {
        summary: "verified 2000 documents in 64 partitions (counts and digests)".into(),
        green_heads: green(),
    };
    let cutover = |rehearse| Handover::Cutover {
        attempt: 1,
        rehearse,
    };
    let at = |step| State::Handover {
        handover: cutover(false),
        step,
    };
    let rollback = |discard| Handover::Rollback {
        discard,
        reverse_from: green(),
    };
    let cases = vec![
        ("discovering", State::Discovering),
        ("cycling", State::Cycling { undone: 0 }),
        ("postponed", State::Postponed { undone: 0 }),
        ("ready_for_cutover", at(Step::Epoch)),
        (
            "ready_for_cutover_rehearsed",
            State::Rehearsed {
                verified: verified().summary,
            },
        ),
        ("pausing", at(Step::Pausing { epoch: 3 })),
        ("fencing", at(Step::Fencing { epoch: 3 })),
        (
            "final_cycle",
            at(Step::FinalCycle {
                epoch: 3,
                fenced: fenced(),
            }),
        ),
        (
            "verifying",
            at(Step::Verifying {
                epoch: 3,
                fenced: fenced(),
            }),
        ),
        (
            "committed",
            at(Step::Committed {
                epoch: 3,
                verified: verified(),
            }),
        ),
        (
            "switching",
            at(Step::Switching {
                epoch: 3,
                verified: verified(),
            }),
        ),
        (
            "switched",
            State::Switched {
                reverse_from: green(),
            },
        ),
        (
            "reverse_sync",
            State::ReverseSync {
                reverse_from: green(),
            },
        ),
        (
            "rolling_back_requested",
            State::Handover {
                handover: rollback(true),
                step: Step::Epoch,
            },
        ),
        (
            "rolling_back_held",
            State::Handover {
                handover: rollback(false),
                step: Step::FinalCycle {
                    epoch: 4,
                    fenced: vec![("http://127.0.0.1:7081".to_owned(), 2_050)],
                },
            },
        ),
        (
            "rolling_back_committed",
            State::Handover {
                handover: rollback(false),
                step: Step::Committed {
                    epoch: 4,
                    verified: Verified {
                        summary: "verified 2000 documents back on blue".into(),
                        green_heads: vec![],
                    },
                },
            },
        ),
        (
            "rolled_back",
            State::RolledBack {
                verified: "verified 2000 documents back on blue".into(),
            },
        ),
        (
            "aborting",
            State::Undoing {
                handover: cutover(false),
                epoch: 3,
                from: StepName::Pausing,
                why: Undo::Aborted {
                    reason: "window over".into(),
                },
            },
        ),
        (
            "aborting_cycling",
            State::Aborted {
                reason: "window over".into(),
            },
        ),
        (
            "aborted",
            State::Aborted {
                reason: "window over".into(),
            },
        ),
        (
            "failed",
            State::Failed {
                reason: "blue-1: Describe: unreachable".into(),
            },
        ),
    ];
    for (name, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        load_fixture(name, dir.path());
        let journal = Journal::open(dir.path()).expect(name);
        let record = journal.state().expect("read").expect("a state");
        assert_eq!(record.state, expected, "{name}");
        let since = if name == "discovering" {
            1_765_000_000_000
        } else {
            1_765_000_001_000
        };
        assert_eq!(
            record.since_unix_ms, since,
            "{name}: the time it was entered is kept"
        );
        // What the migration does not touch is still there.
        assert_eq!(
            journal.upgrade().expect("read").map(|u| u.id),
            Some("u1765000000000".into()),
            "{name}"
        );
        assert_eq!(
            journal.switch_overhead().expect("read"),
            Some(std::time::Duration::from_millis(40)),
            "{name}"
        );
        if name != "discovering" && name != "failed" {
            assert_eq!(
                journal
                    .watermark(&Link::new("blue-1", "green-1"))
                    .expect("read"),
                2_000,
                "{name}"
            );
            assert_eq!(journal.cycles().expect("read").len(), 1, "{name}");
        }
        if name == "ready_for_cutover_rehearsed" {
            assert_eq!(journal.holds().expect("read").len(), 1, "{name}");
        }
        // Migrated once: the layout-1 keys are gone, and a reopen reads the same.
        drop(journal);
        let journal = Journal::open(dir.path()).expect("reopen");
        assert_eq!(
            journal.state().expect("read").map(|r| r.state),
            Some(expected)
        );
        assert!(journal.db.get(b"phase").expect("read").is_none(), "{name}");
        assert!(
            journal.db.get(b"cutover").expect("read").is_none(),
            "{name}"
        );
    }
}

#[test]
fn a_layout_2_watermark_keyed_by_its_source_stands_for_the_sources_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let journal = Journal::open(dir.path()).expect("open");
        journal.begin(&upgrade("u1")).expect("begin");
        journal.set_number(LAYOUT_KEY, 2).expect("layout 2");
        journal
            .set_number(b"watermark/blue-1", 500)
            .expect("a layout-2 watermark");
    }
    let journal = Journal::open(dir.path()).expect("reopen migrates");
    assert_eq!(
        journal
            .number(LAYOUT_KEY, || "layout".into())
            .expect("read"),
        Some(LAYOUT)
    );
    let link = Link::new("blue-1", "green-1");
    assert_eq!(journal.watermark(&link).expect("read"), 500);
    journal
        .acknowledge(
            "u1",
            Direction::Forward,
            &link,
            400,
            &BatchRecord::default(),
        )
        .expect("ack");
    assert_eq!(
        journal.watermark(&link).expect("read"),
        500,
        "a watermark never goes back, whichever key held it"
    );
    journal
        .acknowledge(
            "u1",
            Direction::Forward,
            &link,
            900,
            &BatchRecord::default(),
        )
        .expect("ack");
    assert_eq!(journal.watermark(&link).expect("read"), 900);
    assert_eq!(
        journal
            .watermark(&Link::new("green-1", "blue-1"))
            .expect("read"),
        0,
        "the reverse pipeline has its own key"
    );
}
