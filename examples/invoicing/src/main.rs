//! The invoicing API. Run it with:
//!
//! ```sh
//! cargo run --release -p invoicing
//! # then
//! curl http://127.0.0.1:3000/health
//! curl http://127.0.0.1:9100/metrics
//! ```
//!
//! Configuration by flags or environment variables (`invoicing --help`; the table in
//! `README.md`). SIGTERM or Ctrl-C stop it gracefully: the listeners close, the requests
//! in flight finish, the PDP submissions in flight are left for the next start, then the
//! database is closed.
//!
//! Observability, all of it: `telemetry::init_tracing` (logs, and spans over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set), `AppState::open` builds
//! the `Telemetry` (business metrics and `tower_prometheus::Metrics` on one registry),
//! `app` puts the HTTP metrics layer on the router, and `metrics_app` serves `/metrics`
//! on its own listener (`METRICS_ADDR`, `127.0.0.1:9100` by default; `api`: beside the
//! API, from `app`); the allocator below counts the heap.

use std::process::ExitCode;

use clap::Parser;
use invoicing::config::{Config, MetricsAddr};
use invoicing::serve::{connection_cap, metered_listener, serve};
use invoicing::{AppState, app, metrics_app, telemetry};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Counts the heap for `/metrics` (`rust_heap_live_bytes`, …) around the system allocator.
#[global_allocator]
static ALLOCATOR: tower_prometheus::CountingAllocator =
    tower_prometheus::CountingAllocator::system();

/// Connections served at once on the `METRICS_ADDR` listener (Prometheus scrapes, probes).
const METRICS_CONNECTIONS: u32 = 16;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let traces = match telemetry::init_tracing(config.otlp_endpoint.as_deref()) {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("invoicing: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the service stopped on an error");
            ExitCode::FAILURE
        }
    };
    // The spans of the last requests, before the runtime goes.
    tokio::task::spawn_blocking(move || traces.shutdown())
        .await
        .ok();
    code
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let state = AppState::open(config.clone()).await?;
    let max_connections = connection_cap(config.serve.max_connections);

    let metrics = state.telemetry.http.as_ref();
    let bound = TcpListener::bind(config.addr())
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.addr()))?;
    let listener = metered_listener(metrics, bound, max_connections);
    let metrics_listener = match (metrics, config.metrics_addr) {
        (Some(metrics), MetricsAddr::Listen(addr)) => {
            let bound = TcpListener::bind(addr)
                .await
                .map_err(|error| format!("cannot listen on METRICS_ADDR {addr}: {error}"))?;
            let listener = metered_listener(Some(metrics), bound, METRICS_CONNECTIONS);
            Some((listener, metrics_app(metrics)))
        }
        _ => None,
    };

    let (stop, stopped) = watch::channel(());
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing the requests in flight");
        // Dropping the sender wakes every receiver.
        drop(stop);
    });

    let metrics_server = match metrics_listener {
        Some((listener, router)) => {
            tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
            let (limits, stopped) = (config.serve, stopped.clone());
            Some(tokio::spawn(async move {
                serve(listener, router, &limits, wait(stopped)).await;
            }))
        }
        None => None,
    };

    tracing::info!(
        version = telemetry::VERSION,
        metrics = config.metrics_enabled,
        max_connections,
        "listening on http://{}",
        listener.local_addr()?
    );
    serve(listener, app(state.clone()), &config.serve, wait(stopped)).await;
    if let Some(server) = metrics_server {
        server.await?;
    }
    if let Some(outbox) = &state.outbox {
        outbox.stop().await;
    }
    state.db.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Resolves when the sender of `stopped` is gone.
async fn wait(mut stopped: watch::Receiver<()>) {
    while stopped.changed().await.is_ok() {}
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
