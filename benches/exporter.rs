//! Serving `/metrics`: the exporter encoding ~100, ~1,000 and ~10,000 time series (each
//! bucket, sum and count line is one), as Prometheus text and OpenMetrics, with and
//! without gzip. The series are the HTTP layer's own: every label set holds three
//! histograms, 45 series.
//!
//! With the `protobuf` feature, also the Prometheus protobuf format of the same registry
//! with native histograms and exemplars on: ~10,000 series as above, and 10,000 label
//! sets (10,000 native duration histograms, the series a Prometheus with native
//! histograms stores), beside the text of the same registry.
//!
//! `cargo bench --bench exporter --features protobuf`; the sizes in bytes are printed
//! first.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::Full;
use prometheus_client::registry::Registry;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_prometheus::Exporter;
use tower_prometheus::HttpMetricsLayer;
use tower_prometheus::http_metrics::RouteLabel;

/// Series per label set: duration (14 bounds) 17, request and response sizes (11) 14 each.
const SERIES_PER_LABEL_SET: usize = 45;

fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

#[derive(Clone)]
struct PathAsRoute;

impl<B> RouteLabel<B> for PathAsRoute {
    fn route<'a>(&'a self, request: &'a Request<B>) -> Option<&'a str> {
        Some(request.uri().path())
    }
}

fn handler(_: Request<Full<Bytes>>) -> Ready<Result<Response<Full<Bytes>>, Infallible>> {
    ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
}

/// A registry whose HTTP metrics hold `label_sets` label sets.
fn registry(label_sets: usize) -> Arc<Registry> {
    registry_with(label_sets, false, 1)
}

/// The same, with native histograms and exemplars on or off, `requests` requests per
/// label set (with a sampled `traceparent`).
fn registry_with(label_sets: usize, native: bool, requests: usize) -> Arc<Registry> {
    let mut registry = Registry::default();
    let builder = HttpMetricsLayer::builder()
        .max_series(label_sets)
        .exemplars(native);
    // Native histograms exist only with `protobuf`, where `bench_native` asks for them.
    #[cfg(feature = "protobuf")]
    let builder = builder.native_histograms(native);
    let layer = builder
        .build(&mut registry)
        .expect("valid options")
        .route_label(PathAsRoute);
    let mut service = layer.layer(service_fn(handler));
    for i in 0..label_sets {
        for _ in 0..requests {
            let request = Request::get(format!("/route/{i}"))
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(Full::new(Bytes::new()))
                .expect("valid request");
            let response = run(service.call(request)).expect("infallible");
            drop(response);
        }
    }
    Arc::new(registry)
}

fn scrape(exporter: &Exporter, openmetrics: bool, gzip: bool) -> Bytes {
    let accept = if openmetrics {
        "application/openmetrics-text; version=1.0.0"
    } else {
        "text/plain; version=0.0.4"
    };
    scrape_as(exporter, accept, gzip)
}

fn scrape_as(exporter: &Exporter, accept: &'static str, gzip: bool) -> Bytes {
    let mut request = Request::get("/metrics").header(header::ACCEPT, accept);
    if gzip {
        request = request.header(header::ACCEPT_ENCODING, "gzip");
    }
    let request = request.body(()).expect("valid request");
    let response = run(exporter.clone().oneshot(request)).expect("infallible");
    assert!(response.status().is_success());
    let mut body = pin!(response.into_body());
    let mut cx = Context::from_waker(Waker::noop());
    match http_body::Body::poll_frame(body.as_mut(), &mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("scrape");
    for series in [100usize, 1_000, 10_000] {
        let label_sets = series.div_ceil(SERIES_PER_LABEL_SET);
        let exporter = Exporter::new(registry(label_sets));
        for (format, openmetrics) in [("text", false), ("openmetrics", true)] {
            for (encoding, gzip) in [("identity", false), ("gzip", true)] {
                let bytes = scrape(&exporter, openmetrics, gzip).len();
                let lines = series;
                eprintln!(
                    "scrape/{format}_{encoding}/{series}: {bytes} bytes ({label_sets} label sets, ~{lines} series)"
                );
                group.bench_with_input(
                    BenchmarkId::new(format!("{format}_{encoding}"), series),
                    &exporter,
                    |b, exporter| b.iter(|| scrape(exporter, openmetrics, gzip)),
                );
            }
        }
    }
    group.finish();
}

/// What Prometheus sends with native histograms on.
#[cfg(feature = "protobuf")]
const PROTOBUF_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,*/*;q=0.1";

#[cfg(feature = "protobuf")]
fn bench_native(c: &mut Criterion) {
    let mut group = c.benchmark_group("scrape_native");
    group.sample_size(20);
    // ~10,000 series as `scrape` counts them, then 10,000 native histograms.
    for (name, label_sets) in [
        ("10000_series", 10_000usize.div_ceil(SERIES_PER_LABEL_SET)),
        ("10000_label_sets", 10_000),
    ] {
        let exporter = Exporter::new(registry_with(label_sets, true, 10));
        for (format, accept) in [
            ("protobuf", PROTOBUF_ACCEPT),
            ("text", "text/plain; version=0.0.4"),
            ("openmetrics", "application/openmetrics-text; version=1.0.0"),
        ] {
            let bytes = scrape_as(&exporter, accept, false).len();
            let gzipped = scrape_as(&exporter, accept, true).len();
            eprintln!(
                "scrape_native/{format}/{name}: {bytes} bytes, {gzipped} gzipped ({label_sets} label sets, native histograms and exemplars on)"
            );
            group.bench_with_input(BenchmarkId::new(format, name), &exporter, |b, exporter| {
                b.iter(|| scrape_as(exporter, accept, false))
            });
        }
    }
    group.finish();
}

#[cfg(not(feature = "protobuf"))]
fn bench_native(_: &mut Criterion) {}

criterion_group!(benches, bench, bench_native);
criterion_main!(benches);
