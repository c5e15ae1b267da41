//! The [`metrics`](https://docs.rs/metrics) facade, recorded into this crate's registry
//! (feature `metrics-facade`).
//!
//! [`MetricsRecorder`] is a [`metrics::Recorder`]: once installed, `counter!`, `gauge!`
//! and `histogram!` calls, yours and those of the libraries you use, land in the same
//! `/metrics` as the crate's own metrics and your `prometheus-client` ones, in every
//! format the exporter serves.
//!
//! How a name is published:
//!
//! - Made valid as metrics-exporter-prometheus makes it: each character that is not
//!   `[a-zA-Z0-9_]` (or a leading digit) becomes `_`, so `http.requests` is
//!   `http_requests` (colons too, which metrics-exporter-prometheus keeps: Prometheus
//!   keeps them for recording rules). Label names likewise; a leading `__` loses one
//!   `_`; `le` on a histogram and `otel_metric_overflow` become `exported_le` and
//!   `exported_otel_metric_overflow`; of two labels of one name, the first is kept.
//! - As metrics-exporter-prometheus with `with_recommended_naming(true)`: a counter's
//!   samples end in `_total` (`orders` and `orders_total` are both `orders_total`), and a
//!   unit given to `describe_*!` before the metric's first use is appended to the name
//!   when it is not already there, with an OpenMetrics `# UNIT` line (`Unit::Seconds`
//!   makes `db.query` `db_query_seconds`; a counter's unit goes before `_total`;
//!   `Unit::Count` adds nothing). Unlike metrics-exporter-prometheus, units are
//!   published in Prometheus' base units, values converted: milli-, micro- and
//!   nanoseconds as `_seconds`, kibi- to tebibytes as `_bytes`, kilo- to terabits per
//!   second as `_bits_per_second`, a percentage as a `_ratio` (times 0.01). A
//!   histogram's values are converted when recorded, so its buckets are in the base unit
//!   too. The name is fixed when the metric is first used: a later description changes
//!   its help text only.
//! - [`MetricsBuilder::prefix`](crate::MetricsBuilder::prefix) does not apply: it is for
//!   the crate's own metrics, and facade metrics are yours.
//! - The help text is the description (`describe_counter!` and the like), or, for a
//!   metric never described, `Recorded through the metrics facade as NAME.`
//!
//! Protections, as for the crate's own families:
//!
//! - At most [`max_series`](MetricsRecorderBuilder::max_series) label sets per name
//!   (default 2,000); beyond them, values go to one series labelled
//!   `otel_metric_overflow="true"`.
//! - A name whose family would clash with another one in the scrape (one of the crate's
//!   families, a metric in the registry the recorder was built on, one registered with
//!   [`Metrics::register`](crate::Metrics::register), or a facade metric of another type
//!   whose samples it would share) is refused: its handles do nothing, a warning is
//!   logged once (with `tracing`), and [`MetricsRecorder::refused`] lists it. Never two
//!   families of one name in a scrape.
//!
//! Cost: once a series exists, `counter!("orders", "kind" => "new").increment(1)` looks
//! its key up in a table read without a lock (the key's hash is computed by `metrics`,
//! at compile time for static labels) and allocates nothing; a handle kept
//! (`let orders = counter!(..)`) costs one atomic add per `increment`. Histograms record
//! into the crate's lock-free [`Histogram`](crate::Histogram) buckets, no summaries and
//! no quantiles computed in the process. A new label set takes a mutex, once.

mod encode;
mod index;
mod names;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use metrics::{
    CounterFn, GaugeFn, HistogramFn, Key, KeyName, Metadata, SetRecorderError, SharedString,
};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::error::Error;
use crate::histogram::{Buckets, HistogramCore};
use index::Index;
use names::Labels;

/// The default cap on label sets per name, as the HTTP layer's.
const DEFAULT_MAX_SERIES: usize = 2_000;

