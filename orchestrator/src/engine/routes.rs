//! Where each blue collection goes and what its documents become: the plan's transforms,
//! compiled once per upgrade (its jq programs, and its native transforms looked up by name in
//! the process's [`Natives`]), and the transform of one pulled batch.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use cutover_proto::v1::{Document, DocumentBatch};

use super::{
    journal::{BatchRecord, DeadLetter},
    plan::Plan,
    transform::{Identity, Jq, Natives, Outcome, Runner, Transform},
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

/// A transform of the plan that cannot be used: a program that does not compile, or the name
/// of a native transform this process did not register.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct CompileError {
    /// E.g. `collections.users.forward` or `collections.users.forward_native`.
    pub field: String,
    /// What is wrong: where and what from the jq compiler, or the unknown name and the
    /// registered ones.
    pub message: String,
}

/// Where a plan's `forward_native` and `reverse_native` names are looked up.
#[derive(Debug, Clone, Copy)]
pub enum Resolve<'a> {
    /// In this process's registry: an unknown name is a [`CompileError`].
    Now(&'a Natives),
    /// By the engine that will run the plan, which `cutover plan check` (offline) does not
    /// know: each name stands for a transform that says so in the report, and fails every
    /// document it is given.
    Later,
}

impl<'a> From<&'a Natives> for Resolve<'a> {
    fn from(natives: &'a Natives) -> Self {
        Self::Now(natives)
    }
}

/// A native transform the engine that runs the plan resolves ([`Resolve::Later`]).
#[derive(Debug)]
struct Unresolved {
    name: String,
}

impl Transform for Unresolved {
    fn apply(&self, _: &bytes::Bytes) -> Outcome {
        Outcome::Failed(format!(
            "the native transform `{}` is resolved by the engine that runs the plan, not here",
            self.name
        ))
    }

    fn runner(&self) -> Runner {
        Runner::Native
    }

    fn describe(&self) -> String {
        format!(
            "native `{}` (resolved by the engine that runs the plan)",
            self.name
        )
    }
}

/// One direction's transform of collection `name`: the program `program` (the plan's
/// `collections.NAME.FIELD`) compiled, the native transform named `native` (its
/// `FIELD_native`) resolved, or identity when neither is given (the plan's check allows one).
fn compile(
    name: &str,
    field: &str,
    (program, native): (Option<&String>, Option<&String>),
    natives: Resolve<'_>,
) -> Result<Arc<dyn Transform>, CompileError> {
    if let Some(native) = native {
        return match natives {
            Resolve::Later => Ok(Arc::new(Unresolved {
                name: native.clone(),
            })),
            Resolve::Now(natives) => natives.get(native).ok_or_else(|| CompileError {
                field: format!("collections.{name}.{field}_native"),
                message: unknown(native, natives),
            }),
        };
    }
    Ok(match program {
        None => Arc::new(Identity),
        Some(program) => Arc::new(Jq::compile(program).map_err(|message| CompileError {
            field: format!("collections.{name}.{field}"),
            message: format!("the jq program does not compile: {message}"),
        })?),
    })
}

/// Why `native` cannot be used here, and what can.
fn unknown(native: &str, natives: &Natives) -> String {
    let registered = if natives.is_empty() {
        "none".to_owned()
    } else {
        natives
            .names()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "no native transform `{native}` is registered in this process (registered: \
         {registered}): name a registered one, or run the plan in a program that registers \
         `{native}` (the `cutover` binary registers none)"
    )
}

impl Routes {
    /// Compiles the forward transforms of `plan` (identity where none is given), its native
    /// ones looked up in `natives`.
    pub fn forward<'a>(plan: &Plan, natives: impl Into<Resolve<'a>>) -> Result<Self, CompileError> {
        let natives = natives.into();
        let mut by_collection = HashMap::new();
        for (name, collection) in &plan.collections {
            let given = (
                collection.forward.as_ref(),
                collection.forward_native.as_ref(),
            );
            let transform = compile(name, "forward", given, natives)?;
            let target = plan.green_name(name).to_owned();
            by_collection.insert(name.clone(), Route { target, transform });
        }
        Ok(Self {
            by_collection,
            skipped: HashSet::new(),
        })
    }

    /// Compiles the reverse transforms of `plan`, keyed by green's collection names, its
    /// native ones looked up in `natives`: a renamed collection is renamed back; one the plan
    /// cannot carry back ([`unreversible`](Plan::unreversible)) is skipped.
    pub fn reverse<'a>(plan: &Plan, natives: impl Into<Resolve<'a>>) -> Result<Self, CompileError> {
        let natives = natives.into();
        let skipped: HashSet<String> = plan.unreversible().into_iter().collect();
        let mut by_collection = HashMap::new();
        for (name, collection) in &plan.collections {
            let green = plan.green_name(name).to_owned();
            if skipped.contains(&green) {
                continue;
            }
            let given = (
                collection.reverse.as_ref(),
                collection.reverse_native.as_ref(),
            );
            let transform = compile(name, "reverse", given, natives)?;
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
mod tests;
