//! The family of HTTP requests served: how their series are keyed and which route a
//! request has.
//!
//! One request, from the service's `call` to its series:
//!
//! 1. [`ServerRequests::route_of`] turns the route template into a small integer (for
//!    an axum route, a lookup of its template's address in a cache of 64 slots; else, or
//!    on a miss, a lookup in the route [`Table`], lock-free), and says whether it is
//!    excluded;
//! 2. the service packs method, scheme, protocol version and route into a
//!    [`SeriesKey`] and starts the call on the engine (`crate::record`), which counts
//!    it in flight and carries the key to the end of the request;
//! 3. [`ServerRequests::series_key`] completes the key with the status and error, as
//!    the naming keeps them, and the engine observes into that series.

use std::sync::Arc;
#[cfg(feature = "axum")]
use std::sync::OnceLock;

use prometheus_client::encoding::DescriptorEncoder;

use super::labels::{Names, SeriesKey};
use crate::exemplar::{TraceContext, TraceContextSource};
use crate::record::{CallFamily, End, Key, Method, Recorder, Table, UrlScheme, error_id};

/// The route id of routes beyond the cardinality limit: their series overflow.
pub(crate) const OVERFLOW_ROUTE: u32 = u32::MAX;

/// Slots of the cache of axum's matched routes by address ([`ServerRequests::route_of`]).
#[cfg(feature = "axum")]
const MATCHED_BITS: u32 = 6;
#[cfg(feature = "axum")]
const MATCHED_SLOTS: usize = 1 << MATCHED_BITS;

/// A route template's id, and whether its requests are excluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) id: u32,
    pub(crate) excluded: bool,
}

impl Route {
    /// Requests that matched no route.
    pub(crate) const NONE: Self = Self {
        id: 0,
        excluded: false,
    };

    /// Routes beyond the cardinality limit: their series overflow.
    const OVERFLOW: Self = Self {
        id: OVERFLOW_ROUTE,
        excluded: false,
    };

    /// An excluded route: it has no series, so it needs no id.
    const EXCLUDED: Self = Self {
        id: 0,
        excluded: true,
    };
}

/// A [`TraceContextSource`], shared by the layer's clones.
#[derive(Clone)]
pub(crate) struct TraceSource(pub(crate) Arc<dyn TraceContextSource>);

impl std::fmt::Debug for TraceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceSource")
    }
}

/// What the builder decided of the routes and labels.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) names: &'static Names,
    pub(crate) grouped_status: bool,
    /// Where the trace context of a request comes from; `None` when exemplars are off.
    pub(crate) exemplars: Option<TraceSource>,
    /// How many routes the table holds (the cardinality limit).
    pub(crate) max_routes: usize,
    pub(crate) excluded_paths: Vec<String>,
    pub(crate) excluded_prefixes: Vec<String>,
    pub(crate) excluded_routes: Vec<String>,
    /// Prefixes of nested services, without a trailing `/`.
    pub(crate) nested_services: Vec<String>,
}

/// The family of HTTP requests served: its names, its routes and its exclusions.
pub(crate) struct ServerRequests {
    pub(crate) names: &'static Names,
    pub(crate) grouped_status: bool,
    exemplars: Option<TraceSource>,
    excluded_paths: Vec<String>,
    excluded_prefixes: Vec<String>,
    /// Route templates to their ids, the excluded ones included.
    pub(crate) routes: Table<Box<str>, Route>,
    /// The largest route id the route table gives (its capacity).
    max_route_id: usize,
    /// The mounts of nested services, and their routes.
    nested: Box<[(Box<str>, Route)]>,
    /// axum's matched routes by the address of their template (`route_of`).
    #[cfg(feature = "axum")]
    matched: Box<[OnceLock<(axum::extract::MatchedPath, Route)>]>,
}

impl ServerRequests {
    pub(crate) fn new(config: Config) -> Self {
        let max_route_id =
            config.max_routes + config.excluded_routes.len() + config.nested_services.len();
        let mut family = Self {
            names: config.names,
            grouped_status: config.grouped_status,
            exemplars: config.exemplars,
            routes: Table::new(max_route_id),
            max_route_id,
            nested: Box::new([]),
            #[cfg(feature = "axum")]
            matched: (0..MATCHED_SLOTS).map(|_| Default::default()).collect(),
            excluded_paths: config.excluded_paths,
            excluded_prefixes: config.excluded_prefixes,
        };
        for route in &config.excluded_routes {
            family
                .routes
                .get_or_insert(route.as_str(), |_| (route.as_str().into(), Route::EXCLUDED));
        }
        family.nested = config
            .nested_services
            .iter()
            .map(|prefix| {
                let template = format!("{prefix}/{{*path}}");
                (prefix.as_str().into(), family.route(Some(&template), || ""))
            })
            .collect();
        family
    }