/// A [`metrics::Recorder`] that records into a `prometheus-client` registry: the one of
/// [`Metrics`](crate::Metrics) (`metrics.install_recorder()?`, or
/// `metrics.recorder()` for [`metrics::with_local_recorder`]), or any registry
/// ([`MetricsRecorderBuilder::build`]).
///
/// ```
/// let metrics = tower_prometheus::Metrics::new();
/// metrics::with_local_recorder(&metrics.recorder(), || {
///     metrics::describe_counter!("orders", "Orders taken");
///     metrics::counter!("orders", "kind" => "new").increment(2);
///     metrics::gauge!("queue.depth").set(7.0);
///     metrics::histogram!("db.query.seconds", "table" => "invoices").record(0.012);
/// });
///
/// let mut text = String::new();
/// tower_prometheus::prometheus_client::encoding::text::encode(&mut text, metrics.registry())?;
/// assert!(text.contains("# HELP orders Orders taken\n# TYPE orders counter\n"));
/// assert!(text.contains("\norders_total{kind=\"new\"} 2\n"));
/// assert!(text.contains("\nqueue_depth 7.0\n"));
/// assert!(text.contains("\ndb_query_seconds_bucket{le=\"0.025\",table=\"invoices\"} 1\n"));
/// # Ok::<(), std::fmt::Error>(())
/// ```
///
/// Clones share the metrics; the module docs of the crate (`The metrics facade`) say how
/// names are made valid and what is refused.
#[derive(Clone)]
pub struct MetricsRecorder {
    shared: Arc<Shared>,
}

/// Options of a [`MetricsRecorder`]: histogram buckets and the cap on label sets.
///
/// ```
/// use tower_prometheus::{Metrics, MetricsRecorder};
///
/// let metrics = Metrics::builder()
///     .metrics_recorder(
///         MetricsRecorder::builder()
///             .buckets_for_prefix("db.", [0.001, 0.01, 0.1, 1.0])
///             .buckets_for_name("payload.size", [1024.0, 65536.0, 1048576.0])
///             .max_series(500),
///     )
///     .build()?;
/// metrics.install_recorder()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MetricsRecorderBuilder {
    buckets: Vec<f64>,
    by_name: Vec<(String, Vec<f64>)>,
    by_prefix: Vec<(String, Vec<f64>)>,
    max_series: usize,
}

