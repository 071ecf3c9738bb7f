//! The store against an in-memory model, over random sequences of puts, deletes, re-creations
//! and replicated applies.

use std::{collections::BTreeMap, ops::ControlFlow};

use proptest::prelude::*;
use tempfile::TempDir;

use super::*;

fn open(dir: &TempDir, partitions: u32) -> Store {
    Store::open(&StoreConfig {
        path: dir.path().join("db"),
        partitions: Some(partitions),
        sync: SyncPolicy::Os,
        max_queued_writes: crate::store::DEFAULT_MAX_QUEUED_WRITES,
    })
    .expect("open")
}

/// The model's view of one key: version, seq of the latest change, body (None = tombstone).
type Model = BTreeMap<(String, String), (u64, u64, Option<Vec<u8>>)>;

#[derive(Debug, Clone)]
enum Op {
    Put(usize, u8),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..12, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0usize..12).prop_map(Op::Delete),
    ]
}

fn key(k: usize) -> (String, String) {
    let collection = if k.is_multiple_of(3) {
        "users"
    } else {
        "orders"
    };
    (collection.to_owned(), format!("id/{k}-ü"))
}

/// `(seq, collection, id, version, body or None for a tombstone)` of one pulled change.
type Pulled = (u64, String, String, u64, Option<Vec<u8>>);

fn pull(store: &Store, since: u64) -> Vec<Pulled> {
    let mut out = Vec::new();
    let summary = store
        .scan_changes(
            &PullSpec {
                since,
                partitions: vec![],
            },
            |seq, c| {
                let body = (!c.tombstone).then(|| c.body.to_vec());
                out.push((
                    seq,
                    c.collection.to_owned(),
                    c.id.to_owned(),
                    c.version,
                    body,
                ));
                ControlFlow::Continue(())
            },
        )
        .expect("scan");
    assert!(summary.complete);
    assert_eq!(summary.high_watermark, store.head_seq());
    out
}

