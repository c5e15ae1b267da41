//! Prometheus metrics for [tower] and [axum] services, in two lines.
//!
//! ```
//! use axum::{Router, routing::get};
//!
//! let metrics = tower_prometheus::Metrics::new();
//! let app: Router = Router::new()
//!     .route("/api/invoices/{id}", get(|| async { "an invoice" }))
//!     .route_service("/metrics", metrics.exporter())
//!     .layer(metrics.http_layer());
//! ```
//!
//! - [`http`]: a tower layer recording request duration (to the end of the response
//!   body), requests in flight and body sizes, with route templates as labels and a
//!   bound on the number of series. It works on any `tower::Service<http::Request<B>>`,
//!   not only axum.
//! - [`Exporter`]: the `/metrics` service, with content negotiation (OpenMetrics or
//!   Prometheus text) and gzip.
//! - [`Histogram`]: the lock-free histogram the layer records into, usable on its own
//!   with `prometheus-client`.
//! - [`Metrics`]: one [`Registry`](prometheus_client::registry::Registry) with all of
//!   the above wired.
//!
//! # Published metrics
//!
//! With the default [`Naming::OpenTelemetry`](http::Naming) names:
//!
//! | metric | type | unit | labels | meaning |
//! |---|---|---|---|---|
//! | `http_server_request_duration_seconds` | histogram | seconds | method, route, status, scheme, protocol version, `error_type` on errors | time from the request entering the layer to the end of the response body |
//! | `http_server_active_requests` | gauge | requests | method, scheme | requests entered and not finished |
//! | `http_server_request_body_size_bytes` | histogram | bytes | as duration | request body bytes read by the service |
//! | `http_server_response_body_size_bytes` | histogram | bytes | as duration | response body bytes streamed |
//!
//! [`Naming::PromClient`](http::Naming) gives the `prom-client` names instead
//! (`http_request_duration_seconds`, `http_requests_in_flight`, `http_request_size_bytes`,
//! `http_response_size_bytes`, labels `method`, `route`, `status_code`).
//!
//! # Feature flags
//!
//! | feature | default | what |
//! |---|---|---|
//! | `axum` | yes | route labels from axum's `MatchedPath` |
//! | `gzip` | yes | gzip-compressed `/metrics` responses |

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    clippy::all
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod exporter;
mod histogram;
pub mod http;
mod metrics;
mod sharded;

pub use error::Error;
pub use exporter::{Exporter, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};
pub use histogram::{Buckets, Histogram};
pub use metrics::{Metrics, MetricsBuilder};
