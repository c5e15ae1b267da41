//! Exemplars from the service's own spans (`CurrentSpan`): a real axum Router, tower-http's
//! `TraceLayer` making each request's server span, tracing-opentelemetry over the
//! OpenTelemetry SDK with its in-memory exporter. Each exemplar of the OpenMetrics scrape
//! is looked up among the spans the exporter received.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::routing::get;
use http::{HeaderMap, Request};
use http_body_util::BodyExt as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use tower::ServiceExt as _;
use tower_http::trace::TraceLayer;
use tower_prometheus::{CurrentSpan, Exporter, HttpMetricsLayer};
use tracing::Instrument as _;
use tracing::subscriber::DefaultGuard;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The service's tracing, as an application sets it up: tracing-opentelemetry over the
/// SDK, here exporting to memory; installed for this test's thread.
struct Tracing {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
    _default: DefaultGuard,
}

impl Tracing {
    fn new(sampler: Sampler) -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_sampler(sampler)
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        Self {
            exporter,
            _provider: provider,
            _default: tracing::subscriber::set_default(subscriber),
        }
    }

    fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().expect("spans")
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The request's server span, continuing the caller's trace when it sent one: what a
/// service's `make_span_with` does.
fn server_span(request: &Request<Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", |path| path.as_str());
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        otel.name = %format!("{} {route}", request.method()),
        http.route = route,
    );
    let caller = TraceContextPropagator::new().extract(&Headers(request.headers()));
    span.set_parent(caller)
        .expect("a span of the OpenTelemetry layer");
    span
}

/// Where the tracing layer goes, beside the metrics layer.
#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// The tracing layer outside the metrics layer: the one that works.
    TracingOutside,
    /// The metrics layer outside the tracing layer.
    MetricsOutside,
}

fn app(order: Order) -> (Router, Exporter) {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = HttpMetricsLayer::builder()
        .exemplars(true)
        .trace_context(CurrentSpan)
        .build(&mut registry)
        .expect("valid options");
    let exporter = Exporter::new(std::sync::Arc::new(registry));
    let routes = Router::new()
        .route("/invoices", get(|| async { "[]" }))
        .route("/invoices/{id}", get(|| async { "{}" }));
    let trace = TraceLayer::new_for_http().make_span_with(server_span);
    let app = match order {
        Order::TracingOutside => routes.layer(metrics).layer(trace),
        Order::MetricsOutside => routes.layer(trace).layer(metrics),
    };
    (app, exporter)
}

async fn get_with(app: &Router, path: &str, traceparent: Option<&str>) {
    let mut request = Request::get(path);
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("valid"))
        .await
        .expect("infallible");
    assert!(response.status().is_success());
    // To the end of the body: the request's span closes, and is exported, with it.
    response.into_body().collect().await.expect("a body");
}

async fn scrape(exporter: &Exporter) -> String {
    let request = Request::get("/metrics")
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .body(Body::empty())
        .expect("valid");
    let response = exporter.clone().oneshot(request).await.expect("infallible");
    let body = response.into_body().collect().await.expect("a body");
    String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8")
}

/// An exemplar of the duration histogram: its series' route, its trace and span.
#[derive(Debug)]
struct Exemplar {
    route: String,
    trace: TraceId,
    span: SpanId,
}

fn exemplars(openmetrics: &str) -> Vec<Exemplar> {
    openmetrics
        .lines()
        .filter(|line| line.starts_with("http_server_request_duration_seconds_bucket{"))
        .filter_map(|line| {
            let (sample, exemplar) = line.split_once(" # {")?;
            let label = |text: &str, name: &str| {
                let start = text.find(&format!("{name}=\""))? + name.len() + 2;
                let len = text[start..].find('"')?;
                Some(text[start..start + len].to_owned())
            };
            let trace = label(exemplar, "trace_id").expect("a trace_id");
            let span = label(exemplar, "span_id").expect("a span_id");
            Some(Exemplar {
                route: label(sample, "http_route").expect("a route"),
                trace: TraceId::from_hex(&trace).expect("hex"),
                span: SpanId::from_hex(&span).expect("hex"),
            })
        })
        .collect()
}

fn request_count(openmetrics: &str) -> u64 {
    openmetrics
        .lines()
        .filter(|line| line.starts_with("http_server_request_duration_seconds_count{"))
        .map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("a count")
        })
        .sum()
}

/// The exported server span each exemplar names, checked to be of the exemplar's route.
fn spans_named<'a>(exemplars: &[Exemplar], spans: &'a [SpanData]) -> Vec<&'a SpanData> {
    let by_id: HashMap<(TraceId, SpanId), &SpanData> = spans
        .iter()
        .map(|span| {
            let context = &span.span_context;
            ((context.trace_id(), context.span_id()), span)
        })
        .collect();
    exemplars
        .iter()
        .map(|exemplar| {
            let span = by_id
                .get(&(exemplar.trace, exemplar.span))
                .unwrap_or_else(|| panic!("{exemplar:?} names no exported span: {spans:#?}"));
            assert_eq!(span.span_kind, SpanKind::Server, "{span:?}");
            let route = span
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "http.route")
                .map(|kv| kv.value.as_str().into_owned());
            assert_eq!(route.as_deref(), Some(exemplar.route.as_str()), "{span:?}");
            *span
        })
        .collect()
}

