//! The hardened serving loop of the axum examples (`examples/shared/serve.rs`), over
//! real TCP connections on 127.0.0.1: it serves the example's router with its metrics,
//! closes connections that send half a request head or sit idle, serves at most
//! `max_connections` at once (the next ones wait), and on shutdown stops accepting,
//! lets the requests in flight finish, and returns.

mod common;

use std::time::Duration;

use axum::extract::Path;
use axum::{Router, routing::get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tower_prometheus::{HttpMetricsLayer, Metrics};

#[path = "../examples/shared/serve.rs"]
mod serve;
use serve::{Limits, serve, serve_with};

/// How long a test waits for what must happen before calling it a failure: a bound,
/// never a measurement.
const PATIENCE: Duration = Duration::from_secs(10);

/// `examples/axum.rs`'s router and metrics, with a `/slow` route that answers when
/// `release` is notified.
fn app(metrics: &Metrics, release: std::sync::Arc<Notify>) -> Router {
    Router::new()
        .route(
            "/hello/{name}",
            get(|Path(name): Path<String>| async move { format!("Hello, {name}!") }),
        )
        .route(
            "/slow",
            get(move || async move {
                release.notified().await;
                "slow"
            }),
        )
        .route_service("/metrics", metrics.exporter())
        .layer(metrics.http_layer())
}

fn metrics() -> Metrics {
    Metrics::builder()
        .http(HttpMetricsLayer::builder().exclude_path("/metrics"))
        .build()
        .expect("valid options")
}

/// A server of `app` on 127.0.0.1 through `serve_with`, stopped when the returned
/// sender is sent to (or dropped); its task gives what `serve_with` returned.
async fn start(
    app: Router,
    limits: Limits,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(
        listener,
        app,
        async move {
            let _ = stopped.await;
        },
        limits,
    ));
    (addr, stop, server)
}

/// Writes a `GET` of `path` on `stream` (keep-alive) and reads its response: the status
/// and the body.
async fn get_on(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("written");
    tokio::time::timeout(PATIENCE, read_response(stream))
        .await
        .expect("answered in time")
}

/// One HTTP/1.1 response with a `content-length`.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed before a response: {received:?}");
        received.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let status = head[9..12].parse().expect("a status code");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .expect("a length");
    while received.len() < head_end + length {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed mid-body");
        received.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&received[head_end..head_end + length]).into_owned();
    (status, body)
}

/// Reads `stream` until the server closes it, within `PATIENCE`: what it sent meanwhile.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .expect("read");
    received
}

/// The count of requests recorded on `route`.
fn recorded(metrics: &Metrics, route: &str) -> f64 {
    let samples = common::parse(&common::prometheus_text(metrics.registry()));
    common::total(
        &samples,
        "http_server_request_duration_seconds_count",
        &[("http_route", route)],
    )
}

