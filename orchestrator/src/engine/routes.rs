//! Where each blue collection goes and what its documents become: the plan's transforms,
//! compiled once per upgrade, and the transform of one pulled batch.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use cutover_proto::v1::{Document, DocumentBatch};

use super::{
    journal::{BatchRecord, DeadLetter},
    plan::Plan,
    transform::{Identity, Jq, Outcome, Transform},
};

/// How one collection crosses.
#[derive(Debug, Clone)]
struct Route {
    target: String,
    transform: Arc<dyn Transform>,
}

/// The compiled transforms of a plan, one direction.
#[derive(Debug, Clone)]
pub struct Routes {
    by_collection: HashMap<String, Route>,
    /// Collections not carried at all (reverse only: a forward program without a reverse
    /// one). Their documents are left alone on the other side, never deleted there.
    skipped: HashSet<String>,
}

/// A program that does not compile: the plan field and the compiler's message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct CompileError {
    /// E.g. `collections.users.forward`.
    pub field: String,
    /// Where and what, from the jq compiler.
    pub message: String,
}

/// `program` (the plan's `collections.NAME.FIELD`) compiled, or identity when absent.
fn compile(
    name: &str,
    field: &str,
    program: Option<&String>,
) -> Result<Arc<dyn Transform>, CompileError> {
    Ok(match program {
        None => Arc::new(Identity),
        Some(program) => Arc::new(Jq::compile(program).map_err(|message| CompileError {
            field: format!("collections.{name}.{field}"),
            message,
        })?),
    })
}

impl Routes {
    /// Compiles the forward programs of `plan` (identity where none is given).
    pub fn forward(plan: &Plan) -> Result<Self, CompileError> {
        let mut by_collection = HashMap::new();
        for (name, collection) in &plan.collections {
            let transform = compile(name, "forward", collection.forward.as_ref())?;
            let target = plan.green_name(name).to_owned();
            by_collection.insert(name.clone(), Route { target, transform });
        }
        Ok(Self {
            by_collection,
            skipped: HashSet::new(),
        })
    }

    /// Compiles the reverse programs of `plan`, keyed by green's collection names: a renamed
    /// collection is renamed back; one the plan cannot carry back
    /// ([`unreversible`](Plan::unreversible)) is skipped.
    pub fn reverse(plan: &Plan) -> Result<Self, CompileError> {
        let skipped: HashSet<String> = plan.unreversible().into_iter().collect();
        let mut by_collection = HashMap::new();
        for (name, collection) in &plan.collections {
            let green = plan.green_name(name).to_owned();
            if skipped.contains(&green) {
                continue;
            }
            let transform = compile(name, "reverse", collection.reverse.as_ref())?;
            let target = name.clone();
            by_collection.insert(green, Route { target, transform });
        }
        Ok(Self {
            by_collection,
            skipped,
        })
    }

    /// Whether `collection` is not carried in this direction.
    pub fn skips(&self, collection: &str) -> bool {
        !self.skipped.is_empty() && self.skipped.contains(collection)
    }

    /// The name `collection` has on the other side.
    pub fn target<'a>(&'a self, collection: &'a str) -> &'a str {
        self.by_collection
            .get(collection)
            .map_or(collection, |r| r.target.as_str())
    }

    /// The transform of `collection`.
    pub fn transform(&self, collection: &str) -> &dyn Transform {
        self.by_collection
            .get(collection)
            .map_or(&Identity as &dyn Transform, |r| r.transform.as_ref())
    }
}

/// Counts of one batch or cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Documents pulled, tombstones included.
    pub documents: u64,
    /// Body bytes pulled (before transform).
    pub bytes: u64,
    /// Tombstones among them.
    pub tombstones: u64,
    /// Dropped by the transform.
    pub dropped: u64,
    /// Failed to transform (dead letters).
    pub failed: u64,
}

