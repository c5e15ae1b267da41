//! `/metrics` after a run of mixed traffic: exact counts per route template and status,
//! the exclusions, the business metrics; and where `/metrics` is served: on its own
//! listener by default, on the API's port with `METRICS_ADDR=api`, nowhere with
//! `METRICS_ENABLED=false`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

use invoicing::config::MetricsAddr;

use crate::common::{PDF, PNG, TestApp, find, invoice, parse_exposition, value};

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";

/// With `METRICS_ADDR=api`, so that scrapes of the API's port are made, and excluded.
#[tokio::test]
async fn metrics_count_every_request_by_route_template_and_status() {
    let app = TestApp::with(|config| config.metrics_addr = MetricsAddr::Api).await;

    // 3 sellers created, 1 refused.
    let mut sellers = Vec::new();
    for name in ["S1", "S2", "S3"] {
        sellers.push(app.seller(name).await);
    }
    app.post("/api/sellers", &json!({"name": ""}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    // 2 clients.
    let c1 = app.client("C1").await;
    let c2 = app.client("C2").await;
    // 4 invoices: 2 draft, 1 issued, 1 paid; 1 duplicate (409), 1 invalid (422).
    for (n, status) in ["draft", "draft", "issued", "paid"].iter().enumerate() {
        let mut body = invoice(
            sellers[n % 3],
            if n % 2 == 0 { c1 } else { c2 },
            &format!("F-{n}"),
        );
        body["status"] = json!(status);
        app.post("/api/invoices", &body)
            .await
            .expect(StatusCode::CREATED);
    }
    app.post("/api/invoices", &invoice(sellers[0], c1, "F-0"))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    app.post("/api/invoices", &json!({"lines": []}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    // Reads: 5 × GET /api/invoices/{id} (4 found, 1 missing), 2 lists.
    for id in [1, 2, 3, 4, 999] {
        app.get(&format!("/api/invoices/{id}")).await;
    }
    app.get("/api/invoices?status=draft")
        .await
        .expect(StatusCode::OK);
    app.get("/api/sellers").await.expect(StatusCode::OK);
    // Attachments: 2 stored, 1 refused.
    assert_eq!(
        app.upload(1, "a.pdf", PDF).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.upload(1, "b.png", PNG).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.upload(1, "c.txt", b"plain text").await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // One 405, two unmatched 404s, one delete.
    let patch = Request::builder()
        .method(Method::PATCH)
        .uri("/api/invoices/1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(patch).await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(app.get("/wp-login.php").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/api/nothing/here").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete("/api/invoices/4").await.status,
        StatusCode::NO_CONTENT
    );
    // Excluded: health checks and scrapes.
    for _ in 0..3 {
        assert_eq!(app.get("/health").await.status, StatusCode::OK);
    }
    assert_eq!(app.get("/metrics").await.status, StatusCode::OK);

    let scrape = app.get("/metrics").await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert_eq!(
        scrape.header(header::CONTENT_TYPE),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = parse_exposition(&scrape.text());

    // Every (method, route, status) series, with its exact count, and nothing else.
    let mut counts = BTreeMap::new();
    for sample in find(&samples, DURATION_COUNT, &[]) {
        let label = |name: &str| sample.labels.get(name).cloned().unwrap_or_default();
        counts.insert(
            (
                label("http_request_method"),
                label("http_route"),
                label("http_response_status_code"),
            ),
            sample.value,
        );
    }
    let expected: BTreeMap<(String, String, String), f64> = [
        ("POST", "/api/sellers", "201", 3.0),
        ("POST", "/api/sellers", "422", 1.0),
        ("POST", "/api/clients", "201", 2.0),
        ("POST", "/api/invoices", "201", 4.0),
        ("POST", "/api/invoices", "409", 1.0),
        ("POST", "/api/invoices", "422", 1.0),
        ("GET", "/api/invoices/{id}", "200", 4.0),
        ("GET", "/api/invoices/{id}", "404", 1.0),
        ("GET", "/api/invoices", "200", 1.0),
        ("GET", "/api/sellers", "200", 1.0),
        ("POST", "/api/invoices/{id}/attachments", "201", 2.0),
        ("POST", "/api/invoices/{id}/attachments", "415", 1.0),
        ("PATCH", "/api/invoices/{id}", "405", 1.0),
        // Unmatched requests have no route label: scanners cannot make series.
        ("GET", "", "404", 2.0),
        ("DELETE", "/api/invoices/{id}", "204", 1.0),
    ]
    .into_iter()
    .map(|(method, route, status, count)| {
        (
            (method.to_owned(), route.to_owned(), status.to_owned()),
            count,
        )
    })
    .collect();
    assert_eq!(counts, expected);
    assert!(find(&samples, DURATION_COUNT, &[("http_route", "/health")]).is_empty());
    assert!(find(&samples, DURATION_COUNT, &[("http_route", "/metrics")]).is_empty());
    for sample in find(&samples, "http_server_active_requests", &[]) {
        assert_eq!(sample.value, 0.0, "{sample:?}");
    }
    // Body sizes: the bytes of the two stored files are in the request sizes.
    let uploaded = value(
        &samples,
        "http_server_request_body_size_bytes_sum",
        &[
            ("http_route", "/api/invoices/{id}/attachments"),
            ("http_response_status_code", "201"),
        ],
    );
    assert!(uploaded > (PDF.len() + PNG.len()) as f64, "{uploaded}");

    // Business metrics.
    let created = |status| {
        value(
            &samples,
            "invoicing_invoices_created_total",
            &[("status", status)],
        )
    };
    assert_eq!(created("draft"), 2.0);
    assert_eq!(created("issued"), 1.0);
    assert_eq!(created("paid"), 1.0);
    assert!(
        find(
            &samples,
            "invoicing_invoices_created_total",
            &[("status", "cancelled")]
        )
        .is_empty()
    );
    assert_eq!(
        value(&samples, "invoicing_attachments_stored_bytes_total", &[]),
        (PDF.len() + PNG.len()) as f64
    );
    assert_eq!(
        value(
            &samples,
            "invoicing_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let db_count = |operation| {
        value(
            &samples,
            "invoicing_db_query_duration_seconds_count",
            &[("operation", operation)],
        )
    };
    // Four created and one duplicate reached the database; the 422 did not.
    assert_eq!(db_count("insert_invoice"), 5.0);
    assert_eq!(db_count("insert_seller"), 3.0);
    assert_eq!(db_count("get_invoice"), 5.0);
    assert_eq!(db_count("insert_attachment"), 2.0);
    assert_eq!(db_count("delete_invoice"), 1.0);
    let db_sum = value(
        &samples,
        "invoicing_db_query_duration_seconds_sum",
        &[("operation", "insert_invoice")],
    );
    assert!(db_sum > 0.0);
    let inf_bucket = value(
        &samples,
        "invoicing_db_query_duration_seconds_bucket",
        &[("operation", "insert_invoice"), ("le", "+Inf")],
    );
    assert_eq!(inf_bucket, 5.0);

    // The routes' objectives, one series each, the target as value.
    let objectives = find(&samples, "http_server_objective_ratio", &[]);
    assert_eq!(objectives.len(), 7, "{objectives:#?}");
    let objective = |route, kind, threshold: Option<&str>| {
        let mut labels = vec![("http_route", route), ("objective", kind)];
        labels.extend(threshold.map(|t| ("threshold", t)));
        let found = find(&samples, "http_server_objective_ratio", &labels);
        assert_eq!(found.len(), 1, "{route} {kind}: {objectives:#?}");
        found[0].value
    };
    assert_eq!(objective("/api/invoices", "availability", None), 0.999);
    assert_eq!(objective("/api/invoices", "latency", Some("0.25")), 0.99);
    assert_eq!(
        objective("/api/invoices/{id}", "latency", Some("0.1")),
        0.99
    );
    assert_eq!(
        objective("/api/invoices/{id}/pdf", "latency", Some("2.5")),
        0.95
    );
    assert_eq!(
        objective("/api/invoices/{id}/attachments", "availability", None),
        0.99
    );
    assert!(
        find(
            &samples,
            "http_server_objective_ratio",
            &[("http_route", "/api/sellers")]
        )
        .is_empty()
    );
}

#[tokio::test]
async fn metrics_disabled_means_no_layer_and_no_endpoint() {
    let app = TestApp::with(|config| config.metrics_enabled = false).await;
    assert!(app.state.telemetry.http.is_none());
    app.get("/metrics")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // The app itself works the same.
    let s = app.seller("S").await;
    let c = app.client("C").await;
    app.invoice(s, c, "F-1").await;
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
}

/// By default (`METRICS_ADDR=127.0.0.1:9100`), the API's port does not serve
/// `/metrics`: the metrics listener's service does, with the same registry.
#[tokio::test]
async fn metrics_are_on_their_own_listener_by_default() {
    let app = TestApp::new().await;
    assert_eq!(
        app.state.config.metrics_addr,
        MetricsAddr::Listen("127.0.0.1:9100".parse().unwrap())
    );
    app.get("/metrics")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.seller("S").await;

    // The separate listener's service serves the same registry, HTTP metrics included.
    let metrics = app.state.telemetry.http.as_ref().unwrap();
    let response = tower::ServiceExt::oneshot(
        invoicing::metrics_app(metrics),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let samples = parse_exposition(&String::from_utf8_lossy(&body));
    assert_eq!(
        value(
            &samples,
            DURATION_COUNT,
            &[
                ("http_route", "/api/sellers"),
                ("http_request_method", "POST")
            ]
        ),
        1.0
    );
    // Exclusion is by path: the API's /metrics, a 404 here, is not recorded either.
    assert!(
        find(
            &samples,
            DURATION_COUNT,
            &[("http_response_status_code", "404")]
        )
        .is_empty()
    );
    // Its other paths are the JSON 404 of the API.
    let other = tower::ServiceExt::oneshot(
        invoicing::metrics_app(metrics),
        Request::get("/api/sellers").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_exposition_parser_reads_escapes() {
    let samples = parse_exposition(
        "# HELP x An x.\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"uo\\\\te\\n\"} 3\ny 1.5\n",
    );
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].name, "x_total");
    assert_eq!(samples[0].labels["a"], "1");
    assert_eq!(samples[0].labels["b"], "q\"uo\\te\n");
    assert_eq!(samples[0].value, 3.0);
    assert_eq!(value(&samples, "y", &[]), 1.5);
}
