//! The middleware one writes by hand with `prometheus-client`: time the handler (not the
//! body), then `Family::get_or_create(..).observe(..)` with `String` labels built per
//! request and `prometheus-client`'s histogram. On axum it is an
//! `axum::middleware::from_fn_with_state` function, as axum's docs show; on hyper, a tower
//! service returning a boxed future.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tower_prometheus::Buckets;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    method: String,
    path: String,
    status: u16,
}

type Requests = Family<Labels, Histogram, fn() -> Histogram>;

/// The family and the registry it is in.
#[derive(Clone)]
pub struct Metrics {
    requests: Requests,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        fn histogram() -> Histogram {
            Histogram::new(Buckets::duration_seconds().bounds().iter().copied())
        }
        let requests: Requests = Family::new_with_constructor(histogram);
        let mut registry = Registry::default();
        registry.register(
            "http_request_duration_seconds",
            "Duration of HTTP requests",
            requests.clone(),
        );
        Self {
            requests,
            registry: Arc::new(registry),
        }
    }

    fn observe(&self, method: String, path: String, status: u16, start: Instant) {
        self.requests
            .get_or_create(&Labels {
                method,
                path,
                status,
            })
            .observe(start.elapsed().as_secs_f64());
    }
}

/// The axum middleware.
pub async fn track_metrics(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let path = match request.extensions().get::<MatchedPath>() {
        Some(matched) => matched.as_str().to_owned(),
        None => request.uri().path().to_owned(),
    };
    let method = request.method().to_string();
    let response = next.run(request).await;
    metrics.observe(method, path, response.status().as_u16(), start);
    response
}

/// `GET /metrics` of the hand-written middleware: the registry encoded.
pub fn metrics_route(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || async move {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &metrics.registry)
                .map(|()| text)
                .map_err(|_| http::StatusCode::INTERNAL_SERVER_ERROR)
        }),
    )
}

/// The tower layer of the hyper path.
#[derive(Clone)]
pub struct Layer(Metrics);

impl Layer {
    pub fn new(metrics: Metrics) -> Self {
        Self(metrics)
    }
}

impl<S> tower::Layer<S> for Layer {
    type Service = HandWritten<S>;

    fn layer(&self, inner: S) -> HandWritten<S> {
        HandWritten {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct HandWritten<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, ResB> tower::Service<http::Request<B>> for HandWritten<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResB>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResB>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let start = Instant::now();
        let path = super::hyper_route(&request)
            .unwrap_or(request.uri().path())
            .to_owned();
        let method = request.method().to_string();
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            metrics.observe(method, path, response.status().as_u16(), start);
            Ok(response)
        })
    }
}
