//! The state the layer records into and the collector that encodes it.
//!
//! Series live in one map keyed by a packed [`SeriesKey`]: the duration and both size
//! histograms of a label set sit side by side. Route templates are interned to small
//! integers once, so a request only hashes its route string, never a label set of
//! strings. The in-flight gauges are a fixed array (method × scheme), no map at all.
//!
//! The shared maps sit behind read-write locks, but requests do not take them: each
//! thread keeps its own copy of the route ids and series handles it has used
//! ([`LocalCache`]), and goes to the shared maps only the first time it meets a route or
//! a label set. Taking even a read lock writes to the lock's cache line, which threads
//! recording at once would fight over.
//!
//! A request in flight holds no reference to the recorder, only its id: the thread
//! cache holds the recorder, and a thread that finishes a request it has no cache for
//! (the task moved) finds the recorder in [`RECORDERS`] once, then caches it too.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::labels::{
    ActiveLabels, Method, Names, OverflowLabels, Scheme, SeriesKey, SeriesLabels, active_slot,
};
use crate::histogram::{Buckets, HistogramCore};
use crate::sharded::ShardedCells;

/// The route id of routes beyond the cardinality limit: their series overflow.
const OVERFLOW_ROUTE: u32 = u32::MAX;

const ACTIVE_SLOTS: usize = Method::COUNT * Scheme::COUNT;

/// What the builder decided.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) names: &'static Names,
    pub(crate) grouped_status: bool,
    pub(crate) duration_buckets: Buckets,
    /// `None` when body sizes are off.
    pub(crate) size_buckets: Option<Buckets>,
    pub(crate) max_series: usize,
    pub(crate) excluded_paths: Box<[Box<str>]>,
}

/// The counters of one label set.
struct Series {
    duration: HistogramCore,
    request_size: Option<HistogramCore>,
    response_size: Option<HistogramCore>,
}

impl Series {
    fn new(config: &Config) -> Self {
        let size = || config.size_buckets.clone().map(HistogramCore::new);
        Self {
            duration: HistogramCore::new(config.duration_buckets.clone()),
            request_size: size(),
            response_size: size(),
        }
    }

    #[inline]
    fn observe(&self, thread: usize, observation: Observation) {
        self.duration.observe_at(thread, observation.seconds);
        if let Some(histogram) = &self.request_size {
            histogram.observe_at(thread, observation.request_bytes as f64);
        }
        if let Some(histogram) = &self.response_size {
            histogram.observe_at(thread, observation.response_bytes as f64);
        }
    }

    fn is_empty(&self) -> bool {
        self.duration.count() == 0
    }
}

#[derive(Default)]
struct RouteTable {
    ids: HashMap<Arc<str>, u32, BuildHasherDefault<FxHasher>>,
    /// `names[id - 1]` is the route of id `id`.
    names: Vec<Arc<str>>,
}

type SeriesMap = HashMap<SeriesKey, Arc<Series>, BuildHasherDefault<FxHasher>>;

/// How many recorders a thread keeps caches for; the oldest is dropped beyond.
const LOCAL_CACHES_PER_THREAD: usize = 4;

thread_local! {
    static LOCAL_CACHES: RefCell<Vec<LocalCache>> = const { RefCell::new(Vec::new()) };
}

/// Every recorder alive, by id: where a thread that finishes a request of a recorder it
/// has no cache for finds it.
static RECORDERS: LazyLock<Mutex<HashMap<u64, Weak<Recorder>>>> = LazyLock::new(Mutex::default);

/// One thread's copy of what it has used of one recorder: the recorder itself, route
/// ids and series handles. Entries are never stale (routes and series are never
/// removed), and there are never more than in the shared maps (overflowing routes and
/// series are not cached).
///
/// The cache holds the recorder so that a request in flight does not have to: a guard
/// keeps only the recorder's id, and the thread that finishes it finds the recorder
/// here. Cloning an `Arc` per request would cost two atomic read-modify-writes, each
/// of which waits for the request's and response's copies to reach the cache.
struct LocalCache {
    /// The recorder's id, beside it: finding the cache costs no pointer chase.
    id: u64,
    recorder: Arc<Recorder>,
    /// `Rc`: the cache never leaves its thread, so sharing a name costs no atomic.
    routes: HashMap<Rc<str>, u32, BuildHasherDefault<FxHasher>>,
    series: SeriesMap,
    /// The route used last: a hit costs a comparison, not a hash.
    last_route: Option<(Rc<str>, u32)>,
}

