//! The listener wrapper: counts what it accepts, what it turns away and what fails.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::accept::Accept;
use super::errors::AcceptError;
use super::series::Series;
use super::stream::MeteredStream;

/// The first pause after an accept error; each error in a row doubles it (as Go's
/// `net/http` server does), up to [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(5);

/// The longest pause after accept errors in a row: axum's loop always waits this long.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A listener whose connections are measured: made by
/// [`Metrics::listener`](crate::Metrics::listener). It is an `axum::serve::Listener`
/// (feature `axum`), and its [`accept`](Self::accept) serves hyper-util accept loops.
///
/// Each accepted connection is a [`MeteredStream`], counted open until it is dropped.
/// Accept errors never end the loop: each is counted by kind, and the loop pauses before
/// it tries again (5 ms, doubling with each error in a row up to 1 s, back to 5 ms after
/// an accept succeeds; no pause when only the peer gave up), so that a lasting error
/// ("too many open files") does not spin a core, and the service answers again as soon
/// as descriptors are free. The first error of each kind is logged (see the
/// [module docs](super#accept-errors)).
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use axum::{Router, routing::get};
///
/// let metrics = tower_prometheus::Metrics::new();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .route_service("/metrics", metrics.exporter())
///     .layer(metrics.http_layer());
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// axum::serve(metrics.listener(listener).max_connections(10_000), app).await?;
/// # Ok(()) }
/// ```
pub struct MeteredListener<L> {
    inner: L,
    series: Arc<Series>,
    /// The accept-error counter's name, for the log.
    errors_metric: &'static str,
    max_connections: Option<usize>,
    /// The pause after the last accept error, while they come in a row.
    backoff: Option<Duration>,
}

impl<L: Accept> MeteredListener<L> {
    pub(super) fn new(inner: L, series: Arc<Series>, errors_metric: &'static str) -> Self {
        Self {
            inner,
            series,
            errors_metric,
            max_connections: None,
            backoff: None,
        }
    }

    /// The most connections open at once: beyond it, a connection is accepted and
    /// closed at once, and counted as turned away (rejected), not as open. Published as
    /// the listener's connection limit, so that an alert can watch how near it the open
    /// connections are. Defaults to none.
    ///
    /// Turning connections away keeps the descriptors of the process bounded (the cap,
    /// plus one for the connection being closed): set it below the open-files limit
    /// (`ulimit -n`) less what the service opens besides, and accepts never fail for
    /// lack of descriptors. Connections waiting in the listen backlog are not turned
    /// away while the accept loop pauses after an error.
    ///
    /// ```
    /// # async fn run() -> std::io::Result<()> {
    /// let metrics = tower_prometheus::Metrics::new();
    /// let listener = metrics
    ///     .listener(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
    ///     .max_connections(512);
    /// # drop(listener); Ok(()) }
    /// ```
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self.series.limit.store(max, Ordering::Relaxed);
        self
    }

    /// The next connection. Never fails: errors are counted and retried after a pause
    /// (see the type's docs). Cancel-safe when the inner listener's `accept` is (Tokio's
    /// are): a connection is counted only when it is returned.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use hyper_util::rt::{TokioExecutor, TokioIo};
    /// use hyper_util::server::conn::auto;
    ///
    /// let metrics = tower_prometheus::Metrics::new();
    /// let service = hyper::service::service_fn(|_request| async {
    ///     Ok::<_, std::convert::Infallible>(hyper::Response::new(String::from("hello")))
    /// });
    /// let mut listener = metrics.listener(tokio::net::TcpListener::bind("0.0.0.0:3000").await?);
    /// loop {
    ///     let (stream, _peer) = listener.accept().await;
    ///     tokio::spawn(async move {
    ///         // The connection counts as closed when `stream` is dropped, here.
    ///         auto::Builder::new(TokioExecutor::new())
    ///             .serve_connection(TokioIo::new(stream), service)
    ///             .await
    ///     });
    /// }
    /// # }
    /// ```
    pub async fn accept(&mut self) -> (MeteredStream<L::Io>, L::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((io, addr)) => {
                    self.backoff = None;
                    let open = &self.series.open;
                    if let Some(max) = self.max_connections {
                        if open.load(Ordering::Relaxed) >= max {
                            self.series.rejected.fetch_add(1, Ordering::Relaxed);
                            drop(io);
                            continue;
                        }
                    }
                    open.fetch_add(1, Ordering::Relaxed);
                    let stream = MeteredStream::new(io, self.series.clone(), Instant::now());
                    return (stream, addr);
                }
                Err(error) => {
                    let kind = AcceptError::of(&error);
                    let first = self.series.accept_error(kind);
                    if !kind.backs_off() {
                        continue;
                    }
                    let pause = next_pause(self.backoff);
                    self.backoff = Some(pause);
                    if first {
                        log_first(&self.series, self.errors_metric, kind, &error);
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// The address the inner listener is bound to.
    pub fn local_addr(&self) -> io::Result<L::Addr> {
        self.inner.local_addr()
    }

    /// The inner listener.
    pub fn get_ref(&self) -> &L {
        &self.inner
    }

    /// The inner listener, mutably.
    pub fn get_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    /// The inner listener, unwrapped: its connections are no longer counted (those
    /// already accepted still are, until they are dropped).
    pub fn into_inner(self) -> L {
        self.inner
    }
}

/// The pause after an accept error, `previous` the one after the error before it when
/// no accept succeeded since.
fn next_pause(previous: Option<Duration>) -> Duration {
    previous.map_or(MIN_BACKOFF, |pause| (pause * 2).min(MAX_BACKOFF))
}

/// Logs the first accept error of a kind on a listener, which the accept loop survives
/// and nothing else would show but the counter.
#[cold]
fn log_first(series: &Series, metric: &str, kind: AcceptError, error: &io::Error) {
    #[cfg(feature = "tracing")]
    tracing::error!(
        listener = %series.endpoint,
        error_type = kind.as_str(),
        %error,
        "accept error; retrying after a pause (further errors of this kind are counted in {metric}_total, not logged)"
    );
    #[cfg(not(feature = "tracing"))]
    eprintln!(
        "tower-prometheus: accept error on {}: {error} (error_type {}); retrying after a pause (further errors of this kind are counted in {metric}_total, not logged)",
        series.endpoint,
        kind.as_str()
    );
}

impl<L: std::fmt::Debug> std::fmt::Debug for MeteredListener<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredListener")
            .field("inner", &self.inner)
            .field("endpoint", &self.series.endpoint)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<L: Accept> axum::serve::Listener for MeteredListener<L> {
    type Io = MeteredStream<L::Io>;
    type Addr = L::Addr;

    fn accept(&mut self) -> impl std::future::Future<Output = (Self::Io, Self::Addr)> + Send {
        MeteredListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_5_ms_up_to_1_s() {
        let mut pauses = Vec::new();
        let mut previous = None;
        for _ in 0..10 {
            let pause = next_pause(previous);
            pauses.push(pause.as_millis());
            previous = Some(pause);
        }
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(next_pause(None), MIN_BACKOFF, "after a success, 5 ms again");
    }
}
