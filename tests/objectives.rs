//! Service level objectives declared in the builder, scraped through a real axum `Router`.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::{find, parse, promtool_check_metrics, value};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_prometheus::http_metrics::{HttpMetricsLayer, Naming, Objective};
use tower_prometheus::{Error, Metrics};

const OBJECTIVE: &str = "http_server_objective_ratio";

fn app(metrics: &Metrics) -> Router {
    Router::new()
        .route("/api/invoices", get(|| async { "[]" }))
        .route("/api/invoices/{id}", get(|| async { "{}" }))
        .route(
            "/api/uploads",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route_service("/metrics", metrics.exporter())
        .layer(metrics.http_layer())
}

async fn get_text(router: &Router, uri: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("a request"))
        .await
        .expect("the router is infallible");
    let status = response.status();
    let body = response.into_body().collect().await.expect("a body");
    let text = String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8");
    (status, text)
}

fn metrics(http: tower_prometheus::HttpMetricsBuilder) -> Metrics {
    Metrics::builder()
        .process(false)
        .runtime(false)
        .http(http)
        .build()
        .expect("valid options")
}

#[tokio::test]
async fn each_declared_objective_is_one_series_joinable_on_its_bucket() {
    let metrics = metrics(
        HttpMetricsLayer::builder()
            .const_label("deployment", "blue")
            .objective("/api/invoices", Objective::availability(0.999))
            .objective(
                "/api/invoices",
                Objective::latency(0.99, Duration::from_millis(250)),
            )
            .objective(
                "/api/invoices/{id}",
                Objective::latency(0.95, Duration::from_secs(1)),
            ),
    );
    let router = app(&metrics);
    for uri in ["/api/invoices", "/api/invoices/7", "/api/uploads"] {
        get_text(&router, uri).await;
    }
    let (status, text) = get_text(&router, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    promtool_check_metrics(&text);
    let samples = parse(&text);

    let objectives = find(&samples, OBJECTIVE, &[]);
    assert_eq!(objectives.len(), 3, "{objectives:#?}");
    let deployment = ("deployment", "blue");
    assert_eq!(
        value(
            &samples,
            OBJECTIVE,
            &[
                ("http_route", "/api/invoices"),
                ("objective", "availability"),
                deployment
            ]
        ),
        Some(0.999)
    );
    assert_eq!(
        value(
            &samples,
            OBJECTIVE,
            &[
                ("http_route", "/api/invoices"),
                ("objective", "latency"),
                ("threshold", "0.25"),
                deployment
            ]
        ),
        Some(0.99)
    );
    assert_eq!(
        value(
            &samples,
            OBJECTIVE,
            &[
                ("http_route", "/api/invoices/{id}"),
                ("objective", "latency"),
                ("threshold", "1.0"),
                deployment
            ]
        ),
        Some(0.95)
    );
    // A route without an objective has none, though it has series (and 5xx).
    assert!(find(&samples, OBJECTIVE, &[("http_route", "/api/uploads")]).is_empty());

    // Each latency objective's threshold is its route's bucket bound, spelled as
    // OpenMetrics and protobuf scrapes (and Prometheus 3, whatever the format) spell
    // `le`; text 0.0.4 spells an integer bound without ".0". The rules match both.
    for objective in find(&samples, OBJECTIVE, &[("objective", "latency")]) {
        let route = &objective.labels["http_route"];
        let threshold = &objective.labels["threshold"];
        let le = threshold.strip_suffix(".0").unwrap_or(threshold);
        let buckets = find(
            &samples,
            "http_server_request_duration_seconds_bucket",
            &[("http_route", route), ("le", le)],
        );
        assert_eq!(buckets.len(), 1, "no bucket le={le} for {route}: {text}");
    }
    let openmetrics = parse(&get_openmetrics(&router).await);
    for objective in find(&openmetrics, OBJECTIVE, &[("objective", "latency")]) {
        let (route, le) = (
            &objective.labels["http_route"],
            &objective.labels["threshold"],
        );
        let buckets = find(
            &openmetrics,
            "http_server_request_duration_seconds_bucket",
            &[("http_route", route), ("le", le)],
        );
        assert_eq!(
            buckets.len(),
            1,
            "OpenMetrics: no bucket le={le} for {route}"
        );
    }
}

async fn get_openmetrics(router: &Router) -> String {
    let response = router
        .clone()
        .oneshot(
            Request::get("/metrics")
                .header("accept", "application/openmetrics-text;version=1.0.0")
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .expect("the router is infallible");
    let body = response.into_body().collect().await.expect("a body");
    String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8")
}

#[tokio::test]
async fn the_promclient_preset_names_them_as_its_other_series() {
    let metrics = metrics(
        HttpMetricsLayer::builder()
            .naming(Naming::PromClient)
            .objective("/api/invoices", Objective::availability(0.99)),
    );
    let router = app(&metrics);
    get_text(&router, "/api/invoices").await;
    let (_, text) = get_text(&router, "/metrics").await;
    let samples = parse(&text);
    assert!(find(&samples, OBJECTIVE, &[]).is_empty());
    assert_eq!(
        value(
            &samples,
            "http_request_objective_ratio",
            &[("route", "/api/invoices"), ("objective", "availability")]
        ),
        Some(0.99)
    );
}

#[tokio::test]
async fn no_objective_no_family() {
    let metrics = metrics(HttpMetricsLayer::builder());
    let router = app(&metrics);
    get_text(&router, "/api/invoices").await;
    let (_, text) = get_text(&router, "/metrics").await;
    assert!(text.contains("http_server_request_duration_seconds_count"));
    assert!(!text.contains("objective"), "{text}");
}

#[test]
fn objectives_the_layer_cannot_measure_are_errors_of_build() {
    let build = |http: tower_prometheus::HttpMetricsBuilder| {
        Metrics::builder()
            .process(false)
            .runtime(false)
            .http(http)
            .build()
            .expect_err("an invalid objective")
    };
    let error = build(
        HttpMetricsLayer::builder()
            .objective("/a", Objective::latency(0.99, Duration::from_millis(300))),
    );
    assert!(matches!(error, Error::InvalidObjective(_)), "{error:?}");
    assert!(
        error.to_string().contains(
            "latency objective of route \"/a\": the threshold 300ms is not a bound of the duration buckets"
        ),
        "{error}"
    );
    // The same threshold is fine once it is a bound.
    Metrics::builder()
        .process(false)
        .runtime(false)
        .http(
            HttpMetricsLayer::builder()
                .duration_buckets([0.1, 0.3, 1.0])
                .objective("/a", Objective::latency(0.99, Duration::from_millis(300))),
        )
        .build()
        .expect("300 ms is a bound");

    let error = build(
        HttpMetricsLayer::builder()
            .exclude_route("/health")
            .objective("/health", Objective::availability(0.9)),
    );
    assert!(error.to_string().contains("excluded"), "{error}");
    let error = build(HttpMetricsLayer::builder().objective("/a", Objective::availability(1.0)));
    assert!(
        error.to_string().contains("strictly between 0 and 1"),
        "{error}"
    );
}