#[tokio::test]
async fn without_a_traceparent_exemplars_name_the_services_own_server_spans() {
    let tracing = Tracing::new(Sampler::AlwaysOn);
    let (app, exporter) = app(Order::TracingOutside);
    for path in ["/invoices", "/invoices/1", "/invoices", "/invoices/2"] {
        get_with(&app, path, None).await;
    }
    let openmetrics = scrape(&exporter).await;
    let exemplars = exemplars(&openmetrics);
    let spans = tracing.spans();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    // One exemplar per bucket and second: at least the first request of each route's.
    let mut routes: Vec<&str> = exemplars.iter().map(|e| e.route.as_str()).collect();
    routes.dedup();
    assert_eq!(routes, ["/invoices", "/invoices/{id}"], "{openmetrics}");
    for span in spans_named(&exemplars, &spans) {
        // Each request started its trace here: a root span.
        assert_eq!(span.parent_span_id, SpanId::INVALID, "{span:?}");
    }
}

#[tokio::test]
async fn with_a_traceparent_the_trace_is_the_callers_and_the_span_the_services() {
    let tracing = Tracing::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let (app, exporter) = app(Order::TracingOutside);
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    get_with(&app, "/invoices", Some(&traceparent)).await;
    let exemplars = exemplars(&scrape(&exporter).await);
    assert_eq!(exemplars.len(), 1, "{exemplars:?}");
    let caller_trace = TraceId::from_hex(CALLER_TRACE).expect("hex");
    let caller_span = SpanId::from_hex(CALLER_SPAN).expect("hex");
    assert_eq!(exemplars[0].trace, caller_trace);
    assert_ne!(exemplars[0].span, caller_span);
    let spans = tracing.spans();
    let named = spans_named(&exemplars, &spans);
    // The service's span, a child of the caller's.
    assert_eq!(named[0].parent_span_id, caller_span);
}

#[tokio::test]
async fn unsampled_spans_give_no_exemplar() {
    // Sampled out by the service's sampler, and by the caller's decision.
    let tracing = Tracing::new(Sampler::AlwaysOff);
    let (app, exporter) = app(Order::TracingOutside);
    get_with(&app, "/invoices", None).await;
    drop(tracing);
    let tracing = Tracing::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let unsampled = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");
    get_with(&app, "/invoices/1", Some(&unsampled)).await;
    // A sampled one beside them, so that the absence is the sampling's.
    get_with(&app, "/invoices/1", None).await;

    let openmetrics = scrape(&exporter).await;
    assert_eq!(request_count(&openmetrics), 3, "{openmetrics}");
    let exemplars = exemplars(&openmetrics);
    assert_eq!(exemplars.len(), 1, "{openmetrics}");
    let spans = tracing.spans();
    assert_eq!(
        spans.len(),
        1,
        "only the sampled request's span is exported"
    );
    spans_named(&exemplars, &spans);
}

#[tokio::test]
async fn the_wrong_layer_order_gives_no_exemplar_not_a_wrong_one() {
    let tracing = Tracing::new(Sampler::AlwaysOn);
    let (app, exporter) = app(Order::MetricsOutside);
    get_with(&app, "/invoices", None).await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    get_with(&app, "/invoices/1", Some(&traceparent)).await;
    // A span of the application's own entered around the server (a connection's, say):
    // current when the metrics layer is called, but of another trace than the caller's.
    let connection = tracing::info_span!("connection");
    async {
        get_with(&app, "/invoices/1", Some(&traceparent)).await;
    }
    .instrument(connection.clone())
    .await;
    drop(connection);

    let openmetrics = scrape(&exporter).await;
    assert_eq!(request_count(&openmetrics), 3, "{openmetrics}");
    let exemplars = exemplars(&openmetrics);
    assert!(exemplars.is_empty(), "{exemplars:?}");
    // The requests were traced all the same: three server spans, the connection's.
    let spans = tracing.spans();
    let servers = spans
        .iter()
        .filter(|span| span.span_kind == SpanKind::Server)
        .count();
    assert_eq!((servers, spans.len()), (3, 4), "{spans:#?}");
}

/// gRPC served: a real tonic server on 127.0.0.1, tower-http's `TraceLayer` for gRPC
/// outside the HTTP metrics layer, which records the calls as
/// `rpc_server_call_duration_seconds`.
mod grpc {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use http::uri::PathAndQuery;
    use tonic::codegen::BoxFuture;
    use tonic::transport::{Channel, Server};
    use tower::ServiceBuilder;

    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Message {
        #[prost(uint32, tag = "1")]
        n: u32,
    }

    /// `test.Echo/Unary`, written as tonic's code generator writes a service.
    #[derive(Clone)]
    struct Echo;

