//! The built binary over real HTTP on 127.0.0.1: start-up, graceful shutdown on SIGTERM
//! with a request in flight, persistence across SIGKILL, concurrent writers, and what an
//! attacker tries: half-sent requests (slowloris), stalled bodies, abandoned uploads.
//! Every loop is bounded in count and time; timeouts are set short by the environment
//! and asserted with generous bounds.
//!
//! Each server listens on ports the kernel picks (`PORT=0` and `METRICS_ADDR=127.0.0.1:0`,
//! read back from the "listening on" and "metrics on" log lines) and keeps its data in a
//! temporary folder.

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use common::{PDF, invoice, multipart, seller};

/// How long anything in these tests may take before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `invoicing` binary.
struct Server {
    child: Child,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(data: &Path, extra_env: &[(&str, &str)]) -> Self {
        Self::start_with_open_files(data, extra_env, None)
    }

    /// Starts the binary; with `open_files`, under `ulimit -n {open_files}` (soft and hard).
    fn start_with_open_files(
        data: &Path,
        extra_env: &[(&str, &str)],
        open_files: Option<u32>,
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_invoicing");
        let mut command = match open_files {
            None => Command::new(binary),
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell.args([
                    "-c",
                    r#"ulimit -n "$0" && exec "$1""#,
                    &limit.to_string(),
                    binary,
                ]);
                shell
            }
        };
        command
            .env("PORT", "0")
            .env("BIND", "127.0.0.1")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", data.join("invoicing.db").display()),
            )
            .env("UPLOADS_DIR", data.join("uploads"))
            .env("PDF_DIR", data.join("pdf-a3"))
            .env("RUST_LOG", "info")
            // The default, 127.0.0.1:9100, would be one port for every test's server.
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env_remove("METRICS_ENABLED")
            .env_remove("PDP_ADDR")
            .env_remove("PDP_TIMEOUT")
            .env_remove("PDP_RETRY_MAX")
            .env_remove("MAX_UPLOAD_BYTES")
            .env_remove("HEADER_READ_TIMEOUT")
            .env_remove("REQUEST_BODY_TIMEOUT")
            .env_remove("REQUEST_TIMEOUT")
            .env_remove("MAX_CONNECTIONS")
            .env_remove("SHUTDOWN_TIMEOUT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let lines_tx = lines_tx.clone();
            // Drains the pipe for the life of the process, so that logging never blocks.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = lines_tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + PATIENCE;
        let mut metrics_addr = None;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines_rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no 'listening on' line; log: {:#?}", log.lock().unwrap())
            });
            if let Some(addr) = address_after(&line, "metrics on http://") {
                metrics_addr = Some(addr);
            }
            if let Some(addr) = address_after(&line, "listening on http://") {
                break addr;
            }
        };
        Self {
            child,
            addr,
            metrics_addr,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `/metrics` on the metrics listener.
    fn metrics_url(&self) -> String {
        format!(
            "http://{}/metrics",
            self.metrics_addr.expect("a 'metrics on' line")
        )
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit on its own.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request; the status and the body (as JSON when it is JSON).
async fn call(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Value), String> {
    let mut request = Request::builder().method(method).uri(url);
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(body.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let response = tokio::time::timeout(PATIENCE, client.request(request.body(body).unwrap()))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

async fn create(client: &HttpClient, server: &Server, path: &str, body: &Value) -> Value {
    let (status, body) = call(client, Method::POST, &server.url(path), Some(body))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_metrics_on_their_own_port_and_stops_gracefully_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &[]);
    let http = client();

    let (status, health) = call(&http, Method::GET, &server.url("/health"), None)
        .await
        .unwrap();
    assert_eq!(
        (status, health),
        (StatusCode::OK, json!({"status": "ok", "database": "ok"}))
    );
    let (status, _) = call(&http, Method::GET, &server.url("/metrics"), None)
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "/metrics is only on METRICS_ADDR"
    );
    let (status, text) = call(&http, Method::GET, &server.metrics_url(), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.as_str()
            .unwrap()
            .contains("invoicing_build_info{version="),
        "{text}"
    );
    assert!(data.path().join("invoicing.db").exists());
    assert!(data.path().join("uploads").is_dir());
    assert!(data.path().join("pdf-a3").is_dir());

    let s = create(&http, &server, "/api/sellers", &seller("S")).await["id"]
        .as_i64()
        .unwrap();
    let c = create(&http, &server, "/api/clients", &json!({"name": "C"})).await["id"]
        .as_i64()
        .unwrap();
    let id = create(&http, &server, "/api/invoices", &invoice(s, c, "F-1")).await["id"]
        .as_i64()
        .unwrap();

    // An upload in flight: the server has asked for the body (100 Continue, so the
    // handler is reading it) and has half of it when SIGTERM arrives.
    let mut file = PDF.to_vec();
    file.extend(std::iter::repeat_n(b' ', 64 * 1024));
    let (content_type, body) = multipart("file", "late.pdf", "application/pdf", &file);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "POST /api/invoices/{id}/attachments HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        server.addr,
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).unwrap();
    stream.flush().unwrap();

    server.signal("TERM");
    // The listener closes: new connections are refused…
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(server.addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the listener stayed open after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    // …while the request in flight finishes.
    stream.write_all(rest).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201 Created\r\n"),
        "{response}"
    );
    let attachment: Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(attachment["size"], file.len());

    let status = server.wait_exit();
    assert!(status.success(), "{status}: {}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    // Closed cleanly: the WAL was checkpointed into the database file and emptied.
    let wal = std::fs::metadata(data.path().join("invoicing.db-wal")).map_or(0, |wal| wal.len());
    assert_eq!(wal, 0, "the WAL still holds {wal} bytes");

    // The upload acknowledged during the shutdown is there after a restart.
    let server = Server::start(data.path(), &[]);
    let http = client();
    let (status, list) = call(
        &http,
        Method::GET,
        &server.url(&format!("/api/invoices/{id}/attachments")),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"], json!([attachment]));
    let url = server.url(attachment["url"].as_str().unwrap());
    let response = http
        .request(Request::get(url).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        file
    );
    // Static files over real HTTP are counted under their mount's template, as complete
    // (hyper stops polling a body once Content-Length bytes are out).
    let (_, text) = call(&http, Method::GET, &server.metrics_url(), None)
        .await
        .unwrap();
    let samples = common::parse_exposition(text.as_str().unwrap());
    let downloads = common::find(
        &samples,
        "http_server_request_duration_seconds_count",
        &[("http_route", "/uploads/{*path}")],
    );
    assert_eq!(downloads.len(), 1, "{downloads:#?}");
    assert_eq!(downloads[0].labels["http_response_status_code"], "200");
    assert_eq!(downloads[0].value, 1.0);
    assert!(
        !downloads[0].labels.contains_key("error_type"),
        "{downloads:#?}"
    );
    // The default collectors and the counting allocator (the binary's global allocator)
    // are published; what must have moved by now is above zero.
    for (name, moved) in [
        ("process_cpu_seconds_total", false),
        ("process_resident_memory_bytes", true),
        ("tokio_alive_tasks", false),
        ("tokio_event_loop_lag_seconds_count", false),
        ("rust_heap_live_bytes", true),
        ("rust_heap_allocations_total", true),
    ] {
        let found = common::find(&samples, name, &[]);
        assert!(
            found.len() == 1 && (found[0].value > 0.0 || !moved && found[0].value == 0.0),
            "{name} is published with a plausible value: {found:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_acknowledged_survives_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let http = client();
    let s = create(&http, &server, "/api/sellers", &seller("S")).await;
    let c = create(&http, &server, "/api/clients", &json!({"name": "C"})).await;
    let (s, c) = (s["id"].as_i64().unwrap(), c["id"].as_i64().unwrap());

    // Four writers create invoices until the process is killed under them.
    let acknowledged = Arc::new(Mutex::new(Vec::<Value>::new()));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (http, acknowledged) = (http.clone(), acknowledged.clone());
        let url = server.url("/api/invoices");
        writers.push(tokio::spawn(async move {
            for n in 0..2_000 {
                let body = invoice(s, c, &format!("W{writer}-{n}"));
                match call(&http, Method::POST, &url, Some(&body)).await {
                    Ok((StatusCode::CREATED, created)) => {
                        acknowledged.lock().unwrap().push(created)
                    }
                    Ok((status, body)) => panic!("{status}: {body}"),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    let deadline = Instant::now() + PATIENCE;
    while acknowledged.lock().unwrap().len() < 100 {
        assert!(Instant::now() < deadline, "the writers are too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL, with writes in flight
    server.child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    drop(server);
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());

    let server = Server::start(data.path(), &[]);
    let http = client();
    for created in &acknowledged {
        let url = server.url(&format!("/api/invoices/{}", created["id"]));
        let (status, stored) = call(&http, Method::GET, &url, None).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{created}");
        assert_eq!(&stored, created);
    }
    let (_, list) = call(
        &http,
        Method::GET,
        &server.url("/api/invoices?limit=1"),
        None,
    )
    .await
    .unwrap();
    let total = list["total"].as_u64().unwrap() as usize;
    // Requests cut by the kill may have committed without being acknowledged: a few
    // more, never fewer.
    assert!(
        total >= acknowledged.len() && total <= acknowledged.len() + 4,
        "{total}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_parallel_creators_never_see_a_locked_database() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let http = client();
    let s = create(&http, &server, "/api/sellers", &seller("S")).await["id"]
        .as_i64()
        .unwrap();
    let c = create(&http, &server, "/api/clients", &json!({"name": "C"})).await["id"]
        .as_i64()
        .unwrap();

    const CREATORS: usize = 32;
    const EACH: usize = 10;
    let mut tasks = Vec::new();
    for creator in 0..CREATORS {
        let http = http.clone();
        let invoices = server.url("/api/invoices");
        let sellers = server.url("/api/sellers");
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..EACH {
                let body = invoice(s, c, &format!("P{creator}-{n}"));
                statuses.push(call(&http, Method::POST, &invoices, Some(&body)).await);
                // Writers to another table, and readers, in the same storm.
                if n % 5 == 0 {
                    let body = seller(&format!("S{creator}-{n}"));
                    statuses.push(call(&http, Method::POST, &sellers, Some(&body)).await);
                    statuses.push(call(&http, Method::GET, &invoices, None).await);
                }
            }
            statuses
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.unwrap());
    }
    for outcome in &outcomes {
        let (status, body) = outcome.as_ref().expect("every request answered");
        assert!(
            *status == StatusCode::CREATED || *status == StatusCode::OK,
            "{status}: {body}"
        );
    }
    let (_, list) = call(
        &http,
        Method::GET,
        &server.url("/api/invoices?limit=1"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(list["total"], CREATORS * EACH);
    let log = server.log_text().to_lowercase();
    assert!(!log.contains("database is locked"), "{log}");
    assert!(!log.contains("error"), "{log}");
}

/// loadgen against the binary: it gets no unexpected answer, and `/metrics` counted
/// exactly what it sent, per status, plus its set-up requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_traffic_is_counted_exactly_in_metrics() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[("RUST_LOG", "warn,invoicing=info")]);
    let url = server.url("");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["--url", &url, "--duration", "1s", "--rate", "100"])
            .output()
            .expect("loadgen runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("[  1.0s/1s] sent"),
        "no progress line: {stderr}"
    );
    let field = |name: &str| -> &str {
        stdout
            .lines()
            .find_map(|line| line.trim_start().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .trim()
    };
    let requests: f64 = field("requests")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Traffic happened; how much in the second depends on the machine's load (loadgen
    // skips the ticks it misses), and the counts below are exact whatever it was.
    assert!(requests >= 10.0, "{stdout}");
    assert!(field("errors").starts_with("0 "), "{stdout}");
    assert!(field("latency").contains("p99"), "{stdout}");
    let statuses: BTreeMap<String, f64> = field("statuses")
        .split(", ")
        .map(|pair| {
            let (status, count) = pair.split_once(": ").unwrap();
            (status.to_owned(), count.parse().unwrap())
        })
        .collect();
    let actions = field("actions");
    let created_invoices: f64 = actions
        .split(", ")
        .find_map(|pair| pair.strip_prefix("create invoice: "))
        .map_or(0.0, |count| count.parse().unwrap());

    let http = client();
    let (status, text) = call(&http, Method::GET, &server.metrics_url(), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let samples = common::parse_exposition(text.as_str().unwrap());
    let counted = |status: Option<&str>| -> f64 {
        let labels: Vec<(&str, &str)> = status
            .map(|status| vec![("http_response_status_code", status)])
            .unwrap_or_default();
        common::find(
            &samples,
            "http_server_request_duration_seconds_count",
            &labels,
        )
        .iter()
        .map(|sample| sample.value)
        .sum()
    };
    // Set-up: 3 sellers, 5 clients, 10 invoices (201s); its /health is excluded.
    const SETUP: f64 = 18.0;
    assert_eq!(counted(None), requests + SETUP);
    for (status, count) in &statuses {
        let setup = if status == "201" { SETUP } else { 0.0 };
        assert_eq!(counted(Some(status)), count + setup, "status {status}");
    }
    let invoices: f64 = common::find(&samples, "invoicing_invoices_created_total", &[])
        .iter()
        .map(|sample| sample.value)
        .sum();
    assert_eq!(invoices, created_invoices + 10.0);
}

/// Sends the head of a multipart upload with `Expect: 100-continue`, waits for the
/// server to ask for the body (the handler is reading it), then sends the first half of
/// the body. Returns the stream and the rest of the body.
fn start_upload(addr: SocketAddr, invoice_id: i64, name: &str) -> (TcpStream, Vec<u8>) {
    let mut file = PDF.to_vec();
    file.extend(std::iter::repeat_n(b' ', 64 * 1024));
    let (content_type, body) = multipart("file", name, "application/pdf", &file);
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(PATIENCE)).expect("a timeout");
    write!(
        stream,
        "POST /api/invoices/{invoice_id}/attachments HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .expect("the head is sent");
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).expect("100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).expect("half the body is sent");
    stream.flush().expect("flushed");
    (stream, rest.to_vec())
}

/// The names in `dir` that end with `.part`.
fn part_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the folder exists")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".part"))
        .collect();
    names.sort();
    names
}

/// A SIGKILL during three uploads leaves three `.{uuid}.part` files; they are never
/// served, and the next start removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_cut_off_by_sigkill_are_removed_at_restart_and_never_served() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let mut server = Server::start(data.path(), &[]);
    let http = client();
    let s = create(&http, &server, "/api/sellers", &seller("S")).await["id"].clone();
    let c = create(&http, &server, "/api/clients", &json!({"name": "C"})).await["id"].clone();
    let body = invoice(
        s.as_i64().expect("an id"),
        c.as_i64().expect("an id"),
        "F-1",
    );
    let id = create(&http, &server, "/api/invoices", &body).await["id"]
        .as_i64()
        .expect("an id");

    let uploads = data.path().join("uploads");
    let streams: Vec<_> = (0..3)
        .map(|n| start_upload(server.addr, id, &format!("cut-{n}.pdf")))
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while part_files(&uploads).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the uploads never reached the disk"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let parts = part_files(&uploads);
    // While they are being received, they cannot be downloaded.
    for name in &parts {
        let (status, _) = call(
            &http,
            Method::GET,
            &server.url(&format!("/uploads/{name}")),
            None,
        )
        .await
        .expect("answered");
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
    }
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("the process is gone");
    drop(streams);
    assert_eq!(part_files(&uploads), parts, "the crash left them behind");

    let server = Server::start(data.path(), &[]);
    assert_eq!(part_files(&uploads), Vec::<String>::new());
    for name in &parts {
        let (status, _) = call(
            &http,
            Method::GET,
            &server.url(&format!("/uploads/{name}")),
            None,
        )
        .await
        .expect("answered");
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
    }
    assert!(
        server
            .log_text()
            .contains("removed uploads cut off by a crash")
    );
}

/// A connection that sends the start of a request head and stops (slowloris).
fn half_open(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connects (the backlog takes it)");
    stream
        .write_all(b"GET /api/sellers HTTP/1.1\r\nHost: x\r\n")
        .expect("half a head is sent");
    stream
}

/// Waits until the server closes `stream` (end of file, or a reset), reading and
/// discarding what it sends (a 408, if anything); `false` if it is still open at
/// `deadline`.
fn closed_by_server(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut sink = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("a timeout");
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// One `GET /health` on a fresh connection, by hand: its status line.
fn health_status_line(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(PATIENCE)).expect("a timeout");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("sent");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.lines().next().unwrap_or_default().to_owned()
}

/// `GET /metrics` on a fresh connection to `addr`, by hand: the exposition, or `None` if
/// the server cannot be reached or does not answer (out of file descriptors).
fn scrape(addr: SocketAddr) -> Option<Vec<common::Sample>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let body = response
        .strip_prefix("HTTP/1.1 200 OK\r\n")?
        .split_once("\r\n\r\n")?
        .1;
    Some(common::parse_exposition(body))
}

/// Scrapes `addr` until `done` holds (or the patience runs out): the last scrape.
fn scrape_until(addr: SocketAddr, done: impl Fn(&[common::Sample]) -> bool) -> Vec<common::Sample> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let samples = scrape(addr);
        match samples {
            Some(samples) if done(&samples) || Instant::now() > deadline => return samples,
            None if Instant::now() > deadline => panic!("{addr} cannot be scraped"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// [`scrape_until`] connections are counted closed, then one more scrape: a scrape reads
/// the open gauge before the connection durations, so a connection closing between the
/// two reads is in both; the next scrape has it closed only.
fn scrape_once_closed(
    addr: SocketAddr,
    done: impl Fn(&[common::Sample]) -> bool,
) -> Vec<common::Sample> {
    scrape_until(addr, done);
    scrape(addr).unwrap_or_else(|| panic!("{addr} cannot be scraped"))
}

/// The value of `name` on the listener of `port`, `error_type` when given.
fn on_listener(samples: &[common::Sample], name: &str, port: u16, error_type: Option<&str>) -> f64 {
    let port = port.to_string();
    let mut labels = vec![
        ("server_address", "127.0.0.1"),
        ("server_port", port.as_str()),
    ];
    labels.extend(error_type.map(|kind| ("error_type", kind)));
    common::value(samples, name, &labels)
}

/// The scrape lines of the connection metrics, for the test's output.
fn connection_lines(samples: &[common::Sample]) -> String {
    samples
        .iter()
        .filter(|s| {
            (s.name.contains("connection") || s.name.contains("accept_errors"))
                && !s.name.ends_with("_bucket")
        })
        .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
        .collect::<Vec<_>>()
        .join("\n")
}

const OPEN: &str = "http_server_open_connections";
const CLOSED: &str = "http_server_connection_duration_seconds_count";
const REJECTED: &str = "http_server_rejected_connections_total";
const ACCEPT_ERRORS: &str = "http_server_accept_errors_total";

/// Slowloris, as the attacker ran it: the server under `ulimit -n 256`, 300 connections
/// that each send half a request head and stop. The server holds as many as its
/// connection cap (128, with the idle connection below), turns the others away at once,
/// closes the ones it holds within its header-read timeout (10 s here: long enough for
/// the cap to be reached however loaded the machine is, the attackers being opened one
/// after the other while the first ones' timeouts run), never fails an
/// accept for lack of file descriptors, and `/health` answers again once they are
/// closed. An idle keep-alive connection is closed the same way. `/metrics` (on
/// `METRICS_ADDR`, which the attack does not reach) shows it all: the cap reached, the
/// connections turned away, no accept error, and in the end every connection counted
/// once, closed or turned away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_by_the_header_read_timeout() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let server = Server::start_with_open_files(
        data.path(),
        &[
            ("HEADER_READ_TIMEOUT", "10s"),
            ("MAX_CONNECTIONS", "128"),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ],
        Some(256),
    );
    let addr = server.addr;
    let metrics = server.metrics_addr.expect("the metrics listener");
    let (closed, idle_closed, health, during, after) = tokio::task::spawn_blocking(move || {
        // A keep-alive connection, idle after its first answer.
        let mut idle = TcpStream::connect(addr).expect("connects");
        idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("sent");
        let mut first = [0u8; 12];
        idle.read_exact(&mut first).expect("answered");
        assert_eq!(&first, b"HTTP/1.1 200");

        let mut attackers: Vec<TcpStream> = (0..300).map(|_| half_open(addr)).collect();
        // The cap is reached: 127 attackers and the idle connection.
        let during = scrape_until(metrics, |samples| {
            on_listener(samples, OPEN, addr.port(), None) >= 128.0
        });
        // Within 10 s of being accepted, with a wide margin for a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        let closed = attackers
            .iter_mut()
            .map(|stream| closed_by_server(stream, deadline))
            .filter(|closed| *closed)
            .count();
        let idle_closed = closed_by_server(&mut idle, deadline);
        let health = health_status_line(addr);
        // The idle connection, the 300 attackers and the health check: each closed after
        // being served, or turned away.
        let after = scrape_once_closed(metrics, |samples| {
            on_listener(samples, CLOSED, addr.port(), None)
                + on_listener(samples, REJECTED, addr.port(), None)
                >= 302.0
        });
        (closed, idle_closed, health, during, after)
    })
    .await
    .expect("the client thread");
    println!(
        "during the attack:\n{}\nafter it:\n{}",
        connection_lines(&during),
        connection_lines(&after)
    );
    assert_eq!(closed, 300, "half-open connections left open by the server");
    assert!(idle_closed, "an idle keep-alive connection stayed open");
    assert_eq!(health, "HTTP/1.1 200 OK");
    let port = addr.port();
    assert_eq!(on_listener(&during, OPEN, port, None), 128.0, "the cap");
    assert_eq!(
        on_listener(&during, "http_server_connection_limit", port, None),
        128.0
    );
    let (served, rejected) = (
        on_listener(&after, CLOSED, port, None),
        on_listener(&after, REJECTED, port, None),
    );
    assert_eq!(served + rejected, 302.0, "every connection counted once");
    assert!(rejected >= 1.0 && served >= 129.0, "{served} {rejected}");
    assert_eq!(on_listener(&after, OPEN, port, None), 0.0);
    for kind in ["fd_limit", "out_of_memory", "_OTHER"] {
        assert_eq!(
            on_listener(&after, ACCEPT_ERRORS, port, Some(kind)),
            0.0,
            "{kind}"
        );
    }
    let log = server.log_text();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("accept error"), "{log}");
}

/// The open-files limit lowered under the running server (`prlimit`, as an operator
/// would, or as descriptors taken by something else would) below what its connection cap
/// assumes, then 100 half-open connections: once the few descriptors left are taken,
/// accepts fail with "too many open files". Each failure is counted as
/// `error_type="fd_limit"`, the first one logged (once: not one line per failure), the
/// accept loop pauses and goes on; once the limit is raised again, the waiting connections
/// are accepted (the scrape then shows them open beside the errors), closed by the
/// header-read timeout, every one counted, and `/health` answers.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_for_lack_of_descriptors_are_counted_and_the_server_recovers() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let server = Server::start_with_open_files(
        data.path(),
        &[
            ("HEADER_READ_TIMEOUT", "5s"),
            ("MAX_CONNECTIONS", "128"),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ],
        Some(256),
    );
    let (addr, pid) = (server.addr, server.child.id() as i32);
    let metrics = server.metrics_addr.expect("the metrics listener");
    let log = server.log.clone();
    let (during, after, health) = tokio::task::spawn_blocking(move || {
        let before = scrape(metrics).expect("scraped");
        let open_fds = common::value(&before, "process_open_fds", &[]) as u64;
        // 20 descriptors left (the scrape's own was among the open ones).
        rlimit::prlimit(
            pid,
            rlimit::Resource::NOFILE,
            Some((open_fds + 20, 256)),
            None,
        )
        .expect("prlimit lowers the limit of the server");
        let mut attackers: Vec<TcpStream> = (0..100).map(|_| half_open(addr)).collect();
        // The first accept error is logged: the descriptors are gone.
        let deadline = Instant::now() + PATIENCE;
        while !log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("accept error"))
        {
            assert!(Instant::now() < deadline, "no accept error logged");
            std::thread::sleep(Duration::from_millis(20));
        }
        rlimit::prlimit(pid, rlimit::Resource::NOFILE, Some((256, 256)), None)
            .expect("prlimit raises the limit again");
        // Every attacker accepted (most of them still open, waiting for their head).
        let during = scrape_until(metrics, |samples| {
            on_listener(samples, OPEN, addr.port(), None)
                + on_listener(samples, CLOSED, addr.port(), None)
                >= 100.0
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let closed = attackers
            .iter_mut()
            .map(|stream| closed_by_server(stream, deadline))
            .filter(|closed| *closed)
            .count();
        assert_eq!(closed, 100, "half-open connections left open by the server");
        let after = scrape_once_closed(metrics, |samples| {
            on_listener(samples, CLOSED, addr.port(), None) >= 100.0
        });
        (during, after, health_status_line(addr))
    })
    .await
    .expect("the client thread");
    println!(
        "during the attack, the limit raised again:\n{}\nafter it:\n{}",
        connection_lines(&during),
        connection_lines(&after)
    );
    let port = addr.port();
    assert!(on_listener(&during, ACCEPT_ERRORS, port, Some("fd_limit")) >= 1.0);
    assert!(on_listener(&during, OPEN, port, None) >= 1.0);
    assert_eq!(on_listener(&after, CLOSED, port, None), 100.0);
    assert_eq!(
        on_listener(&after, REJECTED, port, None),
        0.0,
        "below the cap"
    );
    assert_eq!(on_listener(&after, OPEN, port, None), 0.0);
    for kind in ["out_of_memory", "connection_aborted", "_OTHER"] {
        assert_eq!(
            on_listener(&after, ACCEPT_ERRORS, port, Some(kind)),
            0.0,
            "{kind}"
        );
    }
    assert_eq!(health, "HTTP/1.1 200 OK");
    let log = server.log_text();
    let logged: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("accept error"))
        .collect();
    assert!(
        (1..=2).contains(&logged.len()),
        "logged once per listener, not per failure: {logged:#?}"
    );
    let main_listener = format!("listener=127.0.0.1:{port}");
    assert!(
        logged
            .iter()
            .any(|line| line.contains(&main_listener) && line.contains("fd_limit")),
        "{logged:#?}"
    );
}

/// With 100 half-open connections held (the header-read timeout is far away),
/// `/health` keeps answering: they stay below the connection cap, whose room is for
/// real clients. The half-open ones are checked to be still open after the checks, so
/// that the answers did not merely wait for them to be closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_keeps_answering_beside_100_half_open_connections() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let server = Server::start_with_open_files(
        data.path(),
        &[("HEADER_READ_TIMEOUT", "60s"), ("MAX_CONNECTIONS", "128")],
        Some(256),
    );
    let addr = server.addr;
    let (statuses, still_open) = tokio::task::spawn_blocking(move || {
        let attackers: Vec<TcpStream> = (0..100).map(|_| half_open(addr)).collect();
        let statuses: Vec<String> = (0..20).map(|_| health_status_line(addr)).collect();
        let still_open = attackers
            .iter()
            .filter(|stream| {
                stream.set_nonblocking(true).expect("non-blocking");
                let mut byte = [0u8; 1];
                matches!(
                    (&**stream).read(&mut byte),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock
                )
            })
            .count();
        (statuses, still_open)
    })
    .await
    .expect("the client thread");
    assert!(
        statuses.iter().all(|line| line == "HTTP/1.1 200 OK"),
        "{statuses:?}"
    );
    assert_eq!(still_open, 100);
}

/// A body that stops arriving gets a 408 once `REQUEST_BODY_TIMEOUT` has passed; a
/// request that the service takes longer than `REQUEST_TIMEOUT` to answer gets a 503.
/// Both in the JSON error shape, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_get_408_and_late_answers_503() {
    fn stalled_post(addr: SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).expect("connects");
        stream.set_read_timeout(Some(PATIENCE)).expect("a timeout");
        stream
            .write_all(
                b"POST /api/sellers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                  Content-Length: 100\r\n\r\n{\"name\":",
            )
            .expect("sent");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    }
    for (env, status, code) in [
        (
            [("REQUEST_BODY_TIMEOUT", "1s"), ("REQUEST_TIMEOUT", "60s")],
            "HTTP/1.1 408 Request Timeout",
            "request_timeout",
        ),
        (
            [("REQUEST_BODY_TIMEOUT", "60s"), ("REQUEST_TIMEOUT", "1s")],
            "HTTP/1.1 503 Service Unavailable",
            "unavailable",
        ),
    ] {
        let data = tempfile::tempdir().expect("a temporary folder");
        let server = Server::start(data.path(), &env);
        let addr = server.addr;
        let response = tokio::task::spawn_blocking(move || stalled_post(addr))
            .await
            .expect("the client thread");
        assert!(response.starts_with(status), "{response}");
        assert!(
            response.contains(&format!("\"code\":\"{code}\"")),
            "{response}"
        );
        let (_, text) = call(&client(), Method::GET, &server.metrics_url(), None)
            .await
            .expect("scraped");
        let samples = common::parse_exposition(text.as_str().expect("text"));
        let counted = common::find(
            &samples,
            "http_server_request_duration_seconds_count",
            &[("http_route", "/api/sellers")],
        );
        assert_eq!(counted.len(), 1, "{counted:#?}");
        assert_eq!(
            counted[0].labels["http_response_status_code"],
            &status[9..12]
        );
    }
}

/// 25 uploads cut off mid-body by their client (which closes its side after half the
/// body): none is answered, and `/metrics` records them as cancellations (499,
/// `error_type="cancelled"`), not as `400 bad_request`. Nothing is left on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_abandoned_by_their_client_are_cancellations_not_400s() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let server = Server::start(data.path(), &[]);
    let http = client();
    let s = create(&http, &server, "/api/sellers", &seller("S")).await["id"].clone();
    let c = create(&http, &server, "/api/clients", &json!({"name": "C"})).await["id"].clone();
    let body = invoice(
        s.as_i64().expect("an id"),
        c.as_i64().expect("an id"),
        "F-1",
    );
    let id = create(&http, &server, "/api/invoices", &body).await["id"]
        .as_i64()
        .expect("an id");
    let addr = server.addr;
    let answers = tokio::task::spawn_blocking(move || {
        (0..25)
            .map(|n| {
                let (mut stream, _rest) = start_upload(addr, id, &format!("cut-{n}.pdf"));
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .expect("half-closed");
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
                String::from_utf8_lossy(&answer).into_owned()
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("the client thread");
    for answer in &answers {
        assert_eq!(answer, "", "a client that is gone was answered");
    }
    // The client sees the connection close before hyper drops the request's future (the
    // socket is dropped first), so the last cancellations can be recorded just after the
    // client returns: scrape until all 25 are in (or 10 s pass), then check them exactly.
    let mut samples = Vec::new();
    for _ in 0..100 {
        let (_, text) = call(&http, Method::GET, &server.metrics_url(), None)
            .await
            .expect("scraped");
        samples = common::parse_exposition(text.as_str().expect("text"));
        let recorded: f64 = common::find(
            &samples,
            "http_server_request_duration_seconds_count",
            &[("http_route", "/api/invoices/{id}/attachments")],
        )
        .iter()
        .map(|sample| sample.value)
        .sum();
        if recorded >= 25.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let uploads = common::find(
        &samples,
        "http_server_request_duration_seconds_count",
        &[("http_route", "/api/invoices/{id}/attachments")],
    );
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    assert_eq!(uploads[0].labels["http_response_status_code"], "499");
    assert_eq!(uploads[0].labels["error_type"], "cancelled");
    assert_eq!(uploads[0].value, 25.0);
    assert_eq!(
        part_files(&data.path().join("uploads")),
        Vec::<String>::new()
    );
    assert!(
        !server.log_text().contains("ERROR"),
        "{}",
        server.log_text()
    );
}

/// Each value the attacker tried, and values like them, stops the binary at start (exit
/// status 2, `clap`'s usage error) with a message naming the variable and why (a
/// database password masked), before it creates anything: no database file
/// (`postgres:`), no folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_cannot_work_stop_it_at_start_naming_the_variable() {
    let cases = [
        ("PDP_TIMEOUT", "1000000000000h", "must be at most 1h"),
        ("PDP_RETRY_MAX", "2h", "must be at most 1h"),
        ("REQUEST_TIMEOUT", "1000000000000h", "must be at most 1day"),
        ("DATABASE_URL", "", "empty"),
        (
            "DATABASE_URL",
            "postgres://invoicing:secret@127.0.0.1:5432/invoicing",
            "a postgres URL",
        ),
        ("DATABASE_URL", "sqlite::memory:", "in-memory"),
        ("PDP_ADDR", "127.0.0.1", "the port is missing"),
        (
            "PDP_ADDR",
            "127.0.0.1:99999",
            "not a number from 1 to 65535",
        ),
        ("PDP_ADDR", "http://127.0.0.1:50160", "without a scheme"),
        ("METRICS_ADDR", "", "or `api`"),
    ];
    let runs = cases.map(|(variable, value, reason)| {
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let mut command = Command::new(env!("CARGO_BIN_EXE_invoicing"));
            command
                .env_clear()
                .current_dir(dir.path())
                .env("PORT", "0")
                .env("BIND", "127.0.0.1")
                .env("METRICS_ADDR", "127.0.0.1:0")
                .env("DATABASE_URL", "sqlite://data/invoicing.db")
                .env("PDP_ADDR", "127.0.0.1:50051")
                .env(variable, value)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = command.spawn().expect("the binary starts");
            let deadline = Instant::now() + PATIENCE;
            let status = loop {
                if let Some(status) = child.try_wait().expect("its status") {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let output = child.wait_with_output().expect("its output");
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            let created: Vec<String> = std::fs::read_dir(dir.path())
                .expect("the folder")
                .map(|entry| {
                    entry
                        .expect("an entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            (variable, value, reason, status, stderr, created)
        })
    });
    for run in runs {
        let (variable, value, reason, status, stderr, created) = run.await.expect("a run");
        let case = format!("{variable}={value:?}");
        let status = status.unwrap_or_else(|| panic!("{case}: still running after {PATIENCE:?}"));
        assert_eq!(status.code(), Some(2), "{case}: {status}\n{stderr}");
        assert!(stderr.contains(variable), "{case}: {stderr}");
        assert!(stderr.contains(reason), "{case}: {stderr}");
        assert!(!stderr.contains("secret"), "a password shown: {stderr}");
        assert_eq!(created, Vec::<String>::new(), "{case}: {stderr}");
    }
}

/// The PDP stand-in on 127.0.0.1, in this process: its address.
async fn start_pdp() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(pdp::serve(
        listener,
        pdp::metrics(),
        pdp::PdpService::new(Duration::from_millis(5)),
        std::future::pending(),
    ));
    addr
}

/// A TCP relay on 127.0.0.1 in front of a server, that can be paused: while paused it
/// moves no byte either way, as the kernel does for a process stopped with SIGSTOP (new
/// connections are accepted, bytes wait in the buffers, nothing is answered); resumed,
/// what waited is delivered, late, as it is to a process that gets SIGCONT. Its answers
/// alone can be held too: the server then gets and handles every request, and its
/// clients get no answer.
struct Relay {
    addr: SocketAddr,
    requests: tokio::sync::watch::Sender<bool>,
    answers: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("a bound address");
        let (requests, requests_paused) = tokio::sync::watch::channel(false);
        let (answers, answers_paused) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (requests_paused, answers_paused) =
                    (requests_paused.clone(), answers_paused.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    tokio::join!(
                        pipe(from_client, to_server, requests_paused),
                        pipe(from_server, to_client, answers_paused),
                    );
                });
            }
        });
        Self {
            addr,
            requests,
            answers,
        }
    }

    /// Holds everything, both ways.
    fn pause(&self) {
        self.requests.send_replace(true);
        self.answers.send_replace(true);
    }

    /// Holds the server's answers only.
    fn pause_answers(&self) {
        self.answers.send_replace(true);
    }

    fn resume(&self) {
        self.requests.send_replace(false);
        self.answers.send_replace(false);
    }
}

/// Copies `from` to `to`, holding everything while `paused` is true.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|paused| !paused).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(read) => read,
        };
        if paused.wait_for(|paused| !paused).await.is_err()
            || to.write_all(&buffer[..read]).await.is_err()
        {
            return;
        }
    }
}

