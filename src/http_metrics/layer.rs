//! The layer and its builder.

use std::borrow::Cow;
use std::sync::Arc;

use http::Request;
use prometheus_client::registry::Registry;
use tower_layer::Layer;

use super::family::{Config, ServerRequests, TraceSource};
use super::labels::Naming;
use super::objective::{Objective, Objectives};
use super::request::{ContentLength, RequestSize};
use super::route::{DefaultRoute, RouteFn};
use super::service::HttpMetrics;
use crate::classify::DefaultClassifier;
use crate::error::{Error, SERIES_LIMIT, is_valid_label_name, is_valid_metric_name};
use crate::exemplar::{TraceContextSource, Traceparent};
use crate::grpc::ServerCalls;
use crate::histogram::{Buckets, NativeBuckets};
use crate::record::{Histograms, Recorder, Shared, UrlScheme};

/// The default of [`HttpMetricsBuilder::max_series`].
pub const DEFAULT_MAX_SERIES: usize = 2_000;

/// A [`Layer`] that records HTTP request metrics; see the [module docs](super).
///
/// Cloning is cheap and clones record into the same metrics, so one layer can wrap
/// several routers or servers. The type parameters are the source of route labels
/// ([`RouteLabel`](super::RouteLabel)), the classifier of failures
/// ([`Classify`](super::Classify)) and how request sizes are measured
/// ([`RequestSize`](super::RequestSize)); each has a default, changed by
/// [`route_fn`](Self::route_fn) or [`route_label`](Self::route_label),
/// [`classify`](Self::classify) and [`request_size`](Self::request_size).
///
/// ```
/// use prometheus_client::registry::Registry;
/// use tower_prometheus::{HttpMetricsLayer, Naming};
///
/// let mut registry = Registry::default();
/// let layer = HttpMetricsLayer::builder()
///     .naming(Naming::PromClient)
///     .exclude_path("/metrics")
///     .build(&mut registry)?;
/// # Ok::<(), tower_prometheus::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer<R = DefaultRoute, C = DefaultClassifier, M = ContentLength> {
    recorders: Arc<Recorders>,
    route: R,
    classify: C,
    request_size: M,
    scheme: UrlScheme,
}

impl HttpMetricsLayer {
    /// A layer with the default options, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        Self::builder()
            .build(registry)
            .expect("the default options are valid")
    }

    /// A builder to choose the options.
    pub fn builder() -> HttpMetricsBuilder {
        HttpMetricsBuilder::default()
    }
}