impl Default for MetricsRecorderBuilder {
    fn default() -> Self {
        Self {
            buckets: Buckets::duration_seconds().bounds().to_vec(),
            by_name: Vec::new(),
            by_prefix: Vec::new(),
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

impl MetricsRecorderBuilder {
    /// The buckets of every histogram that no name or prefix below matches. Defaults to
    /// the crate's duration buckets ([`Buckets::duration_seconds`]: 0.005 to 10
    /// seconds). Invalid bounds are an [`Error::InvalidBuckets`] from `build`.
    pub fn buckets(mut self, bounds: impl IntoIterator<Item = f64>) -> Self {
        self.buckets = bounds.into_iter().collect();
        self
    }

    /// The buckets of the histogram of this name (made valid first: `db.query` and
    /// `db_query` are one name). A name wins over a prefix. Defaults to none.
    pub fn buckets_for_name(
        mut self,
        name: impl Into<String>,
        bounds: impl IntoIterator<Item = f64>,
    ) -> Self {
        self.by_name.push((
            names::metric_name(&name.into()),
            bounds.into_iter().collect(),
        ));
        self
    }

    /// The buckets of the histograms whose name starts with this prefix (made valid
    /// first); the longest matching prefix wins. Defaults to none.
    pub fn buckets_for_prefix(
        mut self,
        prefix: impl Into<String>,
        bounds: impl IntoIterator<Item = f64>,
    ) -> Self {
        self.by_prefix.push((
            names::metric_name(&prefix.into()),
            bounds.into_iter().collect(),
        ));
        self
    }

    /// The most label sets a name holds; beyond them, values go to one series labelled
    /// `otel_metric_overflow="true"`. Defaults to 2,000. Zero, or more than
    /// [`SERIES_LIMIT`](crate::http_metrics::SERIES_LIMIT), is
    /// [`Error::InvalidCardinalityLimit`].
    pub fn max_series(mut self, max_series: usize) -> Self {
        self.max_series = max_series;
        self
    }

    /// A recorder publishing into `registry`, for a registry that is not the one of
    /// [`Metrics`](crate::Metrics) (which builds its own: see
    /// [`MetricsBuilder::metrics_recorder`](crate::MetricsBuilder::metrics_recorder)).
    /// Names already in the registry (found by encoding it once, here) are refused to
    /// facade metrics.
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use tower_prometheus::MetricsRecorder;
    ///
    /// let mut registry = Registry::default();
    /// let recorder = MetricsRecorder::builder().build(&mut registry)?;
    /// metrics::with_local_recorder(&recorder, || metrics::counter!("jobs").increment(1));
    /// # Ok::<(), tower_prometheus::Error>(())
    /// ```
    pub fn build(self, registry: &mut Registry) -> Result<MetricsRecorder, Error> {
        self.register(registry, None)
    }

    /// Validates the options and registers the recorder's collector in `registry`;
    /// `claim` is asked for each new family name, and refuses it with an error.
    pub(crate) fn register(
        self,
        registry: &mut Registry,
        claim: Option<Claim>,
    ) -> Result<MetricsRecorder, Error> {
        if self.max_series == 0 || self.max_series > crate::http_metrics::SERIES_LIMIT {
            return Err(Error::InvalidCardinalityLimit);
        }
        let mut by_name = HashMap::new();
        for (name, bounds) in self.by_name {
            by_name.insert(name, Buckets::new(bounds)?);
        }
        let mut by_prefix = Vec::new();
        for (prefix, bounds) in self.by_prefix {
            by_prefix.push((prefix, Buckets::new(bounds)?));
        }
        // Longest first: the first match is the longest.
        by_prefix.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        let shared = Arc::new(Shared {
            counters: Index::new(),
            gauges: Index::new(),
            histograms: Index::new(),
            options: Options {
                buckets: Buckets::new(self.buckets)?,
                by_name,
                by_prefix,
                max_series: self.max_series,
            },
            taken: names_in(registry),
            claim,
            state: Mutex::default(),
            published: RwLock::default(),
            descriptions: RwLock::default(),
            refused: Mutex::default(),
        });
        registry.register_collector(Box::new(encode::Published(shared.clone())));
        Ok(MetricsRecorder { shared })
    }
}

/// Asks the rest of the crate for a family name: `Err` says why it is taken.
pub(crate) type Claim = Box<dyn Fn(&str, MetricType) -> Result<(), Error> + Send + Sync>;

/// A metric that holds a name in [`Metrics::register`](crate::Metrics::register)'s list
/// for a facade family, and encodes nothing there (the facade's collector does).
#[derive(Debug)]
pub(crate) struct Placeholder(pub(crate) MetricType);

impl EncodeMetric for Placeholder {
    fn encode(&self, _encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.0
    }

    fn is_empty(&self) -> bool {
        true
    }
}

/// Every metric and sample name that `registry` writes now (encoded once, at build).
fn names_in(registry: &Registry) -> HashSet<String> {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return HashSet::new();
    }
    text.lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .map(str::to_owned)
        .collect()
}

impl MetricsRecorder {
    /// The options, to build a recorder with [`MetricsRecorderBuilder::build`] or to
    /// give [`MetricsBuilder::metrics_recorder`](crate::MetricsBuilder::metrics_recorder).
    pub fn builder() -> MetricsRecorderBuilder {
        MetricsRecorderBuilder::default()
    }

    /// Makes this recorder the global one, which `counter!` and the other macros of
    /// `metrics` use outside of [`metrics::with_local_recorder`]. A process has one
    /// global recorder, for good: installing a second is an error, which hands back
    /// the recorder.
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use tower_prometheus::MetricsRecorder;
    ///
    /// let recorder = MetricsRecorder::builder().build(&mut Registry::default())?;
    /// recorder.install()?;
    /// assert!(recorder.install().is_err(), "one global recorder per process");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn install(&self) -> Result<(), SetRecorderError<MetricsRecorder>> {
        metrics::set_global_recorder(self.clone())
    }

    /// The names refused so far, each with the reason (also logged once, as a
    /// `tracing` warning).
    ///
    /// ```
    /// let metrics = tower_prometheus::Metrics::new();
    /// metrics::with_local_recorder(&metrics.recorder(), || {
    ///     // One of the crate's own families.
    ///     metrics::gauge!("http.server.active_requests").set(1.0);
    /// });
    /// let refused = metrics.recorder().refused();
    /// assert_eq!(refused.len(), 1);
    /// assert!(refused[0].contains("is a metric of tower-prometheus"), "{refused:?}");
    /// ```
    pub fn refused(&self) -> Vec<String> {
        lock(&self.shared.refused).clone()
    }
}

impl std::fmt::Debug for MetricsRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRecorder")
            .field("families", &read(&self.shared.published).len())
            .field("max_series", &self.shared.options.max_series)
            .finish_non_exhaustive()
    }
}

