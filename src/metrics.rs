//! [`Metrics`]: one registry with the crate's metrics wired, in two lines.

use std::sync::Arc;
#[cfg(feature = "runtime")]
use std::time::Duration;

use prometheus_client::registry::Registry;

use crate::error::{Error, is_valid_metric_name};
use crate::exporter::Exporter;
use crate::http_metrics::{HttpMetricsBuilder, HttpMetricsLayer};

/// A registry with the HTTP metrics and the default collectors registered, the layer
/// that records them and the exporter that serves them.
///
/// Registered by default: the HTTP metrics, the process collector (feature `process`,
/// Linux), the Tokio runtime collector with its lag probe (feature `runtime`) and the
/// heap collector (feature `heap`, which shows metrics only when
/// [`CountingAllocator`](crate::CountingAllocator) is the global allocator). The builder
/// turns each off.
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

    /// The `/metrics` service serving this registry.
    pub fn exporter(&self) -> Exporter {
        Exporter::new(self.registry.clone())
    }

    /// The registry, to encode it elsewhere.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
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
}

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

    /// Validates the options and registers the metrics.
    pub fn build(self) -> Result<Metrics, Error> {
        let mut registry = self.registry.unwrap_or_default();
        let ours = match &self.prefix {
            Some(prefix) if !is_valid_metric_name(prefix) => {
                return Err(Error::InvalidPrefix(prefix.clone()));
            }
            Some(prefix) => registry.sub_registry_with_prefix(prefix),
            None => &mut registry,
        };
        let http_layer = self.http.build(ours)?;
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
        })
    }
}
