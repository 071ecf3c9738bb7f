//! Routes: renames, programs and native transforms compiled both ways, and one batch through
//! them.

use bytes::Bytes;

use super::*;

fn doc(collection: &str, id: &str, version: u64, body: &str) -> Document {
    Document {
        collection: collection.into(),
        id: id.into(),
        version,
        seq: version,
        body: Bytes::from(body.to_owned()),
        tombstone: body.is_empty(),
    }
}

fn plan(collections: &str) -> Plan {
    let text = format!(
        "[blue]\nsources = [\"http://127.0.0.1:1\"]\n[green]\nsinks = [\"http://127.0.0.1:2\"]\n\
         {collections}"
    );
    Plan::parse("plan.toml", &text).expect("valid plan")
}

#[test]
fn a_batch_is_renamed_transformed_dropped_and_dead_lettered_and_counted() {
    let plan = plan(
        "[collections.users]\nrename = \"people\"\n\
         forward = 'if .drop then empty elif .fail then error(\"no\") else .v += 1 end'\n",
    );
    let routes = Routes::forward(&plan, &Natives::new()).expect("compiles");
    let batch = DocumentBatch {
        documents: vec![
            doc("users", "a", 1, r#"{"v":1}"#),
            doc("users", "b", 2, r#"{"drop":true}"#),
            doc("users", "c", 3, r#"{"fail":true}"#),
            doc("users", "d", 4, ""),
            doc("orders", "e", 1, r#"{"x":1}"#),
        ],
        last_seq: 9,
    };
    let problems = HashSet::from([("users".to_owned(), "a".to_owned())]);
    let out = transform_batch(batch, &routes, &problems);
    assert_eq!(out.last_seq, 9);
    let sent: Vec<_> = out
        .documents
        .iter()
        .map(|d| {
            (
                d.collection.as_str(),
                d.id.as_str(),
                d.tombstone,
                d.body.clone(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            ("people", "a", false, Bytes::from_static(br#"{"v":2}"#)),
            ("people", "b", true, Bytes::new()),
            ("people", "d", true, Bytes::new()),
            ("orders", "e", false, Bytes::from_static(br#"{"x":1}"#)),
        ]
    );
    assert_eq!(
        out.tally,
        Tally {
            documents: 5,
            bytes: 7 + 13 + 13 + 7,
            tombstones: 1,
            dropped: 1,
            failed: 1
        }
    );
    assert_eq!(out.record.dropped, vec![("users".into(), "b".into(), 2)]);
    assert_eq!(out.record.failed.len(), 1);
    assert_eq!(out.record.failed[0].id, "c");
    assert!(
        out.record.failed[0].error.contains("no"),
        "{:?}",
        out.record
    );
    assert_eq!(out.record.copied, vec![("users".into(), "a".into())]);
}

#[test]
fn a_bad_program_names_its_field() {
    let plan = plan("[collections.users]\nforward = '.a |'\n");
    let error = Routes::forward(&plan, &Natives::new()).expect_err("does not compile");
    assert_eq!(error.field, "collections.users.forward");
}

#[test]
fn reverse_routes_rename_back_and_skip_what_has_no_reverse_program() {
    let plan = plan(
        "[collections.users]\nforward = '.v += 1'\nreverse = '.v -= 1'\n\
         [collections.orders]\nrename = \"purchases\"\n\
         [collections.tmp]\nforward = 'select(.keep)'\n",
    );
    let routes = Routes::reverse(&plan, &Natives::new()).expect("compiles");
    let batch = DocumentBatch {
        documents: vec![
            doc("users", "a", 2, r#"{"v":2}"#),
            doc("purchases", "b", 1, r#"{"x":1}"#),
            doc("tmp", "c", 1, r#"{"keep":true}"#),
        ],
        last_seq: 3,
    };
    let out = transform_batch(batch, &routes, &HashSet::new());
    let sent: Vec<_> = out
        .documents
        .iter()
        .map(|d| (d.collection.as_str(), d.body.clone()))
        .collect();
    assert_eq!(
        sent,
        vec![
            ("users", Bytes::from(r#"{"v":1}"#)),
            ("orders", Bytes::from(r#"{"x":1}"#)),
        ],
        "tmp has a forward program and no reverse one: left alone on blue"
    );
    assert!(routes.skips("tmp") && !routes.skips("users"));
}

/// A native transform as an embedder writes one: a `"v"` field incremented by `by`.
#[derive(Debug)]
struct Add {
    by: i64,
}

impl Transform for Add {
    fn apply(&self, body: &Bytes) -> Outcome {
        let mut value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(error) => return Outcome::Failed(error.to_string()),
        };
        let v = value["v"].as_i64().unwrap_or_default();
        value["v"] = (v + self.by).into();
        Outcome::Body(Bytes::from(value.to_string()))
    }
}

fn natives() -> Natives {
    Natives::new()
        .with("up", Arc::new(Add { by: 1 }))
        .with("down", Arc::new(Add { by: -1 }))
}

#[test]
fn native_transforms_are_found_by_name_both_ways() {
    let plan = plan(
        "[collections.users]\nrename = \"people\"\nforward_native = \"up\"\n\
         reverse_native = \"down\"\n",
    );
    let natives = natives();
    let forward = Routes::forward(&plan, &natives).expect("resolves");
    let users = forward.transform("users");
    assert_eq!(
        users.apply(&Bytes::from(r#"{"v":1}"#)),
        Outcome::Body(Bytes::from(r#"{"v":2}"#))
    );
    assert_eq!(users.runner(), Runner::Native);
    assert_eq!(
        users.describe(),
        "native `up` (a Rust transform registered in this process)"
    );
    let reverse = Routes::reverse(&plan, &natives).expect("resolves");
    assert!(!reverse.skips("people"), "a native reverse carries it back");
    assert_eq!(reverse.target("people"), "users");
    assert_eq!(
        reverse
            .transform("people")
            .apply(&Bytes::from(r#"{"v":2}"#)),
        Outcome::Body(Bytes::from(r#"{"v":1}"#))
    );
}

#[test]
fn an_unknown_native_names_its_field_and_the_registered_ones() {
    let typo = plan("[collections.users]\nforward_native = \"upp\"\n");
    let error = Routes::forward(&typo, &natives()).expect_err("not registered");
    assert_eq!(error.field, "collections.users.forward_native");
    assert!(
        error.message.starts_with(
            "no native transform `upp` is registered in this process (registered: `down`, `up`)"
        ),
        "{error}"
    );
    let back = plan("[collections.users]\nforward = '.v'\nreverse_native = \"down\"\n");
    let error = Routes::reverse(&back, &Natives::new()).expect_err("none registered");
    assert_eq!(error.field, "collections.users.reverse_native");
    assert!(
        error.message.contains("(registered: none)"),
        "the cutover binary's case: {error}"
    );
    assert!(
        Routes::forward(&back, &Natives::new()).is_ok(),
        "each direction resolves its own names"
    );
}

#[test]
fn a_native_resolved_later_says_so_and_crosses_nothing() {
    let plan = plan("[collections.users]\nforward_native = \"anything\"\n");
    let routes = Routes::forward(&plan, Resolve::Later).expect("any name");
    let users = routes.transform("users");
    assert_eq!(users.runner(), Runner::Native);
    assert_eq!(
        users.describe(),
        "native `anything` (resolved by the engine that runs the plan)"
    );
    assert!(matches!(
        users.apply(&Bytes::from("{}")),
        Outcome::Failed(why) if why.contains("resolved by the engine")
    ));
}
