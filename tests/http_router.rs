//! The layer through a real axum `Router`, driven in-process with `oneshot`.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use bytes::Bytes;
use common::{find, parse, prometheus_text, promtool_check_metrics, total, value};
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tower::ServiceExt;
use tower_prometheus::Metrics;
use tower_prometheus::http_metrics::{HttpMetricsLayer, Naming, RouteLabel, UrlScheme};

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";
const ACTIVE: &str = "http_server_active_requests";

/// A response body fed by a channel: the test decides when each frame arrives.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

fn app(metrics: &Metrics) -> Router {
    Router::new()
        .route("/hello/{name}", get(|| async { "hello" }))
        .route(
            "/echo",
            post(|body: Bytes| async move { format!("read {} bytes", body.len()) }),
        )
        .route(
            "/unavailable",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/api/users/{id}/invoices/{invoice}", get(|| async { "ok" }))
        .route_service("/metrics", metrics.exporter())
        .layer(metrics.http_layer())
}

async fn send(router: Router, request: Request<Body>) -> (StatusCode, Bytes) {
    let response = router
        .oneshot(request)
        .await
        .expect("routers are infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body streams")
        .to_bytes();
    (status, body)
}

/// A router whose `/stream` answers with the body fed by `rx`, once.
fn stream_router(metrics: &Metrics, rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Router {
    let rx = Arc::new(Mutex::new(Some(rx)));
    Router::new()
        .route(
            "/stream",
            get(move || async move {
                let rx = rx
                    .lock()
                    .expect("not poisoned")
                    .take()
                    .expect("one request");
                Body::new(ChannelBody(rx))
            }),
        )
        .layer(metrics.http_layer())
}

/// A `/stream` request whose response body has streamed its first chunk, `first`;
/// the sender feeds the rest.
async fn stream_started(
    metrics: &Metrics,
    first: &'static [u8],
) -> (mpsc::Sender<Result<Bytes, std::io::Error>>, Body) {
    let (tx, rx) = mpsc::channel(1);
    let response = stream_router(metrics, rx)
        .oneshot(get_request("/stream"))
        .await
        .expect("infallible");
    let mut body = response.into_body();
    tx.send(Ok(Bytes::from_static(first)))
        .await
        .expect("body alive");
    assert!(body.frame().await.is_some());
    (tx, body)
}

fn get_request(uri: &str) -> Request<Body> {
    Request::get(uri)
        .body(Body::empty())
        .expect("valid request")
}

fn scrape(metrics: &Metrics) -> Vec<common::Sample> {
    parse(&prometheus_text(metrics.registry()))
}

/// The in-flight gauge of plain-HTTP `GET` requests.
fn get_in_flight(samples: &[common::Sample]) -> Option<f64> {
    value(
        samples,
        ACTIVE,
        &[("http_request_method", "GET"), ("url_scheme", "http")],
    )
}

fn labels<'a>(route: Option<&'a str>, method: &'a str, status: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![
        ("http_request_method", method),
        ("http_response_status_code", status),
        ("url_scheme", "http"),
        ("network_protocol_version", "1.1"),
    ];
    if let Some(route) = route {
        labels.push(("http_route", route));
    }
    labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_concurrent_requests_exactly() {
    let metrics = Metrics::new();
    let router = app(&metrics);
    let requests: Vec<_> = (0..200)
        .map(|i| tokio::spawn(send(router.clone(), get_request(&format!("/hello/n{i}")))))
        .collect();
    for request in requests {
        let (status, body) = request.await.expect("the request task does not panic");
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    }
    let samples = scrape(&metrics);
    let series = labels(Some("/hello/{name}"), "GET", "200");
    assert_eq!(value(&samples, DURATION_COUNT, &series), Some(200.0));
    assert_eq!(
        value(
            &samples,
            "http_server_response_body_size_bytes_sum",
            &series
        ),
        Some(1000.0),
        "200 bodies of 5 bytes"
    );
    assert_eq!(
        value(&samples, "http_server_request_body_size_bytes_sum", &series),
        Some(0.0)
    );
    assert_eq!(
        find(&samples, DURATION_COUNT, &[]).len(),
        1,
        "one series for one route, method and status: {samples:#?}"
    );
    assert_eq!(get_in_flight(&samples), Some(0.0));
}

#[tokio::test]
async fn labels_with_route_templates_and_collapses_unmatched_paths() {
    let metrics = Metrics::new();
    let router = app(&metrics);
    for uri in [
        "/api/users/1/invoices/7",
        "/api/users/2/invoices/8",
        "/nope/1",
        "/nope/2",
        "/x",
    ] {
        send(router.clone(), get_request(uri)).await;
    }
    let samples = scrape(&metrics);
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/api/users/{id}/invoices/{invoice}"), "GET", "200")
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&samples, DURATION_COUNT, &labels(None, "GET", "404")),
        Some(3.0),
        "unmatched paths share one series without a route label"
    );
    assert!(
        samples.iter().all(|s| !s
            .labels
            .values()
            .any(|v| v.contains("nope") || v.contains("/1/"))),
        "raw paths never become labels"
    );
}

