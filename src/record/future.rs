//! The response future: the first half of a call's end, whatever its family.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::{ResponseBody, declared_length};
use super::guard::Guard;
use super::tasks::{self, Monitor, Monitored};
use super::{ReadEnd, ReadHead, error_id};
use crate::classify::{Classify, DefaultClassifier};

pin_project! {
    /// The future of the crate's services
    /// ([`HttpMetrics`](crate::http_metrics::HttpMetrics),
    /// [`ClientMetrics`](crate::client_metrics::ClientMetrics)): the inner future, and the
    /// guard that records the call if the future errs, panics or is dropped.
    pub struct ResponseFuture<F, C = DefaultClassifier> {
        // The inner future, instrumented with its route's task monitor when the layer
        // has them (feature `task-metrics`).
        #[pin]
        inner: Monitored<F>,
        // `None` when the call is not recorded, or once it was finished or its guard
        // moved into the body.
        recording: Option<Recording<C>>,
        classify: C,
    }
}

/// A recorded call: its guard, and how its family reads the response head.
struct Recording<C> {
    guard: Guard,
    read_head: ReadHead<C>,
}

impl<F, C> ResponseFuture<F, C> {
    /// The future of a call that is not recorded.
    pub(crate) fn unrecorded(inner: F, classify: C) -> Self {
        Self {
            inner: tasks::plain(inner),
            recording: None,
            classify,
        }
    }

    /// The future of a recorded call, its response head read by `read_head` (the
    /// family's [`CallFamily::read_head`](super::CallFamily::read_head)), instrumented with a
    /// task monitor if it has one. Each arm builds the whole future, so the inner one
    /// is moved into it once.
    #[inline(always)]
    pub(crate) fn recorded(
        inner: F,
        monitor: Option<Monitor>,
        guard: Guard,
        read_head: ReadHead<C>,
        classify: C,
    ) -> Self {
        match monitor {
            None => Self {
                inner: tasks::plain(inner),
                recording: Some(Recording { guard, read_head }),
                classify,
            },
            Some(monitor) => Self {
                inner: tasks::instrument(inner, monitor),
                recording: Some(Recording { guard, read_head }),
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

    // Always inlined into its caller (axum's and tower's future combinators): a call of
    // its own cost 33 instructions a request on the axum path, the frame and the
    // registers saved around it (callgrind, 2026-12-07), what the floor's future, inlined
    // where it is polled, does not pay.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(Recording { guard, read_head }) = this.recording.as_mut() else {
            let response = ready!(this.inner.poll(cx))?;
            return Poll::Ready(Ok(response.map(|body| ResponseBody::new(body, None, None))));
        };
        // Marked as polling while any code of the caller's runs (the inner future, the
        // classifier, the body's size hint): a panic in it drops the guard so marked.
        match ready!(guard.run(|| this.inner.poll(cx))) {
            Ok(response) => {
                guard.polling = true;
                let at_end = responded(guard, &response, this.classify, *read_head);
                guard.polling = false;
                // Finished here (no body follows), the guard has nothing left to do.
                let Some(at_end) = at_end else {
                    *this.recording = None;
                    return Poll::Ready(Ok(
                        response.map(|body| ResponseBody::new(body, None, None))
                    ));
                };
                // The guard goes on into the body. Each way out builds its response
                // whole: one response built after a choice of guard cost 13 instructions
                // a request more (the guard copied once more; callgrind, 2026-12-07).
                let read_end = at_end.map(|end| (this.classify.clone(), end));
                let recording = this.recording.take();
                Poll::Ready(Ok(response.map(|body| {
                    ResponseBody::new(body, recording.map(|r| r.guard), read_end)
                })))
            }
            Err(error) => {
                guard.polling = true;
                let error_type = this.classify.classify_error(&error);
                guard.polling = false;
                guard.inner_error(&error_type);
                guard.finish(error_id::NONE);
                *this.recording = None;
                Poll::Ready(Err(error))
            }
        }
    }
}

/// Notes the response head in the guard, and reads it as its family does. `None` when
/// the call was finished here (no body follows the head); else how the body's end is
/// read, if the head left the verdict to it.
#[inline]
fn responded<B: Body, C>(
    guard: &mut Guard,
    response: &Response<B>,
    classify: &C,
    read_head: ReadHead<C>,
) -> Option<Option<ReadEnd<C>>> {
    // The length after which hyper stops polling the body: only HTTP/1.x stops there
    // (HTTP/2 polls on to the end, trailers included).
    let expected = guard
        .http1()
        .then(|| declared_length(response.body(), response.headers()))
        .flatten();
    guard.responded(response.status(), expected);
    let read_end = read_head(classify, guard, response.status(), response.headers());
    // Over HTTP/1.x a length of 0 announced is no body too: hyper writes none and drops
    // the body unpolled (`ServeDir` answers an empty file so).
    if expected == Some(0)
        || guard.sends_no_body(response.status())
        || response.body().is_end_stream()
    {
        if let Some(read_end) = read_end {
            read_end(classify, guard, None);
        }
        guard.finish(error_id::NONE);
        return None;
    }
    Some(read_end)
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("recording", &self.recording.is_some())
            .finish_non_exhaustive()
    }
}
