//! The journal: everything an orchestrator must remember to resume after `kill -9`. A RocksDB
//! directory (`--journal D`); every change is one synced `WriteBatch`, so a crash leaves it
//! either before or after a change, never half-way.
//!
//! | key | value |
//! |---|---|
//! | `layout` | u64 big-endian: the layout of these keys, [`LAYOUT`]; checked at open |
//! | `upgrade` | [`UpgradeRecord`] (JSON): id, plan, when it started |
//! | `state` | [`StateRecord`] (JSON): the upgrade's [`State`], since when, its detail |
//! | `watermark/<source> 0x00 <sink>` | u64 big-endian: every change of that pipeline's partitions on the source up to it is applied |
//! | `cycle/<n>` (u32 big-endian) | [`CycleRecord`] (JSON) |
//! | `dead/<collection> 0x00 <id>` | [`DeadLetter`] (JSON) |
//! | `dropped/<collection> 0x00 <id>` | the source version dropped by the transform, u64 |
//! | `rdead/…`, `rdropped/…` | the same for reverse sync (green → blue) |
//! | `holds` | [`Hold`]s (JSON): each proxy's figures for the latest hold |
//! | `epoch` | u64 big-endian: the last proxy epoch used; kept across upgrades |
//! | `overhead` | u64 big-endian: the last measured switch overhead, µs; kept across upgrades |
//!
//! A watermark advances together with the dead letters and drops of the batch that took it
//! there, in one batch: a crash never records a failure twice nor loses one.
//!
//! Layout 1 (releases before the state machine, no `layout` key) kept a `phase` and a
//! `cutover` record instead of `state` and `holds`; such a journal is migrated at open, in
//! one synced batch ([`migrate`]). Layouts 1 and 2 (before clusters) keyed a watermark by its
//! source alone (`watermark/<source>`), when a source fed exactly one sink: the sinks' ids are
//! not in the journal, so such a key is read as the watermark of the source's pipeline until
//! that pipeline commits its own ([`Journal::watermark`]). A journal of a newer layout is
//! refused.

mod migrate;
#[cfg(test)]
mod tests;

use std::path::Path;

use rocksdb::{DB, Options, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use super::machine::State;

/// The layout of the journal's keys this release writes and reads.
pub const LAYOUT: u64 = 3;

const LAYOUT_KEY: &[u8] = b"layout";
const UPGRADE: &[u8] = b"upgrade";
const STATE: &[u8] = b"state";
const HOLDS: &[u8] = b"holds";
const WATERMARK: &[u8] = b"watermark/";
const CYCLE: &[u8] = b"cycle/";
const DEAD: &[u8] = b"dead/";
const DROPPED: &[u8] = b"dropped/";
const REVERSE_DEAD: &[u8] = b"rdead/";
const REVERSE_DROPPED: &[u8] = b"rdropped/";
const EPOCH: &[u8] = b"epoch";
const OVERHEAD: &[u8] = b"overhead";

/// Which way documents flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Blue to green: the copy cycles and the cutover.
    #[default]
    Forward,
    /// Green to blue: reverse sync and the rollback.
    Reverse,
}

impl Direction {
    /// "forward" or "reverse".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Reverse => "reverse",
        }
    }

    fn prefixes(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Self::Forward => (DEAD, DROPPED),
            Self::Reverse => (REVERSE_DEAD, REVERSE_DROPPED),
        }
    }
}

/// One proxy's figures for a hold (pause to switch or resume).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The proxy's control endpoint, as in the plan.
    pub proxy: String,
    /// Held requests it released.
    pub released: u64,
    /// Longest time any of them was held, in microseconds: the pause a client saw.
    pub max_hold_micros: u64,
}

impl Hold {
    /// Held requests released by every proxy.
    pub fn released(holds: &[Self]) -> u64 {
        holds.iter().map(|h| h.released).sum()
    }

    /// The longest hold over every proxy, in microseconds.
    pub fn longest_micros(holds: &[Self]) -> u64 {
        holds.iter().map(|h| h.max_hold_micros).max().unwrap_or(0)
    }

