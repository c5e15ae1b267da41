//! Where the route label comes from.

use http::Request;

/// Gives the route template of a request: the value of the route label.
///
/// It must be a template (`/api/invoices/{id}`), never the raw path: every distinct value
/// is a new series. `None` means the request matched no route; its series get no route
/// label, so all unmatched requests (404s, scanners) share a few series.
///
/// Closures `Fn(&Request<B>) -> Option<T>` with `T: AsRef<str>` implement it, so a
/// `&'static str` or a `String` does:
///
/// ```
/// use http::Request;
/// use prometheus_client::registry::Registry;
/// use tower_prometheus::http::HttpMetricsLayer;
///
/// let layer = HttpMetricsLayer::new(&mut Registry::default()).route_label(
///     |request: &Request<String>| match request.uri().path() {
///         "/" => Some("/"),
///         path if path.starts_with("/users/") => Some("/users/{id}"),
///         _ => None,
///     },
/// );
/// ```
pub trait RouteLabel<B> {
    /// The route template of `request`, or `None` when it matched no route.
    fn route<'a>(&'a self, request: &'a Request<B>) -> Option<impl AsRef<str> + 'a>;
}

impl<B, F, T> RouteLabel<B> for F
where
    F: Fn(&Request<B>) -> Option<T>,
    T: AsRef<str> + 'static,
{
    fn route<'a>(&'a self, request: &'a Request<B>) -> Option<impl AsRef<str> + 'a> {
        self(request)
    }
}

/// The default route label: with the `axum` feature, the template of the route axum
/// matched ([`MatchedPath`](axum::extract::MatchedPath)); without it, no route label.
///
/// axum inserts `MatchedPath` before the middleware added with `Router::layer` runs, so
/// the layer sees it for every request that matched a route, nested routers included.
/// Requests that reach the fallback have none.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRoute;

impl<B> RouteLabel<B> for DefaultRoute {
    #[cfg(feature = "axum")]
    fn route<'a>(&'a self, request: &'a Request<B>) -> Option<impl AsRef<str> + 'a> {
        request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(axum::extract::MatchedPath::as_str)
    }

    #[cfg(not(feature = "axum"))]
    fn route<'a>(&'a self, _request: &'a Request<B>) -> Option<impl AsRef<str> + 'a> {
        None::<&str>
    }
}
