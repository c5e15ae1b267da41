//! Connection metrics over real TCP on 127.0.0.1: open and closed connections counted
//! exactly (resets and silent connections included), keep-alive and HTTP/2 connections
//! counted once, the cap, and the accept loop's errors and pauses (a listener of our own
//! that fails on demand, under Tokio's paused clock).
#![cfg(feature = "connections")]

mod common;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use common::{Sample, parse, promtool_check_metrics, value};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_prometheus::connections::{Accept, Endpoint, MeteredStream};
use tower_prometheus::{Metrics, Naming};

const OPEN: &str = "http_server_open_connections";
const CLOSED: &str = "http_server_connection_duration_seconds_count";
const REJECTED: &str = "http_server_rejected_connections_total";
const ERRORS: &str = "http_server_accept_errors_total";
const LIMIT: &str = "http_server_connection_limit";

/// How long a count may take to settle before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

fn metrics() -> Metrics {
    Metrics::builder()
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options")
}

fn scrape(metrics: &Metrics) -> Vec<Sample> {
    parse(&common::prometheus_text(metrics.registry()))
}

/// The labels of the series of a listener on 127.0.0.1:`port`.
fn listener_labels(port: &str) -> [(&'static str, &str); 4] {
    [
        ("server_address", "127.0.0.1"),
        ("server_port", port),
        ("network_transport", "tcp"),
        ("network_type", "ipv4"),
    ]
}

/// `name`'s value on the listener at `addr`.
fn on(samples: &[Sample], name: &str, addr: SocketAddr) -> f64 {
    let port = addr.port().to_string();
    value(samples, name, &listener_labels(&port))
        .unwrap_or_else(|| panic!("no {name} for {addr} in {samples:#?}"))
}

/// Scrapes until `closed` connections of the listener at `addr` are counted closed (or
/// the patience runs out), then returns a scrape taken after that one: a connection
/// counts as closed when the server drops it, a moment after its client saw it closed.
/// One scrape reads the open gauge before the durations, so a connection closing
/// between the two reads is in both; the next scrape sees it closed only.
async fn settled(metrics: &Metrics, addr: SocketAddr, closed: u64) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let samples = scrape(metrics);
        if on(&samples, CLOSED, addr) >= closed as f64 || tokio::time::Instant::now() > deadline {
            return scrape(metrics);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A server that holds each connection until its peer closes or resets it, reading and
/// discarding what it sends.
async fn holding_server(metrics: &Metrics, max_connections: Option<usize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("an address");
    let mut listener = metrics.listener(listener);
    if let Some(max) = max_connections {
        listener = listener.max_connections(max);
    }
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await;
            tokio::spawn(async move {
                let mut sink = [0u8; 256];
                while let Ok(1..) = stream.read(&mut sink).await {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_the_opened_less_the_closed_resets_and_silent_ones_included() {
    let metrics = metrics();
    let addr = holding_server(&metrics, None).await;
    let samples = scrape(&metrics);
    assert_eq!(on(&samples, OPEN, addr), 0.0);
    assert_eq!(on(&samples, CLOSED, addr), 0.0);

    // 30 connections: a third send a few bytes, a third send nothing, a third send a
    // line; then 6 of them close normally, 6 are reset (SO_LINGER 0) and 6 close
    // without having sent a byte.
    let mut clients = Vec::new();
    for n in 0..30 {
        let mut client = TcpStream::connect(addr).await.expect("connected");
        match n % 3 {
            0 => client.write_all(b"GET / HT").await.expect("sent"),
            1 => {}
            _ => client.write_all(b"hello\r\n").await.expect("sent"),
        }
        clients.push((n, client));
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while on(&scrape(&metrics), OPEN, addr) < 30.0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let samples = scrape(&metrics);
    assert_eq!(on(&samples, OPEN, addr), 30.0);
    assert_eq!(on(&samples, CLOSED, addr), 0.0);

    let (mut closing, staying): (Vec<_>, Vec<_>) = clients.into_iter().partition(|(n, _)| *n < 18);
    let mut reset = 0;
    for (n, client) in closing.drain(..) {
        if n % 3 == 2 {
            client.set_zero_linger().expect("SO_LINGER set");
            reset += 1;
        }
        drop(client);
    }
    assert_eq!(reset, 6);
    let samples = settled(&metrics, addr, 18).await;
    assert_eq!(on(&samples, OPEN, addr), 12.0, "N - M");
    assert_eq!(on(&samples, CLOSED, addr), 18.0, "M");
    // Every one of the 18 lasted at least the time it took to open the others.
    let buckets = common::find(
        &samples,
        "http_server_connection_duration_seconds_bucket",
        &[("server_port", &addr.port().to_string()), ("le", "+Inf")],
    );
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0].value, 18.0);

    drop(staying);
    let samples = settled(&metrics, addr, 30).await;
    assert_eq!(on(&samples, OPEN, addr), 0.0);
    assert_eq!(on(&samples, CLOSED, addr), 30.0);
    for kind in ["fd_limit", "out_of_memory", "connection_aborted", "_OTHER"] {
        let port = addr.port().to_string();
        let mut labels = listener_labels(&port).to_vec();
        labels.push(("error_type", kind));
        assert_eq!(
            value(&samples, ERRORS, &labels),
            Some(0.0),
            "{kind} is published at 0"
        );
    }
    assert_eq!(on(&samples, REJECTED, addr), 0.0);
    assert!(
        common::find(&samples, LIMIT, &[]).is_empty(),
        "no limit without max_connections"
    );
    promtool_check_metrics(&common::prometheus_text(metrics.registry()));
}

async fn hello() -> &'static str {
    "hello"
}

/// `GET /` on `sender`, the body read to its end.
async fn get_hello<B>(sender: &mut hyper::client::conn::http1::SendRequest<B>)
where
    B: hyper::body::Body + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    sender.ready().await.expect("ready");
    let response = sender
        .send_request(Request::get("/").body(B::default()).expect("valid"))
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_keep_alive_connection_counts_once_through_axum_serve() {
    let metrics = metrics();
    let app: Router = Router::new()
        .route("/", get(hello))
        .layer(metrics.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("an address");
    let served = metrics.listener(listener);
    tokio::spawn(async move { axum::serve(served, app).await });

    let stream = TcpStream::connect(addr).await.expect("connected");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let connection = tokio::spawn(connection);
    for _ in 0..25 {
        get_hello::<Empty<Bytes>>(&mut sender).await;
    }
    let samples = scrape(&metrics);
    assert_eq!(
        common::total(&samples, "http_server_request_duration_seconds_count", &[]),
        25.0
    );
    assert_eq!(on(&samples, OPEN, addr), 1.0);
    assert_eq!(on(&samples, CLOSED, addr), 0.0);

    drop(sender);
    connection.await.expect("joined").expect("closed cleanly");
    let samples = settled(&metrics, addr, 1).await;
    assert_eq!(on(&samples, OPEN, addr), 0.0);
    assert_eq!(on(&samples, CLOSED, addr), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_counts_once_through_a_hyper_util_accept_loop() {
    let metrics = metrics();
    let app: Router = Router::new()
        .route("/", get(hello))
        .layer(metrics.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("an address");
    let mut listener = metrics.listener(listener);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await;
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
            });
        }
    });

    let stream = TcpStream::connect(addr).await.expect("connected");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("handshake");
    let connection = tokio::spawn(connection);
    // 50 requests, 10 at a time, as concurrent streams of the one connection.
    for _ in 0..5 {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let mut sender = sender.clone();
            requests.spawn(async move {
                let response = sender
                    .send_request(
                        Request::get("/")
                            .body(Empty::<Bytes>::new())
                            .expect("valid"),
                    )
                    .await
                    .expect("answered");
                assert_eq!(response.status(), 200);
                assert_eq!(response.version(), http::Version::HTTP_2);
                response.into_body().collect().await.expect("read");
            });
        }
        while let Some(done) = requests.join_next().await {
            done.expect("the request task");
        }
    }
    let samples = scrape(&metrics);
    assert_eq!(
        common::total(&samples, "http_server_request_duration_seconds_count", &[]),
        50.0
    );
    assert_eq!(on(&samples, OPEN, addr), 1.0);

    drop(sender);
    connection.await.expect("joined").expect("closed cleanly");
    let samples = settled(&metrics, addr, 1).await;
    assert_eq!(on(&samples, OPEN, addr), 0.0);
    assert_eq!(on(&samples, CLOSED, addr), 1.0);
}

/// `true` once the server closed `stream` (end of file or reset), `false` if it is still
/// open after `wait`.
async fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(wait, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("the server sent a byte"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_turned_away_counted_and_never_open() {
    let metrics = metrics();
    let addr = holding_server(&metrics, Some(3)).await;
    let samples = scrape(&metrics);
    assert_eq!(on(&samples, LIMIT, addr), 3.0);

    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(TcpStream::connect(addr).await.expect("connected"));
    }
    // The 5 beyond the cap are closed at once; the 3 below it stay open (they never
    // close: waiting for them is the expected outcome, not a race).
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let closed = closed_by_server(&mut client, Duration::from_secs(3)).await;
                (client, closed)
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut outcomes = Vec::new();
    for wait in waits {
        let (client, closed) = wait.await.expect("the waiting task");
        clients.push(client);
        outcomes.push(closed);
    }
    assert_eq!(outcomes.iter().filter(|closed| **closed).count(), 5);
    assert_eq!(
        &outcomes[..3],
        [false, false, false],
        "the first 3 are served"
    );
    let samples = scrape(&metrics);
    assert_eq!(on(&samples, REJECTED, addr), 5.0);
    assert_eq!(on(&samples, OPEN, addr), 3.0);
    assert_eq!(on(&samples, CLOSED, addr), 0.0, "turned away is not closed");

    // Below the cap again once they are gone: none leaked in the gauge.
    clients.clear();
    let samples = settled(&metrics, addr, 3).await;
    assert_eq!(on(&samples, OPEN, addr), 0.0);
    assert_eq!(on(&samples, CLOSED, addr), 3.0);
    let mut again = Vec::new();
    for _ in 0..3 {
        again.push(TcpStream::connect(addr).await.expect("connected"));
    }
    for client in &mut again {
        assert!(!closed_by_server(client, Duration::from_millis(300)).await);
    }
    // Accepted on the server's schedule: wait for them (a loaded machine is slow to).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while on(&scrape(&metrics), OPEN, addr) < 3.0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let samples = scrape(&metrics);
    assert_eq!(on(&samples, OPEN, addr), 3.0);
    assert_eq!(on(&samples, REJECTED, addr), 5.0);
}

/// A listener that answers the results it is given, in order, then waits forever.
struct Scripted {
    results: VecDeque<io::Result<tokio::io::DuplexStream>>,
}

impl Accept for Scripted {
    type Io = tokio::io::DuplexStream;
    type Addr = ();

    async fn accept(&mut self) -> io::Result<(Self::Io, ())> {
        match self.results.pop_front() {
            Some(result) => result.map(|io| (io, ())),
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<()> {
        Ok(())
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::unix("/run/scripted.sock")
    }
}

#[cfg(unix)]
#[tokio::test]
async fn accept_errors_are_counted_by_kind_and_retried_after_doubling_pauses() {
    let metrics = metrics();
    let errno = |errno| Err(io::Error::from_raw_os_error(errno));
    let (io, _peer) = tokio::io::duplex(64);
    let results = VecDeque::from([
        errno(libc::EMFILE),
        errno(libc::ENFILE),
        errno(libc::EMFILE),
        errno(libc::ECONNABORTED),
        errno(libc::ENOBUFS),
        errno(libc::EPERM),
        Ok(io),
        errno(libc::EMFILE),
    ]);
    let mut listener = metrics.listener(Scripted { results });
    let start = std::time::Instant::now();
    let (stream, ()): (MeteredStream<_>, ()) = listener.accept().await;
    // Paused 5 ms, 10, 20, not for the aborted connection, 40, 80: at least that long
    // (a constant pause of 5 ms would take 25 ms).
    assert!(
        start.elapsed() >= Duration::from_millis(155),
        "{:?}",
        start.elapsed()
    );

    let labels = |kind| {
        vec![
            ("server_address", "/run/scripted.sock"),
            ("network_transport", "unix"),
            ("error_type", kind),
        ]
    };
    let samples = scrape(&metrics);
    for (kind, count) in [
        ("fd_limit", 3.0),
        ("out_of_memory", 1.0),
        ("connection_aborted", 1.0),
        ("_OTHER", 1.0),
    ] {
        assert_eq!(
            value(&samples, ERRORS, &labels(kind)),
            Some(count),
            "{kind}"
        );
    }
    let unix = [
        ("server_address", "/run/scripted.sock"),
        ("network_transport", "unix"),
    ];
    assert_eq!(value(&samples, OPEN, &unix), Some(1.0));

    // The next error is counted as it happens, before the pause.
    let next = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
    assert!(next.is_err(), "the script has no more connections");
    let samples = scrape(&metrics);
    assert_eq!(value(&samples, ERRORS, &labels("fd_limit")), Some(4.0));
    drop(stream);
    assert_eq!(value(&scrape(&metrics), CLOSED, &unix), Some(1.0));
}

#[tokio::test]
async fn handshakes_are_timed_with_their_failures_and_cancellations() {
    let metrics = metrics();
    let mut results = VecDeque::new();
    let mut peers = Vec::new();
    for _ in 0..4 {
        let (io, peer) = tokio::io::duplex(64);
        results.push_back(Ok(io));
        peers.push(peer);
    }
    let mut listener = metrics.listener(Scripted { results });
    let handshake = |stream: MeteredStream<tokio::io::DuplexStream>| async move {
        let mut stream = stream;
        let mut hello = [0u8; 5];
        stream.read_exact(&mut hello).await?;
        if &hello != b"hello" {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a hello"));
        }
        Ok(stream)
    };
    // A handshake of 30 ms.
    let (stream, ()) = listener.accept().await;
    let mut peer = peers.remove(0);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        peer.write_all(b"hello").await.expect("sent");
        peer
    });
    let done = stream.handshake(handshake).await.expect("shook hands");
    // Bad bytes, then a client that leaves, then one that never answers (timed out).
    let (stream, ()) = listener.accept().await;
    peers[0].write_all(b"HELLO").await.expect("sent");
    assert!(stream.handshake(handshake).await.is_err());
    let (stream, ()) = listener.accept().await;
    drop(peers.remove(1));
    assert!(stream.handshake(handshake).await.is_err());
    let (stream, ()) = listener.accept().await;
    let late = tokio::time::timeout(Duration::from_millis(50), stream.handshake(handshake)).await;
    assert!(late.is_err());

    let samples = scrape(&metrics);
    let name = "http_server_tls_handshake_duration_seconds_count";
    let count = |error: Option<&str>| {
        common::find(&samples, name, &[])
            .into_iter()
            .filter(|s| s.labels.get("error_type").map(String::as_str) == error)
            .map(|s| s.value)
            .sum::<f64>()
    };
    assert_eq!(count(None), 1.0);
    assert_eq!(count(Some("invalid_data")), 1.0);
    assert_eq!(count(Some("unexpected_eof")), 1.0);
    assert_eq!(count(Some("cancelled")), 1.0);
    assert_eq!(
        common::find(&samples, name, &[]).len(),
        4,
        "kinds that never happened have no series"
    );
    let sum = common::find(
        &samples,
        "http_server_tls_handshake_duration_seconds_sum",
        &[],
    )
    .into_iter()
    .find(|s| !s.labels.contains_key("error_type"))
    .map(|s| s.value)
    .expect("the successes' sum");
    assert!(sum >= 0.03, "{sum}");
    drop(done);
    assert_eq!(
        value(
            &scrape(&metrics),
            CLOSED,
            &[
                ("server_address", "/run/scripted.sock"),
                ("network_transport", "unix")
            ]
        ),
        Some(4.0)
    );
}

#[tokio::test]
async fn promclient_names_and_labels() {
    let metrics = Metrics::builder()
        .http(tower_prometheus::HttpMetricsLayer::builder().naming(Naming::PromClient))
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let port = listener
        .local_addr()
        .expect("an address")
        .port()
        .to_string();
    let _listener = metrics.listener(listener).max_connections(7);
    let samples = scrape(&metrics);
    let labels = [("server_address", "127.0.0.1"), ("server_port", &*port)];
    assert_eq!(value(&samples, "http_open_connections", &labels), Some(0.0));
    assert_eq!(
        value(&samples, "http_connection_duration_seconds_count", &labels),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "http_rejected_connections_total", &labels),
        Some(0.0)
    );
    assert_eq!(value(&samples, "http_connection_limit", &labels), Some(7.0));
    let mut with_kind = labels.to_vec();
    with_kind.push(("error_type", "fd_limit"));
    assert_eq!(
        value(&samples, "http_accept_errors_total", &with_kind),
        Some(0.0)
    );
    assert!(
        samples.iter().all(|s| !s.name.starts_with("http_server_")),
        "no OpenTelemetry name in {samples:#?}"
    );
    // The crate's own families cannot be registered again.
    let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    assert!(
        metrics
            .register("http_open_connections", "mine", gauge)
            .is_err()
    );
}

#[tokio::test]
async fn listeners_on_one_address_share_their_series_and_past_64_overflow() {
    let metrics = metrics();
    let mut kept = Vec::new();
    for _ in 0..66 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        kept.push(metrics.listener(listener));
    }
    let samples = scrape(&metrics);
    let open = common::find(&samples, OPEN, &[]);
    assert_eq!(open.len(), 65, "64 listeners and the overflow series");
    assert_eq!(
        common::find(&samples, OPEN, &[("otel_metric_overflow", "true")]).len(),
        1
    );
    // A listener re-bound on the address of one wrapped before it: the same series.
    let addr = kept[0].local_addr().expect("an address");
    drop(kept);
    let again = metrics.listener(TcpListener::bind(addr).await.expect("re-bound"));
    let samples = scrape(&metrics);
    assert_eq!(common::find(&samples, OPEN, &[]).len(), 65);
    drop(again);
}

#[tokio::test]
async fn the_prefix_applies_to_the_connection_families() {
    let metrics = Metrics::builder()
        .prefix("myapp")
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let port = listener
        .local_addr()
        .expect("an address")
        .port()
        .to_string();
    let _listener = metrics.listener(listener);
    let samples = scrape(&metrics);
    assert_eq!(
        value(
            &samples,
            "myapp_http_server_open_connections",
            &listener_labels(&port)
        ),
        Some(0.0)
    );
    assert!(
        samples.iter().all(|s| !s.name.starts_with("http_server_")),
        "every family prefixed"
    );
    let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    assert!(
        metrics
            .register("myapp_http_server_open_connections", "mine", gauge)
            .is_err()
    );
}
