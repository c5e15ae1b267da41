//! `Naming::AxumPrometheus` against axum-prometheus itself: the same requests through a
//! real axum `Router` behind each layer, and the families, types, label names and values
//! of the two scrapes compared, with the differences the preset documents (the body-size
//! summary is a histogram, and a request that matched no route has no `endpoint`).
//!
//! axum-prometheus keeps its prefix in a process-wide cell that can be set once, so every
//! use of its layer is in one test, [`the_preset_publishes_what_axum_prometheus_publishes`].

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::{any, get};
use common::{Sample, parse, promtool_check_metrics, python_openmetrics_check, value};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tower::ServiceExt;
use tower_prometheus::{Error, HttpMetricsLayer, Metrics, Naming};

/// The requests both layers see: two on a route, a server error, a method outside the
/// standard nine on a route that takes any, a POST with a body, and one that matched no
/// route.
const REQUESTS: [(&str, &str); 6] = [
    ("GET", "/items/1"),
    ("GET", "/items/2"),
    ("GET", "/fail"),
    ("PROPFIND", "/any"),
    ("POST", "/items/3"),
    ("GET", "/missing"),
];

fn app() -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(|| async { "an item" }).post(|body: String| async move { body }),
        )
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/any", any(|| async { "any method" }))
}

async fn send(app: &Router) {
    for (method, uri) in REQUESTS {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let body = if method == Method::POST {
            Body::from("a new item")
        } else {
            Body::empty()
        };
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .expect("valid");
        let response = app.clone().oneshot(request).await.expect("infallible");
        response.into_body().collect().await.expect("a body");
    }
}

/// The `# TYPE` lines of a text exposition: family name to type.
fn families(text: &str) -> BTreeMap<String, String> {
    let mut families = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a type");
            let previous = families.insert(name.to_owned(), kind.to_owned());
            assert!(previous.is_none(), "family {name} twice in:\n{text}");
        }
    }
    families
}

/// The families whose names start with `prefix`: type, and the label names of their
/// samples (`le` and `quantile` left out).
fn shapes(text: &str, prefix: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let samples = parse(text);
    families(text)
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, kind)| {
            let labels = samples
                .iter()
                .filter(|s| s.name.starts_with(name.as_str()))
                .flat_map(|s| s.labels.keys().cloned())
                .filter(|label| label != "le" && label != "quantile")
                .collect();
            (name, (kind, labels))
        })
        .collect()
}

/// The label sets and values of the samples named `name`, a raw `endpoint` (a path
/// that is no route template) removed: what the preset records such a request as.
fn series(samples: &[Sample], name: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| {
            let mut labels = s.labels.clone();
            if labels.get("endpoint").map(String::as_str) == Some("/missing") {
                labels.remove("endpoint");
            }
            (labels, s.value)
        })
        .collect()
}

/// axum-prometheus' scrape of [`REQUESTS`], set up as `PrometheusMetricLayer::pair()`
/// sets it up (its duration buckets), with the response body size on, and `prefix`.
fn theirs(prefix: Option<&str>) -> String {
    use axum_prometheus::metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let duration = match prefix {
        Some(prefix) => format!("{prefix}_http_requests_duration_seconds"),
        None => "axum_http_requests_duration_seconds".to_owned(),
    };
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(duration),
            axum_prometheus::utils::SECONDS_DURATION_BUCKETS,
        )
        .expect("buckets")
        .build_recorder();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut builder = axum_prometheus::PrometheusMetricLayerBuilder::new()
                .enable_response_body_size(true);
            if let Some(prefix) = prefix {
                builder = builder.with_prefix(prefix.to_owned());
            }
            send(&app().layer(builder.build())).await;
        });
    });
    recorder.handle().render()
}

/// Ours: the preset's scrape of [`REQUESTS`], in the text format (checked by promtool)
/// and OpenMetrics (checked by the reference parser).
async fn ours(http: tower_prometheus::HttpMetricsBuilder) -> (Metrics, String) {
    let metrics = Metrics::builder()
        .http(http.naming(Naming::AxumPrometheus))
        .build()
        .expect("valid options");
    send(&app().layer(metrics.http_layer())).await;
    let text = scrape(&metrics);
    (metrics, text)
}

/// The text exposition, checked by promtool, and the OpenMetrics one checked by the
/// reference parser.
fn scrape(metrics: &Metrics) -> String {
    let text = common::prometheus_text(metrics.registry());
    promtool_check_metrics(&text);
    let openmetrics = common::openmetrics_text(metrics.registry());
    families(&openmetrics);
    python_openmetrics_check(&openmetrics);
    text
}