impl metrics::Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<metrics::Unit>, text: SharedString) {
        self.shared.describe(Kind::Counter, &key, unit, &text);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<metrics::Unit>, text: SharedString) {
        self.shared.describe(Kind::Gauge, &key, unit, &text);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<metrics::Unit>, text: SharedString) {
        self.shared.describe(Kind::Histogram, &key, unit, &text);
    }

    #[inline]
    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Counter {
        match self.shared.resolve::<CounterCell>(key) {
            Some(cell) => metrics::Counter::from_arc(cell),
            None => metrics::Counter::noop(),
        }
    }

    #[inline]
    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Gauge {
        match self.shared.resolve::<GaugeCell>(key) {
            Some(cell) => metrics::Gauge::from_arc(cell),
            None => metrics::Gauge::noop(),
        }
    }

    #[inline]
    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Histogram {
        match self.shared.resolve::<HistogramCell>(key) {
            Some(cell) => metrics::Histogram::from_arc(cell),
            None => metrics::Histogram::noop(),
        }
    }
}

/// The three kinds of `metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn metric_type(self) -> MetricType {
        match self {
            Self::Counter => MetricType::Counter,
            Self::Gauge => MetricType::Gauge,
            Self::Histogram => MetricType::Histogram,
        }
    }

    /// Its position in per-kind arrays.
    fn slot(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A counter's value: one atomic add per increment.
#[derive(Debug, Default)]
pub(super) struct CounterCell(AtomicU64);

impl CounterFn for CounterCell {
    #[inline]
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        // Never backwards: callers racing with older values cannot decrease it.
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

/// A gauge's value, the bits of an `f64`.
#[derive(Debug, Default)]
pub(super) struct GaugeCell(AtomicU64);

impl GaugeCell {
    fn add(&self, delta: f64) {
        // `fetch_update` retries only when another thread wrote in between.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + delta).to_bits())
            });
    }

    fn value(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.add(value);
    }

    fn decrement(&self, value: f64) {
        self.add(-value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// A histogram's buckets: the crate's lock-free histogram, its values scaled to the
/// base unit when they are recorded (the bounds are in the base unit).
#[derive(Debug)]
pub(super) struct HistogramCell {
    core: HistogramCore,
    scale: f64,
}

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        self.core.observe(value * self.scale);
    }
}

/// A series' value, whatever its kind.
#[derive(Clone, Debug)]
pub(super) enum Cell {
    Counter(Arc<CounterCell>),
    Gauge(Arc<GaugeCell>),
    Histogram(Arc<HistogramCell>),
}

/// What the slow path needs to know of each kind.
trait Instrument: Send + Sync + Sized + 'static {
    const KIND: Kind;
    fn index(shared: &Shared) -> &Index<Option<Arc<Self>>>;
    fn create(family: &Family) -> Arc<Self>;
    fn cell(this: Arc<Self>) -> Cell;
    fn from_cell(cell: &Cell) -> Option<Arc<Self>>;
}

impl Instrument for CounterCell {
    const KIND: Kind = Kind::Counter;
    fn index(shared: &Shared) -> &Index<Option<Arc<Self>>> {
        &shared.counters
    }
    fn create(_: &Family) -> Arc<Self> {
        Arc::default()
    }
    fn cell(this: Arc<Self>) -> Cell {
        Cell::Counter(this)
    }
    fn from_cell(cell: &Cell) -> Option<Arc<Self>> {
        match cell {
            Cell::Counter(c) => Some(c.clone()),
            _ => None,
        }
    }
}

