//! The layer on plain tower services (no axum): inner errors and panics.

mod common;

use bytes::Bytes;
use common::{parse, prometheus_text, total, value};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use prometheus_client::registry::Registry;
use tower::{Layer, ServiceExt, service_fn};
use tower_prometheus::HttpMetricsLayer;
use tower_prometheus::http_metrics::{Classified, Classify, ErrorType, ReadBytes, RequestBody};

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";

fn route(_: &Request<Full<Bytes>>) -> Option<&str> {
    Some("/jobs/{id}")
}

fn request() -> Request<Full<Bytes>> {
    Request::post("/jobs/1")
        .body(Full::new(Bytes::from_static(b"payload")))
        .expect("valid request")
}

/// The labels of the series of one request; no `error_type` when it is empty.
fn series(status: &str, error_type: &str) -> Vec<(&'static str, String)> {
    let mut labels = vec![
        ("http_request_method", "POST".into()),
        ("http_route", "/jobs/{id}".into()),
        ("http_response_status_code", status.into()),
        ("url_scheme", "http".into()),
        ("network_protocol_version", "1.1".into()),
    ];
    if !error_type.is_empty() {
        labels.push(("error_type", error_type.into()));
    }
    labels
}

/// The registry's one request was recorded once, with this status and `error_type`
/// (none when empty), and nothing is left in flight.
fn assert_recorded_once(registry: &Registry, status: &str, error_type: &str) {
    let samples = parse(&prometheus_text(registry));
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &borrowed(&series(status, error_type))
        ),
        Some(1.0),
        "{samples:#?}"
    );
    assert_eq!(total(&samples, DURATION_COUNT, &[]), 1.0, "recorded once");
    assert_eq!(total(&samples, "http_server_active_requests", &[]), 0.0);
}

fn borrowed<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// What the inner services of these tests answer.
type Answer = Result<Response<Full<Bytes>>, std::convert::Infallible>;

/// An inner service answering 200 with `body`.
fn answering<B>(
    body: &'static [u8],
) -> impl tower::Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Answer> + Send,
> + Clone
+ Send {
    service_fn(move |_: Request<B>| async move {
        Ok(Response::new(Full::new(Bytes::from_static(body))))
    })
}

/// Runs `future` to its end on a thread of its own, which exits right after.
fn on_a_new_thread<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    })
    .join()
    .expect("the other thread does not panic")
}

#[tokio::test]
async fn inner_error_is_500_other_and_passed_through() {
    let mut registry = Registry::default();
    let service = HttpMetricsLayer::new(&mut registry)
        .route_fn(route)
        .layer(service_fn(|_: Request<Full<Bytes>>| async {
            Err::<Response<Full<Bytes>>, _>(std::io::Error::other("database unreachable"))
        }));
    let error = service
        .oneshot(request())
        .await
        .expect_err("the inner error");
    assert_eq!(error.to_string(), "database unreachable");
    assert_recorded_once(&registry, "500", "_OTHER");
}

#[tokio::test]
async fn panic_in_the_handler_is_500_panic() {
    let mut registry = Registry::default();
    let service = HttpMetricsLayer::new(&mut registry)
        .route_fn(route)
        .layer(service_fn(|request: Request<Full<Bytes>>| async move {
            if request.uri().path() == "/jobs/1" {
                panic!("handler bug");
            }
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    let task = tokio::spawn(service.oneshot(request()));
    assert!(task.await.expect_err("the task panicked").is_panic());
    assert_recorded_once(&registry, "500", "panic");
}

#[tokio::test]
async fn panic_while_streaming_the_body_keeps_the_status() {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    struct PanickingBody;
    impl http_body::Body for PanickingBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            panic!("body bug")
        }
    }

    let mut registry = Registry::default();
    let service = HttpMetricsLayer::new(&mut registry)
        .route_fn(route)
        .layer(service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(PanickingBody))
        }));
    let response = service.oneshot(request()).await.expect("a response");
    let task = tokio::spawn(response.into_body().collect());
    assert!(task.await.expect_err("the body panicked").is_panic());
    assert_recorded_once(&registry, "200", "panic");
}

