//! The guard that records a request exactly once, however it ends.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::StatusCode;

use super::labels::{Method, Outcome, SeriesKey};
use super::recorder::{self, Observation};

/// Created when a request enters the layer, moved from the response future into the
/// response body, and finished by whichever ends the request: the end of the body, an
/// error, or its own `Drop` (a dropped future or body, or a panic unwinding through).
pub(crate) struct Guard {
    /// The id of the recorder: the thread that finishes the request finds it by that
    /// (see [`recorder::finish`]).
    recorder: u64,
    start: Instant,
    key: SeriesKey,
    request_bytes: Option<Arc<AtomicU64>>,
    /// The response's status code; `None` until the response head arrived.
    status: Option<u16>,
    response_bytes: u64,
    /// The body length hyper will send (`Content-Length`, or an exact size hint;
    /// `u64::MAX` when unknown): hyper stops polling a body once that many bytes are
    /// written, whether or not the body has said it ended.
    expected_bytes: u64,
    /// Set while the inner service, future or body runs: if the guard is dropped then,
    /// that code panicked (the guard is dropped by the unwinding). Dropped at any other
    /// time, the request was cancelled, whatever else is unwinding on this thread.
    pub(crate) polling: bool,
    finished: bool,
}

impl Guard {
    /// A request counted in flight (by
    /// [`RecorderHandle::start`](recorder::RecorderHandle::start)): from here on it is
    /// recorded exactly once.
    pub(crate) fn new(
        recorder: u64,
        start: Instant,
        key: SeriesKey,
        request_bytes: Option<Arc<AtomicU64>>,
    ) -> Self {
        Self {
            recorder,
            start,
            key,
            request_bytes,
            status: None,
            response_bytes: 0,
            expected_bytes: u64::MAX,
            polling: false,
            finished: false,
        }
    }

    /// Runs inner code (the service's `call`, a poll of its future or body): a panic in
    /// `f` is recorded as one.
    #[inline]
    pub(crate) fn run<T>(&mut self, f: impl FnOnce() -> T) -> T {
        self.polling = true;
        let output = f();
        self.polling = false;
        output
    }

    /// The request's method.
    pub(crate) fn method(&self) -> Method {
        self.key.method()
    }

    pub(crate) fn responded(&mut self, status: StatusCode, expected_bytes: Option<u64>) {
        self.status = Some(status.as_u16());
        self.expected_bytes = expected_bytes.unwrap_or(u64::MAX);
    }

    /// Counts streamed bytes; true once the known length is reached.
    pub(crate) fn add_response_bytes(&mut self, bytes: usize) -> bool {
        self.response_bytes = self.response_bytes.saturating_add(bytes as u64);
        self.response_bytes >= self.expected_bytes
    }

    /// Records the request; later calls and the `Drop` do nothing.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // 499: client closed request (nginx's code).
        let status = self.status.unwrap_or(match outcome {
            Outcome::Cancelled => 499,
            _ => 500,
        });
        let request_bytes = self
            .request_bytes
            .as_ref()
            .map_or(0, |bytes| bytes.load(Ordering::Relaxed));
        recorder::finish(
            self.recorder,
            self.key.finish(status, outcome),
            Observation {
                seconds: self.start.elapsed().as_secs_f64(),
                request_bytes,
                response_bytes: self.response_bytes,
            },
        );
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let outcome = if self.polling {
            Outcome::Panic
        } else {
            Outcome::Cancelled
        };
        self.finish(outcome);
        if let Some(counter) = self.request_bytes.take() {
            recycle_counter(counter);
        }
    }
}

/// Request body byte counters this thread can reuse: a request with a body needs one,
/// shared by its body and its guard, and allocating it anew would cost an allocation
/// per request.
const POOLED_COUNTERS: usize = 64;

thread_local! {
    static COUNTERS: RefCell<Vec<Arc<AtomicU64>>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed counter, from this thread's pool when it has one.
pub(crate) fn request_bytes_counter() -> Arc<AtomicU64> {
    COUNTERS
        .try_with(|pool| pool.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Gives a counter back to this thread's pool, if nothing else holds it any more (the
/// request body was dropped) and the pool has room.
fn recycle_counter(mut counter: Arc<AtomicU64>) {
    let Some(count) = Arc::get_mut(&mut counter) else {
        return;
    };
    *count.get_mut() = 0;
    let _ = COUNTERS.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            if pool.len() < POOLED_COUNTERS {
                pool.push(counter);
            }
        }
    });
}

/// Whether no body follows this response head: HEAD, a CONNECT tunnel (2xx), 1xx, 204
/// and 304 responses. hyper drops such a body without polling it.
#[inline]
pub(crate) fn sends_no_body(method: Method, status: StatusCode) -> bool {
    method == Method::Head
        || (method == Method::Connect && status.is_success())
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}
