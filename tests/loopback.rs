//! The layer and the exporter over real HTTP on 127.0.0.1.

mod common;

use std::io::Read as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use bytes::Bytes;
use common::{Sample, parse, promtool_check_metrics, python_openmetrics_check, total, value};
use http::{HeaderMap, Request, StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tower_prometheus::HttpMetricsLayer;
use tower_prometheus::{Exporter, Metrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";

/// An endless body: a 1 KiB chunk each time it is polled, until it is dropped.
struct Endless;

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 1024])))))
    }
}

/// A body of `len` bytes in 1 KiB chunks that never says it has ended (as `ServeDir`'s
/// file bodies do): hyper stops at the `Content-Length` it announced.
struct SizedSilent {
    left: usize,
}

impl http_body::Body for SizedSilent {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let chunk = self.left.min(1024);
        self.left -= chunk;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'y'; chunk])))))
    }
}

struct Server {
    addr: SocketAddr,
    metrics: Metrics,
    slow_started: mpsc::Receiver<()>,
}

async fn start() -> Server {
    // Without the collectors, two scrapes with no request in between are identical.
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().exclude_path("/metrics"))
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let (started_tx, slow_started) = mpsc::channel(8);
    let started_tx = Arc::new(Mutex::new(started_tx));
    let app = Router::new()
        .route("/hello/{name}", get(|| async { "hello" }))
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route(
            "/slow",
            get(move || {
                let started = started_tx.lock().expect("not poisoned").clone();
                async move {
                    let _ = started.send(()).await;
                    std::future::pending::<&'static str>().await
                }
            }),
        )
        .route("/endless", get(|| async { Body::new(Endless) }))
        .route(
            "/sized",
            get(|| async {
                http::Response::builder()
                    .header(header::CONTENT_LENGTH, "3000")
                    .body(Body::new(SizedSilent { left: 3000 }))
                    .expect("valid response")
            }),
        )
        .route(
            "/empty-file",
            get(|| async {
                // What `ServeDir` answers for an empty file.
                http::Response::builder()
                    .header(header::CONTENT_LENGTH, "0")
                    .body(Body::new(SizedSilent { left: 0 }))
                    .expect("valid response")
            }),
        )
        .route_service("/metrics", metrics.exporter())
        .layer(metrics.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        addr,
        metrics,
        slow_started,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// One request on a fresh HTTP/1.1 connection, with hyper's client.
async fn fetch(addr: SocketAddr, request: Request<Body>) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("the server accepts");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("the body streams").to_bytes(),
    }
}

/// A `GET` of `uri` on a fresh HTTP/2 connection (prior knowledge), with hyper's client:
/// the response, its body still to read.
async fn fetch_http2(
    addr: SocketAddr,
    uri: impl AsRef<str>,
) -> http::Response<hyper::body::Incoming> {
    let stream = TcpStream::connect(addr).await.expect("the server accepts");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let request = Request::get(uri.as_ref())
        .body(Body::empty())
        .expect("valid request");
    sender.send_request(request).await.expect("a response")
}

fn get_request(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::HOST, "127.0.0.1")
        .body(Body::empty())
        .expect("valid request")
}

fn scrape(metrics: &Metrics) -> Vec<Sample> {
    parse(&common::prometheus_text(metrics.registry()))
}

