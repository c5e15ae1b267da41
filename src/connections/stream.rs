//! The accepted stream: counted open from `accept` until it is dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::errors::Handshake;
use super::series::Series;

/// A connection accepted by a [`MeteredListener`](super::MeteredListener): open in
/// the metrics until it is dropped, when its duration is recorded. Reads and writes go
/// to the inner stream untouched (nothing is counted per byte nor per call).
///
/// Its series are those of the listener that accepted it, which also measures
/// [handshakes](Self::handshake) made on it.
pub struct MeteredStream<S> {
    // Declared first, so dropped first: the connection counts as closed before its
    // socket is, and a client that sees the close sees it counted.
    open: Open,
    inner: S,
}

/// The connection's place in the open gauge, given back on drop with the duration.
struct Open {
    series: Arc<Series>,
    start: Instant,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.series.closed(self.start.elapsed().as_secs_f64());
    }
}

impl<S> MeteredStream<S> {
    /// Counts `inner` as open in `series` (whose gauge the listener has incremented).
    pub(super) fn new(inner: S, series: Arc<Series>, start: Instant) -> Self {
        Self {
            open: Open { series, start },
            inner,
        }
    }

    /// The inner stream (to read its peer address, set `TCP_NODELAY`…).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Runs a handshake on this stream, `handshake(self)` (a TLS acceptor's `accept`),
    /// and records its duration in the listener's TLS handshake histogram, with an
    /// `error_type` when it failed: `unexpected_eof` (the client closed during the
    /// handshake: TCP health checks, port scanners), `connection_reset`, `invalid_data`
    /// (rustls's protocol, certificate and version errors), `timeout`, `_OTHER`, or
    /// `cancelled` when the returned future is dropped before the handshake ended (a
    /// timeout put around it, a shutdown).
    ///
    /// No TLS library is needed: any future answering an `io::Result` is timed, such
    /// as `tokio_rustls::TlsAcceptor::accept`:
    ///
    /// ```ignore
    /// let (stream, _peer) = listener.accept().await;
    /// let tls = stream.handshake(|stream| acceptor.accept(stream)).await?;
    /// ```
    ///
    /// ```
    /// # async fn run() -> std::io::Result<()> {
    /// use tokio::io::AsyncReadExt;
    ///
    /// let metrics = tower_prometheus::Metrics::new();
    /// let mut listener = metrics.listener(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    /// let addr = listener.local_addr()?;
    /// tokio::spawn(async move {
    ///     let mut client = tokio::net::TcpStream::connect(addr).await?;
    ///     tokio::io::AsyncWriteExt::write_all(&mut client, b"hello").await
    /// });
    /// let (stream, _peer) = listener.accept().await;
    /// // A handshake of our own: the client must say hello first.
    /// let stream = stream
    ///     .handshake(|mut stream| async move {
    ///         let mut hello = [0u8; 5];
    ///         stream.read_exact(&mut hello).await?;
    ///         Ok(stream)
    ///     })
    ///     .await?;
    /// # drop(stream); Ok(()) }
    /// ```
    pub fn handshake<F, Fut, T>(self, handshake: F) -> impl Future<Output = io::Result<T>>
    where
        F: FnOnce(Self) -> Fut,
        Fut: Future<Output = io::Result<T>>,
    {
        let mut timer = HandshakeTimer {
            series: self.open.series.clone(),
            start: Instant::now(),
            outcome: None,
        };
        let handshake = handshake(self);
        async move {
            let result = handshake.await;
            timer.ended(match &result {
                Ok(_) => Handshake::Done,
                Err(error) => Handshake::of(error),
            });
            result
        }
    }
}

/// Records a handshake when dropped: with its outcome, or as cancelled.
struct HandshakeTimer {
    series: Arc<Series>,
    start: Instant,
    outcome: Option<Handshake>,
}

impl HandshakeTimer {
    fn ended(&mut self, outcome: Handshake) {
        self.outcome = Some(outcome);
    }
}

impl Drop for HandshakeTimer {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(Handshake::Cancelled);
        self.series
            .handshake(outcome, self.start.elapsed().as_secs_f64());
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for MeteredStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStream")
            .field("inner", &self.inner)
            .field("endpoint", &self.open.series.endpoint)
            .finish()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MeteredStream<S> {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MeteredStream<S> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
