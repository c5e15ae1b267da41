//! The scenarios the request benches share: one route, `GET /api/invoices/{id}` answering
//! a 204-byte JSON, served through the two paths users take, in each configuration.
//!
//! Paths ([`AxumClient`], [`HyperClient`]):
//!
//! - **axum Router**: the `Router` called in-process exactly as `axum::serve` calls it:
//!   through hyper-util's `TowerToHyperService`, which clones the service per request,
//!   then the response body streamed to its end. No socket and no HTTP parsing: what is
//!   left is the router and the layers.
//! - **hyper server**: a tower service behind hyper-util's `auto` server connection, as
//!   `examples/hyper.rs` serves it (service cloned per connection, and per request by
//!   `TowerToHyperService`), over an in-memory duplex pipe, with a hyper HTTP/1.1 client
//!   on the other end. hyper's own polling of the response body (the frames, the end of
//!   the stream, the announced length) is in the path; the kernel is not (no syscalls, so
//!   the counts under callgrind are the same on every run and the timings do not move
//!   with the network stack). The client's work is the same in every configuration and
//!   cancels out of every difference.
//!
//! Configurations ([`Config`]): see [`Config::describe`].
//!
//! Every bench of `benches/` includes this module and uses part of it.
#![allow(dead_code)]

pub mod floor;
pub mod hand_written;

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::util::MapRequest;
use tower::{Layer, ServiceExt, service_fn};
use tower_prometheus::{HttpMetricsLayer, Metrics, Naming};

/// The route of every scenario.
pub const ROUTE: &str = "/api/invoices/{id}";

/// The request every scenario sends.
pub const URI: &str = "/api/invoices/42";

/// The answer of the route: a 204-byte JSON invoice.
pub const INVOICE_JSON: &[u8; 204] = br#"{"id":42,"number":"INV-2026-042","seller_id":1,"client_id":7,"issued_on":"2026-11-30","due_on":"2026-12-30","currency":"EUR","total_excl_tax":"1250.00","total_tax":"250.00","total":"1500.00","paid":false}"#;

/// The configurations benched side by side on each path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// No metrics.
    Bare,
    /// The simplest end-of-body layer, duration only.
    Floor,
    /// The floor with body sizes, every request with the sampled `traceparent` of
    /// [`Config::TowerPrometheusNativeExemplars`]: the same metrics and the same
    /// request, so that the difference between the two is the layers' own work.
    FloorTraced,
    /// The simplest end-of-body layer with body sizes.
    FloorBodySizes,
    /// The duration-only floor, one instance for every thread.
    FloorShared,
    /// `Metrics::new().http_layer()`.
    TowerPrometheus,
    /// Ours with `body_sizes(false)`.
    TowerPrometheusDurationOnly,
    /// Ours with every option that works per request.
    TowerPrometheusFullOptions,
    /// Ours with `task_monitors(true)` (feature `task-metrics`).
    #[cfg(feature = "task-metrics")]
    TowerPrometheusTaskMetrics,
    /// Ours with native histograms and exemplars on, every request with a sampled
    /// `traceparent` (feature `protobuf`, without which native histograms are a build
    /// error).
    #[cfg(feature = "protobuf")]
    TowerPrometheusNativeExemplars,
    /// Ours with `naming(Naming::AxumPrometheus)`: in-flight gauges per route.
    TowerPrometheusAxumPreset,
    /// `axum-prometheus` 0.10.1's `PrometheusMetricLayer::pair()`.
    AxumPrometheus,
    /// The middleware one writes by hand with `prometheus-client`.
    HandWritten,
}

impl Config {
    /// Every configuration, in the order of the tables: those that need a feature
    /// (`task-metrics`, `protobuf`) only with it. `scripts/instructions.sh` builds with
    /// each such feature apart, so that the other scenarios show what the crate's
    /// default features cost.
    pub const ALL: [Config; Self::LIST.len()] = {
        let mut all = [Config::Bare; Self::LIST.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = Self::LIST[i];
            i += 1;
        }
        all
    };