/// Waits (at most 10 s) until the metrics satisfy `done`: the server notices a
/// disconnect on its own schedule.
async fn until(metrics: &Metrics, what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    for _ in 0..1000 {
        let samples = scrape(metrics);
        if done(&samples) {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}; metrics: {:#?}", scrape(metrics));
}

fn series<'a>(route: &'a str, status: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("http_request_method", "GET"),
        ("http_route", route),
        ("http_response_status_code", status),
        ("url_scheme", "http"),
        ("network_protocol_version", "1.1"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_concurrent_requests_over_tcp() {
    let server = start().await;
    let requests: Vec<_> = (0..100)
        .map(|i| tokio::spawn(fetch(server.addr, get_request(&format!("/hello/{i}")))))
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("no panic").status, StatusCode::OK);
    }
    let samples = scrape(&server.metrics);
    assert_eq!(
        value(&samples, DURATION_COUNT, &series("/hello/{name}", "200")),
        Some(100.0)
    );
    assert_eq!(total(&samples, "http_server_active_requests", &[]), 0.0);
}

#[tokio::test]
async fn client_disconnecting_during_a_slow_handler_is_cancelled() {
    let mut server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("send the request");
    server.slow_started.recv().await.expect("the handler runs");
    assert_eq!(
        total(&scrape(&server.metrics), "http_server_active_requests", &[]),
        1.0
    );
    drop(stream);
    let mut cancelled = series("/slow", "499");
    cancelled.push(("error_type", "cancelled"));
    let samples = until(&server.metrics, "the 499 is recorded", |samples| {
        value(samples, DURATION_COUNT, &cancelled) == Some(1.0)
    })
    .await;
    assert_eq!(total(&samples, "http_server_active_requests", &[]), 0.0);
}

#[tokio::test]
async fn client_dropping_a_streaming_body_half_way_is_cancelled() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("send the request");
    let mut first = vec![0; 4096];
    let read = stream
        .read(&mut first)
        .await
        .expect("the head and some body");
    assert!(String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200 OK"));
    drop(stream);
    let mut cancelled = series("/endless", "200");
    cancelled.push(("error_type", "cancelled"));
    let samples = until(
        &server.metrics,
        "the cancelled stream is recorded",
        |samples| value(samples, DURATION_COUNT, &cancelled) == Some(1.0),
    )
    .await;
    let sent = value(
        &samples,
        "http_server_response_body_size_bytes_sum",
        &cancelled,
    )
    .expect("a size was recorded");
    assert!(
        sent >= 1024.0,
        "at least one chunk was streamed, got {sent}"
    );
    assert_eq!(total(&samples, "http_server_active_requests", &[]), 0.0);
}

/// A body that never says it ended is complete once its `Content-Length` is sent.
#[tokio::test]
async fn a_body_complete_by_its_content_length_is_not_cancelled() {
    let server = start().await;
    let reply = fetch(server.addr, get_request("/sized")).await;
    assert_eq!(reply.body.len(), 3000);
    let samples = until(&server.metrics, "the download is recorded", |samples| {
        total(samples, DURATION_COUNT, &[("http_route", "/sized")]) == 1.0
    })
    .await;
    assert_eq!(
        value(&samples, DURATION_COUNT, &series("/sized", "200")),
        Some(1.0),
        "completed, no error_type: {samples:#?}"
    );
    assert_eq!(
        value(
            &samples,
            "http_server_response_body_size_bytes_sum",
            &series("/sized", "200")
        ),
        Some(3000.0)
    );
}

/// A body announced as `Content-Length: 0` that does not say it has ended (an empty
/// file from `ServeDir`) is complete with its head: hyper writes no body for it and
/// drops it unpolled over HTTP/1.1.
#[tokio::test]
async fn a_body_of_content_length_zero_is_not_cancelled() {
    let server = start().await;
    let reply = fetch(server.addr, get_request("/empty-file")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.is_empty());
    let samples = until(&server.metrics, "the request is recorded", |samples| {
        total(samples, DURATION_COUNT, &[("http_route", "/empty-file")]) == 1.0
    })
    .await;
    assert_eq!(
        value(&samples, DURATION_COUNT, &series("/empty-file", "200")),
        Some(1.0),
        "completed, no error_type: {samples:#?}"
    );
}

/// Mixed traffic, then the exposition as a scraper gets it, checked by promtool and by
/// the reference OpenMetrics parser.
#[tokio::test]
async fn exporter_serves_both_formats_and_gzip() {
    let server = start().await;
    fetch(server.addr, get_request("/hello/x")).await;
    fetch(server.addr, get_request("/nothing/here")).await;
    fetch(server.addr, get_request("/down")).await;
    let echo = Request::post("/echo")
        .header(header::HOST, "127.0.0.1")
        .body(Body::from("0123456789"))
        .expect("valid request");
    assert_eq!(&fetch(server.addr, echo).await.body[..], b"0123456789");
    let odd = Request::builder()
        .method("PURGE")
        .uri("/hello/x")
        .header(header::HOST, "127.0.0.1")
        .body(Body::empty())
        .expect("valid request");
    fetch(server.addr, odd).await;

    let text = fetch(server.addr, get_request("/metrics")).await;
    assert_eq!(text.status, StatusCode::OK);
    assert_eq!(
        text.headers[header::CONTENT_TYPE],
        PROMETHEUS_TEXT_CONTENT_TYPE
    );
    assert!(text.headers.get(header::CONTENT_ENCODING).is_none());
    let text_body = String::from_utf8(text.body.to_vec()).expect("UTF-8");
    promtool_check_metrics(&text_body);
    let samples = parse(&text_body);
    assert_eq!(
        total(&samples, DURATION_COUNT, &[]),
        5.0,
        "/metrics is excluded"
    );
    assert_eq!(
        total(
            &samples,
            DURATION_COUNT,
            &[("http_request_method", "_OTHER")]
        ),
        1.0
    );
    assert!(!text_body.contains("# EOF"));

    let mut openmetrics = get_request("/metrics");
    openmetrics.headers_mut().insert(
        header::ACCEPT,
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3"
            .parse()
            .expect("valid header"),
    );
    let om = fetch(server.addr, openmetrics).await;
    assert_eq!(om.headers[header::CONTENT_TYPE], OPENMETRICS_CONTENT_TYPE);
    let om_body = String::from_utf8(om.body.to_vec()).expect("UTF-8");
    assert!(om_body.ends_with("# EOF\n"), "{om_body}");
    assert!(om_body.contains("# UNIT http_server_request_duration_seconds seconds\n"));
    python_openmetrics_check(&om_body);

    let mut gzipped = get_request("/metrics");
    gzipped.headers_mut().insert(
        header::ACCEPT_ENCODING,
        "br;q=1, gzip;q=0.8".parse().expect("valid"),
    );
    let gz = fetch(server.addr, gzipped).await;
    assert_eq!(gz.headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(gz.headers[header::VARY], "accept, accept-encoding");
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut unzipped)
        .expect("valid gzip");
    assert_eq!(unzipped, text_body, "nothing was recorded in between");
    assert!(gz.body.len() < text_body.len() / 3, "gzip compresses");

    let head = Request::head("/metrics")
        .header(header::HOST, "127.0.0.1")
        .body(Body::empty())
        .expect("valid request");
    let head = fetch(server.addr, head).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.headers[header::CONTENT_LENGTH],
        text_body.len().to_string()
    );
    assert!(head.body.is_empty());

    let post = Request::post("/metrics")
        .header(header::HOST, "127.0.0.1")
        .body(Body::empty())
        .expect("valid request");
    let post = fetch(server.addr, post).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers[header::ALLOW], "GET, HEAD");
}

