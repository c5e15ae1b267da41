//! Connections: what happens before a request is seen.
//!
//! [`Metrics::listener`](crate::Metrics::listener) wraps a Tokio listener in a
//! [`MeteredListener`], for `axum::serve` in one line:
//!
//! ```no_run
//! # async fn run(app: axum::Router) -> std::io::Result<()> {
//! let metrics = tower_prometheus::Metrics::new();
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! axum::serve(metrics.listener(listener), app).await?;
//! # Ok(()) }
//! ```
//!
//! and for a hyper-util accept loop, whose `listener.accept().await` it replaces
//! (see [`MeteredListener::accept`]). It records, per listener:
//!
//! | metric (`OpenTelemetry`) | `PromClient` | type | what |
//! |---|---|---|---|
//! | `http_server_open_connections` | `http_open_connections` | gauge | connections accepted and not yet closed |
//! | `http_server_connection_duration_seconds` | `http_connection_duration_seconds` | histogram | from accept to close; its `_count` is the connections closed |
//! | `http_server_accept_errors_total` | `http_accept_errors_total` | counter | failed accepts, by `error_type` |
//! | `http_server_rejected_connections_total` | `http_rejected_connections_total` | counter | connections turned away by [`max_connections`](MeteredListener::max_connections) |
//! | `http_server_connection_limit` | `http_connection_limit` | gauge | the `max_connections` of the listener, when it has one |
//! | `http_server_tls_handshake_duration_seconds` | `http_tls_handshake_duration_seconds` | histogram | handshakes measured with [`MeteredStream::handshake`], `error_type` on failures |
//!
//! Labels: `server_address` and `server_port` of the listener (a Unix socket has its path
//! as the address, no port), and with `Naming::OpenTelemetry` `network_transport` (`tcp`,
//! `unix`) and `network_type` (`ipv4`, `ipv6`). `Naming::AxumPrometheus` keeps the
//! `OpenTelemetry` names and labels here: axum-prometheus has no connection metrics to
//! keep. Listeners on one address share their
//! series; past 64 listeners, the others share one series labelled
//! `otel_metric_overflow="true"`. Families appear once a listener is wrapped; the
//! handshake histogram once a handshake is measured.
//!
//! # Names
//!
//! The OpenTelemetry semantic conventions define connection metrics for HTTP clients
//! (`http.client.open_connections`, `http.client.connection.duration`) and, on the
//! server side, only Kestrel's (`kestrel.active_connections`,
//! `kestrel.connection.duration`, `kestrel.rejected_connections`,
//! `kestrel.tls_handshake.duration`). The names here are the client's mirrored to the
//! server (`http.server.open_connections`, `http.server.connection.duration`), Kestrel's
//! terms for the rest in the `http.server` namespace, the conventions' `.limit` for the
//! cap, and Kestrel's attributes as labels. The duration buckets are the conventions'
//! advisory bounds for `kestrel.connection.duration` (10 ms to 5 minutes); the handshake
//! buckets those of `kestrel.tls_handshake.duration` (5 ms to 10 s).
//!
//! # When a connection counts as closed
//!
//! When its [`MeteredStream`] is dropped: the server dropped the connection (the peer
//! closed or reset it, a timeout, an error, a shutdown). The gauge goes down and the
//! duration is recorded before the socket is closed, so a client that sees the close
//! finds it counted (hyper half-closes a connection before it drops it: the count follows
//! a moment after the client reads the end). A connection that never sent a byte is one
//! like any other. HTTP/1.1 keep-alive and HTTP/2 connections count once, whatever the
//! requests they carry.
//!
//! There is no HTTP version label: the wrapper would have to look at the first bytes the
//! server reads (the HTTP/2 preface), a branch on every read of every connection, and
//! under TLS it reads ciphertext (ALPN decides there). The request metrics have the
//! version (`network_protocol_version`).
//!
//! # Accept errors
//!
//! An accept that fails is counted by `error_type`:
//!
//! | `error_type` | errors | what it means |
//! |---|---|---|
//! | `fd_limit` | `EMFILE`, `ENFILE` | the process (`ulimit -n`, compare `process_open_fds` with `process_max_fds`) or the system ran out of file descriptors: connections wait in the listen backlog |
//! | `out_of_memory` | `ENOMEM`, `ENOBUFS` | the kernel could not allocate the socket |
//! | `connection_aborted` | `ECONNABORTED`, resets | the client left before its connection was accepted: nothing to fix |
//! | `_OTHER` | the rest | `EPERM` (a firewall), `EPROTO`, … |
//!
//! Every kind is published from the start at 0, so that `increase()` sees the first
//! error. Accept errors never end the loop: it pauses (5 ms, doubling with each error in
//! a row up to axum's 1 s) and tries again, at once for `connection_aborted`. The first
//! error of each kind on each listener is logged, with the error itself: through
//! `tracing` (an `ERROR` event) with the feature `tracing`, otherwise on standard error;
//! the next ones are only counted, so that a descriptor shortage that lasts cannot flood
//! the log.
//!
//! # Turning connections away
//!
//! With [`max_connections`](MeteredListener::max_connections), a connection accepted
//! while the listener has that many open is closed at once and counted in the rejected
//! counter (Kestrel's `MaxConcurrentConnections`); it is neither open nor in the
//! duration histogram. The cap is published (`http_server_connection_limit`), so that an
//! alert can tell how near it the service runs.
//!
//! # TLS
//!
//! With `tokio-rustls` (or any TLS library whose handshake is a future answering an
//! `io::Result`), accept with the metered listener and run the handshake through
//! [`MeteredStream::handshake`]: the TLS stream wraps the metered one, so the connection
//! is counted until the TLS stream is dropped, and the handshake's duration and failures
//! are recorded. The crate depends on no TLS library for it.
//!
//! ```ignore
//! let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
//! let mut listener = metrics.listener(TcpListener::bind("0.0.0.0:443").await?);
//! loop {
//!     let (stream, _peer) = listener.accept().await;
//!     let (acceptor, service) = (acceptor.clone(), service.clone());
//!     tokio::spawn(async move {
//!         // A timeout around it records a handshake that takes too long as `cancelled`.
//!         let handshake = stream.handshake(|stream| acceptor.accept(stream));
//!         let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), handshake).await else {
//!             return;
//!         };
//!         let _ = auto::Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(tls), service)
//!             .await;
//!     });
//! }
//! ```
//!
//! # Cost
//!
//! Per connection, 248 instructions: two clock reads, an atomic add and subtract on the
//! listener's gauge, one histogram observation, a reference count on the listener's
//! series, the cap's check. Per request and per read or write, none: the stream's methods
//! call the inner stream's and are inlined away (1,000 requests on one keep-alive
//! connection of a hyper server: 13 instructions more in all, out of 19 million).
//! Counted with callgrind by `benches/connection_instructions.rs`.