#[tokio::test]
async fn request_body_not_read_counts_zero_bytes() {
    let mut registry = Registry::default();
    let service = HttpMetricsLayer::new(&mut registry)
        .route_fn(route)
        .request_size(ReadBytes)
        .layer(answering::<RequestBody<Full<Bytes>>>(b"ok"));
    let response = service.oneshot(request()).await.expect("a response");
    response
        .into_body()
        .collect()
        .await
        .expect("the body streams");
    let samples = parse(&prometheus_text(&registry));
    let labels = [
        ("http_request_method", "POST"),
        ("http_route", "/jobs/{id}"),
        ("http_response_status_code", "200"),
        ("url_scheme", "http"),
        ("network_protocol_version", "1.1"),
    ];
    assert_eq!(
        value(&samples, "http_server_request_body_size_bytes_sum", &labels),
        Some(0.0),
        "the bytes read, not Content-Length"
    );
    assert_eq!(
        value(
            &samples,
            "http_server_response_body_size_bytes_sum",
            &labels
        ),
        Some(2.0)
    );
}

/// A service behind the layer, with a closure for routes, can be moved into a spawned
/// task (the case of every hyper server).
#[tokio::test]
async fn layered_service_with_a_route_closure_is_send() {
    let mut registry = Registry::default();
    let service = HttpMetricsLayer::new(&mut registry)
        .route_fn(|_: &Request<Full<Bytes>>| Some("/jobs/{id}"))
        .layer(answering(b"ok"));
    let task = tokio::spawn(async move {
        let response = service.oneshot(request()).await?;
        response
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes())
    });
    let body = task.await.expect("no panic").expect("infallible");
    assert_eq!(&body[..], b"ok");
    let samples = parse(&prometheus_text(&registry));
    assert_eq!(
        total(&samples, DURATION_COUNT, &[("http_route", "/jobs/{id}")]),
        1.0
    );
}

#[tokio::test]
async fn panic_in_the_synchronous_call_is_500_panic() {
    let mut registry = Registry::default();
    let service = HttpMetricsLayer::new(&mut registry).route_fn(route).layer(service_fn(
        |_: Request<Full<Bytes>>| -> std::future::Ready<
            Result<Response<Full<Bytes>>, std::convert::Infallible>,
        > { panic!("bug before the future") },
    ));
    let task = tokio::spawn(service.oneshot(request()));
    assert!(task.await.expect_err("the task panicked").is_panic());
    assert_recorded_once(&registry, "500", "panic");
}

/// A panic caught outside the layer (as tower-http's `CatchPanic` does) drops the
/// future after the unwinding ended: it is still a panic. A future dropped during an
/// unrelated unwinding was cancelled, not panicked.
#[test]
fn panics_are_told_apart_from_cancellations_by_where_they_happen() {
    use std::future::Future;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::task::{Context, Waker};

    let mut caught_registry = Registry::default();
    let mut panicking = HttpMetricsLayer::new(&mut caught_registry)
        .route_fn(route)
        .layer(service_fn(|_: Request<Full<Bytes>>| async {
            panic!("handler bug");
            #[allow(unreachable_code)]
            Ok::<Response<Full<Bytes>>, std::convert::Infallible>(Response::new(Full::default()))
        }));
    let mut sibling_registry = Registry::default();
    let mut pending = HttpMetricsLayer::new(&mut sibling_registry)
        .route_fn(route)
        .layer(service_fn(|_: Request<Full<Bytes>>| {
            std::future::pending::<Result<Response<Full<Bytes>>, std::convert::Infallible>>()
        }));
    let mut cx = Context::from_waker(Waker::noop());

    let mut future = Box::pin(tower::Service::call(&mut panicking, request()));
    let caught = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
    assert!(caught.is_err(), "the handler panicked");
    drop(future);
    assert_recorded_once(&caught_registry, "500", "panic");

    let mut future = Box::pin(tower::Service::call(&mut pending, request()));
    assert!(future.as_mut().poll(&mut cx).is_pending());
    let caught = catch_unwind(AssertUnwindSafe(move || {
        let _sibling = future;
        panic!("something else panicked");
    }));
    assert!(caught.is_err());
    assert_recorded_once(&sibling_registry, "499", "cancelled");
}

/// A request can end on another thread than the one it started on (a work-stealing
/// runtime moves tasks): a thread that never served a request of this layer finishes
/// it, and it is recorded once, with nothing left in flight.
#[tokio::test]
async fn a_body_finished_on_a_thread_new_to_the_layer_is_recorded() {
    let mut registry = Registry::default();
    let service = HttpMetricsLayer::new(&mut registry)
        .route_fn(route)
        .layer(answering(b"done"));
    let response = service
        .oneshot(request())
        .await
        .expect("the service answers");
    on_a_new_thread(response.into_body().collect()).expect("the body streams");
    assert_recorded_once(&registry, "200", "");
}

