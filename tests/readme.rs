//! The README's "Published metrics" table cannot drift from what is exposed.

mod common;

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_prometheus::Metrics;

/// The metric names in the first column of the README's "Published metrics" tables.
fn documented() -> BTreeSet<String> {
    let readme = include_str!("../README.md");
    let section = readme
        .split("\n## Published metrics")
        .nth(1)
        .expect("the README has a Published metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.contains('_') && !name.contains(' '))
        .map(str::to_owned)
        .collect()
}

/// The metric family names a scrape shows after one request.
async fn exposed(metrics: &Metrics) -> BTreeSet<String> {
    let app: Router = Router::new()
        .route("/hello/{name}", get(|| async { "hello" }))
        .layer(metrics.http_layer());
    let response = app
        .oneshot(Request::get("/hello/x").body(Body::empty()).expect("valid"))
        .await
        .expect("infallible");
    response
        .into_body()
        .collect()
        .await
        .expect("the body streams");
    common::openmetrics_text(metrics.registry())
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn published_metrics_table_matches_the_exposition() {
    let exposed = exposed(&Metrics::new()).await;
    assert!(!exposed.is_empty());
    assert_eq!(
        documented(),
        exposed,
        "the README table lists exactly the metrics a scrape shows"
    );
}
