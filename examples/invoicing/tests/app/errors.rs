//! Every error code, each with the one JSON shape
//! `{"error":{"code","message"[,"fields"]}}`, and inputs that must never make a 500.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::common::{TestApp, invoice, multipart, seller};

#[tokio::test]
async fn invalid_json_is_400() {
    let app = TestApp::new().await;
    // (A body is read in one pass: a type error found before the syntax error, as in
    // `[1,]`, makes a 422.)
    for body in [
        "{bad",
        "",
        "{\"name\": \"x\"",
        "\u{feff}{}",
        "{\"name\": \"x\",}",
    ] {
        let reply = app
            .send(
                Request::post("/api/sellers")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        reply.expect_error(StatusCode::BAD_REQUEST, "invalid_json");
    }
}

#[tokio::test]
async fn a_broken_multipart_body_is_400() {
    let app = TestApp::new().await;
    let (s, c) = (app.seller("S").await, app.client("C").await);
    let id = app.invoice(s, c, "F-1").await["id"].as_i64().unwrap();
    let reply = app
        .send(
            Request::post(format!("/api/invoices/{id}/attachments"))
                .header(header::CONTENT_TYPE, "multipart/form-data")
                .body(Body::from("no boundary"))
                .unwrap(),
        )
        .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    let reply = app
        .send(
            Request::post(format!("/api/invoices/{id}/attachments"))
                .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XYZ")
                .body(Body::from("--XYZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n%PDF-1.4 truncated"))
                .unwrap(),
        )
        .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn unknown_things_are_404() {
    let app = TestApp::new().await;
    for uri in [
        "/nope",
        "/api",
        "/api/sellers/1",
        "/api/clients/999999",
        "/api/invoices/1",
        "/api/invoices/abc",
        "/api/invoices/0",
        "/api/invoices/-1",
        "/api/invoices/99999999999999999999999",
        "/api/invoices/1/attachments",
        "/uploads/missing.pdf",
        "/pdf-a3/missing.pdf",
        "/uploads/",
        "/pdf-a3",
    ] {
        let reply = app.get(uri).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{uri}: {}",
            reply.text()
        );
        reply.expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    app.upload(5, "a.pdf", crate::common::PDF)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.put("/api/sellers/5", &seller("x"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.delete("/api/invoices/5")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let app = TestApp::new().await;
    for (method, uri) in [
        (Method::PATCH, "/api/invoices/1"),
        (Method::DELETE, "/api/sellers"),
        (Method::PUT, "/api/clients"),
        (Method::POST, "/health"),
        (Method::POST, "/metrics"),
        (Method::DELETE, "/api/invoices/1/attachments"),
    ] {
        let request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        // `/metrics` is on the metrics listener.
        let reply = if uri == "/metrics" {
            app.send_metrics(request).await
        } else {
            app.send(request).await
        };
        reply.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert!(
            reply.header(header::ALLOW).is_some(),
            "{method} {uri}: no Allow header"
        );
    }
}

#[tokio::test]
async fn unsupported_media_types_are_415() {
    let app = TestApp::new().await;
    let (s, c) = (app.seller("S").await, app.client("C").await);
    let id = app.invoice(s, c, "F-1").await["id"].as_i64().unwrap();
    let body = seller("x").to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = Request::post("/api/sellers");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        app.send(request.body(Body::from(body.clone())).unwrap())
            .await
            .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    // An attachment must be multipart…
    app.send(
        Request::post(format!("/api/invoices/{id}/attachments"))
            .header(header::CONTENT_TYPE, "application/pdf")
            .body(Body::from(crate::common::PDF))
            .unwrap(),
    )
    .await
    .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    // …and a PDF, PNG or JPEG by its content, whatever its name and declared type say.
    let (content_type, body) =
        multipart("file", "fake.pdf", "application/pdf", b"GIF89a\x01\0\x01\0");
    app.send(
        Request::post(format!("/api/invoices/{id}/attachments"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
    .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
}

#[tokio::test]
async fn oversized_json_is_413() {
    let app = TestApp::new().await;
    let mut body = seller("x");
    body["address"] = json!("a".repeat(3 * 1024 * 1024));
    app.post("/api/sellers", &body)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn validation_failures_are_422_and_name_every_field() {
    let app = TestApp::new().await;
    let fields = app
        .post(
            "/api/sellers",
            &json!({
                "name": "x".repeat(201),
                "siret": "1234",
                "vat_number": "??",
                "country": "France",
                "email": "not-an-email"
            }),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let names: Vec<&str> = fields
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, ["country", "email", "name", "siret", "vat_number"]);

    let fields = app
        .post("/api/sellers", &json!({"name": 5}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(
        fields["name"].as_str().unwrap().contains("invalid type"),
        "{fields}"
    );

    let fields = app
        .post("/api/sellers", &json!(null))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(fields.get("body").is_some(), "{fields}");

    let s = app.seller("S").await;
    let c = app.client("C").await;
    let mut bad = invoice(s, c, "");
    bad["issue_date"] = json!("2024-02-30");
    bad["due_date"] = json!("2024-01-01");
    bad["currency"] = json!("euro");
    bad["status"] = json!("late");
    bad["lines"] = json!([
        {"description": "", "quantity": 0, "unit_price_cents": -1, "vat_rate": 101},
        {"description": "ok", "quantity": 1.0001, "unit_price_cents": 1, "vat_rate": 5.555}
    ]);
    let fields = app
        .post("/api/invoices", &bad)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let names: Vec<&str> = fields
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        [
            "currency",
            "issue_date",
            "lines[0].description",
            "lines[0].quantity",
            "lines[0].unit_price_cents",
            "lines[0].vat_rate",
            "lines[1].quantity",
            "lines[1].vat_rate",
            "number",
            "status"
        ]
    );

    let mut early = invoice(s, c, "F-1");
    early["due_date"] = json!("2024-04-30");
    let fields = app
        .post("/api/invoices", &early)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(fields, json!({"due_date": "must not be before issue_date"}));

    let mut no_lines = invoice(s, c, "F-1");
    no_lines["lines"] = json!([]);
    let fields = app
        .post("/api/invoices", &no_lines)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(fields, json!({"lines": "length is lower than 1"}));

    let mut typed = invoice(s, c, "F-1");
    typed["lines"][1]["unit_price_cents"] = json!(12.5);
    let fields = app
        .post("/api/invoices", &typed)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(
        fields.get("lines[1].unit_price_cents").is_some(),
        "{fields}"
    );

    let fields = app
        .post("/api/invoices", &json!({}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    for name in ["seller_id", "client_id", "number", "issue_date", "lines"] {
        assert_eq!(fields[name], "not set", "{fields}");
    }
    assert_eq!(app.get("/api/invoices").await.json()["total"], 0);
}

#[tokio::test]
async fn conflicts_are_409() {
    let app = TestApp::new().await;
    let (s, c) = (app.seller("S").await, app.client("C").await);
    app.invoice(s, c, "F-1").await;
    app.post("/api/invoices", &invoice(s, c, "F-1"))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    app.delete(&format!("/api/sellers/{s}"))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn internal_errors_are_500_without_details() {
    let app = TestApp::new().await;
    app.state.db.close().await;
    for reply in [
        app.get("/api/sellers").await,
        app.post("/api/sellers", &seller("x")).await,
        app.get("/api/invoices/1").await,
    ] {
        reply.expect_error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
        assert_eq!(reply.json()["error"]["message"], "internal server error");
        let text = reply.text().to_lowercase();
        assert!(!text.contains("pool") && !text.contains("sqlite"), "{text}");
    }
}

/// Bodies of every JSON type and odd shapes, to every endpoint that takes JSON: the
/// answer is always a 4xx of the one shape, never a 500 nor a panic.
#[tokio::test]
async fn no_input_makes_a_500() {
    let app = TestApp::new().await;
    let (s, c) = (app.seller("S").await, app.client("C").await);
    let id = app.invoice(s, c, "F-1").await["id"].as_i64().unwrap();
    let bodies: Vec<Value> = vec![
        json!(null),
        json!(true),
        json!(1e308),
        json!(-1),
        json!("text"),
        json!([]),
        json!({"name": null, "siret": null}),
        json!({"name": {"nested": [1, 2, 3]}}),
        json!({"name": "\u{0}\u{7}", "siret": "٠١٢٣٤٥٦٧٨٩٠١٢٣"}),
        json!({"seller_id": i64::MAX, "client_id": i64::MIN, "number": "x", "issue_date": "2024-01-01", "lines": [{"description": "x", "quantity": 1e300, "unit_price_cents": i64::MAX, "vat_rate": -0.0}]}),
        json!({"seller_id": s, "client_id": c, "number": "y", "issue_date": "2024-01-01", "lines": [{"description": "x", "quantity": 1000000, "unit_price_cents": 100000000000_i64, "vat_rate": 100}]}),
        json!({"seller_id": s, "client_id": c, "number": "z", "issue_date": "9999-12-31", "due_date": "0000-01-01", "lines": "many"}),
        json!({"seller_id": 1.5, "lines": [null, 1, "x", {}]}),
    ];
    let uris = [
        (Method::POST, "/api/sellers".to_owned()),
        (Method::POST, "/api/clients".to_owned()),
        (Method::POST, "/api/invoices".to_owned()),
        (Method::PUT, format!("/api/sellers/{s}")),
        (Method::PUT, format!("/api/clients/{c}")),
        (Method::PUT, format!("/api/invoices/{id}")),
    ];
    for (method, uri) in &uris {
        for body in &bodies {
            let reply = app.json(method.clone(), uri, body).await;
            let status = reply.status;
            assert!(
                status.is_success() || status.is_client_error(),
                "{method} {uri} {body}: {status} {}",
                reply.text()
            );
            if status.is_client_error() {
                let code = reply.json()["error"]["code"].as_str().unwrap().to_owned();
                reply.expect_error(status, &code);
            }
        }
    }
}