impl<R, C, M> HttpMetricsLayer<R, C, M> {
    /// Takes route labels from a closure instead of [`DefaultRoute`].
    ///
    /// The closure returns the route *template* (`/users/{id}`), never the raw path, or
    /// `None` when the request matched no route. It may return a label borrowed from the
    /// request. The cardinality limit caps the damage if it returns raw paths anyway.
    ///
    /// A named function must be declared to return `Option<&str>` (borrowed from the
    /// request, the lifetime elided), even when every label it returns is a literal.
    /// One declared `-> Option<&'static str>` is refused with "one type is more general
    /// than the other": a function's declared return type must be the bound's exactly
    /// (`Option<&'a str>` for the request's `'a`), where a closure's return value
    /// converts. No bound accepts both without losing what makes closures work: rustc
    /// infers a closure's signature (a label borrowed from the request) only from an
    /// `Fn` bound such as this one. Wrap a `'static` function in a closure:
    ///
    /// ```
    /// use http::Request;
    /// use hyper::body::Incoming;
    /// use prometheus_client::registry::Registry;
    /// use tower_prometheus::HttpMetricsLayer;
    ///
    /// /// The accepted signature: `Option<&str>`, borrowed from the request.
    /// fn route(request: &Request<Incoming>) -> Option<&str> {
    ///     request.uri().path().starts_with("/users/").then_some("/users/{id}")
    /// }
    ///
    /// /// Refused as `route_fn(static_route)`: wrapped in a closure, accepted.
    /// fn static_route(request: &Request<Incoming>) -> Option<&'static str> {
    ///     request.uri().path().starts_with("/files/").then_some("/files/{*path}")
    /// }
    ///
    /// let layer = HttpMetricsLayer::new(&mut Registry::default());
    /// let named = layer.clone().route_fn(route);
    /// let wrapped = layer.route_fn(|request: &Request<Incoming>| static_route(request));
    /// ```
    ///
    /// ```
    /// use axum::extract::MatchedPath;
    /// use http::Request;
    /// use prometheus_client::registry::Registry;
    /// use tower_prometheus::HttpMetricsLayer;
    ///
    /// // axum's matched route, else the template of a mount of ours.
    /// let layer = HttpMetricsLayer::new(&mut Registry::default()).route_fn(
    ///     |request: &Request<axum::body::Body>| match request.extensions().get::<MatchedPath>() {
    ///         Some(matched) => Some(matched.as_str()),
    ///         None if request.uri().path().starts_with("/files/") => Some("/files/{*path}"),
    ///         None => None,
    ///     },
    /// );
    /// ```
    pub fn route_fn<B, F>(self, route: F) -> HttpMetricsLayer<RouteFn<B>, C, M>
    where
        F: for<'a> Fn(&'a Request<B>) -> Option<&'a str> + Send + Sync + 'static,
    {
        self.route_label(RouteFn::new(route))
    }

    /// Takes route labels from any [`RouteLabel`](super::RouteLabel) instead of
    /// [`DefaultRoute`].
    pub fn route_label<R2>(self, route: R2) -> HttpMetricsLayer<R2, C, M> {
        HttpMetricsLayer {
            recorders: self.recorders,
            route,
            classify: self.classify,
            request_size: self.request_size,
            scheme: self.scheme,
        }
    }

    /// Classifies failures with `classify` instead of [`DefaultClassifier`]: see
    /// [`Classify`](super::Classify).
    pub fn classify<C2>(self, classify: C2) -> HttpMetricsLayer<R, C2, M> {
        HttpMetricsLayer {
            recorders: self.recorders,
            route: self.route,
            classify,
            request_size: self.request_size,
            scheme: self.scheme,
        }
    }

    /// How request body sizes are measured, which decides the request type of the inner
    /// service. Defaults to [`ContentLength`]: the declared length, the request passed
    /// on untouched. [`ReadBytes`](super::ReadBytes) counts the bytes the service reads,
    /// and hands it a `Request<RequestBody<B>>`.
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use tower_prometheus::HttpMetricsLayer;
    /// use tower_prometheus::http_metrics::ReadBytes;
    ///
    /// let layer = HttpMetricsLayer::new(&mut Registry::default()).request_size(ReadBytes);
    /// ```
    pub fn request_size<M2: RequestSize>(self, mode: M2) -> HttpMetricsLayer<R, C, M2> {
        HttpMetricsLayer {
            recorders: self.recorders,
            route: self.route,
            classify: self.classify,
            request_size: mode,
            scheme: self.scheme,
        }
    }

    /// The `url_scheme` of the requests this layer sees: what the server knows of its
    /// listener, since a request line can claim any scheme. Defaults to
    /// [`UrlScheme::Http`].
    ///
    /// A server with a TLS listener and a plaintext one wraps each with its own clone:
    ///
    /// ```
    /// use tower_prometheus::Metrics;
    /// use tower_prometheus::http_metrics::UrlScheme;
    ///
    /// let metrics = Metrics::new();
    /// let plaintext = metrics.http_layer();
    /// let tls = metrics.http_layer().url_scheme(UrlScheme::Https);
    /// ```
    pub fn url_scheme(mut self, scheme: UrlScheme) -> Self {
        self.scheme = scheme;
        self
    }
}

impl<S, R: Clone, C: Clone, M> Layer<S> for HttpMetricsLayer<R, C, M> {
    type Service = HttpMetrics<S, R, C, M>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics::new(
            inner,
            self.recorders.clone(),
            self.route.clone(),
            self.classify.clone(),
            self.scheme,
        )
    }
}

