//! The application on one port and `/metrics` on another, as public services should do:
//! the metrics port stays reachable by Prometheus only (firewall, private network,
//! Kubernetes `NetworkPolicy`), and the internet cannot read the metrics.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example separate_port
//! # or on other ports
//! PORT=8080 METRICS_PORT=9100 cargo run --example separate_port
//! ```
//!
//! Then try:
//!
//! ```sh
//! curl http://127.0.0.1:3000/hello/world
//! curl http://127.0.0.1:9090/metrics
//! ```
//!
//! The application has no `/metrics` route, so nothing needs to be excluded from the
//! HTTP metrics; requests to the metrics port are not recorded at all. Both ports are
//! served by [`serve`] rather than `axum::serve`, which has no timeouts: a client sending
//! half a request and nothing more would hold a connection forever.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;

use axum::{Router, extract::Path, routing::get};
use tokio::sync::watch;
use tower_prometheus::Metrics;

/// The serving loop both axum examples share (`examples/shared/serve.rs`).
#[path = "shared/serve.rs"]
mod serve;
use serve::serve;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = port_from_env("PORT", 3000)?;
    let metrics_port = port_from_env("METRICS_PORT", 9090)?;

    let metrics = Metrics::new();

    let app = Router::new()
        .route("/hello/{name}", get(hello))
        .layer(metrics.http_layer());
    let admin = Router::new().route_service("/metrics", metrics.exporter());

    let app_listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let admin_listener =
        TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, metrics_port))).await?;
    println!("application on http://{}", app_listener.local_addr()?);
    println!("metrics on http://{}/metrics", admin_listener.local_addr()?);

    // One Ctrl-C stops both servers.
    let (stop, stopped) = watch::channel(());
    tokio::spawn(async move {
        if let Err(error) = tokio::signal::ctrl_c().await {
            eprintln!("cannot listen for Ctrl-C ({error}); shutting down");
        }
        // Dropping the sender wakes every receiver.
        drop(stop);
    });

    tokio::try_join!(
        serve(app_listener, app, wait(stopped.clone())),
        serve(admin_listener, admin, wait(stopped)),
    )?;
    Ok(())
}

async fn hello(Path(name): Path<String>) -> String {
    format!("Hello, {name}!")
}

/// Resolves when the sender of `stopped` is gone.
async fn wait(mut stopped: watch::Receiver<()>) {
    while stopped.changed().await.is_ok() {}
}

fn port_from_env(name: &str, default: u16) -> Result<u16, Box<dyn std::error::Error>> {
    match std::env::var(name) {
        Ok(port) => Ok(port
            .parse()
            .map_err(|error| format!("{name}={port:?}: {error}"))?),
        Err(_) => Ok(default),
    }
}
