//! What a family records into: its series, its in-flight gauges and its error types.
//!
//! Nothing on the request path takes a lock or writes to memory that another thread
//! writes to at the same time, but the in-flight counter's and histograms' own shard
//! (`sharded.rs`). The scrape side reads the same tables in the family's `encode`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::guard::Call;
use super::table::Table;
use super::{CallFamily, End, Key, error_id};
use crate::classify::ErrorType;
use crate::exemplar::ExemplarSlot;
use crate::histogram::{Buckets, HistogramCore, NativeBuckets};
use crate::sharded::{ShardedCells, shard_count, thread_shard};

/// How many values of its classifier a recorder keeps apart; the others are `_OTHER`.
pub(crate) const MAX_ERROR_TYPES: usize = 64;

/// What each series of a recorder holds, and how many series it may hold.
#[derive(Clone, Debug)]
pub(crate) struct Histograms {
    pub(crate) duration: Buckets,
    /// `None` when native histograms are off.
    pub(crate) native: Option<NativeBuckets>,
    /// Whether each classic duration bucket keeps an exemplar.
    pub(crate) exemplars: bool,
    /// `None` when body sizes are off.
    pub(crate) sizes: Option<Buckets>,
    /// The cardinality limit: series beyond it go to the overflow series.
    pub(crate) max_series: usize,
}

impl Histograms {
    /// Durations only, in these buckets.
    pub(crate) fn duration(duration: Buckets, max_series: usize) -> Self {
        Self {
            duration,
            native: None,
            exemplars: false,
            sizes: None,
            max_series,
        }
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
    fn new(histograms: &Histograms) -> Self {
        let size = || histograms.sizes.clone().map(HistogramCore::new);
        Self {
            duration: HistogramCore::with_native(histograms.duration.clone(), histograms.native),
            exemplars: histograms.exemplars.then(|| {
                (0..=histograms.duration.bounds().len())
                    .map(|_| ExemplarSlot::default())
                    .collect()
            }),
            request_size: size(),
            response_size: size(),
        }
    }

    /// Records one call that lasted `seconds` and ended at `end`; `epoch` is the
    /// recorder's, for the exemplars' clock. Inlined into the recorder's `finish`: a
    /// call of its own cost 10 instructions per request.
    #[inline(always)]
    fn observe(&self, thread: usize, call: &Call, seconds: f64, end: Instant, epoch: Instant) {
        let bucket = self.duration.observe_at(thread, seconds);
        if let Some(context) = call.trace {
            if let (Some(slots), Some(bucket)) = (&self.exemplars, bucket) {
                if let Some(slot) = slots.get(bucket) {
                    let now = end.saturating_duration_since(epoch);
                    let millis = now.as_secs() * 1000 + u64::from(now.subsec_millis());
                    slot.offer(context, seconds, millis);
                }
            }
        }
        if let Some(histogram) = &self.request_size {
            if let Some(bytes) = call.request_bytes() {
                histogram.observe_at(thread, bytes as f64);
            }
        }
        if let Some(histogram) = &self.response_size {
            histogram.observe_at(thread, call.response_bytes as f64);
        }
    }

    /// Whether nothing was recorded into it yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.duration.count() == 0
    }
}

/// The series, in-flight gauges and error types of one family `P`.
pub(crate) struct Recorder<P> {
    /// The family: its configuration and label tables.
    pub(crate) family: P,
    pub(crate) histograms: Histograms,
    pub(crate) series: Table<Key, Series>,
    /// Where calls go past the cardinality limit.
    pub(crate) overflow: Series,
    /// The first group of in-flight gauges ([`CallFamily::active_group`]).
    pub(crate) active: ActiveGauges,
    /// The other groups, made when a call first needs them.
    more_active: Box<[OnceLock<Box<ActiveGauges>>]>,
    /// The classifier's values, interned to ids from `P::FIRST_CUSTOM_ERROR`.
    pub(crate) errors: Table<Box<str>, u8>,
    /// The exemplars' monotonic clock starts here.
    epoch: Instant,
}

