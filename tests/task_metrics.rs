//! Per-route task metrics (feature `task-metrics`) through a real axum `Router` served
//! over 127.0.0.1 on a multi-thread runtime: which route blocks the runtime.
//!
//! Durations are asserted as lower bounds of the work the handlers do (a 20 ms block is
//! at least 20 ms of poll time), never as upper bounds on speed; counts are exact where
//! the handlers make them so.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::{Sample, parse, prometheus_text, promtool_check_metrics, value};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tower_prometheus::{Error, HttpMetricsLayer, Metrics, Naming};

/// Requests per route.
const N: u64 = 8;
/// How long `/block` blocks its worker, and `/timer` waits on a timer.
const WORK: Duration = Duration::from_millis(20);
/// Polls of at least this long are slow in these tests: well under `WORK`, well over a
/// poll that does nothing.
const SLOW: Duration = Duration::from_millis(10);
/// How often `/yield` yields to the runtime.
const YIELDS: u64 = 10;

fn metrics(naming: Naming) -> Metrics {
    Metrics::builder()
        .http(
            HttpMetricsLayer::builder()
                .naming(naming)
                .exclude_path("/metrics")
                .task_monitors(true)
                .slow_poll_threshold(SLOW),
        )
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options")
}

fn app(metrics: &Metrics) -> Router {
    Router::new()
        .route(
            "/block/{id}",
            get(|| async {
                // A blocking call inside the poll, as a handler doing CPU work or
                // synchronous I/O would: the worker thread is held for WORK.
                std::thread::sleep(WORK);
                "blocked"
            }),
        )
        .route(
            "/timer/{id}",
            get(|| async {
                tokio::time::sleep(WORK).await;
                "waited"
            }),
        )
        .route(
            "/yield",
            get(|| async {
                for _ in 0..YIELDS {
                    tokio::task::yield_now().await;
                }
                "yielded"
            }),
        )
        .route("/hello", get(|| async { "hello" }))
        .route_service("/metrics", metrics.exporter())
        .layer(metrics.http_layer())
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A `GET` on a fresh HTTP/1.1 connection: the status, once the body is read.
async fn get_status(addr: SocketAddr, path: &str) -> StatusCode {
    let stream = TcpStream::connect(addr).await.expect("the server accepts");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(http::header::HOST, "127.0.0.1")
        .body(Body::empty())
        .expect("valid request");
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status();
    response.into_body().collect().await.expect("the body");
    status
}

/// `N` requests to `path(i)`, all at once.
async fn load(addr: SocketAddr, path: impl Fn(u64) -> String) {
    let requests: Vec<_> = (0..N)
        .map(|i| {
            let path = path(i);
            tokio::spawn(async move { get_status(addr, &path).await })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("no panic"), StatusCode::OK);
    }
}

fn of(samples: &[Sample], name: &str, route: &str) -> f64 {
    value(samples, name, &[("http_route", route)])
        .unwrap_or_else(|| panic!("no {name}{{http_route={route:?}}} in {samples:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_route_shows_its_slow_polls_and_the_others_do_not() {
    let metrics = metrics(Naming::OpenTelemetry);
    let addr = serve(app(&metrics)).await;
    load(addr, |i| format!("/block/{i}")).await;
    load(addr, |i| format!("/timer/{i}")).await;
    load(addr, |_| "/yield".to_owned()).await;
    load(addr, |_| "/hello".to_owned()).await;

    let text = prometheus_text(metrics.registry());
    promtool_check_metrics(&text);
    // The excerpt the closing note shows.
    for line in text.lines().filter(|line| line.contains("tokio_task_")) {
        println!("{line}");
    }
    let samples = parse(&text);
    let n = N as f64;
    let work = WORK.as_secs_f64();

    // Blocking: each request is one poll that holds the worker for WORK.
    let block = "/block/{id}";
    assert_eq!(of(&samples, "tokio_task_polls_total", block), n);
    assert_eq!(of(&samples, "tokio_task_slow_polls_total", block), n);
    assert!(of(&samples, "tokio_task_poll_seconds_total", block) >= n * work);
    assert!(of(&samples, "tokio_task_slow_poll_seconds_total", block) >= n * work);
    assert_eq!(of(&samples, "tokio_task_idles_total", block), 0.0);

    // A timer: a poll that starts it, idle until it fires, a poll that answers.
    let timer = "/timer/{id}";
    assert_eq!(of(&samples, "tokio_task_polls_total", timer), 2.0 * n);
    assert_eq!(of(&samples, "tokio_task_idles_total", timer), n);
    assert_eq!(of(&samples, "tokio_task_scheduled_total", timer), n);
    assert_eq!(of(&samples, "tokio_task_slow_polls_total", timer), 0.0);
    let idle = of(&samples, "tokio_task_idle_seconds_total", timer);
    let polling = of(&samples, "tokio_task_poll_seconds_total", timer);
    // The timer started in the first poll and fired no earlier than WORK after.
    assert!(
        idle + polling >= n * work,
        "idle {idle} + polling {polling}"
    );
    assert!(
        polling < idle,
        "a timer's wait is idle time, not poll time: polling {polling}, idle {idle}"
    );

    // Yielding: one poll more than yields per request, each woken and scheduled again.
    assert_eq!(
        of(&samples, "tokio_task_polls_total", "/yield"),
        n * (YIELDS + 1) as f64
    );
    assert_eq!(
        of(&samples, "tokio_task_scheduled_total", "/yield"),
        n * YIELDS as f64
    );
    assert_eq!(of(&samples, "tokio_task_slow_polls_total", "/yield"), 0.0);

    // A handler that does nothing: one poll a request.
    assert_eq!(of(&samples, "tokio_task_polls_total", "/hello"), n);
    assert_eq!(of(&samples, "tokio_task_slow_polls_total", "/hello"), 0.0);
    // `/metrics` is excluded: not instrumented.
    assert_eq!(
        value(
            &samples,
            "tokio_task_polls_total",
            &[("http_route", "/metrics")]
        ),
        None
    );
    // Every family has the four routes.
    for family in [
        "tokio_task_polls_total",
        "tokio_task_poll_seconds_total",
        "tokio_task_slow_polls_total",
        "tokio_task_slow_poll_seconds_total",
        "tokio_task_scheduled_total",
        "tokio_task_scheduled_seconds_total",
        "tokio_task_long_delays_total",
        "tokio_task_long_delay_seconds_total",
        "tokio_task_idles_total",
        "tokio_task_idle_seconds_total",
    ] {
        let routes = samples.iter().filter(|s| s.name == family).count();
        assert_eq!(routes, 4, "{family}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_requests_share_one_monitor_and_prom_client_names_label_route() {
    let metrics = metrics(Naming::PromClient);
    let addr = serve(app(&metrics)).await;
    for path in ["/nowhere", "/also/nowhere", "/hello"] {
        get_status(addr, path).await;
    }
    let samples = parse(&prometheus_text(metrics.registry()));
    let unlabelled = samples
        .iter()
        .find(|s| s.name == "tokio_task_polls_total" && s.labels.is_empty())
        .expect("the monitor of requests without a route");
    assert_eq!(unlabelled.value, 2.0);
    assert_eq!(
        value(&samples, "tokio_task_polls_total", &[("route", "/hello")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_stay_within_the_cardinality_limit() {
    const ROUTES: usize = 2_500;
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().task_monitors(true))
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let mut router = Router::new();
    for n in 0..ROUTES {
        router = router.route(&format!("/r{n}"), get(|| async { "ok" }));
    }
    let router = router.layer(metrics.http_layer());
    for n in 0..ROUTES {
        let request = Request::get(format!("/r{n}"))
            .body(Body::empty())
            .expect("valid request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let samples = parse(&prometheus_text(metrics.registry()));
    let polls: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "tokio_task_polls_total")
        .collect();
    let by_route = polls
        .iter()
        .filter(|s| s.labels.contains_key("http_route"))
        .count();
    assert_eq!(by_route, tower_prometheus::http_metrics::DEFAULT_MAX_SERIES);
    let overflow = value(
        &samples,
        "tokio_task_polls_total",
        &[("otel_metric_overflow", "true")],
    );
    assert_eq!(
        overflow,
        Some((ROUTES - tower_prometheus::http_metrics::DEFAULT_MAX_SERIES) as f64)
    );
    let total: f64 = polls.iter().map(|s| s.value).sum();
    assert_eq!(total, ROUTES as f64, "every request polled once, none lost");
}

#[test]
fn the_task_metric_names_are_reserved_when_on() {
    let on = metrics(Naming::OpenTelemetry);
    let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    assert!(matches!(
        on.register("tokio_task_slow_polls", "mine", gauge.clone()),
        Err(Error::InvalidMetricName(_))
    ));
    let off = Metrics::builder()
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    assert!(off.register("tokio_task_slow_polls", "mine", gauge).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_no_task_metrics() {
    let metrics = Metrics::builder()
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let addr = serve(app(&metrics)).await;
    get_status(addr, "/hello").await;
    let text = prometheus_text(metrics.registry());
    assert!(text.contains("http_server_request_duration_seconds"));
    assert!(!text.contains("tokio_task_"), "{text}");
}