#[tokio::test]
async fn methods_outside_rfc_9110_are_other() {
    let metrics = Metrics::new();
    let router = app(&metrics);
    for method in ["PROPFIND", "BREW", "PATCH"] {
        let request = Request::builder()
            .method(method)
            .uri("/hello/x")
            .body(Body::empty())
            .expect("valid request");
        let (status, _) = send(router.clone(), request).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
    let samples = scrape(&metrics);
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/hello/{name}"), "_OTHER", "405")
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/hello/{name}"), "PATCH", "405")
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn server_errors_carry_the_status_as_error_type() {
    let metrics = Metrics::new();
    send(app(&metrics), get_request("/unavailable")).await;
    let samples = scrape(&metrics);
    let mut series = labels(Some("/unavailable"), "GET", "503");
    series.push(("error_type", "503"));
    assert_eq!(value(&samples, DURATION_COUNT, &series), Some(1.0));
}

#[tokio::test]
async fn body_sizes_are_the_bytes_streamed() {
    let metrics = Metrics::new();
    let request = Request::post("/echo")
        .body(Body::from(vec![b'x'; 1000]))
        .expect("valid request");
    let (_, body) = send(app(&metrics), request).await;
    assert_eq!(&body[..], b"read 1000 bytes");
    let samples = scrape(&metrics);
    let series = labels(Some("/echo"), "POST", "200");
    assert_eq!(
        value(&samples, "http_server_request_body_size_bytes_sum", &series),
        Some(1000.0)
    );
    assert_eq!(
        value(
            &samples,
            "http_server_response_body_size_bytes_sum",
            &series
        ),
        Some(15.0)
    );
    assert_eq!(
        value(
            &samples,
            "http_server_request_body_size_bytes_bucket",
            &[series.as_slice(), &[("le", "256")]].concat()
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "http_server_request_body_size_bytes_bucket",
            &[series.as_slice(), &[("le", "1024")]].concat()
        ),
        Some(1.0)
    );
}

/// The duration runs to the end of the body, not to the response head.
#[tokio::test]
async fn duration_includes_streaming_the_body() {
    let metrics = Metrics::new();
    let (tx, mut body) = stream_started(&metrics, b"first").await;
    assert_eq!(
        total(&scrape(&metrics), DURATION_COUNT, &[]),
        0.0,
        "not finished while the body streams"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tx);
    assert!(body.frame().await.is_none());
    let samples = scrape(&metrics);
    let series = labels(Some("/stream"), "GET", "200");
    assert_eq!(value(&samples, DURATION_COUNT, &series), Some(1.0));
    let under_250ms = [series.as_slice(), &[("le", "0.25")]].concat();
    assert_eq!(
        value(
            &samples,
            "http_server_request_duration_seconds_bucket",
            &under_250ms
        ),
        Some(0.0),
        "the 300 ms spent streaming are in the duration"
    );
    assert_eq!(
        value(
            &samples,
            "http_server_response_body_size_bytes_sum",
            &series
        ),
        Some(5.0)
    );
}

#[tokio::test]
async fn body_dropped_mid_stream_is_cancelled_with_its_status() {
    let metrics = Metrics::new();
    let (_tx, body) = stream_started(&metrics, b"half").await;
    let samples = scrape(&metrics);
    assert_eq!(get_in_flight(&samples), Some(1.0));
    drop(body);
    let samples = scrape(&metrics);
    let mut series = labels(Some("/stream"), "GET", "200");
    series.push(("error_type", "cancelled"));
    assert_eq!(value(&samples, DURATION_COUNT, &series), Some(1.0));
    assert_eq!(
        value(
            &samples,
            "http_server_response_body_size_bytes_sum",
            &series
        ),
        Some(4.0)
    );
    assert_eq!(get_in_flight(&samples), Some(0.0));
}

#[tokio::test]
async fn body_error_is_recorded_with_its_status() {
    let metrics = Metrics::new();
    let (tx, rx) = mpsc::channel(2);
    let router = stream_router(&metrics, rx);
    tx.send(Ok(Bytes::from_static(b"abc")))
        .await
        .expect("body alive");
    tx.send(Err(std::io::Error::other("disk gone")))
        .await
        .expect("body alive");
    let response = router
        .oneshot(get_request("/stream"))
        .await
        .expect("infallible");
    let error = response.into_body().collect().await;
    assert!(error.is_err());
    let samples = scrape(&metrics);
    let mut series = labels(Some("/stream"), "GET", "200");
    series.push(("error_type", "body_error"));
    assert_eq!(value(&samples, DURATION_COUNT, &series), Some(1.0));
    assert_eq!(total(&samples, DURATION_COUNT, &[]), 1.0, "recorded once");
}

#[tokio::test]
async fn future_dropped_before_a_response_is_499_cancelled() {
    let metrics = Metrics::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let router = Router::new()
        .route(
            "/slow",
            get(move || {
                if let Some(tx) = started_tx.lock().expect("not poisoned").take() {
                    let _ = tx.send(());
                }
                std::future::pending::<&'static str>()
            }),
        )
        .layer(metrics.http_layer());
    let request = tokio::spawn(router.oneshot(get_request("/slow")));
    started_rx.await.expect("the handler starts");
    assert_eq!(get_in_flight(&scrape(&metrics)), Some(1.0));
    request.abort();
    assert!(request.await.expect_err("aborted").is_cancelled());
    let samples = scrape(&metrics);
    let mut series = labels(Some("/slow"), "GET", "499");
    series.push(("error_type", "cancelled"));
    assert_eq!(value(&samples, DURATION_COUNT, &series), Some(1.0));
    assert_eq!(get_in_flight(&samples), Some(0.0));
}

#[tokio::test]
async fn head_requests_finish_with_the_head() {
    let metrics = Metrics::new();
    let request = Request::head("/hello/x")
        .body(Body::empty())
        .expect("valid request");
    let response = app(&metrics).oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    let samples = scrape(&metrics);
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/hello/{name}"), "HEAD", "200")
        ),
        Some(1.0),
        "a HEAD response whose body is never sent is not cancelled"
    );
}