/// What the two scrapes must agree on, for names starting with `prefix`.
fn compare(theirs: &str, ours: &str, prefix: &str) {
    let mut expected = shapes(theirs, prefix);
    // Theirs: a summary (quantiles computed in the process); ours a histogram, with the
    // same labels.
    let body_size = expected
        .get_mut(&format!("{prefix}http_response_body_size"))
        .expect("their body-size metric");
    assert_eq!(body_size.0, "summary", "{theirs}");
    body_size.0 = "histogram".into();
    // Ours only: the request body size, labelled as the response's.
    let mut ours_shapes = shapes(ours, prefix);
    let request_size = ours_shapes
        .remove(&format!("{prefix}http_request_body_size"))
        .expect("our request-size histogram");
    assert_eq!(
        request_size,
        expected[&format!("{prefix}http_response_body_size")]
    );
    assert_eq!(expected.len(), 4, "{theirs}");
    assert_eq!(ours_shapes, expected, "ours:\n{ours}\ntheirs:\n{theirs}");

    // The same series with the same counts, the unmatched request without `endpoint`.
    let (their_samples, our_samples) = (parse(theirs), parse(ours));
    for sample in [
        "http_requests_total",
        "http_requests_duration_seconds_count",
        "http_requests_pending",
    ] {
        let name = format!("{prefix}{sample}");
        let their_series = series(&their_samples, &name);
        assert!(!their_series.is_empty(), "{name} in:\n{theirs}");
        assert_eq!(
            series(&our_samples, &name),
            their_series,
            "{name}: ours\n{ours}\ntheirs:\n{theirs}"
        );
    }
    // axum-prometheus records no size for an empty body (it observes data frames): its
    // body-size series are ours, with the same counts.
    let name = format!("{prefix}http_response_body_size_count");
    let their_sizes = series(&their_samples, &name);
    let our_sizes = series(&our_samples, &name);
    assert!(!their_sizes.is_empty(), "{name} in:\n{theirs}");
    for (labels, count) in &their_sizes {
        assert_eq!(
            our_sizes.get(labels),
            Some(count),
            "{name} {labels:?}:\n{ours}"
        );
    }
    // The labels themselves, for the record: the method outside the nine is empty, the
    // status a code, the endpoint a template; the unmatched request's raw path is theirs
    // only.
    let labels = [("method", ""), ("status", "200"), ("endpoint", "/any")];
    let total = format!("{prefix}http_requests_total");
    assert_eq!(value(&their_samples, &total, &labels), Some(1.0));
    assert_eq!(value(&our_samples, &total, &labels), Some(1.0));
    let missing = [
        ("method", "GET"),
        ("status", "404"),
        ("endpoint", "/missing"),
    ];
    assert_eq!(value(&their_samples, &total, &missing), Some(1.0));
    assert_eq!(value(&our_samples, &total, &missing), None);
    assert_eq!(
        value(
            &our_samples,
            &total,
            &[("method", "GET"), ("status", "404")]
        ),
        Some(1.0)
    );
}

/// Sync: axum-prometheus' requests run on a runtime of their own, inside
/// `metrics::with_local_recorder`.
#[test]
fn the_preset_publishes_what_axum_prometheus_publishes() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let theirs_default = theirs(None);
    let (_, ours_default) = runtime.block_on(ours(HttpMetricsLayer::builder()));
    compare(&theirs_default, &ours_default, "axum_");

    // axum-prometheus' `with_prefix` (once per process: after the default names).
    let theirs_prefixed = theirs(Some("shop"));
    let (_, ours_prefixed) = runtime.block_on(ours(HttpMetricsLayer::builder().prefix("shop")));
    compare(&theirs_prefixed, &ours_prefixed, "shop_");
    assert!(!ours_prefixed.contains("axum_"), "{ours_prefixed}");
}

/// The pending gauge is per endpoint, as axum-prometheus' is: a request in flight on one
/// route shows on that route only, and every gauge is back to 0 once it ended.
#[tokio::test]
async fn pending_requests_are_counted_per_endpoint() {
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().naming(Naming::AxumPrometheus))
        .build()
        .expect("valid options");
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (entered_in, release_in) = (entered.clone(), release.clone());
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow/{id}",
            get(move || {
                let (entered, release) = (entered_in.clone(), release_in.clone());
                async move {
                    entered.notify_one();
                    release.notified().await;
                    "slow"
                }
            }),
        )
        .layer(metrics.http_layer());
    let get = |uri: &'static str| {
        let app = app.clone();
        async move {
            let request = Request::get(uri).body(Body::empty()).expect("valid");
            let response = app.oneshot(request).await.expect("infallible");
            response.into_body().collect().await.expect("a body");
        }
    };
    get("/fast").await;
    get("/nowhere").await;
    let slow = tokio::spawn(get("/slow/1"));
    entered.notified().await;

    let pending = |text: &str| series(&parse(text), "axum_http_requests_pending");
    let gauge = |endpoint: Option<&str>, value: f64| {
        let mut labels = BTreeMap::from([("method".to_owned(), "GET".to_owned())]);
        if let Some(endpoint) = endpoint {
            labels.insert("endpoint".to_owned(), endpoint.to_owned());
        }
        (labels, value)
    };
    let during = scrape(&metrics);
    assert_eq!(
        pending(&during),
        BTreeMap::from([
            gauge(None, 0.0),
            gauge(Some("/fast"), 0.0),
            gauge(Some("/slow/{id}"), 1.0),
        ]),
        "{during}"
    );
    release.notify_one();
    slow.await.expect("the request ends");
    let after = scrape(&metrics);
    assert_eq!(
        pending(&after),
        BTreeMap::from([
            gauge(None, 0.0),
            gauge(Some("/fast"), 0.0),
            gauge(Some("/slow/{id}"), 0.0),
        ]),
        "{after}"
    );
    assert_eq!(
        value(
            &parse(&after),
            "axum_http_requests_total",
            &[
                ("method", "GET"),
                ("status", "200"),
                ("endpoint", "/slow/{id}")
            ]
        ),
        Some(1.0)
    );
}