#[tokio::test]
async fn serves_the_router_with_its_metrics_until_shutdown() {
    let metrics = metrics();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    let (stop, stopped) = oneshot::channel::<()>();
    // `serve`, the examples' entry point, with its default limits.
    let server = tokio::spawn(serve(
        listener,
        app(&metrics, Default::default()),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut stream = TcpStream::connect(addr).await.expect("connected");
    for name in ["world", "you"] {
        let (status, body) = get_on(&mut stream, &format!("/hello/{name}")).await;
        assert_eq!(
            (status, body.as_str()),
            (200, format!("Hello, {name}!").as_str())
        );
    }
    // `/metrics` on the same connection: the two requests, and not itself.
    let (status, scrape) = get_on(&mut stream, "/metrics").await;
    assert_eq!(status, 200);
    let samples = common::parse(&scrape);
    assert_eq!(
        common::total(
            &samples,
            "http_server_request_duration_seconds_count",
            &[
                ("http_route", "/hello/{name}"),
                ("http_response_status_code", "200")
            ]
        ),
        2.0,
        "{scrape}"
    );
    assert!(!scrape.contains("http_route=\"/metrics\""));
    stop.send(()).expect("the server waits for it");
    // The idle keep-alive connection is closed by the graceful shutdown.
    until_closed(&mut stream).await;
    tokio::time::timeout(PATIENCE, server)
        .await
        .expect("serve returns")
        .expect("the task")
        .expect("no error");
}

#[tokio::test]
async fn half_sent_heads_and_idle_connections_are_closed() {
    let metrics = metrics();
    let limits = Limits {
        header_read_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (addr, _stop, _server) = start(app(&metrics, Default::default()), limits).await;

    // Half a request head, then nothing (slowloris).
    let mut half = TcpStream::connect(addr).await.expect("connected");
    half.write_all(b"GET /hello/x HTTP/1.1\r\nhost: te")
        .await
        .expect("written");
    let answer = until_closed(&mut half).await;
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "",
        "hyper closes it without an answer"
    );

    // A whole request, answered; the connection left idle afterwards is closed too.
    let mut idle = TcpStream::connect(addr).await.expect("connected");
    assert_eq!(get_on(&mut idle, "/hello/x").await.0, 200);
    until_closed(&mut idle).await;

    // The half-sent request never reached the layer.
    assert_eq!(recorded(&metrics, "/hello/{name}"), 1.0);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_place() {
    let metrics = metrics();
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let (addr, _stop, _server) = start(app(&metrics, Default::default()), limits).await;

    let mut first = TcpStream::connect(addr).await.expect("connected");
    assert_eq!(get_on(&mut first, "/hello/first").await.0, 200);
    // The second connection waits in the listen backlog while the first is open: its
    // request is not answered, however long it waits (a while, here).
    let mut second = TcpStream::connect(addr)
        .await
        .expect("the kernel accepts it");
    second
        .write_all(b"GET /hello/second HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("written");
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut byte)).await;
    assert!(waited.is_err(), "not served while the first is open");
    assert_eq!(recorded(&metrics, "/hello/{name}"), 1.0);
    // The first closes: the second takes its place and is answered.
    drop(first);
    let (status, body) = tokio::time::timeout(PATIENCE, read_response(&mut second))
        .await
        .expect("answered once the first closed");
    assert_eq!((status, body.as_str()), (200, "Hello, second!"));
    assert_eq!(recorded(&metrics, "/hello/{name}"), 2.0);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_requests_in_flight_finish() {
    let metrics = metrics();
    let release = std::sync::Arc::new(Notify::new());
    let (addr, stop, server) = start(app(&metrics, release.clone()), Limits::default()).await;

    let mut slow = TcpStream::connect(addr).await.expect("connected");
    slow.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("written");
    // Wait until the request is in flight in the layer.
    let in_flight = || {
        let samples = common::parse(&common::prometheus_text(metrics.registry()));
        common::total(&samples, "http_server_active_requests", &[])
    };
    for _ in 0..1000 {
        if in_flight() == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(in_flight(), 1.0);

    stop.send(()).expect("the server waits for it");
    // The listener closes: new connections are refused, while the request goes on.
    let mut refused = false;
    for _ in 0..1000 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener is closed after shutdown");
    assert!(
        !server.is_finished(),
        "serve waits for the request in flight"
    );

    release.notify_one();
    let (status, body) = tokio::time::timeout(PATIENCE, read_response(&mut slow))
        .await
        .expect("answered");
    assert_eq!((status, body.as_str()), (200, "slow"));
    tokio::time::timeout(PATIENCE, server)
        .await
        .expect("serve returns once the request finished")
        .expect("the task")
        .expect("no error");
    assert_eq!(recorded(&metrics, "/slow"), 1.0);
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_past_the_shutdown_timeout() {
    let metrics = metrics();
    let limits = Limits {
        shutdown_timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    // Never released.
    let (addr, stop, server) = start(app(&metrics, Default::default()), limits).await;
    let mut slow = TcpStream::connect(addr).await.expect("connected");
    slow.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("written");
    for _ in 0..1000 {
        let samples = common::parse(&common::prometheus_text(metrics.registry()));
        if common::total(&samples, "http_server_active_requests", &[]) == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).expect("the server waits for it");
    tokio::time::timeout(PATIENCE, server)
        .await
        .expect("serve returns after its shutdown timeout")
        .expect("the task")
        .expect("no error");
}