/// With prom-client names there are no scheme, version or error labels: requests that
/// differ only in those are one series, not several with the same labels.
#[tokio::test]
async fn prom_client_naming_merges_what_it_does_not_label() {
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().naming(Naming::PromClient))
        .build()
        .expect("valid options");
    let (tx, rx) = mpsc::channel(1);
    let router = stream_router(&metrics, rx).merge(app(&metrics));
    send(router.clone(), get_request("/hello/x")).await;
    let h2 = Request::get("https://example.com/hello/x")
        .version(http::Version::HTTP_2)
        .body(Body::empty())
        .expect("valid request");
    send(router.clone(), h2).await;
    let response = router
        .clone()
        .oneshot(get_request("/stream"))
        .await
        .expect("infallible");
    tx.send(Ok(Bytes::from_static(b"x")))
        .await
        .expect("body alive");
    drop(response);
    let samples = scrape(&metrics);
    assert_eq!(
        value(
            &samples,
            "http_request_duration_seconds_count",
            &[
                ("method", "GET"),
                ("route", "/hello/{name}"),
                ("status_code", "200")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &samples,
            "http_request_duration_seconds_count",
            &[
                ("method", "GET"),
                ("route", "/stream"),
                ("status_code", "200")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "http_requests_in_flight", &[("method", "GET")]),
        Some(0.0)
    );
}

#[tokio::test]
async fn prom_client_naming() {
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().naming(Naming::PromClient))
        .build()
        .expect("valid options");
    send(app(&metrics), get_request("/hello/x")).await;
    send(app(&metrics), get_request("/unavailable")).await;
    let samples = scrape(&metrics);
    let series = [
        ("method", "GET"),
        ("route", "/hello/{name}"),
        ("status_code", "200"),
    ];
    assert_eq!(
        value(&samples, "http_request_duration_seconds_count", &series),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "http_request_size_bytes_count", &series),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "http_response_size_bytes_count", &series),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "http_requests_in_flight", &[("method", "GET")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "http_request_duration_seconds_count",
            &[
                ("method", "GET"),
                ("route", "/unavailable"),
                ("status_code", "503")
            ]
        ),
        Some(1.0),
        "no error_type label with prom-client names"
    );
    assert!(samples.iter().all(|s| !s.name.starts_with("http_server_")));
}

#[tokio::test]
async fn options_exclude_group_label_prefix_and_turn_sizes_off() {
    let metrics = Metrics::builder()
        .prefix("invoicing")
        .http(
            HttpMetricsLayer::builder()
                .exclude_path("/metrics")
                .group_status_codes(true)
                .const_label("service_name", "billing")
                .body_sizes(false)
                .duration_buckets([0.5, 1.0]),
        )
        .build()
        .expect("valid options");
    let router = app(&metrics);
    send(router.clone(), get_request("/hello/x")).await;
    send(router.clone(), get_request("/hello/y")).await;
    send(router.clone(), get_request("/metrics")).await;
    send(router.clone(), get_request("/nope")).await;
    let samples = scrape(&metrics);
    let mut series = labels(Some("/hello/{name}"), "GET", "2xx");
    series.push(("service_name", "billing"));
    assert_eq!(
        value(
            &samples,
            "invoicing_http_server_request_duration_seconds_count",
            &series
        ),
        Some(2.0)
    );
    let bucket = [series.as_slice(), &[("le", "0.5")]].concat();
    assert_eq!(
        value(
            &samples,
            "invoicing_http_server_request_duration_seconds_bucket",
            &bucket
        ),
        Some(2.0)
    );
    assert_eq!(
        find(
            &samples,
            "invoicing_http_server_request_duration_seconds_bucket",
            &series
        )
        .len(),
        3,
        "0.5, 1 and +Inf"
    );
    assert_eq!(
        total(
            &samples,
            "invoicing_http_server_request_duration_seconds_count",
            &[]
        ),
        3.0,
        "/metrics is excluded"
    );
    assert!(
        samples.iter().all(|s| !s.name.contains("body_size")),
        "no body size histograms when turned off"
    );
    promtool_check_metrics(&prometheus_text(metrics.registry()));
}

/// The mistake the cardinality limit protects from: raw paths as route labels.
#[derive(Clone)]
struct RawPath;

impl<B> RouteLabel<B> for RawPath {
    fn route<'a>(&'a self, request: &'a Request<B>) -> Option<&'a str> {
        Some(request.uri().path())
    }
}