    /// Whether requests for the path `path` gives are excluded by path or prefix; the
    /// path is only computed (it costs a search for `?`) when something is excluded.
    #[inline]
    pub(crate) fn excludes_path<'a>(&self, path: impl FnOnce() -> &'a str) -> bool {
        if self.excluded_paths.is_empty() && self.excluded_prefixes.is_empty() {
            return false;
        }
        let path = path();
        self.excluded_paths.iter().any(|p| p == path)
            || self
                .excluded_prefixes
                .iter()
                .any(|p| path.starts_with(&**p))
    }

    /// The route of a request: that of its route label, else that of the nested service
    /// its path (from `path`, only called then) falls under, else none.
    #[inline]
    pub(crate) fn route<'a>(&self, label: Option<&str>, path: impl FnOnce() -> &'a str) -> Route {
        let Some(label) = label else {
            return self.nested_route(path);
        };
        let made = |len: usize| {
            let route = Route {
                id: u32::try_from(len + 1).unwrap_or(OVERFLOW_ROUTE),
                excluded: false,
            };
            (label.into(), route)
        };
        self.routes
            .get_or_insert(label, made)
            .copied()
            .unwrap_or(Route::OVERFLOW)
    }

    /// The route of a request, from where its [`RouteLabel`](super::RouteLabel) says.
    ///
    /// axum shares one `Arc<str>` between the requests of a route, so the template of an
    /// axum route is first looked up by its address, in a small cache that keeps the
    /// `MatchedPath` it saw: equal addresses and lengths are then the same string, and no
    /// hashing is needed. A slot already taken by another address, or an address that
    /// changes per request (axum builds the template anew under a nested service), goes
    /// to the route table as any label does: slots are filled once and never replaced.
    /// Templates made per request, or those of routers dropped and rebuilt, can fill
    /// slots that never match again: at worst every lookup costs what it cost without
    /// the cache (the route table), and 64 small strings stay alive.
    #[inline]
    pub(crate) fn route_of<'a>(
        &self,
        source: super::route::RouteSource<'_>,
        path: impl FnOnce() -> &'a str,
    ) -> Route {
        use super::route::RouteSource;
        match source {
            RouteSource::Label(label) => self.route(label, path),
            #[cfg(feature = "axum")]
            RouteSource::Matched(None) => self.route(None, path),
            #[cfg(feature = "axum")]
            RouteSource::Matched(Some(matched)) => {
                let template = matched.as_str();
                // Fibonacci hashing of the address, its top bits: two threads that built
                // the same router have its templates at the same offsets of their own
                // allocator arenas, addresses whose low bits are equal.
                let address = template.as_ptr() as u64;
                let hash = address.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - MATCHED_BITS);
                let slot = &self.matched[hash as usize];
                match slot.get() {
                    Some((cached, route)) if std::ptr::eq(cached.as_str(), template) => *route,
                    cached => {
                        let route = self.route(Some(template), path);
                        if cached.is_none() {
                            // Another thread may fill it first: then this route is simply
                            // not cached.
                            let _ = slot.set((matched.clone(), route));
                        }
                        route
                    }
                }
            }
        }
    }

    #[inline]
    fn nested_route<'a>(&self, path: impl FnOnce() -> &'a str) -> Route {
        if self.nested.is_empty() {
            return Route::NONE;
        }
        let path = path();
        for (prefix, route) in &self.nested {
            if path
                .strip_prefix(&**prefix)
                .is_some_and(|rest| rest.starts_with('/'))
            {
                return *route;
            }
        }
        Route::NONE
    }

    /// The trace context of a request, when exemplars are on: one branch when they are off.
    #[inline]
    pub(crate) fn trace_context<B>(&self, request: &http::Request<B>) -> Option<TraceContext> {
        let source = self.exemplars.as_ref()?;
        source
            .0
            .trace_context(request.headers(), request.extensions())
    }

    /// The in-flight gauge group of the requests on route `id` when the gauges are by
    /// route: its id (0, no route, is the first group), the last one for routes beyond
    /// the cardinality limit.
    #[inline]
    fn route_group(&self, id: u32) -> usize {
        (id as usize).min(self.overflow_group())
    }

    /// The in-flight gauge group of the routes beyond the cardinality limit, by route.
    pub(crate) fn overflow_group(&self) -> usize {
        self.max_route_id + 1
    }

    /// The route templates by id (`None` where an id has none: excluded routes have no
    /// id of their own), for the scrape.
    pub(crate) fn route_names(&self) -> Vec<Option<&str>> {
        self.routes
            .names_by_id(|route| (!route.excluded).then_some(route.id as usize))
    }
}