    /// "N held requests released, longest hold M ms", over every proxy.
    pub fn summary(holds: &[Self]) -> String {
        format!(
            "{} held requests released, longest hold {} ms",
            Self::released(holds),
            Self::longest_micros(holds) / 1000
        )
    }
}

/// What can go wrong with the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// RocksDB failed.
    #[error("journal at {path}: {source}")]
    Rocks {
        /// The journal directory.
        path: String,
        /// What RocksDB said.
        source: rocksdb::Error,
    },
    /// A stored record does not decode.
    #[error("journal at {path} is corrupt: {what}")]
    Corrupt {
        /// The journal directory.
        path: String,
        /// What did not decode.
        what: String,
    },
    /// The journal was written by a newer release, in a layout this one cannot read.
    #[error(
        "journal at {path} has layout {found}; this release reads layouts up to {LAYOUT}: run \
         the release that wrote it (or a newer one), or move the folder aside to start with an \
         empty journal (which forgets the upgrade it holds)"
    )]
    Layout {
        /// The journal directory.
        path: String,
        /// The layout found.
        found: u64,
    },
    /// A write of an upgrade that is no longer the journal's (a copy task of an aborted or
    /// replaced upgrade finishing late): refused, so it cannot move the new one's watermarks.
    #[error("a write of upgrade {stale} refused: the journal now holds upgrade {current}")]
    Superseded {
        /// The upgrade the write was for.
        stale: String,
        /// The journal's upgrade.
        current: String,
    },
}

/// The upgrade the journal belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeRecord {
    /// Its identifier.
    pub id: String,
    /// The plan's file name.
    pub plan_name: String,
    /// The plan's TOML text, as started.
    pub plan_toml: String,
    /// A rehearsal stops at READY_FOR_CUTOVER.
    pub rehearse: bool,
    /// Unix milliseconds when it started.
    pub started_unix_ms: u64,
}

/// Where the upgrade stands, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    /// The state.
    pub state: State,
    /// Unix milliseconds when it was entered.
    pub since_unix_ms: u64,
    /// The status detail it was entered with.
    #[serde(default)]
    pub detail: String,
}

/// One finished cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// 1 for the full copy, then 2, 3, …
    pub cycle: u32,
    /// Documents pulled.
    pub documents: u64,
    /// Body bytes pulled.
    pub bytes: u64,
    /// Tombstones among them.
    pub tombstones: u64,
    /// Documents the transform dropped.
    pub dropped: u64,
    /// Documents the transform failed on (dead letters).
    pub failed: u64,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// Documents changed on the sources after the cycle's watermarks.
    pub pending_after: u64,
    /// The final delta cycle of a cutover or rollback (its sources fenced).
    #[serde(default)]
    pub final_cycle: bool,
    /// Which way it copied.
    #[serde(default)]
    pub direction: Direction,
    /// Each pipeline's share, in topology order (empty in journals before clusters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<PipelineCycle>,
}

/// One pipeline's share of a cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineCycle {
    /// The pipeline.
    pub link: Link,
    /// Documents it copied.
    pub documents: u64,
    /// Its own wall time, milliseconds (pipelines run at once: the cycle lasts as long as
    /// the slowest).
    pub duration_ms: u64,
    /// Documents changed on its source's partitions after its watermark.
    pub pending_after: u64,
}

/// A document the transform failed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Node id of the source it came from.
    #[serde(default)]
    pub source: String,
    /// Its collection on the source.
    pub collection: String,
    /// Its id.
    pub id: String,
    /// The source version that failed.
    pub version: u64,
    /// The transform's error.
    pub error: String,
}

/// What one acknowledged batch changes besides its source's watermark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchRecord {
    /// Documents the transform failed on.
    pub failed: Vec<DeadLetter>,
    /// `(collection, id, version)` of documents the transform dropped.
    pub dropped: Vec<(String, String, u64)>,
    /// `(collection, id)` of documents copied fine in this batch: an earlier dead letter or
    /// drop of theirs is superseded.
    pub copied: Vec<(String, String)>,
}

