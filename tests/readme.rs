//! The crate docs' "Published metrics" tables cannot drift from what is exposed, and the
//! README carries the crate docs as they are.

mod common;

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_prometheus::Metrics;

#[cfg(feature = "heap")]
#[global_allocator]
static ALLOCATOR: tower_prometheus::CountingAllocator =
    tower_prometheus::CountingAllocator::system();

const UNSTABLE_HEADING: &str = "\n### Tokio runtime with `RUSTFLAGS=\"--cfg tokio_unstable\"`";

/// The table of the `Naming::AxumPrometheus` names, checked against a scrape with it.
const AXUM_PRESET_HEADING: &str = "\n### HTTP with `Naming::AxumPrometheus`";

/// The crate docs' "Published metrics" section, and in it the `Naming::AxumPrometheus`
/// table, apart.
fn published_metrics() -> (String, String) {
    let docs = include_str!("../src/lib.md");
    let section = docs
        .split("\n## Published metrics")
        .nth(1)
        .expect("the crate docs have a Published metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let (before, preset) = section
        .split_once(AXUM_PRESET_HEADING)
        .expect("the crate docs have a table of the axum-prometheus names");
    let (preset, after) = preset.split_once("\n### ").unwrap_or((preset, ""));
    (format!("{before}\n### {after}"), preset.to_owned())
}

/// The metric names in the first column of the tables of `tables`.
fn first_column(tables: &str) -> impl Iterator<Item = &str> {
    tables
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.contains('_') && !name.contains(' '))
}

/// The metric names in the first column of the crate docs' "Published metrics" tables,
/// for the features and cfg this test was built with.
fn documented() -> BTreeSet<String> {
    let (section, _) = published_metrics();
    let (stable, unstable) = section
        .split_once(UNSTABLE_HEADING)
        .expect("the crate docs list the tokio_unstable metrics");
    let tables = if cfg!(tokio_unstable) {
        format!("{stable}{unstable}")
    } else {
        stable.to_owned()
    };
    first_column(&tables)
        .filter(|name| cfg!(feature = "heap") || !name.starts_with("rust_heap_"))
        .filter(|name| cfg!(feature = "connections") || !is_connection_metric(name))
        .filter(|name| {
            cfg!(feature = "task-metrics")
                || !(name.starts_with("tokio_task_") && name.ends_with("_total"))
        })
        .map(str::to_owned)
        .collect()
}

/// Whether `name` is one of the connection metrics (feature `connections`).
fn is_connection_metric(name: &str) -> bool {
    name.contains("connection") || name.contains("accept_errors") || name.contains("handshake")
}

/// A listener wrapped with a cap, and a handshake measured on a connection it accepted,
/// so that every connection family is in the scrape.
#[cfg(feature = "connections")]
async fn connections(metrics: &Metrics) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bound");
    let addr = listener.local_addr().expect("an address");
    let mut listener = metrics.listener(listener).max_connections(4);
    let client = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connected");
    let (stream, _) = listener.accept().await;
    let stream = stream
        .handshake(|stream| async move { Ok(stream) })
        .await
        .expect("shook hands");
    drop((stream, client));
}

#[cfg(not(feature = "connections"))]
async fn connections(_metrics: &Metrics) {}

/// A gRPC request head.
fn grpc_request() -> Request<Body> {
    Request::post("/test.Echo/Unary")
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(Body::empty())
        .expect("valid")
}

