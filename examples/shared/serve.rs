//! What `examples/axum.rs` and `examples/separate_port.rs` share: serving a `Router` with
//! the limits a server open to the internet needs. Not an example of its own (cargo
//! builds `examples/*.rs` and `examples/*/main.rs`); each includes it with `#[path]`, and
//! so does its test, `tests/example_serve.rs`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Time for a client to send a request head; also the idle time of keep-alive connections.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once: keep it below the open-files limit (`ulimit -n`).
const MAX_CONNECTIONS: usize = 512;
/// Time the requests in flight have to finish on Ctrl-C.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The limits of [`serve_with`]; the default is what [`serve`] uses.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time for a client to send a request head, and the idle time of keep-alive
    /// connections. Defaults to [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// Connections served at once. Defaults to [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Time the requests in flight have to finish once `shutdown` resolves. Defaults to
    /// [`SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            shutdown_timeout: SHUTDOWN_TIMEOUT,
        }
    }
}

/// Serves `app` with the limits a server open to the internet needs, which
/// `axum::serve` does not set: a connection that has not sent a whole request head
/// within [`HEADER_READ_TIMEOUT`] is closed (half-sent requests, slowloris; hyper starts
/// the timer whenever a connection waits for a request, so idle keep-alive connections
/// are closed too); at most [`MAX_CONNECTIONS`] are served at once, the next ones waiting
/// in the listen backlog instead of taking file descriptors; on `shutdown` the listener
/// closes and the requests in flight get [`SHUTDOWN_TIMEOUT`] to finish, after which
/// `serve` returns (the connections left are closed when the runtime stops). HTTP/1.1
/// only: hyper has no header-read timeout for HTTP/2. (`examples/invoicing` adds body
/// and answer timeouts with tower-http, and more.) `tests/example_serve.rs` tests each
/// limit over real connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, Limits::default()).await
}

/// [`serve`] with other [`Limits`].
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) -> std::io::Result<()> {
    // What `axum::serve` does first: handlers become services once, not per request.
    let app = app.with_state::<()>(());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
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
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!(
            "requests still in flight after {:?}: closing them",
            limits.shutdown_timeout
        );
    }
    Ok(())
}
