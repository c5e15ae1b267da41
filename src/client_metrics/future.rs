//! The inner future, its error boxed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

/// The error the client layer's service returns: the inner service's, boxed (what
/// `tower::BoxError` names).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The inner service's future, its error boxed into a `Box<dyn Error + Send + Sync>`: the future inside
    /// the client layer's [`ResponseFuture`](crate::http_metrics::ResponseFuture).
    pub struct BoxErrors<F> {
        #[pin]
        inner: F,
    }
}

impl<F> BoxErrors<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F, T, E> Future for BoxErrors<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

impl<F> std::fmt::Debug for BoxErrors<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxErrors").finish_non_exhaustive()
    }
}