mod accept;
mod encode;
mod errors;
mod listener;
mod series;
mod stream;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use accept::{Accept, Endpoint};
pub use listener::MeteredListener;
pub use stream::MeteredStream;

pub(crate) use series::families;

use crate::http_metrics::Naming;

/// The connection metrics of a registry, to wrap listeners with. [`Metrics`] has one
/// ([`Metrics::listener`] is its [`listener`](Self::listener)); make one yourself to use
/// them with a `prometheus-client` registry of your own.
///
/// ```
/// use prometheus_client::registry::Registry;
/// use tower_prometheus::Naming;
/// use tower_prometheus::connections::ConnectionMetrics;
///
/// # async fn run() -> std::io::Result<()> {
/// let mut registry = Registry::default();
/// let connections = ConnectionMetrics::new(&mut registry, Naming::OpenTelemetry);
/// let listener = connections.listener(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
/// # drop(listener); Ok(()) }
/// ```
///
/// Cloning is cheap: clones record into the same metrics.
///
/// [`Metrics`]: crate::Metrics
/// [`Metrics::listener`]: crate::Metrics::listener
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    listeners: Arc<series::Listeners>,
}

impl ConnectionMetrics {
    /// Registers the connection families in `registry`, named by `naming`.
    pub fn new(registry: &mut Registry, naming: Naming) -> Self {
        let listeners = Arc::new(series::Listeners::new(naming));
        registry.register_collector(Box::new(encode::Families(listeners.clone())));
        Self { listeners }
    }

    /// Wraps `listener`: its connections are counted from now on, in the series of its
    /// [`endpoint`](Accept::endpoint).
    pub fn listener<L: Accept>(&self, listener: L) -> MeteredListener<L> {
        let series = self.listeners.series(listener.endpoint());
        MeteredListener::new(listener, series, self.listeners.names.accept_errors)
    }
}