/// Routes beyond the cardinality limit share one series of each family, and one pending
/// gauge per method, labelled `otel_metric_overflow="true"`.
#[tokio::test]
async fn routes_beyond_the_limit_overflow_in_every_family() {
    let metrics = Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .naming(Naming::AxumPrometheus)
                .max_series(1),
        )
        .build()
        .expect("valid options");
    let app = Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b", get(|| async { "b" }))
        .route("/c", get(|| async { "c" }))
        .layer(metrics.http_layer());
    for uri in ["/a", "/b", "/c", "/a"] {
        let request = Request::get(uri).body(Body::empty()).expect("valid");
        let response = app.clone().oneshot(request).await.expect("infallible");
        response.into_body().collect().await.expect("a body");
    }
    let text = scrape(&metrics);
    let samples = parse(&text);
    let overflow = [("otel_metric_overflow", "true")];
    let route_a = [("method", "GET"), ("status", "200"), ("endpoint", "/a")];
    assert_eq!(
        value(&samples, "axum_http_requests_total", &route_a),
        Some(2.0)
    );
    assert_eq!(
        value(&samples, "axum_http_requests_total", &overflow),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "axum_http_response_body_size_count", &overflow),
        Some(2.0)
    );
    assert_eq!(
        value(
            &samples,
            "axum_http_requests_pending",
            &[("method", "GET"), ("otel_metric_overflow", "true")]
        ),
        Some(0.0)
    );
}

/// The response body size of a route is one histogram whatever the status, as
/// axum-prometheus' is: the series of each status added up.
#[tokio::test]
async fn body_sizes_are_per_method_and_endpoint() {
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().naming(Naming::AxumPrometheus))
        .build()
        .expect("valid options");
    let app = Router::new()
        .route(
            "/echo/{status}",
            get(
                |axum::extract::Path(status): axum::extract::Path<u16>| async move {
                    (
                        StatusCode::from_u16(status).expect("a status"),
                        "0123456789",
                    )
                },
            ),
        )
        .layer(metrics.http_layer());
    for uri in ["/echo/200", "/echo/404", "/echo/503", "/echo/200"] {
        let request = Request::get(uri).body(Body::empty()).expect("valid");
        let response = app.clone().oneshot(request).await.expect("infallible");
        response.into_body().collect().await.expect("a body");
    }
    let text = scrape(&metrics);
    let samples = parse(&text);
    let labels = [("method", "GET"), ("endpoint", "/echo/{status}")];
    assert_eq!(
        value(&samples, "axum_http_response_body_size_count", &labels),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "axum_http_response_body_size_sum", &labels),
        Some(40.0)
    );
    assert_eq!(
        value(
            &samples,
            "axum_http_response_body_size_bucket",
            &[
                ("method", "GET"),
                ("endpoint", "/echo/{status}"),
                ("le", "64")
            ]
        ),
        Some(4.0)
    );
    for status in ["200", "404", "503"] {
        let labels = [
            ("method", "GET"),
            ("status", status),
            ("endpoint", "/echo/{status}"),
        ];
        let expected = if status == "200" { 2.0 } else { 1.0 };
        assert_eq!(
            value(&samples, "axum_http_requests_total", &labels),
            Some(expected)
        );
    }
}

/// The preset's names are the crate's own: registering one is refused; the crate's
/// prefix goes before the preset's; an invalid prefix is refused.
#[test]
fn the_preset_names_are_reserved_and_prefixed() {
    let metrics = Metrics::builder()
        .prefix("outer")
        .http(
            HttpMetricsLayer::builder()
                .naming(Naming::AxumPrometheus)
                .prefix("inner"),
        )
        .build()
        .expect("valid options");
    for family in [
        "outer_inner_http_requests",
        "outer_inner_http_requests_pending",
        "outer_inner_http_requests_duration_seconds",
        "outer_inner_http_response_body_size",
        "outer_inner_http_request_body_size",
    ] {
        let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        assert!(
            metrics.register(family, "mine", gauge).is_err(),
            "{family} is one of the crate's"
        );
    }
    let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    metrics
        .register(
            "axum_http_requests_pending",
            "not ours with this prefix",
            gauge,
        )
        .expect("free");

    let error = Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .naming(Naming::AxumPrometheus)
                .prefix("my-app"),
        )
        .build()
        .expect_err("invalid prefix");
    assert!(
        matches!(error, Error::InvalidPrefix(ref p) if p == "my-app"),
        "{error}"
    );
}