#[tokio::test]
async fn cardinality_is_bounded() {
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().body_sizes(false))
        .build()
        .expect("valid options");
    let router = app(&metrics);
    for i in 0..10_000 {
        send(
            router.clone(),
            get_request(&format!("/random/{i}/{}", i * 7919)),
        )
        .await;
    }
    let samples = scrape(&metrics);
    assert_eq!(find(&samples, DURATION_COUNT, &[]).len(), 1);
    assert_eq!(
        value(&samples, DURATION_COUNT, &labels(None, "GET", "404")),
        Some(10_000.0)
    );

    // 2,500 distinct routes from a closure, against the default limit of 2,000.
    let metrics = Metrics::new();
    let layer = metrics.http_layer().route_label(RawPath);
    let router = Router::new().fallback(|| async { "any" }).layer(layer);
    for i in 0..2_500 {
        send(router.clone(), get_request(&format!("/route/{i}"))).await;
    }
    let samples = scrape(&metrics);
    let series = find(&samples, DURATION_COUNT, &[]);
    assert_eq!(
        series.len(),
        2_001,
        "2,000 label sets and the overflow series"
    );
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &[("otel_metric_overflow", "true")]
        ),
        Some(500.0)
    );
    assert_eq!(
        total(&samples, DURATION_COUNT, &[]),
        2_500.0,
        "nothing lost"
    );
    promtool_check_metrics(&prometheus_text(metrics.registry()));
}

#[tokio::test]
async fn random_methods_collapse_to_other() {
    let metrics = Metrics::new();
    let router = app(&metrics);
    for i in 0..100 {
        let request = Request::builder()
            .method(format!("M{i}").as_str())
            .uri("/hello/x")
            .body(Body::empty())
            .expect("valid request");
        send(router.clone(), request).await;
    }
    let samples = scrape(&metrics);
    assert_eq!(find(&samples, DURATION_COUNT, &[]).len(), 1);
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/hello/{name}"), "_OTHER", "405")
        ),
        Some(100.0)
    );
}

#[tokio::test]
async fn a_custom_limit_overflows_early() {
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().max_series(3))
        .build()
        .expect("valid options");
    let router = app(&metrics);
    for uri in [
        "/hello/a",
        "/unavailable",
        "/nope",
        "/api/users/1/invoices/2",
        "/hello/b",
    ] {
        send(router.clone(), get_request(uri)).await;
    }
    let samples = scrape(&metrics);
    assert_eq!(
        find(&samples, DURATION_COUNT, &[]).len(),
        4,
        "3 label sets and the overflow"
    );
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &[("otel_metric_overflow", "true")]
        ),
        Some(1.0),
        "the fourth label set overflows"
    );
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/hello/{name}"), "GET", "200")
        ),
        Some(2.0),
        "label sets that exist keep recording"
    );
    assert_eq!(
        find(&samples, "http_server_response_body_size_bytes_count", &[]).len(),
        4,
        "every family holds the same label sets"
    );
}

/// The scheme a request line claims is not the one the server knows: a plaintext
/// `GET https://example.com/...` stays `url_scheme="http"`, and only a layer told its
/// listener is TLS records `https` (before, any client could double the series).
#[tokio::test]
async fn url_scheme_comes_from_the_layer_not_the_request_line() {
    let metrics = Metrics::new();
    let request = || {
        Request::get("https://example.com/hello/x")
            .version(http::Version::HTTP_2)
            .body(Body::empty())
            .expect("valid request")
    };
    send(app(&metrics), request()).await;
    let tls = Router::new()
        .route("/hello/{name}", get(|| async { "hello" }))
        .layer(metrics.http_layer().url_scheme(UrlScheme::Https));
    send(tls.clone(), request()).await;
    send(tls, request()).await;
    let samples = scrape(&metrics);
    let series = |scheme| {
        value(
            &samples,
            DURATION_COUNT,
            &[
                ("http_request_method", "GET"),
                ("http_route", "/hello/{name}"),
                ("http_response_status_code", "200"),
                ("url_scheme", scheme),
                ("network_protocol_version", "2"),
            ],
        )
    };
    assert_eq!(series("http"), Some(1.0), "the plaintext listener's layer");
    assert_eq!(series("https"), Some(2.0), "the TLS listener's layer");
    for scheme in ["http", "https"] {
        assert_eq!(
            value(
                &samples,
                ACTIVE,
                &[("http_request_method", "GET"), ("url_scheme", scheme)]
            ),
            Some(0.0)
        );
    }
}

#[tokio::test]
async fn responses_without_a_body_finish_with_the_head() {
    let metrics = Metrics::new();
    let router = Router::new()
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/cached",
            get(|| async { (StatusCode::NOT_MODIFIED, "ignored body") }),
        )
        .route(
            "/tunnel",
            axum::routing::any(|| async { "tunnel body never polled" }),
        )
        .layer(metrics.http_layer());
    for (method, uri) in [
        ("GET", "/empty"),
        ("GET", "/cached"),
        ("CONNECT", "/tunnel"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("valid request");
        // Dropped without reading the body, as hyper does for these responses.
        drop(router.clone().oneshot(request).await.expect("infallible"));
    }
    let samples = scrape(&metrics);
    assert_eq!(total(&samples, DURATION_COUNT, &[]), 3.0);
    assert!(
        find(&samples, DURATION_COUNT, &[("error_type", "cancelled")]).is_empty(),
        "{samples:#?}"
    );
    assert_eq!(
        total(
            &samples,
            DURATION_COUNT,
            &[("http_response_status_code", "304")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            DURATION_COUNT,
            &[("http_request_method", "CONNECT")]
        ),
        1.0
    );
}

#[tokio::test]
async fn grouped_server_errors_carry_the_class_as_error_type() {
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().group_status_codes(true))
        .build()
        .expect("valid options");
    send(app(&metrics), get_request("/unavailable")).await;
    let samples = scrape(&metrics);
    let mut series = labels(Some("/unavailable"), "GET", "5xx");
    series.push(("error_type", "5xx"));
    assert_eq!(value(&samples, DURATION_COUNT, &series), Some(1.0));
}

