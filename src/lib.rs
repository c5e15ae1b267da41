#![doc = include_str!("lib.md")]
//!
//! ## Where things are
//!
//! - [`Metrics`]: one [`Registry`](prometheus_client::registry::Registry) with the layer,
//!   the exporter and the collectors wired; [`MetricsBuilder`] for the options.
//! - [`HttpMetricsLayer`] and [`HttpMetricsBuilder`]: the tower layer and its options. Its
//!   module, [`http_metrics`], holds the service, future and bodies, the hooks
//!   ([`RouteLabel`](http_metrics::RouteLabel), [`Classify`](http_metrics::Classify)),
//!   and the module doc that says exactly when a request counts as finished.
//! - `Metrics::listener` (feature `connections`): a `MeteredListener` for `axum::serve`
//!   and hyper-util accept loops, and its module `connections`: open connections, their
//!   duration, accept errors, connections turned away.
//! - [`Exporter`]: the `/metrics` service.
//! - `MetricsRecorder` (feature `metrics-facade`): the `metrics` facade's recorder,
//!   writing into the same registry.
//! - The collectors, each usable alone: `ProcessCollector` (feature `process`),
//!   `RuntimeCollector` (feature `runtime`), `HeapCollector` and `CountingAllocator`
//!   (feature `heap`).
//! - [`Histogram`] and [`Buckets`]: the lock-free histogram the layer records into,
//!   usable on its own with `prometheus-client`.

// Unsafe code is forbidden everywhere but in the counting allocator (feature `heap`),
// where each `unsafe` block says why it is sound.
#![cfg_attr(not(feature = "heap"), forbid(unsafe_code))]
#![cfg_attr(feature = "heap", deny(unsafe_code))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    clippy::all
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod classify;
pub mod client_metrics;
#[cfg(feature = "connections")]
#[cfg_attr(docsrs, doc(cfg(feature = "connections")))]
pub mod connections;
mod error;
mod exemplar;
mod exporter;
mod grpc;
#[cfg(feature = "heap")]
mod heap;
mod histogram;
pub mod http_metrics;
mod metrics;
#[cfg(feature = "metrics-facade")]
mod metrics_facade;
#[cfg(feature = "process")]
mod process;
mod record;
#[cfg(feature = "runtime")]
mod runtime;
mod sharded;

pub use client_metrics::ClientMetricsLayer;
#[cfg(feature = "connections")]
pub use connections::{ConnectionMetrics, MeteredListener};
pub use error::Error;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub use exemplar::CurrentSpan;
pub use exemplar::{TraceContext, TraceContextSource, Traceparent};
pub use exporter::{
    Exporter, ExporterFuture, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
};
#[cfg(feature = "heap")]
pub use heap::{CountingAllocator, HeapCollector};
pub use histogram::{Buckets, Histogram, NativeBuckets};
pub use http_metrics::{HttpMetricsBuilder, HttpMetricsLayer, Naming, Objective};
pub use metrics::{Metrics, MetricsBuilder};
#[cfg(feature = "metrics-facade")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics-facade")))]
pub use metrics_facade::{MetricsRecorder, MetricsRecorderBuilder};
#[cfg(feature = "process")]
pub use process::ProcessCollector;
/// The `prometheus-client` this crate registers into: use it for metrics of your own,
/// so that its `Registry` is the one [`MetricsBuilder::registry`] takes.
pub use prometheus_client;
pub use record::UrlScheme;
#[cfg(feature = "runtime")]
pub use runtime::{DEFAULT_LAG_RESOLUTION, RuntimeCollector};
