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

use std::net::{Ipv4Addr, SocketAddr};

use axum::{Router, extract::Path, routing::get};
use tower_prometheus::{Metrics, http::HttpMetricsLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = port_from_env("PORT", 3000)?;

    let metrics = Metrics::builder()
        .http(HttpMetricsLayer::builder().exclude_path("/metrics"))
        .build()?;

    let app = Router::new()
        .route("/hello/{name}", get(hello))
        .route_service("/metrics", metrics.exporter())
        .layer(metrics.http_layer());

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
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