fn expected_digest(model: &Model, partitions: u32) -> Vec<(u64, u64)> {
    let mut out = vec![(0u64, 0u64); partitions as usize];
    for ((collection, id), (version, _, body)) in model {
        if body.is_some() {
            let slot = &mut out[partition_of(id, partitions) as usize];
            slot.0 += 1;
            slot.1 = slot.1.wrapping_add(term(collection, id, *version));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_model(ops in proptest::collection::vec(op(), 1..60), cut in 0usize..60) {
        let dir = TempDir::new().expect("tempdir");
        let store = open(&dir, 8);
        let mut model = Model::new();
        let mut watermark_at_cut = 0;
        for (i, op) in ops.iter().enumerate() {
            if i == cut {
                watermark_at_cut = store.head_seq();
            }
            match op {
                Op::Put(k, v) => {
                    let (c, id) = key(*k);
                    let body = format!("{{\"v\":{v}}}").into_bytes();
                    let out = store.put(&c, &id, &body, &Precondition::Always).expect("put");
                    let entry = model.entry((c, id)).or_insert((0, 0, None));
                    prop_assert_eq!(out.created, entry.2.is_none());
                    prop_assert_eq!(out.version, entry.0 + 1, "re-create continues the version");
                    *entry = (out.version, out.seq, Some(body));
                }
                Op::Delete(k) => {
                    let (c, id) = key(*k);
                    let result = store.delete(&c, &id, &Precondition::Always);
                    match model.get_mut(&(c, id)) {
                        Some(entry) if entry.2.is_some() => {
                            let out = result.expect("delete of a live document");
                            prop_assert_eq!(out.version, entry.0 + 1);
                            *entry = (out.version, out.seq, None);
                        }
                        _ => prop_assert!(matches!(result, Err(StoreError::NotFound { .. })), "expected NotFound, got {:?}", result),
                    }
                }
            }
        }
        // Pull(0): the latest state of every key, tombstones included, each once, in seq order.
        let all = pull(&store, 0);
        let mut expected: Vec<_> = model
            .iter()
            .map(|((c, id), (v, s, b))| (*s, c.clone(), id.clone(), *v, b.clone()))
            .collect();
        expected.sort();
        prop_assert_eq!(&all, &expected);
        // Pull(W): exactly the keys whose latest change came after W.
        let delta = pull(&store, watermark_at_cut);
        let expected_delta: Vec<_> =
            expected.iter().filter(|e| e.0 > watermark_at_cut).cloned().collect();
        prop_assert_eq!(delta, expected_delta);
        prop_assert_eq!(store.lag(watermark_at_cut, &[]).expect("lag").1,
            expected.iter().filter(|e| e.0 > watermark_at_cut).count() as u64);
        // Digest: the incremental counters equal a recomputation from scratch.
        let digest = store.digest(&[]).expect("digest");
        let got: Vec<_> = digest.partitions.iter().map(|p| (p.live_documents, p.digest)).collect();
        prop_assert_eq!(got, expected_digest(&model, 8));
        // Reads agree with the model.
        for ((c, id), (v, _, body)) in &model {
            let doc = store.get(c, id).expect("get");
            prop_assert_eq!(doc.as_ref().map(|d| d.version), body.as_ref().map(|_| *v));
            prop_assert_eq!(doc.map(|d| d.body), body.clone());
        }
    }

    #[test]
    fn applying_a_pull_reproduces_the_source(ops in proptest::collection::vec(op(), 1..60)) {
        let source_dir = TempDir::new().expect("tempdir");
        let sink_dir = TempDir::new().expect("tempdir");
        let source = open(&source_dir, 8);
        let sink = open(&sink_dir, 8);
        let mut since = 0;
        for chunk in ops.chunks(7) {
            for op in chunk {
                match op {
                    Op::Put(k, v) => {
                        let (c, id) = key(*k);
                        source.put(&c, &id, format!("[{v}]").as_bytes(), &Precondition::Always).expect("put");
                    }
                    Op::Delete(k) => {
                        let (c, id) = key(*k);
                        let _ = source.delete(&c, &id, &Precondition::Always);
                    }
                }
            }
            // One delta cycle, applied twice: redelivery changes nothing.
            let changes = pull(&source, since);
            let incoming = as_incoming(&changes);
            let first = sink.apply(&incoming).expect("apply");
            prop_assert_eq!(first.applied as usize, incoming.len());
            let again = sink.apply(&incoming).expect("re-apply");
            prop_assert_eq!(again.applied, 0);
            prop_assert_eq!(again.skipped_stale as usize, incoming.len());
            since = source.head_seq();
            prop_assert_eq!(source.digest(&[]).expect("d"), Digest {
                head_seq: source.head_seq(),
                ..sink.digest(&[]).expect("d")
            });
        }
    }
}

#[test]
fn versions_continue_through_a_tombstone() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir, 4);
    let put = |body: &str| {
        store
            .put("c", "k", body.as_bytes(), &Precondition::Always)
            .expect("put")
    };
    assert_eq!(put("1").version, 1);
    assert_eq!(put("2").version, 2);
    assert_eq!(
        store
            .delete("c", "k", &Precondition::Always)
            .expect("delete")
            .version,
        3
    );
    let again = put("4");
    assert_eq!((again.version, again.created), (4, true));
}

#[test]
fn preconditions_compare_the_live_version() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir, 4);
    let absent = store.put("c", "k", b"1", &Precondition::IfMatch(vec![1]));
    assert!(matches!(
        absent,
        Err(StoreError::PreconditionFailed { current: None })
    ));
    store
        .put("c", "k", b"1", &Precondition::IfAbsent)
        .expect("create");
    let exists = store.put("c", "k", b"2", &Precondition::IfAbsent);
    assert!(matches!(
        exists,
        Err(StoreError::PreconditionFailed { current: Some(1) })
    ));
    store
        .put("c", "k", b"2", &Precondition::IfMatch(vec![7, 1]))
        .expect("matches v1");
    let stale = store.delete("c", "k", &Precondition::IfMatch(vec![1]));
    assert!(matches!(
        stale,
        Err(StoreError::PreconditionFailed { current: Some(2) })
    ));
}

#[test]
fn a_fence_refuses_client_writes_but_not_applies_and_survives_restart() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir, 4);
    store
        .put("c", "k", b"1", &Precondition::Always)
        .expect("put");
    let (state, head) = store
        .fence(1, FenceMode::Permanent, "cutover committed".into())
        .expect("fence");
    assert!(state.is_permanent());
    assert_eq!(head, 1);
    let refused = store.put("c", "k", b"2", &Precondition::Always);
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    let incoming = Incoming {
        collection: "c",
        id: "k",
        version: 5,
        tombstone: false,
        body: b"5",
    };
    assert_eq!(store.apply(&[incoming]).expect("apply").applied, 1);
    drop(store);
    let reopened = open(&dir, 4);
    assert!(reopened.fence_state().is_permanent());
    assert_eq!(reopened.head_seq(), 2, "the head survives restart");
    assert_eq!(
        reopened.get("c", "k").expect("get").map(|d| d.version),
        Some(5)
    );
    reopened.unfence(1, "rollback".into()).expect("unfence");
    reopened
        .put("c", "k", b"6", &Precondition::Always)
        .expect("writes again");
}