#[tokio::test]
async fn label_values_are_escaped() {
    let metrics = Metrics::new();
    let layer = metrics
        .http_layer()
        .route_fn(|_: &Request<Body>| Some("/a\"quoted\"\\back\\slash\nnewline"));
    let router = Router::new().fallback(|| async { "any" }).layer(layer);
    send(router, get_request("/")).await;
    let text = prometheus_text(metrics.registry());
    assert!(
        text.contains(r#"http_route="/a\"quoted\"\\back\\slash\nnewline""#),
        "{text}"
    );
    let samples = parse(&text);
    assert_eq!(
        total(
            &samples,
            DURATION_COUNT,
            &[("http_route", "/a\"quoted\"\\back\\slash\nnewline")]
        ),
        1.0
    );
    promtool_check_metrics(&text);
}

#[test]
fn bad_options_are_errors() {
    use prometheus_client::registry::Registry;
    use tower_prometheus::Error;

    let build = |builder: tower_prometheus::http_metrics::HttpMetricsBuilder| {
        builder.build(&mut Registry::default()).map(|_| ())
    };
    let builder = HttpMetricsLayer::builder;
    assert!(matches!(
        build(builder().const_label("9lives", "x")),
        Err(Error::InvalidLabelName(_))
    ));
    assert!(matches!(
        build(builder().const_label("http_route", "x")),
        Err(Error::InvalidLabelName(_))
    ));
    assert!(matches!(
        build(builder().const_label("le", "x")),
        Err(Error::InvalidLabelName(_))
    ));
    assert!(matches!(
        build(builder().const_label("a", "x").const_label("a", "y")),
        Err(Error::InvalidLabelName(_))
    ));
    for limit in [0, 100_001, usize::MAX] {
        assert!(matches!(
            build(builder().max_series(limit)),
            Err(Error::InvalidCardinalityLimit)
        ));
    }
    assert!(build(builder().max_series(100_000)).is_ok());
    assert!(matches!(
        build(builder().size_buckets([f64::NAN])),
        Err(Error::InvalidBuckets(_))
    ));
    assert!(build(builder().body_sizes(false).size_buckets([f64::NAN])).is_ok());
    assert!(matches!(
        Metrics::builder().prefix("my-app").build(),
        Err(Error::InvalidPrefix(_))
    ));
    for bad in ["static", "/files/{*path}", ""] {
        assert!(
            matches!(
                build(builder().nested_service(bad)),
                Err(Error::InvalidPath(_))
            ),
            "{bad:?}"
        );
    }
    assert!(build(builder().nested_service("/static/")).is_ok());
    for bad in [
        builder().exclude_path("metrics"),
        builder().exclude_prefix(""),
        builder().exclude_prefix("/"),
        builder().exclude_prefix("internal/"),
        builder().exclude_route(""),
    ] {
        assert!(matches!(build(bad), Err(Error::InvalidPath(_))));
    }
}

/// Metrics created after `build` (a pool opened later) are served from the next
/// scrape; bad or repeated names are errors and register nothing.
#[tokio::test]
async fn metrics_registered_after_build_are_served() {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Unit;
    use tower_prometheus::Error;

    let metrics = Metrics::new();
    let router = app(&metrics);
    let before = scrape(&metrics);
    assert!(find(&before, "db_pool_connections", &[]).is_empty());

    let connections: Gauge = Gauge::default();
    metrics
        .clone()
        .register(
            "db_pool_connections",
            "Open connections",
            connections.clone(),
        )
        .expect("a valid name");
    let waited: Counter<f64> = Counter::default();
    metrics
        .register_with_unit("db_pool_wait", "Time waited", Unit::Seconds, waited.clone())
        .expect("a valid name");
    connections.set(3);
    waited.inc_by(0.5);
    let (_, body) = send(router, get_request("/metrics")).await;
    let text = std::str::from_utf8(&body).expect("UTF-8");
    let samples = parse(text);
    assert_eq!(value(&samples, "db_pool_connections", &[]), Some(3.0));
    assert_eq!(
        value(&samples, "db_pool_wait_seconds_total", &[]),
        Some(0.5)
    );
    assert!(text.contains("# HELP db_pool_connections Open connections.\n"));
    promtool_check_metrics(text);

    let gauge = || Gauge::<i64>::default();
    for (name, metric) in [
        ("db_pool_connections", false),
        ("db-pool", false),
        ("jobs_total", true),
    ] {
        let result = if metric {
            metrics.register(name, "help", Counter::<u64>::default())
        } else {
            metrics.register(name, "help", gauge())
        };
        assert!(matches!(result, Err(Error::InvalidMetricName(_))), "{name}");
    }
    let samples = scrape(&metrics);
    assert_eq!(find(&samples, "db_pool_connections", &[]).len(), 1, "once");
}

/// Two metrics registered after build are one family too many when their names as
/// encoded meet: a unit's suffix makes `db_pool_wait` in seconds `db_pool_wait_seconds`,
/// and a counter `jobs` is sampled as `jobs_total`. Different units are different
/// families.
#[tokio::test]
async fn late_metrics_are_refused_when_their_encoded_names_meet() {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Unit;
    use tower_prometheus::Error;

    let metrics = Metrics::new();
    let gauge = || Gauge::<i64>::default();
    metrics
        .register_with_unit("db_pool_wait", "Time waited", Unit::Seconds, gauge())
        .expect("a new family");
    metrics
        .register("jobs", "Jobs run", Counter::<u64>::default())
        .expect("a new family");
    metrics
        .register_with_unit("db_pool_wait", "Bytes waited for", Unit::Bytes, gauge())
        .expect("another unit, another family");
    for (name, unit) in [
        ("db_pool_wait_seconds", None),
        ("db_pool_wait", Some(Unit::Seconds)),
        ("jobs_total", None),
        ("jobs", None),
    ] {
        let result = match unit {
            Some(unit) => metrics.register_with_unit(name, "again", unit, gauge()),
            None => metrics.register(name, "again", gauge()),
        };
        assert!(
            matches!(&result, Err(Error::InvalidMetricName(m)) if m.contains("already registered")),
            "{name} {result:?}"
        );
    }
    let samples = scrape(&metrics);
    assert_eq!(find(&samples, "db_pool_wait_seconds", &[]).len(), 1);
    assert_eq!(find(&samples, "db_pool_wait_bytes", &[]).len(), 1);
    let (_, body) = send(app(&metrics), get_request("/metrics")).await;
    promtool_check_metrics(std::str::from_utf8(&body).expect("UTF-8"));
}

/// A metric registered after build under the name of one of the crate's own families
/// is refused: registered, it made a second family of that name, and promtool (like
/// Prometheus) refuses the whole exposition ("second HELP line for metric name").
#[tokio::test]
async fn a_late_metric_cannot_take_the_name_of_one_of_the_crates_own() {
    use prometheus_client::metrics::gauge::Gauge;
    use tower_prometheus::Error;

    let metrics = Metrics::new();
    let router = app(&metrics);
    let result = metrics.register(
        "http_server_active_requests",
        "Mine",
        Gauge::<i64>::default(),
    );
    let (status, _) = send(router.clone(), get_request("/hello/x")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = send(router, get_request("/metrics")).await;
    let text = std::str::from_utf8(&body).expect("UTF-8");
    assert!(
        matches!(result, Err(Error::InvalidMetricName(_))),
        "{result:?}; the exposition now has {} families of that name",
        text.matches("# TYPE http_server_active_requests ").count()
    );
    promtool_check_metrics(text);
}

/// A service mounted with `nest_service` gets no `MatchedPath` from axum; declared as a
/// nested service, its requests get the mount's route instead of none.
#[tokio::test]
async fn nested_services_get_the_route_of_their_mount() {
    let files = tower::service_fn(|request: Request<Body>| async move {
        Ok::<_, Infallible>(axum::response::Response::new(Body::from(
            request.uri().path().to_owned(),
        )))
    });
    let app = |metrics: &Metrics| {
        Router::new()
            .route("/hello/{name}", get(|| async { "hello" }))
            .nest_service("/static", files)
            .layer(metrics.http_layer())
    };
    let undeclared = Metrics::new();
    let declared = Metrics::builder()
        .http(HttpMetricsLayer::builder().nested_service("/static"))
        .build()
        .expect("valid options");
    for metrics in [&undeclared, &declared] {
        for path in [
            "/static/css/app.css",
            "/static/js/app.js",
            "/static",
            "/nope",
        ] {
            send(app(metrics), get_request(path)).await;
        }
    }
    let samples = scrape(&undeclared);
    assert_eq!(
        total(
            &samples,
            DURATION_COUNT,
            &[("http_route", "/static/{*path}")]
        ),
        0.0
    );
    assert_eq!(
        total(&samples, DURATION_COUNT, &[("http_route", "/static")]),
        1.0,
        "axum matches the mount itself"
    );
    let samples = scrape(&declared);
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/static/{*path}"), "GET", "200")
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/static"), "GET", "200")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, DURATION_COUNT, &labels(None, "GET", "404")),
        Some(1.0),
        "the fallback keeps no route"
    );
}

/// Metrics excluding `/health` and declaring the `/static` mount, and a router with
/// `/hello/{name}`, `/health` and a service nested at `/static`, not yet layered.
fn whole_router_setup() -> (Metrics, Router) {
    let metrics = Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .nested_service("/static")
                .exclude_route("/health"),
        )
        .build()
        .expect("valid options");
    let files = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(axum::response::Response::new(Body::from("file")))
    });
    let router = Router::new()
        .route("/hello/{name}", get(|| async { "hello" }))
        .route("/health", get(|| async { "ok" }))
        .nest_service("/static", files);
    (metrics, router)
}