/// The exporter alone as a hyper service, as on a separate metrics port.
#[tokio::test]
async fn exporter_as_a_standalone_hyper_service() {
    let metrics = Metrics::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let exporter = metrics.exporter();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper_util::service::TowerToHyperService::new(exporter.clone());
            tokio::spawn(async move {
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
            });
        }
    });
    let (done_tx, done_rx) = oneshot::channel();
    let app = Router::new()
        .route("/hello/{name}", get(|| async { "hello" }))
        .layer(metrics.http_layer());
    let app_listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let app_addr = app_listener.local_addr().expect("bound");
    tokio::spawn(async move {
        axum::serve(app_listener, app)
            .with_graceful_shutdown(async {
                let _ = done_rx.await;
            })
            .await
    });
    fetch(app_addr, get_request("/hello/x")).await;
    let reply = fetch(addr, get_request("/metrics")).await;
    let samples = parse(std::str::from_utf8(&reply.body).expect("UTF-8"));
    assert_eq!(
        value(&samples, DURATION_COUNT, &series("/hello/{name}", "200")),
        Some(1.0)
    );
    let _ = done_tx.send(());
    // The exporter answers any path: mounting it is the router's job.
    let reply = fetch(addr, get_request("/anything")).await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// A collector that fails to encode turns the scrape into a 500, not a panic.
