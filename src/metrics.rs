//! [`Metrics`]: one registry with the crate's metrics wired, in two lines.

use std::sync::{Arc, PoisonError, RwLock};
#[cfg(feature = "runtime")]
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::client_metrics::ClientMetricsLayer;
use crate::error::{Error, is_valid_metric_name};
use crate::exporter::Exporter;
use crate::http_metrics::{HttpMetricsBuilder, HttpMetricsLayer};

/// A registry with the HTTP metrics and the default collectors registered, the layer
/// that records them and the exporter that serves them.
///
/// Registered by default: the HTTP metrics, the process collector (feature `process`,
/// Linux), the Tokio runtime collector with its lag probe (feature `runtime`) and the
/// heap collector (feature `heap`, which shows metrics only when `CountingAllocator` is
/// the global allocator). The builder turns each off.
///
/// ```
/// use axum::{Router, routing::get};
///
/// let metrics = tower_prometheus::Metrics::new();
/// let app: Router = Router::new()
///     .route("/api/invoices/{id}", get(|| async { "an invoice" }))
///     .route_service("/metrics", metrics.exporter())
///     .layer(metrics.http_layer());
/// ```
///
/// Cloning is cheap: clones share the registry and the layer's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    http_layer: HttpMetricsLayer,
    client_layer: ClientMetricsLayer,
    #[cfg(feature = "connections")]
    connections: crate::connections::ConnectionMetrics,
    late: Arc<LateMetrics>,
    #[cfg(feature = "metrics-facade")]
    pub(crate) facade: crate::MetricsRecorder,
}

