//! Where the layer goes in a tower-http stack decides what it records: measured here
//! through a real axum `Router`, each tower-http layer on either side of it, then the
//! stack the crate docs recommend ("Where the layer goes in a tower-http stack").
//!
//! Every layer is added with `Router::layer` (so that axum's `MatchedPath` gives the
//! route label); with `ServiceBuilder`, the first layer listed is the outermost.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::{Sample, parse, prometheus_text, total, value};
use http::{Extensions, HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_prometheus::{HttpMetricsLayer, Metrics, TraceContext};

const COUNT: &str = "http_server_request_duration_seconds_count";
const RESPONSE_SIZE_SUM: &str = "http_server_response_body_size_bytes_sum";
/// The timeout of the stacks; the slow route sleeps far longer.
const TIMEOUT: Duration = Duration::from_millis(50);
/// What `/text` answers: compressible, larger than `CompressionLayer`'s 32-byte minimum.
const TEXT_LEN: usize = 64 * 1024;

fn metrics() -> Metrics {
    Metrics::builder()
        .http(HttpMetricsLayer::builder().exemplars(true))
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options")
}

/// The application's routes, without any layer.
fn routes() -> Router {
    Router::new()
        .route("/text", get(|| async { "a".repeat(TEXT_LEN) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route("/api/invoices", get(|| async { "[]" }))
}

/// Sends `request` and reads the whole response: its status and the bytes received.
async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body streams")
        .to_bytes();
    (status, headers, body.to_vec())
}

fn get_request(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("valid")
}

fn gzip_request(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .expect("valid")
}

/// A CORS preflight of a `GET` to `path`, as a browser sends it.
fn preflight(path: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header(header::ORIGIN, "https://app.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Body::empty())
        .expect("valid")
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET])
}

/// The server's own timeout, answered `503 Service Unavailable`: the recommended rule.
fn timeout() -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, TIMEOUT)
}

fn scrape(metrics: &Metrics) -> Vec<Sample> {
    parse(&prometheus_text(metrics.registry()))
}

/// The labels of a plain-HTTP/1.1 `GET` series of `route` with `status`.
fn series<'a>(method: &'a str, route: &'a str, status: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("http_request_method", method),
        ("http_route", route),
        ("http_response_status_code", status),
        ("url_scheme", "http"),
        ("network_protocol_version", "1.1"),
    ]
}

/// The `error_type` of the one series of `route` with `status`, if it has one.
fn error_type(samples: &[Sample], route: &str, status: &str) -> Option<String> {
    let found = common::find(
        samples,
        COUNT,
        &[("http_route", route), ("http_response_status_code", status)],
    );
    assert_eq!(found.len(), 1, "one series of {route} {status}: {found:?}");
    found[0].labels.get("error_type").cloned()
}

#[tokio::test]
async fn inside_the_timeout_a_timed_out_request_is_cancelled() {
    let metrics = metrics();
    let router = routes().layer(
        ServiceBuilder::new()
            .layer(timeout())
            .layer(metrics.http_layer()),
    );
    let (status, _, _) = send(&router, get_request("/slow")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "what the client got"
    );
    let samples = scrape(&metrics);
    // The timeout dropped the layer's future, as a client that left would: 499, not
    // what the client got, and not a failure of any objective.
    assert_eq!(
        error_type(&samples, "/slow", "499").as_deref(),
        Some("cancelled")
    );
    assert_eq!(total(&samples, COUNT, &[]), 1.0);
}