/// A response body may outlive the layer and every service it made: the request is
/// still recorded into the registry, which holds the metrics.
#[tokio::test]
async fn a_body_outliving_the_layer_is_recorded() {
    let mut registry = Registry::default();
    let layer = HttpMetricsLayer::new(&mut registry).route_fn(route);
    let response = layer
        .layer(answering(b"late"))
        .oneshot(request())
        .await
        .expect("the service answers");
    drop(layer);
    assert_eq!(
        total(
            &parse(&prometheus_text(&registry)),
            "http_server_active_requests",
            &[]
        ),
        1.0,
        "in flight until the body ends"
    );
    response
        .into_body()
        .collect()
        .await
        .expect("the body streams");
    assert_recorded_once(&registry, "200", "");
}

/// Once the layer, its services and the registry are gone, nothing can show the
/// metrics any more. The request starts on a thread that then exits (its cache of the
/// layer goes with it) and its body ends on another that never saw the layer: the body
/// streams whole, and nothing panics.
#[test]
fn a_body_outliving_the_registry_ends_quietly() {
    let body = on_a_new_thread(async {
        let mut registry = Registry::default();
        let service = HttpMetricsLayer::new(&mut registry)
            .route_fn(route)
            .layer(answering(b"orphan"));
        let response = service
            .oneshot(request())
            .await
            .expect("the service answers");
        response.into_body()
    });
    let collected = on_a_new_thread(body.collect()).expect("the body streams");
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"orphan"));
}

/// A thread keeps caches for a few layers only: requests of more layers than that,
/// interleaved on one thread, push each other's caches out between their start and
/// their end. Each is still recorded once, into its own registry.
#[tokio::test]
async fn requests_of_many_layers_interleaved_are_each_recorded_once() {
    let mut registries: Vec<Registry> = (0..8).map(|_| Registry::default()).collect();
    let mut bodies = Vec::new();
    for registry in &mut registries {
        let service = HttpMetricsLayer::new(registry)
            .route_fn(route)
            .layer(answering(b"interleaved"));
        let response = service
            .oneshot(request())
            .await
            .expect("the service answers");
        bodies.push(response.into_body());
    }
    for body in bodies {
        body.collect().await.expect("the body streams");
    }
    for registry in &registries {
        assert_recorded_once(registry, "200", "");
    }
}

/// A classifier of the kind gRPC needs: `grpc-status` in the response head, or else in
/// the trailers; a missing status is `UNKNOWN`. Inner I/O errors are named by kind.
#[derive(Clone)]
struct GrpcLike;

fn grpc_code(headers: &http::HeaderMap) -> Option<ErrorType> {
    match headers.get("grpc-status")?.to_str().ok()? {
        "0" => None,
        "5" => Some(ErrorType::new("NOT_FOUND")),
        _ => Some(ErrorType::new("UNKNOWN")),
    }
}

impl Classify<std::io::Error> for GrpcLike {
    fn classify_response(&self, _: http::StatusCode, headers: &http::HeaderMap) -> Classified {
        if headers.contains_key("grpc-status") {
            grpc_code(headers).map_or(Classified::Success, Classified::Failure)
        } else {
            Classified::AtEnd
        }
    }

    fn classify_end(&self, trailers: Option<&http::HeaderMap>) -> Option<ErrorType> {
        match trailers {
            Some(trailers) if trailers.contains_key("grpc-status") => grpc_code(trailers),
            _ => Some(ErrorType::new("UNKNOWN")),
        }
    }

    fn classify_error(&self, error: &std::io::Error) -> ErrorType {
        match error.kind() {
            std::io::ErrorKind::TimedOut => ErrorType::new("timeout"),
            _ => ErrorType::OTHER,
        }
    }
}

/// A body of one data frame, then trailers if there are any.
struct WithTrailers(Option<Bytes>, Option<http::HeaderMap>);

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let frame = match self.0.take() {
            Some(data) => Some(http_body::Frame::data(data)),
            None => self.1.take().map(http_body::Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }
}

fn grpc_status(code: &'static str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("grpc-status", http::HeaderValue::from_static(code));
    headers
}