impl Metrics {
    /// A new registry with the default options.
    ///
    /// Built inside a Tokio runtime, the runtime collector observes that runtime and its
    /// lag probe starts at once; built outside one, it attaches to the runtime of the
    /// first scrape. Never fails and never panics.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default options are valid")
    }

    /// A builder to choose the options.
    ///
    /// ```
    /// use prometheus_client::{metrics::counter::Counter, registry::Registry};
    /// use tower_prometheus::{HttpMetricsLayer, Metrics, Naming};
    ///
    /// // Metrics of your own go in the registry before it is handed over.
    /// let mut registry = Registry::default();
    /// let invoices: Counter = Counter::default();
    /// registry.register("invoices_created", "Invoices created", invoices.clone());
    ///
    /// let metrics = Metrics::builder()
    ///     .registry(registry)
    ///     .http(HttpMetricsLayer::builder().naming(Naming::PromClient).exclude_path("/metrics"))
    ///     .build()?;
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    pub fn builder() -> MetricsBuilder {
        MetricsBuilder::default()
    }

    /// The layer recording HTTP metrics into this registry. Every call returns a handle
    /// on the same metrics.
    pub fn http_layer(&self) -> HttpMetricsLayer {
        self.http_layer.clone()
    }

    /// The layer recording outgoing HTTP requests and gRPC calls into this registry, for
    /// a tower client (tonic's `Channel`, hyper-util's `Client`): see
    /// [`client_metrics`](crate::client_metrics). Every call returns a handle on the same
    /// metrics.
    ///
    /// ```
    /// use tower::ServiceBuilder;
    ///
    /// let metrics = tower_prometheus::Metrics::new();
    /// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
    ///     .build_http::<http_body_util::Empty<bytes::Bytes>>();
    /// let client = ServiceBuilder::new().layer(metrics.client_layer()).service(client);
    /// ```
    pub fn client_layer(&self) -> ClientMetricsLayer {
        self.client_layer.clone()
    }

    /// `listener` wrapped so that its connections are measured in this registry: for
    /// `axum::serve(metrics.listener(listener), app)`, or a hyper-util accept loop. See
    /// [`connections`](crate::connections).
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router) -> std::io::Result<()> {
    /// let metrics = tower_prometheus::Metrics::new();
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
    /// axum::serve(metrics.listener(listener), app).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "connections")]
    #[cfg_attr(docsrs, doc(cfg(feature = "connections")))]
    pub fn listener<L: crate::connections::Accept>(
        &self,
        listener: L,
    ) -> crate::connections::MeteredListener<L> {
        self.connections.listener(listener)
    }

    /// The `/metrics` service serving this registry. Each call gives an exporter of its
    /// own (its clones share its bound on scrapes in flight and its encodes): mount one
    /// and let the router clone it. Its options are its builder methods:
    ///
    /// ```
    /// let metrics = tower_prometheus::Metrics::new();
    /// let exporter = metrics.exporter().max_requests_in_flight(4);
    /// let app: axum::Router = axum::Router::new().route_service("/metrics", exporter);
    /// ```
    pub fn exporter(&self) -> Exporter {
        Exporter::new(self.registry.clone())
    }

    /// The registry, to encode it elsewhere.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Registers a metric created after [`build`](MetricsBuilder::build), such as one
    /// of a connection pool opened later: it is served from the next scrape on, by every
    /// clone of these `Metrics`. Metrics known before building go in the registry given
    /// to [`MetricsBuilder::registry`] instead.
    ///
    /// As with `prometheus-client`'s `Registry::register`, the help text gets a full
    /// stop, and a counter's name its `_total` suffix: do not add it. The
    /// [`prefix`](MetricsBuilder::prefix) is not applied: it is for the crate's metrics.
    /// A name Prometheus does not accept, one ending in `_total` for a counter (or in its
    /// unit), one of the crate's own metrics, or one whose family (its name with its
    /// unit's suffix, a counter's `_total` aside) is already registered this way is an
    /// [`Error::InvalidMetricName`], and nothing is registered (two families of one name
    /// would make Prometheus reject the whole scrape). The crate cannot see the names of
    /// the registry you gave it: do not register those twice.
    ///
    /// ```
    /// use tower_prometheus::Metrics;
    /// use tower_prometheus::prometheus_client::metrics::gauge::Gauge;
    ///
    /// let metrics = Metrics::new();
    /// // Later, once the pool exists:
    /// let connections: Gauge = Gauge::default();
    /// metrics.register("db_pool_connections", "Open database connections", connections.clone())?;
    /// connections.set(4);
    ///
    /// let mut text = String::new();
    /// tower_prometheus::prometheus_client::encoding::text::encode(&mut text, metrics.registry())?;
    /// assert!(text.contains("# HELP db_pool_connections Open database connections.\n"));
    /// assert!(text.contains("\ndb_pool_connections 4\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register(
        &self,
        name: impl Into<String>,
        help: impl Into<String>,
        metric: impl Metric,
    ) -> Result<(), Error> {
        self.late
            .register(name.into(), help.into(), None, Box::new(metric))
    }

    /// [`register`](Self::register) with a unit, which the name gets as a suffix
    /// (`Unit::Seconds` makes `job_duration` `job_duration_seconds`).
    ///
    /// ```
    /// use tower_prometheus::Metrics;
    /// use tower_prometheus::prometheus_client::metrics::gauge::Gauge;
    /// use tower_prometheus::prometheus_client::registry::Unit;
    ///
    /// let metrics = Metrics::new();
    /// let last_run: Gauge = Gauge::default();
    /// metrics.register_with_unit("job_last_run", "When the job last ran", Unit::Seconds, last_run.clone())?;
    /// last_run.set(1_700_000_000);
    ///
    /// let mut text = String::new();
    /// tower_prometheus::prometheus_client::encoding::text::encode(&mut text, metrics.registry())?;
    /// assert!(text.contains("\njob_last_run_seconds 1700000000\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register_with_unit(
        &self,
        name: impl Into<String>,
        help: impl Into<String>,
        unit: Unit,
        metric: impl Metric,
    ) -> Result<(), Error> {
        self.late
            .register(name.into(), help.into(), Some(unit), Box::new(metric))
    }
}

/// Metrics registered after the registry was built, served by a collector registered
/// in it at build time. Scrapes read them under a read lock, which registering takes
/// for writing only while it pushes one entry.
#[derive(Debug, Default)]
struct LateMetrics {
    metrics: RwLock<Vec<LateMetric>>,
    /// The families of the crate's own metrics, prefixed, without `_total`.
    reserved: Vec<String>,
}

#[derive(Debug)]
struct LateMetric {
    name: String,
    help: String,
    unit: Option<Unit>,
    metric: Box<dyn Metric>,
}

