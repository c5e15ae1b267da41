//! Sellers, clients, invoices and /health: what a client of the API sees on success.

use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use crate::common::{TestApp, invoice};

#[tokio::test]
async fn sellers_create_read_update_list_delete() {
    let app = TestApp::new().await;
    let created = app
        .post(
            "/api/sellers",
            &json!({
                "name": "  Acme SAS ",
                "siret": "732 829 320 00074",
                "vat_number": "fr40303265045",
                "address": "1 rue de la Paix",
                "postal_code": "75002",
                "city": "Paris",
                "country": "fr",
                "email": "billing@acme.fr",
                "id": 999,
                "unknown": "ignored"
            }),
        )
        .await;
    let body = created.expect(StatusCode::CREATED);
    let id = body["id"].as_i64().unwrap();
    assert_ne!(id, 999, "the id is the server's");
    assert_eq!(
        created.header(header::LOCATION),
        Some(format!("/api/sellers/{id}").as_str())
    );
    assert_eq!(body["name"], "Acme SAS");
    assert_eq!(body["siret"], "73282932000074");
    assert_eq!(body["vat_number"], "FR40303265045");
    assert_eq!(body["country"], "FR");
    assert_eq!(body["email"], "billing@acme.fr");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));

    let fetched = app.get(&format!("/api/sellers/{id}")).await;
    assert_eq!(fetched.expect(StatusCode::OK), body);

    let updated = app
        .put(
            &format!("/api/sellers/{id}"),
            &json!({"name": "Acme", "siret": "73282932000074", "country": "BE"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["name"], "Acme");
    assert_eq!(updated["country"], "BE");
    assert_eq!(updated["email"], Value::Null, "PUT replaces every field");
    assert_eq!(updated["created_at"], body["created_at"]);

    app.seller("Second").await;
    let list = app.get("/api/sellers").await.expect(StatusCode::OK);
    assert_eq!(list["total"], 2);
    assert_eq!(list["limit"], 50);
    assert_eq!(list["offset"], 0);
    assert_eq!(list["items"][0], updated);
    assert_eq!(list["items"][1]["name"], "Second");

    let deleted = app.delete(&format!("/api/sellers/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.body.is_empty());
    app.get(&format!("/api/sellers/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.delete(&format!("/api/sellers/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.get("/api/sellers").await.json()["total"], 1);
}

#[tokio::test]
async fn clients_need_no_siret_but_sellers_do() {
    let app = TestApp::new().await;
    let client = app
        .post("/api/clients", &json!({"name": "Bob"}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(client["siret"], Value::Null);
    assert_eq!(client["country"], "FR");
    let fields = app
        .post("/api/sellers", &json!({"name": "No SIRET"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(fields, json!({"siret": "not set"}));
    let fields = app
        .post("/api/clients", &json!({"name": "Bad", "siret": "123"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(fields, json!({"siret": "must be 14 digits"}));

    let id = client["id"].as_i64().unwrap();
    let updated = app
        .put(
            &format!("/api/clients/{id}"),
            &json!({"name": "Bob & Co", "email": "bob@example.com"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["email"], "bob@example.com");
    assert_eq!(
        app.delete(&format!("/api/clients/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn invoices_compute_their_totals_in_cents() {
    let app = TestApp::new().await;
    let seller_id = app.seller("Acme").await;
    let client_id = app.client("Bob").await;
    let created = app
        .post(
            "/api/invoices",
            &invoice(seller_id, client_id, "F-2024-001"),
        )
        .await;
    let body = created.expect(StatusCode::CREATED);
    let id = body["id"].as_i64().unwrap();
    assert_eq!(
        created.header(header::LOCATION),
        Some(format!("/api/invoices/{id}").as_str())
    );
    // 2 × 10.00 € at 20 % + 1 × 5.00 € at 5.5 %: net 25.00 €, VAT 4.00 € + 0.275 € → 0.28 €.
    assert_eq!(body["total_net_cents"], 2500);
    assert_eq!(body["total_vat_cents"], 428);
    assert_eq!(body["total_gross_cents"], 2928);
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["status"], "draft");
    assert_eq!(body["seller_id"], seller_id);
    assert_eq!(body["client_id"], client_id);
    assert_eq!(body["due_date"], "2024-05-31");
    assert_eq!(
        body["lines"],
        json!([
            {"description": "Consulting", "quantity": 2, "unit_price_cents": 1000, "vat_rate": 20, "net_cents": 2000},
            {"description": "Book", "quantity": 1, "unit_price_cents": 500, "vat_rate": 5.5, "net_cents": 500}
        ])
    );
    assert_eq!(
        app.get(&format!("/api/invoices/{id}"))
            .await
            .expect(StatusCode::OK),
        body
    );

    // Totals sent by the client are ignored; VAT is rounded per rate, not per line.
    let mut update = invoice(seller_id, client_id, "F-2024-001");
    update["status"] = json!("issued");
    update["currency"] = json!("usd");
    update["total_gross_cents"] = json!(1);
    update["lines"] = json!(
        (0..10)
            .map(|i| json!({"description": format!("item {i}"), "quantity": 1, "unit_price_cents": 5, "vat_rate": 20}))
            .chain([json!({"description": "hours", "quantity": 1.5, "unit_price_cents": 99, "vat_rate": 20})])
            .collect::<Vec<_>>()
    );
    let updated = app
        .put(&format!("/api/invoices/{id}"), &update)
        .await
        .expect(StatusCode::OK);
    // Nets: 10 × 5 + round(148.5) = 199; VAT round(199 × 20 %) = round(39.8) = 40.
    assert_eq!(updated["total_net_cents"], 199);
    assert_eq!(updated["total_vat_cents"], 40);
    assert_eq!(updated["total_gross_cents"], 239);
    assert_eq!(updated["status"], "issued");
    assert_eq!(updated["currency"], "USD");
    assert_eq!(updated["lines"].as_array().unwrap().len(), 11);
    assert_eq!(updated["lines"][10]["net_cents"], 149);
    assert_eq!(updated["created_at"], body["created_at"]);

    let deleted = app.delete(&format!("/api/invoices/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&format!("/api/invoices/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn invoice_lists_filter_and_paginate() {
    let app = TestApp::new().await;
    let (s1, s2) = (app.seller("S1").await, app.seller("S2").await);
    let (c1, c2) = (app.client("C1").await, app.client("C2").await);
    let plan = [
        (s1, c1, "draft"),
        (s1, c2, "issued"),
        (s1, c1, "paid"),
        (s2, c1, "issued"),
        (s2, c2, "cancelled"),
    ];
    let mut ids = Vec::new();
    for (n, (seller_id, client_id, status)) in plan.iter().enumerate() {
        let mut body = invoice(*seller_id, *client_id, &format!("N{n}"));
        body["status"] = json!(status);
        ids.push(
            app.post("/api/invoices", &body)
                .await
                .expect(StatusCode::CREATED)["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let list = |query: &str| {
        let uri = format!("/api/invoices{query}");
        let app = &app;
        async move { app.get(&uri).await.expect(StatusCode::OK) }
    };
    let item_ids = |page: &Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect()
    };

    let all = list("").await;
    assert_eq!(all["total"], 5);
    assert_eq!(item_ids(&all), ids);
    assert_eq!(all["items"][0]["lines"].as_array().unwrap().len(), 2);

    let page = list("?limit=2&offset=1").await;
    assert_eq!(
        (
            page["total"].as_i64(),
            page["limit"].as_i64(),
            page["offset"].as_i64()
        ),
        (Some(5), Some(2), Some(1))
    );
    assert_eq!(item_ids(&page), ids[1..3]);
    assert_eq!(item_ids(&list("?offset=10").await), Vec::<i64>::new());

    assert_eq!(
        item_ids(&list(&format!("?seller_id={s2}")).await),
        ids[3..5]
    );
    let by_client = list(&format!("?client_id={c1}")).await;
    assert_eq!(by_client["total"], 3);
    assert_eq!(item_ids(&by_client), [ids[0], ids[2], ids[3]]);
    assert_eq!(item_ids(&list("?status=issued").await), [ids[1], ids[3]]);
    let combined = list(&format!("?seller_id={s1}&client_id={c1}&status=paid")).await;
    assert_eq!(combined["total"], 1);
    assert_eq!(item_ids(&combined), [ids[2]]);
    // Each item carries its own lines, not its neighbours'.
    for item in combined["items"].as_array().unwrap() {
        assert_eq!(item["total_net_cents"], 2500);
    }

    let max = list("?limit=500").await;
    assert_eq!(max["limit"], 500);
    for query in [
        "?limit=501",
        "?limit=0",
        "?limit=x",
        "?offset=-1",
        "?status=late",
        "?seller_id=abc",
    ] {
        let fields = app
            .get(&format!("/api/invoices{query}"))
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let name = query[1..].split('=').next().unwrap();
        assert!(fields.get(name).is_some(), "{query}: {fields}");
    }
    let sellers = app
        .get("/api/sellers?limit=1&offset=1")
        .await
        .expect(StatusCode::OK);
    assert_eq!(sellers["total"], 2);
    assert_eq!(sellers["items"][0]["id"], s2);
}

#[tokio::test]
async fn invoice_numbers_are_unique_per_seller() {
    let app = TestApp::new().await;
    let (s1, s2) = (app.seller("S1").await, app.seller("S2").await);
    let c = app.client("C").await;
    app.invoice(s1, c, "F-1").await;
    app.post("/api/invoices", &invoice(s1, c, "F-1"))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    app.invoice(s2, c, "F-1").await;
    let second = app.invoice(s1, c, "F-2").await;
    app.put(
        &format!("/api/invoices/{}", second["id"]),
        &invoice(s1, c, "F-1"),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "conflict");
    // Keeping its own number is not a duplicate.
    app.put(
        &format!("/api/invoices/{}", second["id"]),
        &invoice(s1, c, "F-2"),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(app.get("/api/invoices").await.json()["total"], 3);
}

#[tokio::test]
async fn referenced_sellers_and_clients_cannot_be_deleted() {
    let app = TestApp::new().await;
    let s = app.seller("S").await;
    let c = app.client("C").await;
    let created = app.invoice(s, c, "F-1").await;
    app.delete(&format!("/api/sellers/{s}"))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    app.delete(&format!("/api/clients/{c}"))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(
        app.delete(&format!("/api/invoices/{}", created["id"]))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/api/sellers/{s}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/api/clients/{c}")).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn invoices_need_an_existing_seller_and_client() {
    let app = TestApp::new().await;
    let s = app.seller("S").await;
    let fields = app
        .post("/api/invoices", &invoice(s, 42, "F-1"))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(fields, json!({"client_id": "no such client"}));
    let fields = app
        .post("/api/invoices", &invoice(41, 42, "F-1"))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(
        fields,
        json!({"seller_id": "no such seller", "client_id": "no such client"})
    );
    app.put("/api/invoices/77", &invoice(s, 42, "F-1"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn health_reports_the_database() {
    let app = TestApp::new().await;
    let ok = app.get("/health").await;
    assert_eq!(
        ok.expect(StatusCode::OK),
        json!({"status": "ok", "database": "ok"})
    );
    app.state.db.close().await;
    let down = app.get("/health").await;
    assert_eq!(
        down.expect(StatusCode::SERVICE_UNAVAILABLE),
        json!({"status": "error", "database": "error"})
    );
}

/// Quantities and VAT rates are read exactly from the JSON text, never through `f64`: a
/// positive quantity with more decimals than allowed is refused however it is written,
/// never rounded to 0; exact values are kept exactly, in any spelling.
#[tokio::test]
async fn quantities_and_rates_are_read_exactly() {
    use axum::body::Body;
    use axum::http::Request;

    let app = TestApp::new().await;
    let (s, c) = (app.seller("S").await, app.client("C").await);
    let post = |n: usize, quantity: &str, unit_price_cents: i64, vat_rate: &str| {
        let body = format!(
            r#"{{"seller_id":{s},"client_id":{c},"number":"Q-{n}","issue_date":"2024-05-01",
               "lines":[{{"description":"x","quantity":{quantity},
               "unit_price_cents":{unit_price_cents},"vat_rate":{vat_rate}}}]}}"#
        );
        let request = Request::post("/api/invoices")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a request");
        let app = &app;
        async move { app.send(request).await }
    };
    for (n, (quantity, vat_rate, field)) in [
        ("1e-12", "20", "lines[0].quantity"),
        ("0.0001", "20", "lines[0].quantity"),
        (
            "1.00000000000000000000000000000000001",
            "20",
            "lines[0].quantity",
        ),
        ("0.00000000000000000000000000001", "20", "lines[0].quantity"),
        (
            "1",
            "5.000000000000000000000000000000001",
            "lines[0].vat_rate",
        ),
        ("1", "1e-3", "lines[0].vat_rate"),
    ]
    .into_iter()
    .enumerate()
    {
        let reply = post(n, quantity, 100, vat_rate).await;
        let fields = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert!(
            fields.get(field).is_some(),
            "{quantity} {vat_rate}: {fields}"
        );
    }
    assert_eq!(app.get("/api/invoices").await.json()["total"], 0);

    // 2.5 × 0.99 € = 2.475 € → 2.48 €; 0.001 × 1 000.00 € = 1.00 €; 1000 × 0.01 €.
    for (n, quantity, unit_price_cents, vat_rate, net_cents, answered) in [
        (
            10,
            "2.50e0",
            99,
            "5.5",
            248,
            r#""quantity":2.5,"unit_price_cents":99,"vat_rate":5.5"#,
        ),
        (
            11,
            "0.001",
            100_000,
            "19.60",
            100,
            r#""quantity":0.001,"unit_price_cents":100000,"vat_rate":19.6"#,
        ),
        (
            12,
            "1E3",
            1,
            "20.0",
            1000,
            r#""quantity":1000,"unit_price_cents":1,"vat_rate":20"#,
        ),
    ] {
        let reply = post(n, quantity, unit_price_cents, vat_rate).await;
        let created = reply.expect(StatusCode::CREATED);
        assert_eq!(created["lines"][0]["net_cents"], net_cents, "{created}");
        assert!(reply.text().contains(answered), "{}", reply.text());
    }
}