    const LIST: &[Config] = &[
        Config::Bare,
        Config::Floor,
        Config::FloorTraced,
        Config::FloorBodySizes,
        Config::FloorShared,
        Config::TowerPrometheus,
        Config::TowerPrometheusDurationOnly,
        Config::TowerPrometheusFullOptions,
        #[cfg(feature = "protobuf")]
        Config::TowerPrometheusNativeExemplars,
        #[cfg(feature = "task-metrics")]
        Config::TowerPrometheusTaskMetrics,
        Config::TowerPrometheusAxumPreset,
        Config::AxumPrometheus,
        Config::HandWritten,
    ];

    /// The name of the configuration in bench ids, baselines and tables.
    pub fn name(self) -> &'static str {
        match self {
            Config::Bare => "bare",
            Config::Floor => "floor",
            Config::FloorTraced => "floor_traced",
            Config::FloorBodySizes => "floor_body_sizes",
            Config::FloorShared => "floor_shared",
            Config::TowerPrometheus => "tower_prometheus",
            Config::TowerPrometheusDurationOnly => "tower_prometheus_duration_only",
            Config::TowerPrometheusFullOptions => "tower_prometheus_full_options",
            #[cfg(feature = "task-metrics")]
            Config::TowerPrometheusTaskMetrics => "tower_prometheus_task_metrics",
            #[cfg(feature = "protobuf")]
            Config::TowerPrometheusNativeExemplars => "tower_prometheus_native_exemplars",
            Config::TowerPrometheusAxumPreset => "tower_prometheus_axum_preset",
            Config::AxumPrometheus => "axum_prometheus",
            Config::HandWritten => "hand_written_prometheus_client",
        }
    }

    /// What the configuration is, for the READMEs and the self-tests.
    pub fn describe(self) -> &'static str {
        match self {
            Config::Bare => "no metrics",
            Config::Floor => {
                "the simplest end-of-body layer: two clock reads, one observe into a \
                 lock-free histogram, in-flight +1/-1, the start time and an `Arc` of the \
                 metrics carried from `call` to the end of the body; no labels"
            }
            Config::FloorTraced => {
                "the floor with body sizes, every request with the sampled `traceparent` \
                 header of ours with native histograms and exemplars (the client's \
                 insertion counted in both)"
            }
            Config::FloorBodySizes => {
                "the same with the two body size histograms: the request body wrapped, \
                 response bytes counted per frame, three observes"
            }
            Config::FloorShared => {
                "the duration-only floor, one instance for both threads: its `Arc`'s count \
                 and its in-flight gauge on cache lines both cores write, as for any layer \
                 whose metrics the threads share (on one thread, the same as the floor)"
            }
            Config::TowerPrometheus => "`Metrics::new().http_layer()`: default options",
            Config::TowerPrometheusDurationOnly => "ours with `body_sizes(false)`",
            Config::TowerPrometheusFullOptions => {
                "ours with `exclude_path(\"/metrics\")`, `exclude_path(\"/health\")` and \
                 `const_label(\"service_name\", \"invoicing\")`, body sizes on"
            }
            #[cfg(feature = "task-metrics")]
            Config::TowerPrometheusTaskMetrics => {
                "ours with `task_monitors(true)`: the request's future instrumented with \
                 its route's tokio-metrics `TaskMonitor` (clock reads and atomics on the \
                 route's monitor each poll, its waker state allocated each request)"
            }
            #[cfg(feature = "protobuf")]
            Config::TowerPrometheusNativeExemplars => {
                "ours with `native_histograms(true)` and `exemplars(true)`, body sizes on, \
                 every request with a sampled `traceparent` header (which the client sets: \
                 its insertion is counted too)"
            }
            Config::TowerPrometheusAxumPreset => {
                "ours with `naming(Naming::AxumPrometheus)`: axum-prometheus' names, the \
                 in-flight gauge per route and method (its group found from the route id)"
            }
            Config::AxumPrometheus => "`axum_prometheus::PrometheusMetricLayer::pair()` (0.10.1)",
            Config::HandWritten => {
                "`prometheus-client` by hand: `String` labels, `Family::get_or_create`, \
                 its mutex histogram, timing the handler (not the body); \
                 `axum::middleware::from_fn_with_state` on axum, a boxed-future tower \
                 service on hyper"
            }
        }
    }

    /// The floor to hold this configuration to: the same metrics, done by the simplest
    /// layer. `None` for the configurations that are not ours.
    pub fn floor(self) -> Option<Config> {
        match self {
            Config::TowerPrometheusDurationOnly => Some(Config::Floor),
            Config::TowerPrometheus
            | Config::TowerPrometheusFullOptions
            | Config::TowerPrometheusAxumPreset => Some(Config::FloorBodySizes),
            // The floor sent the same requests, a sampled `traceparent` included.
            #[cfg(feature = "protobuf")]
            Config::TowerPrometheusNativeExemplars => Some(Config::FloorTraced),
            _ => None,
        }
    }
}

