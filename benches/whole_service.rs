//! The whole service, for `benches/wrk.sh`: the minimal axum app (the invoice route of
//! `benches/scenarios/mod.rs`) served with `axum::serve` on 127.0.0.1, in three
//! configurations:
//!
//! - `bare`: the route alone;
//! - `floor`: the route behind the simplest end-of-body layer (duration only);
//! - `ours`: `Metrics::new()` built inside the runtime (every default collector, the lag
//!   probe running), the route, `/metrics` (the exporter), and `metrics.http_layer()`.
//!
//! `whole_service serve <bare|floor|ours> [ADDRESS]` serves until killed (default
//! address `127.0.0.1:0`) and prints `listening on ADDRESS` once it accepts. The runtime
//! is `#[tokio::main]`'s (multi-thread, a worker per CPU the process may use: one under
//! `taskset -c 0`).
//!
//! Without `serve` (as `cargo test --benches` and `cargo bench` run it) it checks each
//! configuration once over a real socket: the route answers the invoice, and ours'
//! `/metrics` shows the HTTP, process and runtime metrics.

mod scenarios;

use std::io::Write;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use scenarios::floor::FloorLayer;
use scenarios::{INVOICE_JSON, ROUTE, URI};
use tokio::net::{TcpListener, TcpStream};
use tower_prometheus::Metrics;

const CONFIGS: [&str; 3] = ["bare", "floor", "ours"];

/// The app of `config`; built inside the runtime, so that ours' lag probe starts.
fn app(config: &str) -> Router {
    let routes = Router::new().route(ROUTE, get(scenarios::show_invoice));
    match config {
        "bare" => routes,
        "floor" => routes.layer(FloorLayer::new()),
        "ours" => {
            let metrics = Metrics::new();
            routes
                .route_service("/metrics", metrics.exporter())
                .layer(metrics.http_layer())
        }
        other => panic!("unknown configuration {other:?}: one of {CONFIGS:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            let config = args.get(1).map(String::as_str).unwrap_or_else(|| {
                eprintln!("usage: whole_service serve <bare|floor|ours> [ADDRESS]");
                std::process::exit(2)
            });
            let address = args.get(2).map_or("127.0.0.1:0", String::as_str);
            serve(config, address);
        }
        _ => check(),
    }
}

#[tokio::main]
async fn serve(config: &str, address: &str) {
    let app = app(config);
    let listener = TcpListener::bind(address).await.expect("the address binds");
    let address = listener.local_addr().expect("a bound address");
    println!("listening on {address}");
    std::io::stdout().flush().expect("stdout");
    axum::serve(listener, app).await.expect("the server runs");
}

#[tokio::main]
async fn check() {
    for config in CONFIGS {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("a bound address");
        let server = tokio::spawn(axum::serve(listener, app(config)).into_future());
        let (status, body) = get_once(address, URI).await;
        assert_eq!(status, StatusCode::OK, "{config}: {URI}");
        assert_eq!(&body[..], &INVOICE_JSON[..], "{config}: {URI}");
        if config == "ours" {
            let (status, body) = get_once(address, "/metrics").await;
            assert_eq!(status, StatusCode::OK, "/metrics");
            let text = String::from_utf8(body.to_vec()).expect("text");
            for name in [
                "http_server_request_duration_seconds_count{",
                "process_resident_memory_bytes",
                "tokio_event_loop_lag_seconds",
            ] {
                assert!(text.contains(name), "/metrics shows {name}:\n{text}");
            }
        }
        server.abort();
        println!("{config}: served {URI} on {address}");
    }
}

/// One GET over a new connection.
async fn get_once(address: SocketAddr, uri: &str) -> (StatusCode, Bytes) {
    let stream = TcpStream::connect(address)
        .await
        .expect("the server accepts");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("a handshake");
    tokio::spawn(connection);
    let request = Request::get(uri)
        .header(http::header::HOST, address.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, body)
}
