//! gRPC over loopback: a real tonic server behind the HTTP layer, real tonic clients
//! (and the client layer around a tonic `Channel` and a hyper-util client).
//!
//! The service is written by hand the way tonic's code generator writes one (no protoc,
//! no build script): `test.Echo/Unary` answers after `delay_ms` with the status `code`
//! (an error before any message: a trailers-only response), `test.Echo/Stream` sends
//! `messages` messages `delay_ms` apart, then ends with `code` in the trailers.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{Sample, parse, value};
use http::uri::PathAndQuery;
use tokio_stream::StreamExt as _;
use tonic::codegen::BoxFuture;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};
use tower_prometheus::Metrics;

#[derive(Clone, PartialEq, prost::Message)]
struct Call {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(uint32, tag = "2")]
    messages: u32,
    #[prost(uint64, tag = "3")]
    delay_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Reply {
    #[prost(uint32, tag = "1")]
    n: u32,
}

type ReplyStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Reply, Status>> + Send>>;

#[derive(Clone)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

struct UnarySvc;

impl tonic::server::UnaryService<Call> for UnarySvc {
    type Response = Reply;
    type Future = BoxFuture<Response<Reply>, Status>;

    fn call(&mut self, request: Request<Call>) -> Self::Future {
        Box::pin(async move {
            let call = request.into_inner();
            tokio::time::sleep(Duration::from_millis(call.delay_ms)).await;
            match Code::from(call.code) {
                Code::Ok => Ok(Response::new(Reply { n: 1 })),
                code => Err(Status::new(code, "as asked")),
            }
        })
    }
}

struct StreamSvc;

impl tonic::server::ServerStreamingService<Call> for StreamSvc {
    type Response = Reply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Response<ReplyStream>, Status>;

