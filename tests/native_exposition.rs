//! Native histograms and exemplars through the layer and the exporter, decoded as
//! Prometheus decodes them: the protobuf messages, and the OpenMetrics text.
#![cfg(feature = "protobuf")]

mod common;

use axum::Router;
use axum::routing::get;
use http::{Request, header};
use http_body_util::BodyExt;
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::{
    Histogram, MetricFamily,
};
use prost::Message as _;
use tower::ServiceExt;
use tower_prometheus::{HttpMetricsLayer, Metrics, PROTOBUF_CONTENT_TYPE};

const DURATION: &str = "http_server_request_duration_seconds";

/// What Prometheus 2.42 sends with `--enable-feature=native-histograms`.
const PROMETHEUS_NATIVE_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn metrics(native: bool) -> Metrics {
    Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .exclude_path("/metrics")
                .native_histograms(native)
                .exemplars(native),
        )
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options")
}

fn app(metrics: &Metrics) -> Router {
    Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                "slow"
            }),
        )
        .route_service("/metrics", metrics.exporter())
        .layer(metrics.http_layer())
}

async fn get_with(app: &Router, path: &str, headers: &[(&str, &str)]) -> (String, Vec<u8>) {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).expect("valid"))
        .await
        .expect("infallible");
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (content_type, body.to_vec())
}

fn decode(mut body: &[u8]) -> Vec<MetricFamily> {
    let mut families = Vec::new();
    while !body.is_empty() {
        families.push(MetricFamily::decode_length_delimited(&mut body).expect("delimited"));
    }
    families
}

/// The duration histograms of the route `route`.
fn durations<'a>(families: &'a [MetricFamily], route: &str) -> Vec<&'a Histogram> {
    families
        .iter()
        .filter(|family| family.name == DURATION)
        .flat_map(|family| &family.metric)
        .filter(|metric| {
            metric
                .label
                .iter()
                .any(|label| label.name == "http_route" && label.value == route)
        })
        .filter_map(|metric| metric.histogram.as_ref())
        .collect()
}

/// The counts of the native buckets, by bucket index, from the spans and deltas.
fn native_counts(histogram: &Histogram) -> Vec<(i32, i64)> {
    let mut counts = Vec::new();
    let (mut index, mut count, mut deltas) = (0i32, 0i64, histogram.positive_delta.iter());
    for span in &histogram.positive_span {
        index += span.offset;
        for _ in 0..span.length {
            count += deltas.next().expect("a delta per bucket");
            counts.push((index, count));
            index += 1;
        }
    }
    assert!(deltas.next().is_none(), "no delta left over");
    counts
}

#[tokio::test]
async fn native_buckets_are_served_in_protobuf_only() {
    let metrics = metrics(true);
    let app = app(&metrics);
    for _ in 0..5 {
        get_with(&app, "/fast", &[]).await;
    }
    for _ in 0..3 {
        get_with(&app, "/slow", &[]).await;
    }
    let (content_type, body) =
        get_with(&app, "/metrics", &[("accept", PROMETHEUS_NATIVE_ACCEPT)]).await;
    assert_eq!(content_type, PROTOBUF_CONTENT_TYPE);
    let families = decode(&body);

    let slow = durations(&families, "/slow");
    assert_eq!(slow.len(), 1);
    let slow = slow[0];
    assert_eq!(slow.schema, 3);
    assert_eq!(slow.zero_threshold, 2f64.powi(-17));
    assert_eq!(slow.sample_count, 3);
    let counts = native_counts(slow);
    let native_total: i64 = counts.iter().map(|(_, count)| count).sum();
    assert_eq!(native_total as u64 + slow.zero_count, 3);
    // 20 ms and a little more: bucket i holds (2^((i-1)/8), 2^(i/8)].
    for (index, _) in counts.iter().filter(|(_, count)| *count > 0) {
        let upper = 2f64.powf(f64::from(*index) / 8.0);
        assert!((0.02..0.2).contains(&upper), "bucket {index}: {upper} s");
    }
    // The classic buckets are there too, for scrapers that read only those.
    assert_eq!(slow.bucket.last().map(|b| b.cumulative_count), Some(3));
    let fast = durations(&families, "/fast");
    assert_eq!(fast[0].sample_count, 5);

    // The text formats are as without native buckets.
    let (_, text) = get_with(&app, "/metrics", &[]).await;
    let text = String::from_utf8(text).expect("UTF-8");
    assert!(text.contains("http_server_request_duration_seconds_bucket{"));
    let (_, openmetrics) = get_with(
        &app,
        "/metrics",
        &[("accept", "application/openmetrics-text")],
    )
    .await;
    assert!(
        String::from_utf8(openmetrics)
            .expect("UTF-8")
            .ends_with("# EOF\n")
    );
}

