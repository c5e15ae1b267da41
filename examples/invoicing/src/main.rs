//! The invoicing API. Run it with:
//!
//! ```sh
//! cargo run --release -p invoicing
//! # then
//! curl http://127.0.0.1:3000/health
//! curl http://127.0.0.1:3000/metrics
//! ```
//!
//! Configuration by environment variables (`PORT`, `BIND`, `DATABASE_URL`, `UPLOADS_DIR`,
//! `PDF_DIR`, `MAX_UPLOAD_BYTES`, `METRICS_ADDR`, `METRICS_ENABLED`, `RUST_LOG`): see
//! `README.md` and `src/config.rs`. SIGTERM or Ctrl-C stop it gracefully: the listeners
//! close, in-flight requests finish, then the database is closed.

use std::process::ExitCode;

/// Counts the heap for `/metrics` (`rust_heap_live_bytes`, …) around the system allocator.
#[global_allocator]
static ALLOCATOR: tower_prometheus::CountingAllocator =
    tower_prometheus::CountingAllocator::system();

use invoicing::config::Config;
use invoicing::{AppState, app, metrics_app, telemetry};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init_tracing();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the service stopped on an error");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::from_env()?;
    let state = AppState::open(config.clone()).await?;

    let listener = TcpListener::bind(config.addr())
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.addr()))?;
    let metrics_listener = match (&state.telemetry.http, config.metrics_addr) {
        (Some(metrics), Some(addr)) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|error| format!("cannot listen on METRICS_ADDR {addr}: {error}"))?;
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

    let metrics_server = metrics_listener.map(|(listener, router)| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("metrics on http://{addr}/metrics");
        }
        tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(wait(stopped.clone()))
                .into_future(),
        )
    });

    tracing::info!(
        version = telemetry::VERSION,
        metrics = config.metrics_enabled,
        "listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(wait(stopped))
        .await?;
    if let Some(server) = metrics_server {
        server.await??;
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
