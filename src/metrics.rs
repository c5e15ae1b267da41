//! [`Metrics`]: one registry with the crate's metrics wired, in two lines.

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::error::{Error, is_valid_metric_name};
use crate::exporter::Exporter;
use crate::http::{HttpMetricsBuilder, HttpMetricsLayer};

/// A registry with the HTTP metrics registered, the layer that records them and the
/// exporter that serves them.
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
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default options are valid")
    }

    /// A builder to choose the options.
    ///
    /// ```
    /// use prometheus_client::{metrics::counter::Counter, registry::Registry};
    /// use tower_prometheus::{Metrics, http::{HttpMetricsLayer, Naming}};
    ///
    /// // Metrics of your own go in the registry before it is handed over.
    /// let mut registry = Registry::default();
    /// let invoices: Counter = Counter::default();
    /// registry.register("invoices_created", "Invoices created", invoices.clone());
    ///
    /// let metrics = Metrics::builder()
    ///     .registry(registry)
    ///     .prefix("invoicing")
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
#[derive(Debug, Default)]
pub struct MetricsBuilder {
    registry: Option<Registry>,
    prefix: Option<String>,
    http: HttpMetricsBuilder,
}

impl MetricsBuilder {
    /// The registry to add the crate's metrics to, with metrics of your own already in
    /// it. Defaults to an empty registry.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// A prefix for the names of the crate's metrics (`myapp` gives
    /// `myapp_http_server_request_duration_seconds`). Defaults to none.
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
        Ok(Metrics {
            registry: Arc::new(registry),
            http_layer,
        })
    }
}