/// The options of [`Config::TowerPrometheusFullOptions`].
pub fn full_options() -> Metrics {
    Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .exclude_path("/metrics")
                .exclude_path("/health")
                .const_label("service_name", "invoicing"),
        )
        .build()
        .expect("valid options")
}

/// The options of [`Config::TowerPrometheusTaskMetrics`].
#[cfg(feature = "task-metrics")]
fn task_metrics() -> Metrics {
    Metrics::builder()
        .http(HttpMetricsLayer::builder().task_monitors(true))
        .build()
        .expect("valid options")
}

/// The options of [`Config::TowerPrometheusNativeExemplars`].
#[cfg(feature = "protobuf")]
fn native_exemplars() -> Metrics {
    Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .native_histograms(true)
                .exemplars(true),
        )
        .build()
        .expect("valid options")
}

/// The sampled `traceparent` header of [`Config::TowerPrometheusNativeExemplars`]'
/// requests: its name made once, as a client that sends it on every request would.
pub const TRACEPARENT_NAME: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The value of that header.
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The options of [`Config::TowerPrometheusAxumPreset`].
fn axum_preset() -> Metrics {
    Metrics::builder()
        .http(HttpMetricsLayer::builder().naming(Naming::AxumPrometheus))
        .build()
        .expect("valid options")
}

fn duration_only() -> Metrics {
    Metrics::builder()
        .http(HttpMetricsLayer::builder().body_sizes(false))
        .build()
        .expect("valid options")
}

/// One configuration's app: its metrics, made once, and the services each thread builds
/// on them.
///
/// Every thread gets an app of its own, as a server with one current-thread runtime per
/// core builds one, sharing what a real app shares: ours, axum-prometheus's and the
/// hand-written middleware's metrics (and their reference counts). The floors are the
/// exception: each thread gets its own, so that on two threads the floor pays for no
/// cache line shared between the cores (its in-flight gauge is one atomic; ours are
/// sharded) and stays a lower bound; [`Config::FloorShared`] is the duration-only floor
/// shared like ours, to show what sharing costs.
///
/// Ours is built with `Metrics` (every default collector), outside any runtime so that
/// the lag probe does not start: it would wake every 10 ms on the runtime being measured.
/// `benches/whole_service.rs` runs the probe.
#[derive(Clone)]
pub struct App {
    config: Config,
    shared: Shared,
}

type AxumPrometheusPair = (
    axum_prometheus::PrometheusMetricLayer<'static>,
    axum_prometheus::metrics_exporter_prometheus::PrometheusHandle,
);

#[derive(Clone)]
enum Shared {
    Nothing,
    Floor(floor::FloorLayer),
    Ours(Metrics),
    AxumPrometheus(Box<AxumPrometheusPair>),
    HandWritten(hand_written::Metrics),
}

impl App {
    pub fn new(config: Config) -> Self {
        let shared = match config {
            Config::Bare | Config::Floor | Config::FloorTraced | Config::FloorBodySizes => {
                Shared::Nothing
            }
            Config::FloorShared => Shared::Floor(floor::FloorLayer::new()),
            Config::TowerPrometheus => Shared::Ours(Metrics::new()),
            Config::TowerPrometheusDurationOnly => Shared::Ours(duration_only()),
            Config::TowerPrometheusFullOptions => Shared::Ours(full_options()),
            #[cfg(feature = "task-metrics")]
            Config::TowerPrometheusTaskMetrics => Shared::Ours(task_metrics()),
            #[cfg(feature = "protobuf")]
            Config::TowerPrometheusNativeExemplars => Shared::Ours(native_exemplars()),
            Config::TowerPrometheusAxumPreset => Shared::Ours(axum_preset()),
            Config::AxumPrometheus => Shared::AxumPrometheus(Box::new(axum_prometheus())),
            Config::HandWritten => Shared::HandWritten(hand_written::Metrics::new()),
        };
        Self { config, shared }
    }