/// Asserts that `result` refuses epoch `given` on a node at `current`: the typed error, as
/// FAILED_PRECONDITION, with a message that names both.
fn stale(result: Result<(FenceState, u64), StoreError>, given: u64, current: u64) {
    let error = result.expect_err("a lower epoch is refused");
    let epochs = match error {
        StoreError::StaleEpoch { given, current } => Some((given, current)),
        _ => None,
    };
    assert_eq!(epochs, Some((given, current)), "{error:?}");
    assert_eq!(error.to_status().code(), tonic::Code::FailedPrecondition);
    let text = error.to_string();
    assert!(
        text.contains(&format!("epoch {given}")) && text.contains(&format!("epoch {current}")),
        "the message names both epochs: {text}"
    );
}

#[test]
fn an_unfence_under_a_lower_epoch_is_refused_and_the_node_stays_fenced() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir, 4);
    let (fenced, _) = store
        .fence(7, FenceMode::Permanent, "cutover u2".into())
        .expect("fence");
    stale(store.unfence(6, "undo of u1".into()), 6, 7);
    assert_eq!(store.fence_state(), fenced, "the refusal changed nothing");
    let refused = store.put("c", "k", b"1", &Precondition::Always);
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    drop(store);
    assert_eq!(open(&dir, 4).fence_state(), fenced, "nor on disk");
}

#[test]
fn a_fence_under_a_lower_epoch_is_refused_and_changes_nothing() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir, 4);
    let (lowered, _) = store.unfence(5, "rollback u2".into()).expect("unfence");
    stale(
        store.fence(4, FenceMode::Permanent, "cutover u1".into()),
        4,
        5,
    );
    assert_eq!(store.fence_state(), lowered);
    store
        .put("c", "k", b"1", &Precondition::Always)
        .expect("client writes still accepted");
    // Nor is a lease renewed, or made permanent, by a stale caller.
    let until_unix_ms = now_unix_ms() + 60_000;
    let (leased, _) = store
        .fence(5, FenceMode::Lease { until_unix_ms }, "cutover u2".into())
        .expect("same epoch");
    stale(
        store.fence(3, FenceMode::Permanent, "cutover u0".into()),
        3,
        5,
    );
    assert_eq!(store.fence_state(), leased);
    assert!(!store.fence_state().is_permanent());
}

#[test]
fn the_same_epoch_repeated_is_idempotent() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir, 4);
    store
        .put("c", "k", b"1", &Precondition::Always)
        .expect("put");
    let first = store
        .fence(3, FenceMode::Permanent, "cutover".into())
        .expect("fence");
    let again = store
        .fence(3, FenceMode::Permanent, "cutover".into())
        .expect("a repeated fence");
    assert_eq!(again, first);
    assert_eq!(first.0.epoch, 3);
    // The undo of that same attempt lifts its fence, and repeating it changes nothing.
    let lifted = store.unfence(3, "undo".into()).expect("unfence");
    assert_eq!(store.unfence(3, "undo".into()).expect("again"), lifted);
    assert_eq!(lifted.0.mode, None);
    assert_eq!(lifted.0.epoch, 3);
}

#[test]
fn a_higher_epoch_is_adopted_and_survives_a_reopen() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir, 4);
    store
        .fence(2, FenceMode::Permanent, "cutover".into())
        .expect("fence");
    let (raised, _) = store
        .fence(9, FenceMode::Permanent, "rollback".into())
        .expect("a newer attempt");
    assert_eq!(raised.epoch, 9);
    drop(store);
    let reopened = open(&dir, 4);
    assert_eq!(reopened.fence_state(), raised);
    stale(reopened.unfence(8, "stale".into()), 8, 9);
    let (lowered, _) = reopened.unfence(10, "newest".into()).expect("unfence");
    assert_eq!(lowered.epoch, 10);
    drop(reopened);
    assert_eq!(open(&dir, 4).fence_state().epoch, 10, "kept while unfenced");
}