impl<P: CallFamily> Recorder<P> {
    pub(crate) fn new(family: P, histograms: Histograms) -> Self {
        let more_active = (0..family.active_groups())
            .map(|_| OnceLock::new())
            .collect();
        Self {
            family,
            series: Table::new(histograms.max_series),
            overflow: Series::new(&histograms),
            active: ActiveGauges::new(P::ACTIVE_SLOTS),
            more_active,
            errors: Table::new(MAX_ERROR_TYPES),
            epoch: Instant::now(),
            histograms,
        }
    }

    /// A recorder of `family`, its metric families registered in `registry`.
    pub(crate) fn register(
        family: P,
        histograms: Histograms,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Arc<Self> {
        let recorder = Arc::new(Self::new(family, histograms));
        registry.register_collector(Box::new(recorder.clone()));
        recorder
    }

    /// Whether the series record body sizes.
    pub(crate) fn measures_body_sizes(&self) -> bool {
        self.histograms.sizes.is_some()
    }

    /// Counts a call in flight on the thread numbered `thread`.
    #[inline]
    fn start(&self, thread: usize, key: Key) {
        if P::ACTIVE_SLOTS == 0 {
            return;
        }
        let gauges = self.active_gauges(key);
        let slot = P::active_slot(key);
        if !gauges.seen[slot].load(Ordering::Relaxed) {
            gauges.seen[slot].store(true, Ordering::Relaxed);
        }
        gauges
            .cells
            .at(thread, slot)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The in-flight gauges of a call that started with `key`: the first group unless
    /// the family has more (one length compared: what a family without groups pays).
    #[inline]
    fn active_gauges(&self, key: Key) -> &ActiveGauges {
        if self.more_active.is_empty() {
            &self.active
        } else {
            self.grouped_active_gauges(key)
        }
    }

    /// [`Self::active_gauges`] of a family with groups, made if they are not yet (a
    /// group beyond the family's is the first: the family never gives one).
    #[inline(never)]
    fn grouped_active_gauges(&self, key: Key) -> &ActiveGauges {
        let group = self.family.active_group(key);
        match group
            .checked_sub(1)
            .and_then(|more| self.more_active.get(more))
        {
            None => &self.active,
            Some(gauges) => gauges.get_or_init(|| Box::new(ActiveGauges::new(P::ACTIVE_SLOTS))),
        }
    }

    /// Records a finished call, started with [`Shared::start`]: the in-flight gauge back
    /// down, and its series.
    ///
    /// The in-flight gauge is summed over shards one by one while calls start on one
    /// worker and finish on another, so a scrape can see a decrement before its
    /// increment: the families show values below zero as zero.
    #[inline]
    fn finish(&self, call: &Call) {
        let end = Instant::now();
        let seconds = end.saturating_duration_since(call.start).as_secs_f64();
        let thread = thread_shard();
        if P::ACTIVE_SLOTS > 0 {
            self.active_gauges(call.key)
                .cells
                .at(thread, P::active_slot(call.key))
                .fetch_sub(1, Ordering::Relaxed);
        }
        let ended = End {
            status: call.status,
            error: call.error,
            inner_error: call.inner_error,
            seconds,
        };
        let series = match self.family.series_key(call.key, ended) {
            None => &self.overflow,
            Some(key) => self
                .series
                .get_or_insert(&key, |_| (key, Series::new(&self.histograms)))
                .unwrap_or(&self.overflow),
        };
        series.observe(thread, call, seconds, end, self.epoch);
    }

    /// The id of a classifier's `error_type`: the engine's and the family's own names
    /// first, then the interned values; `_OTHER` past the limit, and for an empty value
    /// (an empty label is no label: the failure would look like a success).
    pub(crate) fn error_id(&self, error: &ErrorType) -> u8 {
        let value = error.as_str();
        if value.is_empty() {
            return error_id::OTHER;
        }
        if let Some(id) = error_id::NAMES[1..].iter().position(|v| *v == value) {
            return id as u8 + 1;
        }
        if let Some(id) = P::own_error(value) {
            return id;
        }
        self.errors
            .get_or_insert(value, |len| {
                (
                    value.into(),
                    P::FIRST_CUSTOM_ERROR.saturating_add(len as u8),
                )
            })
            .copied()
            .unwrap_or(error_id::OTHER)
    }

    /// The classifier's values by id (`None` where an id is not one of them), for the
    /// scrape.
    pub(crate) fn error_names(&self) -> Vec<Option<&str>> {
        self.errors.names_by_id(|id| Some(usize::from(*id)))
    }

    /// The series, sorted by key, for the scrape.
    pub(crate) fn sorted_series(&self) -> Vec<(Key, &Series)> {
        let mut series: Vec<(Key, &Series)> = self.series.iter().map(|(k, s)| (*k, s)).collect();
        series.sort_unstable_by_key(|(key, _)| *key);
        series
    }

    /// The groups of in-flight gauges made so far, by group number, the first included.
    pub(crate) fn active_groups(&self) -> impl Iterator<Item = (usize, &ActiveGauges)> {
        let more = self.more_active.iter().enumerate();
        std::iter::once((0, &self.active))
            .chain(more.filter_map(|(group, gauges)| Some((group + 1, &**gauges.get()?))))
    }
}

/// A group of in-flight gauges: a counter sharded per thread each, and whether it has
/// seen a call (gauges that never did are not published).
pub(crate) struct ActiveGauges {
    cells: ShardedCells,
    seen: Box<[AtomicBool]>,
}

impl ActiveGauges {
    fn new(slots: usize) -> Self {
        Self {
            cells: ShardedCells::new(slots),
            seen: (0..slots).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Whether gauge `slot` has seen a call.
    pub(crate) fn seen(&self, slot: usize) -> bool {
        self.seen
            .get(slot)
            .is_some_and(|seen| seen.load(Ordering::Relaxed))
    }

    /// Gauge `slot`, read at scrape time; never below zero (see [`Recorder::finish`]).
    pub(crate) fn value(&self, slot: usize) -> i64 {
        (self.cells.sum(slot) as i64).max(0)
    }
}

/// The end of a call, as the guard sees its recorder: through this trait, a guard is
/// the same type whatever its family, so that one response future serves every family
/// a layer records (HTTP and gRPC calls through one server).
pub(crate) trait Sink: Send + Sync {
    /// Records a finished call ([`Recorder::finish`]).
    fn finish(&self, call: &Call);

    /// The id of a classifier's value ([`Recorder::error_id`]).
    fn error_id(&self, error: &ErrorType) -> u8;
}

impl<P: CallFamily> Sink for Recorder<P> {
    #[inline]
    fn finish(&self, call: &Call) {
        Recorder::finish(self, call);
    }

    fn error_id(&self, error: &ErrorType) -> u8 {
        Recorder::error_id(self, error)
    }
}

impl<P: CallFamily> Collector for Recorder<P> {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        P::encode(self, encoder)
    }
}

/// What a layer and its services hold of a recorder: the recorder, and the [`Handle`]s
/// its calls in flight hold.
pub(crate) struct Shared<P> {
    recorder: Arc<Recorder<P>>,
    /// One per shard of threads (`sharded.rs`).
    handles: Box<[Arc<Handle>]>,
}

/// A call's hold on its recorder, one of a few: each thread takes the one of its shard,
/// so that two threads starting and finishing calls at once do not write the same
/// reference count. With one count for all (the recorder's `Arc`), a request on two
/// threads cost 150–180 ns more (`benches/README.md`, "What each mechanism buys").
/// Aligned so that two handles never share a cache line.
#[repr(align(128))]
pub(crate) struct Handle(pub(super) Arc<dyn Sink>);

impl<P: CallFamily> Shared<P> {
    pub(crate) fn new(recorder: Arc<Recorder<P>>) -> Self {
        let handles = (0..shard_count())
            .map(|_| Arc::new(Handle(recorder.clone())))
            .collect();
        Self { recorder, handles }
    }

    /// Counts a call that starts with `key` in flight, and gives the hold on the
    /// recorder its guard keeps until it is finished.
    ///
    /// Always inlined: `#[inline]` alone, rustc stopped inlining it into the HTTP
    /// service's `call` once the engine had in-flight gauge groups, which cost 16
    /// instructions a request on the axum path (the call, and what `call` keeps in
    /// registers saved and reloaded around it; callgrind, 2026-12-06).
    #[inline(always)]
    pub(crate) fn start(&self, key: Key) -> Arc<Handle> {
        let thread = thread_shard();
        self.recorder.start(thread, key);
        // `shard_count()` handles, a power of two: a mask, not a division.
        self.handles[thread & (self.handles.len() - 1)].clone()
    }
}

impl<P> std::ops::Deref for Shared<P> {
    type Target = Recorder<P>;

    #[inline]
    fn deref(&self) -> &Recorder<P> {
        &self.recorder
    }
}

impl<P: std::fmt::Debug> std::fmt::Debug for Shared<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.recorder.fmt(f)
    }
}

impl<P: std::fmt::Debug> std::fmt::Debug for Recorder<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("family", &self.family)
            .field("histograms", &self.histograms)
            .field("series", &self.series.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Field, RequestBytes};

