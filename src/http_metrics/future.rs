//! The response future of the layer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::{ClassifyEnd, ResponseBody, declared_length};
use super::classify::{Classified, Classify, DefaultClassifier};
use super::guard::{Guard, sends_no_body};
use super::labels::error_id;
use super::recorder::Kind;
use super::tasks::{self, Monitored};

pin_project! {
    /// The future of [`HttpMetrics`](super::HttpMetrics): the inner future, and the guard
    /// that records the request if the future errs, panics or is dropped.
    pub struct ResponseFuture<F, C = DefaultClassifier> {
        // The inner future, instrumented with its route's task monitor when the layer
        // has them (feature `task-metrics`).
        #[pin]
        inner: Monitored<F>,
        guard: Option<Guard>,
        classify: C,
    }
}

impl<F, C> ResponseFuture<F, C> {
    /// The future of a request that is not recorded.
    pub(crate) fn unrecorded(inner: F, classify: C) -> Self {
        Self {
            inner: tasks::plain(inner),
            guard: None,
            classify,
        }
    }

    /// The future of a recorded request, instrumented with its route's task monitor if
    /// it has one. Each arm builds the whole future, so the inner one is moved into it
    /// once.
    #[inline(always)]
    pub(crate) fn recorded(
        inner: F,
        monitor: Option<tasks::Monitor>,
        guard: Guard,
        classify: C,
    ) -> Self {
        match monitor {
            None => Self {
                inner: tasks::plain(inner),
                guard: Some(guard),
                classify,
            },
            Some(monitor) => Self {
                inner: tasks::instrument(inner, monitor),
                guard: Some(guard),
                classify,
            },
        }
    }
}

impl<F, B, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    C: Classify<E>,
{
    type Output = Result<Response<ResponseBody<B, C>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(guard) = this.guard.as_mut() else {
            let response = ready!(this.inner.poll(cx))?;
            return Poll::Ready(Ok(response.map(|body| ResponseBody::new(body, None, None))));
        };
        // Marked as polling while any code of the caller's runs (the inner future, the
        // classifier, the body's size hint): a panic in it drops the guard so marked.
        match ready!(guard.run(|| this.inner.poll(cx))) {
            Ok(response) => {
                guard.polling = true;
                let at_end = responded(guard, &response, this.classify);
                guard.polling = false;
                // Finished here (no body follows), the guard has nothing left to do.
                let guard = this.guard.take().filter(|_| at_end.is_some());
                let classify = at_end.flatten().map(|end| (this.classify.clone(), end));
                Poll::Ready(Ok(
                    response.map(|body| ResponseBody::new(body, guard, classify))
                ))
            }
            Err(error) => {
                guard.polling = true;
                let error_type = this.classify.classify_error(&error);
                guard.polling = false;
                guard.classified(Some(&error_type));
                // An inner error is a 500, whatever its error type says (a client's has
                // no status).
                if guard.kind() != Kind::HttpClient {
                    guard.responded(http::StatusCode::INTERNAL_SERVER_ERROR, None);
                }
                guard.finish(error_id::NONE);
                *this.guard = None;
                Poll::Ready(Err(error))
            }
        }
    }
}

/// Notes the response head in the guard, and classifies it. `None` when the request was
/// finished here (no body follows the head); else whether the body's end decides the
/// classification (`Some(Some(..))`, with the function that does) or not (`Some(None)`).
#[inline]
fn responded<B: Body, E, C: Classify<E>>(
    guard: &mut Guard,
    response: &Response<B>,
    classify: &C,
) -> Option<Option<ClassifyEnd<C>>> {
    // The length after which hyper stops polling the body: only HTTP/1.x stops there
    // (HTTP/2 polls on to the end, trailers included).
    let expected = guard
        .http1()
        .then(|| declared_length(response.body(), response.headers()))
        .flatten();
    guard.responded(response.status(), expected);
    // gRPC calls are classified by their status, not by the classifier.
    let (verdict, classify_end) = match guard.kind() {
        Kind::Http | Kind::HttpClient => (
            classify.classify_response(response.status(), response.headers()),
            <C as Classify<E>>::classify_end as ClassifyEnd<C>,
        ),
        Kind::RpcServer | Kind::RpcClient => (
            crate::grpc::classify_head(response.status(), response.headers()),
            crate::grpc::classify_end::<C> as ClassifyEnd<C>,
        ),
    };
    let at_end = match verdict {
        Classified::Success => false,
        Classified::Failure(error_type) => {
            guard.classified(Some(&error_type));
            false
        }
        Classified::AtEnd => true,
    };
    // Over HTTP/1.x a length of 0 announced is no body too: hyper writes none and drops
    // the body unpolled (`ServeDir` answers an empty file so).
    if expected == Some(0)
        || sends_no_body(guard.method(), response.status())
        || response.body().is_end_stream()
    {
        if at_end {
            guard.classified(classify_end(classify, None).as_ref());
        }
        guard.finish(error_id::NONE);
        return None;
    }
    Some(at_end.then_some(classify_end))
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("recording", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}
