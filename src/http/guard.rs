//! The guard that records a request exactly once, however it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::StatusCode;

use super::labels::{Outcome, SeriesKey, group_status};
use super::recorder::Recorder;

/// Created when a request enters the layer, moved from the response future into the
/// response body, and finished by whichever ends the request: the end of the body, an
/// error, or its own `Drop` (a dropped future or body, or a panic unwinding through).
pub(crate) struct Guard {
    recorder: Arc<Recorder>,
    start: Instant,
    key: SeriesKey,
    active_slot: usize,
    request_bytes: Option<Arc<AtomicU64>>,
    /// The status to record, already grouped; `None` until the response head arrived.
    status: Option<u16>,
    response_bytes: u64,
    finished: bool,
}

impl Guard {
    pub(crate) fn new(
        recorder: Arc<Recorder>,
        start: Instant,
        key: SeriesKey,
        active_slot: usize,
        request_bytes: Option<Arc<AtomicU64>>,
    ) -> Self {
        Self {
            recorder,
            start,
            key,
            active_slot,
            request_bytes,
            status: None,
            response_bytes: 0,
            finished: false,
        }
    }

    pub(crate) fn responded(&mut self, status: StatusCode) {
        self.status = Some(group_status(status, self.recorder.grouped_status()));
    }

    pub(crate) fn add_response_bytes(&mut self, bytes: usize) {
        self.response_bytes = self.response_bytes.saturating_add(bytes as u64);
    }

    /// Records the request; later calls and the `Drop` do nothing.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let status = self.status.unwrap_or_else(|| {
            let status = match outcome {
                Outcome::Cancelled => 499,
                _ => 500,
            };
            group_status(
                StatusCode::from_u16(status).expect("499 and 500 are valid status codes"),
                self.recorder.grouped_status(),
            )
        });
        let request_bytes = self
            .request_bytes
            .as_ref()
            .map_or(0, |bytes| bytes.load(Ordering::Relaxed));
        self.recorder.finish(
            self.key.finish(status, outcome),
            self.active_slot,
            self.start.elapsed().as_secs_f64(),
            request_bytes,
            self.response_bytes,
        );
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            Outcome::Panic
        } else {
            Outcome::Cancelled
        };
        self.finish(outcome);
    }
}
