//! The service the client layer produces.

use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::classify::ClientErrors;
use super::family::ClientRequests;
use super::future::{BoxError, BoxErrors};
use super::layer::ClientMetricsLayer;
use crate::classify::Classify;
use crate::grpc::ClientCalls;
use crate::record::{CallFamily, ReadHead, ResponseBody, ResponseFuture, UrlScheme};

/// Records the requests it sends through the inner client; made by
/// [`ClientMetricsLayer`]. Its error is the inner one, boxed.
#[derive(Clone, Debug)]
pub struct ClientMetrics<S, C = ClientErrors> {
    pub(super) inner: S,
    pub(super) layer: ClientMetricsLayer<C>,
}

impl<S, C> ClientMetrics<S, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, without the metrics.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for ClientMetrics<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    C: Classify<BoxError>,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody, C>>;
    type Error = BoxError;
    type Future = ResponseFuture<BoxErrors<S::Future>, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let layer = &self.layer;
        let uri = request.uri();
        let scheme = match uri.scheme_str() {
            Some("https") => UrlScheme::Https,
            _ => UrlScheme::Http,
        };
        // `host[:port]`, without user info; the port defaults by scheme when encoded.
        let server = match uri.authority() {
            Some(authority) => {
                let authority = authority.as_str();
                Some(
                    authority
                        .rsplit_once('@')
                        .map_or(authority, |(_, host)| host),
                )
            }
            None => layer.server.as_deref(),
        };
        let (mut guard, read_head): (_, ReadHead<C>) = if crate::grpc::is_grpc(&request) {
            (
                ClientCalls::start(&layer.rpc, start, &request, server, scheme),
                ClientCalls::read_head::<C, BoxError>,
            )
        } else {
            (
                ClientRequests::start(&layer.http, start, &request, server, scheme),
                ClientRequests::read_head::<C, BoxError>,
            )
        };
        guard.polling = true;
        let future = BoxErrors::new(self.inner.call(request));
        guard.polling = false;
        ResponseFuture::recorded(future, None, guard, read_head, layer.classify.clone())
    }
}