    pub fn config(&self) -> Config {
        self.config
    }

    /// Whether this configuration's requests carry a sampled `traceparent`.
    fn traced(&self) -> Option<HeaderValue> {
        let traced = match self.config {
            Config::FloorTraced => true,
            #[cfg(feature = "protobuf")]
            Config::TowerPrometheusNativeExemplars => true,
            _ => false,
        };
        traced.then(|| HeaderValue::from_static(TRACEPARENT))
    }

    /// A client of this configuration's [`router`](Self::router) on the axum path.
    pub fn axum_client(&self) -> AxumClient {
        let mut client = AxumClient::new(self.router());
        client.traceparent = self.traced();
        client
    }

    /// The count of requests ours recorded on [`ROUTE`] (every series of the duration
    /// histogram with that route label), read from its exposition; `None` when the
    /// configuration is not ours.
    pub fn recorded_requests(&self) -> Option<u64> {
        let Shared::Ours(metrics) = &self.shared else {
            return None;
        };
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, metrics.registry())
            .expect("the registry encodes");
        let (count, route) = match self.config {
            Config::TowerPrometheusAxumPreset => {
                ("axum_http_requests_duration_seconds_count{", "endpoint")
            }
            _ => ("http_server_request_duration_seconds_count{", "http_route"),
        };
        let route = format!("{route}=\"{ROUTE}\"");
        Some(
            text.lines()
                .filter(|line| line.starts_with(count) && line.contains(&route))
                .map(|line| {
                    let value = line.rsplit(' ').next().expect("a value");
                    value.parse::<u64>().expect("a count")
                })
                .sum(),
        )
    }

    /// The axum app: the invoice route and a `/metrics` route (the exporter where there
    /// is one, an empty answer otherwise, so that every configuration routes through the
    /// same table), the metrics layer around both with `Router::layer`.
    pub fn router(&self) -> Router {
        let routes = |metrics: Router| Router::new().route(ROUTE, get(show_invoice)).merge(metrics);
        let no_metrics = || Router::new().route("/metrics", get(|| async { "" }));
        match (&self.shared, self.config) {
            (Shared::Nothing, Config::Floor) => {
                routes(no_metrics()).layer(floor::FloorLayer::new())
            }
            (Shared::Nothing, Config::FloorBodySizes | Config::FloorTraced) => {
                routes(no_metrics()).layer(floor::FloorSizesLayer::new())
            }
            (Shared::Nothing, _) => routes(no_metrics()),
            (Shared::Floor(layer), _) => routes(no_metrics()).layer(layer.clone()),
            (Shared::Ours(metrics), _) => {
                routes(Router::new().route_service("/metrics", metrics.exporter()))
                    .layer(metrics.http_layer())
            }
            (Shared::AxumPrometheus(pair), _) => {
                let (layer, handle) = (&pair.0, pair.1.clone());
                routes(Router::new().route("/metrics", get(move || async move { handle.render() })))
                    .layer(layer.clone())
            }
            (Shared::HandWritten(metrics), _) => routes(hand_written::metrics_route(
                metrics.clone(),
            ))
            .layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                hand_written::track_metrics,
            )),
        }
    }

    /// Connects a [`HyperClient`] to a new connection serving this configuration's hyper
    /// service, on the current runtime.
    pub async fn hyper_client(&self) -> HyperClient {
        match (&self.shared, self.config) {
            (Shared::Nothing, Config::Floor) => {
                HyperClient::connect(floor::FloorLayer::new().layer(service_fn(hyper_handler)))
                    .await
            }
            (Shared::Nothing, Config::FloorBodySizes | Config::FloorTraced) => {
                let mut client = HyperClient::connect(
                    floor::FloorSizesLayer::new().layer(service_fn(hyper_handler)),
                )
                .await;
                client.traceparent = self.traced();
                client
            }
            (Shared::Nothing, _) => HyperClient::connect(service_fn(hyper_handler)).await,
            (Shared::Floor(layer), _) => {
                HyperClient::connect(layer.layer(service_fn(hyper_handler))).await
            }
            (Shared::Ours(metrics), _) => {
                // A closure rather than the fn: its signature follows `route_fn`'s bound.
                let layer = metrics
                    .http_layer()
                    .route_fn(|request: &Request<Incoming>| hyper_route(request));
                let mut client = HyperClient::connect(layer.layer(service_fn(hyper_handler))).await;
                client.traceparent = self.traced();
                client
            }
            (Shared::AxumPrometheus(pair), _) => {
                HyperClient::connect(pair.0.layer(service_fn(hyper_handler))).await
            }
            (Shared::HandWritten(metrics), _) => {
                let layer = hand_written::Layer::new(metrics.clone());
                HyperClient::connect(layer.layer(service_fn(hyper_handler))).await
            }
        }
    }
}