/// The journal.
pub struct Journal {
    db: DB,
    path: String,
    /// Serialises `begin` and `acknowledge`, so that the upgrade check of one and the reset
    /// of the other cannot interleave.
    writes: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

fn document_key(prefix: &[u8], collection: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + collection.len() + 1 + id.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(collection.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// A copy pipeline, by the node ids at its two ends: its key in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Link {
    /// The node pulled from.
    pub source: String,
    /// The node applied to.
    pub sink: String,
}

impl Link {
    /// The pipeline from `source` to `sink`.
    pub fn new(source: impl Into<String>, sink: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            sink: sink.into(),
        }
    }

    /// The same two nodes the other way.
    pub fn reversed(&self) -> Self {
        Self::new(&self.sink, &self.source)
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} → {}", self.source, self.sink)
    }
}

fn watermark_key(link: &Link) -> Vec<u8> {
    [
        WATERMARK,
        link.source.as_bytes(),
        &[0],
        link.sink.as_bytes(),
    ]
    .concat()
}

impl Journal {
    /// Opens (or creates) the journal in `path`.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        let shown = path.display().to_string();
        let db = DB::open(&options, path).map_err(|source| JournalError::Rocks {
            path: shown.clone(),
            source,
        })?;
        let journal = Self {
            db,
            path: shown,
            writes: std::sync::Mutex::new(()),
        };
        journal.check_layout()?;
        Ok(journal)
    }

    /// Checks the layout at open: writes it into a new journal, migrates one of layout 1
    /// (no `layout` key, but an upgrade), refuses one of a newer layout.
    fn check_layout(&self) -> Result<(), JournalError> {
        match self.number(LAYOUT_KEY, || "layout".into())? {
            Some(LAYOUT) => Ok(()),
            // Layout 2 → 3 changes no stored key (see the module's documentation).
            Some(2) => self.write_layout(WriteBatch::default()),
            Some(found) => Err(JournalError::Layout {
                path: self.path.clone(),
                found,
            }),
            None => {
                let mut batch = WriteBatch::default();
                if self
                    .db
                    .get_pinned(UPGRADE)
                    .map_err(|e| self.rocks(e))?
                    .is_some()
                {
                    migrate::from_layout_1(self, &mut batch)?;
                    tracing::info!(
                        path = self.path,
                        "journal migrated from layout 1 to {LAYOUT}"
                    );
                }
                self.write_layout(batch)
            }
        }
    }

    fn write_layout(&self, mut batch: WriteBatch) -> Result<(), JournalError> {
        batch.put(LAYOUT_KEY, LAYOUT.to_be_bytes());
        self.write(batch)
    }

    fn rocks(&self, source: rocksdb::Error) -> JournalError {
        JournalError::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: impl Into<String>) -> JournalError {
        JournalError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<(), JournalError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| self.rocks(e))
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, key: &[u8]) -> Result<Option<T>, JournalError> {
        match self.db.get_pinned(key).map_err(|e| self.rocks(e))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.corrupt(format!("{}: {e}", String::from_utf8_lossy(key)))),
        }
    }

    fn prefixed<T>(
        &self,
        prefix: &[u8],
        mut decode: impl FnMut(&[u8], &[u8]) -> Result<T, JournalError>,
    ) -> Result<Vec<T>, JournalError> {
        let mut iter = self.db.raw_iterator();
        iter.seek(prefix);
        let mut out = Vec::new();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !key.starts_with(prefix) {
                break;
            }
            out.push(decode(key, value)?);
            iter.next();
        }
        iter.status().map_err(|e| self.rocks(e))?;
        Ok(out)
    }

    /// Starts a new upgrade: forgets everything of the previous one, records this one in
    /// state DISCOVERING. One synced batch.
    pub fn begin(&self, upgrade: &UpgradeRecord) -> Result<(), JournalError> {
        let _serial = self.writes.lock().expect("not poisoned");
        let mut batch = WriteBatch::default();
        for prefix in [
            WATERMARK,
            CYCLE,
            DEAD,
            DROPPED,
            REVERSE_DEAD,
            REVERSE_DROPPED,
        ] {
            for key in self.prefixed(prefix, |key, _| Ok(key.to_vec()))? {
                batch.delete(key);
            }
        }
        batch.delete(HOLDS);
        batch.put(UPGRADE, serde_json::to_vec(upgrade).expect("serialises"));
        let state = StateRecord {
            state: State::Discovering,
            since_unix_ms: upgrade.started_unix_ms,
            detail: String::new(),
        };
        batch.put(STATE, serde_json::to_vec(&state).expect("serialises"));
        self.write(batch)
    }

    /// The upgrade, if one was ever started.
    pub fn upgrade(&self) -> Result<Option<UpgradeRecord>, JournalError> {
        self.json(UPGRADE)
    }

    /// The upgrade's state; `None` when no upgrade was ever started.
    pub fn state(&self) -> Result<Option<StateRecord>, JournalError> {
        self.json(STATE)
    }

    /// Records the new state of upgrade `upgrade_id` (synced); refused when the journal holds
    /// another upgrade (a driver of a replaced upgrade finishing late).
    pub fn set_state(&self, upgrade_id: &str, record: &StateRecord) -> Result<(), JournalError> {
        let _serial = self.writes.lock().expect("not poisoned");
        let current = self.upgrade()?.map(|u| u.id).unwrap_or_default();
        if current != upgrade_id {
            return Err(JournalError::Superseded {
                stale: upgrade_id.to_owned(),
                current,
            });
        }
        let mut batch = WriteBatch::default();
        batch.put(STATE, serde_json::to_vec(record).expect("serialises"));
        self.write(batch)
    }

    /// The committed watermark of the pipeline `link` (0: nothing applied yet). Before
    /// layout 3 a source fed one sink and its watermark was keyed by the source alone: such a
    /// key stands for the pipeline until the pipeline commits one of its own.
    pub fn watermark(&self, link: &Link) -> Result<u64, JournalError> {
        let what = || format!("watermark of {link}");
        if let Some(watermark) = self.number(&watermark_key(link), what)? {
            return Ok(watermark);
        }
        let before_layout_3 = [WATERMARK, link.source.as_bytes()].concat();
        Ok(self.number(&before_layout_3, what)?.unwrap_or(0))
    }

    /// The big-endian u64 stored at `key` (`what` names it in an error), if any.
    fn number(
        &self,
        key: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Option<u64>, JournalError> {
        match self.db.get_pinned(key).map_err(|e| self.rocks(e))? {
            None => Ok(None),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                .map(|b| Some(u64::from_be_bytes(b)))
                .map_err(|_| self.corrupt(format!("{} is not 8 bytes", what()))),
        }
    }

    /// Stores `value` at `key` (synced).
    fn set_number(&self, key: &[u8], value: u64) -> Result<(), JournalError> {
        let mut batch = WriteBatch::default();
        batch.put(key, value.to_be_bytes());
        self.write(batch)
    }

    /// Records that the sink of `link` acknowledged a batch up to `watermark`, with the
    /// batch's failures, drops and successes, in one synced batch. Refused when `upgrade_id`
    /// is no longer the journal's upgrade. A watermark never goes back: a lower one (a retried
    /// copy catching up with what an interrupted one already committed) keeps the higher.
    pub fn acknowledge(
        &self,
        upgrade_id: &str,
        direction: Direction,
        link: &Link,
        watermark: u64,
        record: &BatchRecord,
    ) -> Result<(), JournalError> {
        let _serial = self.writes.lock().expect("not poisoned");
        let current_upgrade = self.upgrade()?.map(|u| u.id).unwrap_or_default();
        if current_upgrade != upgrade_id {
            return Err(JournalError::Superseded {
                stale: upgrade_id.to_owned(),
                current: current_upgrade,
            });
        }
        let watermark = watermark.max(self.watermark(link)?);
        let (dead_prefix, dropped_prefix) = direction.prefixes();
        let mut batch = WriteBatch::default();
        for (collection, id) in &record.copied {
            batch.delete(document_key(dead_prefix, collection, id));
            batch.delete(document_key(dropped_prefix, collection, id));
        }
        for dead in &record.failed {
            batch.delete(document_key(dropped_prefix, &dead.collection, &dead.id));
            batch.put(
                document_key(dead_prefix, &dead.collection, &dead.id),
                serde_json::to_vec(dead).expect("serialises"),
            );
        }
        for (collection, id, version) in &record.dropped {
            batch.delete(document_key(dead_prefix, collection, id));
            batch.put(
                document_key(dropped_prefix, collection, id),
                version.to_be_bytes(),
            );
        }
        batch.put(watermark_key(link), watermark.to_be_bytes());
        self.write(batch)
    }

    /// Records a finished cycle.
    pub fn record_cycle(&self, cycle: &CycleRecord) -> Result<(), JournalError> {
        let mut batch = WriteBatch::default();
        batch.put(
            [CYCLE, &cycle.cycle.to_be_bytes()[..]].concat(),
            serde_json::to_vec(cycle).expect("serialises"),
        );
        self.write(batch)
    }

    /// Every finished cycle, in order.
    pub fn cycles(&self) -> Result<Vec<CycleRecord>, JournalError> {
        self.prefixed(CYCLE, |_, value| {
            serde_json::from_slice(value).map_err(|e| self.corrupt(format!("cycle record: {e}")))
        })
    }

    /// Every current dead letter of the forward copy, by collection and id.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, JournalError> {
        self.dead_letters_of(Direction::Forward)
    }

    /// Every current dead letter of one direction, by collection and id.
    pub fn dead_letters_of(&self, direction: Direction) -> Result<Vec<DeadLetter>, JournalError> {
        self.prefixed(direction.prefixes().0, |_, value| {
            serde_json::from_slice(value).map_err(|e| self.corrupt(format!("dead letter: {e}")))
        })
    }

    /// Documents currently dropped by the forward transforms: `(collection, id, version)`.
    pub fn dropped(&self) -> Result<Vec<(String, String, u64)>, JournalError> {
        self.dropped_of(Direction::Forward)
    }

    /// Documents currently dropped by the transforms of one direction.
    pub fn dropped_of(
        &self,
        direction: Direction,
    ) -> Result<Vec<(String, String, u64)>, JournalError> {
        let prefix = direction.prefixes().1;
        self.prefixed(prefix, |key, value| {
            let rest = &key[prefix.len()..];
            let split = rest.iter().position(|b| *b == 0);
            let version = <[u8; 8]>::try_from(value).map(u64::from_be_bytes);
            match (split, version) {
                (Some(at), Ok(version)) => Ok((
                    String::from_utf8_lossy(&rest[..at]).into_owned(),
                    String::from_utf8_lossy(&rest[at + 1..]).into_owned(),
                    version,
                )),
                _ => Err(self.corrupt("dropped record")),
            }
        })
    }
}