impl CallFamily for ServerRequests {
    const ACTIVE_SLOTS: usize = Method::COUNT * UrlScheme::COUNT;

    #[inline]
    fn active_slot(key: Key) -> usize {
        SeriesKey(key).active_slot()
    }

    /// By route with `Naming::AxumPrometheus`: one group per route id, and one for the
    /// routes beyond the limit.
    fn active_groups(&self) -> usize {
        if self.names.by_endpoint {
            self.max_route_id + 1
        } else {
            0
        }
    }

    fn active_group(&self, key: Key) -> usize {
        self.route_group(SeriesKey(key).route())
    }

    /// 500 for a request the inner service failed (whatever the classifier calls its
    /// error) or that panicked before its response, 499 (nginx's "client closed
    /// request") for one cancelled before it; without the
    /// OpenTelemetry labels, requests that differ only in scheme, version or error type
    /// are one series.
    #[inline]
    fn series_key(&self, key: Key, end: End) -> Option<Key> {
        let key = SeriesKey(key);
        if key.route() == OVERFLOW_ROUTE {
            return None;
        }
        // An inner error has no response: its status is 0 too.
        let status = match end.status {
            0 if end.error == error_id::CANCELLED && !end.inner_error => 499,
            0 => 500,
            status => status,
        };
        let key = key
            .finish(status, end.error)
            .group_status(self.grouped_status);
        Some(if self.names.otel_labels {
            key.0
        } else {
            key.without_otel_labels().0
        })
    }

    fn encode(recorder: &Recorder<Self>, encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        super::encode::encode(recorder, encoder)
    }
}

