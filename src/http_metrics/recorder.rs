//! What the layer records into: route ids, series and in-flight gauges.
//!
//! One request, from the service's `call` to its observation:
//!
//! 1. [`Recorder::route_of`] turns the route template into a small integer (for an axum
//!    route, a lookup of its template's address in a cache of 64 slots; else, or on a
//!    miss, a lookup in [`Table`], lock-free), and says whether it is excluded;
//! 2. [`Recorder::start`] adds one to the in-flight gauge of the request's method and
//!    scheme (a counter sharded per thread);
//! 3. the guard (`guard.rs`) carries the packed [`SeriesKey`] to the end of the request;
//! 4. [`Recorder::finish`] takes one off the in-flight gauge, finds the series of the key
//!    (a lookup in [`Table`], created on first sight if the limit allows, else the
//!    overflow series) and observes the duration and sizes into its histograms.
//!
//! Nothing on that path takes a lock or writes to memory that another thread writes to
//! at the same time, but the in-flight counter's and histograms' own shard (`sharded.rs`).
//! The scrape side reads the same tables in `encode.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::classify::ErrorType;
use super::exemplar::{ExemplarSlot, TraceContext, TraceContextSource};
use super::labels::{Method, Names, SeriesKey, UrlScheme, active_slot, error_id};
use super::route::RouteSource;
use super::table::Table;
use crate::histogram::{Buckets, HistogramCore, NativeBuckets};
use crate::sharded::{ShardedCells, shard_count, thread_shard};

/// The route id of routes beyond the cardinality limit: their series overflow.
pub(crate) const OVERFLOW_ROUTE: u32 = u32::MAX;

/// How many values of its classifier a layer keeps apart; the others are `_OTHER`.
const MAX_ERROR_TYPES: usize = 64;

pub(crate) const ACTIVE_SLOTS: usize = Method::COUNT * UrlScheme::COUNT;

/// Slots of the cache of axum's matched routes by address ([`Recorder::route_of`]).
#[cfg(feature = "axum")]
const MATCHED_BITS: u32 = 6;
#[cfg(feature = "axum")]
const MATCHED_SLOTS: usize = 1 << MATCHED_BITS;

/// Which side of a call a recorder records, and in which families (`src/grpc/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// HTTP server requests: the families of [`Names`].
    Http,
    /// gRPC calls served: `rpc_server_call_duration_seconds`.
    RpcServer,
    /// HTTP requests sent: `http_client_request_duration_seconds`.
    HttpClient,
    /// gRPC calls made: `rpc_client_call_duration_seconds`.
    RpcClient,
}

/// What the builder decided.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) kind: Kind,
    pub(crate) names: &'static Names,
    pub(crate) grouped_status: bool,
    pub(crate) duration_buckets: Buckets,
    /// `None` when native histograms are off.
    pub(crate) native_buckets: Option<NativeBuckets>,
    /// Where the trace context of a request comes from; `None` when exemplars are off.
    pub(crate) exemplars: Option<TraceSource>,
    /// `None` when body sizes are off.
    pub(crate) size_buckets: Option<Buckets>,
    pub(crate) max_series: usize,
    pub(crate) excluded_paths: Vec<String>,
    pub(crate) excluded_prefixes: Vec<String>,
    pub(crate) excluded_routes: Vec<String>,
    /// Prefixes of nested services, without a trailing `/`.
    pub(crate) nested_services: Vec<String>,
}

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

/// The counters of one label set.
pub(crate) struct Series {
    pub(crate) duration: HistogramCore,
    /// One per classic duration bucket, when exemplars are on.
    pub(crate) exemplars: Option<Box<[ExemplarSlot]>>,
    pub(crate) request_size: Option<HistogramCore>,
    pub(crate) response_size: Option<HistogramCore>,
}

impl Series {
    fn new(config: &Config) -> Self {
        let size = || config.size_buckets.clone().map(HistogramCore::new);
        Self {
            duration: HistogramCore::with_native(
                config.duration_buckets.clone(),
                config.native_buckets,
            ),
            exemplars: config.exemplars.as_ref().map(|_| {
                (0..=config.duration_buckets.bounds().len())
                    .map(|_| ExemplarSlot::default())
                    .collect()
            }),
            request_size: size(),
            response_size: size(),
        }
    }

