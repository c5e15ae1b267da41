//! The request and response bodies of the layer: they count the bytes streamed.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::guard::Guard;
use super::labels::Outcome;

pin_project! {
    /// The request body the inner service receives: the original body, counting the
    /// bytes the service reads for the request body size histogram.
    ///
    /// Bodies that are empty from the start, and all bodies when body sizes are turned
    /// off, are passed through without counting.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        read: Option<Arc<AtomicU64>>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, read: Option<Arc<AtomicU64>>) -> Self {
        Self { inner, read }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, without the byte count.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(read), Some(Ok(frame))) = (this.read.as_ref(), &frame) {
            if let Some(data) = frame.data_ref() {
                read.fetch_add(data.remaining() as u64, Ordering::Relaxed);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("counted", &self.read.is_some())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response body the layer returns: the inner service's body, carrying the guard
    /// that records the request when the body ends, fails or is dropped.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, guard: Option<Guard>) -> Self {
        Self { inner, guard }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = match this.guard.as_mut() {
            Some(guard) => ready!(guard.run(|| this.inner.as_mut().poll_frame(cx))),
            None => ready!(this.inner.as_mut().poll_frame(cx)),
        };
        if let Some(guard) = this.guard {
            let outcome = match &frame {
                Some(Ok(frame)) => {
                    let complete = frame
                        .data_ref()
                        .is_some_and(|data| guard.add_response_bytes(data.remaining()));
                    // hyper stops polling once the body says it has ended, or once it
                    // has written the length it announced.
                    (complete || this.inner.is_end_stream()).then_some(Outcome::Completed)
                }
                Some(Err(_)) => Some(Outcome::BodyError),
                None => Some(Outcome::Completed),
            };
            if let Some(outcome) = outcome {
                guard.finish(outcome);
                *this.guard = None;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("recording", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}