#[tokio::test]
async fn encode_error_is_a_500() {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::DescriptorEncoder;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Broken;
    impl Collector for Broken {
        fn encode(&self, _: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
    }

    let mut registry = Registry::default();
    registry.register_collector(Box::new(Broken));
    let exporter = Exporter::new(Arc::new(registry));
    let app = Router::new().route_service("/metrics", exporter);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let reply = fetch(addr, get_request("/metrics")).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(&reply.body[..], b"the metrics could not be encoded\n");
}

/// 8 MiB in one frame, as a `Vec`, a `String` or `Json` answer is.
const BIG: usize = 8 << 20;

/// A server for the large-body tests: HTTP/1.1 and HTTP/2 (prior knowledge) through
/// hyper-util's server, on a listener whose accepted sockets have a 64 KiB send buffer,
/// so that what the kernel holds back stays small beside 8 MiB.
async fn start_big() -> (SocketAddr, Metrics) {
    let metrics = Metrics::builder()
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let app = Router::new()
        .route("/big", get(|| async { vec![b'z'; BIG] }))
        .layer(metrics.http_layer());
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .set_send_buffer_size(64 * 1024)
        .expect("a send buffer size");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("a free port");
    let listener = socket.listen(64).expect("listening");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, metrics)
}

/// A client socket with a 64 KiB receive buffer.
async fn small_client(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .set_recv_buffer_size(64 * 1024)
        .expect("a receive buffer size");
    socket.connect(addr).await.expect("the server accepts")
}

fn big_series(
    version: &'static str,
    error_type: Option<&'static str>,
) -> Vec<(&'static str, &'static str)> {
    let mut labels = vec![
        ("http_request_method", "GET"),
        ("http_route", "/big"),
        ("http_response_status_code", "200"),
        ("url_scheme", "http"),
        ("network_protocol_version", version),
    ];
    labels.extend(error_type.map(|error_type| ("error_type", error_type)));
    labels
}