fn issued(seller: i64, client: i64, number: &str) -> Value {
    let mut body = invoice(seller, client, number);
    body["status"] = json!("issued");
    body
}

/// Posts `count` issued invoices at once, numbered `{prefix}{n}`, each client leaving
/// after 300 ms without its answer; fails if one was answered in that time.
async fn post_and_leave(
    http: &HttpClient,
    server: &Server,
    seller: i64,
    client: i64,
    prefix: &str,
    count: usize,
) {
    let posts: Vec<_> = (0..count)
        .map(|n| {
            let (http, url) = (http.clone(), server.url("/api/invoices"));
            let body = issued(seller, client, &format!("{prefix}{n}"));
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(300),
                    call(&http, Method::POST, &url, Some(&body)),
                )
                .await
            })
        })
        .collect();
    for post in posts {
        let answer = post.await.expect("a client task");
        assert!(answer.is_err(), "answered within 300 ms: {answer:?}");
    }
}

/// The app's metric `name` (with `labels`), summed, from its `/metrics`.
async fn app_metric(
    http: &HttpClient,
    server: &Server,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let (status, text) = call(http, Method::GET, &server.metrics_url(), None)
        .await
        .expect("scraped");
    assert_eq!(status, StatusCode::OK);
    let samples = common::parse_exposition(text.as_str().expect("text"));
    common::find(&samples, name, labels)
        .iter()
        .map(|sample| sample.value)
        .sum()
}