impl LocalCache {
    fn new(recorder: Arc<Recorder>) -> Self {
        Self {
            id: recorder.id,
            recorder,
            routes: HashMap::default(),
            series: HashMap::default(),
            last_route: None,
        }
    }

    /// The id of a route template, interned on first sight; at most `max_series` routes,
    /// the others are [`OVERFLOW_ROUTE`].
    #[inline]
    fn route_id(&mut self, route: &str) -> u32 {
        if let Some((last, id)) = &self.last_route {
            if **last == *route {
                return *id;
            }
        }
        if let Some((name, id)) = self.routes.get_key_value(route) {
            let id = *id;
            self.last_route = Some((name.clone(), id));
            return id;
        }
        let id = self.recorder.shared_route_id(route);
        // Overflowing routes are not cached: the cache stays as bounded as the table.
        if id != OVERFLOW_ROUTE {
            self.routes.insert(route.into(), id);
        }
        id
    }

    /// Records a finished request: the in-flight gauge back down, and its series.
    #[inline]
    fn record(&mut self, thread: usize, key: SeriesKey, observation: Observation) {
        let config = &self.recorder.config;
        let active_slot = key.active_slot();
        // Without the OpenTelemetry labels, requests that differ only in scheme,
        // version or outcome have the same labels: they must be one series.
        let mut key = key.group_status(config.grouped_status);
        if !config.names.otel_labels {
            key = key.without_otel_labels();
        }
        self.recorder
            .active
            .at(thread, active_slot)
            .fetch_sub(1, Ordering::Relaxed);
        self.observe(thread, key, observation);
    }

    /// Adds a finished request to its series.
    ///
    /// No "last used" shortcut for the series: keeping it would clone the series' `Arc`,
    /// a reference count shared by every thread, on each change of label set; a lookup
    /// by an integer key is about as cheap.
    #[inline]
    fn observe(&mut self, thread: usize, key: SeriesKey, observation: Observation) {
        let recorder = &*self.recorder;
        if key.route() == OVERFLOW_ROUTE {
            recorder.overflow.observe(thread, observation);
            return;
        }
        if let Some(series) = self.series.get(&key) {
            series.observe(thread, observation);
            return;
        }
        let series = recorder.shared_series(key);
        series.observe(thread, observation);
        // The overflow series is not cached: the cache stays as bounded as the map.
        if !Arc::ptr_eq(&series, &recorder.overflow) {
            self.series.insert(key, series);
        }
    }
}

/// Runs `f` on this thread's cache of the recorder numbered `id`, made from `recorder`
/// (called only when the thread has none). `None` when the thread is being torn down,
/// its cache is already borrowed, or `recorder` gives nothing.
#[inline]
fn with_local<T>(
    id: u64,
    recorder: impl FnOnce() -> Option<Arc<Recorder>>,
    f: impl FnOnce(&mut LocalCache) -> T,
) -> Option<T> {
    LOCAL_CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            // Most recently used first: the usual case is one comparison, and the cache
            // dropped to make room is the least recently used.
            if caches.first().is_none_or(|cache| cache.id != id) {
                match caches.iter().position(|cache| cache.id == id) {
                    Some(index) => caches[..=index].rotate_right(1),
                    None => {
                        let recorder = recorder()?;
                        // Caches of closed recorders only hold memory: drop them now.
                        caches.retain(|cache| !cache.recorder.closed.load(Ordering::Relaxed));
                        caches.truncate(LOCAL_CACHES_PER_THREAD - 1);
                        caches.insert(0, LocalCache::new(recorder));
                    }
                }
            }
            Some(f(&mut caches[0]))
        })
        .ok()
        .flatten()
}

