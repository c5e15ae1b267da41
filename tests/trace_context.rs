//! A trace context source of the user's own (a closure), sent through the layer on a
//! real axum `Router`: the exemplars it gives are those of the OpenMetrics scrape.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Extensions, HeaderMap, Request, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower::util::MapRequestLayer;
use tower_prometheus::{HttpMetricsLayer, Metrics, TraceContext};

/// Zipkin's B3 headers, when sampled; else a context an outer layer of the application
/// left in the extensions.
fn b3_or_extension(headers: &HeaderMap, extensions: &Extensions) -> Option<TraceContext> {
    let header = |name: &str| headers.get(name)?.to_str().ok();
    let b3 = || {
        if header("x-b3-sampled")? != "1" {
            return None;
        }
        let trace = u128::from_str_radix(header("x-b3-traceid")?, 16).ok()?;
        let span = u64::from_str_radix(header("x-b3-spanid")?, 16).ok()?;
        TraceContext::new(trace, span)
    };
    b3().or_else(|| extensions.get::<TraceContext>().copied())
}

/// The extension an outer layer of the application inserts on `/ext` requests.
const FROM_EXTENSION: (u128, u64) = (
    0x5b8e_fff7_9834_4d4c_b42c_2a28_c9ff_7e7c,
    0x1f2e_3d4c_5b6a_7988,
);

fn app(metrics: &Metrics) -> Router {
    Router::new()
        .route("/b3", get(|| async { "b3" }))
        .route("/ext", get(|| async { "ext" }))
        .route("/w3c", get(|| async { "w3c" }))
        .layer(metrics.http_layer())
        // Outside the metrics layer, so that its `call` sees the extension.
        .layer(MapRequestLayer::new(|mut request: Request<Body>| {
            if request.uri().path() == "/ext" {
                let (trace, span) = FROM_EXTENSION;
                let context = TraceContext::new(trace, span).expect("non-zero ids");
                request.extensions_mut().insert(context);
            }
            request
        }))
}

async fn get_with(app: &Router, path: &str, headers: &[(&str, &str)]) {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("valid"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("the body");
}

async fn openmetrics(metrics: &Metrics) -> String {
    let request = Request::get("/metrics")
        .header(
            header::ACCEPT,
            "application/openmetrics-text; version=1.0.0",
        )
        .body(Body::empty())
        .expect("valid");
    let response = metrics.exporter().oneshot(request).await.expect("answers");
    let body = response.into_body().collect().await.expect("a body");
    String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8")
}

/// The exemplars on the duration buckets of `route`: (bucket bound, labels, value).
fn exemplars(scrape: &str, route: &str) -> Vec<(f64, String, f64)> {
    let route = format!("http_route=\"{route}\"");
    scrape
        .lines()
        .filter(|line| line.starts_with("http_server_request_duration_seconds_bucket{"))
        .filter(|line| line.contains(&route))
        .filter_map(|line| {
            let (sample, exemplar) = line.split_once(" # ")?;
            let le = sample.split_once("le=\"")?.1.split_once('"')?.0;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let (labels, rest) = exemplar.strip_prefix('{')?.split_once("} ")?;
            let value = rest.split(' ').next()?.parse().ok()?;
            Some((le, labels.to_owned(), value))
        })
        .collect()
}

#[tokio::test]
async fn a_closure_trace_context_source_gives_the_exemplars_of_the_scrape() {
    let metrics = Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .exemplars(true)
                .trace_context(b3_or_extension),
        )
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let app = app(&metrics);
    let b3 = [
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-sampled", "1"),
    ];
    get_with(&app, "/b3", &b3).await;
    // Not sampled: no exemplar, though the request is recorded.
    get_with(
        &app,
        "/b3",
        &[
            ("x-b3-traceid", "11111111111111111111111111111111"),
            ("x-b3-spanid", "2222222222222222"),
            ("x-b3-sampled", "0"),
        ],
    )
    .await;
    get_with(&app, "/ext", &[]).await;
    // The closure replaces the default source: a sampled `traceparent` is not read.
    get_with(
        &app,
        "/w3c",
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
    )
    .await;

    let scrape = openmetrics(&metrics).await;
    let b3 = exemplars(&scrape, "/b3");
    assert_eq!(
        b3.len(),
        1,
        "one exemplar, of the sampled request: {scrape}"
    );
    let (le, labels, seconds) = &b3[0];
    assert_eq!(
        labels,
        "trace_id=\"80f198ee56343ba864fe8b2a57d3eff7\",span_id=\"e457b5a2e4d86bd1\""
    );
    assert!(
        seconds <= le && *seconds > 0.0,
        "{seconds} in the bucket le={le}"
    );
    let (trace, span) = FROM_EXTENSION;
    let ext = exemplars(&scrape, "/ext");
    assert_eq!(
        ext.iter()
            .map(|(_, labels, _)| labels.as_str())
            .collect::<Vec<_>>(),
        [format!("trace_id=\"{trace:032x}\",span_id=\"{span:016x}\"")]
    );
    assert_eq!(exemplars(&scrape, "/w3c"), []);
    // Every request was recorded, exemplar or not.
    for (route, count) in [("/b3", 2), ("/ext", 1), ("/w3c", 1)] {
        let line = scrape
            .lines()
            .find(|line| {
                line.starts_with("http_server_request_duration_seconds_count{")
                    && line.contains(&format!("http_route=\"{route}\""))
            })
            .unwrap_or_else(|| panic!("{route} recorded: {scrape}"));
        assert!(line.ends_with(&format!(" {count}")), "{line}");
    }
}