    /// Records one request; `epoch` is the recorder's, for the exemplars' clock.
    #[inline]
    fn observe(&self, thread: usize, observation: Observation, epoch: Instant) {
        let bucket = self.duration.observe_at(thread, observation.seconds);
        if let Some(context) = observation.trace {
            if let (Some(slots), Some(bucket)) = (&self.exemplars, bucket) {
                if let Some(slot) = slots.get(bucket) {
                    let now = observation.end.saturating_duration_since(epoch);
                    let millis = now.as_secs() * 1000 + u64::from(now.subsec_millis());
                    slot.offer(context, observation.seconds, millis);
                }
            }
        }
        if let (Some(histogram), Some(bytes)) = (&self.request_size, observation.request_bytes) {
            histogram.observe_at(thread, bytes as f64);
        }
        if let Some(histogram) = &self.response_size {
            histogram.observe_at(thread, observation.response_bytes as f64);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.duration.count() == 0
    }
}

/// What one finished request adds to its series.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Observation {
    pub(crate) seconds: f64,
    /// `None` when the size is unknown (a declared length that was not declared).
    pub(crate) request_bytes: Option<u64>,
    pub(crate) response_bytes: u64,
    /// The request's trace, when exemplars are on and it had one.
    pub(crate) trace: Option<TraceContext>,
    /// When the request finished (the clock read that gave `seconds`): the exemplars'
    /// clock, so that deciding whether a slot is due reads no clock of its own.
    pub(crate) end: Instant,
}

/// Everything a layer, its services and its requests in flight share.
pub(crate) struct Recorder {
    pub(crate) config: Config,
    /// Route templates to ids, numbered from 1 in the order first seen.
    pub(crate) routes: Table<Box<str>, Route>,
    /// The classifier's `error_type` values to ids, from [`error_id::FIRST_CUSTOM`].
    pub(crate) errors: Table<Box<str>, u8>,
    pub(crate) series: Table<SeriesKey, Series>,
    pub(crate) overflow: Series,
    /// The route of each nested service: its prefix, and its `{prefix}/{*path}` route.
    nested: Box<[(Box<str>, Route)]>,
    pub(crate) active: ShardedCells,
    /// Which in-flight gauges have ever been used: only those are exposed.
    pub(crate) active_seen: [AtomicBool; ACTIVE_SLOTS],
    /// The start of the exemplars' monotonic clock (milliseconds since it).
    epoch: Instant,
    /// axum's matched routes by the address of their template ([`Self::route_of`]):
    /// each slot is filled once and holds its `MatchedPath`, so that the address cannot
    /// be reused by another string while the slot remembers it.
    #[cfg(feature = "axum")]
    matched: Box<[std::sync::OnceLock<(axum::extract::MatchedPath, Route)>]>,
}

impl Recorder {
    pub(crate) fn new(config: Config) -> Self {
        let mut recorder = Self {
            // Excluded routes and nested services have their places on top of the
            // limit: an exclusion always holds, and the app's routes keep `max_series`.
            routes: Table::new(
                config.max_series + config.excluded_routes.len() + config.nested_services.len(),
            ),
            errors: Table::new(MAX_ERROR_TYPES),
            series: Table::new(config.max_series),
            overflow: Series::new(&config),
            nested: Box::new([]),
            active: ShardedCells::new(ACTIVE_SLOTS),
            active_seen: Default::default(),
            epoch: Instant::now(),
            #[cfg(feature = "axum")]
            matched: (0..MATCHED_SLOTS).map(|_| Default::default()).collect(),
            config,
        };
        for route in &recorder.config.excluded_routes {
            recorder
                .routes
                .get_or_insert(route.as_str(), |_| (route.as_str().into(), Route::EXCLUDED));
        }
        recorder.nested = recorder
            .config
            .nested_services
            .iter()
            .map(|prefix| {
                let template = format!("{prefix}/{{*path}}");
                (
                    prefix.as_str().into(),
                    recorder.route(Some(&template), || ""),
                )
            })
            .collect();
        recorder
    }