/// What one finished request adds to its series.
///
/// Passed by value: built from registers an instant before, it would be read back
/// through memory by reference, and a read of fresh writes of another width stalls.
#[derive(Clone, Copy)]
pub(crate) struct Observation {
    pub(crate) seconds: f64,
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
}

/// The layer's and its services' hold on the recorder. When the last one is dropped,
/// no request can start any more: threads then drop their caches of the recorder the
/// next time they make room for another.
pub(crate) struct RecorderHandle(Arc<Recorder>);

impl RecorderHandle {
    pub(crate) fn new(recorder: Arc<Recorder>) -> Self {
        Self(recorder)
    }

    /// Counts a request in flight and returns its route id (0 without a route).
    /// [`finish`] finds the in-flight gauge again from the key's method and scheme.
    #[inline]
    pub(crate) fn start(&self, route: Option<&str>, method: Method, scheme: Scheme) -> u32 {
        let recorder = &self.0;
        let slot = active_slot(method, scheme);
        if !recorder.active_seen[slot].load(Ordering::Relaxed) {
            recorder.active_seen[slot].store(true, Ordering::Relaxed);
        }
        recorder
            .active
            .at(crate::sharded::thread_shard(), slot)
            .fetch_add(1, Ordering::Relaxed);
        // The thread's cache is made here even without a route: the request's end, on
        // this thread most of the time, then finds the recorder in it.
        with_local(
            recorder.id,
            || Some(recorder.clone()),
            |local| route.map_or(0, |route| local.route_id(route)),
        )
        .unwrap_or_else(|| route.map_or(0, |route| recorder.shared_route_id(route)))
    }
}

impl std::ops::Deref for RecorderHandle {
    type Target = Recorder;

    fn deref(&self) -> &Recorder {
        &self.0
    }
}