/// Options of an [`HttpMetricsLayer`]; [`build`](Self::build) registers its metrics.
#[derive(Clone, Debug)]
pub struct HttpMetricsBuilder {
    naming: Naming,
    prefix: Option<String>,
    duration_buckets: Option<Vec<f64>>,
    size_buckets: Option<Vec<f64>>,
    body_sizes: bool,
    group_status_codes: bool,
    excluded_paths: Vec<String>,
    excluded_prefixes: Vec<String>,
    excluded_routes: Vec<String>,
    nested_services: Vec<String>,
    const_labels: Vec<(String, String)>,
    max_series: usize,
    #[cfg(feature = "task-metrics")]
    task_monitors: bool,
    #[cfg(feature = "task-metrics")]
    slow_poll_threshold: Option<std::time::Duration>,
    #[cfg(feature = "task-metrics")]
    long_delay_threshold: Option<std::time::Duration>,
    grpc: bool,
    native_histograms: bool,
    native_buckets: NativeBuckets,
    exemplars: bool,
    trace_context: TraceSource,
    objectives: Vec<(String, Objective)>,
}

impl Default for HttpMetricsBuilder {
    fn default() -> Self {
        Self {
            naming: Naming::default(),
            prefix: None,
            duration_buckets: None,
            size_buckets: None,
            body_sizes: true,
            group_status_codes: false,
            excluded_paths: Vec::new(),
            excluded_prefixes: Vec::new(),
            excluded_routes: Vec::new(),
            nested_services: Vec::new(),
            const_labels: Vec::new(),
            max_series: DEFAULT_MAX_SERIES,
            #[cfg(feature = "task-metrics")]
            task_monitors: false,
            #[cfg(feature = "task-metrics")]
            slow_poll_threshold: None,
            #[cfg(feature = "task-metrics")]
            long_delay_threshold: None,
            grpc: true,
            native_histograms: false,
            native_buckets: NativeBuckets::duration_seconds(),
            exemplars: false,
            trace_context: TraceSource(Arc::new(Traceparent)),
            objectives: Vec::new(),
        }
    }
}

impl HttpMetricsBuilder {
    /// The metric and label names. Defaults to [`Naming::OpenTelemetry`].
    pub fn naming(mut self, naming: Naming) -> Self {
        self.naming = naming;
        self
    }

    /// A prefix of the names of the families the [naming](Self::naming) names (the
    /// duration, the request counter, the in-flight gauge, the body sizes and the
    /// objectives), as axum-prometheus' `with_prefix`. Defaults to `axum` with
    /// [`Naming::AxumPrometheus`], whose names are `{prefix}_http_requests_total` and so
    /// on, and to none with the other namings.
    ///
    /// The gRPC, task and connection families keep their names, and
    /// [`MetricsBuilder::prefix`](crate::MetricsBuilder::prefix), which prefixes every
    /// family of the crate, goes before this one. It must be a valid metric name without
    /// colons, otherwise [`build`](Self::build) returns [`Error::InvalidPrefix`].
    ///
    /// ```
    /// use tower_prometheus::{HttpMetricsLayer, Metrics, Naming};
    ///
    /// // axum-prometheus' `PrometheusMetricLayerBuilder::new().with_prefix("invoicing")`:
    /// // invoicing_http_requests_total, invoicing_http_requests_duration_seconds, ...
    /// let metrics = Metrics::builder()
    ///     .http(HttpMetricsLayer::builder().naming(Naming::AxumPrometheus).prefix("invoicing"))
    ///     .build()?;
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Upper bounds of the duration buckets, in seconds. Defaults to
    /// [`Buckets::duration_seconds`] (the OpenTelemetry advisory set).
    ///
    /// Validated by [`build`](Self::build): finite and strictly increasing.
    pub fn duration_buckets(mut self, bounds: impl IntoIterator<Item = f64>) -> Self {
        self.duration_buckets = Some(bounds.into_iter().collect());
        self
    }

    /// Upper bounds of the body size buckets, in bytes. Defaults to
    /// [`Buckets::size_bytes`] (0, then powers of 4 from 64 B to 16 MiB).
    pub fn size_buckets(mut self, bounds: impl IntoIterator<Item = f64>) -> Self {
        self.size_buckets = Some(bounds.into_iter().collect());
        self
    }

    /// Whether the duration histogram records native (exponential) buckets beside the
    /// classic ones. Defaults to `false`.
    ///
    /// They are served only in the Prometheus protobuf format, which Prometheus asks for
    /// when its native histograms are on; the text formats keep the classic buckets. So
    /// this setter exists only with the feature `protobuf`: without it, a call is a
    /// build error that names the feature, rather than memory spent on buckets that no
    /// scrape could carry. On, each series holds [`NativeBuckets::len`] + 1 more
    /// counters per shard (1.5 KiB per shard with the default range), and a request
    /// costs about 140 more instructions (`benches/README.md`, "Native histograms and
    /// exemplars").
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use tower_prometheus::HttpMetricsLayer;
    ///
    /// let layer = HttpMetricsLayer::builder()
    ///     .native_histograms(true)
    ///     .build(&mut Registry::default())?;
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    #[cfg(feature = "protobuf")]
    #[cfg_attr(docsrs, doc(cfg(feature = "protobuf")))]
    pub fn native_histograms(mut self, enabled: bool) -> Self {
        self.native_histograms = enabled;
        self
    }

