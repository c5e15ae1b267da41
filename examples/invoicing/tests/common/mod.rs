//! Helpers shared by the test binaries: the app in-process (`oneshot`), request bodies,
//! and a reader of the Prometheus text exposition.

#![allow(dead_code)]

use std::collections::BTreeMap;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use invoicing::config::{Config, MetricsAddr};
use invoicing::{AppState, app, metrics_app};
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

/// The whole app on a fresh SQLite file in a temporary folder.
pub struct TestApp {
    pub dir: TempDir,
    pub state: AppState,
    router: Router,
    /// The service of the metrics listener (`METRICS_ADDR`, by default), if any.
    metrics_router: Option<Router>,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "{} answered a body that is not JSON ({error}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts the status, and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        self.json()
    }

    /// Asserts an error response of the one JSON shape, and returns its `fields`.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            Some("application/json"),
            "{body}"
        );
        let error = body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {body}"));
        assert_eq!(error["code"], code, "{body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        let keys: Vec<&str> = error.keys().map(String::as_str).collect();
        if code == "validation_failed" {
            assert_eq!(keys, ["code", "fields", "message"], "{body}");
            assert!(error["fields"].as_object().is_some_and(|f| !f.is_empty()));
        } else {
            assert_eq!(keys, ["code", "message"], "{body}");
        }
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        error.get("fields").cloned().unwrap_or(Value::Null)
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// An app whose configuration `configure` adjusts (folders are in the temp dir).
    pub async fn with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut config = Config::from_flags(["invoicing"]).expect("the defaults are valid");
        config.database_url = format!("sqlite://{}", dir.path().join("test.db").display());
        config.uploads_dir = dir.path().join("uploads");
        config.pdf_dir = dir.path().join("pdf-a3");
        configure(&mut config);
        let state = AppState::open(config).await.expect("the app opens");
        let router = app(state.clone());
        let metrics_router = match (&state.telemetry.http, state.config.metrics_addr) {
            (Some(metrics), MetricsAddr::Listen(_)) => Some(metrics_app(metrics)),
            _ => None,
        };
        Self {
            dir,
            state,
            router,
            metrics_router,
        }
    }

    /// A request to the API.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        Self::send_to(&self.router, request).await
    }

    /// `GET /metrics` where the app serves it: on the metrics listener (`METRICS_ADDR`, by
    /// default), or on the API's port (`METRICS_ADDR=api`).
    pub async fn scrape(&self) -> Reply {
        self.send_metrics(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
    }

    /// A request to where the app serves `/metrics` (see [`TestApp::scrape`]).
    pub async fn send_metrics(&self, request: Request<Body>) -> Reply {
        Self::send_to(
            self.metrics_router.as_ref().unwrap_or(&self.router),
            request,
        )
        .await
    }

    async fn send_to(router: &Router, request: Request<Body>) -> Reply {
        let response = router.clone().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn delete(&self, uri: &str) -> Reply {
        self.send(Request::delete(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn json(&self, method: Method, uri: &str, body: &Value) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, uri: &str, body: &Value) -> Reply {
        self.json(Method::POST, uri, body).await
    }

    pub async fn put(&self, uri: &str, body: &Value) -> Reply {
        self.json(Method::PUT, uri, body).await
    }

    /// Creates a seller and returns its id.
    pub async fn seller(&self, name: &str) -> i64 {
        self.post("/api/sellers", &seller(name))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .unwrap()
    }

    /// Creates a client and returns its id.
    pub async fn client(&self, name: &str) -> i64 {
        self.post("/api/clients", &json!({"name": name}))
            .await
            .expect(StatusCode::CREATED)["id"]
            .as_i64()
            .unwrap()
    }

    /// Creates an invoice and returns its body.
    pub async fn invoice(&self, seller_id: i64, client_id: i64, number: &str) -> Value {
        self.post("/api/invoices", &invoice(seller_id, client_id, number))
            .await
            .expect(StatusCode::CREATED)
    }

    /// Uploads `content` as the `file` field of a multipart body.
    pub async fn upload(&self, invoice_id: i64, filename: &str, content: &[u8]) -> Reply {
        let (content_type, body) = multipart("file", filename, "application/octet-stream", content);
        self.send(
            Request::post(format!("/api/invoices/{invoice_id}/attachments"))
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }
}

/// A valid seller body.
pub fn seller(name: &str) -> Value {
    json!({
        "name": name,
        "siret": "73282932000074",
        "vat_number": "FR40303265045",
        "address": "1 rue de la Paix",
        "postal_code": "75002",
        "city": "Paris",
        "email": "billing@example.fr"
    })
}

/// A valid invoice body: 2 × 10.00 € at 20 % and 1 × 5.00 € at 5.5 %.
pub fn invoice(seller_id: i64, client_id: i64, number: &str) -> Value {
    json!({
        "seller_id": seller_id,
        "client_id": client_id,
        "number": number,
        "issue_date": "2024-05-01",
        "due_date": "2024-05-31",
        "lines": [
            {"description": "Consulting", "quantity": 2, "unit_price_cents": 1000, "vat_rate": 20},
            {"description": "Book", "quantity": 1, "unit_price_cents": 500, "vat_rate": 5.5}
        ]
    })
}

/// A multipart/form-data body with one file field: (Content-Type, body).
pub fn multipart(
    field: &str,
    filename: &str,
    content_type: &str,
    content: &[u8],
) -> (String, Vec<u8>) {
    let boundary = "----invoicing-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; \
         filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The smallest files of each accepted type (valid enough for sniffing).
pub const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
pub const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";
pub const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0\xFF\xD9";

/// One sample of the text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format 0.0.4 (the subset `prometheus-client` writes:
/// no timestamps, label values with `\\`, `\"` and `\n` escapes).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("a sample line without a value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            value => value
                .parse()
                .unwrap_or_else(|_| panic!("not a number in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let rest = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unterminated labels in {line:?}"));
                (name.to_owned(), parse_labels(rest, line))
            }
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

fn parse_labels(mut rest: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("a label without a value in {line:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("a dangling escape in {line:?}"),
                },
                Some((index, '"')) => break index,
                Some((_, c)) => value.push(c),
                None => panic!("an unterminated label value in {line:?}"),
            }
        };
        labels.insert(name.trim_start_matches(',').to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The samples named `name` whose labels include all of `labels`.
pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
        .collect()
}

/// The value of the one sample named `name` with these labels (panics if there is not
/// exactly one).
#[track_caller]
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(samples, name, labels);
    assert_eq!(
        found.len(),
        1,
        "expected one sample {name} {labels:?}, found {found:#?}"
    );
    found[0].value
}
