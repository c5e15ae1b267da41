//! One request through a trivial in-process `tower::Service` (no socket): bare, behind
//! this crate's layer, behind `axum-prometheus`'s layer, behind the middleware a user
//! would write by hand with `prometheus-client`, and the floor: the unavoidable work of
//! the metrics, done inline, and done by the simplest layer that times to the end of the
//! body. On one thread and on two threads at once (same route, different routes).
//!
//! `cargo bench --bench http_layer`

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::Full;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tower::{Layer, Service, service_fn};
use tower_prometheus::http_metrics::HttpMetricsLayer;
use tower_prometheus::{Buckets, Histogram};

type Req<B> = Request<B>;

fn handler<B>(_: Req<B>) -> Ready<Result<Response<Full<Bytes>>, Infallible>> {
    ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
}

fn request(uri: &'static str) -> Req<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.uri_mut() = Uri::from_static(uri);
    request
}

/// Polls a future that never waits to completion.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// One request: call, response, body streamed to the end.
fn drive<S, B>(service: &mut S, uri: &'static str)
where
    S: Service<Req<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    let response = run(service.call(request(uri))).expect("the service answers");
    let mut body = pin!(response.into_body());
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        black_box(frame.is_ok());
    }
}

/// The template of the two routes of the benches.
fn route<B>(request: &Req<B>) -> Option<&str> {
    if request.uri().path().starts_with("/a/") {
        Some("/a/{id}")
    } else {
        Some("/b/{id}")
    }
}

/// The labels of the hand-written middleware: what `prometheus-client`'s axum example
/// does, `String`s built per request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    method: String,
    path: String,
    status: u16,
}

/// The middleware a user writes by hand: time the call (not the body), then
/// `Family::get_or_create(..).observe(..)` with `prometheus-client`'s histogram, in a
/// boxed future as `axum::middleware::from_fn` makes.
#[derive(Clone)]
struct HandWritten<S> {
    inner: S,
    family: Family<Labels, prometheus_client::metrics::histogram::Histogram>,
}

impl<S, B> Service<Req<B>> for HandWritten<S>
where
    S: Service<Req<B>, Response = Response<Full<Bytes>>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req<B>) -> Self::Future {
        let start = Instant::now();
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let family = self.family.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            family
                .get_or_create(&Labels {
                    method,
                    path,
                    status: response.status().as_u16(),
                })
                .observe(start.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

fn hand_written<S>(inner: S) -> HandWritten<S> {
    fn histogram() -> prometheus_client::metrics::histogram::Histogram {
        prometheus_client::metrics::histogram::Histogram::new(
            Buckets::duration_seconds().bounds().iter().copied(),
        )
    }
    let family = Family::new_with_constructor(histogram as fn() -> _);
    let mut registry = Registry::default();
    registry.register("http_request_duration_seconds", "Duration", family.clone());
    HandWritten { inner, family }
}

/// A layer that does nothing but what any layer measuring to the end of the body must
/// do: wrap the request body, the future and the response body. What it costs is the
/// price of the tower plumbing, before any metric.
#[derive(Clone)]
struct Passthrough<S>(S);

pin_project_lite::pin_project! {
    struct PassFuture<F> { #[pin] inner: F }
}

pin_project_lite::pin_project! {
    struct PassBody<B> { #[pin] inner: B }
}

impl<B: Body> Body for PassBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }
}

impl<F, B, E> Future for PassFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<PassBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map(|result| result.map(|response| response.map(|inner| PassBody { inner })))
    }
}

impl<S, B, ResB> Service<Req<B>> for Passthrough<S>
where
    S: Service<Req<PassBody<B>>, Response = Response<ResB>>,
{
    type Response = Response<PassBody<ResB>>;
    type Error = S::Error;
    type Future = PassFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Req<B>) -> Self::Future {
        PassFuture {
            inner: self.0.call(request.map(|inner| PassBody { inner })),
        }
    }
}

/// The floor of a configuration: two clock reads and `observes` observations into
/// this crate's histogram, plus the in-flight increment and decrement when `in_flight`.
/// Aligned so that two floors side by side keep their gauges on separate cache lines.
#[repr(align(128))]
struct Floor {
    histograms: Vec<Histogram>,
    in_flight: Option<AtomicI64>,
}

impl Floor {
    fn new(observes: usize, in_flight: bool) -> Self {
        Self {
            histograms: (0..observes)
                .map(|_| Histogram::new(Buckets::duration_seconds()))
                .collect(),
            in_flight: in_flight.then(|| AtomicI64::new(0)),
        }
    }

    fn run(&self) {
        self.end(black_box(self.begin()));
    }

    fn begin(&self) -> Instant {
        let start = Instant::now();
        if let Some(gauge) = &self.in_flight {
            gauge.fetch_add(1, Ordering::Relaxed);
        }
        start
    }

