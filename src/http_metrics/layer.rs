//! The layer and its builder.

use std::borrow::Cow;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tower_layer::Layer;

use super::labels::Naming;
use super::recorder::{Config, Recorder, RecorderHandle};
use http::Request;

use super::route::{DefaultRoute, RouteFn};
use super::service::HttpMetrics;
use crate::error::{Error, is_valid_label_name};
use crate::histogram::Buckets;

/// The default of [`HttpMetricsBuilder::max_series`].
pub const DEFAULT_MAX_SERIES: usize = 2_000;

/// A [`Layer`] that records HTTP request metrics; see the [module docs](super).
///
/// Cloning is cheap and clones record into the same metrics, so one layer can wrap
/// several routers or servers.
///
/// ```
/// use prometheus_client::registry::Registry;
/// use tower_prometheus::http_metrics::{HttpMetricsLayer, Naming};
///
/// let mut registry = Registry::default();
/// let layer = HttpMetricsLayer::builder()
///     .naming(Naming::PromClient)
///     .exclude_path("/metrics")
///     .build(&mut registry)?;
/// # Ok::<(), tower_prometheus::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer<R = DefaultRoute> {
    recorder: Arc<RecorderHandle>,
    route: R,
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

impl<R> HttpMetricsLayer<R> {
    /// Takes route labels from a closure instead of [`DefaultRoute`].
    ///
    /// The closure returns the route *template* (`/users/{id}`), never the raw path, or
    /// `None` when the request matched no route. The cardinality limit caps the damage
    /// if it returns raw paths anyway.
    ///
    /// ```
    /// use http::Request;
    /// use prometheus_client::registry::Registry;
    /// use tower_prometheus::http_metrics::HttpMetricsLayer;
    ///
    /// let layer = HttpMetricsLayer::new(&mut Registry::default()).route_fn(
    ///     |request: &Request<String>| match request.uri().path() {
    ///         "/" => Some("/"),
    ///         path if path.starts_with("/users/") => Some("/users/{id}"),
    ///         _ => None,
    ///     },
    /// );
    /// ```
    pub fn route_fn<B, F>(self, route: F) -> HttpMetricsLayer<RouteFn<B>>
    where
        F: Fn(&Request<B>) -> Option<&'static str> + Send + Sync + 'static,
    {
        self.route_label(RouteFn::new(route))
    }

    /// Takes route labels from any [`RouteLabel`](super::RouteLabel) instead of
    /// [`DefaultRoute`].
    pub fn route_label<R2>(self, route: R2) -> HttpMetricsLayer<R2> {
        HttpMetricsLayer {
            recorder: self.recorder,
            route,
        }
    }
}

impl<S, R: Clone> Layer<S> for HttpMetricsLayer<R> {
    type Service = HttpMetrics<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics::new(inner, self.recorder.clone(), self.route.clone())
    }
}

/// Options of an [`HttpMetricsLayer`]; [`build`](Self::build) registers its metrics.
#[derive(Clone, Debug)]
pub struct HttpMetricsBuilder {
    naming: Naming,
    duration_buckets: Option<Vec<f64>>,
    size_buckets: Option<Vec<f64>>,
    body_sizes: bool,
    group_status_codes: bool,
    excluded_paths: Vec<String>,
    const_labels: Vec<(String, String)>,
    max_series: usize,
}

impl Default for HttpMetricsBuilder {
    fn default() -> Self {
        Self {
            naming: Naming::default(),
            duration_buckets: None,
            size_buckets: None,
            body_sizes: true,
            group_status_codes: false,
            excluded_paths: Vec::new(),
            const_labels: Vec::new(),
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

impl HttpMetricsBuilder {
    /// The metric and label names. Defaults to [`Naming::OpenTelemetry`].
    pub fn naming(mut self, naming: Naming) -> Self {
        self.naming = naming;
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

    /// A path whose requests are not recorded at all (compared with the request path,
    /// exactly). Defaults to none: typical choices are `/metrics` and `/health`.
    pub fn exclude_path(mut self, path: impl Into<String>) -> Self {
        self.excluded_paths.push(path.into());
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
    /// [`DEFAULT_MAX_SERIES`] (2,000).
    ///
    /// Beyond it, observations of new label sets (and of routes beyond that many
    /// distinct ones) go to one overflow series labelled `otel_metric_overflow="true"`,
    /// so that memory stays bounded whatever clients send.
    pub fn max_series(mut self, max: usize) -> Self {
        self.max_series = max;
        self
    }

    /// Validates the options and registers the metrics in `registry`.
    pub fn build(self, registry: &mut Registry) -> Result<HttpMetricsLayer, Error> {
        if self.max_series == 0 {
            return Err(Error::InvalidCardinalityLimit);
        }
        let names = self.naming.names();
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
        let duration_buckets = match self.duration_buckets {
            Some(bounds) => Buckets::new(bounds)?,
            None => Buckets::duration_seconds(),
        };
        let size_buckets = match (self.body_sizes, self.size_buckets) {
            (false, _) => None,
            (true, Some(bounds)) => Some(Buckets::new(bounds)?),
            (true, None) => Some(Buckets::size_bytes()),
        };
        let recorder = Recorder::new(Config {
            names,
            grouped_status: self.group_status_codes,
            duration_buckets,
            size_buckets,
            max_series: self.max_series,
            excluded_paths: self.excluded_paths.into_iter().map(Into::into).collect(),
        });
        let registry = if self.const_labels.is_empty() {
            registry
        } else {
            registry.sub_registry_with_labels(
                self.const_labels
                    .into_iter()
                    .map(|(name, value)| (Cow::Owned(name), Cow::Owned(value))),
            )
        };
        registry.register_collector(Box::new(recorder.clone()));
        Ok(HttpMetricsLayer {
            recorder: Arc::new(RecorderHandle::new(recorder)),
            route: DefaultRoute,
        })
    }
}