impl LateMetrics {
    fn register(
        &self,
        name: String,
        help: String,
        unit: Option<Unit>,
        metric: Box<dyn Metric>,
    ) -> Result<(), Error> {
        if !is_valid_metric_name(&name) {
            return Err(Error::InvalidMetricName(format!(
                "{name:?}: use letters, digits and '_', not starting with a digit"
            )));
        }
        if metric.metric_type() == MetricType::Counter && name.ends_with("_total") {
            return Err(Error::InvalidMetricName(format!(
                "{name:?}: a counter's name gets its _total suffix when encoded"
            )));
        }
        if let Some(unit) = &unit {
            if name.ends_with(&format!("_{}", unit.as_str())) {
                return Err(Error::InvalidMetricName(format!(
                    "{name:?}: the name gets its unit suffix _{} when encoded",
                    unit.as_str()
                )));
            }
        }
        let family = match &unit {
            Some(unit) => format!("{name}_{}", unit.as_str()),
            None => name.clone(),
        };
        if self
            .reserved
            .iter()
            .any(|ours| *ours == without_total(&family))
        {
            return Err(Error::InvalidMetricName(format!(
                "{family:?} is a metric of tower-prometheus"
            )));
        }
        // Only pushes happen under the lock: a poisoned one still holds whole entries.
        let mut metrics = self.metrics.write().unwrap_or_else(PoisonError::into_inner);
        // Decided on the family names as encoded (unit suffix included, `_total` left
        // out): `x` in seconds and `x_seconds` would be two families `x_seconds`.
        if metrics
            .iter()
            .any(|late| without_total(&late.family()) == without_total(&family))
        {
            return Err(Error::InvalidMetricName(format!(
                "{family:?} is already registered"
            )));
        }
        metrics.push(LateMetric {
            name,
            help: help + ".",
            unit,
            metric,
        });
        Ok(())
    }
}

impl LateMetric {
    /// Its family's name as encoded: with its unit's suffix.
    fn family(&self) -> String {
        match &self.unit {
            Some(unit) => format!("{}_{}", self.name, unit.as_str()),
            None => self.name.clone(),
        }
    }
}

/// A family name without the `_total` a counter's samples carry: the name a clash is
/// decided on.
fn without_total(family: &str) -> &str {
    family.strip_suffix("_total").unwrap_or(family)
}

