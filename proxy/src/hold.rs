//! The gate every client request passes: forwarded at once to the active colour, or held in
//! arrival order until the hold is released or expires. It also counts the requests in
//! flight, which is what a Pause drains.
//!
//! The hold is bounded in count and bytes ([`Limits`]) and, through the controller's timer,
//! in time. A held request whose client goes away frees its slot at once.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use cutover_proto::Color;
use tokio::sync::{Notify, oneshot};

use crate::metrics as m;

/// How much a hold may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most requests held at once.
    pub max_held: u64,
    /// Most request-body bytes held at once: declared, or read while held (`forward/body.rs`).
    pub max_held_bytes: u64,
}

/// Why a request was not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotHeld {
    /// `max_held` requests are held already.
    Count,
    /// Holding this request's body would pass `max_held_bytes`.
    Bytes,
    /// The proxy is shutting down inside a hold.
    Stopping,
}

/// What the gate does with a new request.
#[derive(Debug)]
pub enum Admission {
    /// Forward it now.
    Forward(Color, InFlight),
    /// Wait for the hold to end.
    Held(Ticket),
    /// The hold is full: answer 503.
    Refused(NotHeld),
}

/// How a hold ended for one held request.
#[derive(Debug)]
pub enum Release {
    /// Forward it to this colour.
    Forward(Color, InFlight),
    /// The hold expired: answer 503.
    Expired,
}

/// Figures of a released hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Requests released (held requests whose client left are not counted).
    pub released: u64,
    /// Longest time one of them was held.
    pub max_hold: Duration,
}

/// What the gate holds and forwards right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The colour requests are forwarded to.
    pub active: Color,
    /// Whether new requests are held.
    pub holding: bool,
    /// Requests held.
    pub held: u64,
    /// Declared body bytes of the requests held.
    pub held_bytes: u64,
    /// Requests forwarded and not yet completed.
    pub in_flight: u64,
}

/// The gate. Cheap to share behind an `Arc`; every operation takes one short lock.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
    drained: Notify,
    limits: Limits,
}

#[derive(Debug)]
struct State {
    active: Color,
    holding: bool,
    stopping: bool,
    queue: VecDeque<Waiter>,
    held: u64,
    held_bytes: u64,
    in_flight: u64,
}

#[derive(Debug)]
struct Waiter {
    arrived: Instant,
    tx: oneshot::Sender<Release>,
}

