//! `GET /api/invoices/{id}/pdf`: a PDF generated from the invoice, and the proof, from the
//! per-route task metrics, that generating it on the blocking pool keeps it off the
//! runtime's workers while generating it inside the request's future blocks them.

use std::time::Duration;

use axum::http::{StatusCode, header};
use invoicing::config::PdfGeneration;
use serde_json::json;

use crate::common::{TestApp, invoice, parse_exposition, value};

const ROUTE: &str = "/api/invoices/{id}/pdf";
/// PDFs fetched per mode.
const FETCHES: u64 = 3;

/// An app generating PDFs `mode`'s way, with an invoice of the most lines allowed (its
/// PDF is tens of pages, milliseconds of CPU work).
///
/// Its slow-poll threshold is a quarter of the time the generation of that PDF took on
/// this machine and build, measured first (the fastest of five runs): what the route
/// does besides generating (reading the invoice, answering) takes a small part of that,
/// so a poll that generates is slow, and only such a poll is, with room for a loaded
/// machine to run a generation up to four times as fast or slow as it measured. This keeps the test a count of slow polls, whatever
/// the speed of the machine or the build profile.
async fn app_with_a_long_invoice(mode: PdfGeneration) -> (TestApp, i64, Duration) {
    let (app, id) = long_invoice(TestApp::new().await).await;
    let invoice = invoicing::model::invoice::get(&app.state.db, id)
        .await
        .expect("the invoice");
    let generation = (0..5)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(invoice.to_pdf());
            start.elapsed()
        })
        .min()
        .expect("five runs");
    let app = TestApp::with(|config| {
        config.pdf_generation = mode;
        config.slow_poll_threshold = generation / 4;
    })
    .await;
    let (app, id) = long_invoice(app).await;
    (app, id, generation)
}

async fn long_invoice(app: TestApp) -> (TestApp, i64) {
    let seller = app.seller("Seller").await;
    let client = app.client("Client").await;
    let mut body = invoice(seller, client, "F-2024-001");
    body["lines"] = (0..invoicing::model::invoice::MAX_LINES)
        .map(|n| {
            json!({
                "description": format!("Consulting, day {n}: architecture review and report"),
                "quantity": 1.5,
                "unit_price_cents": 65_000 + n,
                "vat_rate": 20
            })
        })
        .collect();
    let created = app
        .post("/api/invoices", &body)
        .await
        .expect(StatusCode::CREATED);
    (app, created["id"].as_i64().expect("an id"))
}

/// Fetches the PDF `FETCHES` times; returns the route's task metrics.
async fn fetch_pdfs(app: &TestApp, id: i64) -> Vec<crate::common::Sample> {
    for _ in 0..FETCHES {
        let reply = app.get(&format!("/api/invoices/{id}/pdf")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.header(header::CONTENT_TYPE), Some("application/pdf"));
        assert!(reply.body.starts_with(b"%PDF-"), "a PDF");
        let text = String::from_utf8_lossy(&reply.body);
        assert!(text.contains("/Count "), "with a page tree");
        assert!(text.trim_end().ends_with("%%EOF"));
    }
    let metrics = app.scrape().await;
    assert_eq!(metrics.status, StatusCode::OK);
    parse_exposition(&metrics.text())
}

fn of(samples: &[crate::common::Sample], name: &str) -> f64 {
    value(samples, name, &[("http_route", ROUTE)])
}

/// Both modes in one test, one after the other: run at once, one's generation on the
/// runtime would take the CPU the other's polls need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_on_the_runtime_shows_slow_polls_and_on_the_blocking_pool_none() {
    // On the runtime: each request generated its PDF inside one poll of its future, on
    // a worker thread.
    let (app, id, generation) = app_with_a_long_invoice(PdfGeneration::Runtime).await;
    let samples = fetch_pdfs(&app, id).await;
    assert!(of(&samples, "tokio_task_slow_polls_total") >= FETCHES as f64);
    let on_runtime = of(&samples, "tokio_task_slow_poll_seconds_total");
    assert!(
        on_runtime >= FETCHES as f64 * generation.as_secs_f64() / 2.0,
        "slow polls of {on_runtime} s for {FETCHES} generations of {generation:?} on the runtime"
    );
    drop(app);

    // On the blocking pool: the future waited for the pool instead (idle while the
    // generation ran, then polled again), and no generation ran in a poll: its slow
    // polls add up to less than on the runtime, where every poll that generated was one.
    // Only lower bounds on measured time, and one comparison with a margin of the three
    // generations: a loaded machine stretches any poll (the OS takes the worker away),
    // so "less than one generation" failed under load (37 ms of preempted short polls).
    let (app, id, generation) = app_with_a_long_invoice(PdfGeneration::BlockingPool).await;
    let samples = fetch_pdfs(&app, id).await;
    let off_runtime = of(&samples, "tokio_task_slow_poll_seconds_total");
    assert!(
        off_runtime < on_runtime,
        "slow polls of {off_runtime} s on the blocking pool, {on_runtime} s on the runtime"
    );
    assert!(of(&samples, "tokio_task_idles_total") >= FETCHES as f64);
    assert!(of(&samples, "tokio_task_polls_total") >= 2.0 * FETCHES as f64);
    // The request waited at least for its generations (half the fastest measured, for a
    // warmer cache), idle, not in a poll.
    let idle = of(&samples, "tokio_task_idle_seconds_total");
    assert!(
        idle >= FETCHES as f64 * generation.as_secs_f64() / 2.0,
        "idle {idle} s for {FETCHES} generations of {generation:?}"
    );
}

#[tokio::test]
async fn the_pdf_of_a_missing_invoice_is_a_404() {
    let app = TestApp::new().await;
    app.get("/api/invoices/999/pdf")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}
