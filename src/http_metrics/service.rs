//! The service the layer produces.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{RequestBody, ResponseBody};
use super::future::ResponseFuture;
use super::guard::{Guard, request_bytes_counter};
use super::labels::{Method, Scheme, SeriesKey};
use super::recorder::RecorderHandle;
use super::route::{DefaultRoute, RouteLabel};

/// Records HTTP metrics for the requests it passes to the inner service.
///
/// Made by [`HttpMetricsLayer`](super::HttpMetricsLayer); see the [module docs](super)
/// for what is recorded and when a request counts as finished.
#[derive(Clone, Debug)]
pub struct HttpMetrics<S, R = DefaultRoute> {
    inner: S,
    recorder: Arc<RecorderHandle>,
    route: R,
}

impl<S, R> HttpMetrics<S, R> {
    pub(crate) fn new(inner: S, recorder: Arc<RecorderHandle>, route: R) -> Self {
        Self {
            inner,
            recorder,
            route,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, without the metrics.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for HttpMetrics<S, R>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    R: RouteLabel<ReqBody>,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let recorder = &*self.recorder;
        if recorder.is_excluded(&request) {
            let request = request.map(|body| RequestBody::new(body, None));
            return ResponseFuture::new(self.inner.call(request), None);
        }
        // Everything that runs the caller's code (the body's `is_end_stream`, the route
        // label) runs before the request is counted in flight: if it panics, there is
        // nothing to take back.
        let request_bytes = (recorder.measures_body_sizes() && !request.body().is_end_stream())
            .then(request_bytes_counter);
        let method = Method::from_http(request.method());
        let scheme = Scheme::of(&request);
        let route = recorder.start(self.route.route(&request), method, scheme);
        let key = SeriesKey::request(&request, method, scheme, route);
        let mut guard = Guard::new(recorder.id(), start, key, request_bytes.clone());
        // Set by hand rather than through a closure, which would move the request once
        // more; the request is wrapped right in the call's argument for the same reason.
        guard.polling = true;
        let future = self
            .inner
            .call(request.map(|body| RequestBody::new(body, request_bytes)));
        guard.polling = false;
        ResponseFuture::new(future, Some(guard))
    }
}