impl std::fmt::Debug for ServerRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRequests")
            .field("names", &self.names)
            .field("grouped_status", &self.grouped_status)
            .field("exemplars", &self.exemplars)
            .field("excluded_paths", &self.excluded_paths)
            .field("excluded_prefixes", &self.excluded_prefixes)
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_metrics::labels::Naming;

    fn config(max_routes: usize) -> Config {
        Config {
            names: Naming::OpenTelemetry.names(),
            grouped_status: false,
            exemplars: None,
            max_routes,
            excluded_paths: vec!["/health".into()],
            excluded_prefixes: vec!["/internal/".into()],
            excluded_routes: vec!["/events/{id}".into()],
            nested_services: vec!["/static".into()],
        }
    }

    fn family(max_routes: usize) -> ServerRequests {
        ServerRequests::new(config(max_routes))
    }

    #[test]
    fn routes_are_numbered_then_overflow() {
        let family = family(4);
        // The excluded route and the nested service's route have places of their own.
        let a = family.route(Some("/a"), || "/a");
        assert!(!a.excluded);
        assert_eq!(
            family.route(Some("/a"), || "/other"),
            a,
            "by label, not path"
        );
        let b = family.route(Some("/b"), || "/b");
        assert_ne!(a.id, b.id);
        for route in ["/c", "/d"] {
            assert_ne!(family.route(Some(route), || route).id, OVERFLOW_ROUTE);
        }
        assert_eq!(family.route(Some("/e"), || "/e").id, OVERFLOW_ROUTE);
        assert_eq!(family.route(None, || "/a"), Route::NONE);
    }

    #[test]
    fn in_flight_gauges_are_per_route_with_the_axum_prometheus_names() {
        let start = |family: &ServerRequests, route: u32| {
            let key =
                SeriesKey::request(http::Version::HTTP_11, Method::Post, UrlScheme::Http, route);
            (
                family.active_group(key.0),
                ServerRequests::active_slot(key.0),
            )
        };
        let default = family(4);
        assert_eq!(
            default.active_groups(),
            0,
            "one group, by method and scheme"
        );

        let preset = ServerRequests::new(Config {
            names: Naming::AxumPrometheus.names(),
            ..config(4)
        });
        // Room for four routes, the excluded one and the nested service's: ids up to 6,
        // then the overflow group.
        assert_eq!(preset.active_groups(), 7);
        let a = preset.route(Some("/a"), || "/a").id;
        let b = preset.route(Some("/b"), || "/b").id;
        assert_eq!(start(&preset, a).0, a as usize);
        assert_eq!(start(&preset, b).0, b as usize);
        assert_eq!(start(&preset, 0).0, 0, "no route: the first group");
        assert_eq!(start(&preset, OVERFLOW_ROUTE).0, 7);
        assert_eq!(preset.overflow_group(), 7);
        assert_eq!(
            start(&preset, a).1,
            start(&default, a).1,
            "the same slot in a group"
        );
    }

    #[test]
    fn exclusion_by_path_prefix_and_route() {
        let family = family(10);
        assert!(family.excludes_path(|| "/health"));
        assert!(!family.excludes_path(|| "/health/deep"), "paths are exact");
        assert!(family.excludes_path(|| "/internal/jobs"));
        assert!(
            !family.excludes_path(|| "/internal"),
            "the prefix is /internal/"
        );
        assert!(family.route(Some("/events/{id}"), || "/events/7").excluded);
        assert!(!family.route(Some("/events"), || "/events").excluded);
    }

    #[test]
    fn nested_services_get_their_mount_template() {
        let family = family(10);
        let nested = family.route(None, || "/static/css/app.css");
        assert_ne!(nested, Route::NONE);
        assert_eq!(family.route(Some("/static/{*path}"), || "/x"), nested);
        assert_eq!(family.route(None, || "/staticky"), Route::NONE);
        assert_eq!(family.route(None, || "/static"), Route::NONE);
    }

    #[test]
    fn series_keys_keep_what_the_naming_labels() {
        let family = family(10);
        let route = family.route(Some("/a"), || "/a").id;
        let start = SeriesKey::request(http::Version::HTTP_2, Method::Get, UrlScheme::Https, route);
        let end = |status, error| End {
            status,
            error,
            inner_error: false,
            seconds: 0.1,
        };
        let key = |status, error| {
            SeriesKey(
                family
                    .series_key(start.0, end(status, error))
                    .expect("not overflowing"),
            )
        };
        assert_eq!(key(0, error_id::CANCELLED).status(), 499);
        assert_eq!(key(0, error_id::PANIC).status(), 500);
        assert_eq!(key(0, error_id::OTHER).status(), 500);
        let inner = End {
            status: 0,
            error: error_id::CANCELLED,
            inner_error: true,
            seconds: 0.1,
        };
        let failed = SeriesKey(family.series_key(start.0, inner).expect("not overflowing"));
        assert_eq!(
            (failed.status(), failed.error()),
            (500, error_id::CANCELLED),
            "an inner error is a 500 whatever the classifier calls it"
        );
        assert_eq!(key(204, error_id::NONE).status(), 204);
        assert_eq!(key(204, error_id::CANCELLED).error(), error_id::CANCELLED);
        assert_eq!(key(204, error_id::NONE).scheme(), UrlScheme::Https);
        let overflow = SeriesKey::request(
            http::Version::HTTP_11,
            Method::Get,
            UrlScheme::Http,
            OVERFLOW_ROUTE,
        );
        assert_eq!(family.series_key(overflow.0, end(200, 0)), None);

        let plain = ServerRequests::new(Config {
            names: Naming::PromClient.names(),
            grouped_status: true,
            ..Config {
                names: Naming::OpenTelemetry.names(),
                grouped_status: false,
                exemplars: None,
                max_routes: 10,
                excluded_paths: Vec::new(),
                excluded_prefixes: Vec::new(),
                excluded_routes: Vec::new(),
                nested_services: Vec::new(),
            }
        });
        let key = SeriesKey(
            plain
                .series_key(start.0, end(404, error_id::CANCELLED))
                .expect("not overflowing"),
        );
        assert_eq!((key.status(), key.error()), (400, 0));
        assert_eq!(key.scheme(), UrlScheme::Http, "cleared");
    }
}