impl Instrument for GaugeCell {
    const KIND: Kind = Kind::Gauge;
    fn index(shared: &Shared) -> &Index<Option<Arc<Self>>> {
        &shared.gauges
    }
    fn create(_: &Family) -> Arc<Self> {
        Arc::default()
    }
    fn cell(this: Arc<Self>) -> Cell {
        Cell::Gauge(this)
    }
    fn from_cell(cell: &Cell) -> Option<Arc<Self>> {
        match cell {
            Cell::Gauge(g) => Some(g.clone()),
            _ => None,
        }
    }
}

impl Instrument for HistogramCell {
    const KIND: Kind = Kind::Histogram;
    fn index(shared: &Shared) -> &Index<Option<Arc<Self>>> {
        &shared.histograms
    }
    fn create(family: &Family) -> Arc<Self> {
        let buckets = family
            .buckets
            .clone()
            .unwrap_or_else(Buckets::duration_seconds);
        Arc::new(HistogramCell {
            core: HistogramCore::new(buckets),
            scale: family.scale,
        })
    }
    fn cell(this: Arc<Self>) -> Cell {
        Cell::Histogram(this)
    }
    fn from_cell(cell: &Cell) -> Option<Arc<Self>> {
        match cell {
            Cell::Histogram(h) => Some(h.clone()),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Options {
    buckets: Buckets,
    by_name: HashMap<String, Buckets>,
    by_prefix: Vec<(String, Buckets)>,
    max_series: usize,
}

impl Options {
    fn buckets(&self, name: &str) -> Buckets {
        if let Some(buckets) = self.by_name.get(name) {
            return buckets.clone();
        }
        self.by_prefix
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix.as_str()))
            .map_or_else(|| self.buckets.clone(), |(_, buckets)| buckets.clone())
    }
}

/// A description given with `describe_*!`.
#[derive(Debug)]
struct Description {
    help: String,
    unit: Option<metrics::Unit>,
}

/// A published family: its name and its series.
#[derive(Debug)]
pub(super) struct Family {
    kind: Kind,
    /// Without the unit suffix and a counter's `_total`, which the encoder adds.
    name: String,
    unit: Option<Unit>,
    /// What a value recorded is multiplied by to be in `unit` (milliseconds to seconds:
    /// 0.001); 1 without a unit.
    scale: f64,
    /// The name made valid, as descriptions are filed.
    described_as: String,
    /// The help text of a metric never described.
    undescribed: String,
    buckets: Option<Buckets>,
    series: RwLock<Vec<(Labels, Cell)>>,
    overflow: OnceLock<Cell>,
}

/// A family as the slow path knows it.
#[derive(Debug)]
enum Entry {
    Live {
        family: Arc<Family>,
        series: HashMap<Labels, Cell>,
        /// Keys of this name in the index: at most twice the cap.
        indexed: usize,
    },
    Refused {
        indexed: usize,
    },
}

#[derive(Debug, Default)]
struct State {
    /// By kind and the name made valid.
    families: HashMap<(Kind, String), Entry>,
    /// Every name the facade's families write, and the family that writes it.
    samples: HashMap<String, String>,
}

struct Shared {
    counters: Index<Option<Arc<CounterCell>>>,
    gauges: Index<Option<Arc<GaugeCell>>>,
    histograms: Index<Option<Arc<HistogramCell>>>,
    options: Options,
    /// Names in the registry when the recorder was built.
    taken: HashSet<String>,
    claim: Option<Claim>,
    /// The slow path: a key seen for the first time.
    state: Mutex<State>,
    /// What scrapes read.
    published: RwLock<Vec<Arc<Family>>>,
    /// By kind ([`Kind::slot`]) and the name made valid.
    descriptions: RwLock<[HashMap<String, Description>; 3]>,
    refused: Mutex<Vec<String>>,
}

impl Shared {
    /// The series of `key`, or `None` when its name was refused.
    #[inline]
    fn resolve<I: Instrument>(&self, key: &Key) -> Option<Arc<I>> {
        match I::index(self).get(key) {
            Some(found) => found.clone(),
            None => self.first_seen::<I>(key),
        }
    }

