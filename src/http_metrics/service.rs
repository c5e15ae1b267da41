//! The service the layer produces.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{ContentLength, RequestSize, ResponseBody};
use super::classify::{Classify, DefaultClassifier};
use super::future::ResponseFuture;
use super::guard::{Guard, RequestBytes};
use super::labels::{Method, SeriesKey, UrlScheme};
use super::recorder::Shared;
use super::route::{DefaultRoute, RouteLabel};
use super::tasks;

/// Records HTTP metrics for the requests it passes to the inner service.
///
/// Made by [`HttpMetricsLayer`](super::HttpMetricsLayer); see the [module docs](super)
/// for what is recorded and when a request counts as finished.
#[derive(Clone, Debug)]
pub struct HttpMetrics<S, R = DefaultRoute, C = DefaultClassifier, M = ContentLength> {
    inner: S,
    recorder: Arc<Shared>,
    route: R,
    classify: C,
    request_size: PhantomData<M>,
    scheme: UrlScheme,
}

impl<S, R, C, M> HttpMetrics<S, R, C, M> {
    pub(crate) fn new(
        inner: S,
        recorder: Arc<Shared>,
        route: R,
        classify: C,
        scheme: UrlScheme,
    ) -> Self {
        Self {
            inner,
            recorder,
            route,
            classify,
            request_size: PhantomData,
            scheme,
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

impl<S, R, C, M, ReqBody, ResBody> Service<Request<ReqBody>> for HttpMetrics<S, R, C, M>
where
    S: Service<Request<M::Body<ReqBody>>, Response = Response<ResBody>>,
    R: RouteLabel<ReqBody>,
    C: Classify<S::Error>,
    M: RequestSize,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody, C>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let recorder = &*self.recorder;
        // Everything that runs the caller's code (the route label, the body's
        // `is_end_stream` and size hint) runs before the request is counted in flight:
        // if it panics, there is nothing to take back.
        let path = || request.uri().path();
        // gRPC calls are recorded by their own recorder, the full method as the route.
        let grpc = (recorder.grpc.as_deref()).filter(|_| crate::grpc::is_grpc(&request));
        let route = if recorder.excludes_path(path) {
            None
        } else if let Some(grpc) = grpc {
            Some(grpc.route(Some(crate::grpc::full_method(path())), || ""))
        } else {
            Some(recorder.route_of(self.route.route_source(&request), path))
        }
        .filter(|route| !route.excluded);
        let recorder = grpc.unwrap_or(recorder);
        let Some(route) = route else {
            let future = self.inner.call(M::wrap(request, &RequestBytes::Unknown));
            return ResponseFuture::unrecorded(future, self.classify.clone());
        };
        let method = Method::from_http(request.method());
        let key = SeriesKey::request(request.version(), method, self.scheme, route.id);
        let request_bytes = M::measure(&request, recorder.measures_body_sizes());
        let trace = recorder.trace_context(&request);
        let handle = recorder.start(method, self.scheme);
        let monitor = tasks::monitor(recorder, route);
        let mut guard = Guard::new(handle, start, key, request_bytes, trace);
        if let Some(timeout) = grpc.and_then(|_| crate::grpc::deadline(request.headers())) {
            guard.set_deadline(timeout);
        }
        // Set by hand rather than through a closure, which would move the request once
        // more; the request is wrapped right in the call's argument for the same reason.
        guard.polling = true;
        let future = self.inner.call(M::wrap(request, guard.request_bytes()));
        guard.polling = false;
        ResponseFuture::recorded(future, monitor, guard, self.classify.clone())
    }
}