    impl tonic::server::NamedService for Echo {
        const NAME: &'static str = "test.Echo";
    }

    struct Unary;

    impl tonic::server::UnaryService<Message> for Unary {
        type Response = Message;
        type Future = BoxFuture<tonic::Response<Message>, tonic::Status>;

        fn call(&mut self, request: tonic::Request<Message>) -> Self::Future {
            Box::pin(async move { Ok(tonic::Response::new(request.into_inner())) })
        }
    }

    impl<B> tower::Service<http::Request<B>> for Echo
    where
        B: http_body::Body + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<B>) -> Self::Future {
            let codec = tonic_prost::ProstCodec::<Message, Message>::default();
            Box::pin(async move { Ok(tonic::server::Grpc::new(codec).unary(Unary, request).await) })
        }
    }

    /// The server's span of a call: `otel.kind` server, named by its method.
    fn call_span<B>(request: &http::Request<B>) -> tracing::Span {
        let method = request.uri().path().trim_start_matches('/');
        let span = tracing::info_span!(
            "call",
            otel.kind = "server",
            otel.name = method,
            rpc.method = method,
        );
        let caller = TraceContextPropagator::new().extract(&Headers(request.headers()));
        span.set_parent(caller)
            .expect("a span of the OpenTelemetry layer");
        span
    }

    #[tokio::test]
    async fn grpc_calls_served_get_the_exemplars_of_their_server_spans() {
        let tracing = Tracing::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = HttpMetricsLayer::builder()
            .exemplars(true)
            .trace_context(CurrentSpan)
            .build(&mut registry)
            .expect("valid options");
        let exporter = Exporter::new(std::sync::Arc::new(registry));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("a bound address");
        let server = Server::builder()
            .layer(
                ServiceBuilder::new()
                    .layer(TraceLayer::new_for_grpc().make_span_with(call_span))
                    .layer(metrics),
            )
            .add_service(Echo)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(async move { server.await.expect("the server runs") });

        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .connect()
            .await
            .expect("connect to the test server");
        let mut client = tonic::client::Grpc::new(channel);
        let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
        for with_caller in [false, true] {
            let mut request = tonic::Request::new(Message { n: 1 });
            if with_caller {
                request
                    .metadata_mut()
                    .insert("traceparent", traceparent.parse().expect("ASCII"));
            }
            client.ready().await.expect("ready");
            let codec = tonic_prost::ProstCodec::<Message, Message>::default();
            client
                .unary(
                    request,
                    PathAndQuery::from_static("/test.Echo/Unary"),
                    codec,
                )
                .await
                .expect("an answer");
        }
        // The server ends a call (and its span) when its response stream has ended, on
        // its own schedule: wait for both server spans, at most 10 s. (hyper's and h2's
        // own spans are exported too: no filter here.)
        let servers = || {
            let mut spans = tracing.spans();
            spans.retain(|span| span.span_kind == SpanKind::Server);
            spans
        };
        let mut spans = servers();
        for _ in 0..1000 {
            if spans.len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            spans = servers();
        }
        assert_eq!(spans.len(), 2, "{spans:#?}");

        let openmetrics = scrape(&exporter).await;
        let exemplars: Vec<(TraceId, SpanId)> = openmetrics
            .lines()
            .filter(|line| line.starts_with("rpc_server_call_duration_seconds_bucket{"))
            .filter_map(|line| {
                let exemplar = line.split_once(" # {")?.1;
                let hex = |name: &str| {
                    let start = exemplar.find(&format!("{name}=\""))? + name.len() + 2;
                    exemplar.get(start..start + exemplar[start..].find('"')?)
                };
                Some((
                    TraceId::from_hex(hex("trace_id")?).expect("hex"),
                    SpanId::from_hex(hex("span_id")?).expect("hex"),
                ))
            })
            .collect();
        // One exemplar if both calls fell in one bucket within a second (the first
        // call's), two if a loaded machine put them in two buckets: each is checked.
        assert!(
            (1..=2).contains(&exemplars.len()),
            "{} exemplars: {openmetrics}",
            exemplars.len()
        );
        let caller_trace = TraceId::from_hex(CALLER_TRACE).expect("hex");
        let caller_span = SpanId::from_hex(CALLER_SPAN).expect("hex");
        for (trace, span) in exemplars {
            let named = spans
                .iter()
                .find(|s| s.span_context.trace_id() == trace && s.span_context.span_id() == span)
                .unwrap_or_else(|| panic!("no exported span {trace} {span}: {spans:#?}"));
            assert_eq!(named.span_kind, SpanKind::Server);
            assert_eq!(named.name, "test.Echo/Unary");
            if trace == caller_trace {
                // The call with a caller: the service's span, a child of the caller's.
                assert_eq!(named.parent_span_id, caller_span, "{named:?}");
                assert_ne!(span, caller_span);
            } else {
                // The call without one: a trace of the service's own.
                assert_eq!(named.parent_span_id, SpanId::INVALID, "{named:?}");
            }
        }
    }
}