    fn call(&mut self, request: Request<Call>) -> Self::Future {
        Box::pin(async move {
            let call = request.into_inner();
            let delay = Duration::from_millis(call.delay_ms);
            let messages = tokio_stream::iter(0..call.messages).then(move |n| async move {
                tokio::time::sleep(delay).await;
                Ok(Reply { n })
            });
            let end = match Code::from(call.code) {
                Code::Ok => None,
                code => Some(Err(Status::new(code, "as asked"))),
            };
            let stream: ReplyStream = Box::pin(messages.chain(tokio_stream::iter(end)));
            Ok(Response::new(stream))
        })
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
        let codec = tonic_prost::ProstCodec::<Reply, Call>::default;
        match request.uri().path() {
            "/test.Echo/Unary" => Box::pin(async move {
                Ok(tonic::server::Grpc::new(codec())
                    .unary(UnarySvc, request)
                    .await)
            }),
            "/test.Echo/Stream" => Box::pin(async move {
                Ok(tonic::server::Grpc::new(codec())
                    .server_streaming(StreamSvc, request)
                    .await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// A tonic server on 127.0.0.1 behind `metrics.http_layer()`, with a plain HTTP route
/// (`GET /plain`) beside the gRPC service.
async fn start(metrics: &Metrics) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("a bound address");
    let plain = axum::Router::new().route("/plain", axum::routing::get(|| async { "plain" }));
    let routes = tonic::service::Routes::from(plain).add_service(Echo);
    let server = Server::builder()
        .accept_http1(true)
        .layer(metrics.http_layer())
        .add_routes(routes)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(async move { server.await.expect("the server runs") });
    addr
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect to the test server")
}

fn call(code: Code, messages: u32, delay_ms: u64) -> Call {
    Call {
        code: code as i32,
        messages,
        delay_ms,
    }
}

async fn unary<T>(
    grpc: &mut tonic::client::Grpc<T>,
    path: &str,
    call: Request<Call>,
) -> Result<Reply, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    grpc.ready()
        .await
        .map_err(|error| Status::unknown(error.into().to_string()))?;
    let codec = tonic_prost::ProstCodec::<Call, Reply>::default();
    let path: PathAndQuery = path.parse().expect("a valid path");
    grpc.unary(call, path, codec)
        .await
        .map(Response::into_inner)
}

fn scrape(metrics: &Metrics) -> Vec<Sample> {
    parse(&common::prometheus_text(metrics.registry()))
}

/// Waits (at most 10 s) until the metrics satisfy `done`: the server finishes a call
/// when its stream ends, on its own schedule.
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

const SERVED: &str = "rpc_server_call_duration_seconds_count";

/// The number of calls served of `method` with status `code`.
fn served(samples: &[Sample], method: &str, code: &str) -> f64 {
    let found = common::find(
        samples,
        SERVED,
        &[
            ("rpc_system_name", "grpc"),
            ("rpc_method", method),
            ("rpc_response_status_code", code),
        ],
    );
    assert!(found.len() <= 1, "one series of {method} {code}: {found:?}");
    found.first().map_or(0.0, |sample| sample.value)
}

fn total_served(samples: &[Sample]) -> f64 {
    common::total(samples, SERVED, &[])
}

fn in_flight(samples: &[Sample]) -> f64 {
    value(
        samples,
        "rpc_server_active_calls",
        &[("rpc_system_name", "grpc")],
    )
    .unwrap_or(0.0)
}

/// The `error_type` of the series of `method` with status `code`.
fn error_type(samples: &[Sample], method: &str, code: &str) -> Option<String> {
    common::find(
        samples,
        SERVED,
        &[("rpc_method", method), ("rpc_response_status_code", code)],
    )
    .first()
    .and_then(|sample| sample.labels.get("error_type").cloned())
}

#[tokio::test]
async fn each_status_class_is_recorded_from_headers_or_trailers() {
    let metrics = Metrics::new();
    let addr = start(&metrics).await;
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    // Unary: OK in the trailers; errors in a trailers-only response.
    let codes = [
        (Code::Ok, 2),
        (Code::NotFound, 1),
        (Code::InvalidArgument, 3),
        (Code::AlreadyExists, 1),
        (Code::Internal, 2),
        (Code::Unavailable, 1),
    ];
    for (code, times) in codes {
        for _ in 0..times {
            let reply = unary(
                &mut grpc,
                "/test.Echo/Unary",
                Request::new(call(code, 0, 0)),
            )
            .await;
            assert_eq!(
                reply.err().map(|status| status.code()).unwrap_or(Code::Ok),
                code
            );
        }
    }
    // A stream that ends with an error after its messages: the status is in the trailers.
    grpc.ready().await.expect("the channel is ready");
    let mut stream = grpc
        .server_streaming(
            Request::new(call(Code::Aborted, 2, 0)),
            PathAndQuery::from_static("/test.Echo/Stream"),
            tonic_prost::ProstCodec::<Call, Reply>::default(),
        )
        .await
        .expect("the stream starts")
        .into_inner();
    let mut received = 0;
    let end = loop {
        match stream.message().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => break Code::Ok,
            Err(status) => break status.code(),
        }
    };
    assert_eq!((received, end), (2, Code::Aborted));

    let samples = until(&metrics, "11 calls served", |s| total_served(s) == 11.0).await;
    let method = "test.Echo/Unary";
    for (code, name, times, error) in [
        (Code::Ok, "OK", 2.0, None),
        (Code::NotFound, "NOT_FOUND", 1.0, None),
        (Code::InvalidArgument, "INVALID_ARGUMENT", 3.0, None),
        (Code::AlreadyExists, "ALREADY_EXISTS", 1.0, None),
        (Code::Internal, "INTERNAL", 2.0, Some("INTERNAL")),
        (Code::Unavailable, "UNAVAILABLE", 1.0, Some("UNAVAILABLE")),
    ] {
        assert_eq!(served(&samples, method, name), times, "{code:?}");
        assert_eq!(
            error_type(&samples, method, name).as_deref(),
            error,
            "{code:?}"
        );
    }
    assert_eq!(served(&samples, "test.Echo/Stream", "ABORTED"), 1.0);
    assert_eq!(in_flight(&samples), 0.0);
    // Recorded once: as calls, not also as HTTP requests.
    assert_eq!(
        common::total(&samples, "http_server_request_duration_seconds_count", &[]),
        0.0
    );
}

#[tokio::test]
async fn a_deadline_that_expires_is_deadline_exceeded() {
    let metrics = Metrics::new();
    let addr = start(&metrics).await;
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    // A method is named once a call of it is served (a call that ends unanswered is
    // `_OTHER` until then): one served call first.
    unary(
        &mut grpc,
        "/test.Echo/Unary",
        Request::new(call(Code::Ok, 0, 0)),
    )
    .await
    .expect("served");
    let mut request = Request::new(call(Code::Ok, 0, 5_000));
    request.set_timeout(Duration::from_millis(200));
    let status = unary(&mut grpc, "/test.Echo/Unary", request)
        .await
        .expect_err("the deadline expires first");
    // tonic's client gives up at the deadline with CANCELLED ("Timeout expired"), its
    // server with DEADLINE_EXCEEDED: whichever is first, the server drops the call.
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    let samples = until(&metrics, "the call is finished", |s| total_served(s) == 2.0).await;
    assert_eq!(
        served(&samples, "test.Echo/Unary", "DEADLINE_EXCEEDED"),
        1.0
    );
    assert_eq!(
        error_type(&samples, "test.Echo/Unary", "DEADLINE_EXCEEDED").as_deref(),
        Some("DEADLINE_EXCEEDED")
    );
    assert_eq!(in_flight(&samples), 0.0);
}

#[tokio::test]
async fn a_client_that_cancels_is_cancelled() {
    let metrics = Metrics::new();
    let addr = start(&metrics).await;
    let channel = channel(addr).await;
    // Named by a served call first (see `a_deadline_that_expires_is_deadline_exceeded`).
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    unary(
        &mut grpc,
        "/test.Echo/Unary",
        Request::new(call(Code::Ok, 0, 0)),
    )
    .await
    .expect("served");
    let task = tokio::spawn(async move {
        let mut grpc = tonic::client::Grpc::new(channel);
        unary(
            &mut grpc,
            "/test.Echo/Unary",
            Request::new(call(Code::Ok, 0, 10_000)),
        )
        .await
    });
    until(&metrics, "the call is in flight", |s| in_flight(s) == 1.0).await;
    task.abort();
    let samples = until(&metrics, "the call is finished", |s| total_served(s) == 2.0).await;
    assert_eq!(served(&samples, "test.Echo/Unary", "CANCELLED"), 1.0);
    assert_eq!(error_type(&samples, "test.Echo/Unary", "CANCELLED"), None);
    assert_eq!(in_flight(&samples), 0.0);
}

#[tokio::test]
async fn a_stream_dropped_half_way_is_cancelled_and_a_whole_one_is_ok() {
    let metrics = Metrics::new();
    let addr = start(&metrics).await;
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    for (messages, read) in [(3, None), (1_000, Some(2))] {
        grpc.ready().await.expect("the channel is ready");
        let mut stream = grpc
            .server_streaming(
                Request::new(call(Code::Ok, messages, 5)),
                PathAndQuery::from_static("/test.Echo/Stream"),
                tonic_prost::ProstCodec::<Call, Reply>::default(),
            )
            .await
            .expect("the stream starts")
            .into_inner();
        let mut received = 0;
        while read != Some(received) {
            match stream.message().await.expect("no error") {
                Some(_) => received += 1,
                None => break,
            }
        }
        assert_eq!(received, read.unwrap_or(3));
        drop(stream);
    }
    let samples = until(&metrics, "both streams finished", |s| {
        total_served(s) == 2.0
    })
    .await;
    assert_eq!(served(&samples, "test.Echo/Stream", "OK"), 1.0);
    assert_eq!(served(&samples, "test.Echo/Stream", "CANCELLED"), 1.0);
    assert_eq!(in_flight(&samples), 0.0);
}

#[tokio::test]
async fn unknown_methods_are_other_and_plain_http_stays_http() {
    let metrics = Metrics::new();
    let addr = start(&metrics).await;
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    let paths = [
        "/test.Echo/Nope",
        "/test.Echo/Nope",
        "/no.Such/Service",
        "/test.Echo/Other",
    ];
    for path in paths {
        let status = unary(&mut grpc, path, Request::new(call(Code::Ok, 0, 0)))
            .await
            .expect_err("no such method");
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
    }
    unary(
        &mut grpc,
        "/test.Echo/Unary",
        Request::new(call(Code::Ok, 0, 0)),
    )
    .await
    .expect("a known method");

    // Plain HTTP/1.1 on the same server.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    for _ in 0..2 {
        let response = client
            .get(format!("http://{addr}/plain").parse().expect("a valid URI"))
            .await
            .expect("GET /plain");
        assert_eq!(response.status(), 200);
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("the body");
    }

    let samples = until(&metrics, "5 calls and 2 requests", |s| {
        total_served(s) == 5.0
            && common::total(s, "http_server_request_duration_seconds_count", &[]) == 2.0
    })
    .await;
    assert_eq!(served(&samples, "_OTHER", "UNIMPLEMENTED"), 4.0);
    assert_eq!(
        error_type(&samples, "_OTHER", "UNIMPLEMENTED").as_deref(),
        Some("UNIMPLEMENTED")
    );
    assert_eq!(served(&samples, "test.Echo/Unary", "OK"), 1.0);
    let methods: Vec<&str> = common::find(&samples, SERVED, &[])
        .iter()
        .filter_map(|sample| sample.labels.get("rpc_method").map(String::as_str))
        .collect();
    assert!(
        methods
            .iter()
            .all(|method| ["_OTHER", "test.Echo/Unary"].contains(method)),
        "{methods:?}"
    );
    assert_eq!(
        value(
            &samples,
            "http_server_request_duration_seconds_count",
            &[
                ("http_request_method", "GET"),
                ("http_response_status_code", "200"),
                ("url_scheme", "http"),
                ("network_protocol_version", "1.1"),
            ]
        ),
        Some(2.0)
    );
    assert_eq!(in_flight(&samples), 0.0);
    common::promtool_check_metrics(&common::prometheus_text(metrics.registry()));
}

/// Issue 26, point 1: every path a client sent was interned, even answered
/// `UNIMPLEMENTED`, in a table capped at `max_series` and never emptied: made-up methods
/// filled it, and the real methods were then recorded in the overflow series only.
#[tokio::test]
async fn made_up_methods_do_not_take_the_real_methods_places() {
    let metrics = Metrics::builder()
        .http(tower_prometheus::HttpMetricsLayer::builder().max_series(20))
        .build()
        .expect("valid options");
    let addr = start(&metrics).await;
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    for n in 0..100 {
        let path = format!("/made.Up/Method{n}");
        let status = unary(&mut grpc, &path, Request::new(call(Code::Ok, 0, 0)))
            .await
            .expect_err("no such method");
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
    }
    // The real methods after them: a unary call that fails (a status alone), one that
    // succeeds, and a stream the client drops half-way.
    let status = unary(
        &mut grpc,
        "/test.Echo/Unary",
        Request::new(call(Code::NotFound, 0, 0)),
    )
    .await
    .expect_err("NOT_FOUND");
    assert_eq!(status.code(), Code::NotFound);
    unary(
        &mut grpc,
        "/test.Echo/Unary",
        Request::new(call(Code::Ok, 0, 0)),
    )
    .await
    .expect("served");
    grpc.ready().await.expect("the channel is ready");
    let mut stream = grpc
        .server_streaming(
            Request::new(call(Code::Ok, 1_000, 5)),
            PathAndQuery::from_static("/test.Echo/Stream"),
            tonic_prost::ProstCodec::<Call, Reply>::default(),
        )
        .await
        .expect("the stream starts")
        .into_inner();
    stream.message().await.expect("a message");
    drop(stream);

    let samples = until(&metrics, "103 calls served", |s| total_served(s) == 103.0).await;
    assert_eq!(served(&samples, "_OTHER", "UNIMPLEMENTED"), 100.0);
    assert_eq!(served(&samples, "test.Echo/Unary", "NOT_FOUND"), 1.0);
    assert_eq!(served(&samples, "test.Echo/Unary", "OK"), 1.0);
    assert_eq!(served(&samples, "test.Echo/Stream", "CANCELLED"), 1.0);
    let overflow = common::find(&samples, SERVED, &[("otel_metric_overflow", "true")]);
    assert!(overflow.is_empty(), "{overflow:?}");
    let methods: std::collections::BTreeSet<&str> = common::find(&samples, SERVED, &[])
        .iter()
        .filter_map(|sample| sample.labels.get("rpc_method").map(String::as_str))
        .collect();
    assert_eq!(
        methods.into_iter().collect::<Vec<_>>(),
        ["_OTHER", "test.Echo/Stream", "test.Echo/Unary"]
    );
}

/// How a raw HTTP/2 client ends the unary call it started.
#[derive(Clone, Copy, Debug)]
enum Break {
    /// RST_STREAM with this code, after the HEADERS and `bytes` bytes of a message whose
    /// length prefix announced 100.
    Reset(h2::Reason, usize),
    /// END_STREAM after `bytes` bytes of that message: the stream ends inside it.
    Truncate(usize),
}

/// Starts a unary call to `test.Echo/Unary` over a raw HTTP/2 connection, waits until
/// the server has it in flight, and breaks it as `how` says.
async fn break_a_call(metrics: &Metrics, addr: SocketAddr, how: Break) {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the test server");
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .expect("an HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("the connection is ready");
    let request = http::Request::post(format!("http://{addr}/test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a valid request");
    let (response, mut stream) = client
        .send_request(request, false)
        .expect("the request is sent");
    let bytes = match how {
        Break::Reset(_, bytes) | Break::Truncate(bytes) => bytes,
    };
    // Not compressed, 100 bytes announced, `bytes` sent.
    let mut message = vec![0, 0, 0, 0, 100];
    message.resize(5 + bytes, 0);
    let before = total_served(&scrape(metrics));
    if bytes > 0 {
        stream
            .send_data(bytes::Bytes::from(message), false)
            .expect("data is sent");
    }
    until(metrics, "the call is in flight", |s| in_flight(s) == 1.0).await;
    match how {
        Break::Reset(reason, _) => stream.send_reset(reason),
        Break::Truncate(_) => stream
            .send_data(bytes::Bytes::new(), true)
            .expect("the end is sent"),
    }
    until(metrics, "the call is finished", |s| {
        total_served(s) == before + 1.0
    })
    .await;
    drop((response, stream, client));
    connection.abort();
}

/// Issue 26, point 2: a client that resets a unary call in the middle of its message
/// made tonic answer `INTERNAL` ("Missing request message.", "Unexpected EOF decoding
/// stream.", "h2 protocol error: error reading a body from connection"), which the
/// layer recorded as the server's error, and which paged. It is the client's doing:
/// `CANCELLED`, without `error_type`.
#[tokio::test]
async fn a_call_the_client_breaks_mid_message_is_cancelled() {
    let metrics = Metrics::new();
    let addr = start(&metrics).await;
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    // Named by a served call first.
    unary(
        &mut grpc,
        "/test.Echo/Unary",
        Request::new(call(Code::Ok, 0, 0)),
    )
    .await
    .expect("served");
    let breaks = [
        Break::Reset(h2::Reason::CANCEL, 10),
        Break::Reset(h2::Reason::NO_ERROR, 10),
        Break::Reset(h2::Reason::CANCEL, 0),
        Break::Reset(h2::Reason::NO_ERROR, 0),
        Break::Reset(h2::Reason::INTERNAL_ERROR, 10),
        Break::Reset(h2::Reason::PROTOCOL_ERROR, 10),
        Break::Truncate(10),
        Break::Truncate(0),
    ];
    for how in breaks {
        break_a_call(&metrics, addr, how).await;
    }
    let samples = scrape(&metrics);
    assert_eq!(
        total_served(&samples),
        1.0 + breaks.len() as f64,
        "{samples:#?}"
    );
    assert_eq!(
        served(&samples, "test.Echo/Unary", "CANCELLED"),
        breaks.len() as f64,
        "{samples:#?}"
    );
    assert_eq!(error_type(&samples, "test.Echo/Unary", "CANCELLED"), None);
    // A call the handler itself fails stays the server's error.
    unary(
        &mut grpc,
        "/test.Echo/Unary",
        Request::new(call(Code::Internal, 0, 0)),
    )
    .await
    .expect_err("INTERNAL");
    let samples = until(&metrics, "the INTERNAL call", |s| {
        served(s, "test.Echo/Unary", "INTERNAL") == 1.0
    })
    .await;
    assert_eq!(
        error_type(&samples, "test.Echo/Unary", "INTERNAL").as_deref(),
        Some("INTERNAL")
    );
}

/// Issue 26, point 7: tonic reads `grpc-timeout: +100m` as 100 ms (Rust's integer
/// parsing takes the `+`) and ends the call then; the layer did not read it, and
/// recorded the call `CANCELLED` instead of `DEADLINE_EXCEEDED`.
#[tokio::test]
async fn a_deadline_tonic_reads_with_a_plus_is_deadline_exceeded() {
    let metrics = Metrics::new();
    let addr = start(&metrics).await;
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    unary(
        &mut grpc,
        "/test.Echo/Unary",
        Request::new(call(Code::Ok, 0, 0)),
    )
    .await
    .expect("served");
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the test server");
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .expect("an HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("the connection is ready");
    let request = http::Request::post(format!("http://{addr}/test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "+100m")
        .body(())
        .expect("a valid request");
    let (response, mut stream) = client
        .send_request(request, false)
        .expect("the request is sent");
    let message = prost::Message::encode_to_vec(&call(Code::Ok, 0, 5_000));
    let mut frame = vec![0];
    frame.extend((message.len() as u32).to_be_bytes());
    frame.extend(message);
    stream
        .send_data(bytes::Bytes::from(frame), true)
        .expect("the message is sent");
    let response = response.await.expect("an answer");
    // tonic's server answers its own timeout with a status alone.
    let status = response.headers().get("grpc-status").cloned();
    assert!(status.is_some(), "{response:?}");
    let samples = until(&metrics, "the call is finished", |s| total_served(s) == 2.0).await;
    assert_eq!(
        served(&samples, "test.Echo/Unary", "DEADLINE_EXCEEDED"),
        1.0,
        "{samples:#?}"
    );
    connection.abort();
}

#[tokio::test]
async fn with_grpc_off_calls_are_http_requests() {
    let metrics = Metrics::builder()
        .http(tower_prometheus::HttpMetricsLayer::builder().grpc(false))
        .build()
        .expect("valid options");
    let addr = start(&metrics).await;
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    let status = unary(
        &mut grpc,
        "/test.Echo/Unary",
        Request::new(call(Code::NotFound, 0, 0)),
    )
    .await
    .expect_err("NOT_FOUND");
    assert_eq!(status.code(), Code::NotFound);
    let samples = until(&metrics, "the request", |s| {
        common::total(s, "http_server_request_duration_seconds_count", &[]) == 1.0
    })
    .await;
    assert_eq!(
        value(
            &samples,
            "http_server_request_duration_seconds_count",
            &[
                ("http_request_method", "POST"),
                ("http_response_status_code", "200"),
                ("url_scheme", "http"),
                ("network_protocol_version", "2"),
            ]
        ),
        Some(1.0)
    );
    assert_eq!(total_served(&samples), 0.0);
}

// The client layer.

const CALLED: &str = "rpc_client_call_duration_seconds_count";
const REQUESTED: &str = "http_client_request_duration_seconds_count";

/// The one series of `name` whose labels include `labels`: its count and `error_type`.
fn one(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> (f64, Option<String>) {
    let found = common::find(samples, name, labels);
    assert_eq!(found.len(), 1, "one series {name} {labels:?}: {found:?}");
    (found[0].value, found[0].labels.get("error_type").cloned())
}

/// A port on 127.0.0.1 that nothing listens on (bound, then closed).
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    listener.local_addr().expect("a bound address").port()
}

#[tokio::test]
async fn client_layer_records_grpc_statuses_timeouts_and_refused_connections() {
    let server = Metrics::new();
    let addr = start(&server).await;
    let client = Metrics::new();
    let layer = client.client_layer().server_address(addr.to_string());
    let channel = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service(channel(addr).await);
    let mut grpc = tonic::client::Grpc::new(channel);
    for code in [Code::Ok, Code::Ok, Code::NotFound] {
        let reply = unary(
            &mut grpc,
            "/test.Echo/Unary",
            Request::new(call(code, 0, 0)),
        )
        .await;
        assert_eq!(
            reply.err().map(|status| status.code()).unwrap_or(Code::Ok),
            code
        );
    }
    // The Channel's own deadline (from the call's timeout) is inside the layer.
    let mut request = Request::new(call(Code::Ok, 0, 5_000));
    request.set_timeout(Duration::from_millis(100));
    unary(&mut grpc, "/test.Echo/Unary", request)
        .await
        .expect_err("the deadline expires");
    // A server that is not there.
    let port = closed_port().await;
    let refused = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a valid URI")
        .connect_lazy();
    let mut refused = tonic::client::Grpc::new(
        tower::ServiceBuilder::new()
            .layer(layer.clone().server_address(format!("127.0.0.1:{port}")))
            .service(refused),
    );
    let status = unary(
        &mut refused,
        "/test.Echo/Unary",
        Request::new(call(Code::Ok, 0, 0)),
    )
    .await
    .expect_err("nothing listens");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let samples = until(&client, "5 calls made", |s| {
        common::total(s, CALLED, &[]) == 5.0
    })
    .await;
    let port = addr.port().to_string();
    let labels = |code: &'static str| {
        vec![
            ("rpc_system_name", "grpc"),
            ("rpc_method", "test.Echo/Unary"),
            ("server_address", "127.0.0.1"),
            ("rpc_response_status_code", code),
        ]
    };
    let mut ok = labels("OK");
    ok.push(("server_port", &port));
    assert_eq!(one(&samples, CALLED, &ok), (2.0, None));
    assert_eq!(
        one(&samples, CALLED, &labels("NOT_FOUND")),
        (1.0, Some("NOT_FOUND".to_owned())),
        "every code but OK is a client's failure"
    );
    assert_eq!(
        one(&samples, CALLED, &labels("DEADLINE_EXCEEDED")),
        (1.0, Some("timeout".to_owned()))
    );
    assert_eq!(
        one(&samples, CALLED, &labels("UNAVAILABLE")),
        (1.0, Some("connection_refused".to_owned()))
    );
    // The server saw 4 of them (the timed-out one as DEADLINE_EXCEEDED or CANCELLED).
    until(&server, "4 calls served", |s| total_served(s) == 4.0).await;
}

/// Issue 31, point 5: a call past the deadline its client sent was `DEADLINE_EXCEEDED`
/// on the server and `CANCELLED` on the client, when the client's timer is not inside
/// the layer: here a client without one (hyper-util's, which tonic's `Channel` is not:
/// its server enforces the deadline and answers `CANCELLED`, "Timeout expired"), and a
/// caller's own timer outside the layer, of the deadline it sent.
#[tokio::test]
async fn client_layer_records_a_call_past_its_deadline_as_its_server_does() {
    let server = Metrics::new();
    let addr = start(&server).await;
    let client = Metrics::new();
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let service = tower::ServiceBuilder::new()
        .layer(client.client_layer())
        .service(hyper);
    let origin: http::Uri = format!("http://{addr}").parse().expect("a valid URI");
    let mut grpc = tonic::client::Grpc::with_origin(service, origin);
    // The server's timer.
    let mut request = Request::new(call(Code::Ok, 0, 5_000));
    request.set_timeout(Duration::from_millis(200));
    let status = unary(&mut grpc, "/test.Echo/Unary", request)
        .await
        .expect_err("the deadline passes");
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    // The caller's timer, outside the layer, of the deadline it sent.
    let mut request = Request::new(call(Code::Ok, 0, 5_000));
    request.set_timeout(Duration::from_millis(200));
    let made = unary(&mut grpc, "/test.Echo/Unary", request);
    tokio::time::timeout(Duration::from_millis(200), made)
        .await
        .expect_err("the caller gives up");
    // Cancelled well before its deadline: cancelled.
    let mut request = Request::new(call(Code::Ok, 0, 5_000));
    request.set_timeout(Duration::from_secs(60));
    let made = unary(&mut grpc, "/test.Echo/Unary", request);
    tokio::time::timeout(Duration::from_millis(100), made)
        .await
        .expect_err("the caller gives up");
    let samples = until(&client, "3 calls made", |s| {
        common::total(s, CALLED, &[]) == 3.0
    })
    .await;
    let code = |code: &'static str| {
        [
            ("rpc_method", "test.Echo/Unary"),
            ("rpc_response_status_code", code),
        ]
    };
    assert_eq!(
        one(&samples, CALLED, &code("DEADLINE_EXCEEDED")),
        (2.0, Some("DEADLINE_EXCEEDED".to_owned())),
        "{samples:#?}"
    );
    assert_eq!(
        one(&samples, CALLED, &code("CANCELLED")),
        (1.0, Some("CANCELLED".to_owned()))
    );
}

/// How a stand-in server at 127.0.0.1 treats the calls made to it.
#[derive(Clone, Copy, Debug)]
enum Misbehaving {
    /// Nothing listens: the connection is refused.
    Absent,
    /// It accepts each connection and closes it at once.
    AcceptsThenCloses,
    /// It takes the call (HTTP/2), then dies: the connection closes with the call in
    /// flight.
    DiesWithTheCallInFlight,
    /// It answers the call with RST_STREAM and this code.
    Resets(h2::Reason),
}

/// Starts a stand-in server that behaves as `how` says; its address.
async fn misbehaving(how: Misbehaving) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("a bound address");
    if let Misbehaving::Absent = how {
        return addr;
    }
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Misbehaving::AcceptsThenCloses = how {
                    return;
                }
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_, mut respond))) = connection.accept().await {
                    match how {
                        Misbehaving::Resets(reason) => respond.send_reset(reason),
                        _ => return,
                    }
                }
            });
        }
    });
    addr
}