    /// Whether requests for the path `path` gives are excluded by path or prefix; the
    /// path is only computed (it costs a search for `?`) when something is excluded.
    #[inline]
    pub(crate) fn excludes_path<'a>(&self, path: impl FnOnce() -> &'a str) -> bool {
        let config = &self.config;
        if config.excluded_paths.is_empty() && config.excluded_prefixes.is_empty() {
            return false;
        }
        let path = path();
        config.excluded_paths.iter().any(|p| p == path)
            || config
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
        source: RouteSource<'_>,
        path: impl FnOnce() -> &'a str,
    ) -> Route {
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

    /// The id of a classifier's `error_type`; `_OTHER` past the limit, and for an empty
    /// value (an empty label is no label: the failure would look like a success).
    pub(crate) fn error_id(&self, error: &ErrorType) -> u8 {
        let value = error.as_str();
        if value.is_empty() {
            return error_id::OTHER;
        }
        if let Some(id) = error_id::BUILT_IN[1..].iter().position(|v| *v == value) {
            return id as u8 + 1;
        }
        self.errors
            .get_or_insert(value, |len| {
                (value.into(), error_id::FIRST_CUSTOM + len as u8)
            })
            .copied()
            .unwrap_or(error_id::OTHER)
    }

    /// The trace context of a request, when exemplars are on: one branch when they are off.
    #[inline]
    pub(crate) fn trace_context<B>(&self, request: &http::Request<B>) -> Option<TraceContext> {
        let source = self.config.exemplars.as_ref()?;
        source
            .0
            .trace_context(request.headers(), request.extensions())
    }

    pub(crate) fn measures_body_sizes(&self) -> bool {
        self.config.size_buckets.is_some()
    }

    /// Counts a request in flight on the thread numbered `thread`.
    #[inline]
    fn start(&self, thread: usize, method: Method, scheme: UrlScheme) {
        let slot = active_slot(method, scheme);
        if !self.active_seen[slot].load(Ordering::Relaxed) {
            self.active_seen[slot].store(true, Ordering::Relaxed);
        }
        self.active.at(thread, slot).fetch_add(1, Ordering::Relaxed);
    }

    /// Records a finished request, started with [`start`](Self::start): the in-flight
    /// gauge back down, and its series.
    ///
    /// The in-flight gauge is summed over shards one by one while requests start on one
    /// worker and finish on another, so a scrape can see a decrement before its
    /// increment: values below zero are shown as zero.
    #[inline]
    pub(crate) fn finish(&self, key: SeriesKey, observation: Observation) {
        let thread = thread_shard();
        self.active
            .at(thread, key.active_slot())
            .fetch_sub(1, Ordering::Relaxed);
        // Without the OpenTelemetry labels, requests that differ only in scheme,
        // version or error type have the same labels: they must be one series.
        let mut key = key.group_status(self.config.grouped_status);
        if self.config.kind != Kind::Http {
            key = crate::grpc::series_key(self.config.kind, key);
        } else if !self.config.names.otel_labels {
            key = key.without_otel_labels();
        }
        let series = if key.route() == OVERFLOW_ROUTE {
            &self.overflow
        } else {
            self.series
                .get_or_insert(&key, |_| (key, Series::new(&self.config)))
                .unwrap_or(&self.overflow)
        };
        series.observe(thread, observation, self.epoch);
    }
}

/// What the layer and its services hold: the recorder, and the [`Handle`]s its requests
/// in flight hold.
pub(crate) struct Shared {
    recorder: Arc<Recorder>,
    /// One per shard of threads (`sharded.rs`).
    handles: Box<[Arc<Handle>]>,
    /// The task monitors of the routes, when the layer has them (`tasks.rs`).
    #[cfg(feature = "task-metrics")]
    pub(crate) tasks: Option<Arc<super::tasks::Monitors>>,
    /// The recorder of an HTTP layer's gRPC calls; `None` when they are recorded as
    /// HTTP requests. Held here rather than in an `Arc` of its own beside this one: axum
    /// clones the layer's service for every request, and each `Arc` it holds is one
    /// more reference count written per request.
    pub(crate) grpc: Option<Box<Shared>>,
}

/// A request's hold on the recorder, one of a few: each thread takes the one of its
/// shard, so that two threads starting and finishing requests at once do not write the
/// same reference count. With one count for all (the recorder's `Arc`), a request on two
/// threads cost 150–180 ns more (`benches/README.md`, "What each mechanism buys").
/// Aligned so that two handles never share a cache line.
#[repr(align(128))]
pub(crate) struct Handle(Arc<Recorder>);

impl Shared {
    pub(crate) fn new(recorder: Arc<Recorder>) -> Self {
        let handles = (0..shard_count())
            .map(|_| Arc::new(Handle(recorder.clone())))
            .collect();
        Self {
            recorder,
            handles,
            #[cfg(feature = "task-metrics")]
            tasks: None,
            grpc: None,
        }
    }