    fn end(&self, start: Instant) {
        let seconds = start.elapsed().as_secs_f64();
        for histogram in &self.histograms {
            histogram.observe(seconds);
        }
        if let Some(gauge) = &self.in_flight {
            gauge.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The floor's work done by the simplest layer that times to the end of the body: the
/// start time carried from `call` through the future into the body, the floor's `end`
/// when the body ends. No labels, no outcomes, and the metrics in a `&'static`, so no
/// reference count either: what the plumbing of an end-of-body measurement costs.
#[derive(Clone)]
struct EndOfBodyFloor<S> {
    inner: S,
    floor: &'static Floor,
}

pin_project_lite::pin_project! {
    struct FloorFuture<F> { #[pin] inner: F, floor: &'static Floor, start: Option<Instant> }
}

pin_project_lite::pin_project! {
    struct FloorBody<B> { #[pin] inner: B, floor: &'static Floor, start: Option<Instant> }
}

impl<B: Body> Body for FloorBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        if this.inner.is_end_stream() || !matches!(frame, Some(Ok(_))) {
            if let Some(start) = this.start.take() {
                this.floor.end(start);
            }
        }
        Poll::Ready(frame)
    }
}

impl<F, B, E> Future for FloorFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<FloorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (floor, start) = (*this.floor, this.start);
        this.inner.poll(cx).map(|result| {
            result.map(|response| {
                response.map(|inner| FloorBody {
                    inner,
                    floor,
                    start: start.take(),
                })
            })
        })
    }
}

impl<S, B, ResB> Service<Req<B>> for EndOfBodyFloor<S>
where
    S: Service<Req<B>, Response = Response<ResB>>,
{
    type Response = Response<FloorBody<ResB>>;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req<B>) -> Self::Future {
        let start = self.floor.begin();
        FloorFuture {
            inner: self.inner.call(request),
            floor: self.floor,
            start: Some(start),
        }
    }
}

/// Wall time of `iters` runs of `work` on each of two threads at once; `work` gets the
/// thread's index.
fn two_threads<W>(iters: u64, work: W) -> Duration
where
    W: Fn(usize, u64) + Sync,
{
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..2 {
            let work = &work;
            scope.spawn(move || work(thread, iters));
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let bare = service_fn(handler::<Full<Bytes>>);
    let ours = HttpMetricsLayer::new(&mut Registry::default())
        .route_fn(route)
        .layer(service_fn(handler));
    let ours_duration_only = HttpMetricsLayer::builder()
        .body_sizes(false)
        .build(&mut Registry::default())
        .expect("valid options")
        .route_fn(route)
        .layer(service_fn(handler));
    // axum-prometheus spawns its upkeep task on the current runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = runtime.enter();
    let (peer_layer, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
    let peer = peer_layer.layer(service_fn(handler::<Full<Bytes>>));
    let naive = hand_written(service_fn(handler::<Full<Bytes>>));
    let floor_default = Floor::new(3, true);
    let floor_duration = Floor::new(1, true);
    // Leaked once, for the life of the bench: the end-of-body floor holds no count.
    let end_of_body_floor = EndOfBodyFloor {
        inner: service_fn(handler::<Full<Bytes>>),
        floor: Box::leak(Box::new(Floor::new(3, true))),
    };

    let mut group = c.benchmark_group("request/1_thread");
    on_one_thread(&mut group, "bare", &bare);
    on_one_thread(
        &mut group,
        "passthrough_layer",
        &Passthrough(service_fn(handler::<PassBody<Full<Bytes>>>)),
    );
    on_one_thread(&mut group, "tower_prometheus", &ours);
    on_one_thread(
        &mut group,
        "tower_prometheus_duration_only",
        &ours_duration_only,
    );
    on_one_thread(&mut group, "axum_prometheus", &peer);
    on_one_thread(&mut group, "hand_written_prometheus_client", &naive);
    group.bench_function("floor_default", |b| b.iter(|| floor_default.run()));
    group.bench_function("floor_duration_only", |b| b.iter(|| floor_duration.run()));
    on_one_thread(&mut group, "end_of_body_floor_default", &end_of_body_floor);
    group.finish();

    for (routes, uris) in [
        ("same_route", ["/a/1", "/a/2"]),
        ("different_routes", ["/a/1", "/b/1"]),
    ] {
        let mut group = c.benchmark_group(format!("request/2_threads_{routes}"));
        on_two_threads(&mut group, "bare", &bare, uris);
        on_two_threads(&mut group, "tower_prometheus", &ours, uris);
        on_two_threads(&mut group, "axum_prometheus", &peer, uris);
        on_two_threads(&mut group, "hand_written_prometheus_client", &naive, uris);
        // One floor per thread: a gauge shared by both would measure its cache line
        // bouncing between the cores, which the layer's sharded gauges avoid.
        let floors = [Floor::new(3, true), Floor::new(3, true)];
        group.bench_function("floor_default", |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |thread, n| {
                    (0..n).for_each(|_| floors[thread].run());
                })
            });
        });
        group.finish();
    }
}

/// Benches requests to "/a/1" through a clone of `service`, one at a time.
fn on_one_thread<S, B>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, service: &S)
where
    S: Service<Req<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: Body,
{
    group.bench_function(name, |b| {
        let mut service = service.clone();
        b.iter(|| drive(&mut service, "/a/1"));
    });
}

/// Benches requests on two threads at once, each through its own clone of `service`,
/// thread `i` to `uris[i]`.
fn on_two_threads<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    service: &S,
    uris: [&'static str; 2],
) where
    S: Service<Req<Full<Bytes>>, Response = Response<B>> + Clone + Sync,
    S::Error: std::fmt::Debug,
    B: Body,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |thread, n| {
                let mut service = service.clone();
                (0..n).for_each(|_| drive(&mut service, uris[thread]));
            })
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
