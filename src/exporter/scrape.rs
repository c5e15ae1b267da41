//! Scrapes in flight: the bound on how many, and the encodes they share.
//!
//! Every (format, compression) pair has a [`Slot`]. At most one encode of a slot runs at
//! a time. A scrape wants an encode *started after it arrived* (numbered: the first
//! encode a scrape can use is `started + 1` at its arrival), so its answer holds
//! everything recorded before the request came, as an encode of its own would. Scrapes
//! that arrive while an encode runs wait for the next one, which starts when the running
//! one ends and which all of them share: however many scrapes come at once, a slot
//! encodes at most twice for them (the one running when they came, the one after).
//!
//! The encode runs on Tokio's blocking pool when the exporter is polled inside a Tokio
//! runtime (feature `runtime`), so that no worker thread is held by it; elsewhere it runs
//! inside the `poll` of the scrape that starts it, which then holds its thread for one
//! encode of the registry, never more. Waiting scrapes hold no thread.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use prometheus_client::registry::Registry;

/// What an encode gives: the body and whether it is gzipped; `None` when a collector
/// failed (or the encode never ran).
pub(super) type Encoded = Option<(Bytes, bool)>;

/// The bodies an exporter writes: formats that differ only in their `Content-Type`
/// (OpenMetrics 1.0.0 and 0.0.1, text 0.0.4 and 1.0.0) share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Body {
    OpenMetrics,
    Text,
    Protobuf,
}

/// What a slot encodes: one body per (body, compression) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Kind {
    pub(super) body: Body,
    pub(super) gzip: bool,
}

const SLOTS: usize = 6;

impl Kind {
    fn index(self) -> usize {
        let body = match self.body {
            Body::OpenMetrics => 0,
            Body::Text => 1,
            Body::Protobuf => 2,
        };
        body * 2 + usize::from(self.gzip)
    }
}

/// State shared by an exporter and its clones.
#[derive(Default)]
pub(super) struct Scrapes {
    slots: [Slot; SLOTS],
    /// Scrapes accepted and not yet answered (or dropped).
    in_flight: AtomicUsize,
}

impl fmt::Debug for Scrapes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrapes")
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; if something did, the counts are still
        // consistent enough to go on serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    /// Encodes started; the running one, if any, is number `started`.
    started: u64,
    running: bool,
    /// Number of the last finished encode (0: none yet).
    done: u64,
    /// Its result, kept while `takers` > 0 and dropped after, so that no body stays in
    /// memory once every scrape that wanted it has it.
    result: Option<Encoded>,
    /// Scrapes that can take `result`: they want encode `done` or an earlier one.
    takers: usize,
    /// Scrapes that want the running encode (number `started`).
    for_running: usize,
    /// Scrapes that want an encode not started yet (number `started + 1`).
    for_next: usize,
    /// The wakers of the waiting scrapes, all woken when an encode ends.
    wakers: Vec<Waker>,
    /// Counts the times `wakers` was drained, so that a scrape polled twice between two
    /// encodes registers once.
    epoch: u64,
    /// Length of the last body (before compression), the next encode's capacity.
    last_len: usize,
}

impl Scrapes {
    /// Counts a scrape in, if fewer than `max` (0: no bound) are in flight.
    pub(super) fn admit(self: &Arc<Self>, max: usize) -> Option<Admitted> {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then(|| n.saturating_add(1))
            })
            .is_ok();
        admitted.then(|| Admitted(self.clone()))
    }
}

/// One scrape counted in flight; counted out on drop.
pub(super) struct Admitted(Arc<Scrapes>);