impl Tally {
    /// Adds `other` to this tally.
    pub fn add(&mut self, other: &Self) {
        self.documents += other.documents;
        self.bytes += other.bytes;
        self.tombstones += other.tombstones;
        self.dropped += other.dropped;
        self.failed += other.failed;
    }
}

/// A pulled batch after its transform: what to apply and what to journal with its watermark.
#[derive(Debug, Default)]
pub struct Transformed {
    /// Documents for the sink, renamed and transformed; a dropped document becomes a
    /// tombstone at its version, so a document the program stops selecting leaves the sink.
    pub documents: Vec<Document>,
    /// The batch's resume point on the source.
    pub last_seq: u64,
    /// Dead letters, drops, and keys that were problems before and crossed now.
    pub record: BatchRecord,
    /// Its counts.
    pub tally: Tally,
    /// Pulled documents per source collection, for the metrics.
    pub per_collection: Vec<(String, u64, u64)>,
}

/// Transforms one pulled batch. `problems` holds the `(collection, id)` of the documents that
/// are dead letters or drops in the journal, so that a document which now crosses is cleared.
pub fn transform_batch(
    batch: DocumentBatch,
    routes: &Routes,
    problems: &HashSet<(String, String)>,
) -> Transformed {
    let mut out = Transformed {
        documents: Vec::with_capacity(batch.documents.len()),
        last_seq: batch.last_seq,
        ..Transformed::default()
    };
    let mut per_collection: HashMap<String, (u64, u64)> = HashMap::new();
    let mut crossed = Vec::new();
    for mut doc in batch.documents {
        if routes.skips(&doc.collection) {
            continue;
        }
        let tally = &mut out.tally;
        tally.documents += 1;
        tally.bytes += doc.body.len() as u64;
        match per_collection.get_mut(&doc.collection) {
            Some(entry) => *entry = (entry.0 + 1, entry.1 + doc.body.len() as u64),
            None => {
                per_collection.insert(doc.collection.clone(), (1, doc.body.len() as u64));
            }
        }
        let key_was_problem =
            !problems.is_empty() && problems.contains(&(doc.collection.clone(), doc.id.clone()));
        let mut crosses = true;
        if doc.tombstone {
            tally.tombstones += 1;
        } else {
            match routes.transform(&doc.collection).apply(&doc.body) {
                Outcome::Body(body) => doc.body = body,
                Outcome::Dropped => {
                    crosses = false;
                    tally.dropped += 1;
                    out.record
                        .dropped
                        .push((doc.collection.clone(), doc.id.clone(), doc.version));
                    doc.tombstone = true;
                    doc.body = bytes::Bytes::new();
                }
                Outcome::Failed(error) => {
                    tally.failed += 1;
                    out.record.failed.push(DeadLetter {
                        source: String::new(),
                        collection: doc.collection,
                        id: doc.id,
                        version: doc.version,
                        error,
                    });
                    continue;
                }
            }
        }
        if key_was_problem && crosses {
            crossed.push((doc.collection.clone(), doc.id.clone()));
        }
        let target = routes.target(&doc.collection);
        if target != doc.collection {
            doc.collection = target.to_owned();
        }
        out.documents.push(doc);
    }
    out.record.copied = crossed;
    out.per_collection = per_collection
        .into_iter()
        .map(|(c, (n, b))| (c, n, b))
        .collect();
    out
}

#[cfg(test)]
mod tests {
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
        let routes = Routes::forward(&plan).expect("compiles");
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
        let error = Routes::forward(&plan).expect_err("does not compile");
        assert_eq!(error.field, "collections.users.forward");
    }

    #[test]
    fn reverse_routes_rename_back_and_skip_what_has_no_reverse_program() {
        let plan = plan(
            "[collections.users]\nforward = '.v += 1'\nreverse = '.v -= 1'\n\
             [collections.orders]\nrename = \"purchases\"\n\
             [collections.tmp]\nforward = 'select(.keep)'\n",
        );
        let routes = Routes::reverse(&plan).expect("compiles");
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
}