/// A slow reader of a body sent as one 8 MiB frame is timed to (nearly) the end of
/// its transfer: the layer hands the frame over in slices as the server asks for them.
/// Before, the request counted as finished when hyper took the frame (0.001 s).
#[tokio::test]
async fn a_slow_reader_of_one_large_frame_is_timed_to_the_end_of_the_transfer() {
    let (addr, metrics) = start_big().await;
    let mut stream = small_client(addr).await;
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("send the request");
    // 32 KiB every 10 ms: about 2.6 s for 8 MiB.
    let started = std::time::Instant::now();
    let mut buffer = vec![0; 32 * 1024];
    let mut received = 0;
    loop {
        let read = stream
            .read(&mut buffer)
            .await
            .expect("the response streams");
        if read == 0 {
            break;
        }
        received += read;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    assert!(received > BIG, "head and the whole body: {received}");
    let series = big_series("1.1", None);
    let samples = until(&metrics, "the download is recorded", |samples| {
        value(samples, DURATION_COUNT, &series) == Some(1.0)
    })
    .await;
    let recorded = value(
        &samples,
        "http_server_request_duration_seconds_sum",
        &series,
    )
    .expect("a duration");
    assert!(
        recorded > 1.0,
        "recorded {recorded} s of a transfer that took {took:?}"
    );
    assert_eq!(
        value(
            &samples,
            "http_server_response_body_size_bytes_sum",
            &series
        ),
        Some(BIG as f64)
    );
}

/// A client that leaves after 20 KB of one 8 MiB frame is a cancellation, with the
/// bytes handed over by then; before, it was a success of 8 MiB.
#[tokio::test]
async fn a_client_leaving_during_one_large_frame_is_cancelled() {
    let (addr, metrics) = start_big().await;
    let mut stream = small_client(addr).await;
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("send the request");
    let mut received = 0;
    let mut buffer = vec![0; 4096];
    while received < 20_000 {
        received += stream
            .read(&mut buffer)
            .await
            .expect("the response streams");
    }
    drop(stream);
    assert_cancelled_part_way(&metrics, "1.1").await;
}

/// An HTTP/2 client that resets the stream after the first bytes of one 8 MiB frame
/// is a cancellation; before, it was a success.
#[tokio::test]
async fn an_http2_reset_during_one_large_frame_is_cancelled() {
    let (addr, metrics) = start_big().await;
    let response = fetch_http2(addr, "http://127.0.0.1/big").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0;
    while received < 100 {
        let frame = body
            .frame()
            .await
            .expect("a frame")
            .expect("the body streams");
        received += frame.data_ref().map_or(0, Bytes::len);
    }
    // Dropping the body resets the stream (RST_STREAM, CANCEL).
    drop(body);
    assert_cancelled_part_way(&metrics, "2").await;
}

/// The one request to `/big` was recorded as cancelled over HTTP `version`, with less
/// than the whole body handed over, and nothing is left in flight.
async fn assert_cancelled_part_way(metrics: &Metrics, version: &'static str) {
    let series = big_series(version, Some("cancelled"));
    let samples = until(metrics, "the cancelled download is recorded", |samples| {
        value(samples, DURATION_COUNT, &series) == Some(1.0)
    })
    .await;
    let sent = value(
        &samples,
        "http_server_response_body_size_bytes_sum",
        &series,
    )
    .expect("a size");
    assert!(sent < BIG as f64, "not all of it: {sent}");
    assert_eq!(total(&samples, DURATION_COUNT, &[]), 1.0);
    assert_eq!(total(&samples, "http_server_active_requests", &[]), 0.0);
}

/// A plain hyper handler taking `Request<Incoming>` works behind the layer as it is
/// (the layer passes the request untouched by default); a plaintext request line that
/// claims `https` is recorded as `http`.
#[tokio::test]
async fn a_hyper_handler_keeps_its_request_type_and_the_scheme_cannot_be_faked() {
    use hyper::body::Incoming;

    let metrics = Metrics::builder()
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let service = tower::ServiceBuilder::new()
        .layer(
            metrics
                .http_layer()
                .route_fn(|_: &Request<Incoming>| Some("/x")),
        )
        .service(tower::service_fn(|request: Request<Incoming>| async move {
            let body = request.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(body)))
        }));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"POST https://127.0.0.1/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        .await
        .expect("send the request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("a reply");
    assert!(
        reply.starts_with("HTTP/1.1 200 OK") && reply.ends_with("hello"),
        "{reply}"
    );
    let labels = [
        ("http_request_method", "POST"),
        ("http_route", "/x"),
        ("http_response_status_code", "200"),
        ("url_scheme", "http"),
        ("network_protocol_version", "1.1"),
    ];
    let samples = until(&metrics, "the request is recorded", |samples| {
        value(samples, DURATION_COUNT, &labels) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&samples, "http_server_request_body_size_bytes_sum", &labels),
        Some(5.0),
        "its Content-Length"
    );
    assert_eq!(
        total(&samples, DURATION_COUNT, &[("url_scheme", "https")]),
        0.0
    );
}

/// A body of one data frame, then trailers with this `grpc-status`, that does not say
/// it has ended after them (as `StreamBody` and most hand-written bodies do not): hyper
/// drops a body once it has its trailers, without polling it again.
struct ThenTrailers {
    data: Option<Bytes>,
    status: Option<&'static str>,
}

impl http_body::Body for ThenTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.status.take().map(|status| {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static(status));
            Ok(Frame::trailers(trailers))
        }))
    }
}

/// `data`, then trailers with `grpc-status: 5`, with an exact size hint of what data
/// is left (as `http_body_util`'s `WithTrailers` around a `Full` body reports).
struct SizedThenTrailers(Option<Bytes>, bool);

impl http_body::Body for SizedThenTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.0.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if std::mem::take(&mut self.1) {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("5"));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.as_ref().map_or(0, |data| data.len() as u64))
    }
}

/// No data, then trailers with `grpc-status: 5`, with an exact size hint of 0 (as
/// `http_body_util`'s `WithTrailers` around an empty body reports).
struct EmptyThenTrailers(bool);

impl http_body::Body for EmptyThenTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if std::mem::take(&mut self.0) {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("5"));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(0)
    }
}

/// gRPC's way: the status in the trailers.
#[derive(Clone)]
struct TrailerStatus;

impl<E> tower_prometheus::http_metrics::Classify<E> for TrailerStatus {
    fn classify_response(
        &self,
        _: StatusCode,
        _: &HeaderMap,
    ) -> tower_prometheus::http_metrics::Classified {
        tower_prometheus::http_metrics::Classified::AtEnd
    }