#[test]
fn a_fence_persisted_without_an_epoch_opens_at_epoch_0() {
    let dir = TempDir::new().expect("tempdir");
    drop(open(&dir, 4));
    {
        // The fence as a build before epochs wrote it.
        let db = rocks::open(&dir.path().join("db")).expect("raw open");
        db.put_cf(
            rocks::cf(&db, rocks::CF_META),
            rocks::META_FENCE,
            br#"{"mode":{"mode":"permanent"},"reason":"cutover old"}"#,
        )
        .expect("write the old fence");
    }
    let store = open(&dir, 4);
    let state = store.fence_state();
    assert!(state.is_permanent(), "{state:?}");
    assert_eq!((state.epoch, state.reason.as_str()), (0, "cutover old"));
    let (lowered, _) = store
        .unfence(0, "undo".into())
        .expect("epoch 0 while the node has seen none higher");
    assert_eq!(lowered.mode, None);
}

#[test]
fn refuses_a_newer_layout_and_a_different_partition_count() {
    let dir = TempDir::new().expect("tempdir");
    drop(open(&dir, 4));
    let err = Store::open(&StoreConfig {
        path: dir.path().join("db"),
        partitions: Some(8),
        sync: SyncPolicy::Os,
        max_queued_writes: crate::store::DEFAULT_MAX_QUEUED_WRITES,
    })
    .expect_err("8 != 4");
    assert!(err.to_string().contains("has 4 partitions but 8"), "{err}");
    {
        let db = rocks::open(&dir.path().join("db")).expect("raw open");
        db.put_cf(
            rocks::cf(&db, rocks::CF_META),
            rocks::META_SCHEMA_VERSION,
            99u32.to_be_bytes(),
        )
        .expect("stamp");
    }
    let err = Store::open(&StoreConfig {
        path: dir.path().join("db"),
        partitions: None,
        sync: SyncPolicy::Os,
        max_queued_writes: crate::store::DEFAULT_MAX_QUEUED_WRITES,
    })
    .expect_err("newer layout");
    assert!(err.to_string().contains("layout version 99"), "{err}");
}

#[test]
fn listing_pages_in_id_order_and_skips_tombstones() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir, 4);
    for id in ["b", "a", "d", "c", "e"] {
        store
            .put("c", id, b"{}", &Precondition::Always)
            .expect("put");
    }
    store
        .put("other", "0", b"{}", &Precondition::Always)
        .expect("put");
    store
        .delete("c", "c", &Precondition::Always)
        .expect("delete");
    let first = store.list("c", None, 2).expect("page 1");
    let ids: Vec<_> = first.documents.iter().map(|d| d.0.as_str()).collect();
    assert_eq!((ids, first.next.as_deref()), (vec!["a", "b"], Some("b")));
    let second = store.list("c", Some("b"), 2).expect("page 2");
    let ids: Vec<_> = second.documents.iter().map(|d| d.0.as_str()).collect();
    assert_eq!((ids, second.next.as_deref()), (vec!["d", "e"], None));
}

#[test]
fn pulls_filter_by_partition_and_refuse_unknown_ones() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir, 4);
    for i in 0..40 {
        store
            .put("c", &i.to_string(), b"1", &Precondition::Always)
            .expect("put");
    }
    let mut seen = 0;
    for partition in 0..4 {
        let spec = PullSpec {
            since: 0,
            partitions: vec![partition],
        };
        store
            .scan_changes(&spec, |_, c| {
                assert_eq!(partition_of(c.id, 4), partition);
                seen += 1;
                ControlFlow::Continue(())
            })
            .expect("scan");
    }
    assert_eq!(seen, 40);
    let err = store
        .scan_changes(
            &PullSpec {
                since: 0,
                partitions: vec![4],
            },
            |_, _| ControlFlow::Continue(()),
        )
        .expect_err("partition 4 of 4");
    assert!(matches!(
        err,
        StoreError::NoSuchPartition {
            partition: 4,
            count: 4
        }
    ));
    assert!(matches!(
        store.lag(41, &[]),
        Err(StoreError::BeyondHead {
            since: 41,
            head: 40
        })
    ));
}