    /// Without the feature `protobuf`: a build error naming the feature. Not public API.
    #[cfg(not(feature = "protobuf"))]
    #[doc(hidden)]
    pub fn native_histograms<T: needs_protobuf::NeedsProtobuf>(self, enabled: T) -> Self {
        let _ = enabled;
        self
    }

    /// The resolution and range of the native duration buckets, when
    /// [`native_histograms`](Self::native_histograms) is on. Defaults to
    /// [`NativeBuckets::duration_seconds`]: schema 3, 7.6 µs to 128 s. Exists only with
    /// the feature `protobuf`, as `native_histograms` does.
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use tower_prometheus::{HttpMetricsLayer, NativeBuckets};
    ///
    /// let layer = HttpMetricsLayer::builder()
    ///     .native_histograms(true)
    ///     .native_buckets(NativeBuckets::new(0, 0.001, 64.0)?)
    ///     .build(&mut Registry::default())?;
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    #[cfg(feature = "protobuf")]
    #[cfg_attr(docsrs, doc(cfg(feature = "protobuf")))]
    pub fn native_buckets(mut self, buckets: NativeBuckets) -> Self {
        self.native_buckets = buckets;
        self
    }

    /// Without the feature `protobuf`: a build error naming the feature. Not public API.
    #[cfg(not(feature = "protobuf"))]
    #[doc(hidden)]
    pub fn native_buckets<T: needs_protobuf::NeedsProtobuf>(self, buckets: T) -> Self {
        let _ = buckets;
        self
    }

    /// Whether the duration histogram's buckets carry exemplars: the trace and span id
    /// (labels `trace_id` and `span_id`, as Go's `promhttp` and OpenTelemetry name them)
    /// of a recent request that fell into the bucket, with its duration and the time it
    /// finished; the same on `rpc_server_call_duration_seconds` for the gRPC calls the
    /// layer records (see [`grpc`](Self::grpc)). Defaults to `false`.
    ///
    /// The trace comes from [`trace_context`](Self::trace_context), by default the W3C
    /// `traceparent` header when its sampled flag is set (a malformed one is ignored).
    /// One exemplar per bucket and series, replaced at most once a second; written
    /// without a lock nor an allocation. Off, a request pays one branch. They are served
    /// in OpenMetrics text and protobuf by the crate's [`Exporter`](crate::Exporter),
    /// never in text 0.0.4, which has no syntax for them.
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use tower_prometheus::HttpMetricsLayer;
    ///
    /// let layer = HttpMetricsLayer::builder()
    ///     .exemplars(true)
    ///     .build(&mut Registry::default())?;
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    pub fn exemplars(mut self, enabled: bool) -> Self {
        self.exemplars = enabled;
        self
    }

    /// Where the trace context of a request comes from, for the
    /// [`exemplars`](Self::exemplars): a [`TraceContextSource`], such as a closure
    /// `Fn(&HeaderMap, &Extensions) -> Option<TraceContext>`, or `CurrentSpan`
    /// (feature `opentelemetry`: the span the service's `tracing-opentelemetry` records
    /// for the request, which needs the tracing layer outside this one). Defaults to
    /// [`Traceparent`].
    pub fn trace_context(mut self, source: impl TraceContextSource) -> Self {
        self.trace_context = TraceSource(Arc::new(source));
        self
    }

    /// Whether to record the request and response body size histograms. Defaults to
    /// `true`. Off, only the duration histogram and the in-flight gauge are recorded.
    pub fn body_sizes(mut self, enabled: bool) -> Self {
        self.body_sizes = enabled;
        self
    }

    /// Whether to label status codes by class (`2xx`, `4xx`) instead of the code.
    /// Defaults to `false`. Grouped, a 5xx response's `error_type` is its class too
    /// (`5xx`).
    pub fn group_status_codes(mut self, enabled: bool) -> Self {
        self.group_status_codes = enabled;
        self
    }