/// Polls `check` every 100 ms until it returns `Some`, for at most [`PATIENCE`].
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not after {PATIENCE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The issued invoices, once none is waiting for the PDP's answer: id → `pdp_status`.
async fn answered_invoices(http: &HttpClient, server: &Server) -> BTreeMap<i64, String> {
    eventually("every issued invoice has the PDP's answer", || async {
        let (status, list) = call(
            http,
            Method::GET,
            &server.url("/api/invoices?status=issued&limit=500"),
            None,
        )
        .await
        .ok()?;
        assert_eq!(status, StatusCode::OK, "{list}");
        let items = list["items"].as_array()?;
        items
            .iter()
            .map(|item| {
                Some((
                    item["id"].as_i64()?,
                    item["pdp_status"].as_str()?.to_owned(),
                ))
            })
            .collect()
    })
    .await
}

/// Every answer is a submission id, each a different one, and they are `sub-1` to
/// `sub-{n}`: the PDP (fresh, sequential ids) registered exactly one submission per
/// invoice, and no invoice was told `ALREADY_EXISTS` about its own earlier attempt.
fn assert_submitted_once_each(answers: &BTreeMap<i64, String>) {
    let ids: BTreeSet<String> = answers
        .values()
        .map(|answer| {
            answer
                .strip_prefix("SUBMITTED ")
                .unwrap_or_else(|| panic!("not submitted: {answers:#?}"))
                .to_owned()
        })
        .collect();
    let expected: BTreeSet<String> = (1..=answers.len()).map(|n| format!("sub-{n}")).collect();
    assert_eq!(ids, expected, "{answers:#?}");
}

/// The calls of the PDP's `SubmitInvoice` answered `OK`, from its `/metrics`.
async fn pdp_ok_calls(http: &HttpClient, pdp: SocketAddr) -> f64 {
    let (_, text) = call(http, Method::GET, &format!("http://{pdp}/metrics"), None)
        .await
        .expect("the PDP's /metrics");
    let samples = common::parse_exposition(text.as_str().expect("text"));
    common::find(
        &samples,
        "rpc_server_call_duration_seconds_count",
        &[
            ("rpc_method", "pdp.v1.Pdp/SubmitInvoice"),
            ("rpc_response_status_code", "OK"),
        ],
    )
    .iter()
    .map(|sample| sample.value)
    .sum()
}

/// The attacker's run: the PDP stalls (stopped), 5 clients post issued invoices and leave
/// after 300 ms, the PDP resumes. Every invoice is submitted, exactly once, with its
/// submission id kept, though the PDP also got the attempts whose answers nobody waited
/// for; while it stalled, `/metrics` showed them pending and retried. Another invoice with
/// the same SIRET and number is still `ALREADY_EXISTS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_invoices_are_submitted_once_each_though_the_pdp_stalls_and_clients_leave() {
    let pdp = start_pdp().await;
    let relay = Relay::start(pdp).await;
    let data = tempfile::tempdir().expect("a temporary folder");
    let relay_addr = relay.addr.to_string();
    let server = Server::start(
        data.path(),
        &[
            ("PDP_ADDR", &relay_addr),
            ("PDP_TIMEOUT", "500ms"),
            ("PDP_RETRY_MAX", "500ms"),
        ],
    );
    let http = client();
    // Two sellers with one SIRET: the PDP sees their invoices numbered alike as one.
    let s1 = create(&http, &server, "/api/sellers", &seller("S1")).await["id"]
        .as_i64()
        .expect("an id");
    let s2 = create(&http, &server, "/api/sellers", &seller("S2")).await["id"]
        .as_i64()
        .expect("an id");
    let c = create(&http, &server, "/api/clients", &json!({"name": "C"})).await["id"]
        .as_i64()
        .expect("an id");
    // With the PDP answering, the 201 carries its answer (tests/app/pdp.rs asserts that).
    // Here the first call also opens the connection through the relay, which a loaded
    // machine can make outlast `PDP_TIMEOUT`: then the outbox's retry brings the answer.
    let first = create(&http, &server, "/api/invoices", &issued(s1, c, "F-0")).await;
    let first_id = first["id"].as_i64().expect("an id");
    let first_status = eventually("the first invoice answered", || async {
        let (_, shown) = call(
            &http,
            Method::GET,
            &server.url(&format!("/api/invoices/{first_id}")),
            None,
        )
        .await
        .expect("shown");
        shown["pdp_status"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(first_status, "SUBMITTED sub-1", "{first}");

    relay.pause();
    post_and_leave(&http, &server, s1, c, "L-", 5).await;
    // Written down although their clients are gone, and retried while the PDP stalls.
    let retries = eventually("5 submissions pending and retried", || async {
        let pending = app_metric(&http, &server, "invoicing_pdp_submissions_pending", &[]).await;
        let retries = app_metric(
            &http,
            &server,
            "invoicing_pdp_submission_retries_total",
            &[],
        )
        .await;
        (pending == 5.0 && retries >= 5.0).then_some(retries)
    })
    .await;
    let (_, stalled) = call(
        &http,
        Method::GET,
        &server.url("/api/invoices?status=issued"),
        None,
    )
    .await
    .expect("listed");
    assert_eq!(stalled["total"], 6, "{stalled}");
    relay.resume();

    let answers = answered_invoices(&http, &server).await;
    assert_eq!(answers.len(), 6);
    assert_submitted_once_each(&answers);
    eventually("nothing pending", || async {
        let pending = app_metric(&http, &server, "invoicing_pdp_submissions_pending", &[]).await;
        (pending == 0.0).then_some(())
    })
    .await;
    let answered = |code: &'static str| {
        let (http, server) = (&http, &server);
        async move {
            app_metric(
                http,
                server,
                "invoicing_pdp_submissions_answered_total",
                &[("code", code)],
            )
            .await
        }
    };
    assert_eq!(answered("OK").await, 6.0);
    let ok_calls = pdp_ok_calls(&http, pdp).await;
    println!(
        "while the PDP stalled: {retries} retries; the PDP answered OK {ok_calls} times for 6 submissions"
    );
    assert!(ok_calls >= 6.0);

    // Another invoice, the same SIRET and number: a duplicate for the PDP.
    let duplicate = create(&http, &server, "/api/invoices", &issued(s2, c, "F-0")).await;
    assert!(
        duplicate["pdp_status"]
            .as_str()
            .is_some_and(|answer| answer.starts_with("ALREADY_EXISTS: ")),
        "{duplicate}"
    );
    assert_eq!(answered("ALREADY_EXISTS").await, 1.0);
}

/// Submissions pending when the app is killed are sent by the next start, once each, with
/// their submission ids. Here the PDP handles every attempt and its answers are held
/// (their clients gone, then the app killed): the PDP registered the invoices, and only
/// the retries of the next start, under the same keys, get the answers back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_pending_at_a_kill_are_finished_by_the_next_start() {
    let pdp = start_pdp().await;
    let relay = Relay::start(pdp).await;
    let data = tempfile::tempdir().expect("a temporary folder");
    let relay_addr = relay.addr.to_string();
    let env = [
        ("PDP_ADDR", relay_addr.as_str()),
        ("PDP_TIMEOUT", "500ms"),
        ("PDP_RETRY_MAX", "500ms"),
    ];
    let mut server = Server::start(data.path(), &env);
    let http = client();
    let s = create(&http, &server, "/api/sellers", &seller("S")).await["id"]
        .as_i64()
        .expect("an id");
    let c = create(&http, &server, "/api/clients", &json!({"name": "C"})).await["id"]
        .as_i64()
        .expect("an id");
    relay.pause_answers();
    post_and_leave(&http, &server, s, c, "K-", 5).await;
    eventually("5 submissions pending and retried", || async {
        let pending = app_metric(&http, &server, "invoicing_pdp_submissions_pending", &[]).await;
        let retries = app_metric(
            &http,
            &server,
            "invoicing_pdp_submission_retries_total",
            &[],
        )
        .await;
        (pending == 5.0 && retries >= 5.0).then_some(())
    })
    .await;
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("the process is gone");
    drop(server);
    relay.resume();

    let server = Server::start(data.path(), &env);
    let answers = answered_invoices(&http, &server).await;
    assert_eq!(answers.len(), 5);
    assert_submitted_once_each(&answers);
    let log = server.log_text();
    assert!(
        log.contains("PDP submissions pending from a previous run"),
        "{log}"
    );
    assert_eq!(
        app_metric(
            &http,
            &server,
            "invoicing_pdp_submissions_answered_total",
            &[("code", "OK")]
        )
        .await,
        5.0
    );
    // Every attempt reached the PDP: more OK answers than submissions, the retries'.
    let ok_calls = pdp_ok_calls(&http, pdp).await;
    println!("the PDP answered OK {ok_calls} times for 5 submissions");
    assert!(ok_calls > 5.0, "{ok_calls}");
}