#[test]
fn concurrent_client_writes_lose_and_reorder_nothing() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir, 4);
    let threads = 16;
    let per_thread = 200;
    let outcomes: Vec<Vec<(String, WriteOutcome)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = store.clone();
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            // Four keys shared by every thread, so groups hold the same key twice.
                            let id = format!("k{}", (t + i) % 4);
                            let out = store
                                .put(
                                    "c",
                                    &id,
                                    format!("[{t},{i}]").as_bytes(),
                                    &Precondition::Always,
                                )
                                .expect("put");
                            (id, out)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect()
    });
    let mut seqs: Vec<u64> = outcomes.iter().flatten().map(|(_, o)| o.seq).collect();
    seqs.sort_unstable();
    let total = (threads * per_thread) as u64;
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "one seq each, no gap"
    );
    for key in 0..4 {
        let id = format!("k{key}");
        let mut versions: Vec<u64> = outcomes
            .iter()
            .flatten()
            .filter(|(i, _)| *i == id)
            .map(|(_, o)| o.version)
            .collect();
        versions.sort_unstable();
        let n = versions.len() as u64;
        assert_eq!(
            versions,
            (1..=n).collect::<Vec<_>>(),
            "{id}: every version once"
        );
        let doc = store.get("c", &id).expect("get").expect("live");
        assert_eq!(doc.version, n);
    }
    let mut changes = 0;
    store
        .scan_changes(&PullSpec::default(), |_, _| {
            changes += 1;
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(changes, 4, "one index entry per document");
    assert_eq!(store.live_documents().expect("count"), 4);
}

/// Pulled changes, as replicated documents.
fn as_incoming(changes: &[Pulled]) -> Vec<Incoming<'_>> {
    changes
        .iter()
        .map(|(_, c, id, v, body)| Incoming {
            collection: c,
            id,
            version: *v,
            tombstone: body.is_none(),
            body: body.as_deref().unwrap_or_default(),
        })
        .collect()
}

/// A source with live documents, tombstones and rewrites in two collections.
fn loaded_source(dir: &TempDir) -> Store {
    let source = open(dir, 8);
    for round in 0..3u8 {
        for k in 0..12 {
            let (c, id) = key(k);
            if (k + usize::from(round)).is_multiple_of(4) {
                let _ = source.delete(&c, &id, &Precondition::Always);
            } else {
                let body = format!("{{\"r\":{round},\"k\":{k}}}");
                source
                    .put(&c, &id, body.as_bytes(), &Precondition::Always)
                    .expect("put");
            }
        }
    }
    source
}

/// Everything a store shows of its documents: its pull from 0 (seqs included) and digest.
fn contents(store: &Store) -> (Vec<Pulled>, Digest) {
    (pull(store, 0), store.digest(&[]).expect("digest"))
}

/// [`contents`] without the seqs.
fn documents(store: &Store) -> (Vec<Pulled>, Vec<PartitionDigest>) {
    let (mut pulled, digest) = contents(store);
    for change in &mut pulled {
        change.0 = 0;
    }
    (pulled, digest.partitions)
}

#[test]
fn ingesting_a_pull_gives_what_applying_it_gives() {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().expect("tempdir")).collect();
    let source = loaded_source(&dirs[0]);
    let changes = pull(&source, 0);
    let mut incoming = as_incoming(&changes);
    assert_eq!(
        incoming.len(),
        12,
        "one change a document in the source's pull"
    );
    // A document twice in a chunk, its older version second: `apply` skips it as stale.
    let twice = incoming
        .iter()
        .position(|d| d.version >= 2)
        .expect("a rewritten document");
    let mut older = incoming[twice];
    older.version -= 1;
    incoming.insert(twice + 2, older);
    let batches: Vec<Vec<Incoming<'_>>> = incoming.chunks(4).map(<[_]>::to_vec).collect();

    let applied = open(&dirs[1], 8);
    let mut apply_outcomes = Vec::new();
    for batch in &batches {
        apply_outcomes.push(applied.apply(batch).expect("apply"));
    }
    let ingested = open(&dirs[2], 8);
    let session = ingested.ingest().expect("an empty store takes an ingest");
    let mut ingest_outcomes = Vec::new();
    for chunk in batches.chunks(3) {
        let outcomes = session
            .load(chunk)
            .expect("load")
            .expect("nobody else wrote");
        ingest_outcomes.extend(outcomes);
    }
    assert_eq!(ingest_outcomes, apply_outcomes);
    assert_eq!(contents(&ingested), contents(&applied));
    assert_eq!(ingested.memtable_entries(), 0, "written as table files");
    assert!(applied.memtable_entries() > 0);
    assert_eq!(
        ingested.describe().expect("d"),
        Describe {
            node_id: ingested.node_id().to_owned(),
            ..applied.describe().expect("d")
        }
    );
    for (_, c, id, v, body) in &changes {
        let got = ingested.get(c, id).expect("get");
        assert_eq!(
            got.as_ref().map(|d| d.version),
            body.as_ref().map(|_| *v),
            "{c}/{id}"
        );
        assert_eq!(got.map(|d| d.body.to_vec()), body.clone(), "{c}/{id}");
    }
    // A chunk with a document an earlier chunk wrote is refused, nothing written, and
    // `apply` skips every document of it.
    assert_eq!(session.load(&batches[..1]).expect("load"), None);
    assert_eq!(contents(&ingested), contents(&applied));
    let again = ingested.apply(&incoming).expect("re-apply");
    assert_eq!(again.applied, 0);
    // Nothing is left of the table files once they are linked.
    let left =
        std::fs::read_dir(dirs[2].path().join("db").join("ingest")).map_or(0, Iterator::count);
    assert_eq!(left, 0);
}

