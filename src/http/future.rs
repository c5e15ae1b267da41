//! The response future of the layer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::guard::Guard;
use super::labels::Outcome;

pin_project! {
    /// The future of [`HttpMetrics`](super::HttpMetrics): the inner future, and the guard
    /// that records the request if the future errs, panics or is dropped.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<Guard>,
        head_only: bool,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, guard: Option<Guard>, head_only: bool) -> Self {
        Self {
            inner,
            guard,
            head_only,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut guard = this.guard.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(guard) = &mut guard {
                    guard.responded(response.status());
                }
                // No body is sent after the head: HEAD, 1xx, 204, 304, or an empty body.
                if *this.head_only
                    || !has_body(response.status())
                    || response.body().is_end_stream()
                {
                    if let Some(mut guard) = guard.take() {
                        guard.finish(Outcome::Completed);
                    }
                }
                Ok(response.map(|body| ResponseBody::new(body, guard)))
            }
            Err(error) => {
                if let Some(mut guard) = guard {
                    guard.finish(Outcome::ServiceError);
                }
                Err(error)
            }
        })
    }
}

fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("recording", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}
