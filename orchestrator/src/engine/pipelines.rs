//! The pipelines of a cycle as operators see them: each one's documents, rate, watermark,
//! pending count and state, and the node it waits on when one does not answer. Published in
//! the status with the cycle's progress, and as metrics labelled by source and sink (one
//! series per pipeline: bounded by the topology, N + M − 1 for balanced clusters).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cutover_node::cluster::Ranges;
use cutover_proto::v1::PipelineStatus;

use super::{metrics as m, world::Pipeline};

/// What one pipeline is doing in the cycle under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    /// Waiting for its turn (the plan's `parallel_pipelines`).
    Queued,
    /// Copying its share.
    Copying,
    /// A node did not answer: retrying from its watermark.
    Waiting,
    /// Its share of the cycle is copied.
    Done,
    /// Between cycles.
    Idle,
}

impl Doing {
    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Copying => "copying",
            Self::Waiting => "waiting",
            Self::Done => "done",
            Self::Idle => "idle",
        }
    }
}

#[derive(Debug)]
struct Slot {
    pipeline: Arc<dyn Pipeline>,
    partitions: String,
    /// Documents handled in this cycle, shared with the pipeline's copy.
    copied: Arc<AtomicU64>,
    live: Mutex<Live>,
}

#[derive(Debug)]
struct Live {
    doing: Doing,
    waiting_on: String,
    /// How long its share took, once done.
    took: Option<Duration>,
    watermark: u64,
    pending: u64,
}

/// The pipelines of one cycle.
#[derive(Debug)]
pub struct Tracker {
    slots: Vec<Slot>,
    started: Instant,
}

impl Tracker {
    /// `pairs` about to copy from `watermarks` (one each, in order).
    pub fn new(pairs: &[Arc<dyn Pipeline>], watermarks: &[u64]) -> Self {
        let slots = pairs
            .iter()
            .zip(watermarks)
            .map(|(pair, &watermark)| Slot {
                pipeline: Arc::clone(pair),
                partitions: if pair.partitions().is_empty() {
                    "all".to_owned()
                } else {
                    Ranges::new(pair.partitions().to_vec()).to_string()
                },
                copied: Arc::new(AtomicU64::new(0)),
                live: Mutex::new(Live {
                    doing: Doing::Queued,
                    waiting_on: String::new(),
                    took: None,
                    watermark,
                    pending: 0,
                }),
            })
            .collect();
        Self {
            slots,
            started: Instant::now(),
        }
    }

    /// The counter pipeline `i`'s copy adds its documents to.
    pub fn counter(&self, i: usize) -> Arc<AtomicU64> {
        Arc::clone(&self.slots[i].copied)
    }

    /// Documents handled so far by every pipeline.
    pub fn copied(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.copied.load(Ordering::Relaxed))
            .sum()
    }

    /// Pipeline `i` is now `doing`; `waiting_on` says why it waits.
    pub fn set(&self, i: usize, doing: Doing, waiting_on: String) {
        let mut live = self.slots[i].live.lock().expect("not poisoned");
        live.doing = doing;
        live.waiting_on = waiting_on;
    }

    /// Pipeline `i` copied its share in `took` (its successful attempt, from its turn: not
    /// the wait for a turn nor a failed attempt, which would read as a slow copy).
    pub fn done(&self, i: usize, took: Duration) {
        let mut live = self.slots[i].live.lock().expect("not poisoned");
        live.doing = Doing::Done;
        live.waiting_on.clear();
        live.took = Some(took);
    }

    /// The cycle is over: each pipeline's watermark and pending count after it.
    pub fn settle(&self, watermarks: &[u64], pending: &[u64]) {
        for ((slot, &watermark), &pending) in self.slots.iter().zip(watermarks).zip(pending) {
            let mut live = slot.live.lock().expect("not poisoned");
            live.doing = Doing::Idle;
            live.watermark = watermark;
            live.pending = pending;
            let link = slot.pipeline.link();
            let labels = [("source", link.source.clone()), ("sink", link.sink.clone())];
            metrics::gauge!(m::PIPELINE_WATERMARK, &labels).set(watermark as f64);
            metrics::gauge!(m::PIPELINE_PENDING, &labels).set(pending as f64);
            metrics::counter!(m::PIPELINE_DOCUMENTS, &labels)
                .increment(slot.copied.load(Ordering::Relaxed));
        }
    }

    /// Pipeline `i`'s documents and wall time in this cycle.
    pub fn figures(&self, i: usize) -> (u64, Duration) {
        let slot = &self.slots[i];
        let took = slot.live.lock().expect("not poisoned").took;
        (
            slot.copied.load(Ordering::Relaxed),
            took.unwrap_or_else(|| self.started.elapsed()),
        )
    }

    /// The status of every pipeline.
    pub fn statuses(&self) -> Vec<PipelineStatus> {
        self.slots
            .iter()
            .map(|slot| {
                let live = slot.live.lock().expect("not poisoned");
                let documents = slot.copied.load(Ordering::Relaxed);
                let took = live.took.unwrap_or_else(|| self.started.elapsed());
                let pipeline = &slot.pipeline;
                PipelineStatus {
                    source: pipeline.link().source.clone(),
                    sink: pipeline.link().sink.clone(),
                    source_endpoint: pipeline.source_endpoint().to_owned(),
                    sink_endpoint: pipeline.sink_endpoint().to_owned(),
                    partitions: slot.partitions.clone(),
                    state: live.doing.as_str().to_owned(),
                    documents,
                    docs_per_sec: documents as f64 / took.as_secs_f64().max(1e-3),
                    watermark: live.watermark,
                    pending: live.pending,
                    waiting_on: live.waiting_on.clone(),
                    // Read now: a sink found not to host pipelines shows at once.
                    run_by_sink: pipeline.run_by_sink(),
                }
            })
            .collect()
    }
}