    /// A key not in the index: its family and series found or created, under the lock.
    #[cold]
    #[inline(never)]
    fn first_seen<I: Instrument>(&self, key: &Key) -> Option<Arc<I>> {
        let mut state = lock(&self.state);
        if let Some(found) = I::index(self).get(key) {
            return found.clone();
        }
        let name = names::metric_name(key.name());
        let family_key = (I::KIND, name);
        let mut refusal = None;
        if !state.families.contains_key(&family_key) {
            let entry =
                self.new_family(&mut state, I::KIND, &family_key.1, key.name(), &mut refusal);
            state.families.insert(family_key.clone(), entry);
        }
        let max_series = self.options.max_series;
        let (found, indexed) = match state.families.get_mut(&family_key) {
            None => return None,
            Some(Entry::Refused { indexed }) => (None, indexed),
            Some(Entry::Live {
                family,
                series,
                indexed,
            }) => {
                let labels = names::labels(key, I::KIND);
                let cell = match series.get(&labels) {
                    Some(cell) => cell.clone(),
                    None if series.len() < max_series => {
                        let cell = I::cell(I::create(family));
                        write(&family.series).push((labels.clone(), cell.clone()));
                        series.insert(labels, cell.clone());
                        cell
                    }
                    None => family
                        .overflow
                        .get_or_init(|| I::cell(I::create(family)))
                        .clone(),
                };
                (I::from_cell(&cell), indexed)
            }
        };
        // Label sets beyond the cap, or aliases of one (`a.b` and `a_b`), are looked up
        // here each time once the name has as many keys as twice its cap in the index:
        // the index never grows with label values a client chose.
        if *indexed < 2 * max_series {
            *indexed += 1;
            I::index(self).insert(key.to_retained(), found.clone());
        }
        drop(state);
        // Outside the lock: a subscriber may record metrics of its own.
        if let Some(message) = refusal {
            tracing::warn!("{message}");
        }
        found
    }

    /// A family for a name seen for the first time; or `Refused`, with the message to log
    /// in `refusal`.
    fn new_family(
        &self,
        state: &mut State,
        kind: Kind,
        name: &str,
        written: &str,
        refusal: &mut Option<String>,
    ) -> Entry {
        let unit = read(&self.descriptions)[kind.slot()]
            .get(name)
            .and_then(|description| description.unit)
            .and_then(names::base_unit);
        let scale = unit.map_or(1.0, |(_, scale)| scale);
        let mut stem = name;
        if kind == Kind::Counter {
            stem = stem
                .strip_suffix("_total")
                .filter(|s| !s.is_empty())
                .unwrap_or(stem);
        }
        let unit = unit.map(|(suffix, _)| {
            if let Some(without) = stem
                .strip_suffix(suffix)
                .and_then(|s| s.strip_suffix('_'))
                .filter(|s| !s.is_empty())
            {
                stem = without;
            }
            match suffix {
                "seconds" => Unit::Seconds,
                "bytes" => Unit::Bytes,
                other => Unit::Other(other.to_owned()),
            }
        });
        let full = match &unit {
            Some(unit) => format!("{stem}_{}", unit.as_str()),
            None => stem.to_owned(),
        };
        let samples = names::sample_names(&full, kind);
        let reason = if full.is_empty() || !crate::error::is_valid_metric_name(&full) {
            Some(format!("{written:?} is not a name Prometheus accepts"))
        } else if let Some(other) = samples.iter().find_map(|s| state.samples.get(s)) {
            Some(format!(
                "its family {full:?} clashes with the metrics facade's {other:?}"
            ))
        } else if let Some(sample) = samples.iter().find(|s| self.taken.contains(*s)) {
            Some(format!("{sample:?} is already in the registry"))
        } else if let Some(Err(error)) = self
            .claim
            .as_ref()
            .map(|claim| claim(&full, kind.metric_type()))
        {
            Some(error.to_string())
        } else {
            None
        };
        if let Some(reason) = reason {
            let message = format!(
                "metrics facade: {} {written:?} refused, its values are dropped: {reason}",
                kind.name()
            );
            lock(&self.refused).push(message.clone());
            *refusal = Some(message);
            return Entry::Refused { indexed: 0 };
        }
        for sample in samples {
            state.samples.insert(sample, full.clone());
        }
        let family = Arc::new(Family {
            kind,
            name: stem.to_owned(),
            unit,
            scale,
            described_as: name.to_owned(),
            undescribed: names::help(&format!(
                "Recorded through the metrics facade as {written}."
            )),
            buckets: (kind == Kind::Histogram).then(|| self.options.buckets(name)),
            series: RwLock::default(),
            overflow: OnceLock::new(),
        });
        write(&self.published).push(family.clone());
        Entry::Live {
            family,
            series: HashMap::new(),
            indexed: 0,
        }
    }