#[test]
fn an_ingest_stops_once_another_writer_wrote() {
    let dirs: Vec<TempDir> = (0..2).map(|_| TempDir::new().expect("tempdir")).collect();
    let source = loaded_source(&dirs[0]);
    let changes = pull(&source, 0);
    let incoming = as_incoming(&changes);
    let sink = open(&dirs[1], 8);
    let session = sink.ingest().expect("an empty store takes an ingest");
    session
        .load(&[incoming[..10].to_vec()])
        .expect("load")
        .expect("nobody else wrote");
    sink.put("other", "x", b"{}", &Precondition::Always)
        .expect("a client write");
    let head = sink.head_seq();
    assert_eq!(
        session.load(&[incoming[10..].to_vec()]).expect("load"),
        None
    );
    assert_eq!(sink.head_seq(), head, "nothing written");
    assert!(sink.ingest().is_none(), "the store holds documents");
    sink.apply(&incoming[10..]).expect("apply");
    let (pulled, digest) = contents(&sink);
    assert_eq!(pulled.len(), 13);
    assert_eq!(
        digest
            .partitions
            .iter()
            .map(|p| p.live_documents)
            .sum::<u64>(),
        source.live_documents().expect("live") + 1
    );
}

/// A chunk stopped after its first link (1) or its second (2), by a crash of the process
/// (rolled back when the store opens) or by a failure (rolled back at once).
#[test]
fn an_ingest_stopped_between_its_steps_is_rolled_back() {
    for (step, crash) in [(1, true), (2, true), (1, false), (2, false)] {
        let case = format!("step {step}, crash {crash}");
        let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().expect("tempdir")).collect();
        let source = loaded_source(&dirs[0]);
        let changes = pull(&source, 0);
        let incoming = as_incoming(&changes);
        let (done, stopped) = incoming.split_at(10);
        let expected = open(&dirs[1], 8);
        expected.apply(done).expect("apply");
        let mut sink = open(&dirs[2], 8);
        let session = sink.ingest().expect("an empty store takes an ingest");
        session
            .load(&[done.to_vec()])
            .expect("load")
            .expect("nobody else wrote");
        let mode = if crash { step | 0x10 } else { step };
        session
            .crash_after
            .store(mode, std::sync::atomic::Ordering::Relaxed);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            session.load(&[stopped.to_vec()])
        }));
        if crash {
            assert!(result.is_err(), "{case}: the crash point was reached");
            assert_eq!(pull(&sink, 0).len(), 12, "{case}: the changes are linked");
            drop(session);
            drop(sink);
            sink = open(&dirs[2], 8);
            assert_eq!(contents(&sink), contents(&expected), "{case}");
            assert!(sink.ingest().is_none(), "{case}: the store holds documents");
        } else {
            let error = result.expect("no panic").expect_err("the injected failure");
            assert!(error.to_string().contains("injected"), "{case}: {error}");
            // The failed chunk's seqs stay used in this process: compare all but the seqs.
            assert_eq!(documents(&sink), documents(&expected), "{case}");
            let again = session.load(&[stopped.to_vec()]).expect("load");
            assert_eq!(again, None, "{case}: the session is spent");
        }
        for doc in stopped {
            let got = sink.get(doc.collection, doc.id).expect("get");
            assert!(got.is_none(), "{case}: {}/{}", doc.collection, doc.id);
        }
        // The copy sends the chunk again, and it is applied.
        sink.apply(stopped).expect("apply");
        expected.apply(stopped).expect("apply");
        assert_eq!(documents(&sink), documents(&expected), "{case}");
    }
}