impl Journal {
    /// Each proxy's figures for the latest hold (empty before the first).
    pub fn holds(&self) -> Result<Vec<Hold>, JournalError> {
        Ok(self.json(HOLDS)?.unwrap_or_default())
    }

    /// Records the figures of the latest hold (synced).
    pub fn set_holds(&self, holds: &[Hold]) -> Result<(), JournalError> {
        let mut batch = WriteBatch::default();
        batch.put(HOLDS, serde_json::to_vec(holds).expect("serialises"));
        self.write(batch)
    }

    /// The switch overhead the last cutover or rehearsal measured (its hold less its final
    /// cycle), if any: the threshold engine adds it to the predicted final cycle.
    pub fn switch_overhead(&self) -> Result<Option<std::time::Duration>, JournalError> {
        Ok(self
            .number(OVERHEAD, || "overhead".into())?
            .map(std::time::Duration::from_micros))
    }

    /// Records a measured switch overhead.
    pub fn set_switch_overhead(&self, overhead: std::time::Duration) -> Result<(), JournalError> {
        self.set_number(OVERHEAD, overhead.as_micros() as u64)
    }

    /// Takes a new proxy epoch: above every epoch this journal used and at least
    /// `at_least` (the highest epoch a proxy reported, plus one). Synced before it is used,
    /// so no epoch is ever handed out twice.
    pub fn next_epoch(&self, at_least: u64) -> Result<u64, JournalError> {
        let _serial = self.writes.lock().expect("not poisoned");
        let last = self.number(EPOCH, || "epoch".into())?.unwrap_or(0);
        let epoch = (last + 1).max(at_least);
        self.set_number(EPOCH, epoch)?;
        Ok(epoch)
    }
}