/// What a classifier says lands in `error_type`: from the inner error, from the
/// response head (trailers-only), from the trailers, and `UNKNOWN` for a body that
/// ended without its status; a 200 with `grpc-status: 0` stays a success.
#[tokio::test]
async fn a_classifier_gives_error_types_from_errors_heads_and_trailers() {
    let mut registry = Registry::default();
    let layer = HttpMetricsLayer::new(&mut registry)
        .route_fn(route)
        .classify(GrpcLike);
    let answer = |case: &'static str| {
        let service = service_fn(move |_: Request<Full<Bytes>>| async move {
            let (head, trailers) = match case {
                "timeout" => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                "refused" => {
                    return Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
                }
                "head not found" => (Some(grpc_status("5")), None),
                "trailers ok" => (None, Some(grpc_status("0"))),
                "trailers not found" => (None, Some(grpc_status("5"))),
                _ => (None, None),
            };
            let mut response =
                Response::new(WithTrailers(Some(Bytes::from_static(b"msg")), trailers));
            if let Some(head) = head {
                response.headers_mut().extend(head);
            }
            Ok(response)
        });
        layer.clone().layer(service).oneshot(request())
    };
    for case in [
        "timeout",
        "refused",
        "head not found",
        "trailers ok",
        "trailers not found",
        "no status",
    ] {
        if let Ok(response) = answer(case).await {
            response
                .into_body()
                .collect()
                .await
                .expect("the body streams");
        }
    }
    let samples = parse(&prometheus_text(&registry));
    for (status, error_type, count) in [
        ("500", "timeout", 1.0),
        ("500", "_OTHER", 1.0),
        ("200", "NOT_FOUND", 2.0),
        ("200", "", 1.0),
        ("200", "UNKNOWN", 1.0),
    ] {
        assert_eq!(
            value(
                &samples,
                DURATION_COUNT,
                &borrowed(&series(status, error_type))
            ),
            Some(count),
            "{status} {error_type:?}: {samples:#?}"
        );
    }
    assert_eq!(total(&samples, DURATION_COUNT, &[]), 6.0);
    assert_eq!(total(&samples, "http_server_active_requests", &[]), 0.0);
}

/// A classifier that makes up a value per request cannot grow series past 64 values:
/// the rest are `_OTHER`.
#[tokio::test]
async fn a_classifiers_values_are_bounded() {
    #[derive(Clone)]
    struct Unbounded;
    impl<E> Classify<E> for Unbounded {
        fn classify_response(&self, _: http::StatusCode, headers: &http::HeaderMap) -> Classified {
            let id = headers["x-id"].to_str().unwrap_or("?").to_owned();
            Classified::Failure(ErrorType::new(format!("kind_{id}")))
        }
    }
    let mut registry = Registry::default();
    let service = HttpMetricsLayer::new(&mut registry)
        .route_fn(route)
        .classify(Unbounded)
        .layer(service_fn(|request: Request<Full<Bytes>>| async move {
            let id = request.headers()["x-id"].clone();
            let mut response = Response::new(Full::new(Bytes::new()));
            response.headers_mut().insert("x-id", id);
            Ok::<_, std::convert::Infallible>(response)
        }));
    for n in 0..100 {
        let mut request = request();
        request.headers_mut().insert("x-id", n.into());
        service.clone().oneshot(request).await.expect("infallible");
    }
    let samples = parse(&prometheus_text(&registry));
    let series = common::find(&samples, DURATION_COUNT, &[]);
    assert_eq!(series.len(), 65, "64 values and _OTHER");
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &borrowed(&self::series("200", "_OTHER"))
        ),
        Some(36.0)
    );
    assert_eq!(total(&samples, DURATION_COUNT, &[]), 100.0);
}

/// A classifier is the caller's code: a panic in it is a panic of the request, not a
/// cancellation; and an inner error stays a 500, whatever error type it is given.
#[tokio::test]
async fn a_classifiers_panic_is_a_panic_and_inner_errors_stay_500() {
    #[derive(Clone)]
    struct Odd;
    impl Classify<std::io::Error> for Odd {
        fn classify_response(&self, _: http::StatusCode, _: &http::HeaderMap) -> Classified {
            panic!("classifier bug")
        }
        fn classify_error(&self, _: &std::io::Error) -> ErrorType {
            ErrorType::new("cancelled")
        }
    }
    let mut registry = Registry::default();
    let layer = HttpMetricsLayer::new(&mut registry)
        .route_fn(route)
        .classify(Odd);
    let answers = layer
        .clone()
        .layer(service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, std::io::Error>(Response::new(Full::new(Bytes::new())))
        }));
    let task = tokio::spawn(answers.oneshot(request()));
    assert!(task.await.expect_err("the classifier panicked").is_panic());
    let fails = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::other("down"))
    }));
    fails.oneshot(request()).await.expect_err("the inner error");
    let samples = parse(&prometheus_text(&registry));
    for (status, error_type) in [("200", "panic"), ("500", "cancelled")] {
        assert_eq!(
            value(
                &samples,
                DURATION_COUNT,
                &borrowed(&series(status, error_type))
            ),
            Some(1.0),
            "{status} {error_type}: {samples:#?}"
        );
    }
    assert_eq!(total(&samples, "http_server_active_requests", &[]), 0.0);
}