    /// A family of one label, `n`, and the overflow past n = 100.
    #[derive(Debug)]
    struct Numbers;

    const N: Field = Field::first(16);

    impl CallFamily for Numbers {
        const ACTIVE_SLOTS: usize = 1;

        fn active_slot(_: Key) -> usize {
            0
        }

        fn own_error(value: &str) -> Option<u8> {
            (value == "mine").then_some(error_id::FIRST_FAMILY)
        }

        const FIRST_CUSTOM_ERROR: u8 = error_id::FIRST_FAMILY + 1;

        fn series_key(&self, key: Key, _: End) -> Option<Key> {
            (N.get(key) <= 100).then_some(key)
        }

        fn encode(_: &Recorder<Self>, _: DescriptorEncoder<'_>) -> std::fmt::Result {
            Ok(())
        }
    }

    fn call(key: Key) -> Call {
        Call {
            start: Instant::now(),
            key,
            request_bytes: RequestBytes::Unknown,
            status: 200,
            error: error_id::NONE,
            inner_error: false,
            response_bytes: 0,
            trace: None,
        }
    }

    #[test]
    fn series_are_made_within_the_limit_then_overflow() {
        let recorder = Recorder::new(
            Numbers,
            Histograms::duration(Buckets::duration_seconds(), 3),
        );
        let shared = Shared::new(Arc::new(recorder));
        for n in [1, 2, 2, 3, 4, 101] {
            let key = N.set(Key(0), n);
            let handle = shared.start(key);
            handle.0.finish(&call(key));
        }
        let series = shared.sorted_series();
        let counts: Vec<(u64, u64)> = series
            .iter()
            .map(|(key, s)| (N.get(*key), s.duration.count()))
            .collect();
        assert_eq!(counts, [(1, 1), (2, 2), (3, 1)]);
        assert_eq!(
            shared.overflow.duration.count(),
            2,
            "n = 4 past the limit, n = 101 by the family"
        );
        assert!(shared.active.seen(0));
        assert_eq!(shared.active.value(0), 0, "every call started was finished");
    }