impl Gate {
    /// A gate forwarding to `active`.
    pub fn new(active: Color, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                active,
                holding: false,
                stopping: false,
                queue: VecDeque::new(),
                held: 0,
                held_bytes: 0,
                in_flight: 0,
            }),
            drained: Notify::new(),
            limits,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only counters behind; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits one request whose body declares `bytes`.
    pub fn admit(self: &Arc<Self>, bytes: u64) -> Admission {
        let mut state = self.lock();
        if !state.holding {
            state.in_flight += 1;
            return Admission::Forward(state.active, InFlight(Arc::clone(self)));
        }
        if state.stopping {
            return Admission::Refused(NotHeld::Stopping);
        }
        if state.held >= self.limits.max_held {
            return Admission::Refused(NotHeld::Count);
        }
        if state.held_bytes.saturating_add(bytes) > self.limits.max_held_bytes {
            return Admission::Refused(NotHeld::Bytes);
        }
        let (tx, rx) = oneshot::channel();
        state.queue.push_back(Waiter {
            arrived: Instant::now(),
            tx,
        });
        state.held += 1;
        state.held_bytes += bytes;
        metrics::gauge!(m::HELD_REQUESTS).set(state.held as f64);
        Admission::Held(Ticket {
            gate: Arc::clone(self),
            bytes,
            rx: Some(rx),
        })
    }

    /// Whether new requests are held now and `count` are held already.
    pub fn holding_at_least(&self, count: u64) -> bool {
        let state = self.lock();
        state.holding && state.held >= count
    }

    /// Starts holding new requests (a no-op while holding already).
    pub fn hold(&self) {
        self.lock().holding = true;
    }

    /// Ends the hold: every held request is forwarded to `active`, in arrival order, and so is
    /// every new one.
    pub fn release(self: &Arc<Self>, active: Color) -> Released {
        let mut state = self.lock();
        state.active = active;
        state.holding = false;
        let mut released = Released::default();
        let mut late = Vec::new();
        let now = Instant::now();
        for waiter in std::mem::take(&mut state.queue) {
            if waiter.tx.is_closed() {
                continue;
            }
            state.in_flight += 1;
            match waiter
                .tx
                .send(Release::Forward(active, InFlight(Arc::clone(self))))
            {
                Ok(()) => {
                    released.released += 1;
                    released.max_hold = released.max_hold.max(now - waiter.arrived);
                }
                // The client left between the check and the send; its guard completes it,
                // once this lock is free.
                Err(unsent) => late.push(unsent),
            }
        }
        state.held = 0;
        state.held_bytes = 0;
        metrics::gauge!(m::HELD_REQUESTS).set(0.0);
        drop(state);
        drop(late);
        released
    }

    /// Ends the hold by expiry: every held request is answered 503; new ones are forwarded to
    /// the active colour. Returns how many were held.
    pub fn expire(&self) -> u64 {
        let mut state = self.lock();
        state.holding = false;
        let mut expired = 0;
        for waiter in std::mem::take(&mut state.queue) {
            if waiter.tx.send(Release::Expired).is_ok() {
                expired += 1;
            }
        }
        state.held = 0;
        state.held_bytes = 0;
        metrics::gauge!(m::HELD_REQUESTS).set(0.0);
        expired
    }

    /// The proxy is shutting down: while it holds (now, or after a late Pause), every held
    /// request and every new one is answered 503 (a restarted proxy resumes the hold from its
    /// file); while it forwards, open exchanges finish as usual.
    pub fn stop(&self) {
        let mut state = self.lock();
        // Also when forwarding: a Pause that arrives during the shutdown must not hold
        // requests nobody will release.
        state.stopping = true;
        if !state.holding {
            return;
        }
        for waiter in std::mem::take(&mut state.queue) {
            let _ = waiter.tx.send(Release::Expired);
        }
        state.held = 0;
        state.held_bytes = 0;
        metrics::gauge!(m::HELD_REQUESTS).set(0.0);
    }

    /// Waits until no request is in flight. While the gate holds, that is the drain: nothing
    /// new starts, so the count only goes down.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().in_flight == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The gate's figures.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        Snapshot {
            active: state.active,
            holding: state.holding,
            held: state.held,
            held_bytes: state.held_bytes,
            in_flight: state.in_flight,
        }
    }

    fn finish(&self) {
        let mut state = self.lock();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            drop(state);
            self.drained.notify_waiters();
        }
    }

    /// A held request's client left before its release: free its slot.
    fn leave(&self, bytes: u64, rx: &mut oneshot::Receiver<Release>) {
        let mut state = self.lock();
        rx.close();
        // Releases send under this lock: an empty channel means the waiter is still queued.
        if let Ok(late) = rx.try_recv() {
            // Released or expired just before: that path settled the counts. Its guard
            // takes this lock when dropped, so drop it after.
            drop(state);
            drop(late);
            return;
        }
        state.held -= 1;
        state.held_bytes -= bytes;
        metrics::gauge!(m::HELD_REQUESTS).set(state.held as f64);
        // Many clients leaving during one hold: drop their entries before they pile up.
        if state.queue.len() as u64 > 2 * state.held + 64 {
            state.queue.retain(|waiter| !waiter.tx.is_closed());
        }
    }
}

/// One request forwarded and not yet completed; dropping it completes it.
#[derive(Debug)]
pub struct InFlight(Arc<Gate>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// A held request's place in the queue. Dropping it before the release (the client went
/// away) frees the place.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    bytes: u64,
    rx: Option<oneshot::Receiver<Release>>,
}

impl Ticket {
    /// Waits for the hold to end for this request.
    pub async fn wait(mut self) -> Release {
        self.released().await
    }

    /// Waits for the hold to end for this request; cancel-safe, so it can race the reading of
    /// the request's body (`forward/body.rs`). Once it returned, the ticket is spent.
    pub async fn released(&mut self) -> Release {
        let Some(rx) = self.rx.as_mut() else {
            // Spent: a second call would be a bug, answered as an expiry.
            return Release::Expired;
        };
        // The gate outlives every ticket (each holds an Arc), so the sender is only dropped
        // after sending; a closed channel would be a bug, answered as an expiry.
        let release = rx.await.unwrap_or(Release::Expired);
        self.rx = None;
        release
    }

    /// Counts `bytes` more of this request's body as held: body bytes read while it waits
    /// past those it declared (a chunked body declares none), in memory already, so counted
    /// even past `max_held_bytes`; `false` once the hold's bytes passed it (no more should
    /// be read; new requests are refused meanwhile). `true` once released: nothing is held.
    pub fn hold_more(&mut self, bytes: u64) -> bool {
        let Some(rx) = self.rx.as_ref() else {
            return true;
        };
        let mut state = self.gate.lock();
        // Releases send under this lock: a value waiting means the hold has ended for this
        // request and its bytes are no longer counted.
        if !rx.is_empty() {
            return true;
        }
        state.held_bytes += bytes;
        self.bytes += bytes;
        state.held_bytes <= self.gate.limits.max_held_bytes
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            self.gate.leave(self.bytes, &mut rx);
        }
    }
}

#[cfg(test)]
mod tests;
