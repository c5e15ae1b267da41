//! The guard that records a request exactly once, however it ends.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::StatusCode;

use super::recorder::Handle;
use super::{Key, Method, error_id};
use crate::classify::ErrorType;
use crate::exemplar::TraceContext;

/// The size of a request body, as the HTTP layer's
/// [`RequestSize`](crate::http_metrics::RequestSize) mode measures it. Public only to be named by that sealed trait: it cannot be reached
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

/// What the engine needs to know of a request, whatever its family: whether a body will
/// follow the response head, and whether hyper stops at the announced length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestFacts(u8);

impl RequestFacts {
    const HTTP1: u8 = 1;
    const HEAD: u8 = 2;
    const CONNECT: u8 = 4;

    /// The facts of a request of this version and method.
    #[inline]
    pub(crate) fn new(version: http::Version, method: Method) -> Self {
        let http1 = if version <= http::Version::HTTP_11 {
            Self::HTTP1
        } else {
            0
        };
        let method = match method {
            Method::Head => Self::HEAD,
            Method::Connect => Self::CONNECT,
            _ => 0,
        };
        Self(http1 | method)
    }

    fn http1(self) -> bool {
        self.0 & Self::HTTP1 != 0
    }

    /// Whether no body follows a response head of `status` to this request: HEAD, a
    /// CONNECT tunnel (2xx), 1xx, 204 and 304 responses. hyper drops such a body without
    /// polling it.
    #[inline]
    fn sends_no_body(self, status: StatusCode) -> bool {
        // One test of the request for nearly every response (neither HEAD nor CONNECT).
        if self.0 & (Self::HEAD | Self::CONNECT) != 0
            && (self.0 & Self::HEAD != 0 || status.is_success())
        {
            return true;
        }
        matches!(status.as_u16(), 100..=199 | 204 | 304)
    }
}

/// Created when a call enters a layer, moved from the response future into the
/// response body, and finished by whichever ends the call: the end of the body, an
/// error, or its own `Drop` (a dropped future or body, or a panic unwinding through).
pub(crate) struct Guard {
    recorder: Arc<Handle>,
    /// What the recorder reads when the call ends.
    call: Call,
    request: RequestFacts,
    /// The body length hyper will send over HTTP/1.x (`Content-Length`, or an exact
    /// size hint; `u64::MAX` when unknown, and over HTTP/2): hyper stops polling a body
    /// once that many bytes are written, whether or not the body has said it ended.
    expected_bytes: u64,
    /// Set while the inner service, future or body runs: if the guard is dropped then,
    /// that code panicked (the guard is dropped by the unwinding). Dropped at any other
    /// time, the request was cancelled, whatever else is unwinding on this thread.
    pub(crate) polling: bool,
    finished: bool,
}

/// A call as the guard carries it to its end, where the recorder reads it in place
/// ([`Sink::finish`](super::recorder::Sink::finish)): nothing is copied into arguments.
pub(crate) struct Call {
    pub(crate) start: Instant,
    pub(crate) key: Key,
    pub(crate) request_bytes: RequestBytes,
    /// The response's status code; 0 until the response head arrived.
    pub(crate) status: u16,
    /// The verdict so far ([`error_id`]).
    pub(crate) error: u8,
    /// Set when the inner service returned an error instead of a response.
    pub(crate) inner_error: bool,
    pub(crate) response_bytes: u64,
    /// The request's trace context, for an exemplar.
    pub(crate) trace: Option<TraceContext>,
}

impl Call {
    /// The request size to observe: `None` when it is not known.
    #[inline]
    pub(crate) fn request_bytes(&self) -> Option<u64> {
        match &self.request_bytes {
            RequestBytes::Unknown => None,
            RequestBytes::Declared(bytes) => Some(*bytes),
            RequestBytes::Counted(bytes) => Some(bytes.load(Ordering::Relaxed)),
        }
    }
}

