//! The response future of the layer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::guard::{Guard, sends_no_body};
use super::labels::Outcome;

pin_project! {
    /// The future of [`HttpMetrics`](super::HttpMetrics): the inner future, and the guard
    /// that records the request if the future errs, panics or is dropped.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<Guard>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, guard: Option<Guard>) -> Self {
        Self { inner, guard }
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
        let mut inner = this.inner;
        let result = match this.guard.as_mut() {
            Some(guard) => ready!(guard.run(|| inner.as_mut().poll(cx))),
            None => ready!(inner.poll(cx)),
        };
        let mut guard = this.guard.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(active) = &mut guard {
                    // The exact size hint first: it is free, where the header costs a
                    // hash lookup, and hyper sends the one it has.
                    let expected = response.body().size_hint().exact().or_else(|| {
                        response
                            .headers()
                            .get(http::header::CONTENT_LENGTH)
                            .and_then(|length| length.to_str().ok()?.parse::<u64>().ok())
                    });
                    active.responded(response.status(), expected);
                    if sends_no_body(active.method(), response.status())
                        || response.body().is_end_stream()
                    {
                        active.finish(Outcome::Completed);
                        guard = None;
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

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("recording", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}