impl Collector for LateMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let metrics = self.metrics.read().unwrap_or_else(PoisonError::into_inner);
        for late in metrics.iter().filter(|late| !late.metric.is_empty()) {
            let metric = encoder.encode_descriptor(
                &late.name,
                &late.help,
                late.unit.as_ref(),
                late.metric.metric_type(),
            )?;
            late.metric.encode(metric)?;
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Options of [`Metrics`].
#[derive(Debug)]
pub struct MetricsBuilder {
    registry: Option<Registry>,
    prefix: Option<String>,
    http: HttpMetricsBuilder,
    #[cfg(feature = "process")]
    process: bool,
    #[cfg(feature = "runtime")]
    runtime: bool,
    #[cfg(feature = "runtime")]
    lag_resolution: Duration,
    #[cfg(feature = "heap")]
    heap: bool,
    #[cfg(feature = "metrics-facade")]
    pub(crate) metrics_recorder: crate::MetricsRecorderBuilder,
}

// Derivable only without the `process`, `runtime` and `heap` features.
#[allow(clippy::derivable_impls)]
impl Default for MetricsBuilder {
    fn default() -> Self {
        Self {
            registry: None,
            prefix: None,
            http: HttpMetricsBuilder::default(),
            #[cfg(feature = "process")]
            process: true,
            #[cfg(feature = "runtime")]
            runtime: true,
            #[cfg(feature = "runtime")]
            lag_resolution: crate::DEFAULT_LAG_RESOLUTION,
            #[cfg(feature = "heap")]
            heap: true,
            #[cfg(feature = "metrics-facade")]
            metrics_recorder: crate::MetricsRecorderBuilder::default(),
        }
    }
}

impl MetricsBuilder {
    /// The registry to add the crate's metrics to, with metrics of your own already in
    /// it. Defaults to an empty registry.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// A prefix for the names of all of the crate's metrics, collectors included
    /// (`myapp` gives `myapp_http_server_request_duration_seconds`,
    /// `myapp_process_cpu_seconds_total`, …), not for those already in the registry
    /// you pass. Dashboards and alerts must use the prefixed names, so the ones in
    /// `monitoring/` expect none. Defaults to none.
    ///
    /// It must be a valid metric name without colons, otherwise
    /// [`build`](Self::build) returns [`Error::InvalidPrefix`].
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The options of the HTTP layer. Defaults to [`HttpMetricsBuilder::default`].
    pub fn http(mut self, http: HttpMetricsBuilder) -> Self {
        self.http = http;
        self
    }

    /// Whether to register the [`ProcessCollector`](crate::ProcessCollector) (CPU,
    /// memory, file descriptors, threads, start time). Defaults to `true`.
    #[cfg(feature = "process")]
    #[cfg_attr(docsrs, doc(cfg(feature = "process")))]
    pub fn process(mut self, enabled: bool) -> Self {
        self.process = enabled;
        self
    }

    /// Whether to register the [`RuntimeCollector`](crate::RuntimeCollector) (Tokio
    /// workers, tasks, queue, busy time, event-loop lag). Defaults to `true`.
    #[cfg(feature = "runtime")]
    #[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
    pub fn runtime(mut self, enabled: bool) -> Self {
        self.runtime = enabled;
        self
    }

    /// How often the event-loop lag probe samples. Defaults to
    /// [`DEFAULT_LAG_RESOLUTION`](crate::DEFAULT_LAG_RESOLUTION) (10 ms); zero is
    /// [`Error::InvalidLagResolution`].
    #[cfg(feature = "runtime")]
    #[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
    pub fn lag_resolution(mut self, resolution: Duration) -> Self {
        self.lag_resolution = resolution;
        self
    }

    /// Whether to register the [`HeapCollector`](crate::HeapCollector). Defaults to
    /// `true`; it shows nothing unless [`CountingAllocator`](crate::CountingAllocator)
    /// is the global allocator.
    #[cfg(feature = "heap")]
    #[cfg_attr(docsrs, doc(cfg(feature = "heap")))]
    pub fn heap(mut self, enabled: bool) -> Self {
        self.heap = enabled;
        self
    }

    /// The families these options register, prefixed, without `_total`.
    fn families(&self) -> Vec<String> {
        #[cfg_attr(
            not(any(feature = "process", feature = "runtime", feature = "heap")),
            allow(unused_mut)
        )]
        let mut families: Vec<String> = self.http.families();
        families.extend(self.http.task_families().iter().map(|f| f.to_string()));
        families.extend(crate::grpc::FAMILIES.iter().map(|f| f.to_string()));
        families.extend(
            crate::client_metrics::FAMILIES
                .iter()
                .map(|f| f.to_string()),
        );
        #[cfg(feature = "connections")]
        families.extend(crate::connections::families(self.naming()));
        #[cfg(feature = "process")]
        if self.process {
            families.extend(crate::process::FAMILIES.iter().map(|f| f.to_string()));
        }
        #[cfg(feature = "runtime")]
        if self.runtime {
            families.extend(crate::runtime::FAMILIES.iter().map(|f| f.to_string()));
        }
        #[cfg(feature = "heap")]
        if self.heap {
            families.extend(crate::heap::FAMILIES.iter().map(|f| f.to_string()));
        }
        match &self.prefix {
            Some(prefix) => families.iter().map(|f| format!("{prefix}_{f}")).collect(),
            None => families,
        }
    }

    /// The naming preset of the HTTP options, which the connection metrics follow.
    #[cfg(feature = "connections")]
    fn naming(&self) -> crate::Naming {
        self.http.naming_value()
    }

    /// Validates the options and registers the metrics.
    pub fn build(self) -> Result<Metrics, Error> {
        let reserved = self.families();
        #[cfg(feature = "connections")]
        let naming = self.naming();
        let mut registry = self.registry.unwrap_or_default();
        let late = Arc::new(LateMetrics {
            metrics: RwLock::default(),
            reserved,
        });
        registry.register_collector(Box::new(late.clone()));
        // Facade families hold their names in `late`, so that each refuses the other's.
        #[cfg(feature = "metrics-facade")]
        let facade = {
            let late = late.clone();
            let claim = move |name: &str, kind| {
                let placeholder = Box::new(crate::metrics_facade::Placeholder(kind));
                late.register(name.to_owned(), String::new(), None, placeholder)
            };
            self.metrics_recorder
                .register(&mut registry, Some(Box::new(claim)))?
        };
        let ours = match &self.prefix {
            Some(prefix) if !is_valid_metric_name(prefix) => {
                return Err(Error::InvalidPrefix(prefix.clone()));
            }
            Some(prefix) => registry.sub_registry_with_prefix(prefix),
            None => &mut registry,
        };
        let max_series = self.http.max_series_value();
        #[cfg(feature = "connections")]
        let connections = crate::connections::ConnectionMetrics::new(ours, naming);
        let http_layer = self.http.build(ours)?;
        let client_layer =
            ClientMetricsLayer::register(ours, crate::Buckets::duration_seconds(), max_series);
        #[cfg(feature = "process")]
        if self.process {
            ours.register_collector(Box::new(crate::ProcessCollector::new()));
        }
        #[cfg(feature = "runtime")]
        if self.runtime {
            ours.register_collector(Box::new(crate::RuntimeCollector::attach_when_possible(
                self.lag_resolution,
            )?));
        }
        #[cfg(feature = "heap")]
        if self.heap {
            ours.register_collector(Box::new(crate::HeapCollector::new()));
        }
        Ok(Metrics {
            registry: Arc::new(registry),
            http_layer,
            client_layer,
            #[cfg(feature = "connections")]
            connections,
            late,
            #[cfg(feature = "metrics-facade")]
            facade,
        })
    }
}
