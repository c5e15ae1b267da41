//! The HTTP layer: request duration, in-flight requests and body sizes.
//!
//! [`HttpMetricsLayer`] wraps any `tower::Service<http::Request<B>>` whose response is an
//! `http::Response` with an [`http_body::Body`]: an axum `Router`, a hyper service, any
//! tower HTTP stack. For each request it records:
//!
//! - a **duration** histogram, from the moment the request enters the layer until the
//!   response body has been streamed to its end;
//! - an **in-flight** gauge, up when the request enters, down when it is finished;
//! - **request and response body size** histograms: the bytes actually read from the
//!   request body and written from the response body, not `Content-Length`.
//!
//! Names and labels are those of [`Naming`]. Series are labelled with the method, the
//! route template (from [`RouteLabel`]; absent when no route matched, never the raw
//! path) and the status code.
//!
//! # When a request counts as finished
//!
//! Every request that enters the layer (and is not on an excluded path) is recorded
//! exactly once, when the first of these happens, and the in-flight gauge goes back down
//! at that moment:
//!
//! | what happened | recorded as |
//! |---|---|
//! | the response body was streamed to its end (it said so, or its `Content-Length` or exact size hint was reached) | its status; duration runs to the end of the body |
//! | the response has no body to stream (HEAD, 1xx, 204, 304, or an empty body) | its status, when the head is ready |
//! | the inner service returned `Err` | status 500, `error_type="_OTHER"` |
//! | a panic unwound through the service's `call` or its future | status 500, `error_type="panic"` |
//! | the future was dropped before a response (client gone, timeout) | status 499, `error_type="cancelled"` |
//! | the response body was dropped before its end | its status, `error_type="cancelled"` |
//! | the response body returned an error | its status, `error_type="body_error"` |
//! | a panic unwound through the response body | its status, `error_type="panic"` |
//!
//! Responses with a 5xx status carry `error_type` = the status code, as the OpenTelemetry
//! conventions say. `error_type`, `url_scheme` and `network_protocol_version` exist only
//! with [`Naming::OpenTelemetry`]; with [`Naming::PromClient`] requests that differ only in
//! them share a series. The request body size is what the service had read when the
//! request finished.
//!
//! A panic is told from a cancellation by where the guard is dropped: while the inner
//! service, future or body was running (the unwinding dropped it) is a panic, wherever
//! the panic is caught later; any other drop is a cancellation, even one that happens
//! while something unrelated unwinds.
//!
//! # Cost
//!
//! Per request: two clock reads, one lookup of the route template (a comparison with the
//! last one, else a hash of the template) and one of the series (an integer), both in
//! caches of the calling thread, and atomic adds on counters sharded per thread: no
//! lock, no mutex, no reference count. Once a label set exists, a request allocates
//! nothing (a request with a body borrows its byte counter from a per-thread pool).
//! `benches/README.md` has the figures.
//!
//! Each thread that served requests keeps a cache of the layer's route ids and series,
//! which also keeps the layer's metrics alive after the layer, its services and the
//! registry are gone (a response body may still be streaming); a thread lets go of it
//! when it makes room for another layer's cache, at most four layers per thread.
//!
//! Memory: each label set holds three histograms (one without body sizes), each stored
//! once per shard (the available parallelism rounded up to a power of two, at most 8) on
//! 128-byte lines: 768 bytes per label set on 2 cores, at most 3 KiB on 8 or more. The
//! cardinality limit bounds the total (2,000 label sets: 1.5 MiB on 2 cores).
//!
//! # Cardinality
//!
//! Each family holds at most [`max_series`](HttpMetricsBuilder::max_series) label sets
//! (default 2,000). Past that, observations go to one series labelled
//! `otel_metric_overflow="true"`: a flood of random URLs or methods cannot grow memory.
//! Unknown methods are `_OTHER`, unmatched requests have no route label.
//!
//! axum does not set `MatchedPath` for services mounted with `Router::nest_service`
//! (a `ServeDir`, say): their requests have no route label with [`DefaultRoute`]. Give
//! them one with a [`RouteLabel`] of your own that falls back to the mount's template.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use prometheus_client::registry::Registry;
//! use tower_prometheus::http_metrics::HttpMetricsLayer;
//!
//! let mut registry = Registry::default();
//! let app: Router = Router::new()
//!     .route("/hello/{name}", get(|| async { "hello" }))
//!     .layer(HttpMetricsLayer::new(&mut registry));
//! ```

mod body;
mod future;
mod guard;
mod labels;
mod layer;
mod recorder;
mod route;
mod service;

pub use body::{RequestBody, ResponseBody};
pub use future::ResponseFuture;
pub use labels::Naming;
pub use layer::{DEFAULT_MAX_SERIES, HttpMetricsBuilder, HttpMetricsLayer};
pub use route::{DefaultRoute, RouteFn, RouteLabel};
pub use service::HttpMetrics;