    /// A path whose requests are not recorded at all, compared with the request path
    /// exactly. Defaults to none: typical choices are `/metrics` and `/health`.
    ///
    /// It must start with `/`, otherwise [`build`](Self::build) returns
    /// [`Error::InvalidPath`] (it would match nothing).
    ///
    /// ```
    /// use tower_prometheus::HttpMetricsLayer;
    /// use tower_prometheus::prometheus_client::registry::Registry;
    ///
    /// let layer = HttpMetricsLayer::builder()
    ///     .exclude_path("/metrics")         // exactly /metrics
    ///     .exclude_prefix("/internal/")     // /internal/jobs, /internal/a/b
    ///     .exclude_route("/events/{id}")    // whatever matched that route
    ///     .build(&mut Registry::default())?;
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    pub fn exclude_path(mut self, path: impl Into<String>) -> Self {
        self.excluded_paths.push(path.into());
        self
    }

    /// A prefix of the paths whose requests are not recorded at all: `/internal/`
    /// excludes `/internal/jobs` but not `/internal` (add that with
    /// [`exclude_path`](Self::exclude_path)). Defaults to none.
    ///
    /// It must start with `/` (so `""` and `/` are refused: they would exclude
    /// everything, or nothing), otherwise [`build`](Self::build) returns
    /// [`Error::InvalidPath`].
    pub fn exclude_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.excluded_prefixes.push(prefix.into());
        self
    }

    /// A route template whose requests are not recorded at all, compared with the route
    /// label: `/events/{id}` excludes every request axum matched to that route (a
    /// server-sent events stream, say), and `/static/{*path}` those under a
    /// [`nested_service`](Self::nested_service) at `/static`. Defaults to none.
    ///
    /// Decided by the route's id, found once per request anyway: it costs nothing per
    /// request. An empty template is [`Error::InvalidPath`].
    pub fn exclude_route(mut self, template: impl Into<String>) -> Self {
        self.excluded_routes.push(template.into());
        self
    }

    /// A service mounted at `path` with axum's `Router::nest_service` (a `ServeDir`,
    /// say): requests under `path/` that have no route label get the route
    /// `{path}/{*path}`, so that they are not lumped with unmatched requests. Defaults to
    /// none.
    ///
    /// axum sets no `MatchedPath` for such requests, but it does for `path` itself,
    /// which is its own route. `path` must start with `/`; a trailing `/` is ignored.
    /// Otherwise [`build`](Self::build) returns [`Error::InvalidPath`].
    ///
    /// ```
    /// use axum::Router;
    /// use tower_prometheus::{HttpMetricsLayer, Metrics};
    ///
    /// let metrics = Metrics::builder()
    ///     .http(HttpMetricsLayer::builder().nested_service("/static"))
    ///     .build()?;
    /// let app: Router = Router::new()
    ///     .nest_service("/static", tower::service_fn(|_| async {
    ///         Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::empty()))
    ///     }))
    ///     .layer(metrics.http_layer());
    /// // GET /static/css/app.css is recorded with http_route="/static/{*path}".
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    pub fn nested_service(mut self, path: impl Into<String>) -> Self {
        self.nested_services.push(path.into());
        self
    }

    /// A label with the same value on every HTTP series, such as
    /// `service_name="invoicing"`. Defaults to none.
    ///
    /// The name must be a valid Prometheus label name not used by the layer itself,
    /// otherwise [`build`](Self::build) returns [`Error::InvalidLabelName`].
    pub fn const_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.const_labels.push((name.into(), value.into()));
        self
    }

    /// The most label sets each metric family holds. Defaults to
    /// [`DEFAULT_MAX_SERIES`] (2,000); from 1 to [`SERIES_LIMIT`] (100,000), otherwise
    /// [`build`](Self::build) returns [`Error::InvalidCardinalityLimit`].
    ///
    /// Beyond it, observations of new label sets (and of routes beyond that many
    /// distinct ones) go to one overflow series labelled `otel_metric_overflow="true"`,
    /// so that memory stays bounded whatever clients send.
    pub fn max_series(mut self, max: usize) -> Self {
        self.max_series = max;
        self
    }

    /// Whether to measure, per route, how the handlers use the runtime: each recorded
    /// request's future (the inner service's, up to the response head) is instrumented
    /// with the [`tokio_metrics::TaskMonitor`] of its route, and the monitors' totals are
    /// published as the `tokio_task_*` counters (time in polls, polls, slow polls,
    /// scheduling delay, long delays, idle time; see the crate docs' tables). Defaults to
    /// `false`.
    ///
    /// This answers the question the event-loop lag leaves open: *which route blocks
    /// the runtime?* A handler that does CPU work or a blocking call inside a poll shows
    /// slow polls and poll time on its route. The response body's polls are not counted
    /// (they run after the head, in the server's connection task). Requests without a
    /// route share one monitor, and so do routes beyond the
    /// [`max_series`](Self::max_series) limit; excluded requests are not instrumented.
    ///
    /// Cost, with it on: each poll of a request's future reads the clock three times and
    /// adds to the atomics of its route's monitor, shared by every thread serving that
    /// route, and each request allocates tokio-metrics' waker state once
    /// (`benches/README.md` has the figures). Off, it costs nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_prometheus::{HttpMetricsLayer, Metrics};
    ///
    /// let metrics = Metrics::builder()
    ///     .http(
    ///         HttpMetricsLayer::builder()
    ///             .task_monitors(true)
    ///             .slow_poll_threshold(Duration::from_millis(1)),
    ///     )
    ///     .build()?;
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    #[cfg(feature = "task-metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "task-metrics")))]
    pub fn task_monitors(mut self, enabled: bool) -> Self {
        self.task_monitors = enabled;
        self
    }

    /// With [`task_monitors`](Self::task_monitors), the shortest poll counted as slow in
    /// `tokio_task_slow_polls_total`. Defaults to tokio-metrics' default
    /// ([`TaskMonitor::DEFAULT_SLOW_POLL_THRESHOLD`](tokio_metrics::TaskMonitor::DEFAULT_SLOW_POLL_THRESHOLD),
    /// 50 µs).
    #[cfg(feature = "task-metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "task-metrics")))]
    pub fn slow_poll_threshold(mut self, threshold: std::time::Duration) -> Self {
        self.slow_poll_threshold = Some(threshold);
        self
    }

    /// With [`task_monitors`](Self::task_monitors), the shortest scheduling delay (from
    /// a wake-up to the next poll) counted in `tokio_task_long_delays_total`. Defaults
    /// to tokio-metrics' default
    /// ([`TaskMonitor::DEFAULT_LONG_DELAY_THRESHOLD`](tokio_metrics::TaskMonitor::DEFAULT_LONG_DELAY_THRESHOLD),
    /// 50 µs).
    #[cfg(feature = "task-metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "task-metrics")))]
    pub fn long_delay_threshold(mut self, threshold: std::time::Duration) -> Self {
        self.long_delay_threshold = Some(threshold);
        self
    }

    /// Whether gRPC calls (requests with `content-type: application/grpc`) are recorded
    /// in the RPC families (`rpc_server_call_duration_seconds`, with the method and the
    /// gRPC status) instead of the HTTP ones. Defaults to `true`; see
    /// [the crate docs](crate#grpc).
    ///
    /// Off, a gRPC call is an HTTP `POST` answered 200, whatever its gRPC status.
    ///
    /// ```
    /// use tower_prometheus::HttpMetricsLayer;
    /// use tower_prometheus::prometheus_client::registry::Registry;
    ///
    /// let layer = HttpMetricsLayer::builder().grpc(false).build(&mut Registry::default())?;
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    pub fn grpc(mut self, enabled: bool) -> Self {
        self.grpc = enabled;
        self
    }

    /// A service level objective of the route template `route`: published as a series of
    /// its own (`http_server_objective_ratio`), from which one generic rule set computes
    /// error ratios and burn-rate alerts. None by default. See [`Objective`] and
    /// [what counts as an error](Objective#what-counts-as-an-error).
    ///
    /// A route takes at most one objective of each kind. [`build`](Self::build) returns
    /// [`Error::InvalidObjective`] for a target not strictly between 0 and 1, a latency
    /// threshold that is not a bound of the [duration buckets](Self::duration_buckets), a
    /// second objective of a kind on a route, a route that does not start with `/` or one
    /// that is [excluded](Self::exclude_route).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_prometheus::http_metrics::{HttpMetricsLayer, Objective};
    /// use tower_prometheus::prometheus_client::registry::Registry;
    ///
    /// let error = HttpMetricsLayer::builder()
    ///     .objective("/api/invoices", Objective::latency(0.99, Duration::from_millis(300)))
    ///     .build(&mut Registry::default())
    ///     .unwrap_err();
    /// assert!(error.to_string().contains("300ms is not a bound of the duration buckets"));
    ///
    /// let layer = HttpMetricsLayer::builder()
    ///     .duration_buckets([0.1, 0.3, 1.0])
    ///     .objective("/api/invoices", Objective::latency(0.99, Duration::from_millis(300)))
    ///     .objective("/api/invoices", Objective::availability(0.999))
    ///     .build(&mut Registry::default())?;
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    pub fn objective(mut self, route: impl Into<String>, objective: Objective) -> Self {
        self.objectives.push((route.into(), objective));
        self
    }

    /// The cardinality limit chosen.
    pub(crate) fn max_series_value(&self) -> usize {
        self.max_series
    }

    /// The naming preset chosen, which the connection metrics follow.
    #[cfg(feature = "connections")]
    pub(crate) fn naming_value(&self) -> Naming {
        self.naming
    }

    /// The prefix of the naming's families: the one set, else the naming's.
    fn prefix_value(&self) -> Option<&str> {
        self.prefix
            .as_deref()
            .or(self.naming.names().default_prefix)
    }

    /// The families the naming names, with the prefix, a counter's without `_total`.
    pub(crate) fn families(&self) -> Vec<String> {
        self.naming.names().families(self.prefix_value())
    }

    /// The families of the task metrics, when the options have them.
    pub(crate) fn task_families(&self) -> &'static [&'static str] {
        #[cfg(feature = "task-metrics")]
        if self.task_monitors {
            return super::tasks::FAMILIES;
        }
        &[]
    }

    /// Validates the options and registers the metrics in `registry`.
    pub fn build(self, registry: &mut Registry) -> Result<HttpMetricsLayer, Error> {
        if !(1..=SERIES_LIMIT).contains(&self.max_series) {
            return Err(Error::InvalidCardinalityLimit);
        }
        let names = self.naming.names();
        let prefix = self.prefix_value().map(str::to_owned);
        if let Some(prefix) = prefix.as_ref().filter(|p| !is_valid_metric_name(p)) {
            return Err(Error::InvalidPrefix(prefix.clone()));
        }
        let mut seen = names.label_names();
        for (name, _) in &self.const_labels {
            if !is_valid_label_name(name) {
                return Err(Error::InvalidLabelName(format!(
                    "{name:?} is not a valid label name"
                )));
            }
            if seen.contains(&name.as_str()) || name == "le" {
                return Err(Error::InvalidLabelName(format!(
                    "{name:?} is already a label of the HTTP metrics"
                )));
            }
            seen.push(name);
        }
        for path in &self.excluded_paths {
            if !path.starts_with('/') {
                return Err(Error::InvalidPath(format!(
                    "excluded path {path:?}: a path starts with '/'"
                )));
            }
        }
        for prefix in &self.excluded_prefixes {
            if !prefix.starts_with('/') || prefix == "/" {
                return Err(Error::InvalidPath(format!(
                    "excluded prefix {prefix:?}: it starts with '/' and is not '/' alone"
                )));
            }
        }
        if self.excluded_routes.iter().any(String::is_empty) {
            return Err(Error::InvalidPath("an excluded route is empty".to_owned()));
        }
        let mut nested_services = Vec::with_capacity(self.nested_services.len());
        for path in self.nested_services {
            let prefix = path.strip_suffix('/').unwrap_or(&path);
            if !path.starts_with('/') || prefix.contains(['{', '}', '*']) {
                return Err(Error::InvalidPath(format!(
                    "nested service at {path:?}: a path starts with '/' and has no parameters"
                )));
            }
            nested_services.push(prefix.to_owned());
        }
        let duration_buckets = match self.duration_buckets {
            Some(bounds) => Buckets::new(bounds)?,
            None => Buckets::duration_seconds(),
        };
        let objectives = Objectives::new(
            names.objective,
            names.route,
            self.objectives,
            duration_buckets.bounds(),
            &self.excluded_routes,
        )?;
        let size_buckets = match (self.body_sizes, self.size_buckets) {
            (false, _) => None,
            (true, Some(bounds)) => Some(Buckets::new(bounds)?),
            (true, None) => Some(Buckets::size_bytes()),
        };
        // The route table holds this many routes, so route ids go up to it.
        #[cfg(feature = "task-metrics")]
        let max_route_id = self.max_series + self.excluded_routes.len() + nested_services.len();
        let rpc_buckets = self.grpc.then(|| duration_buckets.clone());
        let histograms = Histograms {
            duration: duration_buckets,
            native: self.native_histograms.then_some(self.native_buckets),
            exemplars: self.exemplars,
            sizes: size_buckets,
            max_series: self.max_series,
        };
        let family = ServerRequests::new(Config {
            names,
            grouped_status: self.group_status_codes,
            exemplars: self.exemplars.then_some(self.trace_context),
            max_routes: self.max_series,
            excluded_paths: self.excluded_paths,
            excluded_prefixes: self.excluded_prefixes,
            excluded_routes: self.excluded_routes,
            nested_services,
        });
        let recorder = Arc::new(Recorder::new(family, histograms));
        let registry = if self.const_labels.is_empty() {
            registry
        } else {
            registry.sub_registry_with_labels(
                self.const_labels
                    .into_iter()
                    .map(|(name, value)| (Cow::Owned(name), Cow::Owned(value))),
            )
        };
        // The naming's families, under its prefix.
        let named = match &prefix {
            Some(prefix) => registry.sub_registry_with_prefix(prefix),
            None => &mut *registry,
        };
        named.register_collector(Box::new(recorder.clone()));
        if !objectives.is_empty() {
            named.register_collector(Box::new(objectives));
        }
        #[cfg(feature = "task-metrics")]
        let tasks = self.task_monitors.then(|| {
            let monitors = Arc::new(super::tasks::Monitors::new(
                max_route_id,
                self.slow_poll_threshold,
                self.long_delay_threshold,
            ));
            registry.register_collector(Box::new(super::tasks::Collector {
                recorder: recorder.clone(),
                monitors: monitors.clone(),
            }));
            monitors
        });
        let grpc = rpc_buckets.map(|buckets| {
            Box::new(Shared::new(ServerCalls::register(
                buckets,
                self.max_series,
                self.exemplars,
                registry,
            )))
        });
        let recorders = Recorders {
            http: Shared::new(recorder),
            grpc,
            #[cfg(feature = "task-metrics")]
            tasks,
        };
        Ok(HttpMetricsLayer {
            recorders: Arc::new(recorders),
            route: DefaultRoute,
            classify: DefaultClassifier,
            request_size: ContentLength,
            scheme: UrlScheme::Http,
        })
    }
}

