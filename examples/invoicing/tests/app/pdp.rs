//! The two example services together: the invoicing app submits issued invoices to a real
//! PDP (`examples/pdp`, tonic over 127.0.0.1), and both record the calls: the app in
//! `rpc_client_call_duration_seconds`, the PDP in `rpc_server_call_duration_seconds`,
//! with the PDP's real status codes; the app's outbox retries a PDP that does not answer
//! until it does. (`tests/server.rs` has the PDP stopped under clients that leave, and a
//! restart with submissions pending.)

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Sample, TestApp, find, invoice, parse_exposition, value};

const CALLED: &str = "rpc_client_call_duration_seconds_count";
const SERVED: &str = "rpc_server_call_duration_seconds_count";
const SUBMIT: &str = "pdp.v1.Pdp/SubmitInvoice";

async fn start_pdp() -> SocketAddr {
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

/// The PDP's `/metrics`, over HTTP/1.1 on its gRPC port.
async fn pdp_metrics(addr: SocketAddr) -> Vec<Sample> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: pdp\r\nconnection: close\r\n\r\n")
        .await
        .expect("send the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (_, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    parse_exposition(body)
}

fn issued(seller: i64, client: i64, number: &str) -> Value {
    let mut body = invoice(seller, client, number);
    body["status"] = json!("issued");
    body
}

fn pdp_status(invoice: &Value) -> &str {
    invoice["pdp_status"].as_str().unwrap_or("(none)")
}

#[tokio::test]
async fn issued_invoices_are_submitted_and_both_services_record_the_calls() {
    let pdp = start_pdp().await;
    let app = TestApp::with(|config| config.pdp_addr = Some(pdp.to_string())).await;
    // The test sellers share one SIRET: the PDP sees the second F-1 as a duplicate.
    let (s1, s2, c) = (
        app.seller("S1").await,
        app.seller("S2").await,
        app.client("C").await,
    );

    let first = app
        .post("/api/invoices", &issued(s1, c, "F-1"))
        .await
        .expect(StatusCode::CREATED);
    assert!(pdp_status(&first).starts_with("SUBMITTED sub-"), "{first}");
    let duplicate = app
        .post("/api/invoices", &issued(s2, c, "F-1"))
        .await
        .expect(StatusCode::CREATED);
    assert!(
        pdp_status(&duplicate).starts_with("ALREADY_EXISTS: "),
        "{duplicate}"
    );
    // A draft is not submitted, until it is issued.
    let draft = app.invoice(s1, c, "F-2").await;
    assert_eq!(draft["pdp_status"], Value::Null);
    let id = draft["id"].as_i64().expect("an id");
    let updated = app
        .put(&format!("/api/invoices/{id}"), &issued(s1, c, "F-2"))
        .await
        .expect(StatusCode::OK);
    assert!(
        pdp_status(&updated).starts_with("SUBMITTED sub-"),
        "{updated}"
    );
    // Shown when read back, with the submission's key and its one attempt.
    let shown = app
        .get(&format!("/api/invoices/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(shown["pdp_status"], updated["pdp_status"]);
    assert_eq!(shown["pdp_attempts"], 1);
    assert_eq!(shown["pdp_last_error"], Value::Null);
    assert_eq!(
        shown["pdp_submission_key"]
            .as_str()
            .map(|key| uuid::Uuid::parse_str(key).is_ok()),
        Some(true),
        "{shown}"
    );
    assert_ne!(shown["pdp_submission_key"], first["pdp_submission_key"]);
    // Updated again while issued, it is not submitted again.
    let again = app
        .put(&format!("/api/invoices/{id}"), &issued(s1, c, "F-2"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(again["pdp_status"], updated["pdp_status"]);
    assert_eq!(again["pdp_attempts"], 1);

    let client = parse_exposition(&app.scrape().await.text());
    let port = pdp.port().to_string();
    let at = |code| {
        vec![
            ("rpc_system_name", "grpc"),
            ("rpc_method", SUBMIT),
            ("server_address", "127.0.0.1"),
            ("server_port", port.as_str()),
            ("rpc_response_status_code", code),
        ]
    };
    assert_eq!(value(&client, CALLED, &at("OK")), 2.0);
    assert_eq!(value(&client, CALLED, &at("ALREADY_EXISTS")), 1.0);
    // The server finishes a call when its response stream ends, on its own schedule.
    let mut server = pdp_metrics(pdp).await;
    for _ in 0..500 {
        if find(&server, SERVED, &[])
            .iter()
            .map(|s| s.value)
            .sum::<f64>()
            == 3.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        server = pdp_metrics(pdp).await;
    }
    let served = |code| vec![("rpc_method", SUBMIT), ("rpc_response_status_code", code)];
    assert_eq!(value(&server, SERVED, &served("OK")), 2.0);
    assert_eq!(value(&server, SERVED, &served("ALREADY_EXISTS")), 1.0);

    // The outbox's own metrics: three answered, none retried, none left.
    let samples = pending_drained(&app).await;
    let answered = |code| value(&samples, ANSWERED, &[("code", code)]);
    assert_eq!(answered("OK"), 2.0);
    assert_eq!(answered("ALREADY_EXISTS"), 1.0);
    assert_eq!(value(&samples, RETRIES, &[]), 0.0);
}

const PENDING: &str = "invoicing_pdp_submissions_pending";
const RETRIES: &str = "invoicing_pdp_submission_retries_total";
const OLDEST: &str = "invoicing_pdp_submissions_oldest_pending_timestamp_seconds";
const ANSWERED: &str = "invoicing_pdp_submissions_answered_total";

/// The app's `/metrics` once its pending gauge is back to 0 (the task counts after each
/// outcome it records, on its own schedule), at most 10 s.
async fn pending_drained(app: &TestApp) -> Vec<Sample> {
    let mut samples = Vec::new();
    for _ in 0..100 {
        samples = parse_exposition(&app.scrape().await.text());
        if value(&samples, PENDING, &[]) == 0.0 {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("submissions still pending: {samples:#?}");
}

/// A PDP that refuses connections: the invoice is issued at once, its submission
/// pending with the error (`UNAVAILABLE`), and retried until a PDP listens there, which
/// gets it once.
#[tokio::test]
async fn an_unreachable_pdp_is_retried_until_it_answers() {
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("an address").port()
    };
    let app = TestApp::with(|config| {
        config.pdp_addr = Some(format!("127.0.0.1:{port}"));
        config.pdp_retry_max = Duration::from_millis(200);
    })
    .await;
    let (s, c) = (app.seller("S").await, app.client("C").await);
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64()
    };
    let before = unix_now();
    let created = app
        .post("/api/invoices", &issued(s, c, "F-1"))
        .await
        .expect(StatusCode::CREATED);
    let after = unix_now();
    assert_eq!(created["status"], "issued");
    assert_eq!(created["pdp_status"], Value::Null, "{created}");
    // The attempt made with the request, and on a slow machine maybe the outbox's first
    // retry (due within `pdp_retry_max`) before the answer was read.
    assert!(
        created["pdp_attempts"].as_u64().is_some_and(|n| n >= 1),
        "{created}"
    );
    assert!(
        created["pdp_last_error"]
            .as_str()
            .is_some_and(|error| error.starts_with("UNAVAILABLE: ")),
        "{created}"
    );
    let client = parse_exposition(&app.scrape().await.text());
    let failed = find(
        &client,
        CALLED,
        &[
            ("rpc_method", SUBMIT),
            ("rpc_response_status_code", "UNAVAILABLE"),
        ],
    );
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].value >= 1.0);
    assert_eq!(
        failed[0].labels.get("error_type").map(String::as_str),
        Some("connection_refused")
    );
    assert_eq!(value(&client, PENDING, &[]), 1.0);
    assert!(value(&client, RETRIES, &[]) >= 1.0);
    // When it was queued: during the POST (to the millisecond SQLite keeps).
    let oldest = value(&client, OLDEST, &[]);
    assert!(
        before - 0.001 <= oldest && oldest <= after + 0.001,
        "{before} <= {oldest} <= {after}"
    );

    // A PDP starts listening on that port: the next attempt reaches it.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free again");
    tokio::spawn(pdp::serve(
        listener,
        pdp::metrics(),
        pdp::PdpService::new(Duration::from_millis(5)),
        std::future::pending(),
    ));
    let id = created["id"].as_i64().expect("an id");
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = app
            .get(&format!("/api/invoices/{id}"))
            .await
            .expect(StatusCode::OK);
        if !shown["pdp_status"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shown["pdp_status"], "SUBMITTED sub-1", "{shown}");
    assert!(shown["pdp_attempts"].as_i64() >= Some(2), "{shown}");
    let samples = pending_drained(&app).await;
    assert_eq!(value(&samples, OLDEST, &[]), 0.0);
    assert_eq!(value(&samples, ANSWERED, &[("code", "OK")]), 1.0);
    let retries = value(&samples, RETRIES, &[]);
    assert_eq!(
        shown["pdp_attempts"]
            .as_i64()
            .map(|attempts| attempts as f64),
        Some(retries + 1.0),
        "every attempt but the last was retried"
    );
}

/// A PDP that accepts connections and never answers, with more submissions due than
/// can be in flight: the outbox keeps 16 attempts in flight and waits for one of them to
/// end, rather than polling the database in a loop for the others. Counted in its own
/// database operations: a loop that spun would make thousands in the time allowed.
#[tokio::test]
async fn a_silent_pdp_with_a_backlog_does_not_spin_the_outbox() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("an address").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    let app = TestApp::with(|config| {
        config.pdp_addr = Some(format!("127.0.0.1:{port}"));
        config.pdp_timeout = Duration::from_millis(300);
        config.pdp_retry_max = Duration::from_millis(100);
    })
    .await;
    let (s, c) = (app.seller("S").await, app.client("C").await);
    let app = std::sync::Arc::new(app);
    let posts: Vec<_> = (0..24)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move {
                app.post("/api/invoices", &issued(s, c, &format!("F-{n}")))
                    .await
            })
        })
        .collect();
    for post in posts {
        let reply = post.await.expect("a request task");
        assert_eq!(reply.expect(StatusCode::CREATED)["pdp_status"], Value::Null);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let samples = parse_exposition(&app.scrape().await.text());
    assert_eq!(value(&samples, PENDING, &[]), 24.0);
    let operations: f64 = [
        "claim_pdp_submissions",
        "count_pdp_submissions",
        "next_pdp_submission",
    ]
    .iter()
    .map(|operation| {
        value(
            &samples,
            "invoicing_db_query_duration_seconds_count",
            &[("operation", operation)],
        )
    })
    .sum();
    // 24 wake-ups, at most 16 attempts per 300 ms ending, a claim, a count and a read of
    // the next due time each: a few hundred at most.
    println!("{operations} reads of the outbox");
    assert!(operations < 600.0, "{operations} reads of the outbox");
    let attempts: f64 = find(&samples, CALLED, &[("rpc_method", SUBMIT)])
        .iter()
        .map(|sample| sample.value)
        .sum();
    assert!(attempts >= 16.0, "{attempts} attempts");
}

#[tokio::test]
async fn without_a_pdp_issuing_works_as_before() {
    let app = TestApp::new().await;
    let (s, c) = (app.seller("S").await, app.client("C").await);
    let created = app
        .post("/api/invoices", &issued(s, c, "F-1"))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created["pdp_status"], Value::Null);
    assert_eq!(created["pdp_submission_key"], Value::Null);
    let metrics = app.scrape().await.text();
    assert!(
        !metrics.contains("rpc_client_call_duration_seconds"),
        "no calls"
    );
}
