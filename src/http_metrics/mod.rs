//! The HTTP layer: request duration, in-flight requests and body sizes.
//!
//! [`HttpMetricsLayer`] wraps any `tower::Service<http::Request<B>>` whose response is an
//! `http::Response` with an [`http_body::Body`]: an axum `Router`, a hyper service, any
//! tower HTTP stack. For each request it records:
//!
//! - a **duration** histogram, from the moment the request enters the layer until the
//!   response body has been handed to the server to its end;
//! - an **in-flight** gauge, up when the request enters, down when it is finished;
//! - **request and response body size** histograms: the request's declared length (or,
//!   with [`ReadBytes`], the bytes the service read), and the bytes of the response body
//!   handed to the server, not its `Content-Length`.
//!
//! Names and labels are those of [`Naming`]. Series are labelled with the method, the
//! route template (from [`RouteLabel`]; absent when no route matched, never the raw
//! path) and the status code.
//!
//! # When a request counts as finished
//!
//! Every request that enters the layer (and is not excluded) is recorded exactly once,
//! when the first of these happens, and the in-flight gauge goes back down at that
//! moment:
//!
//! | what happened | recorded as |
//! |---|---|
//! | the response body was handed over to its end (it said so, its trailers were handed over, or over HTTP/1.x its `Content-Length` or exact size hint was reached) | its status; duration runs to the end of the body |
//! | the response has no body to send (HEAD, 1xx, 204, 304, a `Content-Length: 0` over HTTP/1.x, or an empty body) | its status, when the head is ready |
//! | the inner service returned `Err` | status 500, `error_type` from the [`Classify`]er (`_OTHER` by default) |
//! | a panic unwound through the service's `call` or its future | status 500, `error_type="panic"` |
//! | the future was dropped before a response (client gone, timeout) | status 499, `error_type="cancelled"` |
//! | the response body was dropped before its end (client gone, HTTP/2 reset) | its status, `error_type="cancelled"` |
//! | the response body returned an error | its status, `error_type="body_error"` |
//! | a panic unwound through the response body | its status, `error_type="panic"` |
//!
//! Responses with a 5xx status carry `error_type` = the status code, as the OpenTelemetry
//! conventions say; a [`Classify`]er can call other responses failures, from their head
//! or their trailers (gRPC). `error_type`, `url_scheme` and `network_protocol_version`
//! exist only with [`Naming::OpenTelemetry`]; with [`Naming::PromClient`] and
//! [`Naming::AxumPrometheus`] requests that differ only in them share a series.
//!
//! "Handed over" means given to the server (hyper), which then writes it to the socket.
//! A server takes a body frame whole, so a large body answered in one frame (a `Vec`, a
//! `String`, `Full`) would count as finished when the server took it. Data frames of
//! `Bytes` longer than 64 KiB are therefore handed over in 64 KiB slices (no copy; the
//! rest of such a frame waits in one small allocation, made only for such frames): the
//! server stops asking for more while its buffers are full (hyper: about 400 KiB; HTTP/2:
//! the client's flow-control window), so a slow reader's transfer is in the duration and
//! a client that leaves half way is `cancelled`. What remains unmeasured is what the
//! server and the kernel buffer after the last slice.
//!
//! A panic is told from a cancellation by where the guard is dropped: while the inner
//! service, future or body was running (the unwinding dropped it) is a panic, wherever
//! the panic is caught later; any other drop is a cancellation, even one that happens
//! while something unrelated unwinds.
//!
//! # Route labels
//!
//! With the `axum` feature, [`DefaultRoute`] takes axum's `MatchedPath`, which axum sets
//! for every matched route, nested routers included. Requests that reach the fallback
//! have no route label. axum sets no `MatchedPath` for requests under a service mounted
//! with `Router::nest_service` (a `ServeDir`, say): declare the mount with
//! [`nested_service`](HttpMetricsBuilder::nested_service) and they get the route
//! `/static/{*path}`. Elsewhere (hyper), give the route template with
//! [`route_fn`](HttpMetricsLayer::route_fn) or a [`RouteLabel`].
//!
//! # Excluding requests
//!
//! [`exclude_path`](HttpMetricsBuilder::exclude_path) (exact path),
//! [`exclude_prefix`](HttpMetricsBuilder::exclude_prefix) (path prefix) and
//! [`exclude_route`](HttpMetricsBuilder::exclude_route) (route template) leave requests
//! unrecorded, decided once per request without allocating.
//!
//! # The inner service's request type
//!
//! By default ([`ContentLength`]), the inner service receives the request untouched: a
//! hyper handler takes `Request<hyper::body::Incoming>` behind the layer as before it.
//! With [`ReadBytes`], it receives `Request<RequestBody<B>>`, whose body counts the bytes
//! read.
//!
//! # Cost
//!
//! Per request: two clock reads, a lookup of the route template and one of the series
//! (lock-free tables: plain loads, no lock), atomic adds on counters sharded per thread,
//! and a reference count on the layer's state held by the request. With
//! [`Naming::AxumPrometheus`], the in-flight gauge is per route: its gauges are found
//! by the route id, in a slice made at build (16 bytes per route the limit allows), and
//! each route's are allocated on its first request (what one label set's histograms
//! take: 256 bytes per shard). Once a label set
//! exists, a request allocates nothing (`tests/allocations.rs`). `benches/README.md`
//! has the figures.
//!
//! Memory: each label set holds three histograms (one without body sizes), each stored
//! once per shard (the available parallelism rounded up to a power of two, at most 8) on
//! 128-byte lines: 768 bytes per label set on 2 cores, at most 3 KiB on 8 or more. The
//! cardinality limit bounds the total (2,000 label sets: 1.5 MiB on 2 cores), plus the
//! lookup tables, allocated at build: two tables (routes, series) of 16-byte slots, each
//! twice the limit rounded up to a power of two, so 64 to 128 bytes per label set of the
//! limit (128 KiB for 2,000; 8 MiB for [`SERIES_LIMIT`]).
//!
//! # Which route blocks the runtime
//!
//! With the feature `task-metrics` and `HttpMetricsBuilder::task_monitors(true)` (not
//! linked: it exists only with the feature), each recorded request's
//! future (the inner service's, up to the response head) is instrumented with the
//! `tokio-metrics` task monitor of its route, and the `tokio_task_*` counters (poll time,
//! polls, slow polls, scheduling delay, idle time) are published per route. The monitors
//! are bounded by the same cardinality limit as the route labels.
//!
//! # Cardinality
//!
//! Each family holds at most [`max_series`](HttpMetricsBuilder::max_series) label sets
//! (default 2,000). Past that, observations go to one series labelled
//! `otel_metric_overflow="true"`: a flood of random URLs or methods cannot grow memory.
//! Unknown methods are `_OTHER`, unmatched requests have no route label, and a
//! classifier's `error_type` values beyond 64 are `_OTHER`.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use prometheus_client::registry::Registry;
//! use tower_prometheus::HttpMetricsLayer;
//!
//! let mut registry = Registry::default();
//! let app: Router = Router::new()
//!     .route("/hello/{name}", get(|| async { "hello" }))
//!     .layer(HttpMetricsLayer::new(&mut registry));
//! ```

mod encode;
mod family;
mod labels;
mod layer;
mod objective;
mod request;
mod route;
mod service;
mod tasks;

pub use crate::classify::{Classified, Classify, DefaultClassifier, ErrorType};
pub use crate::error::SERIES_LIMIT;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub use crate::exemplar::CurrentSpan;
pub use crate::exemplar::{TraceContext, TraceContextSource, Traceparent};
pub use crate::record::{ResponseBody, ResponseFuture, UrlScheme};
pub use labels::Naming;
pub use layer::{DEFAULT_MAX_SERIES, HttpMetricsBuilder, HttpMetricsLayer};
pub use objective::Objective;
pub use request::{ContentLength, ReadBytes, RequestBody, RequestSize};
pub use route::{DefaultRoute, RouteFn, RouteLabel};
pub use service::HttpMetrics;