/// Wrapped around the whole `Router` (not added with `Router::layer`), the layer runs
/// before axum matched a route: axum's routes get no label, the mounts declared with
/// `nested_service` keep theirs (found from the path), and excluding one of axum's
/// routes by template excludes nothing.
#[tokio::test]
async fn around_the_whole_router_only_declared_mounts_keep_their_route() {
    let (metrics, router) = whole_router_setup();
    let app = tower::Layer::layer(&metrics.http_layer(), router);
    for path in [
        "/static/css/app.css",
        "/static/js/app.js",
        "/static",
        "/hello/x",
        "/health",
        "/nope",
    ] {
        let response = app
            .clone()
            .oneshot(get_request(path))
            .await
            .expect("infallible");
        response.into_body().collect().await.expect("the body");
    }
    let samples = scrape(&metrics);
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/static/{*path}"), "GET", "200")
        ),
        Some(2.0),
        "the declared mount keeps its route"
    );
    assert_eq!(
        value(&samples, DURATION_COUNT, &labels(None, "GET", "200")),
        Some(3.0),
        "/static, /hello/x and /health: no route, and /health not excluded"
    );
    assert_eq!(
        value(&samples, DURATION_COUNT, &labels(None, "GET", "404")),
        Some(1.0)
    );
    let routes: Vec<&str> = find(&samples, DURATION_COUNT, &[])
        .iter()
        .filter_map(|sample| sample.labels.get("http_route").map(String::as_str))
        .collect();
    assert_eq!(routes, ["/static/{*path}"]);

    // The same router with `Router::layer`: every route labelled, /health excluded.
    let (metrics, router) = whole_router_setup();
    let router = router.layer(metrics.http_layer());
    for path in ["/static/css/app.css", "/hello/x", "/health"] {
        send(router.clone(), get_request(path)).await;
    }
    let samples = scrape(&metrics);
    for route in ["/static/{*path}", "/hello/{name}"] {
        assert_eq!(
            value(&samples, DURATION_COUNT, &labels(Some(route), "GET", "200")),
            Some(1.0),
            "{route}"
        );
    }
    assert_eq!(
        total(&samples, DURATION_COUNT, &[]),
        2.0,
        "/health excluded"
    );
}

