//! The PDP over loopback, through real tonic clients: each RPC and its statuses, health
//! checking, reflection, `/metrics` on the same port showing the calls, and submissions
//! idempotent by their key.

use std::net::SocketAddr;
use std::time::Duration;

use pdp::proto::pdp_client::PdpClient;
use pdp::proto::{Lifecycle, SubmitInvoiceRequest, WatchLifecycleRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

async fn start() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("a bound address");
    let service = pdp::PdpService::new(Duration::from_millis(5));
    tokio::spawn(pdp::serve(
        listener,
        pdp::metrics(),
        service,
        std::future::pending(),
    ));
    addr
}

/// `GET /metrics` over HTTP/1.1 on the gRPC port.
async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: pdp\r\nconnection: close\r\n\r\n")
        .await
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read the response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

fn invoice(number: &str) -> SubmitInvoiceRequest {
    SubmitInvoiceRequest {
        seller_siret: "12345678901234".into(),
        number: number.into(),
        issue_date: "2026-12-01".into(),
        currency: "EUR".into(),
        total_gross_cents: 12_000,
        client_name: "Client".into(),
        submission_key: String::new(),
    }
}

fn keyed(number: &str, key: &str) -> SubmitInvoiceRequest {
    SubmitInvoiceRequest {
        submission_key: key.into(),
        ..invoice(number)
    }
}

/// The count of calls of `method` answered `code`, from an exposition.
fn calls(text: &str, method: &str, code: &str) -> u64 {
    let wanted = [
        format!("rpc_method=\"{method}\""),
        format!("rpc_response_status_code=\"{code}\""),
    ];
    text.lines()
        .filter(|line| line.starts_with("rpc_server_call_duration_seconds_count{"))
        .filter(|line| wanted.iter().all(|label| line.contains(label.as_str())))
        .map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|value| value.parse::<u64>().ok())
                .expect("a count")
        })
        .sum()
}

#[tokio::test]
async fn submissions_statuses_health_reflection_and_metrics() {
    let addr = start().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect");
    let mut client = PdpClient::new(channel.clone());

    let reply = client
        .submit_invoice(invoice("F-1"))
        .await
        .expect("a valid invoice")
        .into_inner();
    assert_eq!(reply.status(), Lifecycle::Submitted);
    let duplicate = client
        .submit_invoice(invoice("F-1"))
        .await
        .expect_err("a duplicate");
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    for bad in [
        SubmitInvoiceRequest {
            seller_siret: "123".into(),
            ..invoice("F-2")
        },
        SubmitInvoiceRequest {
            issue_date: "1 Dec".into(),
            ..invoice("F-3")
        },
        SubmitInvoiceRequest {
            total_gross_cents: -1,
            ..invoice("F-4")
        },
    ] {
        let status = client.submit_invoice(bad).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }

    let mut events = client
        .watch_lifecycle(WatchLifecycleRequest {
            submission_id: reply.submission_id.clone(),
        })
        .await
        .expect("a known submission")
        .into_inner();
    let mut statuses = Vec::new();
    while let Some(event) = events.message().await.expect("no error") {
        statuses.push(event.status());
    }
    assert_eq!(
        statuses,
        [
            Lifecycle::Submitted,
            Lifecycle::Received,
            Lifecycle::Accepted
        ]
    );
    let unknown = client
        .watch_lifecycle(WatchLifecycleRequest {
            submission_id: "sub-999".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "pdp.v1.Pdp".into(),
        })
        .await
        .expect("the PDP is known")
        .into_inner();
    assert_eq!(
        serving.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("no error")
        .expect("one answer");
    let listed = format!("{answer:?}");
    assert!(
        listed.contains("pdp.v1.Pdp") && listed.contains("grpc.health.v1.Health"),
        "{listed}"
    );
    drop(answers);

    // The server finishes a call when its stream ends, on its own schedule.
    let mut text = String::new();
    for _ in 0..500 {
        text = scrape(addr).await;
        if calls(&text, "pdp.v1.Pdp/WatchLifecycle", "OK") == 1
            && calls(&text, "grpc.health.v1.Health/Check", "OK") == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(calls(&text, "pdp.v1.Pdp/SubmitInvoice", "OK"), 1, "{text}");
    assert_eq!(
        calls(&text, "pdp.v1.Pdp/SubmitInvoice", "ALREADY_EXISTS"),
        1
    );
    assert_eq!(
        calls(&text, "pdp.v1.Pdp/SubmitInvoice", "INVALID_ARGUMENT"),
        3
    );
    assert_eq!(calls(&text, "pdp.v1.Pdp/WatchLifecycle", "OK"), 1);
    assert_eq!(calls(&text, "pdp.v1.Pdp/WatchLifecycle", "NOT_FOUND"), 1);
    assert_eq!(calls(&text, "grpc.health.v1.Health/Check", "OK"), 1);
    assert!(
        !text.contains("http_route=\"/metrics\""),
        "scrapes are not recorded"
    );
}

/// A retry (same key) gets the first call's answer, whatever it was: the submission id a
/// client missed, or the first refusal. Another key for the same SIRET and number is
/// another submission, refused as a duplicate; a key reused for another invoice is
/// refused. Without a key, each call is a new submission.
#[tokio::test]
async fn submissions_are_idempotent_by_their_key() {
    let addr = start().await;
    let client = PdpClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let submit = |request: SubmitInvoiceRequest| {
        let mut client = client.clone();
        async move {
            client
                .submit_invoice(request)
                .await
                .map(|reply| reply.into_inner().submission_id)
                .map_err(|status| (status.code(), status.message().to_owned()))
        }
    };

    let first = submit(keyed("F-1", "k-1")).await.expect("a new invoice");
    assert_eq!(first, "sub-1");
    for _ in 0..3 {
        assert_eq!(
            submit(keyed("F-1", "k-1")).await,
            Ok(first.clone()),
            "a retry"
        );
    }
    let duplicate = submit(keyed("F-1", "k-2"))
        .await
        .expect_err("another submission");
    assert_eq!(duplicate.0, Code::AlreadyExists, "{duplicate:?}");
    // The retry of the duplicate gets its first answer too, not the id of F-1.
    assert_eq!(submit(keyed("F-1", "k-2")).await, Err(duplicate));
    let reused = submit(keyed("F-2", "k-1")).await.expect_err("a key reused");
    assert_eq!(reused.0, Code::InvalidArgument, "{reused:?}");
    assert!(reused.1.contains("submission_key"), "{reused:?}");
    // F-2 was not registered by the refused call: its own key submits it.
    assert_eq!(submit(keyed("F-2", "k-3")).await, Ok("sub-2".to_owned()));
    // A refusal is kept too: the same key gets it again, even with the total corrected.
    let bad = SubmitInvoiceRequest {
        total_gross_cents: -1,
        ..keyed("F-3", "k-4")
    };
    for request in [bad, keyed("F-3", "k-4")] {
        assert_eq!(
            submit(request).await.map_err(|(code, _)| code),
            Err(Code::InvalidArgument)
        );
    }
    assert_eq!(submit(keyed("F-3", "k-5")).await, Ok("sub-3".to_owned()));
    // Without a key: F-4 is registered once, then a duplicate.
    assert_eq!(submit(invoice("F-4")).await, Ok("sub-4".to_owned()));
    assert_eq!(
        submit(invoice("F-4")).await.map_err(|(code, _)| code),
        Err(Code::AlreadyExists)
    );
}
