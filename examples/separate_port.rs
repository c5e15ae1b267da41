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
use tokio::sync::watch;
use tower_prometheus::Metrics;

/// Time for a client to send a request head; also the idle time of keep-alive connections.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once: keep it below the open-files limit (`ulimit -n`).
const MAX_CONNECTIONS: usize = 512;
/// Time the requests in flight have to finish on Ctrl-C.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

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