    fn classify_end(
        &self,
        trailers: Option<&HeaderMap>,
    ) -> Option<tower_prometheus::http_metrics::ErrorType> {
        match trailers?.get("grpc-status")?.to_str().ok()? {
            "0" => None,
            _ => Some(tower_prometheus::http_metrics::ErrorType::new("NOT_FOUND")),
        }
    }
}

/// A response whose body ends with trailers, served by hyper over HTTP/1.1 (chunked,
/// the client accepting trailers) and HTTP/2, is complete when its trailers are handed
/// over: it is recorded with what the classifier says of them, not as `cancelled`
/// (hyper drops the body after the trailers frame without polling it again).
#[tokio::test]
async fn a_body_ending_in_trailers_is_complete_over_http1_and_http2() {
    let metrics = Metrics::builder()
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let app = Router::new()
        .route(
            "/ok",
            get(|| async {
                Body::new(ThenTrailers {
                    data: Some(Bytes::from_static(b"reply")),
                    status: Some("0"),
                })
            }),
        )
        .route(
            "/not-found",
            get(|| async {
                Body::new(ThenTrailers {
                    data: Some(Bytes::from_static(b"reply")),
                    status: Some("5"),
                })
            }),
        )
        .route(
            "/sized-not-found",
            get(|| async {
                Body::new(SizedThenTrailers(Some(Bytes::from_static(b"reply")), true))
            }),
        )
        .route(
            "/empty-not-found",
            get(|| async { Body::new(EmptyThenTrailers(true)) }),
        )
        .layer(metrics.http_layer().classify(TrailerStatus));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    for path in ["/ok", "/not-found"] {
        let request = Request::get(format!("http://127.0.0.1{path}"))
            .header(header::TE, "trailers")
            .body(Body::empty())
            .expect("valid request");
        let reply = fetch(addr, request).await;
        assert_eq!(reply.body, "reply");

        let response = fetch_http2(addr, format!("http://127.0.0.1{path}")).await;
        let collected = response.into_body().collect().await.expect("the body");
        assert!(
            collected.trailers().is_some(),
            "HTTP/2 carries the trailers"
        );
    }
    // HTTP/2 sends the trailers of a body of a known length, once that length is sent,
    // even a length of 0: they decide (HTTP/1.1 sends such a response with a
    // `Content-Length` and without them).
    for route in ["/sized-not-found", "/empty-not-found"] {
        let response = fetch_http2(addr, format!("http://127.0.0.1{route}")).await;
        let collected = response.into_body().collect().await.expect("the body");
        assert!(
            collected.trailers().is_some(),
            "HTTP/2 carries the trailers"
        );
        let samples = until(&metrics, "the sized body is recorded", |samples| {
            total(samples, DURATION_COUNT, &[("http_route", route)]) == 1.0
        })
        .await;
        assert_eq!(
            total(
                &samples,
                DURATION_COUNT,
                &[
                    ("http_route", route),
                    ("network_protocol_version", "2"),
                    ("error_type", "NOT_FOUND")
                ]
            ),
            1.0,
            "{route}: {samples:#?}"
        );
    }
    let labels = |route: &'static str, version: &'static str| {
        vec![
            ("http_route", route),
            ("http_response_status_code", "200"),
            ("network_protocol_version", version),
        ]
    };
    let samples = until(&metrics, "the six requests are recorded", |samples| {
        total(samples, DURATION_COUNT, &[]) == 6.0
    })
    .await;
    for version in ["1.1", "2"] {
        assert_eq!(
            total(&samples, DURATION_COUNT, &labels("/ok", version)),
            1.0,
            "{samples:#?}"
        );
        assert_eq!(
            total(
                &samples,
                DURATION_COUNT,
                &[
                    labels("/not-found", version),
                    vec![("error_type", "NOT_FOUND")]
                ]
                .concat()
            ),
            1.0,
            "{samples:#?}"
        );
    }
    assert_eq!(
        total(&samples, DURATION_COUNT, &[("error_type", "cancelled")]),
        0.0,
        "{samples:#?}"
    );
}