/// The handler of [`ROUTE`] on axum.
pub async fn show_invoice(Path(id): Path<u64>) -> impl IntoResponse {
    black_box(id);
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        Bytes::from_static(INVOICE_JSON),
    )
}

/// `axum-prometheus`'s layer and handle. Made once per process: `pair()` installs a
/// global `metrics` recorder, and spawns its upkeep task (every 5 s) on the current
/// runtime, here one of its own driven by a thread of its own, as it would run beside
/// a server's tasks.
pub fn axum_prometheus() -> AxumPrometheusPair {
    static PAIR: OnceLock<AxumPrometheusPair> = OnceLock::new();
    PAIR.get_or_init(|| {
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("axum-prometheus-upkeep".into())
            .spawn(move || {
                let runtime = current_thread_runtime();
                runtime.block_on(async {
                    sender
                        .send(axum_prometheus::PrometheusMetricLayer::pair())
                        .expect("the bench waits for the pair");
                    std::future::pending::<()>().await;
                });
            })
            .expect("a thread");
        receiver.recv().expect("the upkeep thread makes the pair")
    })
    .clone()
}

/// The route template of a request on the hyper path, as `examples/hyper.rs` gives it.
pub fn hyper_route<B>(request: &Request<B>) -> Option<&'static str> {
    request
        .uri()
        .path()
        .starts_with("/api/invoices/")
        .then_some(ROUTE)
}

/// The handler of the hyper path: the invoice, 404 elsewhere.
pub async fn hyper_handler<B>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = if hyper_route(&request).is_some() {
        let mut response = Response::new(Full::new(Bytes::from_static(INVOICE_JSON)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    } else {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
    };
    Ok(response)
}

/// A client of a path: sends one request and streams the response body to its end.
pub trait Client {
    /// One request, its response body read to the end.
    fn request(&mut self) -> impl Future<Output = ()>;
}

/// Streams a body to its end.
async fn drain<B>(body: B)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        black_box(frame.expect("the body streams"));
    }
}

/// The service `axum::serve` makes of a `Router` for each connection.
type ServedRouter = TowerToHyperService<MapRequest<Router, fn(Request<Body>) -> Request<Body>>>;

/// The axum path: the `Router` called as `axum::serve` calls it, in-process.
pub struct AxumClient {
    service: ServedRouter,
    uri: Uri,
    /// Sent with every request, when set.
    traceparent: Option<HeaderValue>,
}

impl AxumClient {
    /// What `axum::serve` does with a `Router` for each connection: `with_state(())`
    /// turns every route into a `Route` once (without it, each request would apply the
    /// layers to its handler again), the request body becomes an axum `Body` (here it is
    /// one already), and hyper-util's `TowerToHyperService` clones the result per request.
    pub fn new(router: Router) -> Self {
        let to_body: fn(Request<Body>) -> Request<Body> = |request| request.map(Body::new);
        Self {
            service: TowerToHyperService::new(router.with_state(()).map_request(to_body)),
            uri: Uri::from_static(URI),
            traceparent: None,
        }
    }
}

impl Client for AxumClient {
    async fn request(&mut self) {
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = self.uri.clone();
        if let Some(traceparent) = &self.traceparent {
            request
                .headers_mut()
                .insert(TRACEPARENT_NAME, traceparent.clone());
        }
        // What `axum::serve` does for each request: `TowerToHyperService` clones the
        // service and calls the clone.
        let response = hyper::service::Service::call(&self.service, request)
            .await
            .expect("the router answers");
        debug_assert_eq!(response.status(), StatusCode::OK);
        drain(response.into_body()).await;
    }
}

/// The hyper path: an HTTP/1.1 client on one end of an in-memory pipe, hyper-util's
/// `auto` server connection serving the service on the other, both tasks on the current
/// runtime.
pub struct HyperClient {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    uri: Uri,
    /// Sent with every request, when set.
    traceparent: Option<HeaderValue>,
}

