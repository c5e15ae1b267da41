//! Instructions per request of the trace-context sources (callgrind, through gungraun):
//! what the HTTP layer's one call to its source costs when exemplars are on, `CurrentSpan`
//! (feature `opentelemetry`) beside the default `Traceparent`:
//!
//! - `traceparent`: `Traceparent` on a request with a sampled `traceparent` header;
//! - `current_span`: `CurrentSpan` inside the request's span (tracing-opentelemetry over
//!   the OpenTelemetry SDK, sampled, entered as tower-http's `TraceLayer` enters it), a
//!   request without `traceparent` (an edge request);
//! - `current_span_caller`: the same with a caller's `traceparent`, which the span
//!   continues and the source parses to check the span against;
//! - `current_span_none`: `CurrentSpan` with no span current (the metrics layer outside
//!   the tracing layer): what a request without an exemplar pays.
//!
//! Each benchmark makes its subscriber, span and request in its setup, which callgrind
//! does not count, then counts [`CALLS`] calls: the figure per call is the count divided
//! by [`CALLS`]. Run it with `cargo bench --features opentelemetry --bench
//! trace_source_instructions` (valgrind and `gungraun-runner` 0.20.0, as
//! `scripts/instructions.sh` installs them). Under `cargo test --benches` it runs each
//! scenario once, natively.

use std::hint::black_box;

use gungraun::{library_benchmark, library_benchmark_group};
use http::{Extensions, HeaderMap, HeaderValue};
use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower_prometheus::{CurrentSpan, TraceContextSource, Traceparent};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Calls counted per benchmark.
pub const CALLS: u64 = 1_000;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What a benchmark's calls read: the request's headers and extensions, with the
/// subscriber and the entered span they need kept alive.
struct Request {
    headers: HeaderMap,
    extensions: Extensions,
    _span: Option<tracing::span::EnteredSpan>,
    _provider: Option<SdkTracerProvider>,
}

/// Whether the request carries a caller's `traceparent`.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Yes,
    No,
}

fn headers(caller: Caller) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("accept", HeaderValue::from_static("*/*"));
    if let Caller::Yes = caller {
        headers.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
    }
    headers
}

/// A request, and no subscriber nor span.
fn plain(caller: Caller) -> Request {
    Request {
        headers: headers(caller),
        extensions: Extensions::new(),
        _span: None,
        _provider: None,
    }
}

/// A request inside its span: tracing-opentelemetry over the SDK installed as the global
/// subscriber (once per process, as an application does), the request's span made and
/// entered as tower-http's `TraceLayer` does around the service's `call`.
fn in_span(caller: Caller) -> Request {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(InMemorySpanExporter::default())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")));
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per process");
    let span = tracing::info_span!("request", otel.kind = "server");
    if let Caller::Yes = caller {
        // The span continues the caller's trace, as a service's `make_span_with` does.
        let remote = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        span.set_parent(Context::new().with_remote_span_context(remote))
            .expect("a span of the OpenTelemetry layer");
    }
    let span = span.entered();
    Request {
        headers: headers(caller),
        extensions: Extensions::new(),
        _span: Some(span),
        _provider: Some(provider),
    }
}

#[inline(never)]
fn calls(source: &impl TraceContextSource, request: &Request, n: u64) -> u64 {
    let mut found = 0;
    for _ in 0..n {
        let context =
            black_box(source).trace_context(black_box(&request.headers), &request.extensions);
        found += u64::from(black_box(context).is_some());
    }
    found
}

#[library_benchmark]
#[bench::traceparent(args = (Caller::Yes), setup = plain)]
fn traceparent(request: Request) -> Request {
    assert_eq!(calls(&Traceparent, &request, CALLS), CALLS);
    request
}

#[library_benchmark]
#[bench::current_span(args = (Caller::No), setup = in_span)]
#[bench::current_span_caller(args = (Caller::Yes), setup = in_span)]
fn current_span(request: Request) -> Request {
    assert_eq!(calls(&CurrentSpan, &request, CALLS), CALLS);
    request
}

#[library_benchmark]
#[bench::current_span_none(args = (Caller::No), setup = plain)]
fn no_span(request: Request) -> Request {
    assert_eq!(calls(&CurrentSpan, &request, CALLS), 0);
    request
}

library_benchmark_group!(
    name = trace_sources;
    benchmarks = traceparent, current_span, no_span
);

fn main() {
    // `cargo bench` passes `--bench`, and the gungraun runner `--gungraun-run` when it
    // runs this binary under valgrind; `cargo test --benches` passes neither.
    let counted = std::env::args()
        .skip(1)
        .any(|arg| arg == "--bench" || arg.starts_with("--gungraun"));
    if counted {
        callgrind();
    } else {
        run_once();
    }
}

/// gungraun's harness (its `main!`, scoped here so that `main` can choose).
fn callgrind() {
    gungraun::main!(library_benchmark_groups = trace_sources);
    main();
}

/// Every scenario once, natively: what `cargo test --benches` checks.
fn run_once() {
    assert_eq!(calls(&Traceparent, &plain(Caller::Yes), 1), 1);
    assert_eq!(calls(&CurrentSpan, &plain(Caller::No), 1), 0);
    let request = in_span(Caller::No);
    assert_eq!(calls(&CurrentSpan, &request, 1), 1);
    drop(request);
    println!("ran every scenario once");
}