impl Drop for RecorderHandle {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for RecorderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Records a finished request of the recorder numbered `recorder`, with its status
/// code not yet grouped.
///
/// Found through this thread's cache, else through [`RECORDERS`] (a request finished on
/// another thread than the one it started on). A recorder that no longer exists has
/// nobody left to show its metrics to: the request is then not recorded.
///
/// The in-flight gauge is summed over shards one by one while requests start on one
/// worker and finish on another, so a scrape can see a decrement before its
/// increment: values below zero are shown as zero.
pub(crate) fn finish(recorder: u64, key: SeriesKey, observation: Observation) {
    let thread = crate::sharded::thread_shard();
    let record = |local: &mut LocalCache| local.record(thread, key, observation);
    if with_local(recorder, || find(recorder), record).is_none() {
        finish_uncached(recorder, thread, key, observation);
    }
}

/// [`finish`] without this thread's cache: the thread is being torn down (or its cache
/// is borrowed), or the recorder no longer exists, and then nothing is found here either.
#[cold]
fn finish_uncached(recorder: u64, thread: usize, key: SeriesKey, observation: Observation) {
    if let Some(found) = find(recorder) {
        LocalCache::new(found).record(thread, key, observation);
    }
}

/// The recorder numbered `id`, if it still exists.
fn find(id: u64) -> Option<Arc<Recorder>> {
    lock(&RECORDERS).get(&id).and_then(Weak::upgrade)
}

/// Everything a layer and its services share.
pub(crate) struct Recorder {
    /// Unique for the life of the process: names this recorder in thread caches.
    id: u64,
    config: Config,
    routes: RwLock<RouteTable>,
    series: RwLock<SeriesMap>,
    overflow: Arc<Series>,
    active: ShardedCells,
    active_seen: [AtomicBool; ACTIVE_SLOTS],
    /// No [`RecorderHandle`] is left: no request can start any more.
    closed: AtomicBool,
}

impl Recorder {
    pub(crate) fn new(config: Config) -> Arc<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let recorder = Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            overflow: Arc::new(Series::new(&config)),
            config,
            routes: RwLock::default(),
            series: RwLock::default(),
            active: ShardedCells::new(ACTIVE_SLOTS),
            active_seen: Default::default(),
            closed: AtomicBool::new(false),
        });
        lock(&RECORDERS).insert(recorder.id, Arc::downgrade(&recorder));
        recorder
    }

    /// The id that names this recorder in guards and thread caches, unique for the life
    /// of the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    #[inline]
    pub(crate) fn is_excluded<B>(&self, request: &http::Request<B>) -> bool {
        let excluded = &self.config.excluded_paths;
        // Checked first: most layers exclude nothing, and the path costs a computation.
        !excluded.is_empty() && excluded.iter().any(|path| **path == *request.uri().path())
    }

    pub(crate) fn measures_body_sizes(&self) -> bool {
        self.config.size_buckets.is_some()
    }

    fn shared_route_id(&self, route: &str) -> u32 {
        {
            let routes = read(&self.routes);
            if let Some(id) = routes.ids.get(route) {
                return *id;
            }
            if routes.names.len() >= self.config.max_series {
                return OVERFLOW_ROUTE;
            }
        }
        let mut routes = write(&self.routes);
        if let Some(id) = routes.ids.get(route) {
            return *id;
        }
        if routes.names.len() >= self.config.max_series {
            return OVERFLOW_ROUTE;
        }
        let route: Arc<str> = route.into();
        routes.names.push(route.clone());
        let id = u32::try_from(routes.names.len()).unwrap_or(OVERFLOW_ROUTE);
        routes.ids.insert(route, id);
        id
    }

    /// The series of `key` from the shared map, created if the limit allows, else the
    /// overflow series.
    fn shared_series(&self, key: SeriesKey) -> Arc<Series> {
        {
            let map = read(&self.series);
            if let Some(series) = map.get(&key) {
                return series.clone();
            }
            if map.len() >= self.config.max_series {
                return self.overflow.clone();
            }
        }
        let mut map = write(&self.series);
        if let Some(series) = map.get(&key) {
            return series.clone();
        }
        if map.len() >= self.config.max_series {
            return self.overflow.clone();
        }
        map.entry(key)
            .or_insert_with(|| Arc::new(Series::new(&self.config)))
            .clone()
    }

    /// The series as they are now, sorted by key, without holding a lock while encoding.
    fn snapshot(&self) -> Snapshot {
        let mut series: Vec<_> = read(&self.series)
            .iter()
            .map(|(key, series)| (*key, series.clone()))
            .collect();
        // The route id is in the high bits: series come grouped by route.
        series.sort_unstable_by_key(|(key, _)| *key);
        let routes = read(&self.routes).names.clone();
        Snapshot { series, routes }
    }
}

struct Snapshot {
    series: Vec<(SeriesKey, Arc<Series>)>,
    routes: Vec<Arc<str>>,
}

/// One histogram family: its descriptor, and which histogram of a series it encodes.
struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    unit: Unit,
    field: fn(&Series) -> Option<&HistogramCore>,
}

impl Collector for Recorder {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let names = self.config.names;
        let Snapshot { series, routes } = self.snapshot();
        let histograms = [
            HistogramFamily {
                name: names.duration,
                help: "Duration of HTTP server requests, until the response body ended.",
                unit: Unit::Seconds,
                field: |s| Some(&s.duration),
            },
            HistogramFamily {
                name: names.request_size,
                help: "Size of HTTP server request bodies, in bytes read.",
                unit: Unit::Bytes,
                field: |s| s.request_size.as_ref(),
            },
            HistogramFamily {
                name: names.response_size,
                help: "Size of HTTP server response bodies, in bytes sent.",
                unit: Unit::Bytes,
                field: |s| s.response_size.as_ref(),
            },
        ];
        for HistogramFamily {
            name,
            help,
            unit,
            field,
        } in histograms
        {
            if field(&self.overflow).is_none() || (series.is_empty() && self.overflow.is_empty()) {
                continue;
            }
            let mut family =
                encoder.encode_descriptor(name, help, Some(&unit), MetricType::Histogram)?;
            for (key, s) in &series {
                let Some(histogram) = field(s) else { continue };
                let labels = SeriesLabels::new(
                    *key,
                    names,
                    routes
                        .get((key.route() as usize).wrapping_sub(1))
                        .map(|r| &**r),
                    self.config.grouped_status,
                );
                histogram.encode(&mut family.encode_family(&labels)?)?;
            }
            if let Some(histogram) = field(&self.overflow).filter(|_| !self.overflow.is_empty()) {
                histogram.encode(&mut family.encode_family(&OverflowLabels)?)?;
            }
        }

