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

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;

use axum::{Router, extract::Path, routing::get};
use tower_prometheus::{HttpMetricsLayer, Metrics};

/// The serving loop both axum examples share (`examples/shared/serve.rs`).
#[path = "shared/serve.rs"]
mod serve;
use serve::serve;

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
