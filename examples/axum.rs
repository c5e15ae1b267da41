//! An axum server with HTTP metrics and a `/metrics` endpoint, in two lines.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example axum
//! # or on another port
//! PORT=8080 cargo run --example axum
//! ```
//!
//! Then try:
//!
//! ```sh
//! curl http://127.0.0.1:3000/hello/world
//! curl http://127.0.0.1:3000/metrics
//! ```
//!
//! `/metrics` is excluded from the HTTP metrics, so scrapes do not show up in them.
//! [`serve`] replaces `axum::serve`, which has no timeouts: a client sending half a
//! request and nothing more would hold a connection (and a file descriptor) forever.
//! Besides the HTTP metrics, `/metrics` shows what `Metrics` registers by default: the
//! process collector (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …)
//! and the Tokio runtime collector (`tokio_alive_tasks`, `tokio_event_loop_lag_seconds`,
//! …). With `--features heap`, `CountingAllocator` counts the heap as well
//! (`rust_heap_live_bytes`, …).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use axum::{Router, extract::Path, routing::get};
use tower_prometheus::{HttpMetricsLayer, Metrics};

/// Time for a client to send a request head; also the idle time of keep-alive connections.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once: keep it below the open-files limit (`ulimit -n`).
const MAX_CONNECTIONS: usize = 512;
/// Time the requests in flight have to finish on Ctrl-C.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Heap metrics when built with `--features heap`.
#[cfg(feature = "heap")]
#[global_allocator]
static ALLOCATOR: tower_prometheus::CountingAllocator =
    tower_prometheus::CountingAllocator::system();

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = port_from_env("PORT", 3000)?;

    // Process and runtime collectors are on by default; `.process(false)`,
    // `.runtime(false)` and `.lag_resolution(..)` are the switches.
    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().exclude_path("/metrics"))
        .build()?;

    let app = Router::new()
        .route("/hello/{name}", get(hello))
        .route_service("/metrics", metrics.exporter())
        .layer(metrics.http_layer());

    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!("listening on http://{}", listener.local_addr()?);
    serve(listener, app, shutdown_signal()).await?;
    Ok(())
}

/// Serves `app` with the limits a server open to the internet needs, which
/// `axum::serve` does not set: a connection that has not sent a whole request head
/// within [`HEADER_READ_TIMEOUT`] is closed (half-sent requests, slowloris; hyper starts
/// the timer whenever a connection waits for a request, so idle keep-alive connections
/// are closed too); at most [`MAX_CONNECTIONS`] are served at once, the next ones waiting
/// in the listen backlog instead of taking file descriptors; on `shutdown` the listener
/// closes and the requests in flight get [`SHUTDOWN_TIMEOUT`] to finish. HTTP/1.1 only:
/// hyper has no header-read timeout for HTTP/2. (`examples/invoicing` adds body and
/// answer timeouts with tower-http, and more.)
async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // What `axum::serve` does first: handlers become services once, not per request.
    let app = app.with_state::<()>(());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    eprintln!("accept error: {error}; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("requests still in flight after {SHUTDOWN_TIMEOUT:?}: closing them");
    }
    Ok(())
}

async fn hello(Path(name): Path<String>) -> String {
    format!("Hello, {name}!")
}

/// Resolves on Ctrl-C.
async fn shutdown_signal() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("cannot listen for Ctrl-C ({error}); shutting down");
    }
}

fn port_from_env(name: &str, default: u16) -> Result<u16, Box<dyn std::error::Error>> {
    match std::env::var(name) {
        Ok(port) => Ok(port
            .parse()
            .map_err(|error| format!("{name}={port:?}: {error}"))?),
        Err(_) => Ok(default),
    }
}