    #[test]
    fn error_types_are_interned_and_bounded() {
        let recorder = Recorder::new(
            Numbers,
            Histograms::duration(Buckets::duration_seconds(), 10),
        );
        assert_eq!(recorder.error_id(&ErrorType::OTHER), error_id::OTHER);
        assert_eq!(
            recorder.error_id(&ErrorType::new("cancelled")),
            error_id::CANCELLED
        );
        assert_eq!(recorder.error_id(&ErrorType::new("")), error_id::OTHER);
        assert_eq!(
            recorder.error_id(&ErrorType::new("mine")),
            error_id::FIRST_FAMILY,
            "the family's own"
        );
        let first = recorder.error_id(&ErrorType::new("timeout"));
        assert_eq!(first, Numbers::FIRST_CUSTOM_ERROR);
        assert_eq!(recorder.error_id(&ErrorType::new("timeout")), first);
        for n in 0..100 {
            recorder.error_id(&ErrorType::new(format!("kind_{n}")));
        }
        assert_eq!(recorder.errors.len(), MAX_ERROR_TYPES);
        assert_eq!(
            recorder.error_id(&ErrorType::new("one_too_many")),
            error_id::OTHER
        );
        assert_eq!(recorder.error_names()[usize::from(first)], Some("timeout"));
    }
}