    fn describe(&self, kind: Kind, key: &KeyName, unit: Option<metrics::Unit>, text: &str) {
        let name = names::metric_name(key.as_str());
        write(&self.descriptions)[kind.slot()].insert(
            name,
            Description {
                help: names::help(text),
                unit,
            },
        );
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves whole values: a poisoned lock is still sound.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl crate::Metrics {
    /// The [`metrics::Recorder`] recording into this registry (feature
    /// `metrics-facade`), for [`metrics::with_local_recorder`]; every call returns a
    /// handle on the same metrics. [`install_recorder`](Self::install_recorder) makes it
    /// the global one.
    ///
    /// ```
    /// let metrics = tower_prometheus::Metrics::new();
    /// metrics::with_local_recorder(&metrics.recorder(), || {
    ///     metrics::counter!("jobs.done").increment(1);
    /// });
    /// let mut text = String::new();
    /// tower_prometheus::prometheus_client::encoding::text::encode(&mut text, metrics.registry())?;
    /// assert!(text.contains("\njobs_done_total 1\n"));
    /// # Ok::<(), std::fmt::Error>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics-facade")))]
    pub fn recorder(&self) -> MetricsRecorder {
        self.facade.clone()
    }

    /// Makes [`recorder`](Self::recorder) the global recorder of the `metrics` facade:
    /// from then on `counter!`, `gauge!` and `histogram!` calls anywhere in the process
    /// (feature `metrics-facade`) are published by [`exporter`](Self::exporter). A
    /// process has one global recorder: a second install is an error.
    ///
    /// ```no_run
    /// let metrics = tower_prometheus::Metrics::new();
    /// metrics.install_recorder()?;
    /// metrics::counter!("orders", "kind" => "new").increment(1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics-facade")))]
    pub fn install_recorder(&self) -> Result<(), SetRecorderError<MetricsRecorder>> {
        self.facade.install()
    }
}

impl crate::MetricsBuilder {
    /// The options of the `metrics` facade's recorder (feature `metrics-facade`):
    /// histogram buckets, the cap on label sets. Defaults to
    /// [`MetricsRecorder::builder`].
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics-facade")))]
    pub fn metrics_recorder(mut self, recorder: MetricsRecorderBuilder) -> Self {
        self.metrics_recorder = recorder;
        self
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Once its series exist, recording takes none of the recorder's locks: every one of
    /// them is held by this test while another thread records.
    #[test]
    fn existing_series_are_recorded_without_a_lock() {
        let recorder = MetricsRecorder::builder()
            .build(&mut Registry::default())
            .expect("valid options");
        let record = |recorder: &MetricsRecorder| {
            metrics::with_local_recorder(recorder, || {
                metrics::counter!("orders", "kind" => "new").increment(1);
                metrics::gauge!("queue", "name" => "jobs").increment(1.0);
                metrics::histogram!("latency", "route" => "/").record(0.1);
            });
        };
        record(&recorder);
        let shared = &recorder.shared;
        let families = read(&shared.published).clone();
        assert_eq!(families.len(), 3);
        let _series: Vec<_> = families.iter().map(|f| write(&f.series)).collect();
        let _state = lock(&shared.state);
        let _published = write(&shared.published);
        let _descriptions = write(&shared.descriptions);
        let _refused = lock(&shared.refused);
        let _writers = (
            shared.counters.writer.lock(),
            shared.gauges.writer.lock(),
            shared.histograms.writer.lock(),
        );
        let (done, finished) = mpsc::channel();
        let other = recorder.clone();
        std::thread::spawn(move || {
            for _ in 0..1_000 {
                record(&other);
            }
            let _ = done.send(());
        });
        // A lock taken would wait forever: ten seconds is ample for 1,000 rounds.
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("recording went on while every lock was held");
    }
}