#[tokio::test]
async fn without_native_buckets_protobuf_has_classic_ones_only() {
    let metrics = metrics(false);
    let app = app(&metrics);
    get_with(&app, "/fast", &[]).await;
    let (_, body) = get_with(&app, "/metrics", &[("accept", PROMETHEUS_NATIVE_ACCEPT)]).await;
    let families = decode(&body);
    let fast = durations(&families, "/fast");
    assert_eq!(fast[0].sample_count, 1);
    assert!(fast[0].positive_span.is_empty());
    assert_eq!(fast[0].zero_threshold, 0.0);
    assert_eq!(fast[0].bucket.len(), 15);
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn exemplars_are_served_in_openmetrics_and_protobuf_only() {
    let metrics = metrics(true);
    let app = app(&metrics);
    let traceparent = format!("00-{TRACE}-{SPAN}-01");
    get_with(&app, "/slow", &[("traceparent", &traceparent)]).await;
    // Not sampled, malformed, absent: no exemplar, and the requests count as usual.
    get_with(
        &app,
        "/fast",
        &[("traceparent", &format!("00-{TRACE}-{SPAN}-00"))],
    )
    .await;
    get_with(
        &app,
        "/fast",
        &[("traceparent", &format!("00-zz-{SPAN}-01"))],
    )
    .await;
    get_with(&app, "/fast", &[("traceparent", "")]).await;
    get_with(&app, "/fast", &[]).await;

    let (content_type, openmetrics) = get_with(
        &app,
        "/metrics",
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await;
    assert!(content_type.starts_with("application/openmetrics-text"));
    let openmetrics = String::from_utf8(openmetrics).expect("UTF-8");
    common::python_openmetrics_check(&openmetrics);
    let with_exemplars: Vec<&str> = openmetrics
        .lines()
        .filter(|line| line.contains(" # {"))
        .collect();
    assert_eq!(with_exemplars.len(), 1, "{openmetrics}");
    let line = with_exemplars[0];
    assert!(
        line.starts_with("http_server_request_duration_seconds_bucket{"),
        "{line}"
    );
    assert!(line.contains("http_route=\"/slow\""), "{line}");
    assert!(
        line.contains(&format!("# {{trace_id=\"{TRACE}\",span_id=\"{SPAN}\"}} ")),
        "{line}"
    );
    // The value is the request's duration (at least the 20 ms it slept), in its bucket:
    // the first one whose bound holds it.
    let fields: Vec<&str> = line.rsplit(' ').take(2).collect();
    let (timestamp, value): (f64, f64) = (
        fields[0].parse().expect("a timestamp"),
        fields[1].parse().expect("a value"),
    );
    assert!(value >= 0.02, "{line}");
    let le: f64 = line
        .split("le=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("le")
        .parse()
        .expect("a bound");
    assert!(value <= le, "{line}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(timestamp <= now && timestamp > now - 60.0, "{line}");

    let (_, text) = get_with(&app, "/metrics", &[]).await;
    let text = String::from_utf8(text).expect("UTF-8");
    assert!(!text.contains(TRACE), "text 0.0.4 has no exemplars");
    common::promtool_check_metrics(&text);

    let (_, body) = get_with(&app, "/metrics", &[("accept", PROMETHEUS_NATIVE_ACCEPT)]).await;
    let families = decode(&body);
    let slow = durations(&families, "/slow")[0];
    let exemplars: Vec<_> = slow
        .bucket
        .iter()
        .filter_map(|b| b.exemplar.as_ref().map(|e| (b.upper_bound, e)))
        .collect();
    assert_eq!(exemplars.len(), 1);
    let (bound, exemplar) = exemplars[0];
    assert!(exemplar.value >= 0.02 && exemplar.value <= bound);
    let labels: Vec<(&str, &str)> = exemplar
        .label
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(labels, [("trace_id", TRACE), ("span_id", SPAN)]);
    let timestamp = exemplar
        .timestamp
        .as_ref()
        .expect("a timestamp: Prometheus drops native exemplars without one");
    assert!((timestamp.seconds as f64 - now).abs() < 60.0);
    let fast = durations(&families, "/fast")[0];
    assert_eq!(fast.sample_count, 4);
    assert!(fast.bucket.iter().all(|b| b.exemplar.is_none()));
}
