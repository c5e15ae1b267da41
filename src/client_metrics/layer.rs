//! The client layer.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tower_layer::Layer;

use super::classify::ClientErrors;
use super::family::ClientRequests;
use super::service::ClientMetrics;
use crate::grpc::ClientCalls;
use crate::histogram::Buckets;
use crate::record::Shared;

/// The most label sets of each client family: a series' server and method ids are 16
/// bits each.
const MAX_CLIENT_SERIES: usize = 0xffff;

/// A [`Layer`] that records outgoing HTTP requests and gRPC calls; see the
/// [module docs](super). Made by [`Metrics::client_layer`](crate::Metrics::client_layer).
///
/// Cloning is cheap and clones record into the same metrics.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_prometheus::Metrics;
///
/// let metrics = Metrics::new();
/// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<http_body_util::Full<bytes::Bytes>>();
/// // Requests to http://api.internal:8080/... are recorded with
/// // server_address="api.internal", server_port="8080".
/// let client = ServiceBuilder::new().layer(metrics.client_layer()).service(client);
/// ```
#[derive(Clone, Debug)]
pub struct ClientMetricsLayer<C = ClientErrors> {
    pub(super) http: Arc<Shared<ClientRequests>>,
    pub(super) rpc: Arc<Shared<ClientCalls>>,
    pub(super) classify: C,
    /// `host:port` of requests whose URI has no authority.
    pub(super) server: Option<Arc<str>>,
}

impl ClientMetricsLayer {
    /// The layer of a [`Metrics`](crate::Metrics): its families registered in `registry`.
    pub(crate) fn register(
        registry: &mut Registry,
        duration_buckets: Buckets,
        max_series: usize,
    ) -> Self {
        let max_series = max_series.min(MAX_CLIENT_SERIES);
        let http = ClientRequests::register(duration_buckets.clone(), max_series, registry);
        let rpc = ClientCalls::register(duration_buckets, max_series, registry);
        Self {
            http: Arc::new(Shared::new(http)),
            rpc: Arc::new(Shared::new(rpc)),
            classify: ClientErrors,
            server: None,
        }
    }
}

impl<C> ClientMetricsLayer<C> {
    /// The server (`host:port`) of requests whose URI has no authority, such as those of
    /// a tonic client made with `new(channel)`. Defaults to none: such requests have no
    /// `server_address` and `server_port`.
    ///
    /// ```
    /// use tower_prometheus::Metrics;
    ///
    /// let layer = Metrics::new().client_layer().server_address("pdp.internal:50051");
    /// ```
    pub fn server_address(mut self, address: impl Into<String>) -> Self {
        self.server = Some(Arc::from(address.into()));
        self
    }

    /// Classifies the inner service's errors with `classify` instead of
    /// [`ClientErrors`]: a [`Classify`](crate::http_metrics::Classify) of
    /// `Box<dyn Error + Send + Sync>` (and of response heads, for HTTP requests).
    ///
    /// ```
    /// use tower_prometheus::Metrics;
    /// use tower_prometheus::http_metrics::{Classify, ErrorType};
    ///
    /// #[derive(Clone)]
    /// struct AllOther;
    /// impl Classify<Box<dyn std::error::Error + Send + Sync>> for AllOther {}
    ///
    /// let layer = Metrics::new().client_layer().classify(AllOther);
    /// ```
    pub fn classify<C2>(self, classify: C2) -> ClientMetricsLayer<C2> {
        ClientMetricsLayer {
            http: self.http,
            rpc: self.rpc,
            classify,
            server: self.server,
        }
    }
}

impl<S, C: Clone> Layer<S> for ClientMetricsLayer<C> {
    type Service = ClientMetrics<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientMetrics {
            inner,
            layer: self.clone(),
        }
    }
}