impl Guard {
    /// A call the recorder counted in flight (with
    /// [`Shared::start`](super::Shared::start)): from here on it is recorded exactly once.
    pub(crate) fn new(
        recorder: Arc<Handle>,
        start: Instant,
        key: Key,
        request: RequestFacts,
        request_bytes: RequestBytes,
        trace: Option<TraceContext>,
    ) -> Self {
        Self {
            recorder,
            call: Call {
                start,
                key,
                request_bytes,
                status: 0,
                error: error_id::NONE,
                inner_error: false,
                response_bytes: 0,
                trace,
            },
            request,
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

    /// Whether the request came over HTTP/1.x (or 0.9).
    pub(crate) fn http1(&self) -> bool {
        self.request.http1()
    }

    pub(crate) fn request_bytes(&self) -> &RequestBytes {
        &self.call.request_bytes
    }

    pub(crate) fn responded(&mut self, status: StatusCode, expected_bytes: Option<u64>) {
        self.call.status = status.as_u16();
        self.expected_bytes = expected_bytes.unwrap_or(u64::MAX);
    }

    /// Notes the classifier's verdict, a failure of this type or none (a success); a
    /// later one replaces it.
    pub(crate) fn classified(&mut self, error: Option<&ErrorType>) {
        self.call.error = error.map_or(error_id::NONE, |error| self.recorder.0.error_id(error));
    }

    /// Notes that the inner service returned an error, of this type (the classifier's
    /// name for it), instead of a response.
    pub(crate) fn inner_error(&mut self, error: &ErrorType) {
        self.classified(Some(error));
        self.call.inner_error = true;
    }

    /// Notes a failure the family identified itself (an [`error_id`] of its own).
    pub(crate) fn fail(&mut self, error: u8) {
        self.call.error = error;
    }

    /// The key the call carries to its end.
    #[inline]
    pub(crate) fn key(&self) -> Key {
        self.call.key
    }

    /// Replaces the key the call carries to its end: a family notes in it what the
    /// response told (gRPC: that the method's handler answered). The key must keep the
    /// in-flight gauge ([`CallFamily::active_slot`](super::CallFamily::active_slot)) it started
    /// with: the gauge is taken back down by the key at the end.
    #[inline]
    pub(crate) fn set_key(&mut self, key: Key) {
        self.call.key = key;
    }

    /// Counts streamed bytes; true once the known length is reached.
    #[inline]
    pub(crate) fn add_response_bytes(&mut self, bytes: usize) -> bool {
        self.call.response_bytes = self.call.response_bytes.saturating_add(bytes as u64);
        self.call.response_bytes >= self.expected_bytes
    }

    /// Records the call with the verdict so far, or with the engine's own `error`
    /// ([`error_id::PANIC`], [`CANCELLED`](error_id::CANCELLED), …) when it is not
    /// [`error_id::NONE`]; later calls and the `Drop` do nothing.
    #[inline]
    pub(crate) fn finish(&mut self, error: u8) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        if error != error_id::NONE {
            self.call.error = error;
        }
        self.recorder.0.finish(&self.call);
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
        if matches!(self.call.request_bytes, RequestBytes::Counted(_)) {
            self.recycle_request_bytes();
        }
    }
}

impl Guard {
    /// Gives the request body's byte counter back to this thread's pool (with
    /// [`ReadBytes`](crate::http_metrics::ReadBytes) only: out of line and cold, off the
    /// default path).
    #[cold]
    #[inline(never)]
    fn recycle_request_bytes(&mut self) {
        if let RequestBytes::Counted(counter) =
            std::mem::replace(&mut self.call.request_bytes, RequestBytes::Unknown)
        {
            recycle_counter(counter);
        }
    }
}

/// Request body byte counters this thread can reuse: with
/// [`ReadBytes`](crate::http_metrics::ReadBytes),
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

impl Guard {
    /// Whether no body follows a response head of `status` to this request
    /// ([`RequestFacts::sends_no_body`]).
    #[inline]
    pub(crate) fn sends_no_body(&self, status: StatusCode) -> bool {
        self.request.sends_no_body(status)
    }
}

#[cfg(test)]
mod tests {
    use http::{StatusCode, Version};

    use super::RequestFacts;
    use crate::record::Method;

    #[test]
    fn no_body_follows_head_tunnels_1xx_204_and_304() {
        let facts = |method| RequestFacts::new(Version::HTTP_11, method);
        let status = |code| StatusCode::from_u16(code).expect("a valid status");
        for code in [100, 101, 199, 204, 304] {
            for method in [Method::Get, Method::Post, Method::Head, Method::Connect] {
                assert!(
                    facts(method).sends_no_body(status(code)),
                    "{method:?} {code}"
                );
            }
        }
        for code in [
            200, 201, 203, 205, 206, 299, 300, 303, 305, 400, 404, 500, 503,
        ] {
            assert!(
                facts(Method::Head).sends_no_body(status(code)),
                "HEAD {code}"
            );
            let tunnel = (200..300).contains(&code);
            assert_eq!(
                facts(Method::Connect).sends_no_body(status(code)),
                tunnel,
                "CONNECT {code}"
            );
            for method in [Method::Get, Method::Post, Method::Options, Method::Other] {
                assert!(
                    !facts(method).sends_no_body(status(code)),
                    "{method:?} {code}"
                );
            }
        }
        // HTTP/2 alike: the version plays no part.
        assert!(RequestFacts::new(Version::HTTP_2, Method::Head).sends_no_body(status(200)));
        assert!(!RequestFacts::new(Version::HTTP_2, Method::Get).sends_no_body(status(200)));
    }
}