/// The client layer labels a request with the port it is sent to: the URI's, else the
/// scheme's default, 443 for `https` (a client layer once labelled every request
/// without a port `80`, the scheme dropped from its key).
#[tokio::test]
async fn the_client_layer_labels_the_port_of_the_scheme() {
    let metrics = tower_prometheus::Metrics::builder()
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let client = metrics
        .client_layer()
        .layer(service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }));
    for uri in [
        "https://api.example.com/a",
        "https://api.example.com/b",
        "http://api.example.com/a",
        "https://api.example.com:8443/a",
    ] {
        let request = Request::get(uri)
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let response = client.clone().oneshot(request).await.expect("infallible");
        response.into_body().collect().await.expect("the body");
    }
    let samples = parse(&prometheus_text(metrics.registry()));
    let count = |port: &str| {
        value(
            &samples,
            "http_client_request_duration_seconds_count",
            &[
                ("http_request_method", "GET"),
                ("server_address", "api.example.com"),
                ("server_port", port),
                ("http_response_status_code", "200"),
            ],
        )
    };
    assert_eq!(count("443"), Some(2.0));
    assert_eq!(count("80"), Some(1.0));
    assert_eq!(count("8443"), Some(1.0));
}

/// gRPC calls through the HTTP layer end like any request: an inner error, a panic in
/// the service and a body that fails are each recorded once in the RPC family, `UNKNOWN`
/// with what happened as `error_type` (the conventions' code of a call that ended without
/// a status), and the calls in flight go back to 0. A call that failed before its
/// handler answered names no method (`_OTHER`); the one whose handler answered with a
/// response stream names it.
#[tokio::test]
async fn grpc_calls_that_fail_panic_or_break_their_body_are_recorded_once() {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A gRPC response stream that fails after its head.
    struct FailingBody;
    impl http_body::Body for FailingBody {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(Some(Err(std::io::Error::other("stream broke"))))
        }
    }

    let call = || {
        Request::post("/pkg.Svc/Method")
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(Full::new(Bytes::new()))
            .expect("a valid request")
    };
    let mut registry = Registry::default();
    let layer = HttpMetricsLayer::new(&mut registry);

    let failing = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::other("down"))
    }));
    failing.oneshot(call()).await.expect_err("the inner error");

    let panicking = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        if true {
            panic!("handler bug");
        }
        Ok::<_, std::io::Error>(Response::new(Full::new(Bytes::new())))
    }));
    let task = tokio::spawn(panicking.oneshot(call()));
    assert!(task.await.expect_err("the task panicked").is_panic());

    let breaking = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        let mut response = Response::new(FailingBody);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        Ok::<_, std::io::Error>(response)
    }));
    let response = breaking.oneshot(call()).await.expect("a response head");
    response
        .into_body()
        .collect()
        .await
        .expect_err("the body error");

    let samples = parse(&prometheus_text(&registry));
    let calls = |method: &str, error_type: &str| {
        value(
            &samples,
            "rpc_server_call_duration_seconds_count",
            &[
                ("rpc_system_name", "grpc"),
                ("rpc_method", method),
                ("rpc_response_status_code", "UNKNOWN"),
                ("error_type", error_type),
            ],
        )
    };
    assert_eq!(calls("_OTHER", "_OTHER"), Some(1.0), "the inner error");
    assert_eq!(calls("_OTHER", "panic"), Some(1.0), "the panic");
    assert_eq!(calls("pkg.Svc/Method", "body_error"), Some(1.0), "the body");
    assert_eq!(
        total(&samples, "rpc_server_call_duration_seconds_count", &[]),
        3.0
    );
    assert_eq!(
        total(&samples, "http_server_request_duration_seconds_count", &[]),
        0.0
    );
    assert_eq!(total(&samples, "rpc_server_active_calls", &[]), 0.0);
}
