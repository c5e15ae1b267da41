//! gRPC client-streaming and bidirectional calls over loopback: a real tonic server
//! behind `http_layer()`, a real tonic client behind `client_layer()`. Each call is
//! finished, on both sides, when its response stream ends (or is dropped), never when
//! the response head arrives, and its duration covers the client's streaming.
//!
//! The service is written by hand as tonic's code generator writes one (no protoc):
//! `test.Streams/Sum` (client streaming) counts the messages it receives and answers
//! once the client's stream ends, or fails with the first non-zero `code` it received;
//! `test.Streams/Chat` (bidirectional) answers each message with one, and ends its
//! stream with the first non-zero `code` it receives, or when the client's stream ends.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{Sample, parse};
use http::uri::PathAndQuery;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxFuture;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status, Streaming};
use tower_prometheus::Metrics;

#[derive(Clone, PartialEq, prost::Message)]
struct Call {
    #[prost(int32, tag = "1")]
    code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Reply {
    #[prost(uint32, tag = "1")]
    n: u32,
}

type ReplyStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Reply, Status>> + Send>>;

#[derive(Clone)]
struct Streams;

impl tonic::server::NamedService for Streams {
    const NAME: &'static str = "test.Streams";
}

struct SumSvc;

impl tonic::server::ClientStreamingService<Call> for SumSvc {
    type Response = Reply;
    type Future = BoxFuture<Response<Reply>, Status>;

    fn call(&mut self, request: Request<Streaming<Call>>) -> Self::Future {
        Box::pin(async move {
            let mut calls = request.into_inner();
            let mut n = 0;
            let mut failed = None;
            while let Some(call) = calls.message().await? {
                n += 1;
                if call.code != 0 && failed.is_none() {
                    failed = Some(Code::from(call.code));
                }
            }
            match failed {
                None => Ok(Response::new(Reply { n })),
                Some(code) => Err(Status::new(code, "as asked")),
            }
        })
    }
}

struct ChatSvc;

impl tonic::server::StreamingService<Call> for ChatSvc {
    type Response = Reply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Response<ReplyStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Call>>) -> Self::Future {
        Box::pin(async move {
            let mut n = 0;
            let replies = request.into_inner().map(move |call| match call {
                Ok(call) if call.code == 0 => {
                    n += 1;
                    Ok(Reply { n: n - 1 })
                }
                Ok(call) => Err(Status::new(Code::from(call.code), "as asked")),
                Err(status) => Err(status),
            });
            let stream: ReplyStream = Box::pin(replies);
            Ok(Response::new(stream))
        })
    }
}