impl HyperClient {
    /// Spawns the server side of a new connection for `service` and connects to it.
    pub async fn connect<S, B>(service: S) -> Self
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let connection = auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(server), TowerToHyperService::new(service))
            .into_owned();
        tokio::spawn(async move {
            // Ends with an error when the client goes away mid-request; nothing to do.
            let _ = connection.await;
        });
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .expect("the handshake of an in-memory pipe succeeds");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Self {
            sender,
            uri: Uri::from_static(URI),
            traceparent: None,
        }
    }
}

impl Client for HyperClient {
    async fn request(&mut self) {
        self.sender
            .ready()
            .await
            .expect("the connection stays open");
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.uri.clone();
        if let Some(traceparent) = &self.traceparent {
            request
                .headers_mut()
                .insert(TRACEPARENT_NAME, traceparent.clone());
        }
        let response = self
            .sender
            .send_request(request)
            .await
            .expect("the server answers");
        debug_assert_eq!(response.status(), StatusCode::OK);
        drain(response.into_body()).await;
    }
}

/// The runtime of every scenario: one thread, as a current-thread `#[tokio::main]`.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// `n` requests, one after another.
pub async fn requests<C: Client>(client: &mut C, n: u64) {
    for _ in 0..n {
        client.request().await;
    }
}

/// Requests made before anything is measured, so that the series exist, the caches are
/// warm and the connection's buffers have grown to their size.
pub const WARM_UP_REQUESTS: u64 = 100;

/// A client of one path, connected on a current-thread runtime of its own.
pub struct Connected<C> {
    pub runtime: tokio::runtime::Runtime,
    pub client: C,
}

impl<C: Client> Connected<C> {
    /// Connects with `connect` on a new current-thread runtime, then warms up.
    pub fn new<F, Fut>(connect: F) -> Self
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = C>,
    {
        let runtime = current_thread_runtime();
        let mut client = runtime.block_on(connect());
        runtime.block_on(requests(&mut client, WARM_UP_REQUESTS));
        Self { runtime, client }
    }

    /// `n` requests.
    pub fn run(&mut self, n: u64) {
        self.runtime.block_on(requests(&mut self.client, n));
    }
}

/// Threads each driving a client on its own current-thread runtime (as a server with one
/// current-thread runtime per core would), started once and kept for every sample.
pub struct Workers {
    senders: Vec<mpsc::Sender<u64>>,
    elapsed: mpsc::Receiver<Duration>,
    start: Arc<Barrier>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// `threads` threads; thread `i` connects its client with `connect(i)`.
    pub fn start<F, Fut, C>(threads: usize, connect: F) -> Self
    where
        F: Fn(usize) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = C>,
        C: Client,
    {
        let start = Arc::new(Barrier::new(threads + 1));
        let (elapsed_sender, elapsed) = mpsc::channel();
        let (ready_sender, ready) = mpsc::channel();
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for thread in 0..threads {
            let (sender, receiver) = mpsc::channel::<u64>();
            senders.push(sender);
            let (connect, start, elapsed, ready) = (
                connect.clone(),
                start.clone(),
                elapsed_sender.clone(),
                ready_sender.clone(),
            );
            handles.push(
                std::thread::Builder::new()
                    .name(format!("bench-worker-{thread}"))
                    .spawn(move || {
                        let mut connected = Connected::new(|| connect(thread));
                        ready.send(()).expect("the bench waits");
                        while let Ok(n) = receiver.recv() {
                            start.wait();
                            let begin = Instant::now();
                            connected.run(n);
                            elapsed.send(begin.elapsed()).expect("the bench waits");
                        }
                    })
                    .expect("a thread"),
            );
        }
        for _ in 0..threads {
            ready.recv().expect("every worker connects");
        }
        Self {
            senders,
            elapsed,
            start,
            threads: handles,
        }
    }

    /// `n` requests on every thread at once; the time until the last one finished.
    pub fn run(&self, n: u64) -> Duration {
        for sender in &self.senders {
            sender.send(n).expect("the workers run");
        }
        self.start.wait();
        (0..self.senders.len())
            .map(|_| self.elapsed.recv().expect("the workers report"))
            .max()
            .expect("at least one worker")
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.senders.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
