//! The service the layer produces.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::family::{Route, ServerRequests};
use super::labels::SeriesKey;
use super::layer::Recorders;
use super::request::{ContentLength, RequestSize};
use super::route::{DefaultRoute, RouteLabel};
use super::tasks;
use crate::classify::{Classify, DefaultClassifier};
use crate::grpc::ServerCalls;
use crate::record::{
    CallFamily, Guard, Method, ReadHead, RequestBytes, RequestFacts, ResponseBody, ResponseFuture,
    Shared, UrlScheme,
};

/// Records HTTP metrics for the requests it passes to the inner service.
///
/// Made by [`HttpMetricsLayer`](super::HttpMetricsLayer); see the [module docs](super)
/// for what is recorded and when a request counts as finished.
#[derive(Clone, Debug)]
pub struct HttpMetrics<S, R = DefaultRoute, C = DefaultClassifier, M = ContentLength> {
    inner: S,
    recorders: Arc<Recorders>,
    route: R,
    classify: C,
    request_size: PhantomData<M>,
    scheme: UrlScheme,
}

impl<S, R, C, M> HttpMetrics<S, R, C, M> {
    pub(crate) fn new(
        inner: S,
        recorders: Arc<Recorders>,
        route: R,
        classify: C,
        scheme: UrlScheme,
    ) -> Self {
        Self {
            inner,
            recorders,
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
        let recorders = &*self.recorders;
        let http = &recorders.http;
        // Everything that runs the caller's code (the route label, the body's
        // `is_end_stream` and size hint) runs before the request is counted in flight:
        // if it panics, there is nothing to take back.
        let path = || request.uri().path();
        // Which family records the call; `None` when it is not recorded. The request
        // is then passed on at one place of each kind: every other place would cost a
        // copy of it.
        let family = if http.family.excludes_path(path) {
            None
        } else if let Some(grpc) = recorders
            .grpc
            .as_deref()
            .filter(|_| crate::grpc::is_grpc(&request))
        {
            Some(Recorded::Grpc(grpc))
        } else {
            let route = http
                .family
                .route_of(self.route.route_source(&request), path);
            (!route.excluded).then_some(Recorded::Http(route))
        };
        let Some(family) = family else {
            let future = self.inner.call(M::wrap(request, &RequestBytes::Unknown));
            return ResponseFuture::unrecorded(future, self.classify.clone());
        };
        // The call's guard, how its response is read and its task monitor. The guard is
        // the value of the `match` itself: made in a tuple or an `Option` with the others,
        // it was copied once more on its way to the future (20 instructions a request).
        let read_head: ReadHead<C>;
        let monitor;
        let mut guard = match family {
            // gRPC calls are recorded by their own family, the full method as the route.
            Recorded::Grpc(grpc) => {
                read_head = ServerCalls::read_head::<C, S::Error>;
                monitor = None;
                let trace = http.family.trace_context(&request);
                ServerCalls::start(grpc, start, &request, trace)
            }
            Recorded::Http(route) => {
                read_head = ServerRequests::read_head::<C, S::Error>;
                monitor = tasks::monitor(recorders, route);
                let method = Method::from_http(request.method());
                let key = SeriesKey::request(request.version(), method, self.scheme, route.id).0;
                let facts = RequestFacts::new(request.version(), method);
                let request_bytes = M::measure(&request, http.measures_body_sizes());
                let trace = http.family.trace_context(&request);
                let handle = http.start(key);
                Guard::new(handle, start, key, facts, request_bytes, trace)
            }
        };
        // Set by hand rather than through a closure, which would move the request once
        // more; the request is wrapped right in the call's argument for the same reason.
        guard.polling = true;
        let future = self.inner.call(M::wrap(request, guard.request_bytes()));
        guard.polling = false;
        ResponseFuture::recorded(future, monitor, guard, read_head, self.classify.clone())
    }
}

/// The family that records a call the service passes on.
enum Recorded<'a> {
    /// A gRPC call.
    Grpc(&'a Shared<ServerCalls>),
    /// An HTTP request on this route.
    Http(Route),
}