impl<B> tower::Service<http::Request<B>> for Streams
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
            "/test.Streams/Sum" => Box::pin(async move {
                Ok(tonic::server::Grpc::new(codec())
                    .client_streaming(SumSvc, request)
                    .await)
            }),
            "/test.Streams/Chat" => Box::pin(async move {
                Ok(tonic::server::Grpc::new(codec())
                    .streaming(ChatSvc, request)
                    .await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// A tonic server on 127.0.0.1 behind `server.http_layer()`, and a client to it behind
/// `client.client_layer()`.
async fn connect(
    server: &Metrics,
    client: &Metrics,
) -> tonic::client::Grpc<tower_prometheus::client_metrics::ClientMetrics<Channel>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr: SocketAddr = listener.local_addr().expect("a bound address");
    let serve = Server::builder()
        .layer(server.http_layer())
        .add_service(Streams)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(async move { serve.await.expect("the server runs") });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect to the test server");
    let layer = client.client_layer().server_address(addr.to_string());
    tonic::client::Grpc::new(tower::Layer::layer(&layer, channel))
}

fn codec() -> tonic_prost::ProstCodec<Call, Reply> {
    tonic_prost::ProstCodec::default()
}

fn call(code: Code) -> Call {
    Call { code: code as i32 }
}

fn scrape(metrics: &Metrics) -> Vec<Sample> {
    parse(&common::prometheus_text(metrics.registry()))
}

const SERVED: &str = "rpc_server_call_duration_seconds";
const CALLED: &str = "rpc_client_call_duration_seconds";

/// The calls of `method` recorded in `family` (`SERVED` or `CALLED`), by status.
fn calls(samples: &[Sample], family: &str, method: &str, code: &str) -> f64 {
    common::total(
        samples,
        &format!("{family}_count"),
        &[("rpc_method", method), ("rpc_response_status_code", code)],
    )
}

fn all_calls(samples: &[Sample], family: &str) -> f64 {
    common::total(samples, &format!("{family}_count"), &[])
}

/// The `error_type` of the one series of `method` with `code` in `family`.
fn error_type(samples: &[Sample], family: &str, method: &str, code: &str) -> Option<String> {
    let found = common::find(
        samples,
        &format!("{family}_count"),
        &[("rpc_method", method), ("rpc_response_status_code", code)],
    );
    assert_eq!(
        found.len(),
        1,
        "one series {family} {method} {code}: {found:?}"
    );
    found[0].labels.get("error_type").cloned()
}

/// Calls of `method` in `family` that took at most 100 ms.
fn within_100ms(samples: &[Sample], family: &str, method: &str) -> f64 {
    common::total(
        samples,
        &format!("{family}_bucket"),
        &[("rpc_method", method), ("le", "0.1")],
    )
}

fn server_in_flight(samples: &[Sample]) -> f64 {
    common::value(
        samples,
        "rpc_server_active_calls",
        &[("rpc_system_name", "grpc")],
    )
    .unwrap_or(0.0)
}

/// Waits (at most 10 s) until `metrics` satisfy `done`: the server finishes a call when
/// its stream ends, on its own schedule.
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

/// The client's streaming, long enough to be told from a call timed from its end.
const CLIENT_PAUSE: Duration = Duration::from_millis(150);

#[tokio::test]
async fn client_streaming_calls_are_finished_at_the_end_of_their_response() {
    let (server, client) = (Metrics::new(), Metrics::new());
    let grpc = connect(&server, &client).await;
    let sum = "test.Streams/Sum";

    for (codes, expected) in [
        (vec![Code::Ok, Code::Ok, Code::Ok], "OK"),
        (vec![Code::Ok, Code::Aborted, Code::Ok], "ABORTED"),
    ] {
        let made = all_calls(&scrape(&client), CALLED);
        let (send, messages) = mpsc::channel(4);
        let mut calling = grpc.clone();
        let task = tokio::spawn(async move {
            calling.ready().await.expect("the channel is ready");
            calling
                .client_streaming(
                    Request::new(ReceiverStream::new(messages)),
                    PathAndQuery::from_static("/test.Streams/Sum"),
                    codec(),
                )
                .await
        });
        let (first, rest) = codes.split_first().expect("a message");
        send.send(call(*first)).await.expect("the call is open");
        // The server has the call; the client is still streaming: in flight on the
        // server, finished on neither side.
        let samples = until(&server, "the call in flight", |s| {
            server_in_flight(s) == 1.0
        })
        .await;
        assert_eq!(calls(&samples, SERVED, sum, expected), 0.0);
        tokio::time::sleep(CLIENT_PAUSE).await;
        assert_eq!(calls(&scrape(&server), SERVED, sum, expected), 0.0);
        assert_eq!(all_calls(&scrape(&client), CALLED), made);
        for code in rest {
            send.send(call(*code)).await.expect("the call is open");
        }
        drop(send);
        let answer = task.await.expect("the call task");
        match expected {
            "OK" => assert_eq!(answer.expect("OK").into_inner().n, 3),
            _ => assert_eq!(answer.expect_err("failed").code(), Code::Aborted),
        }
    }

    let samples = until(&server, "both calls served", |s| {
        all_calls(s, SERVED) == 2.0
    })
    .await;
    assert_eq!(calls(&samples, SERVED, sum, "OK"), 1.0);
    assert_eq!(calls(&samples, SERVED, sum, "ABORTED"), 1.0);
    assert_eq!(error_type(&samples, SERVED, sum, "ABORTED"), None);
    assert_eq!(
        within_100ms(&samples, SERVED, sum),
        0.0,
        "each call lasted the client's streaming"
    );
    assert_eq!(server_in_flight(&samples), 0.0);

    let samples = until(&client, "both calls made", |s| all_calls(s, CALLED) == 2.0).await;
    assert_eq!(calls(&samples, CALLED, sum, "OK"), 1.0);
    assert_eq!(
        error_type(&samples, CALLED, sum, "ABORTED").as_deref(),
        Some("ABORTED")
    );
    assert_eq!(within_100ms(&samples, CALLED, sum), 0.0);
}

#[tokio::test]
async fn bidirectional_calls_are_finished_at_the_end_of_their_response_stream() {
    let (server, client) = (Metrics::new(), Metrics::new());
    let mut grpc = connect(&server, &client).await;
    let chat = "test.Streams/Chat";

    // Ended by the client (OK), by the server with a status after a message (DATA_LOSS),
    // and dropped by the client half way (CANCELLED).
    for ending in ["OK", "DATA_LOSS", "CANCELLED"] {
        let (send, messages) = mpsc::channel(4);
        grpc.ready().await.expect("the channel is ready");
        let mut replies = grpc
            .streaming(
                Request::new(ReceiverStream::new(messages)),
                PathAndQuery::from_static("/test.Streams/Chat"),
                codec(),
            )
            .await
            .expect("the stream starts")
            .into_inner();
        for n in 0..2 {
            send.send(call(Code::Ok)).await.expect("the call is open");
            let reply = replies.message().await.expect("no error").expect("a reply");
            assert_eq!(reply.n, n);
        }
        // Two messages each way, the response head long received: finished on neither
        // side.
        let samples = scrape(&server);
        assert_eq!(server_in_flight(&samples), 1.0, "{ending}");
        let finished = all_calls(&samples, SERVED);
        tokio::time::sleep(CLIENT_PAUSE).await;
        assert_eq!(all_calls(&scrape(&server), SERVED), finished);
        let made = all_calls(&scrape(&client), CALLED);
        match ending {
            "OK" => {
                drop(send);
                assert!(replies.message().await.expect("OK").is_none());
            }
            "DATA_LOSS" => {
                send.send(call(Code::DataLoss)).await.expect("open");
                let status = replies.message().await.expect_err("the server's status");
                assert_eq!(status.code(), Code::DataLoss);
            }
            _ => drop((send, replies)),
        }
        let samples = until(&server, "the call finished", |s| {
            all_calls(s, SERVED) == finished + 1.0
        })
        .await;
        assert_eq!(calls(&samples, SERVED, chat, ending), 1.0, "{ending}");
        assert_eq!(server_in_flight(&samples), 0.0);
        until(&client, "the call finished", |s| {
            all_calls(s, CALLED) == made + 1.0
        })
        .await;
    }

    let samples = scrape(&server);
    assert_eq!(error_type(&samples, SERVED, chat, "OK"), None);
    assert_eq!(
        error_type(&samples, SERVED, chat, "DATA_LOSS").as_deref(),
        Some("DATA_LOSS")
    );
    assert_eq!(error_type(&samples, SERVED, chat, "CANCELLED"), None);
    assert_eq!(within_100ms(&samples, SERVED, chat), 0.0);

    let samples = scrape(&client);
    assert_eq!(calls(&samples, CALLED, chat, "OK"), 1.0);
    assert_eq!(error_type(&samples, CALLED, chat, "OK"), None);
    assert_eq!(
        error_type(&samples, CALLED, chat, "DATA_LOSS").as_deref(),
        Some("DATA_LOSS")
    );
    assert_eq!(
        error_type(&samples, CALLED, chat, "CANCELLED").as_deref(),
        Some("CANCELLED")
    );
    assert_eq!(within_100ms(&samples, CALLED, chat), 0.0);
}