        if self
            .active_seen
            .iter()
            .any(|seen| seen.load(Ordering::Relaxed))
        {
            let mut family = encoder.encode_descriptor(
                names.active,
                "Number of HTTP server requests in flight.",
                None,
                MetricType::Gauge,
            )?;
            for method in 0..Method::COUNT {
                let slots = method * Scheme::COUNT..(method + 1) * Scheme::COUNT;
                let gauges = slots.filter(|slot| self.active_seen[*slot].load(Ordering::Relaxed));
                if names.otel_labels {
                    for slot in gauges {
                        let labels = ActiveLabels {
                            names,
                            method: Method::from_index(method),
                            scheme: Some(Scheme::from_index(slot)),
                        };
                        let value = (self.active.sum(slot) as i64).max(0);
                        family.encode_family(&labels)?.encode_gauge(&value)?;
                    }
                } else {
                    let mut gauges = gauges.peekable();
                    if gauges.peek().is_none() {
                        continue;
                    }
                    let value = gauges
                        .map(|slot| self.active.sum(slot) as i64)
                        .sum::<i64>()
                        .max(0);
                    let labels = ActiveLabels {
                        names,
                        method: Method::from_index(method),
                        scheme: None,
                    };
                    family.encode_family(&labels)?.encode_gauge(&value)?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        lock(&RECORDERS).remove(&self.id);
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("config", &self.config)
            .field("series", &read(&self.series).len())
            .field("routes", &read(&self.routes).names.len())
            .finish()
    }
}

// No critical section here panics (they only read and insert), so a poisoned lock
// still holds consistent data: recover it rather than failing every later request.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The multiply-rotate hash of rustc (FxHash): a few cycles for a packed key or a short
/// route template. Not collision resistant, which is acceptable here: both maps are
/// bounded by the cardinality limit, so crafted routes can at worst make lookups in a
/// map of `max_series` entries slower, never grow it.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_metrics::labels::Naming;

    fn recorder() -> Arc<Recorder> {
        Recorder::new(Config {
            names: Naming::OpenTelemetry.names(),
            grouped_status: false,
            duration_buckets: Buckets::duration_seconds(),
            size_buckets: None,
            max_series: 10,
            excluded_paths: Box::new([]),
        })
    }

    /// A thread's cache keeps a recorder alive after its layer is gone (a body may still
    /// finish), until the thread makes room for another recorder.
    #[test]
    fn thread_caches_let_go_of_closed_recorders() {
        std::thread::spawn(|| {
            let first = recorder();
            let id = first.id();
            let handle = RecorderHandle::new(first);
            handle.start(Some("/a"), Method::Get, Scheme::Http);
            drop(handle);
            assert!(find(id).is_some(), "this thread's cache holds it");

            let second = RecorderHandle::new(recorder());
            second.start(Some("/b"), Method::Get, Scheme::Http);
            assert!(find(id).is_none(), "dropped with the cache");
        })
        .join()
        .expect("the test thread does not panic");
    }

    /// A thread keeps at most four caches, whatever the number of recorders it serves.
    #[test]
    fn thread_caches_are_bounded() {
        std::thread::spawn(|| {
            let handles: Vec<_> = (0..2 * LOCAL_CACHES_PER_THREAD)
                .map(|_| RecorderHandle::new(recorder()))
                .collect();
            for handle in &handles {
                handle.start(Some("/a"), Method::Get, Scheme::Http);
            }
            let cached = LOCAL_CACHES.with(|caches| caches.borrow().len());
            assert_eq!(cached, LOCAL_CACHES_PER_THREAD);
        })
        .join()
        .expect("the test thread does not panic");
    }
}
