//! The response future of the layer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

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
        let poll = match this.guard.as_mut() {
            Some(guard) => guard.run(|| this.inner.poll(cx)),
            None => this.inner.poll(cx),
        };
        // One chain of `map`s, without a binding of the response in between: the
        // response is then moved once, not three times.
        poll.map(|result| match result {
            Ok(response) => {
                // Noted in place, before the guard moves: reading it back from a fresh
                // copy would stall.
                let body_follows = this
                    .guard
                    .as_mut()
                    .is_some_and(|guard| responded(guard, &response));
                let guard = this.guard.take().filter(|_| body_follows);
                Ok(response.map(|body| ResponseBody::new(body, guard)))
            }
            Err(error) => {
                if let Some(mut guard) = this.guard.take() {
                    guard.finish(Outcome::ServiceError);
                }
                Err(error)
            }
        })
    }
}

/// Notes the response head in the guard; true if the body is still to come, false if
/// the request was finished here (no body follows the head).
fn responded<B: Body>(guard: &mut Guard, response: &Response<B>) -> bool {
    // The exact size hint first: it is free, where the header costs a hash lookup, and
    // hyper sends the one it has.
    let expected = response.body().size_hint().exact().or_else(|| {
        response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok()?.parse::<u64>().ok())
    });
    guard.responded(response.status(), expected);
    if sends_no_body(guard.method(), response.status()) || response.body().is_end_stream() {
        guard.finish(Outcome::Completed);
        return false;
    }
    true
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("recording", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}