/// The metric family names a scrape shows after one HTTP request and one gRPC call
/// served, and one of each made through the client layer.
async fn exposed(metrics: &Metrics) -> BTreeSet<String> {
    // A trailers-only gRPC answer.
    let grpc = || async {
        http::Response::builder()
            .header("grpc-status", "0")
            .body(Body::empty())
            .expect("valid")
    };
    let app: Router = Router::new()
        .route("/hello/{name}", get(|| async { "hello" }))
        .route("/test.Echo/Unary", axum::routing::post(grpc))
        .layer(metrics.http_layer());
    for request in [
        Request::get("/hello/x").body(Body::empty()).expect("valid"),
        grpc_request(),
    ] {
        let response = app.clone().oneshot(request).await.expect("infallible");
        response
            .into_body()
            .collect()
            .await
            .expect("the body streams");
    }
    let upstream = tower::service_fn(|request: Request<Body>| async move {
        let response = match request.headers().get(http::header::CONTENT_TYPE) {
            Some(_) => http::Response::builder().header("grpc-status", "5"),
            None => http::Response::builder(),
        };
        Ok::<_, std::convert::Infallible>(response.body(Body::empty()).expect("valid"))
    });
    let client = tower::Layer::layer(&metrics.client_layer(), upstream);
    for request in [
        Request::get("http://api.internal/x")
            .body(Body::empty())
            .expect("valid"),
        grpc_request(),
    ] {
        let response = client.clone().oneshot(request).await.expect("answered");
        response
            .into_body()
            .collect()
            .await
            .expect("the body streams");
    }
    connections(metrics).await;
    common::prometheus_text(metrics.registry())
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn published_metrics_tables_match_the_exposition() {
    // A declared objective, so that its family is in the scrape.
    let http = tower_prometheus::HttpMetricsLayer::builder().objective(
        "/hello/{name}",
        tower_prometheus::Objective::availability(0.99),
    );
    #[cfg(feature = "task-metrics")]
    let http = http.task_monitors(true);
    let metrics = Metrics::builder()
        .http(http)
        .build()
        .expect("valid options");
    let exposed = exposed(&metrics).await;
    // The crate's list of its own families, which `Metrics::register` refuses, is the
    // exposition's.
    for family in &exposed {
        let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        assert!(
            metrics.register(family.as_str(), "mine", gauge).is_err(),
            "{family} is one of the crate's own"
        );
    }
    assert!(exposed.contains("process_cpu_seconds_total"));
    assert!(exposed.contains("tokio_event_loop_lag_seconds"));
    assert_eq!(
        documented(),
        exposed,
        "the crate docs' tables list exactly the metrics a scrape shows"
    );
}

/// The table of the `Naming::AxumPrometheus` names lists exactly the HTTP families a
/// scrape with that preset shows (the others keep their names: the exposition without
/// the HTTP families is the default one's).
#[tokio::test]
async fn the_axum_prometheus_table_matches_the_exposition() {
    let http = |naming| {
        tower_prometheus::HttpMetricsLayer::builder()
            .naming(naming)
            .objective(
                "/hello/{name}",
                tower_prometheus::Objective::availability(0.99),
            )
    };
    let preset = Metrics::builder()
        .http(http(tower_prometheus::Naming::AxumPrometheus))
        .build()
        .expect("valid options");
    let default = Metrics::builder()
        .http(http(tower_prometheus::Naming::OpenTelemetry))
        .build()
        .expect("valid options");
    let (exposed, default) = (exposed(&preset).await, exposed(&default).await);
    let (_, table) = published_metrics();
    let documented: BTreeSet<String> = first_column(&table).map(str::to_owned).collect();
    let preset_only: BTreeSet<String> = exposed.difference(&default).cloned().collect();
    assert_eq!(
        preset_only, documented,
        "the preset's table lists its families"
    );
    let default_only: BTreeSet<&String> = default.difference(&exposed).collect();
    assert!(
        default_only
            .iter()
            .all(|name| name.starts_with("http_server_")
                && !name.contains("connection")
                && !name.contains("accept")
                && !name.contains("handshake")),
        "only the HTTP request families are renamed: {default_only:?}"
    );
}

/// The README shows the crate docs (what docs.rs shows) verbatim between its markers.
#[test]
fn the_readme_carries_the_crate_docs() {
    let readme = include_str!("../README.md");
    let embedded = readme
        .split_once("<!-- crate docs -->\n")
        .and_then(|(_, rest)| rest.split_once("<!-- end crate docs -->"))
        .map(|(docs, _)| docs)
        .expect("the README has the crate docs markers");
    assert!(
        embedded == include_str!("../src/lib.md"),
        "README.md differs from src/lib.md between its markers: run ./scripts/sync-readme.sh"
    );
    for contributor_step in ["scripts/test.sh", "cargo run --release -p invoicing"] {
        assert!(
            !include_str!("../src/lib.md").contains(contributor_step),
            "the crate docs are for users of the published crate: {contributor_step}"
        );
    }
}
