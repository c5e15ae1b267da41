//! How the HTTP layer measures request bodies: the declared length ([`ContentLength`], the
//! default) or the bytes read ([`ReadBytes`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::record::{RequestBytes, declared_length, request_bytes_counter};

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
