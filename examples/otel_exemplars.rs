//! Exemplars from the spans the service records itself: axum, tower-http's `TraceLayer`,
//! `tracing-opentelemetry` over the OpenTelemetry SDK, and `CurrentSpan`.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example otel_exemplars --features opentelemetry
//! ```
//!
//! It sends two requests through the app (no socket: `oneshot`), one as an edge request
//! (no `traceparent`: the service starts the trace) and one as a traced caller's, then
//! prints the OpenMetrics scrape's exemplars and the spans the SDK exported (to memory
//! here; OTLP in production, as `examples/invoicing` does), and checks that each
//! exemplar names an exported server span.
//!
//! The order of the layers matters: the tracing layer goes outside the metrics layer (in
//! axum, the last `.layer` is the outermost), so that the request's span is current when
//! the metrics layer reads it. In the other order there is no exemplar, never a wrong
//! one (`CurrentSpan`'s docs say why).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::routing::get;
use http::{HeaderMap, Request};
use http_body_util::BodyExt as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use prometheus_client::registry::Registry;
use tower::ServiceExt as _;
use tower_http::trace::TraceLayer;
use tower_prometheus::{CurrentSpan, Exporter, HttpMetricsLayer};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Reads the caller's trace context from the request headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Each request's server span, continuing the caller's trace when there is one.
fn server_span(request: &Request<Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", |path| path.as_str());
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        otel.name = %format!("{} {route}", request.method()),
        http.route = route,
    );
    let caller = TraceContextPropagator::new().extract(&Headers(request.headers()));
    if let Err(error) = span.set_parent(caller) {
        eprintln!("no OpenTelemetry layer for the request span: {error}");
    }
    span
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The service's tracing: every span through tracing-opentelemetry to the SDK.
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otel_exemplars")));
    tracing::subscriber::set_global_default(subscriber)?;

    // Metrics whose exemplars come from those spans.
    let mut registry = Registry::default();
    let metrics = HttpMetricsLayer::builder()
        .exemplars(true)
        .trace_context(CurrentSpan)
        .build(&mut registry)?;
    let exporter = Exporter::new(Arc::new(registry));
    let app = Router::new()
        .route("/invoices", get(|| async { "[]" }))
        .route("/invoices/{id}", get(|| async { "{}" }))
        .layer(metrics)
        .layer(TraceLayer::new_for_http().make_span_with(server_span));

    // An edge request (the service starts the trace) and a traced caller's, on two
    // routes: a bucket keeps one exemplar a second per series.
    let requests = [
        ("/invoices", None),
        (
            "/invoices/2",
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ),
    ];
    for (path, traceparent) in requests {
        let mut request = Request::get(path);
        if let Some(value) = traceparent {
            request = request.header("traceparent", value);
        }
        let response = app.clone().oneshot(request.body(Body::empty())?).await?;
        // To the end of the body: the span closes, and is exported, then.
        response.into_body().collect().await?;
    }

    let scrape = exporter
        .oneshot(
            Request::get("/metrics")
                .header("accept", "application/openmetrics-text; version=1.0.0")
                .body(Body::empty())?,
        )
        .await?;
    let text = String::from_utf8(scrape.into_body().collect().await?.to_bytes().to_vec())?;
    let exported = spans.get_finished_spans()?;
    let mut shown = 0;
    for line in text.lines().filter(|line| line.contains(" # {trace_id=")) {
        println!("exemplar:      {line}");
        let span = exported
            .iter()
            .find(|span| {
                let context = &span.span_context;
                span.span_kind == SpanKind::Server
                    && line.contains(&format!(
                        "trace_id=\"{}\",span_id=\"{}\"",
                        context.trace_id(),
                        context.span_id()
                    ))
            })
            .ok_or_else(|| format!("no exported server span for {line}"))?;
        println!(
            "exported span: {:?} trace_id={} span_id={} parent_span_id={}\n",
            span.name,
            span.span_context.trace_id(),
            span.span_context.span_id(),
            span.parent_span_id
        );
        shown += 1;
    }
    if shown != requests.len() {
        return Err(format!("{shown} exemplars for {} requests:\n{text}", requests.len()).into());
    }
    provider.shutdown()?;
    Ok(())
}
