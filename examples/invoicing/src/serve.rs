//! The HTTP server: what `axum::serve` leaves out and a service open to the internet
//! needs, on hyper-util's connection builder, accepting from tower-prometheus's
//! metered listener ([`metered_listener`]).
//!
//! The listener does (and publishes, `http_server_open_connections`,
//! `http_server_connection_duration_seconds`, `http_server_accept_errors_total`,
//! `http_server_rejected_connections_total`, `http_server_connection_limit`):
//!
//! - **At most `MAX_CONNECTIONS` connections** open at once; one beyond is accepted and
//!   closed at once (turned away, counted). The cap is lowered at start-up to what the
//!   open-files limit allows ([`connection_cap`]), so that the accept loop does not fail
//!   with "Too many open files" unless something else takes the descriptors.
//! - **Accept errors** are counted by kind (`fd_limit` for "too many open files"), the
//!   first of each kind logged; the loop pauses (5 ms, doubling to 1 s) and goes on.
//!
//! This module adds:
//!
//! - **Header-read timeout** (`HEADER_READ_TIMEOUT`): a connection that has not sent a
//!   whole request head in time is closed: half-sent requests (slowloris) and silent
//!   connections cannot hold a file descriptor. hyper starts this timer whenever a
//!   connection waits for a request, so it is also the idle timeout of keep-alive
//!   connections.
//! - The body and answer timeouts are tower-http layers, in [`crate::app`].
//! - **Graceful shutdown**: the listener closes, the requests in flight finish (for at
//!   most `SHUTDOWN_TIMEOUT`), idle connections are closed.
//! - **A client gone mid-request is not answered**: each connection carries a
//!   [`ClientGone`] handle in its requests' extensions; a handler that finds its client
//!   gone abandons the connection with it, and the connection is dropped unanswered.
//!
//! HTTP/1.1 only: hyper has no header-read timeout for HTTP/2, whose connections could be
//! held open without sending anything. Behind a TLS-terminating proxy, HTTP/1.1 is what
//! the proxy speaks to its upstreams anyway.

use std::future::Future;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_prometheus::connections::ConnectionMetrics;
use tower_prometheus::prometheus_client::registry::Registry;
use tower_prometheus::{MeteredListener, Metrics, Naming};

use crate::config::ServeConfig;

/// File descriptors kept for everything but connections: the database and its WAL, the
/// files being uploaded or downloaded, the listeners, the runtime.
const RESERVED_FDS: u64 = 64;

/// The handle of one connection, in each of its requests' extensions: see
/// [`crate::error::abandon_if_client_gone`].
#[derive(Clone, Debug, Default)]
pub struct ClientGone(CancellationToken);

impl ClientGone {
    /// Drops the connection without answering: its client is gone.
    pub fn abandon(&self) {
        self.0.cancel();
    }
}

/// How many connections may be served at once: `wanted`, lowered if the open-files limit
/// (raised to its hard limit first, as Go's runtime does) cannot hold them.
pub fn connection_cap(wanted: u32) -> u32 {
    #[cfg(unix)]
    {
        let needed = u64::from(wanted) + RESERVED_FDS;
        match rlimit::increase_nofile_limit(needed) {
            Ok(limit) if limit < needed => {
                let cap =
                    u32::try_from(limit.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(wanted);
                tracing::warn!(
                    wanted,
                    cap,
                    open_files = limit,
                    "MAX_CONNECTIONS lowered to fit the open-files limit (ulimit -n)"
                );
                cap
            }
            Ok(_) => wanted,
            Err(error) => {
                tracing::warn!(%error, "cannot read the open-files limit");
                wanted
            }
        }
    }
    #[cfg(not(unix))]
    wanted
}

/// `listener` measured by `metrics` (by a registry nobody scrapes with
/// `METRICS_ENABLED=false`: the accept loop and the cap are the same), with at most
/// `max_connections` connections open at once.
pub fn metered_listener(
    metrics: Option<&Metrics>,
    listener: TcpListener,
    max_connections: u32,
) -> MeteredListener<TcpListener> {
    let listener = match metrics {
        Some(metrics) => metrics.listener(listener),
        None => {
            ConnectionMetrics::new(&mut Registry::default(), Naming::default()).listener(listener)
        }
    };
    listener.max_connections(max_connections as usize)
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains the connections.
pub async fn serve(
    mut listener: MeteredListener<TcpListener>,
    app: Router,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        if let Err(error) = stream.get_ref().set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let gone = ClientGone::default();
        let handle = gone.clone();
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(handle.clone());
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection closed on an error");
                    }
                }
                () = gone.0.cancelled() => {}
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(config.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?config.shutdown_timeout,
            "requests still in flight at the end of SHUTDOWN_TIMEOUT: closing them"
        );
    }
}
