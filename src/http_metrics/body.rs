//! The request and response bodies of the layer, and how request sizes are measured.

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::{Request, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::classify::ErrorType;
use super::guard::{Guard, RequestBytes, request_bytes_counter};
use super::labels::error_id;

/// How the layer measures request bodies, which decides the request type the inner
/// service receives: [`ContentLength`] (the default) or [`ReadBytes`].
///
/// Chosen with [`HttpMetricsLayer::request_size`](super::HttpMetricsLayer::request_size).
/// This trait is sealed.
///
/// ```
/// use http::Request;
/// use tower_prometheus::http_metrics::{ContentLength, ReadBytes, RequestBody, RequestSize};
///
/// // The request the inner service receives for a request body `B`, in each mode:
/// type Untouched<B> = Request<<ContentLength as RequestSize>::Body<B>>;
/// type Counted<B> = Request<<ReadBytes as RequestSize>::Body<B>>;
///
/// fn untouched(request: Untouched<String>) -> Request<String> {
///     request
/// }
/// fn counted(request: Counted<String>) -> Request<RequestBody<String>> {
///     request
/// }
/// ```
pub trait RequestSize: sealed::Sealed + Clone {
    /// The request body the inner service receives, for a request body `B`.
    type Body<B>;

    /// How the size of `request` will be known; `measure` is false when body sizes are
    /// off.
    #[doc(hidden)]
    fn measure<B: Body>(request: &Request<B>, measure: bool) -> RequestBytes;

    /// The request for the inner service, measured as `bytes` says.
    #[doc(hidden)]
    fn wrap<B>(request: Request<B>, bytes: &RequestBytes) -> Request<Self::Body<B>>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ContentLength {}
    impl Sealed for super::ReadBytes {}
}

/// The request size is the length the request declared: its `Content-Length`, or the
/// exact size its body reports (0 for a request without a body, such as most `GET`s).
/// A request whose length is unknown (a chunked upload) is not observed in the request
/// size histogram. The inner service receives the request untouched: a hyper handler
/// keeps taking `Request<Incoming>`.
///
/// The default: it costs nothing per request beyond reading the header, and wraps
/// nothing (axum boxes every request body it did not make itself, so a wrapper costs an
/// allocation per request there).
///
/// ```
/// use http::Request;
/// use hyper::body::Incoming;
/// use tower::service_fn;
/// use tower_prometheus::Metrics;
/// use tower_prometheus::http_metrics::ContentLength;
///
/// // A hyper handler keeps its request type behind the layer.
/// let handler = service_fn(|_: Request<Incoming>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
/// });
/// let service = tower::Layer::layer(&Metrics::new().http_layer().request_size(ContentLength), handler);
/// # let _ = service;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ContentLength;

impl RequestSize for ContentLength {
    type Body<B> = B;

    #[inline]
    fn measure<B: Body>(request: &Request<B>, measure: bool) -> RequestBytes {
        if !measure {
            return RequestBytes::Unknown;
        }
        let body = request.body();
        let declared = declared_length(body, request.headers());
        match declared {
            Some(bytes) => RequestBytes::Declared(bytes),
            None if body.is_end_stream() => RequestBytes::Declared(0),
            None => RequestBytes::Unknown,
        }
    }

    #[inline]
    fn wrap<B>(request: Request<B>, _: &RequestBytes) -> Request<B> {
        request
    }
}

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

/// The request size is the bytes the inner service read from the request body by the
/// time the request finished, whatever it declared: chunked uploads are measured too,
/// and a body the service did not read counts 0. The inner service receives the body
/// wrapped in a [`RequestBody`], which counts them: its request type is
/// `Request<RequestBody<B>>`.
///
/// ```
/// use http::Request;
/// use hyper::body::Incoming;
/// use tower::service_fn;
/// use tower_prometheus::Metrics;
/// use tower_prometheus::http_metrics::{ReadBytes, RequestBody};
///
/// let handler = service_fn(|_: Request<RequestBody<Incoming>>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
/// });
/// let service = tower::Layer::layer(&Metrics::new().http_layer().request_size(ReadBytes), handler);
/// # let _ = service;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadBytes;

impl RequestSize for ReadBytes {
    type Body<B> = RequestBody<B>;

    #[inline]
    fn measure<B: Body>(request: &Request<B>, measure: bool) -> RequestBytes {
        match measure {
            true if request.body().is_end_stream() => RequestBytes::Declared(0),
            true => RequestBytes::Counted(request_bytes_counter()),
            false => RequestBytes::Unknown,
        }
    }

    #[inline]
    fn wrap<B>(request: Request<B>, bytes: &RequestBytes) -> Request<RequestBody<B>> {
        let read = match bytes {
            RequestBytes::Counted(counter) => Some(counter.clone()),
            _ => None,
        };
        request.map(|inner| RequestBody { inner, read })
    }
}

pin_project! {
    /// The request body the inner service receives with [`ReadBytes`]: the original
    /// body, counting the bytes the service reads.
    ///
    /// Bodies that are empty from the start, and all bodies when body sizes are turned
    /// off, are passed through without counting.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        read: Option<Arc<AtomicU64>>,
    }
}

impl<B> RequestBody<B> {
    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, without the byte count.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(read), Some(Ok(frame))) = (this.read.as_ref(), &frame) {
            if let Some(data) = frame.data_ref() {
                read.fetch_add(data.remaining() as u64, Ordering::Relaxed);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("counted", &self.read.is_some())
            .finish_non_exhaustive()
    }
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
    /// The response body the layer returns: the inner service's body, carrying the guard
    /// that records the request when the body ends, fails or is dropped.
    ///
    /// Data frames of `Bytes` over 64 KiB are passed on in 64 KiB slices (see the
    /// [module docs](super#when-a-request-counts-as-finished)); other data types pass
    /// whole. Telling `Bytes` apart needs `B::Data: 'static`: it is a body only for
    /// such data types (`Bytes`, `&'static [u8]`, `Cursor<Vec<u8>>`, …), which every
    /// body of axum, hyper and tower-http is.
    pub struct ResponseBody<B, C = super::DefaultClassifier> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
        // Set when the classifier decides at the end of the body.
        classify: Option<(C, ClassifyEnd<C>)>,
        // The rest of a large frame, still to hand on. Boxed: a frame over 64 KiB pays
        // one allocation, and every response body is 24 bytes smaller, which keeps
        // axum's moves of the response under the size where `memcpy` turns into a loop
        // (benches/README.md, "The default path after native histograms").
        pending: Option<Box<Bytes>>,
    }
}

impl<B, C> ResponseBody<B, C> {
    pub(crate) fn new(
        inner: B,
        guard: Option<Guard>,
        classify: Option<(C, ClassifyEnd<C>)>,
    ) -> Self {
        Self {
            inner,
            guard,
            classify,
            pending: None,
        }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
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
                        if let (Some(trailers), Some((classify, classify_end))) =
                            (head.trailers_ref(), this.classify.take())
                        {
                            let error = classify_end(&classify, Some(trailers));
                            guard.classified(error.as_ref());
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
        if let Some((classify, classify_end)) = this.classify.take() {
            let error = classify_end(&classify, None);
            guard.classified(error.as_ref());
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

/// [`Classify::classify_end`](super::Classify::classify_end) of the classifier `C`, for
/// whichever error type it was chosen: the body then needs no bound on `C`.
pub(crate) type ClassifyEnd<C> = fn(&C, Option<&http::HeaderMap>) -> Option<ErrorType>;

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