/// What a layer and its services share: the recorder of HTTP requests, and those of the
/// gRPC calls and the task monitors when the options have them.
///
/// One `Arc` of it per service: axum clones the layer's service for every request, and
/// each `Arc` a service holds is one more reference count written per request.
#[derive(Debug)]
pub(crate) struct Recorders {
    pub(crate) http: Shared<ServerRequests>,
    /// `None` when gRPC calls are recorded as HTTP requests (`grpc(false)`).
    pub(crate) grpc: Option<Box<Shared<ServerCalls>>>,
    /// The task monitors of the routes, when the layer has them (`tasks.rs`).
    #[cfg(feature = "task-metrics")]
    pub(crate) tasks: Option<Arc<super::tasks::Monitors>>,
}

/// What makes the native histogram setters a build error without the feature
/// `protobuf`.
#[cfg(not(feature = "protobuf"))]
mod needs_protobuf {
    /// Implemented by no type: the setters that need the feature `protobuf` take an
    /// argument bound by it when the feature is off, so that a call fails to build with
    /// this message (rather than "no method named …", which would not say why).
    #[diagnostic::on_unimplemented(
        message = "`native_histograms` and `native_buckets` need the feature `protobuf` of tower-prometheus",
        label = "native buckets are served only in the Prometheus protobuf format",
        note = "turn it on in Cargo.toml: tower-prometheus = {{ version = \"0.1\", features = [\"protobuf\"] }}"
    )]
    #[allow(unreachable_pub)] // Sealed: public in a private module.
    pub trait NeedsProtobuf {}
}
