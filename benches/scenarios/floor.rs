//! The floor: the simplest layer that times a request to the end of its response body.
//!
//! Per request it does what any end-of-body measurement must: two clock reads, one
//! observe per histogram into this crate's lock-free `Histogram`, the in-flight gauge up
//! and down, and the start time carried with a clone of the metrics' `Arc` from `call`
//! through the future into the response body. No labels, no outcomes (a dropped body is
//! simply not recorded), no exclusions. Applied where ours is (`Router::layer`, or around
//! the hyper service), it pays what the path makes any layer pay, such as axum boxing
//! its response body again.
//!
//! [`FloorLayer`] records the duration only. [`FloorSizesLayer`] records the two body
//! sizes as well, measured as ours measures them by default: the request's declared
//! length (its exact size hint, else `Content-Length`; the request passes untouched),
//! and the response bytes counted per frame.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Buf;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};
use tower_prometheus::{Buckets, Histogram};

/// The floor's metrics. Aligned so that two floors never share a cache line.
#[repr(align(128))]
pub struct FloorMetrics {
    duration: Histogram,
    in_flight: AtomicI64,
    sizes: Option<[Histogram; 2]>,
}

impl FloorMetrics {
    fn new(sizes: bool) -> Arc<Self> {
        Arc::new(Self {
            duration: Histogram::new(Buckets::duration_seconds()),
            in_flight: AtomicI64::new(0),
            sizes: sizes.then(|| {
                [
                    Histogram::new(Buckets::size_bytes()),
                    Histogram::new(Buckets::size_bytes()),
                ]
            }),
        })
    }

    #[inline]
    fn begin(&self) -> Instant {
        let start = Instant::now();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        start
    }

    #[inline]
    fn end(&self, start: Instant, request_bytes: u64, response_bytes: u64) {
        self.duration.observe(start.elapsed().as_secs_f64());
        if let Some([request, response]) = &self.sizes {
            request.observe(request_bytes as f64);
            response.observe(response_bytes as f64);
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The observations so far, for the self-tests.
    pub fn count(&self) -> u64 {
        self.duration.count()
    }
}

/// The duration-only floor.
#[derive(Clone)]
pub struct FloorLayer(Arc<FloorMetrics>);

impl Default for FloorLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl FloorLayer {
    pub fn new() -> Self {
        Self(FloorMetrics::new(false))
    }

    pub fn metrics(&self) -> &FloorMetrics {
        &self.0
    }
}

/// The floor with the body sizes.
#[derive(Clone)]
pub struct FloorSizesLayer(Arc<FloorMetrics>);

impl Default for FloorSizesLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl FloorSizesLayer {
    pub fn new() -> Self {
        Self(FloorMetrics::new(true))
    }
}

impl<S> Layer<S> for FloorLayer {
    type Service = Floor<S>;

    fn layer(&self, inner: S) -> Floor<S> {
        Floor {
            inner,
            metrics: self.0.clone(),
        }
    }
}

impl<S> Layer<S> for FloorSizesLayer {
    type Service = FloorSizes<S>;

    fn layer(&self, inner: S) -> FloorSizes<S> {
        FloorSizes {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Floor<S> {
    inner: S,
    metrics: Arc<FloorMetrics>,
}

#[derive(Clone)]
pub struct FloorSizes<S> {
    inner: S,
    metrics: Arc<FloorMetrics>,
}

impl<S, B, ResB> Service<Request<B>> for Floor<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<FloorBody<ResB>>;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let start = self.metrics.begin();
        FloorFuture {
            inner: self.inner.call(request),
            state: Some(State {
                metrics: self.metrics.clone(),
                start,
                request_bytes: None,
            }),
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for FloorSizes<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    B: Body,
{
    type Response = Response<FloorBody<ResB>>;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let start = self.metrics.begin();
        let request_bytes = request.body().size_hint().exact().or_else(|| {
            request
                .headers()
                .get(http::header::CONTENT_LENGTH)?
                .to_str()
                .ok()?
                .parse()
                .ok()
        });
        FloorFuture {
            inner: self.inner.call(request),
            state: Some(State {
                metrics: self.metrics.clone(),
                start,
                request_bytes,
            }),
        }
    }
}

/// What travels from `call` to the end of the body.
struct State {
    metrics: Arc<FloorMetrics>,
    start: Instant,
    /// The declared length, with body sizes.
    request_bytes: Option<u64>,
}

pin_project_lite::pin_project! {
    pub struct FloorFuture<F> {
        #[pin]
        inner: F,
        state: Option<State>,
    }
}

impl<F, B, E> Future for FloorFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<FloorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let state = this.state.take();
        Poll::Ready(result.map(|response| {
            response.map(|inner| FloorBody {
                inner,
                state,
                response_bytes: 0,
            })
        }))
    }
}

pin_project_lite::pin_project! {
    pub struct FloorBody<B> {
        #[pin]
        inner: B,
        state: Option<State>,
        response_bytes: u64,
    }
}

impl<B: Body> Body for FloorBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    // Inlined into its caller as ours is: left to rustc, whether it is depends on how
    // the bench's code falls into codegen units, which moved the floor by 23
    // instructions a request between two builds of unchanged floor code.
    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                *this.response_bytes += data.remaining() as u64;
            }
        }
        if this.inner.is_end_stream() || !matches!(frame, Some(Ok(_))) {
            if let Some(state) = this.state.take() {
                let request_bytes = state.request_bytes.unwrap_or(0);
                state
                    .metrics
                    .end(state.start, request_bytes, *this.response_bytes);
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
