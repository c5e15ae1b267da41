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
    // 20 ms and more (a loaded machine may wake the handler late, so the bound above
    // is loose): bucket i holds (2^((i-1)/8), 2^(i/8)].
    for (index, _) in counts.iter().filter(|(_, count)| *count > 0) {
        let upper = 2f64.powf(f64::from(*index) / 8.0);
        assert!((0.02..2.0).contains(&upper), "bucket {index}: {upper} s");
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

/// Exemplars are spliced into the exposition after `prometheus-client` encoded it
/// (`src/exemplar/splice.rs`): on every kind of bucket, a finite one, `+Inf`, and the
/// overflow series' (past the cardinality limit), the OpenMetrics text stays what the
/// reference parser accepts, each exemplar beside the bucket its value falls in, and the
/// protobuf messages carry the same ones.
#[tokio::test]
async fn exemplars_on_every_kind_of_bucket_pass_the_reference_parser() {
    let metrics = Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .exclude_path("/metrics")
                .duration_buckets([0.5, 0.6])
                .max_series(1)
                .native_histograms(true)
                .exemplars(true),
        )
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            get(|| async {
                // Past the last bound: the `+Inf` bucket, whatever the machine.
                tokio::time::sleep(std::time::Duration::from_millis(700)).await;
                "slow"
            }),
        )
        .route_service("/metrics", metrics.exporter())
        .layer(metrics.http_layer());
    let trace = |n: u8| format!("{n:02x}{}", &TRACE[2..]);
    // `/fast` takes the one series the limit allows; `/slow` goes to the overflow series.
    get_with(
        &app,
        "/fast",
        &[("traceparent", &format!("00-{}-{SPAN}-01", trace(1)))],
    )
    .await;
    get_with(
        &app,
        "/slow",
        &[("traceparent", &format!("00-{}-{SPAN}-01", trace(2)))],
    )
    .await;

    let (_, openmetrics) = get_with(
        &app,
        "/metrics",
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await;
    let openmetrics = String::from_utf8(openmetrics).expect("UTF-8");
    common::python_openmetrics_check(&openmetrics);
    let lines: Vec<&str> = openmetrics
        .lines()
        .filter(|line| line.contains(" # {"))
        .collect();
    assert_eq!(lines.len(), 2, "{openmetrics}");
    for line in &lines {
        let le = line
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("le");
        let value: f64 = line
            .rsplit(' ')
            .nth(1)
            .expect("a value")
            .parse()
            .expect("a number");
        // In the first bucket whose bound holds the value.
        let (bound, below): (f64, f64) = match le {
            "+Inf" => (f64::INFINITY, 0.6),
            "0.6" => (0.6, 0.5),
            "0.5" => (0.5, 0.0),
            other => panic!("a bucket of its own: {other}"),
        };
        assert!(value <= bound && value > below, "{line}");
    }
    let overflow = lines
        .iter()
        .find(|line| line.contains("otel_metric_overflow=\"true\""))
        .unwrap_or_else(|| panic!("an exemplar on the overflow series: {openmetrics}"));
    assert!(overflow.contains("le=\"+Inf\""), "{overflow}");
    assert!(overflow.contains(&trace(2)), "{overflow}");
    let fast = lines
        .iter()
        .find(|line| line.contains("http_route=\"/fast\""))
        .unwrap_or_else(|| panic!("an exemplar on /fast's series: {openmetrics}"));
    assert!(fast.contains(&trace(1)), "{fast}");

    // The same exemplars in protobuf: on the classic bucket of their value.
    let (_, body) = get_with(&app, "/metrics", &[("accept", PROMETHEUS_NATIVE_ACCEPT)]).await;
    let families = decode(&body);
    let family = families
        .iter()
        .find(|family| family.name == DURATION)
        .expect("the duration family");
    let mut found = Vec::new();
    for metric in &family.metric {
        let histogram = metric.histogram.as_ref().expect("a histogram");
        for bucket in &histogram.bucket {
            if let Some(exemplar) = &bucket.exemplar {
                assert!(exemplar.value <= bucket.upper_bound, "{bucket:?}");
                found.push((bucket.upper_bound, exemplar.label[0].value.clone()));
            }
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(found.len(), 2, "{family:#?}");
    assert_eq!(found[0].1, trace(1));
    assert_eq!(
        (found[1].0, found[1].1.as_str()),
        (f64::INFINITY, trace(2).as_str())
    );
}
