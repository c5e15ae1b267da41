//! The guard that records a request exactly once, however it ends.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::classify::ErrorType;
use super::exemplar::TraceContext;
use super::labels::{Method, SeriesKey, error_id};
use super::recorder::{Handle, Kind, Observation};

/// The size of a request body, as the layer's [`RequestSize`](super::RequestSize) mode
/// measures it. Public only to be named by that sealed trait: it cannot be reached
/// from outside the crate.
#[doc(hidden)]
#[derive(Debug)]
pub enum RequestBytes {
    /// Not measured (body sizes are off), or not known (no declared length).
    Unknown,
    /// The length the request declared, or 0 for a request without a body.
    Declared(u64),
    /// The bytes the inner service read, counted by its body.
    Counted(Arc<AtomicU64>),
}

/// Created when a request enters the layer, moved from the response future into the
/// response body, and finished by whichever ends the request: the end of the body, an
/// error, or its own `Drop` (a dropped future or body, or a panic unwinding through).
pub(crate) struct Guard {
    recorder: Arc<Handle>,
    start: Instant,
    key: SeriesKey,
    request_bytes: RequestBytes,
    /// The response's status code; 0 until the response head arrived.
    status: u16,
    /// The classifier's verdict so far ([`error_id`]).
    error: u8,
    response_bytes: u64,
    /// The request's trace context, for an exemplar.
    trace: Option<TraceContext>,
    /// The body length hyper will send over HTTP/1.x (`Content-Length`, or an exact
    /// size hint; `u64::MAX` when unknown, and over HTTP/2): hyper stops polling a body
    /// once that many bytes are written, whether or not the body has said it ended.
    expected_bytes: u64,
    /// Set while the inner service, future or body runs: if the guard is dropped then,
    /// that code panicked (the guard is dropped by the unwinding). Dropped at any other
    /// time, the request was cancelled, whatever else is unwinding on this thread.
    pub(crate) polling: bool,
    finished: bool,
    /// A gRPC call's deadline (`grpc-timeout`), in nanoseconds after `start`
    /// (`u64::MAX`: none): cancelled past it, the call is `DEADLINE_EXCEEDED`. Not an
    /// `Option<Instant>`, 8 bytes smaller: the guard is moved with every response.
    deadline: u64,
}

impl Guard {
    /// A request the recorder counted in flight (with
    /// [`Shared::start`](super::recorder::Shared::start)): from here on it is recorded exactly once.
    pub(crate) fn new(
        recorder: Arc<Handle>,
        start: Instant,
        key: SeriesKey,
        request_bytes: RequestBytes,
        trace: Option<TraceContext>,
    ) -> Self {
        Self {
            recorder,
            start,
            key,
            request_bytes,
            status: 0,
            error: error_id::NONE,
            response_bytes: 0,
            trace,
            expected_bytes: u64::MAX,
            polling: false,
            finished: false,
            deadline: u64::MAX,
        }
    }

    /// Sets a gRPC call's deadline, `timeout` after the request's start.
    pub(crate) fn set_deadline(&mut self, timeout: Duration) {
        // Past u64::MAX - 1 nanoseconds (584 years) is as good as never.
        self.deadline =
            u64::try_from(timeout.as_nanos()).map_or(u64::MAX - 1, |n| n.min(u64::MAX - 1));
    }

    /// Whether the call's deadline has passed.
    fn past_deadline(&self) -> bool {
        self.deadline != u64::MAX && self.start.elapsed() >= Duration::from_nanos(self.deadline)
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

    /// Which side of a call the guard records, in which families.
    pub(crate) fn kind(&self) -> Kind {
        self.recorder.config.kind
    }

    /// The request's method.
    pub(crate) fn method(&self) -> Method {
        self.key.method()
    }

    /// Whether the request came over HTTP/1.x (or 0.9).
    pub(crate) fn http1(&self) -> bool {
        self.key.http1()
    }

    pub(crate) fn request_bytes(&self) -> &RequestBytes {
        &self.request_bytes
    }

    pub(crate) fn responded(&mut self, status: StatusCode, expected_bytes: Option<u64>) {
        self.status = status.as_u16();
        self.expected_bytes = expected_bytes.unwrap_or(u64::MAX);
    }

    /// Notes the classifier's verdict, a failure of this type or none (a success); a
    /// later one replaces it.
    pub(crate) fn classified(&mut self, error: Option<&ErrorType>) {
        self.error = error.map_or(error_id::NONE, |error| self.recorder.error_id(error));
    }

    /// Counts streamed bytes; true once the known length is reached.
    #[inline]
    pub(crate) fn add_response_bytes(&mut self, bytes: usize) -> bool {
        self.response_bytes = self.response_bytes.saturating_add(bytes as u64);
        self.response_bytes >= self.expected_bytes
    }

    /// Records the request with the classifier's verdict, or with the layer's own
    /// `error` ([`error_id::PANIC`], [`CANCELLED`](error_id::CANCELLED), …) when it is
    /// not [`error_id::NONE`]; later calls and the `Drop` do nothing.
    #[inline]
    pub(crate) fn finish(&mut self, error: u8) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let error = match error {
            error_id::NONE => self.error,
            error_id::CANCELLED if self.past_deadline() => crate::grpc::DEADLINE_EXCEEDED_ID,
            error => error,
        };
        // 499: client closed request (nginx's code). A client without a response has
        // no status.
        let status = match (self.status, error) {
            (0, _) if self.kind() == Kind::HttpClient => 0,
            (0, error_id::CANCELLED) => 499,
            (0, _) => 500,
            (status, _) => status,
        };
        let request_bytes = match &self.request_bytes {
            RequestBytes::Unknown => None,
            RequestBytes::Declared(bytes) => Some(*bytes),
            RequestBytes::Counted(bytes) => Some(bytes.load(Ordering::Relaxed)),
        };
        let end = Instant::now();
        self.recorder.finish(
            self.key.finish(status, error),
            Observation {
                seconds: end.saturating_duration_since(self.start).as_secs_f64(),
                end,
                request_bytes,
                response_bytes: self.response_bytes,
                trace: self.trace,
            },
        );
    }
}

impl Guard {
    /// Finishes a guard dropped before the request ended: cancelled, or panicked.
    #[cold]
    #[inline(never)]
    fn finish_dropped(&mut self) {
        self.finish(if self.polling {
            error_id::PANIC
        } else {
            error_id::CANCELLED
        });
    }
}

impl Drop for Guard {
    // Inline, and `finish` called only when needed: nearly every guard is dropped
    // finished.
    #[inline]
    fn drop(&mut self) {
        if !self.finished {
            self.finish_dropped();
        }
        if matches!(self.request_bytes, RequestBytes::Counted(_)) {
            self.recycle_request_bytes();
        }
    }
}

impl Guard {
    /// Gives the request body's byte counter back to this thread's pool (with
    /// [`ReadBytes`](super::ReadBytes) only: out of line and cold, off the default path).
    #[cold]
    #[inline(never)]
    fn recycle_request_bytes(&mut self) {
        if let RequestBytes::Counted(counter) =
            std::mem::replace(&mut self.request_bytes, RequestBytes::Unknown)
        {
            recycle_counter(counter);
        }
    }
}

/// Request body byte counters this thread can reuse: with [`ReadBytes`](super::ReadBytes),
/// a request with a body needs one, shared by its body and its guard, and allocating it
/// anew would cost an allocation per request (`tests/allocations.rs` counts them).
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
