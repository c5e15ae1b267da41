//! The response body: the second half of a call's end, whatever its family.

use std::any::Any;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::header;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::guard::Guard;
use super::{ReadEnd, error_id};
use crate::classify::DefaultClassifier;

/// The length a message declares: the exact size its body reports, else its
/// `Content-Length` (the header only when the body does not know: it costs a hash
/// lookup).
#[inline]
pub(crate) fn declared_length<B: Body>(body: &B, headers: &http::HeaderMap) -> Option<u64> {
    body.size_hint().exact().or_else(|| {
        headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    })
}

/// Data frames longer than this are handed to the server in slices of this length.
///
/// A server takes a frame whole and writes it out at the client's pace: an 8 MiB body
/// sent as one frame would count as finished when the server took it, not when it was
/// sent, and a client gone half way would not show. In slices, the server's back-pressure
/// (hyper stops polling a body while about 400 KiB wait to be written, HTTP/2 while the
/// client's flow-control window is full) holds the body back until the transfer is
/// nearly done. Slicing `Bytes` copies nothing; frames of this size or less, which is
/// nearly every API answer, pass as they are.
pub(crate) const SLICE: usize = 64 * 1024;

pin_project! {
    /// The response body the crate's services return: the inner service's body, carrying
    /// the guard that records the call when the body ends, fails or is dropped.
    ///
    /// Data frames of `Bytes` over 64 KiB are passed on in 64 KiB slices (see the
    /// [HTTP layer's docs](crate::http_metrics#when-a-request-counts-as-finished)); other
    /// data types pass
    /// whole. Telling `Bytes` apart needs `B::Data: 'static`: it is a body only for
    /// such data types (`Bytes`, `&'static [u8]`, `Cursor<Vec<u8>>`, …), which every
    /// body of axum, hyper and tower-http is.
    pub struct ResponseBody<B, C = DefaultClassifier> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
        // Set when the verdict is decided at the end of the body (its trailers).
        read_end: Option<(C, ReadEnd<C>)>,
        // The rest of a large frame, still to hand on. Boxed: a frame over 64 KiB pays
        // one allocation, and every response body is 24 bytes smaller, which keeps
        // axum's moves of the response under the size where `memcpy` turns into a loop
        // (benches/README.md, "The default path after native histograms").
        pending: Option<Box<Bytes>>,
    }
}

impl<B, C> ResponseBody<B, C> {
    pub(crate) fn new(inner: B, guard: Option<Guard>, read_end: Option<(C, ReadEnd<C>)>) -> Self {
        Self {
            inner,
            guard,
            read_end,
            pending: None,
        }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

/// An empty body that records nothing: what tower-http's `TimeoutLayer` and
/// `CorsLayer` answer with when they wrap the layer (they need `Default` bodies), a
/// response the layer never saw.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use http::StatusCode;
/// use tower::ServiceBuilder;
/// use tower_http::timeout::TimeoutLayer;
///
/// let metrics = tower_prometheus::Metrics::new();
/// let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
///     ServiceBuilder::new()
///         .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10)))
///         .layer(metrics.http_layer()),
/// );
/// ```
impl<B: Default, C> Default for ResponseBody<B, C> {
    fn default() -> Self {
        Self::new(B::default(), None, None)
    }
}

impl<B, C> ResponseBody<B, C>
where
    B: Body,
    B::Data: 'static,
{
    /// The next slice of a large frame, if one is pending.
    fn next_slice(pending: &mut Option<Box<Bytes>>) -> Option<B::Data> {
        let rest = pending.as_mut()?;
        let slice = if rest.len() > SLICE {
            rest.split_to(SLICE)
        } else {
            *pending.take()?
        };
        // `pending` is only ever set when `B::Data` is `Bytes`.
        let mut slice = Some(slice);
        (&mut slice as &mut dyn Any)
            .downcast_mut::<Option<B::Data>>()
            .and_then(Option::take)
    }
}

impl<B, C> Body for ResponseBody<B, C>
where
    B: Body,
    B::Data: 'static,
{
    type Data = B::Data;
    type Error = B::Error;

    // Always inlined into its caller (http-body-util's and axum's body combinators): 3
    // instructions a request less on the axum path, 24 on hyper's (callgrind,
    // 2026-12-07).
    #[inline(always)]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let mut frame = if this.pending.is_some() {
            Self::next_slice(this.pending).map(|slice| Ok(Frame::data(slice)))
        } else {
            match this.guard.as_mut() {
                Some(guard) => ready!(guard.run(|| this.inner.as_mut().poll_frame(cx))),
                None => ready!(this.inner.as_mut().poll_frame(cx)),
            }
        };
        if let Some(Ok(frame)) = &mut frame {
            if let Some(data) = frame.data_mut() {
                if data.remaining() > SLICE {
                    if let Some(bytes) = (data as &mut dyn Any).downcast_mut::<Bytes>() {
                        *this.pending = Some(Box::new(bytes.split_off(SLICE)));
                    }
                }
            }
        }
        let Some(guard) = this.guard.as_mut() else {
            return Poll::Ready(frame);
        };
        // The caller's code that runs from here on (the body's `is_end_stream`, the
        // classifier) runs marked as polling: a panic in it is recorded as one.
        guard.polling = true;
        match &frame {
            Some(Ok(head)) => {
                let complete = match head.data_ref() {
                    Some(data) => guard.add_response_bytes(data.remaining()),
                    None => {
                        if let (Some(trailers), Some((classify, read_end))) =
                            (head.trailers_ref(), this.read_end.take())
                        {
                            read_end(&classify, guard, Some(trailers));
                        }
                        // Trailers are the last frame: hyper drops the body once it has
                        // them (HTTP/1.1 and HTTP/2), without asking whether it ended.
                        head.is_trailers()
                    }
                };
                // hyper stops polling once the body says it has ended, once it has
                // written the length it announced, or once it has the trailers.
                if this.pending.is_some() || !(complete || this.inner.is_end_stream()) {
                    guard.polling = false;
                    return Poll::Ready(frame);
                }
            }
            Some(Err(_)) => {
                guard.finish(error_id::BODY_ERROR);
                *this.guard = None;
                return Poll::Ready(frame);
            }
            None => {}
        }
        if let Some((classify, read_end)) = this.read_end.take() {
            read_end(&classify, guard, None);
        }
        guard.finish(error_id::NONE);
        *this.guard = None;
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let Some(pending) = &self.pending else {
            return inner;
        };
        let pending = pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(pending));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(pending));
        }
        hint
    }
}

impl<B, C> std::fmt::Debug for ResponseBody<B, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("recording", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "axum", target_pointer_width = "64"))]
mod tests {
    use super::ResponseBody;

    /// axum moves the response twice after our future returns it; past 256 bytes each
    /// move is a `memcpy` loop rather than eight vector moves (30 instructions more per
    /// move, `benches/README.md`). The guard and the boxed slice state keep it under.
    #[test]
    fn an_axum_response_with_our_body_stays_within_256_bytes() {
        let size = size_of::<http::Response<ResponseBody<axum::body::Body>>>();
        assert!(
            size <= 256,
            "Response<ResponseBody<axum Body>> is {size} bytes"
        );
    }
}
