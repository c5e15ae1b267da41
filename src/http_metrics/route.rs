//! Where the route label comes from.

use std::sync::Arc;

use http::Request;

/// Gives the route template of a request: the value of the route label.
///
/// It must be a template (`/api/invoices/{id}`), never the raw path: every distinct value
/// is a new series. `None` means the request matched no route; its series get no route
/// label, so all unmatched requests (404s, scanners) share a few series.
///
/// For a closure, use [`HttpMetricsLayer::route_fn`](super::HttpMetricsLayer::route_fn).
/// Implement this trait when the template lives in the request, for example in an
/// extension a router inserted:
///
/// ```
/// use http::Request;
/// use prometheus_client::registry::Registry;
/// use tower_prometheus::HttpMetricsLayer;
/// use tower_prometheus::http_metrics::RouteLabel;
///
/// /// The template a router of ours stored in the request extensions.
/// #[derive(Clone)]
/// struct Template(&'static str);
///
/// #[derive(Clone)]
/// struct FromExtension;
///
/// impl<B> RouteLabel<B> for FromExtension {
///     fn route<'a>(&'a self, request: &'a Request<B>) -> Option<&'a str> {
///         request.extensions().get::<Template>().map(|template| template.0)
///     }
/// }
///
/// let layer = HttpMetricsLayer::new(&mut Registry::default()).route_label(FromExtension);
/// ```
pub trait RouteLabel<B> {
    /// The route template of `request`, or `None` when it matched no route.
    fn route<'a>(&'a self, request: &'a Request<B>) -> Option<&'a str>;

    /// How the layer finds the route of `request`: by [`route`](Self::route)'s template,
    /// unless the implementation knows a cheaper way. Not public API.
    #[doc(hidden)]
    #[inline]
    fn route_source<'a>(&'a self, request: &'a Request<B>) -> RouteSource<'a> {
        RouteSource::Label(self.route(request))
    }
}

/// Where the route of a request comes from. Public only to be named by
/// [`RouteLabel::route_source`]: it cannot be reached from outside the crate.
#[doc(hidden)]
#[derive(Debug)]
pub enum RouteSource<'a> {
    /// A route template, or none.
    Label(Option<&'a str>),
    /// axum's matched route, or none: the layer finds its template by the address of
    /// the string axum shares between the requests of the route, which costs no hashing
    /// (`Recorder::route_of`).
    #[cfg(feature = "axum")]
    Matched(Option<&'a axum::extract::MatchedPath>),
}

/// The default route label: with the `axum` feature, the template of the route axum
/// matched ([`MatchedPath`](https://docs.rs/axum/0.8/axum/extract/struct.MatchedPath.html));
/// without it, no route label.
///
/// axum inserts `MatchedPath` before the middleware added with `Router::layer` runs, so
/// the layer sees it for every request that matched a route, nested routers included.
/// It inserts none for requests that reach the fallback, nor for those under a service
/// mounted with `Router::nest_service` (a `ServeDir`, say); declare such mounts with
/// [`HttpMetricsBuilder::nested_service`](super::HttpMetricsBuilder::nested_service) to
/// give their requests the mount's route.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_prometheus::Metrics;
///
/// let metrics = Metrics::new();
/// // The layer's route label is DefaultRoute unless route_fn or route_label say otherwise:
/// // requests to /users/7 are recorded with http_route="/users/{id}".
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "a user" }))
///     .layer(metrics.http_layer());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRoute;

impl<B> RouteLabel<B> for DefaultRoute {
    #[cfg(feature = "axum")]
    #[inline]
    fn route<'a>(&'a self, request: &'a Request<B>) -> Option<&'a str> {
        request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(axum::extract::MatchedPath::as_str)
    }

    #[cfg(feature = "axum")]
    #[inline]
    fn route_source<'a>(&'a self, request: &'a Request<B>) -> RouteSource<'a> {
        RouteSource::Matched(request.extensions().get::<axum::extract::MatchedPath>())
    }

    #[cfg(not(feature = "axum"))]
    #[inline]
    fn route<'a>(&'a self, _request: &'a Request<B>) -> Option<&'a str> {
        None
    }
}

/// A closure giving route templates, made by
/// [`HttpMetricsLayer::route_fn`](super::HttpMetricsLayer::route_fn).
///
/// The closure is stored behind a trait object, so that the service stays `Send` inside
/// spawned futures: with the closure's own type, rustc fails to prove that for a closure
/// over a borrowed request ("one type is more general than the other").
pub struct RouteFn<B>(Arc<RouteClosure<B>>);

type RouteClosure<B> = dyn for<'a> Fn(&'a Request<B>) -> Option<&'a str> + Send + Sync;

impl<B> RouteFn<B> {
    pub(crate) fn new<F>(route: F) -> Self
    where
        F: for<'a> Fn(&'a Request<B>) -> Option<&'a str> + Send + Sync + 'static,
    {
        Self(Arc::new(route))
    }
}

impl<B> Clone for RouteFn<B> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<B> std::fmt::Debug for RouteFn<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteFn").finish_non_exhaustive()
    }
}

impl<B> RouteLabel<B> for RouteFn<B> {
    #[inline]
    fn route<'a>(&'a self, request: &'a Request<B>) -> Option<&'a str> {
        (self.0)(request)
    }
}
