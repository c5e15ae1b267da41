//! The service the client layer produces.

use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::classify::ClientErrors;
use super::future::{BoxError, BoxErrors};
use super::layer::ClientMetricsLayer;
use crate::http_metrics::guard::{Guard, RequestBytes};
use crate::http_metrics::labels::{Method, SeriesKey, UrlScheme};
use crate::http_metrics::recorder::OVERFLOW_ROUTE;
use crate::http_metrics::{Classify, ResponseBody, ResponseFuture};

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
        let grpc = crate::grpc::is_grpc(&request);
        let layer = &self.layer;
        let recorder = if grpc { &*layer.rpc } else { &*layer.http };
        let uri = request.uri();
        let scheme = match uri.scheme_str() {
            Some("https") => UrlScheme::Https,
            _ => UrlScheme::Http,
        };
        // `host[:port]`, without user info; the port defaults by scheme when encoded.
        let address = match uri.authority() {
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
        let address = address.map_or(0, |address| recorder.route(Some(address), || "").id);
        let method = if grpc {
            recorder
                .route(Some(crate::grpc::full_method(uri.path())), || "")
                .id
        } else {
            0
        };
        let route = if address > 0xffff || method > 0xffff {
            OVERFLOW_ROUTE
        } else {
            address | method << 16
        };
        let method_label = Method::from_http(request.method());
        let key = SeriesKey::request(request.version(), method_label, scheme, route);
        let handle = recorder.start(method_label, scheme);
        let mut guard = Guard::new(handle, start, key, RequestBytes::Unknown, None);
        guard.polling = true;
        let future = BoxErrors::new(self.inner.call(request));
        guard.polling = false;
        ResponseFuture::recorded(future, None, guard, layer.classify.clone())
    }
}