#[test]
fn lag_counts_the_requested_partitions_as_a_pull_would_deliver_them() {
    let dir = TempDir::new().expect("tempdir");
    let store = loaded_source(&dir);
    let head = store.head_seq();
    for since in [0, head / 2, head] {
        for partitions in [vec![], vec![0], vec![1, 5], (0..8).collect()] {
            let spec = PullSpec {
                since,
                partitions: partitions.clone(),
            };
            let mut pulled = 0;
            store
                .scan_changes(&spec, |_, _| {
                    pulled += 1;
                    ControlFlow::Continue(())
                })
                .expect("scan");
            let lag = store.lag(since, &partitions).expect("lag");
            assert_eq!(
                lag,
                (head, pulled),
                "since {since}, partitions {partitions:?}"
            );
        }
    }
    assert!(matches!(
        store.lag(0, &[8]),
        Err(StoreError::NoSuchPartition {
            partition: 8,
            count: 8
        })
    ));
}

/// An id in `partition` of 4.
fn id_in(partition: u32) -> String {
    (0..)
        .map(|i| format!("d{i}"))
        .find(|id| partition_of(id, 4) == partition)
        .expect("some id falls in every partition")
}

fn doc<'a>(id: &'a str) -> Incoming<'a> {
    Incoming {
        collection: "c",
        id,
        version: 1,
        tombstone: false,
        body: b"{}",
    }
}

#[test]
fn a_store_of_a_cluster_refuses_documents_of_partitions_it_does_not_own() {
    let dirs: Vec<TempDir> = (0..2).map(|_| TempDir::new().expect("tempdir")).collect();
    let (mine, theirs) = (id_in(1), id_in(2));
    let stores: Vec<Store> = dirs.iter().map(|dir| open(dir, 4)).collect();
    for store in &stores {
        assert_eq!(
            store.owned_partitions(),
            [0, 1, 2, 3],
            "a cluster of one owns all"
        );
        assert_eq!(store.describe().expect("describe").cluster_hash, "");
        store.join_cluster(&[0, 1], "c0ffee").expect("join");
        let about = store.describe().expect("describe");
        assert_eq!(
            (about.partitions, about.cluster_hash.as_str()),
            (vec![0, 1], "c0ffee")
        );
    }
    assert!(matches!(
        stores[0].join_cluster(&[0], "c0ffee"),
        Err(StoreError::AlreadyJoined)
    ));
    let batch = [doc(&mine), doc(&theirs)];
    let refused = |error: StoreError| {
        let message = error.to_string();
        assert!(
            matches!(&error, StoreError::NotOwned { partition: 2, .. }),
            "{error:?}"
        );
        assert_eq!(error.code(), ErrorCode::Misdirected);
        assert!(
            message.contains(&format!("c/{theirs} is in partition 2")),
            "{message}"
        );
        assert!(message.contains("it owns partitions 0-1"), "{message}");
    };
    // By apply, by ingest (a fresh store), and by a client write: nothing of the batch lands.
    refused(stores[0].apply(&batch).expect_err("not owned"));
    let session = stores[1].ingest().expect("a fresh store ingests");
    refused(session.load(&[batch.to_vec()]).expect_err("not owned"));
    refused(
        stores[0]
            .put("c", &theirs, b"{}", &Precondition::Always)
            .expect_err("not owned"),
    );
    for store in &stores {
        assert_eq!(store.live_documents().expect("count"), 0);
        assert_eq!(store.head_seq(), 0);
    }
    stores[0].apply(&batch[..1]).expect("owned");
    stores[0]
        .put("c", &mine, b"{}", &Precondition::Always)
        .expect("owned");
    assert_eq!(stores[0].live_documents().expect("count"), 1);
}

