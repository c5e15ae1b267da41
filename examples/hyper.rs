//! HTTP metrics on a plain hyper 1.x server, without axum.
//!
//! Without axum there is no `MatchedPath`, so the route label comes from a closure given
//! to `route_fn`: it must return the route *template* (`/hello/{name}`), never the
//! raw path, or every name would become a series of its own.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example hyper
//! # or on another port
//! PORT=8080 cargo run --example hyper
//! ```
//!
//! Then try:
//!
//! ```sh
//! curl http://127.0.0.1:3000/hello/world
//! curl http://127.0.0.1:3000/metrics
//! ```
//!
//! The router matches by hand and only knows `GET`: other methods, `HEAD` included, get
//! 405 (recorded with their route).
//!
//! The handler takes hyper's `Request<Incoming>` behind the layer, as it would without
//! it: by default the layer passes the request untouched and records its declared
//! length. With `.request_size(ReadBytes)` on the layer, it would take
//! `Request<RequestBody<Incoming>>` instead, whose body counts the bytes read.
//!
//! In a project of your own, this example needs:
//!
//! ```toml
//! [dependencies]
//! tower-prometheus = "0.1"
//! http = "1"
//! http-body-util = "0.1"
//! bytes = "1"
//! hyper = { version = "1", features = ["server", "http1", "http2"] }
//! hyper-util = { version = "0.1", features = ["tokio", "server-auto", "server-graceful", "service"] }
//! tokio = { version = "1", features = ["macros", "net", "rt-multi-thread", "signal"] }
//! tower = { version = "0.5", features = ["util"] }
//! ```

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_prometheus::{Exporter, HttpMetricsLayer, Metrics};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = port_from_env("PORT", 3000)?;

    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().exclude_path("/metrics"))
        .build()?;
    let exporter = metrics.exporter();

    // The router: the path is matched by hand. Every branch answers with the same body
    // type, `Full<Bytes>`, which is also the exporter's.
    let router = service_fn(move |request: Request<Incoming>| {
        let exporter = exporter.clone();
        async move { route(exporter, request).await }
    });

    // The layer gets the route template from this closure, which sees the request as it
    // enters the layer: hyper's `Request<Incoming>`, as the router gets it too.
    let service = ServiceBuilder::new()
        .layer(
            metrics
                .http_layer()
                .route_fn(|request: &Request<Incoming>| {
                    hello_name(request.uri().path()).map(|_| "/hello/{name}")
                }),
        )
        .service(router);

    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!("listening on http://{}", listener.local_addr()?);

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        eprintln!("accept failed: {error}");
                        continue;
                    }
                };
                let service = TowerToHyperService::new(service.clone());
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        eprintln!("connection error: {error}");
                    }
                });
            }
            signal = &mut ctrl_c => {
                if let Err(error) = signal {
                    eprintln!("cannot listen for Ctrl-C ({error}); shutting down");
                }
                break;
            }
        }
    }

    // Stop accepting, let the open connections finish their requests.
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers one request: `GET /hello/{name}` and `GET /metrics`, 404 otherwise.
async fn route(
    exporter: Exporter,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    if path == "/metrics" {
        return exporter.oneshot(request).await;
    }
    let response = match hello_name(path) {
        Some(name) if request.method() == Method::GET => {
            Response::new(Full::new(Bytes::from(format!("Hello, {name}!"))))
        }
        Some(_) => status(StatusCode::METHOD_NOT_ALLOWED),
        None => status(StatusCode::NOT_FOUND),
    };
    Ok(response)
}

/// The `{name}` of a `/hello/{name}` path: one non-empty segment.
fn hello_name(path: &str) -> Option<&str> {
    path.strip_prefix("/hello/")
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(
        status.canonical_reason().unwrap_or_default(),
    )));
    *response.status_mut() = status;
    response
}

fn port_from_env(name: &str, default: u16) -> Result<u16, Box<dyn std::error::Error>> {
    match std::env::var(name) {
        Ok(port) => Ok(port
            .parse()
            .map_err(|error| format!("{name}={port:?}: {error}"))?),
        Err(_) => Ok(default),
    }
}