/// A tonic code as the specification spells it (`DeadlineExceeded`: `DEADLINE_EXCEEDED`).
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (n, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && n > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// Issue 26, point 7: the client's metrics said another code than tonic gave the
/// calling code: a server that accepts and closes the connection, or dies with a call
/// in flight, was `UNAVAILABLE` (`connect_error`) though tonic says `CANCELLED` or
/// `UNKNOWN` ("transport error") and the connection was made. The code recorded is
/// tonic's, for each way a server can fail a call.
#[tokio::test]
async fn client_layer_records_the_code_tonic_returns() {
    let cases = [
        (Misbehaving::Absent, "connection_refused"),
        (Misbehaving::AcceptsThenCloses, "connection_closed"),
        (Misbehaving::DiesWithTheCallInFlight, "connection_error"),
        (
            Misbehaving::Resets(h2::Reason::REFUSED_STREAM),
            "UNAVAILABLE",
        ),
        (Misbehaving::Resets(h2::Reason::INTERNAL_ERROR), "INTERNAL"),
        (
            Misbehaving::Resets(h2::Reason::ENHANCE_YOUR_CALM),
            "RESOURCE_EXHAUSTED",
        ),
    ];
    for (how, expected_error) in cases {
        let addr = misbehaving(how).await;
        let metrics = Metrics::new();
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .connect_lazy();
        let mut grpc = tonic::client::Grpc::new(
            tower::ServiceBuilder::new()
                .layer(metrics.client_layer().server_address(addr.to_string()))
                .service(channel),
        );
        let status = unary(
            &mut grpc,
            "/test.Echo/Unary",
            Request::new(call(Code::Ok, 0, 0)),
        )
        .await
        .expect_err("the server fails the call");
        let samples = until(&metrics, "the call", |s| {
            common::total(s, CALLED, &[]) == 1.0
        })
        .await;
        let found = common::find(&samples, CALLED, &[]);
        let labels = &found[0].labels;
        assert_eq!(
            labels.get("rpc_response_status_code"),
            Some(&code_name(status.code())),
            "{how:?}: tonic returned {status:?}; {labels:?}"
        );
        assert_eq!(
            labels.get("error_type").map(String::as_str),
            Some(expected_error),
            "{how:?}: {status:?}"
        );
    }
}

#[tokio::test]
async fn client_layer_records_http_requests_by_server_and_status() {
    let server = Metrics::new();
    let addr = start(&server).await;
    let client = Metrics::new();
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let http = tower::ServiceBuilder::new()
        .layer(client.client_layer())
        .service(hyper);
    let port = closed_port().await;
    for uri in [
        format!("http://{addr}/plain"),
        format!("http://{addr}/plain"),
        format!("http://{addr}/missing"),
        format!("http://127.0.0.1:{port}/plain"),
    ] {
        let request = http::Request::get(uri.as_str())
            .body(http_body_util::Empty::new())
            .expect("a valid request");
        match tower::ServiceExt::oneshot(http.clone(), request).await {
            Ok(response) => {
                http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .expect("the body");
            }
            Err(error) => assert!(uri.contains(&port.to_string()), "{uri}: {error}"),
        }
    }
    let samples = until(&client, "4 requests", |s| {
        common::total(s, REQUESTED, &[]) == 4.0
    })
    .await;
    let port = port.to_string();
    let server_port = addr.port().to_string();
    let at = |port: &'static str| {
        vec![
            ("http_request_method", "GET"),
            ("server_address", "127.0.0.1"),
            ("server_port", port),
        ]
    };
    let server_port: &'static str = Box::leak(server_port.into_boxed_str());
    let refused_port: &'static str = Box::leak(port.into_boxed_str());
    let mut ok = at(server_port);
    ok.push(("http_response_status_code", "200"));
    assert_eq!(one(&samples, REQUESTED, &ok), (2.0, None));
    let mut missing = at(server_port);
    missing.push(("http_response_status_code", "404"));
    assert_eq!(
        one(&samples, REQUESTED, &missing),
        (1.0, Some("404".to_owned()))
    );
    let refused = common::find(&samples, REQUESTED, &at(refused_port));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].value, 1.0);
    assert_eq!(
        refused[0].labels.get("error_type").map(String::as_str),
        Some("connection_refused")
    );
    assert!(
        !refused[0].labels.contains_key("http_response_status_code"),
        "no response, no status"
    );
    common::promtool_check_metrics(&common::prometheus_text(client.registry()));
}
