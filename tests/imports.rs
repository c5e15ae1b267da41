//! Importing this crate never hides a crate its users already import: a glob import of
//! the crate root, and single imports beside the `http` crate, still compile (this file
//! did not compile while the layer's module was named `http`).

#![allow(unused_imports)]

use http::Request;
use tower_prometheus::*;
use tower_prometheus::{HttpMetricsLayer, Metrics, http_metrics};

/// `http::StatusCode` still names the `http` crate's type after the glob import.
#[test]
fn the_http_crate_is_not_shadowed_by_a_glob_import() {
    let status: http::StatusCode = http::StatusCode::OK;
    let request: Request<()> = Request::new(());
    assert_eq!(status.as_u16(), 200);
    assert_eq!(request.method(), http::Method::GET);
}

/// The re-exported `prometheus_client` is the one the crate registers into: a metric
/// of it goes in the registry `Metrics::builder().registry(..)` takes.
#[test]
fn the_reexported_prometheus_client_is_the_one_the_builder_takes() {
    let mut registry = prometheus_client::registry::Registry::default();
    let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
    registry.register("jobs", "Jobs done", counter.clone());
    let built = Metrics::builder().registry(registry).build();
    assert!(built.is_ok());
}