#[tokio::test]
#[allow(deprecated)] // `TimeoutLayer::new` (408) is what is measured.
async fn outside_the_timeout_the_timeouts_answer_is_recorded() {
    // tower-http's deprecated `TimeoutLayer::new` answers 408, the client's status:
    // recorded as such, not a failure.
    let metrics_408 = metrics();
    let router = routes().layer(
        ServiceBuilder::new()
            .layer(metrics_408.http_layer())
            .layer(TimeoutLayer::new(TIMEOUT)),
    );
    let (status, _, _) = send(&router, get_request("/slow")).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    let samples = scrape(&metrics_408);
    assert_eq!(error_type(&samples, "/slow", "408"), None, "not a failure");

    // Answered 503 (`with_status_code`), it is a server error: `error_type="503"`, an
    // availability failure in every naming preset and in the SLO rules (`5..`).
    let metrics_503 = metrics();
    let router = routes().layer(
        ServiceBuilder::new()
            .layer(metrics_503.http_layer())
            .layer(timeout()),
    );
    let (status, _, _) = send(&router, get_request("/slow")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let samples = scrape(&metrics_503);
    assert_eq!(error_type(&samples, "/slow", "503").as_deref(), Some("503"));
    // The duration is the timeout's, not the handler's 30 s: under 2.5 s, the bucket
    // bound nearest above the 50 ms timeout that no loaded machine reaches.
    let under = common::find(
        &samples,
        "http_server_request_duration_seconds_bucket",
        &[("http_route", "/slow"), ("le", "2.5")],
    );
    assert_eq!(under.first().map(|sample| sample.value), Some(1.0));
}

#[tokio::test]
async fn outside_compression_body_sizes_are_the_bytes_sent() {
    // Outside: the compressed bytes, what the client received.
    let outside = metrics();
    let router = routes().layer(
        ServiceBuilder::new()
            .layer(outside.http_layer())
            .layer(CompressionLayer::new()),
    );
    let (status, headers, body) = send(&router, gzip_request("/text")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert!(
        body.len() < TEXT_LEN / 10,
        "compressed: {} bytes",
        body.len()
    );
    assert_eq!(
        value(
            &scrape(&outside),
            RESPONSE_SIZE_SUM,
            &series("GET", "/text", "200")
        ),
        Some(body.len() as f64)
    );

    // Inside: the handler's uncompressed bytes.
    let inside = metrics();
    let router = routes().layer(
        ServiceBuilder::new()
            .layer(CompressionLayer::new())
            .layer(inside.http_layer()),
    );
    let (_, headers, body) = send(&router, gzip_request("/text")).await;
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert!(body.len() < TEXT_LEN / 10);
    assert_eq!(
        value(
            &scrape(&inside),
            RESPONSE_SIZE_SUM,
            &series("GET", "/text", "200")
        ),
        Some(TEXT_LEN as f64)
    );
}

#[tokio::test]
async fn outside_cors_preflights_are_recorded() {
    let outside = metrics();
    let router = routes().layer(
        ServiceBuilder::new()
            .layer(outside.http_layer())
            .layer(cors()),
    );
    let (status, headers, _) = send(&router, preflight("/api/invoices")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(
        value(
            &scrape(&outside),
            COUNT,
            &series("OPTIONS", "/api/invoices", "200")
        ),
        Some(1.0),
        "the preflight, with its route"
    );

    let inside = metrics();
    let router = routes().layer(
        ServiceBuilder::new()
            .layer(cors())
            .layer(inside.http_layer()),
    );
    let (status, _, _) = send(&router, preflight("/api/invoices")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        total(&scrape(&inside), COUNT, &[]),
        0.0,
        "CorsLayer answered the preflight without calling the layer"
    );
    // The request that follows is recorded either way.
    send(&router, get_request("/api/invoices")).await;
    assert_eq!(
        value(
            &scrape(&inside),
            COUNT,
            &series("GET", "/api/invoices", "200")
        ),
        Some(1.0)
    );
}

/// A trace context source that reads the current `tracing` span, as one reading an
/// OpenTelemetry span through `tracing-opentelemetry` does: the span's id as span id,
/// under a fixed trace id.
fn current_span(_: &HeaderMap, _: &Extensions) -> Option<TraceContext> {
    let id = tracing::Span::current().id()?;
    TraceContext::new(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c, id.into_u64())
}

/// The OpenMetrics scrape of the crate's exporter, with exemplars.
async fn openmetrics(metrics: &Metrics) -> String {
    let request = Request::get("/metrics")
        .header(
            header::ACCEPT,
            "application/openmetrics-text; version=1.0.0",
        )
        .body(Body::empty())
        .expect("valid");
    let response = metrics.exporter().oneshot(request).await.expect("answers");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

/// The span ids of the exemplars on the duration buckets of `route`.
fn exemplar_spans(openmetrics: &str, route: &str) -> Vec<String> {
    let route = format!("http_route=\"{route}\"");
    openmetrics
        .lines()
        .filter(|line| line.starts_with("http_server_request_duration_seconds_bucket{"))
        .filter(|line| line.contains(&route))
        .filter_map(|line| line.split_once(" # {"))
        .filter_map(|(_, exemplar)| exemplar.split_once("span_id=\""))
        .filter_map(|(_, rest)| rest.split_once('"'))
        .map(|(span, _)| span.to_owned())
        .collect()
}

/// The route `/traced`: records the id of the span it runs in.
fn traced_routes(seen: Arc<Mutex<Option<u64>>>) -> Router {
    routes().route(
        "/traced",
        get(move || async move {
            let id = tracing::Span::current().id().map(|id| id.into_u64());
            *seen.lock().expect("not poisoned") = id;
            "traced"
        }),
    )
}

#[tokio::test]
async fn inside_trace_layer_the_requests_span_is_current_for_its_trace_context() {
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
    let layer = || {
        HttpMetricsLayer::builder()
            .exemplars(true)
            .trace_context(current_span)
    };
    // Inside TraceLayer: the request's span is current when the layer's `call` runs.
    let inside = Metrics::builder()
        .http(layer())
        .build()
        .expect("valid options");
    let seen = Arc::new(Mutex::new(None));
    let router = traced_routes(seen.clone()).layer(
        ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .layer(inside.http_layer()),
    );
    send(&router, get_request("/traced")).await;
    let span = seen
        .lock()
        .expect("not poisoned")
        .expect("the handler ran in TraceLayer's span");
    assert_eq!(
        exemplar_spans(&openmetrics(&inside).await, "/traced"),
        [format!("{span:016x}")],
        "the exemplar links the request's span"
    );

    // Outside it: no span yet, no exemplar.
    let outside = Metrics::builder()
        .http(layer())
        .build()
        .expect("valid options");
    let router = traced_routes(Arc::new(Mutex::new(None))).layer(
        ServiceBuilder::new()
            .layer(outside.http_layer())
            .layer(TraceLayer::new_for_http()),
    );
    send(&router, get_request("/traced")).await;
    let scrape = openmetrics(&outside).await;
    assert!(scrape.contains("http_route=\"/traced\""), "{scrape}");
    assert_eq!(exemplar_spans(&scrape, "/traced"), Vec::<String>::new());
}

/// The stack the crate docs recommend, outermost first: `TraceLayer`, the metrics,
/// `CorsLayer`, `TimeoutLayer` answering 503, `CompressionLayer`.
#[tokio::test]
async fn the_recommended_stack_records_what_the_client_got() {
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
    let metrics = Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .exemplars(true)
                .trace_context(current_span)
                .objective("/slow", tower_prometheus::Objective::availability(0.99)),
        )
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let seen = Arc::new(Mutex::new(None));
    let router = traced_routes(seen.clone()).layer(
        ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .layer(metrics.http_layer())
            .layer(cors())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                TIMEOUT,
            ))
            .layer(CompressionLayer::new()),
    );

    let (status, headers, text) = send(&router, gzip_request("/text")).await;
    assert_eq!(
        (status, &headers[header::CONTENT_ENCODING]),
        (StatusCode::OK, &"gzip".parse().expect("valid"))
    );
    let (status, _, _) = send(&router, get_request("/slow")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = send(&router, preflight("/api/invoices")).await;
    assert_eq!(status, StatusCode::OK);
    send(&router, get_request("/traced")).await;

    let samples = scrape(&metrics);
    // The bytes the client received.
    assert_eq!(
        value(&samples, RESPONSE_SIZE_SUM, &series("GET", "/text", "200")),
        Some(text.len() as f64)
    );
    // The timeout: what the client got, a server error, counted by the SLO rules.
    assert_eq!(error_type(&samples, "/slow", "503").as_deref(), Some("503"));
    assert_eq!(
        common::total(
            &samples,
            COUNT,
            &[
                ("http_route", "/slow"),
                ("http_response_status_code", "499")
            ]
        ),
        0.0
    );
    // The preflight.
    assert_eq!(
        value(&samples, COUNT, &series("OPTIONS", "/api/invoices", "200")),
        Some(1.0)
    );
    // The exemplar of the request's span.
    let span = seen.lock().expect("not poisoned").expect("a span");
    assert_eq!(
        exemplar_spans(&openmetrics(&metrics).await, "/traced"),
        [format!("{span:016x}")]
    );
    assert_eq!(total(&samples, COUNT, &[]), 4.0);
}