/// A route closure may return a label borrowed from the request: axum's matched path,
/// else the template of a mount (this did not compile when closures had to return
/// `&'static str`).
#[tokio::test]
async fn a_route_closure_may_return_a_label_borrowed_from_the_request() {
    use axum::extract::MatchedPath;

    let metrics = Metrics::new();
    let layer = metrics.http_layer().route_fn(|request: &Request<Body>| {
        match request.extensions().get::<MatchedPath>() {
            Some(matched) => Some(matched.as_str()),
            None => request
                .uri()
                .path()
                .starts_with("/files/")
                .then_some("/files/{*path}"),
        }
    });
    let router = Router::new()
        .route("/hello/{name}", get(|| async { "hello" }))
        .nest_service(
            "/files",
            tower::service_fn(|_: Request<Body>| async {
                Ok::<_, Infallible>(axum::response::Response::new(Body::from("file")))
            }),
        )
        .layer(layer);
    send(router.clone(), get_request("/hello/x")).await;
    send(router.clone(), get_request("/files/a/b.txt")).await;
    let samples = scrape(&metrics);
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/hello/{name}"), "GET", "200")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/files/{*path}"), "GET", "200")
        ),
        Some(1.0)
    );
}

/// Requests are excluded by exact path, by prefix and by route template, and only
/// those: the in-flight gauge never counts them either.
#[tokio::test]
async fn requests_are_excluded_by_path_prefix_and_route() {
    let metrics = Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .exclude_path("/metrics")
                .exclude_prefix("/internal/")
                .exclude_route("/events/{id}")
                .exclude_route("/static/{*path}")
                .nested_service("/static"),
        )
        .build()
        .expect("valid options");
    let files = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(axum::response::Response::new(Body::from("file")))
    });
    let router = Router::new()
        .route("/hello/{name}", get(|| async { "hello" }))
        .route("/events/{id}", get(|| async { "an event stream" }))
        .route("/events", get(|| async { "the list" }))
        .route("/internal/jobs", get(|| async { "jobs" }))
        .route("/internal", get(|| async { "internal" }))
        .route_service("/metrics", metrics.exporter())
        .nest_service("/static", files)
        .layer(metrics.http_layer());
    for path in [
        "/events/1",
        "/events/2",
        "/internal/jobs",
        "/metrics",
        "/static/app.css",
        "/hello/x",
        "/events",
        "/internal",
    ] {
        let (status, _) = send(router.clone(), get_request(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, _) = send(router.clone(), get_request("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let samples = scrape(&metrics);
    assert_eq!(
        value(&samples, DURATION_COUNT, &labels(None, "GET", "404")),
        Some(1.0),
        "an unmatched request has no route label, not an excluded route's"
    );
    let recorded: Vec<&str> = find(&samples, DURATION_COUNT, &[])
        .iter()
        .filter_map(|sample| sample.labels.get("http_route").map(String::as_str))
        .collect();
    assert_eq!(
        total(&samples, DURATION_COUNT, &[]),
        4.0,
        "only /hello/x, /events, /internal and /nope: {recorded:?}"
    );
    for route in ["/hello/{name}", "/events", "/internal"] {
        assert_eq!(
            total(&samples, DURATION_COUNT, &[("http_route", route)]),
            1.0,
            "{route}"
        );
    }
}

/// Excluded routes and nested services do not take places of the cardinality limit:
/// with `max_series(2)`, three excluded routes are all excluded, and two routes of the
/// app still get series of their own rather than the overflow series.
#[tokio::test]
async fn excluded_routes_do_not_count_against_max_series() {
    let metrics = Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .exclude_route("/a")
                .exclude_route("/b")
                .exclude_route("/c")
                .nested_service("/static")
                .max_series(2),
        )
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let router = Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b", get(|| async { "b" }))
        .route("/c", get(|| async { "c" }))
        .route("/d", get(|| async { "d" }))
        .route("/e", get(|| async { "e" }))
        .layer(metrics.http_layer());
    for path in ["/a", "/b", "/c", "/d", "/e"] {
        let (status, _) = send(router.clone(), get_request(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let samples = scrape(&metrics);
    assert_eq!(
        total(&samples, DURATION_COUNT, &[]),
        2.0,
        "/a, /b and /c are excluded: {samples:#?}"
    );
    for route in ["/d", "/e"] {
        assert_eq!(
            value(&samples, DURATION_COUNT, &labels(Some(route), "GET", "200")),
            Some(1.0),
            "{route} has its own series: {samples:#?}"
        );
    }
}

#[allow(dead_code)]
fn infallible(_: Infallible) {}

#[tokio::test]
async fn metrics_of_your_own_are_served_with_the_http_metrics() {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::registry::Registry;

    let mut registry = Registry::default();
    let invoices: Counter = Counter::default();
    registry.register("invoices_created", "Invoices created", invoices.clone());
    let metrics = Metrics::builder()
        .registry(registry)
        .prefix("billing")
        .build()
        .expect("valid options");
    invoices.inc_by(3);
    send(app(&metrics), get_request("/hello/x")).await;
    let (status, body) = send(app(&metrics), get_request("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let samples = parse(std::str::from_utf8(&body).expect("UTF-8"));
    assert_eq!(
        value(&samples, "invoices_created_total", &[]),
        Some(3.0),
        "not prefixed"
    );
    assert_eq!(
        value(
            &samples,
            "billing_http_server_request_duration_seconds_count",
            &labels(Some("/hello/{name}"), "GET", "200")
        ),
        Some(1.0)
    );
}

/// axum's routes are found by the address of their template first (a cache of 64
/// slots): many routes, routers dropped and rebuilt (their templates' addresses reused
/// by other templates), an excluded route, a router under `nest_service` (whose template
/// axum builds anew for every request) and the overflow must all keep their own labels.
#[tokio::test]
async fn axum_routes_keep_their_labels_however_their_templates_are_stored() {
    let metrics = Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .body_sizes(false)
                .exclude_route("/r5/{id}")
                .max_series(150),
        )
        .build()
        .expect("valid options");
    // Rounds of routers, each dropped before the next is built: the allocator hands
    // the next round's templates the addresses of the last one's, in another order.
    for round in 0..3 {
        let mut router = Router::new();
        let routes: Vec<usize> = if round % 2 == 0 {
            (0..100).collect()
        } else {
            (0..100).rev().collect()
        };
        for n in &routes {
            router = router.route(&format!("/r{n}/{{id}}"), get(|| async { "ok" }));
        }
        let router = router
            .nest(
                "/nested",
                Router::new().route("/items/{id}", get(|| async { "ok" })),
            )
            .layer(metrics.http_layer());
        // The layer inside a router under `nest_service`: axum makes its template from
        // the outer and inner ones for every request, a new string each time.
        let service = Router::new().nest_service(
            "/service",
            Router::new()
                .route("/items/{id}", get(|| async { "ok" }))
                .layer(metrics.http_layer()),
        );
        // Each route its own count, so that two routes taken for each other show.
        for n in routes {
            for id in 0..=n {
                send(router.clone(), get_request(&format!("/r{n}/{id}"))).await;
            }
        }
        send(router.clone(), get_request("/nested/items/7")).await;
        for id in 0..100 {
            send(
                service.clone(),
                get_request(&format!("/service/items/{id}")),
            )
            .await;
        }
    }
    let samples = scrape(&metrics);
    for n in (0..100).filter(|n| *n != 5) {
        let route = format!("/r{n}/{{id}}");
        assert_eq!(
            value(
                &samples,
                DURATION_COUNT,
                &labels(Some(&route), "GET", "200")
            ),
            Some(3.0 * (n + 1) as f64),
            "{route}"
        );
    }
    assert!(
        find(&samples, DURATION_COUNT, &[("http_route", "/r5/{id}")]).is_empty(),
        "an excluded route stays excluded"
    );
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &labels(Some("/nested/items/{id}"), "GET", "200")
        ),
        Some(3.0)
    );
    assert_eq!(
        total(&samples, DURATION_COUNT, &[]),
        3.0 * (5050.0 - 6.0 + 1.0 + 100.0),
        "every request recorded once, the excluded route's none"
    );
    let service: Vec<_> = find(&samples, DURATION_COUNT, &[])
        .into_iter()
        .filter(|sample| {
            sample
                .labels
                .iter()
                .any(|(name, value)| name == "http_route" && value.starts_with("/service"))
        })
        .collect();
    assert_eq!(
        service.len(),
        1,
        "one route for the nested service: {service:?}"
    );
    assert_eq!(service[0].value, 300.0);

    // Past the limit, routes overflow, and stay overflowed when found by address.
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().body_sizes(false).max_series(2))
        .build()
        .expect("valid options");
    let router = ["/a", "/b", "/c"]
        .into_iter()
        .fold(Router::new(), |router, route| {
            router.route(route, get(|| async { "ok" }))
        })
        .layer(metrics.http_layer());
    for _ in 0..2 {
        for uri in ["/a", "/b", "/c"] {
            send(router.clone(), get_request(uri)).await;
        }
    }
    let samples = scrape(&metrics);
    for route in ["/a", "/b"] {
        assert_eq!(
            value(&samples, DURATION_COUNT, &labels(Some(route), "GET", "200")),
            Some(2.0),
            "{route}"
        );
    }
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &[("otel_metric_overflow", "true")]
        ),
        Some(2.0)
    );
}