    /// The recorder.
    #[cfg(feature = "task-metrics")]
    pub(crate) fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Counts a request in flight, and gives the hold on the recorder it keeps until it
    /// is finished.
    #[inline]
    pub(crate) fn start(&self, method: Method, scheme: UrlScheme) -> Arc<Handle> {
        let thread = thread_shard();
        self.recorder.start(thread, method, scheme);
        // `shard_count()` handles, a power of two: a mask, not a division.
        self.handles[thread & (self.handles.len() - 1)].clone()
    }
}

impl std::ops::Deref for Shared {
    type Target = Recorder;

    #[inline]
    fn deref(&self) -> &Recorder {
        &self.recorder
    }
}

impl std::ops::Deref for Handle {
    type Target = Recorder;

    #[inline]
    fn deref(&self) -> &Recorder {
        &self.0
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.grpc {
            None => self.recorder.fmt(f),
            Some(grpc) => f
                .debug_struct("Recorders")
                .field("http", &self.recorder)
                .field("grpc", &grpc.recorder)
                .finish(),
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("config", &self.config)
            .field("series", &self.series.len())
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_metrics::labels::Naming;

    fn recorder(max_series: usize) -> Recorder {
        Recorder::new(Config {
            kind: Kind::Http,
            names: Naming::OpenTelemetry.names(),
            grouped_status: false,
            duration_buckets: Buckets::duration_seconds(),
            native_buckets: None,
            exemplars: None,
            size_buckets: None,
            max_series,
            excluded_paths: vec!["/health".into()],
            excluded_prefixes: vec!["/internal/".into()],
            excluded_routes: vec!["/events/{id}".into()],
            nested_services: vec!["/static".into()],
        })
    }

    #[test]
    fn routes_are_numbered_then_overflow() {
        let recorder = recorder(4);
        // The excluded route and the nested service's route have places of their own.
        let a = recorder.route(Some("/a"), || "/a");
        assert!(!a.excluded);
        assert_eq!(
            recorder.route(Some("/a"), || "/other"),
            a,
            "by label, not path"
        );
        let b = recorder.route(Some("/b"), || "/b");
        assert_ne!(a.id, b.id);
        for route in ["/c", "/d"] {
            assert_ne!(recorder.route(Some(route), || route).id, OVERFLOW_ROUTE);
        }
        assert_eq!(recorder.route(Some("/e"), || "/e").id, OVERFLOW_ROUTE);
        assert_eq!(recorder.route(None, || "/a"), Route::NONE);
    }

    #[test]
    fn exclusion_by_path_prefix_and_route() {
        let recorder = recorder(10);
        assert!(recorder.excludes_path(|| "/health"));
        assert!(
            !recorder.excludes_path(|| "/health/deep"),
            "paths are exact"
        );
        assert!(recorder.excludes_path(|| "/internal/jobs"));
        assert!(
            !recorder.excludes_path(|| "/internal"),
            "the prefix is /internal/"
        );
        assert!(
            recorder
                .route(Some("/events/{id}"), || "/events/7")
                .excluded
        );
        assert!(!recorder.route(Some("/events"), || "/events").excluded);
    }

    #[test]
    fn nested_services_get_their_mount_template() {
        let recorder = recorder(10);
        let nested = recorder.route(None, || "/static/css/app.css");
        assert_ne!(nested, Route::NONE);
        assert_eq!(recorder.route(Some("/static/{*path}"), || "/x"), nested);
        assert_eq!(recorder.route(None, || "/staticky"), Route::NONE);
        assert_eq!(recorder.route(None, || "/static"), Route::NONE);
    }

    #[test]
    fn error_types_are_interned_and_bounded() {
        let recorder = recorder(10);
        assert_eq!(recorder.error_id(&ErrorType::OTHER), error_id::OTHER);
        assert_eq!(
            recorder.error_id(&ErrorType::new("cancelled")),
            error_id::CANCELLED
        );
        assert_eq!(recorder.error_id(&ErrorType::new("")), error_id::OTHER);
        let first = recorder.error_id(&ErrorType::new("timeout"));
        assert_eq!(first, error_id::FIRST_CUSTOM);
        assert_eq!(recorder.error_id(&ErrorType::new("timeout")), first);
        for n in 0..100 {
            recorder.error_id(&ErrorType::new(format!("kind_{n}")));
        }
        assert_eq!(recorder.errors.len(), MAX_ERROR_TYPES);
        assert_eq!(
            recorder.error_id(&ErrorType::new("one_too_many")),
            error_id::OTHER
        );
    }
}