#[test]
fn several_sessions_ingest_into_one_fresh_store_together() {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().expect("tempdir")).collect();
    let source = loaded_source(&dirs[0]);
    let changes = pull(&source, 0);
    let incoming = as_incoming(&changes);
    // Two sources, as two blue nodes owning the even and the odd partitions.
    let (even, odd): (Vec<Incoming<'_>>, Vec<Incoming<'_>>) = incoming
        .iter()
        .partition(|d| partition_of(d.id, 8).is_multiple_of(2));
    assert!(!even.is_empty() && !odd.is_empty());
    let sink = open(&dirs[1], 8);
    let sessions = [
        sink.ingest().expect("a fresh store"),
        sink.ingest().expect("a second source at the same time"),
    ];
    // Per source, its chunks; a chunk here is one batch of two documents.
    let chunks: Vec<Vec<Vec<Vec<Incoming<'_>>>>> = [&even, &odd]
        .iter()
        .map(|docs| docs.chunks(2).map(|c| vec![c.to_vec()]).collect())
        .collect();
    for step in 0..chunks[0].len().max(chunks[1].len()) {
        for (session, chunks) in sessions.iter().zip(&chunks) {
            if let Some(chunk) = chunks.get(step) {
                let outcome = session.load(chunk).expect("load");
                assert!(outcome.is_some(), "chunk {step} ingested, not refused");
            }
        }
    }
    assert_eq!(sink.memtable_entries(), 0, "every chunk as table files");
    let applied = open(&dirs[2], 8);
    applied.apply(&incoming).expect("apply");
    let sorted = |store: &Store| {
        let (mut pulled, digest) = documents(store);
        pulled.sort();
        (pulled, digest)
    };
    assert_eq!(sorted(&sink), sorted(&applied));
    assert_eq!(sink.head_seq(), changes.len() as u64);

    // A session started now still ingests; another writer ends ingesting for every session.
    let late = sink
        .ingest()
        .expect("the store holds nothing but ingested chunks");
    sink.put("c", "client", b"{}", &Precondition::Always)
        .expect("put");
    assert_eq!(sessions[0].load(&chunks[0][0]).expect("load"), None);
    assert_eq!(late.load(&chunks[1][0]).expect("load"), None);
    assert!(sink.ingest().is_none());
}

#[test]
fn stores_created_at_the_same_path_by_the_same_pid_get_different_ids() {
    // Containers: every node is pid 1 with the same data path, started in the same millisecond.
    // Made back to back, these share path, pid and (nearly always) the millisecond.
    let path = std::path::Path::new("/var/lib/cutover/store");
    let ids: std::collections::HashSet<String> = (0..8).map(|_| new_node_id(path)).collect();
    assert_eq!(ids.len(), 8, "{ids:?}");
    let dir = TempDir::new().expect("temp dir");
    let first = open(&dir, 4).node_id().to_owned();
    std::fs::remove_dir_all(dir.path()).expect("removes the store");
    let second = open(&dir, 4).node_id().to_owned();
    assert_ne!(
        first, second,
        "a store made again at the same path is another node"
    );
}

#[test]
fn past_max_queued_writes_a_write_is_refused_at_once_and_nothing_of_it_is_written() {
    let dir = TempDir::new().expect("tempdir");
    let store = Store::open(&StoreConfig {
        path: dir.path().join("db"),
        partitions: Some(4),
        sync: SyncPolicy::Os,
        max_queued_writes: 2,
    })
    .expect("open");
    let write = |id: &str| ClientWrite {
        collection: "c".to_owned(),
        id: id.to_owned(),
        body: Some(bytes::Bytes::from_static(b"{}")),
        precondition: Precondition::Always,
    };
    // The writer thread takes the first write and blocks on the fence lock held here, so the
    // queue behind it fills up.
    let fence = store.inner.fence.write();
    let first = store.write(write("first"));
    let taken = std::time::Instant::now();
    while store.inner.writer.len() > 0 {
        assert!(
            taken.elapsed() < std::time::Duration::from_secs(10),
            "not taken"
        );
        std::thread::yield_now();
    }
    let queued = [store.write(write("q1")), store.write(write("q2"))];
    let refused = store.write(write("over"));
    let refused = futures_util::FutureExt::now_or_never(refused).expect("refused at once");
    assert!(
        matches!(refused, Err(StoreError::Overloaded { queued: 2 })),
        "{refused:?}"
    );
    drop(fence);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(first).expect("the first write commits");
    for write in queued {
        runtime.block_on(write).expect("the queued writes commit");
    }
    assert!(store.get("c", "q2").expect("read").is_some());
    assert!(store.get("c", "over").expect("read").is_none());
}