impl Admitted {
    /// A scrape of `kind`, arriving now.
    pub(super) fn scrape(self, registry: Arc<Registry>, kind: Kind) -> Scrape {
        let slot = &self.0.slots[kind.index()];
        let mut state = slot.lock();
        let target = state.started.saturating_add(1);
        state.for_next = state.for_next.saturating_add(1);
        drop(state);
        Scrape {
            admitted: self,
            registry,
            kind,
            target,
            registered: None,
            served: false,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        // Never below 0: each `Admitted` was counted in once.
        let _ = self
            .0
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// A scrape waiting for its encode.
pub(super) struct Scrape {
    admitted: Admitted,
    registry: Arc<Registry>,
    kind: Kind,
    /// The first encode this scrape may use.
    target: u64,
    /// The epoch and waker this scrape last registered.
    registered: Option<(u64, Waker)>,
    served: bool,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

impl Scrape {
    /// The body of an encode started after this scrape arrived.
    pub(super) fn poll_encoded(&mut self, cx: &mut Context<'_>) -> Poll<Encoded> {
        if self.served {
            // Polled again after `Ready`: nothing more to give (the caller answers once).
            return Poll::Ready(None);
        }
        let scrapes = self.admitted.0.clone();
        let slot = &scrapes.slots[self.kind.index()];
        // At most twice round: the second time after an encode run inline, which makes
        // this scrape's result ready.
        for _ in 0..2 {
            let mut state = slot.lock();
            if self.target <= state.done {
                let result = state.result.clone().flatten();
                state.takers = state.takers.saturating_sub(1);
                if state.takers == 0 {
                    state.result = None;
                }
                self.served = true;
                return Poll::Ready(result);
            }
            if state.running {
                self.register(&mut state, cx);
                return Poll::Pending;
            }
            // No encode running, and this scrape wants one not started yet: it starts it
            // for every scrape that wants it.
            state.started = state.started.saturating_add(1);
            state.running = true;
            state.for_running = state.for_next;
            state.for_next = 0;
            let job = Job {
                scrapes: scrapes.clone(),
                registry: self.registry.clone(),
                kind: self.kind,
                number: state.started,
                last_len: state.last_len,
                finished: false,
            };
            #[cfg(feature = "runtime")]
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                // Registered before the job can end, so that its wake-up is not missed.
                self.register(&mut state, cx);
                drop(state);
                // The handle is dropped: the job hands its result over itself.
                drop(handle.spawn_blocking(move || job.run()));
                return Poll::Pending;
            }
            drop(state);
            job.run();
        }
        // The inline encode above ended and recorded its result, which this scrape
        // takes on the second round; reaching here would mean it did not.
        Poll::Ready(None)
    }

    fn register(&mut self, state: &mut State, cx: &mut Context<'_>) {
        let fresh = match &self.registered {
            Some((epoch, waker)) => *epoch != state.epoch || !waker.will_wake(cx.waker()),
            None => true,
        };
        if fresh {
            state.wakers.push(cx.waker().clone());
            self.registered = Some((state.epoch, cx.waker().clone()));
        }
    }
}

impl Drop for Scrape {
    fn drop(&mut self) {
        if self.served {
            return;
        }
        // Gone before its answer (client gone, timeout): no longer counted as wanting one.
        let mut state = self.admitted.0.slots[self.kind.index()].lock();
        if self.target <= state.done {
            state.takers = state.takers.saturating_sub(1);
            if state.takers == 0 {
                state.result = None;
            }
        } else if state.running && self.target == state.started {
            state.for_running = state.for_running.saturating_sub(1);
        } else {
            state.for_next = state.for_next.saturating_sub(1);
        }
    }
}

/// One encode of a slot. Its result is recorded when it ends, and also when it is
/// dropped without running (a runtime shutting down drops queued blocking tasks) or
/// unwinds (a collector panicked): then as a failure, so that no scrape waits forever.
struct Job {
    scrapes: Arc<Scrapes>,
    registry: Arc<Registry>,
    kind: Kind,
    number: u64,
    last_len: usize,
    finished: bool,
}

impl Job {
    fn run(mut self) {
        let (encoded, len) = super::encode(&self.registry, self.kind, self.last_len);
        self.finish(encoded, len);
    }

    fn finish(&mut self, encoded: Encoded, len: usize) {
        self.finished = true;
        let slot = &self.scrapes.slots[self.kind.index()];
        let mut state = slot.lock();
        state.running = false;
        state.done = self.number;
        state.takers = state.takers.saturating_add(state.for_running);
        state.for_running = 0;
        // A newer body serves the scrapes that wanted an older one too: it began after
        // they arrived as well.
        state.result = (state.takers > 0).then_some(encoded);
        if len > 0 {
            state.last_len = len;
        }
        state.epoch = state.epoch.wrapping_add(1);
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(None, 0);
        }
    }
}
